#!/usr/bin/env python3
"""bench_hf_generate.py — the Hugging Face peer of bench/bench_generate.c: prefill and decode
tokens/s of transformers' generate() (greedy, KV cache, PyTorch CPU, float32) on the same
shapes with random weights, printed as the same JSON lines.

  tools/.venv/bin/python tools/bench_hf_generate.py [--threads N] [--prompt T] [--new M]
                                                    [--reps R] [--only gpt2|llama]

prefill = generate(max_new_tokens=1) (one pass over the prompt + one argmax);
decode  = (generate(max_new_tokens=M+1) - prefill) / M tokens. Medians of R runs."""
import argparse
import json
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM


def models():
    yield "gpt2-124m", lambda: GPT2LMHeadModel(GPT2Config(
        vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024))
    yield "llama-125m", lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        num_key_value_heads=4, intermediate_size=2048, max_position_embeddings=2048,
        rope_theta=10000.0, tie_word_embeddings=False))


def timed_generate(model, ids, n_new):
    t0 = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                       max_new_tokens=n_new, min_new_tokens=n_new, eos_token_id=None,
                       pad_token_id=0)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for name, make in models():
        if a.only and a.only not in name:
            continue
        model = make().eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        ids = torch.tensor([[(t * 7919 + 13) % model.config.vocab_size for t in range(a.prompt)]])
        timed_generate(model, ids, 2)  # warm-up
        pre, dec = [], []
        for _ in range(a.reps):
            tp = timed_generate(model, ids, 1)
            tg = timed_generate(model, ids, a.new + 1)
            pre.append(a.prompt / tp)
            dec.append(a.new / max(tg - tp, 1e-9))
        print(json.dumps({"bench": "generate", "impl": "hf-transformers-" + __import__(
            "transformers").__version__ + "-torch-" + torch.__version__.split("+")[0],
            "model": name, "params_m": round(params, 1), "threads": a.threads,
            "prompt": a.prompt, "new": a.new, "prefill_tok_s": round(statistics.median(pre), 1),
            "decode_tok_s": round(statistics.median(dec), 2)}), flush=True)


if __name__ == "__main__":
    main()
