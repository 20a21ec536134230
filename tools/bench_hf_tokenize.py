#!/usr/bin/env python3
"""bench_hf_tokenize.py — Hugging Face tokenizers (Rust) against qkv on one thread, same run.

    RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \\
        tools/.venv/bin/python tools/bench_hf_tokenize.py [BUILD_DIR] [--reps N]

Encodes every line of the fortunes corpus (as tests/test_tokenizer_corpus.c builds it) with the
MiniLM WordPiece and the fixture byte-level BPE, without truncation or padding, with
encode_batch on one thread (the Rust path without per-call Python overhead), then runs
BUILD_DIR/bench/bench_tokenize (default build-release) and prints both and the ratio as JSON
lines. The thread count is forced to 1 here as well.
"""
import json
import os
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_tokenizer_fixtures import FIX, corpus_bytes, split_lines  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    args = [a for a in sys.argv[1:]]
    reps = 5
    if "--reps" in args:
        i = args.index("--reps")
        reps = int(args[i + 1])
        del args[i:i + 2]
    build = args[0] if args else os.path.join(ROOT, "build-release")
    data = corpus_bytes()
    lines = [l.decode("utf-8", "replace") for l in split_lines(data)]
    hf = {}
    for name, path in (("wordpiece-minilm", "minilm/tokenizer.json"),
                       ("bpe-bytelevel", "bpe/tokenizer.json")):
        tok = Tokenizer.from_file(os.path.join(FIX, path))
        tok.no_truncation()
        tok.no_padding()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            encs = tok.encode_batch(lines)
            times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        hf[name] = len(data) / 1e6 / med
        print(json.dumps({"bench": "tokenize", "impl": "hf-tokenizers", "tokenizer": name,
                          "threads": 1, "bytes": len(data), "lines": len(lines),
                          "tokens": sum(len(e.ids) for e in encs), "median_ms": round(med * 1e3, 2),
                          "mb_per_s": round(hf[name], 2)}), flush=True)
    exe = os.path.join(build, "bench", "bench_tokenize")
    out = subprocess.run([exe, "--reps", str(reps)], check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        r = json.loads(line)
        print(line)
        print(json.dumps({"bench": "tokenize", "tokenizer": r["tokenizer"],
                          "qkv_over_hf": round(r["mb_per_s"] / hf[r["tokenizer"]], 2)}))


if __name__ == "__main__":
    main()
