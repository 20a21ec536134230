#!/usr/bin/env python3
"""gen_marian_attention_maps.py — transformers' attention probabilities of an encoder-decoder
(MarianMTModel, output_attentions=True, eager attention, float64) and a numpy reference of the
encoder's rollout and of the per-head summaries, for tests/test_attnmap_marian.c.

The models and tokenizer are the committed tiny random Marian fixtures of
gen_marian_fixtures.py (tests/fixtures/marian/tiny: 2 + 2 layers, 4 heads, shared embeddings;
sep: 3 + 1 layers, separate decoder embeddings, gelu), loaded as a user loads them. Each case is
a (source, target) pair of different lengths: the source tokenized by MarianTokenizer, the
target by its text_target (target.spm, </s> appended) as labels; the decoder input is the
labels shifted right after decoder_start_token_id (what MarianMTModel(labels=...) feeds).
Each pair runs alone (no padding).

Writes tests/fixtures/attnmap/marian_<name>.safetensors:
  src_ids I32 [Σ S], src_lens I64 [n]    the sources
  dec_ids I32 [Σ T], dec_lens I64 [n]    the decoder inputs
  enc     F32 [Σ Le·He·S²]    encoder_attentions, each case's [Le, He, S, S]
  dec     F32 [Σ Ld·Hd·T²]    decoder_attentions, [Ld, Hd, T, T]
  cross   F32 [Σ Ld·Hd·T·S]   cross_attentions, [Ld, Hd, T, S]
  enc_rollout F32 [Σ S²]      rollout of the encoder's maps (numpy, float64)
  enc_stats   F64 [n, Le, He, 5]  entropy, distance, cls, sep, prev; marks: 2 on </s>
  dec_stats   F64 [n, Ld, Hd, 5]  marks: 1 on position 0 (the start token), 2 on </s>
  cross_stats F64 [n, Ld, Hd, 3]  entropy, cls, sep over source keys: 1 on position 0, 2 on </s>
Usage: tools/.venv/bin/python tools/gen_marian_attention_maps.py"""
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import MarianMTModel, MarianTokenizer

from gen_attention_maps import head_stats, rollout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARIAN = os.path.join(ROOT, "tests", "fixtures", "marian")
OUT = os.path.join(ROOT, "tests", "fixtures", "attnmap")

PAIRS = [
    ("Hello world!", "Hallo Welt, wie geht es dir heute?"),
    ("The GNU General Public License is a free, copyleft license for software.", "Eine Lizenz."),
    ("x", "This License applies to any program."),
]


def cross_stats(m, marks):
    """m [Tq, Tk] -> entropy, cls, sep (means over rows that see a key)."""
    rows = m.sum(-1) > 0
    ent = -np.where(m > 0, m * np.log(np.where(m > 0, m, 1.0)), 0.0).sum(-1)
    cls = m[:, (marks & 1) != 0].sum(-1)
    sep = m[:, (marks & 2) != 0].sum(-1)
    return [ent[rows].mean(), cls[rows].mean(), sep[rows].mean()]


def golden(name):
    d = os.path.join(MARIAN, name)
    tok = MarianTokenizer.from_pretrained(d)
    model = MarianMTModel.from_pretrained(d, attn_implementation="eager").eval()
    cfg = model.config
    t = {k: [] for k in ("src_ids", "src_lens", "dec_ids", "dec_lens", "enc", "dec", "cross",
                         "enc_rollout", "enc_stats", "dec_stats", "cross_stats")}
    d32 = 0.0
    for src, tgt in PAIRS:
        ids = tok(src, return_tensors="pt").input_ids
        labels = tok(text_target=tgt, return_tensors="pt").input_ids
        dec = torch.cat([torch.tensor([[cfg.decoder_start_token_id]]), labels[:, :-1]], 1)
        assert ids.shape[1] != dec.shape[1]

        def run(dtype):
            model.to(dtype)
            with torch.no_grad():
                o = model(input_ids=ids, decoder_input_ids=dec, output_attentions=True)
            return [torch.stack(x, 0)[:, 0].numpy().astype(np.float64)
                    for x in (o.encoder_attentions, o.decoder_attentions, o.cross_attentions)]

        e32, dd32, c32 = run(torch.float32)
        e, dd, c = run(torch.float64)
        d32 = max(d32, np.abs(e32 - e).max(), np.abs(dd32 - dd).max(), np.abs(c32 - c).max())
        S, T = ids.shape[1], dec.shape[1]
        assert e.shape[2:] == (S, S) and dd.shape[2:] == (T, T) and c.shape[2:] == (T, S)
        assert np.abs(np.triu(dd, 1)).max() == 0.0
        s_ids, d_ids = ids[0].numpy(), dec[0].numpy()
        smarks = np.where(s_ids == cfg.eos_token_id, 2, 0)
        dmarks = np.where(d_ids == cfg.eos_token_id, 2, 0)
        dmarks[0] |= 1
        cmarks = smarks.copy()
        cmarks[0] |= 1
        t["src_ids"].append(s_ids)
        t["src_lens"].append(S)
        t["dec_ids"].append(d_ids)
        t["dec_lens"].append(T)
        t["enc"].append(e.reshape(-1))
        t["dec"].append(dd.reshape(-1))
        t["cross"].append(c.reshape(-1))
        t["enc_rollout"].append(rollout(e).reshape(-1))
        t["enc_stats"].append([[head_stats(e[l, h], smarks) for h in range(e.shape[1])]
                               for l in range(e.shape[0])])
        t["dec_stats"].append([[head_stats(dd[l, h], dmarks) for h in range(dd.shape[1])]
                               for l in range(dd.shape[0])])
        t["cross_stats"].append([[cross_stats(c[l, h], cmarks) for h in range(c.shape[1])]
                                 for l in range(c.shape[0])])
        print(f"{name}: S {S}, T {T}: {tok.convert_ids_to_tokens(s_ids)} -> "
              f"{tok.convert_ids_to_tokens(d_ids)}")
    out = {
        "src_ids": np.concatenate(t["src_ids"]).astype(np.int32),
        "src_lens": np.array(t["src_lens"], dtype=np.int64),
        "dec_ids": np.concatenate(t["dec_ids"]).astype(np.int32),
        "dec_lens": np.array(t["dec_lens"], dtype=np.int64),
    }
    for k in ("enc", "dec", "cross", "enc_rollout"):
        out[k] = np.concatenate(t[k]).astype(np.float32)
    for k in ("enc_stats", "dec_stats", "cross_stats"):
        out[k] = np.array(t[k], dtype=np.float64)
    path = os.path.join(OUT, f"marian_{name}.safetensors")
    save_file(out, path)
    print(f"{os.path.relpath(path, ROOT)}: {os.path.getsize(path)} bytes; "
          f"float32 transformers vs float64: {d32:.2e}")


def main():
    for name in ("tiny", "sep"):
        golden(name)


if __name__ == "__main__":
    main()
