#!/usr/bin/env python3
"""train_ende_torch.py — the PyTorch/transformers peer of `qkv train --arch marian` for the
English→German run of docs/TRANSLATION.md: the same MarianMTModel shape, data, tokenizer and
hyperparameters, trained for the same steps, saved as a Marian directory that `qkv translate`
(and transformers) load, so both models are decoded and scored by the same code.

    OMP_NUM_THREADS=2 tools/.venv/bin/python tools/train_ende_torch.py --data /work/ende \\
        --tok /work/runs/ende/tok --out /work/runs/ende/run-torch [--steps 3397 --batch 128 ...]

What is the same as qkv's run (docs/TRAINING.md): MarianConfig from scratch (swish, scaled
sinusoidal embeddings, post-LN, one shared embedding table tied to the output, pad = decoder
start = the tokenizer's <pad>, dropout 0.1, max_position_embeddings = --seq), transformers'
init; sources with </s> and targets truncated to --seq tokens keeping </s>; length-grouped
epochs (a seeded permutation cut into runs of 50 batches, each run sorted by decreasing
source + target tokens, its full batches then shuffled — qkv's algorithm with torch's generator
instead of qkv's, so the batches are alike but not the same); teacher forcing with the labels shifted right after the
decoder start token; CrossEntropyLoss(label_smoothing=0.1) over the labelled positions;
AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices and embeddings, none on
biases and LayerNorms); clip_grad_norm_ 1.0; linear warmup lr·(s+1)/warmup then cosine to
--min-lr. The validation loss is per labelled target token over the first --eval-batches
batches of valid in order, with the same smoothing.

Writes OUT/metrics.jsonl ({"step", "loss", "lr", "elapsed_s"} every --log-every steps,
{"step", "val_loss"} every --eval-every) and OUT/model/ (config.json, generation_config.json,
model.safetensors and the tokenizer files of --tok).
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer


def load_pairs(tok, data, split, seq):
    with open(os.path.join(data, split + ".en"), encoding="utf-8") as f:
        src = [l.rstrip("\n") for l in f]
    with open(os.path.join(data, split + ".de"), encoding="utf-8") as f:
        tgt = [l.rstrip("\n") for l in f]
    assert len(src) == len(tgt), split
    s_ids, t_ids = [], []
    for i in range(0, len(src), 4096):
        enc = tok(src[i:i + 4096], text_target=tgt[i:i + 4096], truncation=True, max_length=seq)
        s_ids += enc["input_ids"]
        t_ids += enc["labels"]
    return s_ids, t_ids


def epoch_order(lens, batch, seed, epoch):
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    perm = torch.randperm(len(lens), generator=g).tolist()
    mega = 50 * batch
    out = []
    for s in range(0, len(perm), mega):
        run = perm[s:s + mega]
        run.sort(key=lambda i: (-lens[i], i))
        out += run
    # then, as qkv__epoch_order with shuffle_batches (src/train/data.c), the full batches are
    # shuffled within each run of 50 (the runs stay in order, the last smaller batch stays
    # last): without it every run goes from its longest batch to its shortest, and this model
    # never learned the long sentences (validation loss stuck near 7.1, empty translations)
    nb = len(out) // batch
    shuffled = []
    for s in range(0, nb, 50):
        for b in (s + torch.randperm(min(50, nb - s), generator=g)).tolist():
            shuffled += out[b * batch:(b + 1) * batch]
    return shuffled + out[nb * batch:]


def make_batch(s_ids, t_ids, idx, pad):
    S = max(len(s_ids[i]) for i in idx)
    T = max(len(t_ids[i]) for i in idx)
    src = torch.full((len(idx), S), pad, dtype=torch.long)
    mask = torch.zeros((len(idx), S), dtype=torch.long)
    lab = torch.full((len(idx), T), -100, dtype=torch.long)
    for k, i in enumerate(idx):
        src[k, :len(s_ids[i])] = torch.tensor(s_ids[i])
        mask[k, :len(s_ids[i])] = 1
        lab[k, :len(t_ids[i])] = torch.tensor(t_ids[i])
    dec = torch.full_like(lab, pad)
    dec[:, 1:] = lab[:, :-1].clamp(min=0)
    dec[:, 1:][lab[:, :-1] == -100] = pad
    return src, mask, dec, lab


def loss_of(model, batch, smoothing):
    src, mask, dec, lab = batch
    logits = model(input_ids=src, attention_mask=mask, decoder_input_ids=dec).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             lab.reshape(-1), ignore_index=-100,
                                             label_smoothing=smoothing)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/ende")
    ap.add_argument("--tok", default="/work/runs/ende/tok")
    ap.add_argument("--out", default="/work/runs/ende/run-torch")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3397)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--lr", type=float, default=7e-4)
    ap.add_argument("--min-lr", type=float, default=7e-5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-batches", type=int, default=30)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tok = MarianTokenizer(os.path.join(a.tok, "source.spm"), os.path.join(a.tok, "target.spm"),
                          os.path.join(a.tok, "vocab.json"))
    V = len(tok.encoder)
    pad = tok.pad_token_id
    t0 = time.perf_counter()
    s_tr, t_tr = load_pairs(tok, a.data, "train", a.seq)
    s_va, t_va = load_pairs(tok, a.data, "valid", a.seq)
    print("tokenized %d train / %d valid pairs in %.0f s" % (len(s_tr), len(s_va),
                                                              time.perf_counter() - t0),
          file=sys.stderr)
    cfg = MarianConfig(vocab_size=V, decoder_vocab_size=V, d_model=a.d, encoder_layers=a.layers,
                       decoder_layers=a.layers, encoder_attention_heads=a.heads,
                       decoder_attention_heads=a.heads, encoder_ffn_dim=a.ffn,
                       decoder_ffn_dim=a.ffn, max_position_embeddings=a.seq, pad_token_id=pad,
                       eos_token_id=tok.eos_token_id, decoder_start_token_id=pad,
                       forced_eos_token_id=tok.eos_token_id, scale_embedding=True,
                       activation_function="swish", dropout=a.dropout, attention_dropout=0.0,
                       activation_dropout=0.0, share_encoder_decoder_embeddings=True,
                       tie_word_embeddings=True)
    model = MarianMTModel(cfg)
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for _, p in named if p.dim() == 2],
                              "weight_decay": a.weight_decay},
                             {"params": [p for _, p in named if p.dim() != 2],
                              "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(s):
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        r = min(1.0, (s - a.warmup) / max(1, a.steps - a.warmup))
        return a.min_lr + 0.5 * (1 + math.cos(math.pi * r)) * (a.lr - a.min_lr)

    lens = [len(s) + len(t) for s, t in zip(s_tr, t_tr)]
    M = (len(lens) + a.batch - 1) // a.batch
    os.makedirs(a.out, exist_ok=True)
    metrics = open(os.path.join(a.out, "metrics.jsonl"), "w", encoding="utf-8")
    order, order_epoch = None, -1
    start = time.perf_counter()

    def validate(step):
        model.eval()
        tot, cnt = 0.0, 0
        with torch.no_grad():
            n = min(len(s_va), a.eval_batches * a.batch)
            for b in range(0, n, a.batch):
                idx = list(range(b, min(n, b + a.batch)))
                batch = make_batch(s_va, t_va, idx, pad)
                k = int((batch[3] != -100).sum())
                tot += float(loss_of(model, batch, a.smoothing)) * k
                cnt += k
        model.train()
        rec = dict(step=step, val_loss=tot / cnt, elapsed_s=time.perf_counter() - start)
        metrics.write(json.dumps(rec) + "\n")
        metrics.flush()
        print("step %d: val_loss %.4f" % (step, tot / cnt), file=sys.stderr)

    for step in range(a.steps):
        epoch = step // M
        if epoch != order_epoch:
            order, order_epoch = epoch_order(lens, a.batch, a.seed, epoch), epoch
        first = (step % M) * a.batch
        batch = make_batch(s_tr, t_tr, order[first:first + a.batch], pad)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = loss_of(model, batch, a.smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % a.log_every == 0 or step == 0:
            el = time.perf_counter() - start
            rec = dict(step=step + 1, loss=float(loss.detach()), lr=lr_at(step), grad_norm=float(gn),
                       elapsed_s=el)
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
            print("step %d/%d | loss %.4f | grad norm %.3g | %.0f s" % (step + 1, a.steps,
                  float(loss.detach()), float(gn), el),
                  file=sys.stderr)
        if a.eval_every and (step + 1) % a.eval_every == 0 and step + 1 < a.steps:
            validate(step + 1)
    validate(a.steps)
    metrics.close()
    mdir = os.path.join(a.out, "model")
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]], decoder_start_token_id=pad, eos_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id, max_length=a.seq, num_beams=4, pad_token_id=pad)
    model.save_pretrained(mdir)
    for f in ("source.spm", "target.spm", "vocab.json"):
        shutil.copy(os.path.join(a.tok, f), os.path.join(mdir, f))
    print("trained %d steps in %.0f s; model in %s" % (a.steps, time.perf_counter() - start, mdir),
          file=sys.stderr)


if __name__ == "__main__":
    main()
