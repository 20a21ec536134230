#!/usr/bin/env python3
"""gen_train_golden_arch.py — training golden files for a tiny Llama and a tiny BERT masked LM,
made exactly as tools/gen_train_golden.py makes the GPT-2 ones (same optimizer, schedule,
clipping and decay rule, imported from there), so the C trainer can be checked against Hugging
Face transformers in PyTorch: every gradient after one step, 10 AdamW steps, final weights.

Usage: tools/.venv/bin/python tools/gen_train_golden_arch.py [--arch llama|bert|all]  (default all)

Common to both architectures
----------------------------
Float32, one thread, torch.use_deterministic_algorithms(True), attn_implementation="eager",
fixed seeds: a rerun with tools/requirements.txt on the same machine writes byte-identical files
(config.json records the transformers version). Another torch build or CPU may move the last
bits (~1e-7 relative), far inside the tests' 1e-4.
Init: torch.manual_seed(seed) + HF's own init, then the perturbations said below, so that no
norm weight is all ones and no bias all zeros. Weights are saved with save_pretrained
(config.json + model.safetensors, F32; generation_config.json is removed) and every gradient and
step is computed from the weights reloaded from disk (checked equal to the ones built). The
script reloads the model directory once more with from_pretrained and checks that batch 0's loss
equals grads' "loss" exactly.

Names: every parameter is saved under the name model.named_parameters() gives it. A tensor used
in two places (tied) is one parameter and appears once, under its first name; its gradient holds
both uses. The aliases are listed under "tied" in adamw.json and in the README.md beside it.

grads*.safetensors   one forward/backward on batch 0 from the saved weights:
                     loss    F32 [1]
                     logits  F32 [B=2, T=16, V=101]
                     <name>  F32, the gradient of every parameter, by HF name
adamw.json           the hyperparameters of tools/gen_train_golden.py (lr 1e-2 -> 1e-3, 3 warmup
                     steps then cosine over 10, betas 0.9/0.95, eps 1e-8, weight decay 0.1) except
                     clip_grad_norm, set per architecture (GPT-2 1.25, Llama 1.6, BERT 5.0) so that
                     clipping is active on some steps and not on others, with no pre-clip norm
                     within 1% of it (checked); the rules in words, "decay" (parameters with 2
                     dims) and "no_decay" (biases, norm weights) name lists, "tied",
                     "clipped_steps"
steps.safetensors    losses     F32 [10]  loss of step s on batch s, before its update
                     grad_norms F32 [10]  total L2 norm of all gradients before clipping
                     lrs        F32 [10]  learning rate used by step s
                     final.<name> F32     every parameter after the 10 updates
                     Step s: set lr; zero_grad; loss on batch s; backward;
                     clip_grad_norm_(all params, clip); torch.optim.AdamW(foreach=False,
                     fused=False) step with weight decay 0.1 on the 2-D parameters only.

tests/fixtures/train/llama_tiny/  (LlamaForCausalLM)
------------------------------------------------
model/               vocab 101, hidden 32, intermediate 64, 2 layers, 4 heads, 2 key/value heads
                     (GQA), head_dim 8, rms_norm_eps 1e-5, rope_theta 10000 (default RoPE),
                     max_position_embeddings 32, silu, no biases, attention dropout 0,
                     tie_word_embeddings False (lm_head.weight is its own parameter).
                     Seed 1234; every RMSNorm weight (input_layernorm, post_attention_layernorm,
                     model.norm) gets + N(0, 0.02).
model_tied/          the same config with tie_word_embeddings True (lm_head.weight is
                     model.embed_tokens.weight and is neither a parameter nor in the file);
                     seed 1235, same perturbation.
batches.safetensors  ids     I32 [S=10, B=2, T=16]  random ids in [0, 101)
                     targets I32 [10, 2, 16]        random ids in [0, 101) (no shift)
grads.safetensors    batch 0 on model/;  grads_tied.safetensors  batch 0 on model_tied/
                     (the tied variant has no 10-step run)
adamw.json, steps.safetensors   the 10-step run of model/
RoPE as HF's Llama: inv_freq[i] = 1/10000^(2i/8) in float32, angle = position * inv_freq,
q' = q*cos + rotate_half(q)*sin where rotate_half pairs element i with i + 4 of each 8-wide head
(the halves, not adjacent pairs); q_proj/k_proj rows are in HF order (no Meta permutation).
Key/value head h serves query heads 2h and 2h+1 (repeat_kv).
Loss: logits = model(ids).logits (positions 0..T-1, causal, no attention_mask);
      loss = F.cross_entropy(logits.view(-1, V), targets.view(-1)), mean over all B*T tokens.

tests/fixtures/train/bert_tiny/  (BertForMaskedLM)
----------------------------------------------
model/               vocab 101, hidden 32, 2 layers, 4 heads, intermediate 64,
                     max_position_embeddings 32, type_vocab_size 2, gelu (erf), layer_norm_eps
                     1e-12, dropouts 0, pad_token_id 0 (HF's default: word embedding row 0 is
                     zero at init and nn.Embedding(padding_idx=0) gives that row no gradient
                     from the lookup; padding positions are the only ones holding id 0, and they
                     get no gradient anyway). MLM head: cls.predictions.transform.dense + gelu +
                     .LayerNorm, then the decoder, whose weight is
                     bert.embeddings.word_embeddings.weight and whose bias is
                     cls.predictions.bias (both tied, see "tied").
                     Seed 4321; every LayerNorm weight and bias and every bias (including
                     cls.predictions.bias) gets + N(0, 0.02).
batches.safetensors  ids            I32 [S=10, B=2, T=16]  random ids in [1, 101) on tokens,
                                                           0 ([PAD]) on padding
                     token_type_ids I32 [10, 2, 16]        random 0/1 at every position
                     kv_lens        I32 [10, 2]            non-padding tokens: 16 and 11
                     attention_mask I32 [10, 2, 16]        1 for j < kv_lens[s, b], else 0
                     labels         I32 [10, 2, 16]        -100 (ignored) except at ~15% of the
                                    non-padding positions (each with probability 0.15; at least
                                    one per batch), where it is a random id in [1, 101)
grads.safetensors    batch 0 on model/
adamw.json, steps.safetensors   the 10-step run of model/
Loss: logits = model(ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
      (positions 0..T-1; padding keys get the dtype's minimum added to their scores, so their
      probabilities are exactly 0); loss = F.cross_entropy(logits.view(-1, V), labels.view(-1),
      ignore_index=-100), the mean over the labelled positions only.
Note: attention.self.key.bias adds q·b_k to every score of a query row, which the softmax
cancels: its true gradient is 0 and both sides compute rounding noise (~1e-12 here), which Adam
(eps 1e-8) turns into tiny updates of either sign. Its final.* values drift from the initial
ones by that noise (adamw.json "key_bias_drift": the largest |final - initial|); compare the
gradient's size and the drift's bound instead (as tests/test_train.c does for GPT-2's c_attn key
bias)."""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file as load_file_np
from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_train_golden import HP, f32, lr_at, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "tests", "fixtures", "train")

V, S, B, T = 101, 10, 2, 16
BERT_LENS = (16, 11)  # non-padding tokens of sequence 0 and 1 in every batch
MLM_PROB = 0.15
# clip_grad_norm of the 10-step runs (GPT-2: 1.25): set so that some steps clip and some do not
LLAMA_CLIP = 1.6
BERT_CLIP = 5.0


# ---------------------------------------------------------------------------------- models

def llama_config(tied):
    return LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                       rms_norm_eps=1e-5,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       max_position_embeddings=32, attention_dropout=0.0, attention_bias=False,
                       mlp_bias=False, hidden_act="silu", tie_word_embeddings=tied,
                       bos_token_id=0, eos_token_id=1)


def bert_config():
    return BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=32, type_vocab_size=2,
                      hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, pad_token_id=0,
                      tie_word_embeddings=True)


def llama_perturbed(name):
    return "norm" in name  # input_layernorm, post_attention_layernorm, model.norm


def bert_perturbed(name):
    return name.endswith("bias") or "LayerNorm" in name


def tied_groups(model):
    """{kept name: [other names of the same tensor]} from named_parameters(remove_duplicate=False)."""
    first, groups = {}, {}
    for n, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            groups.setdefault(first[id(p)], []).append(n)
        else:
            first[id(p)] = n
    return groups


def build(cls, config, seed, perturbed, model_dir):
    torch.manual_seed(seed)
    m = cls._from_config(config, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        for name, p in m.named_parameters():
            if perturbed(name):
                p.add_(0.02 * torch.randn(p.shape))
    shutil.rmtree(model_dir, ignore_errors=True)
    m.save_pretrained(model_dir, safe_serialization=True)
    p = os.path.join(model_dir, "generation_config.json")
    if os.path.exists(p):
        os.remove(p)
    return m


def load(cls, model_dir, expect_tied):
    m = cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    m.train()  # dropouts are 0, so train() and eval() agree; train() is what a trainer uses
    assert tied_groups(m) == expect_tied, (tied_groups(m), expect_tied)
    return m


# --------------------------------------------------------------------------------- batches

def llama_batches():
    rng = np.random.default_rng(20240612)
    ids = rng.integers(0, V, (S, B, T)).astype(np.int32)
    targets = rng.integers(0, V, (S, B, T)).astype(np.int32)
    return {"ids": ids, "targets": targets}


def bert_batches():
    rng = np.random.default_rng(20240613)
    kv_lens = np.tile(np.array(BERT_LENS, np.int32), (S, 1))
    mask = (np.arange(T)[None, None, :] < kv_lens[:, :, None]).astype(np.int32)
    ids = rng.integers(1, V, (S, B, T)).astype(np.int32) * mask  # 0 = [PAD] on padding
    types = rng.integers(0, 2, (S, B, T)).astype(np.int32)
    labels = np.full((S, B, T), -100, np.int32)
    for s in range(S):
        pos = np.flatnonzero(mask[s].reshape(-1))  # non-padding positions of batch s
        pick = pos[rng.random(pos.size) < MLM_PROB]
        if pick.size == 0:
            pick = pos[rng.integers(0, pos.size, 1)]
        labels[s].reshape(-1)[pick] = rng.integers(1, V, pick.size)
        assert (labels[s] != -100).sum() >= 1
    assert (labels[mask == 0] == -100).all()
    return {"ids": ids, "token_type_ids": types, "kv_lens": kv_lens, "attention_mask": mask,
            "labels": labels}


def llama_loss(model, bt, s):
    logits = model(torch.from_numpy(bt["ids"][s]).long()).logits
    loss = F.cross_entropy(logits.view(-1, V), torch.from_numpy(bt["targets"][s]).long().view(-1))
    return loss, logits


def bert_loss(model, bt, s):
    logits = model(torch.from_numpy(bt["ids"][s]).long(),
                   attention_mask=torch.from_numpy(bt["attention_mask"][s]).long(),
                   token_type_ids=torch.from_numpy(bt["token_type_ids"][s]).long()).logits
    loss = F.cross_entropy(logits.view(-1, V), torch.from_numpy(bt["labels"][s]).long().view(-1),
                           ignore_index=-100)
    return loss, logits


# ------------------------------------------------------------------------------ the runs

def decays(name, p):
    return p.dim() == 2


def one_step_grads(cls, model_dir, live, tied, loss_of, bt, path):
    """Gradients of batch 0 from the weights as saved; then a fresh reload's loss must match."""
    model = load(cls, model_dir, tied)
    saved = dict(model.named_parameters())
    assert list(saved) == [n for n, _ in live.named_parameters()]
    for n, p in live.named_parameters():
        assert torch.equal(p, saved[n]), f"{n} differs after save/reload"
    loss, logits = loss_of(model, bt, 0)
    loss.backward()
    grads = [(n, f32(p.grad)) for n, p in model.named_parameters()]
    write_safetensors(path, [("loss", np.array([loss.item()], np.float32)),
                             ("logits", f32(logits))] + grads)
    g0 = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for _, g in grads))
    print(f"{os.path.relpath(path, ROOT)}: loss {loss.item():.6f} (ln V = {math.log(V):.6f}), "
          f"|grad| {g0:.4f}, {len(grads)} parameters, {sum(g.size for _, g in grads)} values")
    with torch.no_grad():
        again, _ = loss_of(load(cls, model_dir, tied), bt, 0)
    assert again.item() == loss.item(), (again.item(), loss.item())
    return dict(grads)


def ten_steps(cls, model_dir, tied, loss_of, bt, out, clip, decay_rule, extra):
    """The 10-step run; HP as GPT-2's except clip_grad_norm, chosen per architecture so that
    clipping is active on some steps and not on others (checked)."""
    hp = dict(HP, clip_grad_norm=clip)
    model = load(cls, model_dir, tied)
    named = list(model.named_parameters())
    params = [p for _, p in named]
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": hp["weight_decay"]},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=hp["lr_max"], betas=(hp["beta1"], hp["beta2"]),
                            eps=hp["eps"], foreach=False, fused=False)
    losses, norms, lrs = [], [], []
    for s in range(S):
        lr = lr_at(s)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_of(model, bt, s)
        loss.backward()
        total = torch.nn.utils.clip_grad_norm_(params, hp["clip_grad_norm"])
        opt.step()
        losses.append(loss.item())
        norms.append(total.item())
        lrs.append(lr)
        print(f"  step {s}: lr {lr:.6f} loss {loss.item():.6f} grad norm {total.item():.6f}"
              f"{'  (clipped)' if total.item() > hp['clip_grad_norm'] else ''}")
    clipped = [n > hp["clip_grad_norm"] for n in norms]
    assert any(clipped) and not all(clipped), f"clip {hp['clip_grad_norm']} is not selective: {norms}"
    # no norm within 1% of the threshold: an implementation 1e-4 off takes the same branch
    assert all(abs(n - clip) > 0.01 * clip for n in norms), f"a norm is too near {clip}: {norms}"
    write_safetensors(os.path.join(out, "steps.safetensors"), [
        ("losses", np.array(losses, np.float32)),
        ("grad_norms", np.array(norms, np.float32)),
        ("lrs", np.array(lrs, np.float32)),
    ] + [("final." + n, f32(p)) for n, p in named])

    meta = dict(hp)
    meta.update({
        "steps": S, "batch": B, "seq": T, "vocab": V,
        "optimizer": "torch.optim.AdamW(foreach=False, fused=False), amsgrad=False, maximize=False",
        "lr_rule": "s < warmup_steps: lr_max*(s+1)/warmup_steps; else ratio=(s-warmup_steps)/"
                   "(total_steps-warmup_steps), lr = lr_min + 0.5*(1+cos(pi*ratio))*(lr_max-lr_min);"
                   " s is 0-based",
        "adam_rule": "per parameter, t = s+1: m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g;"
                     " p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps) (m, v start at 0;"
                     " torch's single-tensor AdamW, eps added after the bias correction of v)",
        "decay_rule": decay_rule,
        "decay": [n for n, p in named if decays(n, p)],
        "no_decay": [n for n, p in named if not decays(n, p)],
        "tied": tied,
        "clipped_steps": [s for s in range(S) if clipped[s]],
    })
    meta.update(extra)
    with open(os.path.join(out, "adamw.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"  losses {losses[0]:.4f} -> {losses[-1]:.4f}; clipped steps {meta['clipped_steps']}")
    return meta


STEP_RULE = ("zero_grad; {loss}; backward; total = clip_grad_norm_(all params, clip_grad_norm) "
             "(L2 over all gradients, scale by clip/(total+1e-6) if total > clip); "
             "AdamW step with weight decay decoupled: p *= 1 - lr*wd before the Adam update")


def tied_lines(tied):
    if not tied:
        return ["- none: every tensor is its own parameter"]
    return [f"- `{k}` is also {', '.join(f'`{a}`' for a in v)} (one parameter, saved and listed "
            f"as `{k}`; its gradient holds every use)" for k, v in tied.items()]


def write_readme(out, title, lines):
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(f"# {title}\n\n" + "\n".join(lines) + "\n")


def run_llama():
    out = os.path.join(TRAIN, "llama_tiny")
    os.makedirs(out, exist_ok=True)
    bt = llama_batches()
    write_safetensors(os.path.join(out, "batches.safetensors"),
                      [("ids", bt["ids"]), ("targets", bt["targets"])])
    print("llama_tiny:")
    mdir, tdir = os.path.join(out, "model"), os.path.join(out, "model_tied")
    live = build(LlamaForCausalLM, llama_config(False), 1234, llama_perturbed, mdir)
    one_step_grads(LlamaForCausalLM, mdir, live, {}, llama_loss, bt,
                   os.path.join(out, "grads.safetensors"))
    tied = {"model.embed_tokens.weight": ["lm_head.weight"]}
    live_t = build(LlamaForCausalLM, llama_config(True), 1235, llama_perturbed, tdir)
    one_step_grads(LlamaForCausalLM, tdir, live_t, tied, llama_loss, bt,
                   os.path.join(out, "grads_tied.safetensors"))
    meta = ten_steps(LlamaForCausalLM, mdir, {}, llama_loss, bt, out, LLAMA_CLIP,
                     "weight_decay on parameters with 2 dims (embed_tokens, q/k/v/o_proj, "
                     "gate/up/down_proj, lm_head weights); 0 on RMSNorm weights",
                     {"step_rule": STEP_RULE.format(
                         loss="loss = cross_entropy(logits.view(-1,V), targets[s].view(-1)) (mean)")})
    write_readme(out, "llama_tiny — LlamaForCausalLM training golden files", [
        "Written by `tools/gen_train_golden_arch.py --arch llama` (its docstring describes every "
        "file and tensor); do not edit by hand.", "",
        "- `model/`: untied (`lm_head.weight` is its own parameter), seed 1234",
        "- `model_tied/`: `tie_word_embeddings` true, seed 1235 (one-step gradients only)",
        "- `batches.safetensors`: `ids`, `targets` I32 [10, 2, 16]",
        "- `grads.safetensors` (model/), `grads_tied.safetensors` (model_tied/): `loss` [1], "
        "`logits` [2, 16, 101], the gradient of every parameter by HF name, on batch 0",
        "- `adamw.json`, `steps.safetensors`: the 10-step AdamW run of model/ "
        f"(GPT-2's hyperparameters but clip_grad_norm {LLAMA_CLIP}; clipped steps "
        f"{meta['clipped_steps']})", "",
        "Loss: `cross_entropy(model(ids).logits.view(-1, V), targets.view(-1))`, mean over all "
        "tokens, targets not shifted. RoPE is HF's: `rotate_half` pairs element i with i + 4 of "
        "each 8-wide head; key/value head h serves query heads 2h and 2h+1.", "",
        "Tied names in model/:", *tied_lines({}), "",
        "Tied names in model_tied/:", *tied_lines(tied),
    ])


def run_bert():
    out = os.path.join(TRAIN, "bert_tiny")
    os.makedirs(out, exist_ok=True)
    bt = bert_batches()
    write_safetensors(os.path.join(out, "batches.safetensors"),
                      [(k, bt[k]) for k in ("ids", "token_type_ids", "kv_lens", "attention_mask",
                                            "labels")])
    n_lab = [(bt["labels"][s] != -100).sum().item() for s in range(S)]
    print(f"bert_tiny: labelled positions per batch {n_lab}")
    mdir = os.path.join(out, "model")
    tied = {"bert.embeddings.word_embeddings.weight": ["cls.predictions.decoder.weight"],
            "cls.predictions.bias": ["cls.predictions.decoder.bias"]}
    live = build(BertForMaskedLM, bert_config(), 4321, bert_perturbed, mdir)
    grads = one_step_grads(BertForMaskedLM, mdir, live, tied, bert_loss, bt,
                           os.path.join(out, "grads.safetensors"))
    kb = max(float(np.abs(g).max()) for n, g in grads.items() if n.endswith("self.key.bias"))
    qb = min(float(np.abs(g).max()) for n, g in grads.items() if n.endswith("self.query.bias"))
    print(f"  key-bias gradients (0 in exact arithmetic) at most {kb:.3g}; "
          f"query-bias gradients at least {qb:.3g}")
    assert kb <= 1e-4 * qb
    meta = ten_steps(BertForMaskedLM, mdir, tied, bert_loss, bt, out, BERT_CLIP,
                     "weight_decay on parameters with 2 dims (word/position/token_type embeddings, "
                     "query/key/value/attention.output.dense, intermediate.dense, output.dense, "
                     "cls.predictions.transform.dense weights); 0 on biases (cls.predictions.bias "
                     "too) and LayerNorm weights/biases",
                     {"step_rule": STEP_RULE.format(
                         loss="loss = cross_entropy(logits.view(-1,V), labels[s].view(-1), "
                              "ignore_index=-100) (mean over the labelled positions; logits of "
                              "model(ids, attention_mask, token_type_ids))"),
                      "labelled_per_step": n_lab,
                      "key_bias_note": "attention.self.key.bias has a true gradient of 0 (the "
                                       "softmax cancels q.b_k); its gradient is rounding noise "
                                       "and its final.* values move only by noise, at most "
                                       "key_bias_drift from the initial ones"})
    init = dict(live.named_parameters())
    final = load_file_np(os.path.join(out, "steps.safetensors"))
    drift = max(float(np.abs(final["final." + n] - f32(p)).max())
                for n, p in init.items() if n.endswith("self.key.bias"))
    meta["key_bias_drift"] = drift
    with open(os.path.join(out, "adamw.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"  key biases moved by at most {drift:.3g} in 10 steps (noise)")
    write_readme(out, "bert_tiny — BertForMaskedLM training golden files", [
        "Written by `tools/gen_train_golden_arch.py --arch bert` (its docstring describes every "
        "file and tensor); do not edit by hand.", "",
        "- `model/`: BertForMaskedLM, seed 4321",
        "- `batches.safetensors`: `ids`, `token_type_ids`, `attention_mask`, `labels` I32 "
        "[10, 2, 16], `kv_lens` I32 [10, 2] (16 and 11: sequence 1 ends in 5 padding tokens, "
        "id 0); labels are -100 except at ~15% of the non-padding positions "
        f"(per batch: {n_lab})",
        "- `grads.safetensors`: `loss` [1], `logits` [2, 16, 101] (padding positions included), "
        "the gradient of every parameter by HF name, on batch 0",
        "- `adamw.json`, `steps.safetensors`: the 10-step AdamW run "
        f"(GPT-2's hyperparameters but clip_grad_norm {BERT_CLIP}; clipped steps "
        f"{meta['clipped_steps']})", "",
        "Loss: `cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)`, mean over "
        "the labelled positions.", "",
        "Tied names (the MLM decoder is the word embedding matrix plus `cls.predictions.bias`):",
        *tied_lines(tied), "",
        "`attention.self.key.bias` has a true gradient of 0 (the softmax cancels q·b_k): its "
        "saved gradients are rounding noise (~1e-12), and its `final.*` values differ from the "
        f"initial ones only by noise that Adam turned into updates (at most {drift:.2g}: "
        "`key_bias_drift` in adamw.json); compare its gradient's size and that bound, not its "
        "values.",
    ])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=("llama", "bert", "all"), default="all")
    args = ap.parse_args()
    hf_logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if args.arch in ("llama", "all"):
        run_llama()
    if args.arch in ("bert", "all"):
        run_bert()
    for d in ("llama_tiny", "bert_tiny"):
        p = os.path.join(TRAIN, d)
        if os.path.isdir(p):
            for root, _, files in sorted(os.walk(p)):
                for fn in sorted(files):
                    q = os.path.join(root, fn)
                    print(f"  {os.path.getsize(q):7d}  {os.path.relpath(q, ROOT)}")


if __name__ == "__main__":
    main()
