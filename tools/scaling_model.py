#!/usr/bin/env python3
"""scaling_model.py — the alpha-beta model of docs/SCALING.md: predicted step time and
efficiency of data-parallel GPT-2 training (qkv train under mpirun) for 8-256 ranks at
10 / 25 / 100 Gb/s, with and without overlapping the all-reduce with the backward, and with
ZeRO-1. Standard library only; prints the Markdown tables the page holds.

Model (per optimizer step, weak scaling: every rank keeps its tokens per step):
  compute  Tc = (6 P + 12 L T C) * tokens_per_rank / F          (qkv_trainer_step_flops)
  bucket   Tb = 2 log2(p) alpha + 2 (p-1)/p * b / beta + (p-1)/p * b / gamma
           (Rabenseifner: reduce-scatter by recursive halving + all-gather by doubling;
            gamma = the rate at which a rank adds floats)
  all-reduce  Ta = n_buckets * Tb, n_buckets = ceil(4 P' / b) (P' = padded parameter count)
  no overlap  T = Tc + Ta
  overlap     T = Tc/3 + max(2 Tc/3, Ta) + Tb: the buckets can only hide behind the backward
              (2/3 of the FLOPs), and the last one starts when the backward ends
  ZeRO-1      reduce-scatter + all-gather moves the same bytes as the all-reduce: the same
              Ta without overlap; the AdamW moments (8 bytes per parameter) are divided by p.
              With overlap only the reduce-scatter half hides behind the backward: the
              weights' all-gather runs after the sliced AdamW step, before the next forward,
              T = Tc/3 + max(2 Tc/3, nb Trs) + Trs + nb Tag + 2 log2(p) alpha (the gradient
              norm's small all-reduce), Trs = log2(p) alpha + (p-1)/p b (1/beta + 1/gamma),
              Tag = log2(p) alpha + (p-1)/p b / beta.
  efficiency  E = Tc / T
"""
import math

ALPHA = 10e-6          # s per message on the network (assumed: TCP over Ethernet ~ 10-50 us)
GAMMA = 5e9            # bytes/s a rank sums floats (assumed; memory-bound add of two streams)
BUCKET = 4 << 20       # bytes: the loop's BUCKET (2^20 floats)
FLOPS = 32 * 23.1e9    # a node: 32 cores at the per-core rate measured here (qkv bench train)
TOKENS = 16 * 1024     # tokens per rank per step: 16 sequences of 1024
MODELS = {             # name: (params, layers, width, context)
    "GPT-2 124M": (124_439_808, 12, 768, 1024),
    "GPT-2 350M": (354_823_168, 24, 1024, 1024),
}
LINKS = {"10 Gb/s": 10e9 / 8, "25 Gb/s": 25e9 / 8, "100 Gb/s": 100e9 / 8}
RANKS = [8, 16, 32, 64, 128, 256]


GLOBAL = 512 * 1024    # strong scaling: GPT-2's batch of ~0.5M tokens per step, split over p


def step(params, L, C, T, p, beta, tokens):
    tc = (6 * params + 12 * L * T * C) * tokens / FLOPS
    nb = math.ceil(4 * params / BUCKET)
    tb = 2 * math.log2(p) * ALPHA + 2 * (p - 1) / p * BUCKET / beta + (p - 1) / p * BUCKET / GAMMA
    ta = nb * tb
    trs = math.log2(p) * ALPHA + (p - 1) / p * BUCKET * (1 / beta + 1 / GAMMA)
    tag = math.log2(p) * ALPHA + (p - 1) / p * BUCKET / beta
    tz = tc / 3 + max(2 * tc / 3, nb * trs) + trs + nb * tag + 2 * math.log2(p) * ALPHA
    return tc, ta, tc + ta, tc / 3 + max(2 * tc / 3, ta) + tb, tz


def table(P, L, C, T, tokens_of):
    print("| ranks | tokens/rank | compute s | " +
          " | ".join(f"{k}: all-reduce s, E, E overlap, E overlap ZeRO-1" for k in LINKS) + " |")
    print("|---|---|---|" + "---|" * len(LINKS))
    for p in RANKS:
        tok = tokens_of(p)
        cells = []
        for beta in LINKS.values():
            tc, ta, t0, t1, tz = step(P, L, C, T, p, beta, tok)
            cells.append(f"{ta:.2f}, {tc / t0:.0%}, {tc / t1:.0%}, {tc / tz:.0%}")
        print(f"| {p} | {tok} | {tc:.2f} | " + " | ".join(cells) + " |")


def main():
    for name, (P, L, C, T) in MODELS.items():
        print(f"\n### {name}\n")
        print(f"{math.ceil(4 * P / BUCKET)} buckets of 4 MiB; weights + gradients + AdamW moments "
              f"{16 * P / 2**30:.2f} GiB per rank; with ZeRO-1 {8 * P / 2**30:.2f} + "
              f"{8 * P / 2**30:.2f}/p GiB (reduce-scatter + all-gather move the same bytes as "
              f"the all-reduce, but the all-gather cannot hide behind the backward).\n")
        print(f"Weak scaling ({TOKENS} tokens per rank per step):\n")
        table(P, L, C, T, lambda p: TOKENS)
        print(f"\nStrong scaling (a global batch of {GLOBAL} tokens per step):\n")
        table(P, L, C, T, lambda p: GLOBAL // p)


if __name__ == "__main__":
    main()
