#!/usr/bin/env python3
"""gen_cls_golden.py — tiny random BertForSequenceClassification models and the logits Hugging
Face transformers gives them, for tests/test_classify.c and tests/cli/test_classify_cli.sh.

Usage: tools/.venv/bin/python tools/gen_cls_golden.py

Writes under tests/fixtures/cls/:
  <name>/config.json, model.safetensors, tokenizer.json    a model directory (save_pretrained,
        F32; tokenizer.json of a BertTokenizerFast over a 120-token WordPiece vocabulary, lower
        case, written by tokenizers; its model_max_length plays no part)
  <name>.jsonl            the inputs, one JSON object a line: {"text": ...} or
                          {"text": ..., "text_pair": ...}
  <name>.txt              the same inputs as plain text lines (text<TAB>text_pair)
  <name>_pipeline.tsv     the pipeline's answers (top_k=None), one line per input: label<TAB>score
                          for every label, best first (`qkv classify --all`'s format); no two
                          scores of a line are within 1e-4 (checked), so the order is meaningful
  <name>_golden.safetensors
        logits  F32 [n, NL]   model.eval() in float64 (the F32 weights widened exactly), each
                              input alone, tokenized as tokenizer(text, text_pair,
                              truncation=True, max_length=max_position_embeddings) (longest_first)
        scores  F32 [n, NL]   transformers' text-classification pipeline (top_k=None, same
                              truncation), in label id order: softmax, sigmoid or identity as
                              the pipeline chooses from problem_type / num_labels
        lens    I64 [n]       tokens per input after truncation
        __metadata__: labels (JSON list, id order), problem_type (as config.json says, or
                      "null"), generator
The models (vocab 120, hidden 24, 3 heads, intermediate 48, 2 layers, 32 positions, type vocab
2, gelu; initializer_range 0.2 so that logits are O(1); every bias and LayerNorm weight
perturbed by N(0, 0.1)), seeded:
  single      3 labels (negative, neutral, positive), problem_type null (single label)
  multi       4 labels (sports, politics, science, art), multi_label_classification
  regression  1 label, problem_type "regression" (the pipeline returns the logit itself)
  pair        2 labels (entailment, not_entailment), inputs are sentence pairs
Float32 weights, one thread, deterministic: a rerun with tools/requirements.txt writes the same
files."""
import json
import os
import shutil
import tempfile

import numpy as np
import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import (BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast,
                          pipeline)

from gen_bert_golden import write_safetensors  # deterministic header (metadata in given order)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "cls")

WORDS = ("the a is was good bad not very movie film great awful team game vote law cell atom "
         "paint music it this and of to in i love hate play win").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PUNCT = list(".,!?'-") + list("0123456789")


def vocab():
    toks = SPECIAL + list(LETTERS) + ["##" + c for c in LETTERS] + PUNCT + WORDS
    toks = list(dict.fromkeys(toks))
    while len(toks) < 120:
        toks.append(f"[unused{len(toks)}]")
    assert len(toks) == 120, len(toks)
    return {t: i for i, t in enumerate(toks)}


def make_tokenizer():
    v = vocab()
    t = Tokenizer(WordPiece(v, unk_token="[UNK]", max_input_chars_per_word=100))
    t.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                              strip_accents=None, lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", v["[CLS]"]), ("[SEP]", v["[SEP]"])])
    from tokenizers import decoders
    t.decoder = decoders.WordPiece(prefix="##")
    # token_type_ids named explicitly: PreTrainedTokenizerFast leaves them out by default, and
    # BERT would then see every pair token as type 0
    fast = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", sep_token="[SEP]",
                                   pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids",
                                                      "attention_mask"])
    return fast


TEXTS = [
    "this movie is very good",
    "awful film, i hate it!",
    "the team was not bad",
    "",
    "a vote in the law",
    "music and paint: art?",
    "Ünïcödé and 漢字 are unknown here",
    "i love the game " * 10,  # past 32 tokens: truncated
    "x",
    "cell atom 42",
]
PAIRS = [
    ("the movie is good", "the film is great"),
    ("i love it", "i hate it"),
    ("the team win the game " * 6, "the team was bad"),  # the first side is truncated
    ("a", "the vote was not good and the law was very bad " * 3),  # the second side
    ("music " * 20, "paint " * 20),  # both sides
    ("", "atom"),
    ("cell", ""),
]
MODELS = [
    ("single", dict(num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"}), 101,
     False),
    ("multi", dict(num_labels=4, id2label={0: "sports", 1: "politics", 2: "science", 3: "art"},
                   problem_type="multi_label_classification"), 102, False),
    ("regression", dict(num_labels=1, problem_type="regression"), 103, False),
    ("pair", dict(num_labels=2, id2label={0: "entailment", 1: "not_entailment"}), 104, True),
]


def build(name, extra, seed, tok):
    d = os.path.join(OUT, name)
    kw = dict(vocab_size=120, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
              intermediate_size=48, max_position_embeddings=32, type_vocab_size=2,
              hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=0.2, pad_token_id=0,
              architectures=["BertForSequenceClassification"])
    kw.update(extra)
    if "id2label" in kw:
        kw["label2id"] = {v: k for k, v in kw["id2label"].items()}
    cfg = BertConfig(**kw)
    torch.manual_seed(seed)
    m = BertForSequenceClassification._from_config(cfg, dtype=torch.float32,
                                                   attn_implementation="eager")
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias") or "LayerNorm" in n:
                p.add_(0.1 * torch.randn(p.shape))
    shutil.rmtree(d, ignore_errors=True)
    m.save_pretrained(d, safe_serialization=True)
    for extra_file in ("generation_config.json",):
        p = os.path.join(d, extra_file)
        if os.path.exists(p):
            os.remove(p)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    return d


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    tok = make_tokenizer()
    for name, extra, seed, is_pair in MODELS:
        d = build(name, extra, seed, tok)
        model = BertForSequenceClassification.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager").eval()
        P = model.config.max_position_embeddings
        inputs = [{"text": a, "text_pair": b} for a, b in PAIRS] if is_pair else \
            [{"text": t} for t in TEXTS]
        m64 = model.double()
        logits, lens = [], []
        for x in inputs:
            enc = tok(x["text"], x.get("text_pair"), truncation=True, max_length=P,
                      return_tensors="pt")
            assert "token_type_ids" in enc
            assert (int(enc["token_type_ids"].sum()) > 0) == bool(x.get("text_pair")), x
            with torch.no_grad():
                logits.append(m64(**enc).logits[0].numpy())
            lens.append(enc["input_ids"].shape[1])
        model = BertForSequenceClassification.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager").eval()
        clf = pipeline("text-classification", model=model, tokenizer=tok, device="cpu")
        nl = model.config.num_labels
        scores = np.zeros((len(inputs), nl), dtype=np.float32)
        res = clf([dict(x) for x in inputs] if is_pair else [x["text"] for x in inputs],
                  top_k=None, truncation=True, max_length=P)
        for i, r in enumerate(res):
            for e in r:
                scores[i, model.config.label2id[e["label"]]] = e["score"]
            # the ranking is meaningful: no two scores within 1e-4 of each other
            ranked = sorted(e["score"] for e in r)
            assert all(b - a > 1e-4 for a, b in zip(ranked, ranked[1:])), (name, i, r)
        # the pipeline's answers as `qkv classify --all` prints them, and the inputs as plain
        # text lines (text<TAB>text_pair) for tests/cli/test_classify_cli.sh
        with open(os.path.join(OUT, name + "_pipeline.tsv"), "w", encoding="utf-8") as f:
            for r in res:
                f.write("\t".join(f"{e['label']}\t{e['score']:.9g}" for e in r) + "\n")
        with open(os.path.join(OUT, name + ".txt"), "w", encoding="utf-8") as f:
            for x in inputs:
                assert "\t" not in x["text"] + x.get("text_pair", "") and "\n" not in x["text"]
                f.write(x["text"] + ("\t" + x["text_pair"] if "text_pair" in x else "") + "\n")
        labels = [model.config.id2label[i] for i in range(nl)]
        with open(os.path.join(OUT, name + ".jsonl"), "w", encoding="utf-8") as f:
            for x in inputs:
                f.write(json.dumps(x, ensure_ascii=False) + "\n")
        write_safetensors(os.path.join(OUT, name + "_golden.safetensors"), [
            ("logits", np.stack(logits).astype(np.float32)),
            ("scores", scores),
            ("lens", np.array(lens, dtype=np.int64)),
        ], {"labels": json.dumps(labels), "problem_type": str(model.config.problem_type or "null"),
            "generator": "tools/gen_cls_golden.py"})
        print(f"{name}: {len(inputs)} inputs, {nl} labels, tokens {lens}, "
              f"logits range [{np.min(logits):.3f}, {np.max(logits):.3f}]")


if __name__ == "__main__":
    main()
