#!/usr/bin/env python3
"""dtype_accuracy.py QKV [MODEL_DIR] [--dtypes bf16,f16,int8] — issue 18's embedding accuracy
per dtype: `qkv embed --dtype D` against `--dtype f32` on two inputs,
  - the 201 sentences of tests/fixtures/embed/sentences.txt (stress lines included), and
  - 600 fortune lines (files computers, science, literature, wisdom of /usr/share/games/fortunes,
    first lines of over 20 characters, in file order),
printing per dtype the cosine of each sentence's embedding to f32's (min, mean) and, on the
fortunes, retrieval: the first 100 lines as queries against the other 500 (dot products of the
normalized embeddings), mean top-10 overlap with f32's top 10 and how many top-1 agree.
Needs numpy only. Exit 77 (skip) when the fortunes corpus is missing."""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORTUNES = ["computers", "science", "literature", "wisdom"]


def fortune_lines(n=600):
    out = []
    for name in FORTUNES:
        path = os.path.join("/usr/share/games/fortunes", name)
        if not os.path.isfile(path):
            print(f"SKIP: {path} missing (apt-get install fortunes)")
            sys.exit(77)
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if len(line) > 20 and line != "%":
                    out.append(line)
    # in file order (as the bf16 measurement took them), capped at n
    return out[:n]


def embed(qkv, model, lines, dtype, tmp):
    """lines: a list of texts, or the path of a file whose lines qkv embeds as they are."""
    src = lines
    if not isinstance(lines, str):
        src = os.path.join(tmp, "in.txt")
        with open(src, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    out = os.path.join(tmp, f"out_{dtype}.npy")
    subprocess.run([qkv, "embed", "--model", model, "--dtype", dtype, "--format", "npy",
                    "--out", out, src], check=True)
    e = np.load(out).astype(np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("qkv")
    p.add_argument("model", nargs="?", default=os.path.join(ROOT, "models/all-MiniLM-L6-v2"))
    p.add_argument("--dtypes", default="bf16,f16,int8")
    a = p.parse_args()
    fixture = os.path.join(ROOT, "tests/fixtures/embed/sentences.txt")  # bytes as they are
    with open(fixture, "rb") as f:
        n_fixture = len(f.read().splitlines())
    fort = fortune_lines()
    with tempfile.TemporaryDirectory() as tmp:
        ref_fix = embed(a.qkv, a.model, fixture, "f32", tmp)
        ref_fort = embed(a.qkv, a.model, fort, "f32", tmp)
        q, d = ref_fort[:100], ref_fort[100:]
        top_ref = np.argsort(-(q @ d.T), axis=1)[:, :10]
        print(f"inputs: {n_fixture} fixture sentences, {len(fort)} fortune lines")
        print("| dtype | fixture cos min | fixture cos mean | fortunes cos min | fortunes cos mean"
              " | top-10 overlap | top-1 same |")
        print("|---|---|---|---|---|---|---|")
        for dt in a.dtypes.split(","):
            fx = (embed(a.qkv, a.model, fixture, dt, tmp) * ref_fix).sum(1)
            ef = embed(a.qkv, a.model, fort, dt, tmp)
            fo = (ef * ref_fort).sum(1)
            top = np.argsort(-(ef[:100] @ ef[100:].T), axis=1)[:, :10]
            overlap = np.mean([len(set(top[i]) & set(top_ref[i])) / 10 for i in range(100)])
            same1 = int((top[:, 0] == top_ref[:, 0]).sum())
            print(f"| {dt} | {fx.min():.5f} | {fx.mean():.5f} | {fo.min():.5f} | {fo.mean():.5f}"
                  f" | {overlap:.3f} | {same1}/100 |", flush=True)


if __name__ == "__main__":
    main()
