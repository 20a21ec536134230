#!/usr/bin/env python3
"""gen_cls_train_golden.py — fine-tuning golden files for a tiny BertForSequenceClassification,
so the C trainer's classifier can be checked against Hugging Face transformers + PyTorch:
HF's own loss (model(..., labels=...).loss), torch.optim.AdamW with the Trainer's parameter
groups, get_linear_schedule_with_warmup and clip_grad_norm_, as `Trainer` fine-tunes.

Usage: tools/.venv/bin/python tools/gen_cls_train_golden.py   (writes tests/fixtures/train/bert_cls/)

Float32, one thread, deterministic, attn_implementation="eager", dropout 0 (hidden,
attention, classifier), fixed seeds. Models are built with HF's init from a torch seed, every
bias and LayerNorm parameter then perturbed by N(0, 0.02) (so none is all zeros or ones), saved
with save_pretrained and reloaded from disk for every computation.

model/                BertForSequenceClassification: vocab 101, hidden 32, 2 layers, 4 heads,
                      intermediate 64, 32 positions, 2 token types, gelu, layer_norm_eps 1e-12;
                      3 labels id2label {0: negative, 1: neutral, 2: positive},
                      problem_type single_label_classification. Seed 777.
model_multi/          the same encoder config, 4 labels (a, b, c, d), problem_type
                      multi_label_classification (BCEWithLogitsLoss). Seed 778.
model_reg/            num_labels 1 (LABEL_0), problem_type regression (MSELoss). Seed 779.
batches.safetensors   ids, token_type_ids, attention_mask I32 [S=10, B=4, T=16]: sentence pairs
                      ([CLS]=2 A [SEP]=3 B [SEP] then [PAD]=0; types 0 on A, 1 on B), real
                      lengths kv_lens I32 [10, 4] (16, 11, 7, 13); labels I32 [10, 4] in [0, 3);
                      multi F32 [10, 4, 4] multi-hot; reg F32 [10, 4, 1] regression targets.
grads.safetensors     batch 0 on model/: loss [1], logits [4, 3], every parameter's gradient.
grads_multi.safetensors, grads_reg.safetensors   the same on batch 0 for model_multi/ and model_reg/.
steps.safetensors     10 steps on model/: losses [10] (step s on batch s before its update),
                      grad_norms [10] (before clipping), lrs [10], final.<name> every parameter.
adamw.json            the hyperparameters and rules (below), decay / no_decay names,
                      clipped_steps.

Step s: lr = get_linear_schedule_with_warmup(warmup 3, total 10) (lr_max * s / 3 while s < 3
— 0 at step 0 — then lr_max * (10 - s) / 7); zero_grad; loss; backward; clip_grad_norm_(all,
clip); AdamW(lr_max 5e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01 on every parameter
but biases and LayerNorm weights, as transformers' Trainer groups them)."""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_train_golden import f32, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "train", "bert_cls")
V, S, B, T = 101, 10, 4, 16
LENS = (16, 11, 7, 13)
HP = dict(lr_max=5e-3, warmup_steps=3, total_steps=S, schedule="linear (transformers)",
          beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, clip_grad_norm=0.5)


def config(**kw):
    return BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=32, type_vocab_size=2,
                      hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, classifier_dropout=0.0, pad_token_id=0,
                      **kw)


def build(cfg, seed, d):
    torch.manual_seed(seed)
    m = BertForSequenceClassification._from_config(cfg, dtype=torch.float32,
                                                    attn_implementation="eager")
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias") or "LayerNorm" in n:
                p.add_(0.02 * torch.randn(p.shape))
    shutil.rmtree(d, ignore_errors=True)
    m.save_pretrained(d, safe_serialization=True)
    g = os.path.join(d, "generation_config.json")
    if os.path.exists(g):
        os.remove(g)
    return load(d)


def load(d):
    m = BertForSequenceClassification.from_pretrained(d, dtype=torch.float32,
                                                      attn_implementation="eager")
    m.train()  # every dropout is 0: train() and eval() agree
    return m


def batches():
    rng = np.random.default_rng(20241206)
    kv = np.tile(np.array(LENS, np.int32), (S, 1))
    ids = np.zeros((S, B, T), np.int32)
    types = np.zeros((S, B, T), np.int32)
    for s in range(S):
        for b in range(B):
            n = LENS[b]
            a = int(rng.integers(1, n - 3))  # tokens of text A
            body = rng.integers(5, V, n).astype(np.int32)
            body[0], body[1 + a], body[n - 1] = 2, 3, 3
            ids[s, b, :n] = body
            types[s, b, 2 + a:n] = 1
    mask = (np.arange(T)[None, None, :] < kv[:, :, None]).astype(np.int32)
    labels = rng.integers(0, 3, (S, B)).astype(np.int32)
    multi = (rng.random((S, B, 4)) < 0.4).astype(np.float32)
    reg = rng.normal(0.0, 1.0, (S, B, 1)).astype(np.float32)
    return dict(ids=ids, token_type_ids=types, attention_mask=mask, kv_lens=kv, labels=labels,
                multi=multi, reg=reg)


def forward(m, bt, s, labels):
    t = lambda k: torch.from_numpy(bt[k][s]).long()
    out = m(input_ids=t("ids"), attention_mask=t("attention_mask"), token_type_ids=t("token_type_ids"),
            labels=labels)
    return out.loss, out.logits


def one_step(d, bt, labels, path):
    m = load(d)
    loss, logits = forward(m, bt, 0, labels)
    loss.backward()
    grads = [(n, f32(p.grad)) for n, p in m.named_parameters()]
    write_safetensors(path, [("loss", np.array([loss.item()], np.float32)),
                             ("logits", f32(logits))] + grads)
    print(f"{os.path.relpath(path, ROOT)}: loss {loss.item():.6f}, {len(grads)} parameters")


def decays(name):  # transformers' Trainer: no decay for biases and LayerNorm weights
    return not (name.endswith("bias") or "LayerNorm" in name)


def ten_steps(d, bt):
    m = load(d)
    named = list(m.named_parameters())
    assert all(decays(n) == (p.dim() == 2) for n, p in named)
    groups = [{"params": [p for n, p in named if decays(n)], "weight_decay": HP["weight_decay"]},
              {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=HP["lr_max"], betas=(HP["beta1"], HP["beta2"]),
                            eps=HP["eps"], foreach=False, fused=False)
    sched = get_linear_schedule_with_warmup(opt, HP["warmup_steps"], HP["total_steps"])
    losses, norms, lrs = [], [], []
    for s in range(S):
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad(set_to_none=True)
        loss, _ = forward(m, bt, s, torch.from_numpy(bt["labels"][s]).long())
        loss.backward()
        total = torch.nn.utils.clip_grad_norm_([p for _, p in named], HP["clip_grad_norm"])
        opt.step()
        sched.step()
        losses.append(loss.item())
        norms.append(total.item())
        lrs.append(lr)
        print(f"  step {s}: lr {lr:.6g} loss {loss.item():.6f} grad norm {total.item():.6f}")
    clip = HP["clip_grad_norm"]
    clipped = [n > clip for n in norms]
    assert any(clipped) and not all(clipped), f"clip {clip} is not selective: {norms}"
    assert all(abs(n - clip) > 0.01 * clip for n in norms), f"a norm is too near {clip}: {norms}"
    write_safetensors(os.path.join(OUT, "steps.safetensors"), [
        ("losses", np.array(losses, np.float32)), ("grad_norms", np.array(norms, np.float32)),
        ("lrs", np.array(lrs, np.float32))] + [("final." + n, f32(p)) for n, p in named])
    meta = dict(HP, steps=S, batch=B, seq=T, vocab=V,
                optimizer="torch.optim.AdamW(foreach=False, fused=False)",
                scheduler="transformers.get_linear_schedule_with_warmup(opt, 3, 10): lr(s) = "
                          "lr_max*s/3 for s < 3, else lr_max*max(0, (10-s)/7); s 0-based",
                decay_rule="every parameter but biases and LayerNorm weights (Trainer's groups)",
                decay=[n for n, _ in named if decays(n)],
                no_decay=[n for n, _ in named if not decays(n)],
                clipped_steps=[s for s in range(S) if clipped[s]])
    with open(os.path.join(OUT, "adamw.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"  losses {losses[0]:.4f} -> {losses[-1]:.4f}; clipped {meta['clipped_steps']}")


def main():
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    bt = batches()
    write_safetensors(os.path.join(OUT, "batches.safetensors"),
                      [(k, bt[k]) for k in ("ids", "token_type_ids", "attention_mask", "kv_lens",
                                            "labels", "multi", "reg")])
    names = {0: "negative", 1: "neutral", 2: "positive"}
    single = os.path.join(OUT, "model")
    build(config(num_labels=3, id2label=names, label2id={v: k for k, v in names.items()},
                 problem_type="single_label_classification"), 777, single)
    multi = os.path.join(OUT, "model_multi")
    build(config(num_labels=4, id2label={i: c for i, c in enumerate("abcd")},
                 label2id={c: i for i, c in enumerate("abcd")},
                 problem_type="multi_label_classification"), 778, multi)
    reg = os.path.join(OUT, "model_reg")
    build(config(num_labels=1, problem_type="regression"), 779, reg)
    one_step(single, bt, torch.from_numpy(bt["labels"][0]).long(),
             os.path.join(OUT, "grads.safetensors"))
    one_step(multi, bt, torch.from_numpy(bt["multi"][0]), os.path.join(OUT, "grads_multi.safetensors"))
    one_step(reg, bt, torch.from_numpy(bt["reg"][0]), os.path.join(OUT, "grads_reg.safetensors"))
    ten_steps(single, bt)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("# bert_cls — BertForSequenceClassification fine-tuning golden files\n\n"
                "Written by `tools/gen_cls_train_golden.py` (its docstring describes every file); "
                "do not edit by hand.\n")


if __name__ == "__main__":
    main()
