#!/usr/bin/env python3
"""gen_marian_train_golden.py — training golden files for a tiny random MarianMTModel (teacher
forcing), so the C trainer (src/train/marian_train.c) can be checked against transformers in
PyTorch: every gradient after one step and 10 AdamW steps.

Usage: tools/.venv/bin/python tools/gen_marian_train_golden.py

Float32, one thread, eager attention, dropout 0 (dropout, attention_dropout, activation_dropout),
fixed seeds. Writes tests/fixtures/train/marian_tiny/:

model/              MarianConfig: vocab 61, d_model 16, 2 encoder layers (4 heads, ffn 32),
                    2 decoder layers (2 heads, ffn 24), max_position_embeddings 32, swish,
                    scale_embedding True, pad 52 (= decoder_start_token_id), eos 0, shared and
                    tied embeddings. Seed 777; every bias and LayerNorm weight gets + N(0, 0.02)
                    and final_logits_bias (a buffer) N(0, 0.1), so none is at its init value.
model_sep/          the same with share_encoder_decoder_embeddings False, decoder_vocab_size 53
                    (the head tied to the decoder's own table); seed 778.
batches.safetensors src_ids I32 [10, B=3, S=9]   random ids in [1, 52), eos (0) last, pad (52) after
                    src_lens I32 [10, 3]          9, 6, 4
                    labels I32 [10, 3, T=7]       random ids in [1, 52), eos last, -100 after
                    tgt_lens I32 [10, 3]          7, 5, 3
                    (padding on both sides; ids below 53 so they fit model_sep's decoder vocab)
grads.safetensors   batch 0 on model/: loss = model(input_ids, attention_mask, labels).loss
                    (transformers shifts the labels right itself: decoder_input_ids =
                    shift_tokens_right(labels, pad, decoder_start)); loss F32 [1], logits
                    F32 [3, 7, 61], and the gradient of every named parameter (tied: model.shared
                    holds all uses).
grads_ls.safetensors  batch 0 on model/ with label smoothing 0.1: loss =
                    F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100,
                    label_smoothing=0.1).
grads_sep.safetensors batch 0 on model_sep/ (model(..., labels).loss).
steps.safetensors   10 steps on model/, step s on batch s, label smoothing 0.1:
                    torch.optim.AdamW(lr 5e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01 on
                    the 2-D parameters only, none on biases and norms), no clipping;
                    losses F32 [10] (before each update), final.<name> every parameter after.
"""
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
from transformers import MarianConfig, MarianMTModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_train_golden import f32, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "train", "marian_tiny")
V, VD, PAD, EOS = 61, 53, 52, 0
NB, B, S, T = 10, 3, 9, 7
SRC_LENS, TGT_LENS = (9, 6, 4), (7, 5, 3)
LS = 0.1
LR, WD = 5e-3, 0.01


def config(shared):
    kw = dict(vocab_size=V, d_model=16, encoder_layers=2, decoder_layers=2,
              encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=32,
              decoder_ffn_dim=24, max_position_embeddings=32, activation_function="swish",
              scale_embedding=True, pad_token_id=PAD, eos_token_id=EOS,
              decoder_start_token_id=PAD, dropout=0.0, attention_dropout=0.0,
              activation_dropout=0.0, share_encoder_decoder_embeddings=shared,
              tie_word_embeddings=True, forced_eos_token_id=EOS)
    if not shared:
        kw["decoder_vocab_size"] = VD
    return MarianConfig(**kw)


def build(shared, seed, d):
    torch.manual_seed(seed)
    m = MarianMTModel._from_config(config(shared), dtype=torch.float32,
                                   attn_implementation="eager")
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias") or "layer_norm" in n:
                p.add_(0.02 * torch.randn(p.shape))
        m.final_logits_bias.copy_(0.1 * torch.randn(m.final_logits_bias.shape))
    shutil.rmtree(d, ignore_errors=True)
    m.save_pretrained(d, safe_serialization=True)
    p = os.path.join(d, "generation_config.json")
    if os.path.exists(p):
        os.remove(p)
    return load(d)


def load(d):
    m = MarianMTModel.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.train()
    return m


def batches():
    rng = np.random.default_rng(20261207)
    src = np.full((NB, B, S), PAD, np.int32)
    lab = np.full((NB, B, T), -100, np.int32)
    for s in range(NB):
        for b in range(B):
            n = SRC_LENS[b]
            src[s, b, :n - 1] = rng.integers(1, PAD, n - 1)
            src[s, b, n - 1] = EOS
            k = TGT_LENS[b]
            lab[s, b, :k - 1] = rng.integers(1, PAD, k - 1)
            lab[s, b, k - 1] = EOS
    src_lens = np.tile(np.array(SRC_LENS, np.int32), (NB, 1))
    tgt_lens = np.tile(np.array(TGT_LENS, np.int32), (NB, 1))
    return {"src_ids": src, "src_lens": src_lens, "labels": lab, "tgt_lens": tgt_lens}


def forward(m, bt, s, ls):
    src = torch.from_numpy(bt["src_ids"][s]).long()
    mask = (torch.arange(S)[None, :] < torch.from_numpy(bt["src_lens"][s])[:, None]).long()
    labels = torch.from_numpy(bt["labels"][s]).long()
    out = m(input_ids=src, attention_mask=mask, labels=labels)
    if ls is None:
        return out.loss, out.logits
    loss = F.cross_entropy(out.logits.view(-1, out.logits.shape[-1]), labels.view(-1),
                           ignore_index=-100, label_smoothing=ls)
    return loss, out.logits


def trained(m):
    """The parameters that get gradients: not the sinusoidal position tables (parameters in
    transformers, computed and detached in the forward)."""
    return [(n, p) for n, p in m.named_parameters() if "embed_positions" not in n]


def grads(d, bt, ls, path):
    m = load(d)
    loss, logits = forward(m, bt, 0, ls)
    loss.backward()
    g = [(n, f32(p.grad)) for n, p in trained(m)]
    write_safetensors(path, [("loss", np.array([loss.item()], np.float32)),
                             ("logits", f32(logits))] + g)


def steps(d, bt, path):
    m = load(d)
    named = trained(m)
    opt = torch.optim.AdamW([{"params": [p for _, p in named if p.dim() == 2], "weight_decay": WD},
                             {"params": [p for _, p in named if p.dim() != 2],
                              "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8, foreach=False, fused=False)
    losses = []
    for s in range(NB):
        opt.zero_grad()
        loss, _ = forward(m, bt, s, LS)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    write_safetensors(path, [("losses", np.array(losses, np.float32))] +
                      [("final." + n, f32(p)) for n, p in named])


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    bt = batches()
    write_safetensors(os.path.join(OUT, "batches.safetensors"), sorted(bt.items()))
    md, ms = os.path.join(OUT, "model"), os.path.join(OUT, "model_sep")
    build(True, 777, md)
    build(False, 778, ms)
    grads(md, bt, None, os.path.join(OUT, "grads.safetensors"))
    grads(md, bt, LS, os.path.join(OUT, "grads_ls.safetensors"))
    grads(ms, bt, None, os.path.join(OUT, "grads_sep.safetensors"))
    steps(md, bt, os.path.join(OUT, "steps.safetensors"))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
