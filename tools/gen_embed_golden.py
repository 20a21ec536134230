#!/usr/bin/env python3
"""gen_embed_golden.py — sentence-transformers reference embeddings for tests/test_embed.c.

Picks 160 lines of the Debian `fortunes` corpus (every k-th usable line, deterministic) and 40
stress lines (CJK, accents, combining marks, emoji and ZWJ sequences, right-to-left text,
control characters, invalid UTF-8, very long words and texts, empty lines), writes them to
tests/fixtures/embed/sentences.txt (one per line, raw bytes) and their all-MiniLM-L6-v2
embeddings (sentence-transformers on PyTorch, float64 model, normalized as the pipeline says)
to tests/fixtures/embed/minilm_st.safetensors.

Invalid UTF-8 is given to Python as text decoded with errors="replace" (each maximal invalid
subsequence becomes U+FFFD), which is how qkv's tokenizer reads such bytes.
Usage: tools/.venv/bin/python tools/gen_embed_golden.py [MODEL_DIR]"""
import glob
import json
import os
import struct
import sys

import numpy as np
from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "tests", "fixtures", "embed")

STRESS = [
    "", " ", "\t\t", "a", "Hello, World!", "HELLO WORLD", "héllo wörld, ça va? naïve café",
    "e\u0301 vs \u00e9: combining acute accents", "Ａｌｐｈａ full-width latin",
    "漢字とひらがなとカタカナ", "中文句子没有空格也能分词吗", "한국어 문장도 있습니다",
    "مرحبا بالعالم", "שלום עולם", "Mixed: English עברית العربية 中文",
    "emoji 🙂 🎉 👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽", "flags 🇫🇷🇯🇵 and keycaps 1️⃣",
    "control\x01chars\x07in\x1ftext", "nul\x00byte", "zero\u200bwidth\u200cjoiners\u200d",
    "tabs\tand\rcarriage returns", "Ω≈ç√∫˜µ≤≥÷ math symbols ∑∏∂",
    "supercalifragilisticexpialidocious" * 8,
    "pneumonoultramicroscopicsilicovolcanoconiosis is a long word",
    "x" * 150, "token " * 400, "The quick brown fox jumps over the lazy dog. " * 30,
    "<html><body>markup &amp; entities</body></html>", "C:\\path\\to\\file.txt and /usr/bin/env",
    "email: someone@example.com, url: https://example.org/a?b=c#d", "1234567890 3.14159 -42 1e10",
    "Ünïcödé ÜBER straße STRASSE", "İstanbul ıi İI turkish dotless",
    "Ελληνικά κείμενα", "Русский текст с пунктуацией!", "हिन्दी पाठ", "ภาษาไทย", "tiếng Việt có dấu",
]
STRESS_BYTES = [s.encode("utf-8") for s in STRESS]
STRESS_BYTES += [b"invalid \xff\xfe utf-8 \xc3\x28 bytes", b"\xe2\x82 truncated sequence",
                 b"overlong \xc0\xaf slash"]


def fortunes_lines(n):
    files = sorted(f for f in glob.glob("/usr/share/games/fortunes/*")
                   if not f.endswith((".dat", ".u8")) and os.path.isfile(f))
    lines = []
    for f in files:
        with open(f, "rb") as fh:
            for raw in fh.read().split(b"\n"):
                s = raw.strip()
                if len(s) >= 8 and s != b"%":
                    lines.append(s)
    step = max(1, len(lines) // n)
    return lines[::step][:n]


def write_safetensors(path, name, arr, meta):
    b = np.ascontiguousarray(arr).tobytes()
    header = {"__metadata__": meta,
              name: {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [0, len(b)]}}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b)


def main():
    lines = fortunes_lines(160) + STRESS_BYTES
    for l in lines:
        assert b"\n" not in l
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "sentences.txt"), "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    texts = [l.decode("utf-8", errors="replace") for l in lines]
    st = SentenceTransformer(MODEL, device="cpu").double()
    emb = st.encode(texts, batch_size=16, convert_to_numpy=True)
    write_safetensors(os.path.join(OUT, "minilm_st.safetensors"), "embeddings",
                      emb.astype(np.float32),
                      {"model": "sentence-transformers/all-MiniLM-L6-v2",
                       "lines": str(len(lines)), "generator": "tools/gen_embed_golden.py"})
    print(f"{OUT}: {len(lines)} sentences")


if __name__ == "__main__":
    main()
