#!/usr/bin/env python3
"""gen_attention_maps.py — transformers' attention probabilities (output_attentions=True, eager
attention) and a numpy reference of attention rollout and per-head summaries, for
tests/test_attnmap.c.

Writes, under tests/fixtures/attnmap/:
  bert_tiny/            a tiny random BertModel (2 layers, 4 heads, hidden 32, vocab 64,
                        2 token types): config.json + model.safetensors
  bert_tiny.safetensors     its golden maps (below)
  gpt2_tiny.safetensors     maps of tests/fixtures/models/gpt2_tiny (written by gen_gpt_golden.py)
  llama_tiny.safetensors    maps of tests/fixtures/models/llama_tiny (4 heads over 2 KV heads, RoPE)
  saliency_pair.safetensors gradient x input of tests/fixtures/cls/pair (a tiny
                            BertForSequenceClassification) on a text pair: ids, type_ids [T],
                            logits [NL], saliency [NL, T] (Σ_c d logit[k] / d e_i,c · e_i,c over
                            the word embeddings e_i, inputs_embeds in float64, eval mode)
  minilm.safetensors        maps of models/all-MiniLM-L6-v2 (when that directory exists), ids from
                            its own tokenizer: a sentence, a sentence pair, a longer sentence
Each golden file holds:
  ids       I32 [N]          packed sequences
  type_ids  I32 [N]          token types (BERT: the pair's second text is 1; decoders: 0)
  lens      I64 [S]
  marks     I32 [N]          1 = [CLS] (decoders: the first token), 2 = [SEP], else 0
  probs     F32 [Σ L·H·T²]   each sequence's [L, H, T, T], as qkv_model_attention packs them
  rollout   F32 [Σ T²]       attention rollout of each sequence (numpy, float64)
  stats     F64 [S, L, H, 5] entropy, distance, cls, sep, prev per head (numpy, float64)
The maps come from ONE padded batch (right padding + attention_mask, token_type_ids for BERT)
run in float64; the script checks that the padded keys get no attention and that each
sequence's rows equal the same sequence run alone, then keeps each sequence's T×T block.
It also prints how far float32 transformers is from float64 on the same inputs.
Usage: tools/.venv/bin/python tools/gen_attention_maps.py"""
import os
import shutil

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          AutoTokenizer, BertConfig, BertModel)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "attnmap")
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
MINILM = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")


def write_safetensors(path, tensors):
    save_file({name: np.ascontiguousarray(arr) for name, arr in tensors}, path)


# ---------------------------------------------------------------- the numpy references

def rollout(p):
    """p [L, H, T, T] -> [T, T]: Abnar & Zuidema 2020, heads averaged, identity added, rows
    renormalized, layers multiplied from the first up."""
    L, H, T, _ = p.shape
    r = None
    for l in range(L):
        a = p[l].mean(0) + np.eye(T)
        a = a / a.sum(-1, keepdims=True)
        r = a if r is None else a @ r
    return r


def head_stats(m, marks):
    """m [T, T] -> entropy, distance, cls, sep, prev (means over rows that see a key)."""
    T = m.shape[0]
    rows = m.sum(-1) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(m > 0, m * np.log(np.where(m > 0, m, 1.0)), 0.0).sum(-1)
    idx = np.arange(T)
    dist = (m * np.abs(idx[:, None] - idx[None, :])).sum(-1)
    cls = m[:, (marks & 1) != 0].sum(-1)
    sep = m[:, (marks & 2) != 0].sum(-1)
    prev_rows = rows.copy()
    prev_rows[0] = False
    prev = np.array([m[i, i - 1] if i > 0 else 0.0 for i in range(T)])
    return [ent[rows].mean(), dist[rows].mean(), cls[rows].mean(), sep[rows].mean(),
            prev[prev_rows].mean() if prev_rows.any() else 0.0]


# ---------------------------------------------------------------- the maps

def maps(model, seqs, bert):
    """seqs: list of (ids, type_ids). One right-padded batch -> per-sequence [L, H, T, T]."""
    S, Tm = len(seqs), max(len(s[0]) for s in seqs)
    ids = torch.zeros(S, Tm, dtype=torch.long)
    tt = torch.zeros(S, Tm, dtype=torch.long)
    am = torch.zeros(S, Tm, dtype=torch.long)
    for s, (i, t) in enumerate(seqs):
        ids[s, :len(i)] = torch.tensor(i)
        tt[s, :len(i)] = torch.tensor(t)
        am[s, :len(i)] = 1
    kw = {"token_type_ids": tt} if bert else {}

    def run(m, ids, am, kw):
        with torch.no_grad():
            out = m(input_ids=ids, attention_mask=am, output_attentions=True, **kw)
        return torch.stack(out.attentions, 1).numpy()  # [S, L, H, Tm, Tm]

    p64 = run(model.to(torch.float64), ids, am, kw)
    p32 = run(model.to(torch.float32), ids, am, kw).astype(np.float64)
    model.to(torch.float64)
    res, d32 = [], 0.0
    for s, (i, t) in enumerate(seqs):
        T = len(i)
        assert np.abs(p64[s, :, :, :T, T:]).max(initial=0.0) < 1e-12, "a padded key got attention"
        alone = run(model, ids[s:s + 1, :T], am[s:s + 1, :T],
                    {"token_type_ids": tt[s:s + 1, :T]} if bert else {})[0]
        dd = np.abs(alone - p64[s, :, :, :T, :T]).max()
        # 1e-6, not 1e-12: transformers computes RoPE's cos/sin in float32 even in a float64
        # model, and their rounding depends on the batch's shape (Llama differs by ~1e-7)
        assert dd < 1e-6, f"padding changed the maps by {dd}"
        res.append(p64[s, :, :, :T, :T])
        d32 = max(d32, np.abs(p32[s, :, :, :T, :T] - p64[s, :, :, :T, :T]).max())
    return res, d32


def golden(path, model, seqs, marks, bert):
    model.eval()
    ps, d32 = maps(model, seqs, bert)
    probs = np.concatenate([p.reshape(-1) for p in ps]).astype(np.float32)
    roll = np.concatenate([rollout(p).reshape(-1) for p in ps]).astype(np.float32)
    stats = np.array([[[head_stats(p[l, h], mk) for h in range(p.shape[1])]
                       for l in range(p.shape[0])] for p, mk in zip(ps, marks)], dtype=np.float64)
    write_safetensors(path, [
        ("ids", np.array(sum((list(s[0]) for s in seqs), []), dtype=np.int32)),
        ("type_ids", np.array(sum((list(s[1]) for s in seqs), []), dtype=np.int32)),
        ("lens", np.array([len(s[0]) for s in seqs], dtype=np.int64)),
        ("marks", np.concatenate(marks).astype(np.int32)),
        ("probs", probs),
        ("rollout", roll),
        ("stats", stats),
    ])
    print(f"{os.path.relpath(path, ROOT)}: {os.path.getsize(path)} bytes, lens "
          f"{[len(s[0]) for s in seqs]}, float32 transformers vs float64: {d32:.2e}, "
          f"max prob {max(p.max() for p in ps):.3f}")


def randomize(model, std):
    g = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def bert_tiny():
    d = os.path.join(OUT, "bert_tiny")
    shutil.rmtree(d, ignore_errors=True)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                     hidden_act="gelu", attn_implementation="eager")
    torch.manual_seed(0)
    model = BertModel(cfg, add_pooling_layer=False)
    randomize(model, 0.3)  # large enough that the heads are not uniform
    model.save_pretrained(d)
    model = AutoModel.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    rng = np.random.default_rng(11)
    CLS, SEP = 1, 2

    def words(n):
        return rng.integers(3, 64, n).tolist()

    a, b, c, e, f = words(5), words(9), words(6), words(17), words(1)
    seqs = [([CLS] + a + [SEP], [0] * 7),                                   # one text
            ([CLS] + b + [SEP] + c + [SEP], [0] * 11 + [1] * 7),            # a pair
            ([CLS] + e + [SEP], [0] * 19),                                  # the longest
            ([CLS] + f + [SEP], [0] * 3)]                                   # much padding
    marks = [np.array([1 if x == CLS else 2 if x == SEP else 0 for x in s[0]]) for s in seqs]
    golden(os.path.join(OUT, "bert_tiny.safetensors"), model, seqs, marks, True)


def decoder(name, vocab):
    d = os.path.join(MODELS, name)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                 attn_implementation="eager")
    rng = np.random.default_rng(12)
    seqs = [(rng.integers(0, vocab, n).tolist(), [0] * n) for n in (9, 23, 1, 16)]
    marks = [np.array([1] + [0] * (len(s[0]) - 1)) for s in seqs]
    golden(os.path.join(OUT, f"{name}.safetensors"), model, seqs, marks, False)


def minilm():
    if not os.path.isdir(MINILM):
        print(f"skipping MiniLM: {MINILM} is missing (scripts/fetch-model.sh)")
        return
    tok = AutoTokenizer.from_pretrained(MINILM)
    model = AutoModel.from_pretrained(MINILM, dtype=torch.float32, attn_implementation="eager")
    inputs = [("The cat sat on the mat.", None),
              ("Where is the train station?", "It is next to the old bridge."),
              ("Attention weights show where a model looks, not why it decides.", None)]
    seqs, marks = [], []
    for a, b in inputs:
        enc = tok(a, b) if b else tok(a)
        seqs.append((enc["input_ids"], enc["token_type_ids"]))
        marks.append(np.array([1 if x == tok.cls_token_id else 2 if x == tok.sep_token_id else 0
                               for x in enc["input_ids"]]))
    golden(os.path.join(OUT, "minilm.safetensors"), model, seqs, marks, True)


def saliency():
    d = os.path.join(ROOT, "tests", "fixtures", "cls", "pair")
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float64).eval()
    enc = tok("the cat sat on the mat", "a dog was on the log")
    ids = torch.tensor([enc["input_ids"]])
    tt = torch.tensor([enc["token_type_ids"]])
    sal, logits = [], None
    for k in range(model.config.num_labels):
        e = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        out = model(inputs_embeds=e, token_type_ids=tt).logits[0]
        out[k].backward()
        sal.append((e.grad * e).sum(-1)[0].detach().numpy())
        logits = out.detach().numpy()
    path = os.path.join(OUT, "saliency_pair.safetensors")
    write_safetensors(path, [
        ("ids", np.array(enc["input_ids"], dtype=np.int32)),
        ("type_ids", np.array(enc["token_type_ids"], dtype=np.int32)),
        ("logits", logits.astype(np.float32)),
        ("saliency", np.array(sal, dtype=np.float32)),
    ])
    print(f"{os.path.relpath(path, ROOT)}: T {len(enc['input_ids'])}, logits {logits}, "
          f"saliency range [{np.min(sal):.3g}, {np.max(sal):.3g}]")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    bert_tiny()
    decoder("gpt2_tiny", 384)
    decoder("llama_tiny", 512)
    saliency()
    minilm()
