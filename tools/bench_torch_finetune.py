#!/usr/bin/env python3
"""bench_torch_finetune.py — the PyTorch peer of qkv's fine-tuning step (docs/PERFORMANCE.md):
the time of one optimizer step of a BERT sequence classifier, full and LoRA, in eager PyTorch.

  tools/.venv/bin/python tools/bench_torch_finetune.py --model models/all-MiniLM-L6-v2 \\
      [--threads 2] [--batch 32] [--seq 128] [--labels 10] [--steps 10] [--warmup 3]
      [--modes full,lora] [--fused] [--attn sdpa|eager] [--json]

Model: AutoModelForSequenceClassification.from_pretrained(DIR, num_labels=--labels),
attn_implementation --attn (default "sdpa", transformers' default for BERT: PyTorch's
scaled_dot_product_attention; "eager": matmul, softmax, matmul), float32, CPU,
train mode with the config's dropout. LoRA: peft LoraConfig(SEQ_CLS, r 8, alpha 16, dropout 0.1,
target_modules query,value); the head trained in full, the rest frozen.
Step (what Trainer does per batch): zero_grad(set_to_none=True); loss = model(ids, mask,
labels).loss (cross-entropy); backward; clip_grad_norm_(trainable, 1.0); AdamW step (lr 2e-5,
weight decay 0.01 except biases and LayerNorm weights, torch's default implementation; --fused
for fused=True, Trainer's default "adamw_torch_fused").
Inputs: --batch x --seq random token ids (no padding, every mask 1), random labels, drawn once
with torch.manual_seed(0) outside the timer. --warmup untimed steps, then --steps timed ones;
prints the median and min step time per mode, with torch's version and thread count; --json
prints one JSON line per mode ("impl": "torch").
"""
import argparse
import json
import statistics
import time


def bench(a, mode):
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        a.model, num_labels=a.labels, attn_implementation=a.attn)
    if mode == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16,
                                                 lora_dropout=0.1,
                                                 target_modules=["query", "value"]))
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = lambda n: "bias" in n or "LayerNorm" in n or "layernorm" in n.lower()
    groups = [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
              {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=2e-5, **({"fused": True} if a.fused else {}))
    V = model.config.vocab_size
    ids = torch.randint(0, V, (a.batch, a.seq))
    mask = torch.ones_like(ids)
    labels = torch.randint(0, a.labels, (a.batch,))
    params = [p for _, p in named]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"impl": "torch", "mode": mode, "batch": a.batch, "seq": a.seq,
            "median_s": statistics.median(times), "min_s": min(times), "steps": a.steps,
            "warmup": a.warmup, "trainable_params": sum(p.numel() for p in params),
            "optimizer": "AdamW fused" if a.fused else "AdamW (torch default)",
            "attention": a.attn, "torch": torch.__version__, "threads": torch.get_num_threads()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--modes", default="full,lora")
    ap.add_argument("--fused", action="store_true")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    for mode in a.modes.split(","):
        if mode not in ("full", "lora"):
            raise SystemExit(f"bench_torch_finetune: unknown mode {mode}")
        r = bench(a, mode)
        if a.json:
            print(json.dumps(r))
        else:
            print(f"{mode:4s} B {a.batch} T {a.seq}: median {r['median_s']:.3f} s/step, min "
                  f"{r['min_s']:.3f} s ({r['trainable_params']} trainable parameters; torch "
                  f"{r['torch']}, {r['threads']} threads, {r['optimizer']}, {r['attention']} attention)")


if __name__ == "__main__":
    main()
