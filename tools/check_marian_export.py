#!/usr/bin/env python3
"""check_marian_export.py MODEL_DIR SOURCES HYPS — a MarianMT directory written by
`qkv train --arch marian` loads in transformers (MarianMTModel, MarianTokenizer) and its
generate() with the directory's generation config gives, decoded without special tokens,
exactly the lines `qkv translate` wrote to HYPS for SOURCES. Exit 0 if all lines agree."""
import sys

import torch
from transformers import MarianMTModel, MarianTokenizer


def main():
    model_dir, src_path, hyp_path = sys.argv[1:4]
    tok = MarianTokenizer.from_pretrained(model_dir)
    model = MarianMTModel.from_pretrained(model_dir).eval()
    srcs = open(src_path, encoding="utf-8").read().split("\n")[:-1]
    hyps = open(hyp_path, encoding="utf-8").read().split("\n")[:-1]
    bad = 0
    for s, h in zip(srcs, hyps):
        with torch.no_grad():
            out = model.generate(**tok([s], return_tensors="pt"))
        t = tok.decode(out[0], skip_special_tokens=True)
        if t != h:
            bad += 1
            print(f"differs: {s!r}: transformers {t!r}, qkv {h!r}")
    print(f"{len(srcs) - bad} of {len(srcs)} lines equal")
    sys.exit(1 if bad or len(srcs) != len(hyps) else 0)


if __name__ == "__main__":
    main()
