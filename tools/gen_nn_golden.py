#!/usr/bin/env python3
"""gen_nn_golden.py — PyTorch golden files for the reference layers of src/nn.

Writes tests/fixtures/nn/*.safetensors: inputs, parameters, outputs and gradients of every
layer (torch.nn / torch.nn.functional where PyTorch has the op, a plain PyTorch expression
where it does not: RoPE, sinusoidal tables, ALiBi slopes, learned position add). The C test
tests/test_nn_golden.c reads them; it never needs Python.

Why float64: every computation runs in float64 from inputs that are exactly representable in
float32 (random values are rounded to float32 first), and results are stored as float32. So the
files hold the correctly rounded answer to the float32 inputs the C code sees, and the C
tolerances measure our error alone.

Reproducible byte for byte: one seeded generator drives every random value, in a fixed order,
and the files are written by write_safetensors below (tensors in insertion order, metadata keys
sorted), because the safetensors package orders __metadata__ differently from run to run.
Usage:  tools/.venv/bin/python tools/gen_nn_golden.py   (torch 2.x, safetensors)
"""
import json
import math
import pathlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "nn"
torch.set_default_dtype(torch.float64)
GEN = torch.Generator().manual_seed(20250101)


def randn(*shape, scale=1.0, shift=0.0):
    """Normal values rounded to float32, held in float64."""
    t = torch.randn(*shape, generator=GEN, dtype=torch.float64) * scale + shift
    return t.float().double()


def uniform(*shape, lo=-1.0, hi=1.0):
    t = torch.rand(*shape, generator=GEN, dtype=torch.float64) * (hi - lo) + lo
    return t.float().double()


def randomize(module, scale):
    """Every parameter (weights, biases, norm gains) random, float32-representable."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(randn(*p.shape, scale=0.3, shift=1.0))
            elif name.endswith("bias"):
                p.copy_(randn(*p.shape, scale=0.2))
            else:
                p.copy_(randn(*p.shape, scale=scale))


def write_safetensors(path, tensors, metadata):
    """The safetensors layout: u64 header length, JSON header padded with spaces to a multiple
    of 8, then the tensors' bytes back to back in the order given."""
    header = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    blobs, offset = [], 0
    for name, t in tensors.items():
        data = t.numpy().tobytes()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def save(name, tensors, **meta):
    out = {}
    for k, v in tensors.items():
        if v is None:
            continue
        v = v.detach()
        out[k] = v.to(torch.int64) if not v.is_floating_point() else v.to(torch.float32)
        out[k] = out[k].contiguous()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.safetensors"
    write_safetensors(path, out, {k: str(v) for k, v in meta.items()})
    back = load_file(str(path))  # the reference reader accepts it and reads the same values
    assert back.keys() == out.keys() and all(torch.equal(back[k], out[k]) for k in out), name


def leaf(t):
    return t.clone().requires_grad_(True)


def backward(y):
    """Backpropagates a random upstream gradient; returns it."""
    dy = randn(*y.shape)
    y.backward(dy)
    return dy


# ------------------------------------------------------------------ linear, embedding


def gen_linear(name, N, C, OC, bias=True):
    lin = nn.Linear(C, OC, bias=bias)
    randomize(lin, 1.0 / math.sqrt(C))
    x = leaf(randn(N, C))
    y = lin(x)
    dy = backward(y)
    save(name, {"x": x, "weight": lin.weight, "bias": lin.bias, "out": y, "dout": dy,
                "dx": x.grad, "dweight": lin.weight.grad,
                "dbias": lin.bias.grad if bias else None})


def gen_embedding():
    V, C = 11, 6
    emb = nn.Embedding(V, C)
    randomize(emb, 1.0)
    ids = torch.tensor([[3, 7, 3, 0, 10], [7, 7, 1, 3, 5]])  # repeated ids: scatter-add
    y = emb(ids)
    dy = backward(y)
    save("embedding", {"table": emb.weight, "ids": ids, "out": y, "dout": dy,
                       "dtable": emb.weight.grad})


# ------------------------------------------------------------------ norms


def gen_layernorm(name, N, C, eps):
    ln = nn.LayerNorm(C, eps=eps)
    randomize(ln, 1.0)
    with torch.no_grad():  # the gain is named "weight" without "norm" in it
        ln.weight.copy_(randn(C, scale=0.3, shift=1.0))
    x = leaf(randn(N, C, scale=2.0, shift=3.0))
    y = ln(x)
    dy = backward(y)
    save(name, {"x": x, "weight": ln.weight, "bias": ln.bias, "out": y, "dout": dy, "dx": x.grad,
                "dweight": ln.weight.grad, "dbias": ln.bias.grad}, eps=repr(eps))


def gen_rmsnorm(name, N, C, eps):
    rn = nn.RMSNorm(C, eps=eps)
    with torch.no_grad():
        rn.weight.copy_(randn(C, scale=0.3, shift=1.0))
    x = leaf(randn(N, C, scale=2.0, shift=0.5))
    y = rn(x)
    dy = backward(y)
    save(name, {"x": x, "weight": rn.weight, "out": y, "dout": dy, "dx": x.grad,
                "dweight": rn.weight.grad}, eps=repr(eps))


# ------------------------------------------------------------------ pointwise


def gen_pointwise():
    x0 = torch.cat([randn(400, scale=3.0), uniform(300, lo=-8.0, hi=8.0),
                    torch.tensor([0.0, 1e-3, -1e-3, 5e-8, -5e-8, 10.0, -10.0, 20.0, -20.0])])
    dy = randn(*x0.shape)
    t = {"x": x0, "dout": dy}
    ops = {
        "gelu": lambda x: F.gelu(x, approximate="none"),
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "relu": F.relu,
        "silu": F.silu,
    }
    for name, f in ops.items():
        x = leaf(x0)
        y = f(x)
        y.backward(dy)
        t[name + ".out"] = y
        t[name + ".dx"] = x.grad
    # residual add: out = a + b, da = db = dout
    a, b = leaf(randn(37)), leaf(randn(37))
    y = a + b
    dya = backward(y)
    t.update({"add.a": a, "add.b": b, "add.out": y, "add.dout": dya, "add.da": a.grad,
              "add.db": b.grad})
    save("pointwise", t)


# ------------------------------------------------------------------ softmax, cross-entropy


def gen_softmax(name, N, V, scale):
    x0 = randn(N, V, scale=scale)
    dy = randn(N, V)
    t = {"x": x0, "dout": dy}
    for op, f in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        x = leaf(x0)
        y = f(x, dim=-1)
        y.backward(dy)
        t[op + ".out"] = y
        t[op + ".dx"] = x.grad
    save(name, t)


def ce_formula(logits, targets, ignore_index, eps):
    """The documented formula (nn.h), to check torch agrees with what C implements."""
    lse = torch.logsumexp(logits, dim=-1)
    keep = targets != ignore_index
    t = torch.where(keep, targets, torch.zeros_like(targets))
    nll = lse - logits.gather(1, t[:, None])[:, 0]
    smooth = lse - logits.mean(dim=-1)
    row = (1 - eps) * nll + eps * smooth
    return (row * keep).sum() / keep.sum()


def gen_cross_entropy(name, N, V, ignore_index, ignored_rows, eps_list, scale):
    logits0 = randn(N, V, scale=scale)
    targets = torch.randint(0, V, (N,), generator=GEN)
    for r in ignored_rows:
        targets[r] = ignore_index
    dloss = 0.7
    t = {"logits": logits0, "targets": targets}
    for k, eps in enumerate(eps_list):
        x = leaf(logits0)
        loss = F.cross_entropy(x, targets, ignore_index=ignore_index, label_smoothing=eps)
        ref = ce_formula(logits0, targets, ignore_index, eps)
        assert abs(loss.item() - ref.item()) < 1e-12 * max(1.0, abs(ref.item())), (loss, ref)
        loss.backward(torch.tensor(dloss))
        t[f"loss{k}"] = loss.reshape(1)
        t[f"dlogits{k}"] = x.grad
    save(name, t, ignore_index=ignore_index, dloss=dloss,
         label_smoothing=",".join(repr(e) for e in eps_list))


# ------------------------------------------------------------------ attention helpers


def bottom_right_causal(Tq, Tk):
    """True where masked: key j is visible to query i iff j <= i + (Tk - Tq)."""
    i = torch.arange(Tq)[:, None]
    j = torch.arange(Tk)[None, :]
    return j > i + (Tk - Tq)


def padding_mask(kv_lens, Tk):
    return torch.arange(Tk)[None, :] >= torch.tensor(kv_lens)[:, None]


def alibi_press(n):
    """The rule of Press et al.'s reference code (attention_with_linear_biases)."""
    def pow2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return pow2(n)
    m = 2 ** math.floor(math.log2(n))
    return pow2(m) + alibi_press(2 * m)[0::2][: n - m]


def alibi_hf(n):
    """Hugging Face BLOOM build_alibi_tensor's slopes, in float64."""
    m = 2 ** math.floor(math.log2(n))
    base = torch.tensor(2 ** (-(2 ** -(math.log2(m) - 3))))
    slopes = torch.pow(base, torch.arange(1, 1 + m, dtype=torch.float64))
    if m != n:
        extra_base = torch.tensor(2 ** (-(2 ** -(math.log2(2 * m) - 3))))
        k = min(m, n - m)
        slopes = torch.cat([slopes, torch.pow(extra_base,
                                              torch.arange(1, 1 + 2 * k, 2, dtype=torch.float64))])
    return slopes


def alibi_bias(slopes, Tq, Tk):
    """(H, Tq, Tk) additive bias -slope_h · |i + (Tk - Tq) - j| (qkv.h's alibi_slopes rule)."""
    i = torch.arange(Tq)[:, None]
    j = torch.arange(Tk)[None, :]
    dist = (i + (Tk - Tq) - j).abs().double()
    return -torch.as_tensor(slopes)[:, None, None] * dist[None]


# ------------------------------------------------------------------ multi-head attention


def gen_mha(name, B, Tq, Tk, E, H, cross=False, kdim=None, causal=False, kv_lens=None,
            alibi=False):
    mha = nn.MultiheadAttention(E, H, bias=True, batch_first=True, kdim=kdim, vdim=kdim)
    randomize(mha, 1.0 / math.sqrt(E))
    x = leaf(randn(B, Tq, E))
    mem = leaf(randn(B, Tk, kdim or E)) if cross else x
    attn_mask = None
    if causal or alibi:
        bias = torch.zeros(H, Tq, Tk)
        if alibi:
            bias = bias + alibi_bias(alibi_hf(H), Tq, Tk)
        if causal:
            bias = bias.masked_fill(bottom_right_causal(Tq, Tk)[None], float("-inf"))
        attn_mask = bias.repeat(B, 1, 1)  # (B*H, Tq, Tk), batch-major
    kpm = padding_mask(kv_lens, Tk) if kv_lens is not None else None
    if kpm is not None and attn_mask is not None:  # one float mask (torch wants matching types)
        attn_mask = attn_mask.masked_fill(kpm.repeat_interleave(H, 0)[:, None, :], float("-inf"))
        kpm = None
    y, _ = mha(x, mem, mem, attn_mask=attn_mask, key_padding_mask=kpm, need_weights=False)
    dy = backward(y)
    t = {"x": x, "out": y, "dout": dy, "dx": x.grad,
         "w_o": mha.out_proj.weight, "b_o": mha.out_proj.bias,
         "dw_o": mha.out_proj.weight.grad, "db_o": mha.out_proj.bias.grad}
    if cross:
        t.update({"mem": mem, "dmem": mem.grad})
    Q = E
    if mha._qkv_same_embed_dim:
        t.update({"w_qkv": mha.in_proj_weight, "b_qkv": mha.in_proj_bias,
                  "dw_qkv": mha.in_proj_weight.grad, "db_qkv": mha.in_proj_bias.grad})
    else:
        b, db = mha.in_proj_bias, mha.in_proj_bias.grad
        t.update({"w_q": mha.q_proj_weight, "w_k": mha.k_proj_weight, "w_v": mha.v_proj_weight,
                  "dw_q": mha.q_proj_weight.grad, "dw_k": mha.k_proj_weight.grad,
                  "dw_v": mha.v_proj_weight.grad,
                  "b_q": b[:Q], "b_k": b[Q:2 * Q], "b_v": b[2 * Q:],
                  "db_q": db[:Q], "db_k": db[Q:2 * Q], "db_v": db[2 * Q:]})
    if kv_lens is not None:
        t["kv_lens"] = torch.tensor(kv_lens)
    save(name, t, heads=H, causal=int(causal), alibi=int(alibi), fused=int(mha._qkv_same_embed_dim))


# ------------------------------------------------------------------ MLP, Transformer block


def gen_mlp(name, N, C, Fh, approximate):
    fc1, fc2 = nn.Linear(C, Fh), nn.Linear(Fh, C)
    randomize(fc1, 1.0 / math.sqrt(C))
    randomize(fc2, 1.0 / math.sqrt(Fh))
    x = leaf(randn(N, C))
    y = fc2(F.gelu(fc1(x), approximate=approximate))
    dy = backward(y)
    save(name, {"x": x, "w_fc1": fc1.weight, "b_fc1": fc1.bias, "w_fc2": fc2.weight,
                "b_fc2": fc2.bias, "out": y, "dout": dy, "dx": x.grad,
                "dw_fc1": fc1.weight.grad, "db_fc1": fc1.bias.grad, "dw_fc2": fc2.weight.grad,
                "db_fc2": fc2.bias.grad}, approximate=approximate)


def gen_block(name, B, T, C, H, Fh, norm_first, causal=False, kv_lens=None, eps=1e-5):
    layer = nn.TransformerEncoderLayer(C, H, dim_feedforward=Fh, dropout=0.0, activation="gelu",
                                       layer_norm_eps=eps, batch_first=True,
                                       norm_first=norm_first)
    randomize(layer, 1.0 / math.sqrt(C))
    x = leaf(randn(B, T, C))
    src_mask = bottom_right_causal(T, T) if causal else None
    kpm = padding_mask(kv_lens, T) if kv_lens is not None else None
    y = layer(x, src_mask=src_mask, src_key_padding_mask=kpm)
    dy = backward(y)
    p = dict(layer.named_parameters())
    names = {"self_attn.in_proj_weight": "w_qkv", "self_attn.in_proj_bias": "b_qkv",
             "self_attn.out_proj.weight": "w_o", "self_attn.out_proj.bias": "b_o",
             "linear1.weight": "w_fc1", "linear1.bias": "b_fc1",
             "linear2.weight": "w_fc2", "linear2.bias": "b_fc2",
             "norm1.weight": "ln1_w", "norm1.bias": "ln1_b",
             "norm2.weight": "ln2_w", "norm2.bias": "ln2_b"}
    assert set(names) == set(p), set(p) ^ set(names)
    t = {"x": x, "out": y, "dout": dy, "dx": x.grad}
    for tn, ours in names.items():
        t[ours] = p[tn]
        t["d" + ours] = p[tn].grad
    if kv_lens is not None:
        t["kv_lens"] = torch.tensor(kv_lens)
    save(name, t, heads=H, eps=repr(eps), pre_ln=int(norm_first), causal=int(causal))


# ------------------------------------------------------------------ positional encodings


def gen_sinusoidal():
    t = {}
    for T, C, pos0 in ((50, 16, 0), (9, 7, 3)):
        pos = torch.arange(pos0, pos0 + T, dtype=torch.float64)[:, None]
        i2 = torch.arange(0, C, 2, dtype=torch.float64)  # 2i
        angle = pos / torch.pow(torch.tensor(10000.0), i2 / C)  # (T, ceil(C/2))
        pe = torch.zeros(T, C)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : C // 2])
        t[f"pe_{T}_{C}_{pos0}"] = pe
    save("sinusoidal", t)


def rope_interleaved(x, pos0, theta, R):
    """GPT-J / RoFormer: pairs (2k, 2k+1). x (B, T, H, D)."""
    T = x.shape[1]
    inv = 1.0 / torch.pow(torch.tensor(theta), torch.arange(0, R, 2, dtype=torch.float64) / R)
    ang = torch.arange(pos0, pos0 + T, dtype=torch.float64)[:, None] * inv[None]  # (T, R/2)
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    x1, x2 = x[..., 0:R:2], x[..., 1:R:2]
    rot = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return torch.cat([rot, x[..., R:]], dim=-1)


def rope_half(x, pos0, theta, R):
    """GPT-NeoX / Hugging Face Llama rotate_half: pairs (k, k + R/2)."""
    T = x.shape[1]
    inv = 1.0 / torch.pow(torch.tensor(theta), torch.arange(0, R, 2, dtype=torch.float64) / R)
    ang = torch.arange(pos0, pos0 + T, dtype=torch.float64)[:, None] * inv[None]
    emb = torch.cat([ang, ang], dim=-1)  # (T, R)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    xr = x[..., :R]
    rotated = torch.cat([-xr[..., R // 2:], xr[..., : R // 2]], dim=-1)
    return torch.cat([xr * cos + rotated * sin, x[..., R:]], dim=-1)


def gen_rope():
    cases = [("full", (2, 6, 3, 8), 5, 10000.0, 8), ("partial", (1, 5, 2, 10), 100, 500000.0, 6)]
    for tag, shape, pos0, theta, R in cases:
        x0 = randn(*shape)
        dy = randn(*shape)
        t = {"x": x0, "dout": dy}
        for style, f in (("interleaved", rope_interleaved), ("half", rope_half)):
            x = leaf(x0)
            y = f(x, pos0, theta, R)
            y.backward(dy)
            t[style + ".out"] = y
            t[style + ".dx"] = x.grad
        save(f"rope_{tag}", t, pos0=pos0, theta=repr(theta), dims=R)


def gen_position_add():
    B, T, C, P, pos0 = 2, 4, 6, 10, 3
    x, wpe = leaf(randn(B, T, C)), leaf(randn(P, C))
    y = x + wpe[pos0:pos0 + T][None]
    dy = backward(y)
    save("position_add", {"x": x, "pe": wpe, "out": y, "dout": dy, "dx": x.grad,
                          "dpe": wpe.grad}, pos0=pos0)


def gen_alibi():
    t = {}
    for n in (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 40, 64, 96):
        press = torch.tensor(alibi_press(n))
        hf = alibi_hf(n)
        assert press.shape == hf.shape and torch.allclose(press, hf, rtol=1e-14, atol=0), n
        t[f"slopes_{n}"] = hf
    save("alibi", t)


def main():
    gen_linear("linear", 6, 7, 5)
    gen_linear("linear_nobias", 3, 4, 2, bias=False)
    gen_linear("linear_long", 8, 512, 24)
    gen_embedding()
    gen_layernorm("layernorm", 6, 17, 1e-5)
    gen_layernorm("layernorm_long", 4, 768, 1e-12)
    gen_rmsnorm("rmsnorm", 6, 17, 1e-6)
    gen_rmsnorm("rmsnorm_long", 4, 768, 1e-5)
    gen_pointwise()
    gen_softmax("softmax", 6, 33, 3.0)
    gen_softmax("softmax_long", 3, 1000, 5.0)
    gen_cross_entropy("cross_entropy", 8, 50, -100, (2, 5), (0.0, 0.1), 2.0)
    gen_cross_entropy("cross_entropy_long", 5, 1000, 3, (1,), (0.0, 0.2), 4.0)
    gen_mha("mha_self", 2, 5, 5, 16, 4)
    gen_mha("mha_self_causal", 2, 5, 5, 16, 4, causal=True)
    gen_mha("mha_self_padding", 2, 5, 5, 16, 4, kv_lens=[5, 3])
    gen_mha("mha_self_alibi", 2, 6, 6, 12, 3, causal=True, alibi=True)
    gen_mha("mha_cross", 2, 3, 7, 16, 4, cross=True, kv_lens=[7, 4])
    gen_mha("mha_cross_kdim", 2, 4, 6, 12, 3, cross=True, kdim=10, causal=True)
    gen_mlp("mlp_gelu", 8, 16, 64, "none")
    gen_mlp("mlp_gelu_tanh", 8, 16, 64, "tanh")
    gen_block("block_post", 2, 5, 16, 4, 32, norm_first=False)
    gen_block("block_post_padding", 2, 5, 16, 4, 32, norm_first=False, kv_lens=[5, 2])
    gen_block("block_pre", 2, 5, 16, 4, 32, norm_first=True)
    gen_block("block_pre_causal", 2, 6, 16, 2, 48, norm_first=True, causal=True)
    gen_sinusoidal()
    gen_rope()
    gen_position_add()
    gen_alibi()
    total = sum(p.stat().st_size for p in OUT.glob("*.safetensors"))
    print(f"wrote {len(list(OUT.glob('*.safetensors')))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
