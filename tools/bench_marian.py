#!/usr/bin/env python3
"""bench_marian.py — target tokens/s of `qkv translate` against transformers' generate() on a
Marian-shaped random model (OPUS-MT's shape: 6 + 6 layers, d_model 512, 8 heads, FFN 2048,
vocabulary 58,101), the same sources and options in the same run, float32 on the CPU.

  tools/.venv/bin/python tools/bench_marian.py --qkv build/qkv [--threads 2] [--beams 4]
        [--batch 32] [--sentences 64] [--max-new 32] [--dir /tmp/marian_bench]

The model directory (random weights, seeded; the tiny fixture's tokenizer, whose ids all lie
in the vocabulary) is written once to --dir. Sources are lines of the Debian license texts.
Both sides decode with num_beams, max_new_tokens and batch size given; random weights rarely
emit EOS, so both produce about max_new tokens per sentence: tokens/s = generated target
tokens (counted on transformers' output) / wall time. With --ct2, CTranslate2 (the model converted
offline from the same directory, float32, one translator with --threads intra-op threads) runs
the same sources too. Prints one JSON line per system and the ratios."""
import argparse
import json
import os
import subprocess
import time

import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOK = os.path.join(ROOT, "tests", "fixtures", "marian", "tiny")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qkv", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sentences", type=int, default=64)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--dir", default="/tmp/marian_bench")
    ap.add_argument("--ct2", action="store_true", help="also time CTranslate2 (PyPI ctranslate2)")
    ap.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32",
                    help="weights (and transformers' / CTranslate2's compute) in this precision: "
                         "qkv --dtype, model.to(torch dtype), CTranslate2 compute_type")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    V = 58101
    if not os.path.exists(os.path.join(a.dir, "model.safetensors")):
        torch.manual_seed(0)
        cfg = MarianConfig(vocab_size=V, decoder_vocab_size=V, d_model=512, encoder_layers=6,
                           decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
                           encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512,
                           pad_token_id=V - 1, eos_token_id=0, decoder_start_token_id=V - 1,
                           forced_eos_token_id=0, scale_embedding=True,
                           activation_function="swish", dropout=0.0)
        m = MarianMTModel(cfg)
        m.generation_config = GenerationConfig(bad_words_ids=[[V - 1]], decoder_start_token_id=V - 1,
                                               eos_token_id=0, forced_eos_token_id=0,
                                               max_length=512, num_beams=4, pad_token_id=V - 1)
        m.save_pretrained(a.dir)
        for f in ("source.spm", "target.spm"):
            with open(os.path.join(TOK, f), "rb") as s, open(os.path.join(a.dir, f), "wb") as d:
                d.write(s.read())
        with open(os.path.join(TOK, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)  # the tiny vocabulary, <pad> moved last, filler pieces between
        del vocab["<pad>"]
        for i in range(len(vocab), V - 1):
            vocab["\u2581w%d" % i] = i
        vocab["<pad>"] = V - 1
        with open(os.path.join(a.dir, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
    tdt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    model = MarianMTModel.from_pretrained(a.dir).eval().to(tdt)
    tok = MarianTokenizer.from_pretrained(a.dir)
    lines = []
    lic = "/usr/share/common-licenses"
    for f in sorted(os.listdir(lic)):
        p = os.path.join(lic, f)
        if os.path.isfile(p):
            with open(p, encoding="utf-8", errors="replace") as fh:
                lines += [l.strip() for l in fh if 20 < len(l.strip()) < 200]
    lines = lines[: a.sentences]
    src = os.path.join(a.dir, "src.txt")
    with open(src, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    kw = dict(num_beams=a.beams, max_new_tokens=a.max_new, bad_words_ids=[[V - 1]],
              forced_eos_token_id=0)
    t0 = time.perf_counter()
    n_tok = 0
    texts = [None] * len(lines)
    order = sorted(range(len(lines)), key=lambda i: len(tok(lines[i]).input_ids))
    for b in range(0, len(order), a.batch):
        batch = tok([lines[i] for i in order[b:b + a.batch]], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**batch, **kw)
        n_tok += int((out[:, 1:] != V - 1).sum())
        for k, i in enumerate(order[b:b + a.batch]):
            texts[i] = tok.decode(out[k], skip_special_tokens=True)
    hf = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = subprocess.run([a.qkv, "translate", "--model", a.dir, "--beams", str(a.beams),
                    "--max-new-tokens", str(a.max_new), "--batch", str(a.batch), "--threads",
                    str(a.threads), "--dtype", a.dtype, src], check=True, stdout=subprocess.PIPE)
    qk = time.perf_counter() - t0
    ct = None
    if a.ct2:
        import ctranslate2
        ct_dir = os.path.join(a.dir, "ct2-float32")
        if not os.path.exists(os.path.join(ct_dir, "model.bin")):
            ctranslate2.converters.TransformersConverter(a.dir).convert(ct_dir, force=True)
        ct_type = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[a.dtype]
        try:
            tr = ctranslate2.Translator(ct_dir, device="cpu", compute_type=ct_type,
                                        inter_threads=1, intra_threads=a.threads)
        except ValueError as e:  # 16-bit compute is GPU-only in CTranslate2
            print(json.dumps(dict(system="ctranslate2", compute_type=ct_type, error=str(e))))
            tr = None
    if a.ct2 and tr is not None:
        toks = [tok.convert_ids_to_tokens(tok(l).input_ids) for l in lines]
        t0 = time.perf_counter()
        res = tr.translate_batch(toks, beam_size=a.beams, max_batch_size=a.batch,
                                 batch_type="examples", max_decoding_length=a.max_new)
        # (the converter drops <pad>, Marian's last id, from the vocabulary: never generated)
        ct = time.perf_counter() - t0
        ct_texts = [tok.convert_tokens_to_string([t for t in r.hypotheses[0] if t != "</s>"])
                    for r in res]
    common = dict(model="marian-6+6-d512", sentences=len(lines), beams=a.beams, batch=a.batch,
                  threads=a.threads, max_new_tokens=a.max_new, target_tokens=n_tok,
                  dtype=a.dtype)
    print(json.dumps(dict(system="transformers", seconds=hf, tokens_per_s=n_tok / hf, **common)))
    print(json.dumps(dict(system="qkv", seconds=qk, tokens_per_s=n_tok / qk, **common,
                          note="qkv time includes loading the model")))
    got = r.stdout.decode("utf-8").split("\n")[: len(lines)]
    same = sum(g == t for g, t in zip(got, texts))
    if ct is not None:
        print(json.dumps(dict(system="ctranslate2", seconds=ct, tokens_per_s=n_tok / ct, **common,
                              version=ctranslate2.__version__, compute_type=ct_type)))
    ratios = dict(ratio_qkv_over_transformers=hf / qk, same_text=same, sentences=len(lines))
    if ct is not None:
        ratios.update(ratio_qkv_over_ctranslate2=ct / qk,
                      ct2_same_text=sum(c == t for c, t in zip(ct_texts, texts)))
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
