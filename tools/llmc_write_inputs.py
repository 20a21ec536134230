#!/usr/bin/env python3
"""llmc_write_inputs.py — inputs for running karpathy/llm.c's CPU trainer (train_gpt2.c) as a
training-speed peer without downloading GPT-2 weights or a dataset: a randomly initialised
GPT-2 124M checkpoint and a file of random tokens, in llm.c's own binary formats. llm.c itself
is not part of qkv; build and run it outside this tree.

  tools/.venv/bin/python tools/llmc_write_inputs.py --out DIR [--ntokens N] [--seed S]

writes DIR/gpt2_124M.bin and DIR/dev/data/tinyshakespeare/tiny_shakespeare_{train,val}.bin,
the paths train_gpt2.c opens relative to its working directory (it prefers tiny_shakespeare
over TinyStories when present), so running the trainer from DIR picks them up.

Checkpoint (gpt2_build_from_checkpoint): 256 int32 header — [0] magic 20240326, [1] version 3
(float32, padded vocabulary), [2] max_seq_len 1024, [3] vocab_size 50257, [4] num_layers 12,
[5] num_heads 12, [6] channels 768, [7] padded_vocab_size 50304, the rest 0 — then float32
parameters in fill_in_parameter_sizes order, each layer-stacked:
  wte [Vp, C] (rows >= V zero), wpe [maxT, C], ln1w [L, C], ln1b [L, C], qkvw [L, 3C, C],
  qkvb [L, 3C], attprojw [L, C, C], attprojb [L, C], ln2w [L, C], ln2b [L, C],
  fcw [L, 4C, C], fcb [L, 4C], fcprojw [L, C, 4C], fcprojb [L, C], lnfw [C], lnfb [C]
(matrices as [out, in], as llm.c's train_gpt2.py writes them from nn.Linear). Init is GPT-2's:
weights N(0, 0.02), the two residual projections N(0, 0.02/sqrt(2L)), biases 0, LayerNorm 1/0.
Tokens (dataloader.h): 256 int32 header — [0] magic 20240520, [1] version 1, [2] ntokens — then
ntokens uint16 ids uniform in [0, 50257)."""
import argparse
import os

import numpy as np

MAXT, V, VP, L, NH, C = 1024, 50257, 50304, 12, 12, 768


def write_checkpoint(path, rng):
    header = np.zeros(256, np.int32)
    header[:8] = [20240326, 3, MAXT, V, L, NH, C, VP]
    std, proj_std = 0.02, 0.02 / np.sqrt(2 * L)

    def normal(shape, s):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(s))

    wte = normal((VP, C), std)
    wte[V:] = 0.0
    tensors = [
        wte, normal((MAXT, C), std),
        np.ones((L, C), np.float32), np.zeros((L, C), np.float32),        # ln1w, ln1b
        normal((L, 3 * C, C), std), np.zeros((L, 3 * C), np.float32),      # qkvw, qkvb
        normal((L, C, C), proj_std), np.zeros((L, C), np.float32),         # attprojw, attprojb
        np.ones((L, C), np.float32), np.zeros((L, C), np.float32),         # ln2w, ln2b
        normal((L, 4 * C, C), std), np.zeros((L, 4 * C), np.float32),      # fcw, fcb
        normal((L, C, 4 * C), proj_std), np.zeros((L, C), np.float32),     # fcprojw, fcprojb
        np.ones(C, np.float32), np.zeros(C, np.float32),                   # lnfw, lnfb
    ]
    n = 0
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for t in tensors:
            f.write(np.ascontiguousarray(t, np.float32).tobytes())
            n += t.size
    return n


def write_tokens(path, ntokens, rng):
    header = np.zeros(256, np.int32)
    header[:3] = [20240520, 1, ntokens]
    toks = rng.integers(0, V, ntokens).astype(np.uint16)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(toks.tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--ntokens", type=int, default=1 << 20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    ck = os.path.join(a.out, "gpt2_124M.bin")
    n = write_checkpoint(ck, rng)
    data = os.path.join(a.out, "dev", "data", "tinyshakespeare")
    for split in ("train", "val"):
        write_tokens(os.path.join(data, f"tiny_shakespeare_{split}.bin"), a.ntokens, rng)
    print(f"{ck}: {n} parameters ({os.path.getsize(ck)} bytes); "
          f"{a.ntokens} random tokens each in {data}/tiny_shakespeare_{{train,val}}.bin")


if __name__ == "__main__":
    main()
