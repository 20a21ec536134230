#!/usr/bin/env python3
"""gen_attention_golden.py — golden files for qkv's scaled dot-product attention, from PyTorch.

Writes one safetensors file per configuration into tests/fixtures/attention/ holding the inputs
(q, k, v, dout and, when used, bias, kv_lens, alibi_slopes), the outputs (out, lse) and the
gradients (dq, dk, dv) of loss = sum(out * dout). Layouts are qkv's (see include/qkv.h):
q [B,Tq,Hq,D], k [B,Tk,Hk,D], v [B,Tk,Hk,Dv], out/dout [B,Tq,Hq,Dv], lse [B,Hq,Tq];
bias is stored compactly (a broadcast dimension has size 1) and its element strides are in the
metadata. The descriptor fields are the file's __metadata__ (all strings).

How the answers are made exact: inputs are drawn in float32 (what the library sees), every
computation runs in float64, and only the results are rounded to float32. The oracle is
torch.nn.functional.scaled_dot_product_attention (attn_mask = a float additive mask built from
qkv's masks + bias + ALiBi, enable_gqa for GQA/MQA) whenever every query row has at least one
visible key; rows with none have no defined SDPA answer (qkv: out 0, lse -inf, gradients 0), so
those configurations use a plain PyTorch expression, which is also cross-checked against SDPA
on every configuration where both apply. lse = torch.logsumexp over the masked scaled scores.

Seeded and reproducible: each configuration's seed is the CRC-32 of its name.
Run with the project's venv:  tools/.venv/bin/python tools/gen_attention_golden.py
Never needed to build or test (the C test reads the committed files).
"""
import argparse
import json
import math
import os
import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

FORMAT = "qkv-attention-golden-1"
NO = -1  # no window


class Cfg:
    def __init__(self, name, B, Tq, Tk, Hq, Hk, D, Dv=0, scale=0.0, causal=0, wl=NO, wr=NO,
                 lens=None, bias=None, alibi=False):
        self.name, self.B, self.Tq, self.Tk, self.Hq, self.Hk = name, B, Tq, Tk, Hq, Hk
        self.D, self.Dv, self.scale, self.causal, self.wl, self.wr = D, Dv, scale, causal, wl, wr
        self.lens, self.bias, self.alibi = lens, bias, alibi
        assert Tk != Tq and Hq % Hk == 0
        assert bias in (None, "full", "bcast_b", "bcast_h", "bcast_q", "bcast_bh", "neginf")


# bias kinds: full [B,Hq,Tq,Tk]; bcast_b [1,Hq,Tq,Tk]; bcast_h [B,1,Tq,Tk];
# bcast_q [B,Hq,1,Tk] (key padding style); bcast_bh [1,1,Tq,Tk]; neginf: full with -inf
# entries, one row entirely -inf.
CONFIGS = [
    # plain attention over the D and Tq sets
    Cfg("plain_d1_tq7", 2, 7, 5, 2, 2, 1),
    Cfg("plain_d3_tq7", 2, 7, 9, 2, 2, 3),
    Cfg("plain_d64_tq7", 1, 7, 12, 2, 2, 64),
    Cfg("plain_d80_tq1", 2, 1, 17, 2, 2, 80),
    Cfg("plain_d128_tq1", 1, 1, 33, 2, 2, 128),
    Cfg("plain_d128_tq7", 1, 7, 4, 2, 2, 128),
    Cfg("plain_d3_tq128", 1, 128, 96, 2, 2, 3),
    Cfg("plain_d1_tq128", 1, 128, 130, 1, 1, 1),
    Cfg("plain_d64_tq128", 1, 128, 96, 1, 1, 64),
    # causal (bottom-right): Tq < Tk, Tq > Tk (first rows see nothing), decode
    Cfg("causal_tq7_tk12", 2, 7, 12, 2, 2, 3, causal=1),
    Cfg("causal_tq7_tk5", 2, 7, 5, 2, 2, 3, causal=1),
    Cfg("causal_tq128_tk160", 1, 128, 160, 2, 2, 3, causal=1),
    Cfg("causal_tq1_tk20_d64", 2, 1, 20, 2, 2, 64, causal=1),
    Cfg("causal_d128_tq7_tk9", 1, 7, 9, 2, 2, 128, causal=1),
    Cfg("causal_tq128_tk100_d1", 1, 128, 100, 2, 2, 1, causal=1),
    # local windows
    Cfg("window_left3", 2, 7, 11, 2, 2, 3, wl=3),
    Cfg("window_right2", 2, 7, 11, 2, 2, 3, wr=2),
    Cfg("window_l2_r1_tq128_tk100", 1, 128, 100, 2, 2, 1, wl=2, wr=1),
    Cfg("window_r0_equals_causal", 1, 7, 10, 2, 2, 3, wr=0),
    Cfg("causal_window_l4_tq128", 1, 128, 140, 2, 2, 3, causal=1, wl=4),
    # kv_lens (padding)
    Cfg("kvlens_d64", 3, 7, 9, 2, 2, 64, lens=[9, 4, 1]),
    Cfg("kvlens_zero", 2, 7, 5, 2, 2, 3, lens=[5, 0]),
    Cfg("kvlens_causal_tq1_d80", 3, 1, 16, 2, 2, 80, causal=1, lens=[16, 9, 3]),
    # additive bias, broadcast over batch / heads / queries
    Cfg("bias_full", 2, 7, 9, 2, 2, 3, bias="full"),
    Cfg("bias_bcast_batch", 2, 7, 9, 2, 2, 3, bias="bcast_b"),
    Cfg("bias_bcast_heads", 2, 7, 9, 2, 2, 3, bias="bcast_h"),
    Cfg("bias_bcast_queries", 2, 7, 9, 2, 2, 64, bias="bcast_q"),
    Cfg("bias_bcast_batch_heads_tq128", 2, 128, 96, 2, 2, 1, bias="bcast_bh"),
    Cfg("bias_neginf", 2, 7, 6, 2, 2, 3, bias="neginf"),
    # ALiBi
    Cfg("alibi_h4", 1, 7, 9, 4, 4, 3, alibi=True),
    Cfg("alibi_causal_tq128", 1, 128, 136, 2, 2, 3, causal=1, alibi=True),
    Cfg("alibi_tq1_h8_d64", 1, 1, 30, 8, 8, 64, alibi=True),
    # GQA 12/4 and MQA 8/1
    Cfg("gqa12_4_d3", 2, 7, 9, 12, 4, 3),
    Cfg("gqa12_4_tq1_d64", 1, 1, 16, 12, 4, 64),
    Cfg("gqa12_4_causal_tq128_d1", 1, 128, 100, 12, 4, 1, causal=1),
    Cfg("mqa8_1_d80", 1, 7, 5, 8, 1, 80),
    Cfg("mqa8_1_causal_tq128_d3", 1, 128, 130, 8, 1, 3, causal=1),
    # Dv != D, custom scale
    Cfg("dv80_d64", 1, 7, 9, 2, 2, 64, Dv=80),
    Cfg("dv1_d3", 2, 7, 5, 2, 2, 3, Dv=1),
    Cfg("scale_0.3_d64", 1, 7, 5, 2, 2, 64, scale=0.3),
    Cfg("causal_tq1_tk2", 1, 1, 2, 2, 2, 3, causal=1),
    # combinations
    Cfg("combo_causal_lens_biasb_alibi_gqa", 2, 7, 9, 12, 4, 3, causal=1, lens=[9, 6],
        bias="bcast_b", alibi=True),
    Cfg("combo_window_lens_biash_mqa_dv", 2, 128, 96, 8, 1, 1, Dv=3, wl=5, wr=3, lens=[96, 40],
        bias="bcast_h"),
    Cfg("combo_causal_window_alibi_biasq_scale_d80", 1, 7, 12, 2, 2, 80, scale=0.05, causal=1,
        wl=3, bias="bcast_q", alibi=True),
    Cfg("combo_everything_d128", 2, 7, 10, 4, 2, 128, Dv=64, scale=0.1, causal=1, wl=4, wr=0,
        lens=[10, 0], bias="full", alibi=True),
    Cfg("combo_tq_gt_tk_window_lens_bias", 2, 7, 4, 2, 1, 3, wl=1, wr=1, lens=[4, 2],
        bias="bcast_q"),
]


def save_safetensors(path, tensors, meta):
    """A byte-reproducible safetensors writer: the header JSON lists tensors in the given order
    and sorted metadata (safetensors.torch.save_file orders __metadata__ by a hash map, so its
    bytes change from run to run). Padded to 8 bytes with spaces, as the reference does."""
    header = {"__metadata__": dict(sorted(meta.items()))}
    blobs, offset = [], 0
    dtypes = {torch.float32: "F32", torch.int32: "I32"}
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs))
    with safe_open(path, "pt") as f:  # round trip through the reference reader
        assert f.metadata() == meta and set(f.keys()) == set(tensors)
        for name, t in tensors.items():
            assert torch.equal(f.get_tensor(name), t), f"{path}: {name} does not round-trip"


def alibi_slopes(H):
    """The ALiBi paper's slopes for a power-of-two head count: 2^(-8 (h+1) / H)."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], dtype=torch.float32)


def bias_shape(c):
    return {
        "full": (c.B, c.Hq, c.Tq, c.Tk), "neginf": (c.B, c.Hq, c.Tq, c.Tk),
        "bcast_b": (1, c.Hq, c.Tq, c.Tk), "bcast_h": (c.B, 1, c.Tq, c.Tk),
        "bcast_q": (c.B, c.Hq, 1, c.Tk), "bcast_bh": (1, 1, c.Tq, c.Tk),
    }[c.bias]


def element_strides(shape):
    """qkv's bias strides (b, h, q) for a compact tensor: 0 where the dimension is broadcast."""
    _, nh, nq, tk = shape
    sq = 0 if nq == 1 else tk
    sh = 0 if nh == 1 else nq * tk
    sb = 0 if shape[0] == 1 else nh * nq * tk
    return sb, sh, sq


def visible_mask(c):
    """[B, Tq, Tk] bool: key j visible to query i of batch b (qkv.h's rules, bottom-right)."""
    i = torch.arange(c.Tq).view(1, c.Tq, 1)
    j = torch.arange(c.Tk).view(1, 1, c.Tk)
    diag = i + (c.Tk - c.Tq)
    vis = torch.ones(c.B, c.Tq, c.Tk, dtype=torch.bool)
    if c.lens is not None:
        vis = vis & (j < torch.tensor(c.lens).view(c.B, 1, 1))
    if c.causal:
        vis = vis & (j <= diag)
    if c.wl >= 0:
        vis = vis & (j >= diag - c.wl)
    if c.wr >= 0:
        vis = vis & (j <= diag + c.wr)
    return vis


def additive_mask(c, bias, slopes):
    """[B, Hq, Tq, Tk] float64: 0 / -inf from the masks, plus bias, minus slope * distance."""
    vis = visible_mask(c).unsqueeze(1).expand(c.B, c.Hq, c.Tq, c.Tk)
    m = torch.zeros(c.B, c.Hq, c.Tq, c.Tk, dtype=torch.float64)
    m = m.masked_fill(~vis, float("-inf"))
    if bias is not None:
        m = m + bias.double().expand(c.B, c.Hq, c.Tq, c.Tk)
    if slopes is not None:
        i = torch.arange(c.Tq).view(c.Tq, 1)
        j = torch.arange(c.Tk).view(1, c.Tk)
        dist = (i + (c.Tk - c.Tq) - j).abs().double()
        m = m - slopes.double().view(1, c.Hq, 1, 1) * dist
    return m


def attention_expr(qh, kh, vh, mask, scale, G):
    """Plain PyTorch: softmax(scale q kᵀ + mask) v per head, rows with no visible key -> 0."""
    kr = kh.repeat_interleave(G, dim=1)
    vr = vh.repeat_interleave(G, dim=1)
    s = scale * (qh @ kr.transpose(-1, -2)) + mask
    row_ok = (s > float("-inf")).any(dim=-1, keepdim=True)
    s_safe = torch.where(row_ok, s, torch.zeros_like(s))  # keeps NaN out of the backward
    p = torch.where(row_ok, torch.softmax(s_safe, dim=-1), torch.zeros_like(s))
    return p @ vr, s, row_ok


def generate(c, out_dir, idx):
    seed = zlib.crc32(c.name.encode())
    g = torch.Generator().manual_seed(seed)
    Dv = c.Dv or c.D
    G = c.Hq // c.Hk
    q = torch.randn(c.B, c.Tq, c.Hq, c.D, generator=g, dtype=torch.float32)
    k = torch.randn(c.B, c.Tk, c.Hk, c.D, generator=g, dtype=torch.float32)
    v = torch.randn(c.B, c.Tk, c.Hk, Dv, generator=g, dtype=torch.float32)
    dout = torch.randn(c.B, c.Tq, c.Hq, Dv, generator=g, dtype=torch.float32)
    bias = None
    if c.bias is not None:
        bias = torch.randn(*bias_shape(c), generator=g, dtype=torch.float32)
        if c.bias == "neginf":
            drop = torch.rand(*bias.shape, generator=g) < 0.2
            bias = bias.masked_fill(drop, float("-inf"))
            bias[0, 0, 0, :] = float("-inf")  # a row that sees nothing
    slopes = alibi_slopes(c.Hq) if c.alibi else None
    scale32 = float(np.float32(c.scale))  # what the C descriptor's float holds
    scale = scale32 if scale32 != 0.0 else 1.0 / math.sqrt(c.D)

    q64, k64, v64 = (t.double().requires_grad_(True) for t in (q, k, v))
    qh, kh, vh = (t.transpose(1, 2) for t in (q64, k64, v64))  # [B, H, T, D]
    mask = additive_mask(c, bias, slopes)
    out_e, s, row_ok = attention_expr(qh, kh, vh, mask, scale, G)
    empty_rows = int((~row_ok).sum())
    if empty_rows == 0:
        out_s = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, dropout_p=0.0,
                                               scale=scale, enable_gqa=(G > 1))
        diff = (out_s - out_e).abs().max().item()
        assert diff < 1e-12, f"{c.name}: SDPA and the expression differ by {diff}"
        out_h, oracle = out_s, "sdpa"
    else:
        out_h, oracle = out_e, "expr"
    lse = torch.logsumexp(s, dim=-1).detach()  # [B, Hq, Tq]; -inf for empty rows
    out = out_h.transpose(1, 2)  # [B, Tq, Hq, Dv]
    dq, dk, dv = torch.autograd.grad((out * dout.double()).sum(), (q64, k64, v64))
    if oracle == "sdpa":  # the expression's gradients must agree too
        out_e2, _, _ = attention_expr(qh, kh, vh, mask, scale, G)
        ge = torch.autograd.grad((out_e2.transpose(1, 2) * dout.double()).sum(), (q64, k64, v64))
        for a, b in zip((dq, dk, dv), ge):
            assert (a - b).abs().max().item() < 1e-11, f"{c.name}: gradients differ"
    for name, t in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        assert torch.isfinite(t).all(), f"{c.name}: {name} not finite"

    f32 = lambda t: t.detach().to(torch.float32).contiguous()
    tensors = {"q": q, "k": k, "v": v, "dout": dout, "out": f32(out), "lse": f32(lse),
               "dq": f32(dq), "dk": f32(dk), "dv": f32(dv)}
    sb = sh = sq = 0
    if bias is not None:
        tensors["bias"] = bias.contiguous()
        sb, sh, sq = element_strides(bias.shape)
    if c.lens is not None:
        tensors["kv_lens"] = torch.tensor(c.lens, dtype=torch.int32)
    if slopes is not None:
        tensors["alibi_slopes"] = slopes
    meta = {
        "format": FORMAT, "name": c.name, "oracle": oracle, "empty_rows": str(empty_rows),
        "batch": str(c.B), "q_len": str(c.Tq), "kv_len": str(c.Tk), "n_heads": str(c.Hq),
        "n_kv_heads": str(c.Hk), "head_dim": str(c.D), "v_head_dim": str(c.Dv),
        "scale": repr(scale32), "causal": str(c.causal), "window_left": str(c.wl),
        "window_right": str(c.wr), "bias_stride_b": str(sb), "bias_stride_h": str(sh),
        "bias_stride_q": str(sq), "seed": str(seed), "torch_version": torch.__version__,
    }
    path = os.path.join(out_dir, f"{idx:02d}_{c.name}.safetensors")
    save_safetensors(path, tensors, meta)
    return path, oracle, empty_rows


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "attention"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):  # stale files of renamed configurations
        if f.endswith(".safetensors"):
            os.remove(os.path.join(args.out, f))
    torch.use_deterministic_algorithms(True)
    total = 0
    for idx, c in enumerate(CONFIGS):
        path, oracle, empty = generate(c, args.out, idx)
        size = os.path.getsize(path)
        total += size
        print(f"{os.path.basename(path):58s} {oracle:5s} empty rows {empty:4d} {size:8d} bytes")
    print(f"{len(CONFIGS)} configurations, {total} bytes in {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
