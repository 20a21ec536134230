#!/usr/bin/env python3
"""gen_t5_fixtures.py — tiny random T5 / T5 v1.1 models and what transformers computes with them,
for tests/test_t5.c and tests/cli/test_translate_t5.sh. Writes tests/fixtures/t5/.

    tools/.venv/bin/python tools/gen_t5_fixtures.py

Everything is made here, offline and seeded:
  spiece/    spiece.model alone: a sentencepiece unigram model (vocab 150, trained on the Debian
             license texts, identity normalization to keep the file small) with T5's special
             pieces (<pad> 0, </s> 1, <unk> 2) — what T5Tokenizer reads when there is no
             tokenizer.json (it then appends </s> and 100 <extra_id_N> tokens).
  t5/        T5Tokenizer's save_pretrained of that model (tokenizer.json: Unigram,
             [WhitespaceSplit, Metaspace], "$A </s>") and a random T5ForConditionalGeneration:
             d_model 32, 3 heads of d_kv 8 (inner 24 != d_model), d_ff 48, ReLU, 2 encoder +
             3 decoder layers, 8 buckets / max_distance 12, tied embeddings (the d_model^-0.5
             rescale before the head); config.json with task_specific_params
             (translation_en_to_de prefix).
  v11/       the same tokenizer with a T5 v1.1-style model: gated-gelu, untied lm_head,
             4 heads of d_kv 16 (inner 64), d_ff 40, 3 encoder + 2 decoder layers, 10 buckets /
             max_distance 16.
  expect.t5.safetensors, expect.v11.safetensors:
      src_ids [Σ len] int32, src_lens [n] — the batch of sources (T5Tokenizer, "$A </s>",
          different lengths up to ~45 tokens so the buckets saturate, run as one padded batch);
      enc_out [Σ len, C] — the encoder's last hidden state (after its final norm);
      dec_ids [n, T], dec_logits [n, T, V] — teacher-forced decoder inputs and their logits;
      NAME.ids / NAME.lens / NAME.scores — generate() per decoding setup (see "setups").
  expect.buckets.safetensors: transformers' _relative_position_bucket for relative positions
      -R..R (R = 700), bidirectional and causal, for the fixture configs and T5's own 32 / 128.
  expect.tok.safetensors: ids of texts.txt's lines by the t5/ tokenizer.json and by T5Tokenizer
      over spiece/ alone (ids_json / ids_spm [Σ len], lens_json / lens_spm [n]).
  texts.txt, expect.translate.txt: lines, and transformers' decode(generate(), skip_special_tokens)
      of prefix + line with the v11/ model's generation defaults (the CLI test; prefix from
      task_specific_params); expect.translate_noprefix_beam3.txt: no prefix, num_beams 3.
"""
import json
import os
import shutil
import tempfile

import numpy as np
import safetensors.torch
import sentencepiece as spm
import torch
from safetensors.numpy import save_file
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration, T5Tokenizer
from transformers.models.t5.modeling_t5 import T5Attention

from gen_marian_fixtures import corpus  # the Debian license texts, line by line

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "t5")
PREFIX = "translate English to German: "

SOURCES = [
    "Hello world!",
    "The GNU General Public License is a free, copyleft license for software and other kinds "
    "of works, and it is meant to stay free.",
    "You may copy it.",
    "x",
    "This License applies to any program or other work which contains a notice placed by the "
    "copyright holder saying it may be distributed under the terms of this License.",
    "Everyone is permitted to copy and distribute verbatim copies.",
]

SETUPS = [
    ("greedy", dict(num_beams=1)),
    ("beam4", dict(num_beams=4)),
    ("beam4_lp06_es", dict(num_beams=4, length_penalty=0.6, early_stopping=True)),
    ("beam4_lp2_nr2", dict(num_beams=4, length_penalty=2.0, no_repeat_ngram_size=2)),
    ("beam4_lpm1_never", dict(num_beams=4, length_penalty=-1.0, early_stopping="never")),
    ("beam3_new7", dict(num_beams=3, max_new_tokens=7)),
    ("greedy_nr3", dict(num_beams=1, no_repeat_ngram_size=3, max_new_tokens=20)),
    ("beam5_nr3_es", dict(num_beams=5, no_repeat_ngram_size=3, early_stopping=True)),
]


def make_spiece(tmp):
    txt = os.path.join(tmp, "corpus.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus()[:3000]) + "\n")
    prefix = os.path.join(tmp, "uni")
    spm.SentencePieceTrainer.train(input=txt, model_prefix=prefix, vocab_size=150,
                                   model_type="unigram", normalization_rule_name="identity",
                                   character_coverage=1.0, num_threads=1,
                                   seed_sentencepiece_size=5000, pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, minloglevel=2)
    d = os.path.join(FIX, "spiece")
    os.makedirs(d, exist_ok=True)
    shutil.copy(prefix + ".model", os.path.join(d, "spiece.model"))
    return d


def randomize(model, seed, eos):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(1.0 * torch.randn(p.shape, generator=g))
            elif name in ("shared.weight", "lm_head.weight"):
                p.copy_(1.0 * torch.randn(p.shape, generator=g))
            elif ".q.weight" in name or ".k.weight" in name:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def bump_eos(model, tok, eos, alpha, tied):
    """Make EOS likelier (so that some hypotheses end early): its head row gains alpha times the
    direction of the mean scaled decoder output over a few random inputs."""
    cfg = model.config
    with torch.no_grad():
        b = tok(SOURCES, return_tensors="pt", padding=True)
        g = torch.Generator().manual_seed(5)
        dec = torch.randint(3, 140, (len(SOURCES), 12), generator=g)
        dec[:, 0] = cfg.decoder_start_token_id
        out = model(**b, decoder_input_ids=dec, output_hidden_states=True, use_cache=False)
        h = out.decoder_hidden_states[-1]
        if cfg.scale_decoder_outputs:
            h = h * cfg.d_model ** -0.5
        m = h.reshape(-1, cfg.d_model).mean(0)
        head = model.lm_head.weight if not tied else model.shared.weight
        head[eos] += alpha * m / (m @ m)


def trim(row, pad, eos):
    out = []
    for t in row[1:]:  # row[0] is decoder_start_token_id
        out.append(int(t))
        if t == eos:
            break
    while out and out[-1] == pad and eos != pad:
        out.pop()
    return out


def build(name, cfg_kw, tok, V, seed, alpha, task_params=None):
    d = os.path.join(FIX, name)
    cfg = T5Config(vocab_size=V, d_model=32, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                   decoder_start_token_id=0, layer_norm_epsilon=1e-6, n_positions=128,
                   task_specific_params=task_params, **cfg_kw)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(cfg).eval()
    randomize(model, seed, 1)
    tied = cfg_kw["tie_word_embeddings"]
    if not tied:
        # transformers 5 always ties lm_head to shared at construction (and only scales the
        # decoder output when tie_word_embeddings was not false); a checkpoint holding both with
        # different values loads untied, as the published T5 v1.1 checkpoints do
        g = torch.Generator().manual_seed(seed + 7)
        model.lm_head.weight = torch.nn.Parameter(0.18 * torch.randn(V, 32, generator=g))
    bump_eos(model, tok, 1, alpha, tied)
    model.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1,
                                               pad_token_id=0, max_length=30)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    if not tied:  # as a T5 v1.1 checkpoint: lm_head.weight saved, tie_word_embeddings false
        w = {k: v.numpy() for k, v in safetensors.torch.load_file(
            os.path.join(d, "model.safetensors")).items()}
        w["lm_head.weight"] = model.lm_head.weight.detach().numpy().copy()
        save_file(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        c["tie_word_embeddings"] = False
        c.pop("scale_decoder_outputs", None)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=2, sort_keys=True)
    for extra in ("special_tokens_map.json", "spiece.model"):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    model = T5ForConditionalGeneration.from_pretrained(d).eval()  # what a user loads
    assert tied == (model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr())
    # transformers 5.23 sizes the decoder's cache by num_layers: with more decoder layers than
    # encoder layers generate() fails (IndexError in cache_utils); it then runs without a cache
    nc = {"use_cache": False} if cfg.num_decoder_layers > cfg.num_layers else {}

    batch = tok(SOURCES, return_tensors="pt", padding=True)
    lens = batch.attention_mask.sum(1)
    t = {"src_lens": lens.numpy().astype(np.int64)}
    t["src_ids"] = np.concatenate([batch.input_ids[i, :lens[i]].numpy()
                                   for i in range(len(lens))]).astype(np.int32)
    print(name, "source lengths", lens.tolist())
    with torch.no_grad():
        enc = model.get_encoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        h = enc.last_hidden_state
        t["enc_out"] = np.concatenate([h[i, :lens[i]].numpy() for i in range(len(lens))]
                                      ).astype(np.float32)
        g = torch.Generator().manual_seed(seed + 1)
        T = 20  # past max_distance: the decoder's buckets saturate too
        dec = torch.randint(0, V, (len(SOURCES), T), generator=g)
        dec[:, 0] = 0
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    decoder_input_ids=dec, **nc)
        t["dec_ids"] = dec.numpy().astype(np.int32)
        t["dec_logits"] = out.logits.numpy().astype(np.float32)
        setups = []
        for sname, kw in SETUPS:
            r = model.generate(**batch, output_scores=True, return_dict_in_generate=True, **kw,
                               **nc)
            rows = [trim(r.sequences[i].tolist(), 0, 1) for i in range(len(SOURCES))]
            t[sname + ".ids"] = np.array([x for row in rows for x in row], dtype=np.int32)
            t[sname + ".lens"] = np.array([len(row) for row in rows], dtype=np.int64)
            if kw.get("num_beams", 1) > 1:
                t[sname + ".scores"] = r.sequences_scores.numpy().astype(np.float32)
            setups.append({"name": sname, **kw})
            print(name, sname, [len(x) for x in rows])
    meta = {"setups": json.dumps(setups), "transformers": __import__("transformers").__version__}
    save_file(t, os.path.join(FIX, "expect.%s.safetensors" % name), metadata=meta)
    return model


def buckets():
    R = 700
    rp = torch.arange(-R, R + 1)
    t = {}
    for nb, md in ((8, 12), (10, 16), (32, 128), (4, 3), (6, 100)):
        for bi in (1, 0):
            t["b%d_%d_%d" % (nb, md, bi)] = T5Attention._relative_position_bucket(
                rp, bool(bi), nb, md).numpy().astype(np.int32)
    save_file(t, os.path.join(FIX, "expect.buckets.safetensors"), metadata={"R": str(R)})


def main():
    os.makedirs(FIX, exist_ok=True)
    tmp = tempfile.mkdtemp()
    sp_dir = make_spiece(tmp)
    tok = T5Tokenizer.from_pretrained(sp_dir)  # converted from spiece.model, 100 extra ids
    V = 256
    assert len(tok) <= V, len(tok)
    task = {"translation_en_to_de": {"prefix": PREFIX, "max_length": 300, "num_beams": 4},
            "summarization": {"prefix": "summarize: "}}
    build("t5", dict(d_kv=8, num_heads=3, d_ff=48, num_layers=2, num_decoder_layers=3,
                             relative_attention_num_buckets=8, relative_attention_max_distance=12,
                             feed_forward_proj="relu", tie_word_embeddings=True),
                  tok, V, 21, 1.2)
    model = build("v11", dict(d_kv=16, num_heads=4, d_ff=40, num_layers=3, num_decoder_layers=2,
                      relative_attention_num_buckets=10, relative_attention_max_distance=16,
                      feed_forward_proj="gated-gelu", tie_word_embeddings=False),
          tok, V, 22, 1.5, task)
    buckets()

    lines = SOURCES + ["Copyright (C) 2007 Free Software Foundation, Inc.", "",
                       "  spaces  around  ", "<extra_id_0> sentinel and </s> in text"]
    with open(os.path.join(FIX, "texts.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    # tokenizers: tokenizer.json of t5/ and T5Tokenizer over spiece.model alone
    tj = T5Tokenizer.from_pretrained(os.path.join(FIX, "v11"))
    t = {}
    for key, tk in (("json", tj), ("spm", tok)):
        enc = [tk(l)["input_ids"] for l in lines]
        t["ids_" + key] = np.array([x for e in enc for x in e], dtype=np.int32)
        t["lens_" + key] = np.array([len(e) for e in enc], dtype=np.int64)
    assert (t["ids_json"] == t["ids_spm"]).all()
    save_file(t, os.path.join(FIX, "expect.tok.safetensors"))
    # the CLI: lines in, transformers' decode(generate()) out
    for suffix, prefix, kw in (("", PREFIX, {}), ("_noprefix_beam3", "", dict(num_beams=3))):
        outs = []
        for line in lines:
            b = tj([prefix + line], return_tensors="pt")
            with torch.no_grad():
                r = model.generate(**b, **kw, use_cache=False)
            outs.append(tj.decode(r[0], skip_special_tokens=True))
        with open(os.path.join(FIX, "expect.translate%s.txt" % suffix), "w",
                  encoding="utf-8") as f:
            f.write("\n".join(outs) + "\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
