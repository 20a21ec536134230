#!/usr/bin/env python3
"""gen_gpt_golden.py — tiny random decoder models and their Hugging Face outputs, for
tests/test_gpt.c and tests/test_lm_generate.c.

Writes, under tests/fixtures/models/:
  gpt2_tiny/            GPT2LMHeadModel, 2 layers, 4 heads, n_embd 64, vocab 384, n_positions 128
                        (F32, tied embeddings as GPT-2 always is)
  llama_tiny/           LlamaForCausalLM, 2 layers, 4 heads, 2 KV heads, hidden 64,
                        intermediate 176, vocab 512, rope_theta 10000, tied embeddings (F32)
  llama_tiny_untied/    the same shape with its own lm_head, stored as BF16 (tests conversion)
each with config.json + model.safetensors (save_pretrained) and golden.safetensors:
  ids       I32 [N]         packed prompts of different lengths
  lens      I64 [S]         their lengths
  logits    F32 [N, V]      logits of every position, each prompt run alone, in float64
  gen_ids   I32 [G]         packed prompts for greedy generation
  gen_lens  I64 [Sg]
  gen_out   I32 [Sg, 32]    generate(do_sample=False, max_new_tokens=32), each prompt alone
and tests/fixtures/models/sampling_golden.safetensors: HF LogitsProcessor outputs on fixed
logits (repetition penalty, temperature, top-k, top-p, and the chain generate() applies).

Every parameter (norm weights and biases too) is drawn at random with a large enough scale that
the greedy path has clear winners; the script checks that float32 and float64 greedy agree and
reports the smallest top-1/top-2 gap along the way.
Usage: tools/.venv/bin/python tools/gen_gpt_golden.py"""
import json
import os
import shutil
import struct

import numpy as np
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "models")
NEW_TOKENS = 32


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


def randomize(model, std):
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def greedy(model, prompt, dtype):
    m = model.to(dtype)
    ids = torch.tensor([prompt])
    out = m.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                     max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, eos_token_id=None,
                     pad_token_id=0)
    return out[0, len(prompt):].tolist()


def min_gap(model, prompt, gen):
    m = model.to(torch.float64)
    seq = torch.tensor([prompt + gen])
    with torch.no_grad():
        lg = m(seq).logits[0, len(prompt) - 1:-1]
    top = torch.topk(lg, 2, dim=-1).values
    return float((top[:, 0] - top[:, 1]).min())


def build(name, model, vocab, lens, gen_lens, store_dtype=None):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.eval()
    if store_dtype is not None:  # round the weights so the stored values are exact
        model.to(store_dtype).to(torch.float32)
        model.to(store_dtype).save_pretrained(d)
        model.to(torch.float32)
    else:
        model.save_pretrained(d)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    # The outputs come from the model reloaded from disk: casting the live model to BF16 and
    # back would also round RoPE's inv_freq buffer, which the saved model does not have.
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    rng = np.random.default_rng(7)
    prompts = [rng.integers(0, vocab, n).tolist() for n in lens]
    m64 = model.to(torch.float64)
    logits = []
    with torch.no_grad():
        for p in prompts:
            logits.append(m64(torch.tensor([p])).logits[0].numpy().astype(np.float32))
    gprompts = [rng.integers(0, vocab, n).tolist() for n in gen_lens]
    outs, gap = [], 1e9
    for p in gprompts:
        o32 = greedy(model, p, torch.float32)
        o64 = greedy(model, p, torch.float64)
        assert o32 == o64, f"{name}: float32 and float64 greedy differ; change the seed"
        gap = min(gap, min_gap(model, p, o32))
        outs.append(o32)
    model.to(torch.float32)
    write_safetensors(os.path.join(d, "golden.safetensors"), [
        ("ids", np.array(sum(prompts, []), dtype=np.int32)),
        ("lens", np.array(lens, dtype=np.int64)),
        ("logits", np.concatenate(logits, 0)),
        ("gen_ids", np.array(sum(gprompts, []), dtype=np.int32)),
        ("gen_lens", np.array(gen_lens, dtype=np.int64)),
        ("gen_out", np.array(outs, dtype=np.int32)),
    ])
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {size} bytes, smallest greedy top-2 gap {gap:.4f}, first: {outs[0][:8]}")


def sampling_golden():
    g = torch.Generator().manual_seed(99)
    R, V = 4, 300
    logits = 3.0 * torch.randn(R, V, generator=g)
    seen = torch.randint(0, V, (R, 20), generator=g)
    rep = RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())
    rep_lt1 = RepetitionPenaltyLogitsProcessor(0.8)(seen, logits.clone())
    temp = TemperatureLogitsWarper(0.7)(seen, logits.clone())
    topk = TopKLogitsWarper(10)(seen, logits.clone())
    topp = TopPLogitsWarper(0.9)(seen, logits.clone())
    topp_small = TopPLogitsWarper(0.05)(seen, logits.clone())
    chain = logits.clone()
    for proc in (RepetitionPenaltyLogitsProcessor(1.2), TemperatureLogitsWarper(0.8),
                 TopKLogitsWarper(50), TopPLogitsWarper(0.8)):
        chain = proc(seen, chain)
    f = lambda t: t.numpy().astype(np.float32)
    write_safetensors(os.path.join(OUT, "sampling_golden.safetensors"), [
        ("logits", f(logits)), ("seen", seen.numpy().astype(np.int32)),
        ("rep_1.3", f(rep)), ("rep_0.8", f(rep_lt1)), ("temp_0.7", f(temp)),
        ("topk_10", f(topk)), ("topp_0.9", f(topp)), ("topp_0.05", f(topp_small)),
        ("chain_r1.2_t0.8_k50_p0.8", f(chain)),
    ])
    print("sampling_golden: written")


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    lens = [1, 7, 33, 100]
    gen_lens = [5, 12, 1]
    c = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, vocab_size=384,
                   activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                   attn_pdrop=0.0, bos_token_id=0, eos_token_id=1)
    m = GPT2LMHeadModel(c)
    randomize(m, 0.15)
    build("gpt2_tiny", m, 384, lens, gen_lens)
    for tied, name, dt in ((True, "llama_tiny", None), (False, "llama_tiny_untied", torch.bfloat16)):
        c = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=176, vocab_size=512,
                        rope_theta=10000.0, max_position_embeddings=128,
                        tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2)
        m = LlamaForCausalLM(c)
        randomize(m, 0.15)
        build(name, m, 512, lens, gen_lens, dt)
    sampling_golden()


if __name__ == "__main__":
    main()
