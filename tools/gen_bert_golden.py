#!/usr/bin/env python3
"""gen_bert_golden.py — reference outputs of all-MiniLM-L6-v2 from Hugging Face transformers and
sentence-transformers, for tests/test_bert.c.

Writes tests/fixtures/bert/minilm_golden.safetensors with
  ids, type_ids  I32 [N]       the packed token ids of every sentence (HF tokenizer)
  lens           I64 [S]       tokens per sentence
  hidden         F32 [N, 384]  BertModel last_hidden_state of each sentence run alone (float64)
  embeddings     F32 [S, 384]  SentenceTransformer.encode (mean pooling + L2 normalization)
Usage: tools/.venv/bin/python tools/gen_bert_golden.py [MODEL_DIR]
(MODEL_DIR defaults to models/all-MiniLM-L6-v2, installed by scripts/fetch-model.sh.)"""
import json
import os
import struct
import sys

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "tests", "fixtures", "bert", "minilm_golden.safetensors")

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Two men pushed carts through the woods.",
    "hi",
    "Self-attention computes softmax(QK^T / sqrt(d)) V for every position at once.",
    "Ünïcödé, CJK 漢字 and emoji 🙂 go through the same WordPiece vocabulary!",
    "the quick brown fox jumps over the lazy dog " * 12,  # long: 100+ tokens
    "",
]


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, arr in tensors:
        dt = {np.dtype("float32"): "F32", np.dtype("int32"): "I32", np.dtype("int64"): "I64"}[arr.dtype]
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), sort_keys=False).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = BertModel.from_pretrained(MODEL, add_pooling_layer=False).double().eval()
    st = SentenceTransformer(MODEL, device="cpu")
    st = st.double()
    ids, types, lens, hidden = [], [], [], []
    for s in SENTENCES:
        enc = tok(s, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state[0]
        ids += enc["input_ids"][0].tolist()
        types += enc["token_type_ids"][0].tolist()
        lens.append(enc["input_ids"].shape[1])
        hidden.append(h.numpy())
    with torch.no_grad():
        emb = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False,
                        batch_size=4).astype(np.float64)
    write_safetensors(OUT, [
        ("ids", np.array(ids, dtype=np.int32)),
        ("type_ids", np.array(types, dtype=np.int32)),
        ("lens", np.array(lens, dtype=np.int64)),
        ("hidden", np.concatenate(hidden).astype(np.float32)),
        ("embeddings", emb.astype(np.float32)),
    ], {"model": "sentence-transformers/all-MiniLM-L6-v2", "sentences": json.dumps(SENTENCES),
        "generator": "tools/gen_bert_golden.py"})
    print(f"{OUT}: {len(SENTENCES)} sentences, {len(ids)} tokens")


if __name__ == "__main__":
    main()
