#!/usr/bin/env python3
"""compare_tokenize.py — compares `qkv tokenize` with Hugging Face tokenizers on every line of
a text file, for any tokenizer.json (a quick check of a tokenizer outside the committed
fixtures; the C tests use tools/gen_tokenizer_fixtures.py instead).

    tools/.venv/bin/python tools/compare_tokenize.py QKV_BINARY TOKENIZER_JSON TEXT_FILE

Prints the first mismatches (ids, type ids, mask, code point offsets) and a summary; exit 1 if
any line differs. Lines are decoded with errors="replace" for HF; lines with invalid UTF-8 are
skipped for byte-level tokenizers (qkv encodes their raw bytes).
"""
import json
import subprocess
import sys

from tokenizers import Tokenizer


def main():
    qkv, tj, path = sys.argv[1:4]
    tok = Tokenizer.from_file(tj)
    raw = open(path, "rb").read().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    bytelevel = '"ByteLevel"' in open(tj, encoding="utf-8").read()
    keep = []
    for l in raw:
        try:
            l.decode("utf-8")
            keep.append(l)
        except UnicodeDecodeError:
            if not bytelevel:
                keep.append(l)
    out = subprocess.run([qkv, "tokenize", "--model", tj, "--json", "--offsets", "-"],
                         input=b"\n".join(keep) + b"\n", capture_output=True, check=True).stdout
    got = [json.loads(x) for x in out.decode("utf-8").splitlines()]
    bad = 0
    for i, (l, g) in enumerate(zip(keep, got)):
        e = tok.encode(l.decode("utf-8", "replace"))
        want = {"ids": e.ids, "type_ids": e.type_ids, "attention_mask": e.attention_mask,
                "char_offsets": [list(o) for o in e.offsets]}
        have = {k: g[k] for k in want}
        if have != want:
            bad += 1
            if bad <= 5:
                print("line %d: %r\n  qkv %s\n  HF  %s" % (i + 1, l[:80], have, want))
    print("%s: %d lines, %d differ" % (tj, len(keep), bad))
    sys.exit(1 if bad or len(got) != len(keep) else 0)


if __name__ == "__main__":
    main()
