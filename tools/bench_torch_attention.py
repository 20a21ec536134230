#!/usr/bin/env python3
"""bench_torch_attention.py — PyTorch's scaled_dot_product_attention (CPU) on the shapes of
bench/bench_attention.c, printing the same JSON lines (op, shape, threads, median_ms, gflops)
with "impl": "torch", so the two outputs can be joined on (op, B, Tq, Tk, Hq, Hk, D, causal).

Usage: tools/.venv/bin/python tools/bench_torch_attention.py [--quick] [--threads N]
       [--runs N] [--only fwd|bwd|decode] [--dtype f32|bf16]

--dtype bf16: q, k, v and dout are torch.bfloat16 tensors (the same values rounded; the
padding mask stays boolean), so SDPA runs its bf16 CPU kernels; the records carry "dtype",
to be joined with bench_attention --bf16's "bf16_median_ms".

Layouts: qkv uses [B, T, H, D]; SDPA takes [B, H, T, D], so the inputs are created in
[B, H, T, D] directly (a transpose would be charged to torch otherwise). Causal with Tq == Tk
is is_causal=True (top-left and bottom-right alignment agree there). Padding (BERT shapes)
is a boolean key mask [B, 1, 1, Tk], as a BERT model passes it. GQA decode uses enable_gqa.
The backward times out.backward(dout) after a forward that is not timed (autograd needs one,
so the forward is run outside the timer with requires_grad inputs, then backward is timed).
FLOPs: forward 4·B·Hq·Tq·Tk·D, halved when causal and Tq == Tk; backward 2.5x forward.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def shapes(quick, only):
    out = []
    bt = [(8, 512), (4, 1024), (2, 2048), (1, 4096), (1, 8192)]
    hd = [(32, 64), (16, 128)]
    for op in ("attention_fwd", "attention_bwd"):
        if only and not op.endswith(only):
            continue
        for b, t in bt[: 2 if quick else 5]:
            for h, d in hd:
                for c in (0, 1):
                    out.append(dict(op=op, tag="set", B=b, Tq=t, Tk=t, Hq=h, Hk=h, D=d, causal=c, padded=0))
        for t in (128, 384, 512):
            for b in (1, 8, 32):
                if quick and not (t == 512 and b == 8):
                    continue
                out.append(dict(op=op, tag="bert", B=b, Tq=t, Tk=t, Hq=12, Hk=12, D=64, causal=0, padded=1))
        out.append(dict(op=op, tag="gpt2", B=1, Tq=1024, Tk=1024, Hq=12, Hk=12, D=64, causal=1, padded=0))
    if not only or only == "decode":
        tk = 1024
        while tk <= 32768:
            if not quick or tk == 4096:
                out.append(dict(op="decode", tag="gqa", B=1, Tq=1, Tk=tk, Hq=32, Hk=8, D=128, causal=1, padded=0))
            tk *= 2
    return out


def flops(s):
    f = 4.0 * s["B"] * s["Hq"] * s["Tq"] * s["Tk"] * s["D"]
    if s["causal"] and s["Tq"] == s["Tk"]:
        f *= 0.5
    if s["op"] == "attention_bwd":
        f *= 2.5
    return f


def run(s, runs, dtype):
    g = torch.Generator().manual_seed(0)
    B, Tq, Tk, Hq, Hk, D = s["B"], s["Tq"], s["Tk"], s["Hq"], s["Hk"], s["D"]
    bwd = s["op"] == "attention_bwd"
    q = (torch.rand(B, Hq, Tq, D, generator=g) * 2 - 1).to(dtype).requires_grad_(bwd)
    k = (torch.rand(B, Hk, Tk, D, generator=g) * 2 - 1).to(dtype).requires_grad_(bwd)
    v = (torch.rand(B, Hk, Tk, D, generator=g) * 2 - 1).to(dtype).requires_grad_(bwd)
    mask = None
    if s["padded"]:
        lens = [Tk - (Tk * (i % 5)) // 10 for i in range(B)]
        mask = torch.zeros(B, 1, 1, Tk, dtype=torch.bool)
        for i, n in enumerate(lens):
            mask[i, :, :, :n] = True
    causal = bool(s["causal"]) and Tq == Tk  # decode (Tq = 1) sees the whole cache either way
    kw = dict(attn_mask=mask, is_causal=causal)
    if Hq != Hk:
        kw["enable_gqa"] = True

    def fwd():
        return F.scaled_dot_product_attention(q, k, v, **kw)

    times = []
    if not bwd:
        with torch.no_grad():
            fwd()
            for _ in range(runs):
                t0 = time.perf_counter()
                fwd()
                times.append(time.perf_counter() - t0)
    else:
        dout = torch.rand(B, Hq, Tq, D, generator=g).to(dtype)
        o = fwd()
        o.backward(dout)
        for _ in range(runs):
            q.grad = k.grad = v.grad = None
            o = fwd()
            t0 = time.perf_counter()
            o.backward(dout)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--only", default=None)
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    runs = a.runs or (3 if a.quick else 5)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    for s in shapes(a.quick, a.only):
        med = run(s, runs, dtype)
        rec = dict(s, impl="torch", dtype=a.dtype, torch=torch.__version__, threads=torch.get_num_threads(),
                   runs=runs, median_ms=round(med * 1e3, 3), gflops=round(flops(s) / med * 1e-9, 1))
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
