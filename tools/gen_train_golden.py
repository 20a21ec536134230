#!/usr/bin/env python3
"""gen_train_golden.py — a tiny GPT-2, its gradients, and a 10-step AdamW run in PyTorch, for
the training tests (loss, backward through the whole model, clipping, AdamW, LR schedule).

Writes, under tests/fixtures/train/:
  gpt2_tiny/           GPT2LMHeadModel (config.json + model.safetensors, save_pretrained):
                       vocab 101, n_positions 32, n_embd 32, 2 layers, 4 heads, gelu_new,
                       dropouts 0, layer_norm_epsilon 1e-5, tied embeddings, F32.
                       Init: torch.manual_seed(1234) + HF's init; then every LayerNorm weight
                       and bias and every bias gets + N(0, 0.02) so their gradients are not
                       the trivial ones of ones/zeros.
  batches.safetensors  ids     I32 [S=10, B=2, T=16]   random ids in [0, 101)
                       targets I32 [10, 2, 16]         random ids in [0, 101) (no shift)
  grads.safetensors    one forward/backward on batch 0 from the saved weights:
                       loss    F32 [1]
                       logits  F32 [2, 16, 101]
                       <name>  F32, the gradient of every parameter under its HF name as
                               model.named_parameters() gives it (transformer.wte.weight,
                               transformer.h.0.attn.c_attn.weight, ...). lm_head.weight is tied
                               to transformer.wte.weight and is not a separate parameter: the
                               wte gradient holds both the embedding and the LM-head use.
  adamw.json           hyperparameters, schedule and parameter-group rule of the 10-step run
  steps.safetensors    losses     F32 [10]  loss of step s on batch s, before its update
                       grad_norms F32 [10]  total L2 norm of all gradients before clipping
                       lrs        F32 [10]  learning rate used by step s
                       final.<name> F32     every parameter after the 10 updates

Loss: logits = model(ids).logits; loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
(mean over all B*T tokens; targets are used as given, not shifted — HF's labels= would shift).

Step s (0-based) of the run, starting from the saved weights:
  lr = lr_max*(s+1)/W                                           if s < W
  lr = lr_min + 0.5*(1 + cos(pi*(s-W)/(S-W)))*(lr_max - lr_min)  otherwise
  param_group["lr"] = lr; zero_grad; loss on batch s; backward;
  total = clip_grad_norm_(params, clip); AdamW step (torch.optim.AdamW, foreach=False,
  fused=False: the single-tensor path). Weight decay applies to the 2-D weights only
  (wte, wpe, c_attn/c_proj/c_fc weights); biases and LayerNorm parameters have none.
The clip threshold is chosen so that clipping is active on some steps and not on others (the
script checks this and prints the pre-clip norms).

Everything runs in float32 on one thread with torch.use_deterministic_algorithms(True), so a
rerun reproduces the files (config.json records the transformers version that wrote it).
The script reloads the saved model and checks that its batch-0 loss equals grads' "loss".
Usage: tools/.venv/bin/python tools/gen_train_golden.py
tools/gen_train_golden_arch.py makes the same files for a tiny Llama and a tiny BERT masked LM
(tests/fixtures/train/llama_tiny/, bert_tiny/), with this script's hyperparameters."""
import json
import math
import os
import shutil
import struct

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "train")
MODEL_DIR = os.path.join(OUT, "gpt2_tiny")

V, NPOS, C, L, H = 101, 32, 32, 2, 4
S, B, T = 10, 2, 16
HP = dict(lr_max=1e-2, lr_min=1e-3, warmup_steps=3, total_steps=S, schedule="cosine",
          beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip_grad_norm=1.25)


def write_safetensors(path, tensors):
    header = {}
    blobs, off = [], 0
    for name, arr in tensors:
        dt = {np.dtype("float32"): "F32", np.dtype("int32"): "I32",
              np.dtype("int64"): "I64"}[arr.dtype]
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def f32(t):
    return t.detach().cpu().numpy().astype(np.float32)


def lr_at(s):
    W, N = HP["warmup_steps"], HP["total_steps"]
    if s < W:
        return HP["lr_max"] * (s + 1) / W
    ratio = (s - W) / (N - W)
    return HP["lr_min"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (HP["lr_max"] - HP["lr_min"])


def decays(name, p):
    return p.dim() == 2


def loss_of(model, ids, targets):
    logits = model(torch.from_numpy(ids).long()).logits
    loss = F.cross_entropy(logits.view(-1, V), torch.from_numpy(targets).long().view(-1))
    return loss, logits


def load():
    m = GPT2LMHeadModel.from_pretrained(MODEL_DIR, dtype=torch.float32, attn_implementation="eager")
    m.train()  # dropouts are 0, so train() and eval() agree; train() is what a trainer uses
    assert m.lm_head.weight is m.transformer.wte.weight, "lm_head is not tied to wte"
    names = [n for n, _ in m.named_parameters()]
    assert "lm_head.weight" not in names, names
    return m


def build_model():
    torch.manual_seed(1234)
    c = GPT2Config(vocab_size=V, n_positions=NPOS, n_embd=C, n_layer=L, n_head=H,
                   activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                   attn_pdrop=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                   bos_token_id=0, eos_token_id=1)
    m = GPT2LMHeadModel._from_config(c, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.02 * torch.randn(p.shape))
    shutil.rmtree(MODEL_DIR, ignore_errors=True)
    m.save_pretrained(MODEL_DIR, safe_serialization=True)
    p = os.path.join(MODEL_DIR, "generation_config.json")
    if os.path.exists(p):
        os.remove(p)
    return m


def main():
    hf_logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    live = build_model()

    rng = np.random.default_rng(20240611)
    ids = rng.integers(0, V, (S, B, T)).astype(np.int32)
    targets = rng.integers(0, V, (S, B, T)).astype(np.int32)
    write_safetensors(os.path.join(OUT, "batches.safetensors"),
                      [("ids", ids), ("targets", targets)])

    # Gradients of batch 0 from the weights as saved (reloaded from disk).
    model = load()
    saved = dict(model.named_parameters())
    for n, p in live.named_parameters():
        assert torch.equal(p, saved[n]), f"{n} differs after save/reload"
    loss, logits = loss_of(model, ids[0], targets[0])
    loss.backward()
    grads = [(n, f32(p.grad)) for n, p in model.named_parameters()]
    write_safetensors(os.path.join(OUT, "grads.safetensors"),
                      [("loss", np.array([loss.item()], np.float32)), ("logits", f32(logits))] + grads)
    g0 = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for _, g in grads))
    print(f"grads: loss {loss.item():.6f} (ln V = {math.log(V):.6f}), |grad| {g0:.4f}, "
          f"{len(grads)} parameters, {sum(g.size for _, g in grads)} values")

    # Independent check: a fresh reload gives the same batch-0 loss.
    with torch.no_grad():
        again, _ = loss_of(load(), ids[0], targets[0])
    assert again.item() == loss.item(), (again.item(), loss.item())

    # The 10-step AdamW run, from the saved weights.
    model = load()
    named = list(model.named_parameters())
    params = [p for _, p in named]
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": HP["weight_decay"]},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=HP["lr_max"], betas=(HP["beta1"], HP["beta2"]),
                            eps=HP["eps"], foreach=False, fused=False)
    losses, norms, lrs = [], [], []
    for s in range(S):
        lr = lr_at(s)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_of(model, ids[s], targets[s])
        loss.backward()
        total = torch.nn.utils.clip_grad_norm_(params, HP["clip_grad_norm"])
        opt.step()
        losses.append(loss.item())
        norms.append(total.item())
        lrs.append(lr)
        print(f"step {s}: lr {lr:.6f} loss {loss.item():.6f} grad norm {total.item():.6f}"
              f"{'  (clipped)' if total.item() > HP['clip_grad_norm'] else ''}")
    clipped = [n > HP["clip_grad_norm"] for n in norms]
    assert any(clipped) and not all(clipped), f"clip {HP['clip_grad_norm']} is not selective: {norms}"
    write_safetensors(os.path.join(OUT, "steps.safetensors"), [
        ("losses", np.array(losses, np.float32)),
        ("grad_norms", np.array(norms, np.float32)),
        ("lrs", np.array(lrs, np.float32)),
    ] + [("final." + n, f32(p)) for n, p in named])

    meta = dict(HP)
    meta.update({
        "steps": S, "batch": B, "seq": T, "vocab": V,
        "optimizer": "torch.optim.AdamW(foreach=False, fused=False), amsgrad=False, maximize=False",
        "lr_rule": "s < warmup_steps: lr_max*(s+1)/warmup_steps; else ratio=(s-warmup_steps)/"
                   "(total_steps-warmup_steps), lr = lr_min + 0.5*(1+cos(pi*ratio))*(lr_max-lr_min);"
                   " s is 0-based",
        "step_rule": "zero_grad; loss = cross_entropy(logits.view(-1,V), targets[s].view(-1)) "
                     "(mean); backward; total = clip_grad_norm_(all params, clip_grad_norm) "
                     "(L2 over all gradients, scale by clip/(total+1e-6) if total > clip); "
                     "AdamW step with weight decay decoupled: p *= 1 - lr*wd before the Adam update",
        "adam_rule": "per parameter, t = s+1: m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g;"
                     " p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps) (m, v start at 0;"
                     " torch's single-tensor AdamW, eps added after the bias correction of v)",
        "decay_rule": "weight_decay on parameters with 2 dims (wte, wpe, attn.c_attn.weight, "
                      "attn.c_proj.weight, mlp.c_fc.weight, mlp.c_proj.weight); 0 on biases and "
                      "LayerNorm weights/biases",
        "decay": [n for n, p in named if decays(n, p)],
        "no_decay": [n for n, p in named if not decays(n, p)],
        "clipped_steps": [s for s in range(S) if clipped[s]],
    })
    with open(os.path.join(OUT, "adamw.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")

    total = sum(os.path.getsize(os.path.join(d, fn)) for d in (OUT, MODEL_DIR)
                for fn in os.listdir(d) if os.path.isfile(os.path.join(d, fn)))
    print(f"losses {losses[0]:.4f} -> {losses[-1]:.4f}; clipped steps {meta['clipped_steps']}; "
          f"{total} bytes under {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
