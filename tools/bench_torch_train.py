#!/usr/bin/env python3
"""bench_torch_train.py — the PyTorch peer of qkv's training benchmark: full training steps of
a randomly initialised GPT-2 124M (transformers GPT2LMHeadModel, float32, CPU).

  tools/.venv/bin/python tools/bench_torch_train.py [--threads N] [--shapes 4x64,8x256]
                                                    [--steps 5] [--warmup 2] [--attn sdpa|eager]
                                                    [--seed 0] [--json]

Model: vocab 50257, n_positions 1024, n_embd 768, 12 layers, 12 heads, gelu_new, all dropouts 0,
tied embeddings (124.4M parameters), HF's random init after torch.manual_seed(seed).
Step: zero_grad(set_to_none=True); logits = model(ids).logits;
      loss = cross_entropy(logits.view(-1, V), targets.view(-1)); backward;
      clip_grad_norm_(params, 1.0); AdamW(lr 1e-4, torch's defaults otherwise — on CPU that is
      the single-tensor path unless torch changes its default; the JSON records foreach/fused).
Each shape B x T runs in its own subprocess (so its peak RSS, getrusage ru_maxrss, is its own):
--warmup untimed steps, then --steps timed ones on fresh random ids/targets each step (drawn
outside the timer). Prints median/min step time, tokens/s (B*T / median) and peak RSS; --json
prints one JSON line per shape instead ("impl": "torch").
Attention is transformers' default (sdpa) unless --attn eager."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def run_one(a, B, T):
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0)
    model = GPT2LMHeadModel._from_config(cfg, dtype=torch.float32, attn_implementation=a.attn)
    model.train()
    V = cfg.vocab_size
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(a.seed + 1)

    def step():
        ids = torch.randint(0, V, (B, T), generator=g)
        targets = torch.randint(0, V, (B, T), generator=g)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(ids).logits
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return time.perf_counter() - t0, loss.item()

    for _ in range(a.warmup):
        step()
    times, losses = [], []
    for _ in range(a.steps):
        dt, loss = step()
        times.append(dt)
        losses.append(loss)
    med = statistics.median(times)
    d = opt.defaults
    path = "?"
    try:  # what torch resolves foreach=None/fused=None to for these (CPU) tensors
        from torch.optim.optimizer import _default_to_fused_or_foreach
        fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
        path = "fused" if (d.get("fused") or fused) else "foreach" if foreach else "single-tensor"
    except Exception:
        pass
    return dict(impl="torch", model="gpt2-124m", B=B, T=T, threads=torch.get_num_threads(),
                attn=model.config._attn_implementation, warmup=a.warmup, steps=a.steps,
                median_ms=round(med * 1e3, 2), min_ms=round(min(times) * 1e3, 2),
                tokens_per_s=round(B * T / med, 1),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                params_m=round(sum(p.numel() for p in params) / 1e6, 2),
                optimizer=f"AdamW(lr=1e-4, foreach={d.get('foreach')}, fused={d.get('fused')}: {path})",
                last_loss=round(losses[-1], 4), torch=torch.__version__)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="4x64,8x256")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one BxT, print its JSON
    a = ap.parse_args()
    if a.one:
        B, T = map(int, a.one.lower().split("x"))
        print(json.dumps(run_one(a, B, T)), flush=True)
        return 0
    rc = 0
    for shape in a.shapes.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--one", shape.strip(),
               "--threads", str(a.threads), "--steps", str(a.steps), "--warmup", str(a.warmup),
               "--attn", a.attn, "--seed", str(a.seed)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        if p.returncode != 0 or not line.startswith("{"):
            print(f"{shape}: failed (exit {p.returncode})", file=sys.stderr)
            rc = 1
            continue
        r = json.loads(line)
        if a.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"torch {r['B']}x{r['T']} threads {r['threads']} attn {r['attn']}: step median "
                  f"{r['median_ms']:.1f} ms, min {r['min_ms']:.1f} ms, {r['tokens_per_s']:.0f} tok/s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['optimizer']})", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
