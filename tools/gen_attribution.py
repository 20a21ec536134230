#!/usr/bin/env python3
"""gen_attribution.py — gradient x input and integrated gradients computed with transformers +
torch autograd (float64, eval mode, inputs_embeds), for tests/test_attribution.c.

Integrated gradients as captum computes it for an embedding layer (Sundararajan et al. 2017),
written out here so the rule is explicit: on the straight line x(alpha) = e0 + alpha (e - e0)
from the baseline word embeddings e0 to the input's e,
    ig_i = sum_c (e - e0)_ic * sum_k w_k df/dx_ic (x(alpha_k))
with alpha_k = k/m and w_k = 1/m: the right Riemann sum over k = 1..m (captum's riemann_right
with n_steps = m), or the trapezoid rule over k = 0..m with the two ends weighted 1/(2m).
Positions and token types are added by the model as usual; only word embeddings move.

Targets (one file each under tests/fixtures/attribution/):
  cls_pair.safetensors    tests/fixtures/cls/pair (tiny BertForSequenceClassification), a text
                          pair: the logit of label 1
  gpt2_next.safetensors   tests/fixtures/models/gpt2_tiny: the next-token logit (the most
                          likely token) after random ids
  llama_next.safetensors  tests/fixtures/models/llama_tiny: the same (RoPE, GQA)
  bert_sim.safetensors    tests/fixtures/attnmap/bert_tiny (tiny BertModel): the cosine
                          similarity of the mean-pooled last hidden states of two sequences
  minilm_sim.safetensors  models/all-MiniLM-L6-v2 (when present): the same on two sentences
Each file holds ids, type_ids [T] (and compare_ids, compare_type_ids for a similarity),
index I64 [1] (the logit explained; -1 for a similarity), steps I64 [1] (m), baseline_id I64 [1]
(the token whose embedding is the second baseline), f F64 [3] (f at the input, at the zero
baseline, at the token baseline), gxi F64 [T] (sum_c df/de_ic e_ic), ig_trapezoid_zero F64 [T]
(trapezoid rule, all-zero baseline) and ig_right_token F64 [T] (right sum, token baseline).
Usage: tools/.venv/bin/python tools/gen_attribution.py"""
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          AutoTokenizer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "attribution")
FIX = os.path.join(ROOT, "tests", "fixtures")
MINILM = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
STEPS = 16


def integrated_gradients(fn, e, e0, m, rule):
    """fn: x [T, C] -> scalar. Returns ig [T] (float64) and f(e0)."""
    ks = range(0, m + 1) if rule == "trapezoid" else range(1, m + 1)
    acc = torch.zeros_like(e)
    for k in ks:
        x = e if k == m else e0 + (k / m) * (e - e0)
        x = x.detach().clone().requires_grad_(True)
        fn(x).backward()
        w = 0.5 if rule == "trapezoid" and k in (0, m) else 1.0
        acc += w * x.grad
    with torch.no_grad():
        f0 = fn(e0).item()
    return ((e - e0) * acc / m).sum(-1).numpy(), f0


def attribute(path, fn, wte, ids, baseline_id, extra):
    e = wte[torch.tensor(ids)].detach().clone()
    x = e.clone().requires_grad_(True)
    f1 = fn(x)
    f1.backward()
    gxi = (x.grad * e).sum(-1).numpy()
    ig_t, f_zero = integrated_gradients(fn, e, torch.zeros_like(e), STEPS, "trapezoid")
    e0 = wte[torch.full((len(ids),), baseline_id)].detach().clone()
    ig_r, f_tok = integrated_gradients(fn, e, e0, STEPS, "right")
    f = np.array([f1.item(), f_zero, f_tok])
    tensors = dict(extra)
    tensors.update({
        "ids": np.array(ids, dtype=np.int32),
        "steps": np.array([STEPS], dtype=np.int64),
        "baseline_id": np.array([baseline_id], dtype=np.int64),
        "f": f,
        "gxi": gxi.astype(np.float64),
        "ig_trapezoid_zero": ig_t.astype(np.float64),
        "ig_right_token": ig_r.astype(np.float64),
    })
    tensors.setdefault("type_ids", np.zeros(len(ids), dtype=np.int32))
    tensors.setdefault("index", np.array([-1], dtype=np.int64))
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path)
    print(f"{os.path.relpath(path, ROOT)}: T {len(ids)}, f {f1.item():.6g}; completeness "
          f"(sum ig - (f - f0)): trapezoid/zero {ig_t.sum() - (f[0] - f[1]):.3g}, "
          f"right/token {ig_r.sum() - (f[0] - f[2]):.3g}")


def classifier():
    d = os.path.join(FIX, "cls", "pair")
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float64).eval()
    enc = tok("the cat sat on the mat", "a dog was on the log")
    tt = torch.tensor([enc["token_type_ids"]])
    label = 1

    def fn(x):
        return model(inputs_embeds=x[None], token_type_ids=tt).logits[0, label]

    attribute(os.path.join(OUT, "cls_pair.safetensors"), fn,
              model.get_input_embeddings().weight, enc["input_ids"], tok.pad_token_id,
              {"type_ids": np.array(enc["token_type_ids"], dtype=np.int32),
               "index": np.array([label], dtype=np.int64)})


def decoder(name, out, vocab):
    d = os.path.join(FIX, "models", name)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64).eval()
    ids = np.random.default_rng(21).integers(0, vocab, 9).tolist()
    with torch.no_grad():
        index = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())

    def fn(x):
        return model(inputs_embeds=x[None]).logits[0, -1, index]

    attribute(os.path.join(OUT, out), fn, model.get_input_embeddings().weight, ids, 0,
              {"index": np.array([index], dtype=np.int64)})


def similarity(model, out, a, b, baseline_id):
    """a, b: (ids, type_ids); the pooled embedding of b is held fixed."""
    with torch.no_grad():
        v = model(input_ids=torch.tensor([b[0]]),
                  token_type_ids=torch.tensor([b[1]])).last_hidden_state[0].mean(0)
    tt = torch.tensor([a[1]])

    def fn(x):
        u = model(inputs_embeds=x[None], token_type_ids=tt).last_hidden_state[0].mean(0)
        return torch.nn.functional.cosine_similarity(u, v, dim=0, eps=0.0)

    attribute(os.path.join(OUT, out), fn, model.get_input_embeddings().weight, a[0], baseline_id,
              {"type_ids": np.array(a[1], dtype=np.int32),
               "compare_ids": np.array(b[0], dtype=np.int32),
               "compare_type_ids": np.array(b[1], dtype=np.int32)})


def bert_similarity():
    model = AutoModel.from_pretrained(os.path.join(FIX, "attnmap", "bert_tiny"),
                                      dtype=torch.float64).eval()
    rng = np.random.default_rng(22)
    a = [1] + rng.integers(3, 64, 8).tolist() + [2]
    b = [1] + rng.integers(3, 64, 12).tolist() + [2]
    similarity(model, "bert_sim.safetensors", (a, [0] * len(a)), (b, [0] * len(b)), 0)


def minilm_similarity():
    if not os.path.isdir(MINILM):
        print(f"skipping MiniLM: {MINILM} is missing (scripts/fetch-model.sh)")
        return
    tok = AutoTokenizer.from_pretrained(MINILM)
    model = AutoModel.from_pretrained(MINILM, dtype=torch.float64).eval()
    a = tok("The cat sat on the mat because it was tired.")
    b = tok("A tired kitten is resting on a rug.")
    similarity(model, "minilm_sim.safetensors", (a["input_ids"], a["token_type_ids"]),
               (b["input_ids"], b["token_type_ids"]), tok.mask_token_id)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    classifier()
    decoder("gpt2_tiny", "gpt2_next.safetensors", 384)
    decoder("llama_tiny", "llama_next.safetensors", 512)
    bert_similarity()
    minilm_similarity()
