#!/usr/bin/env python3
"""gen_marian_fixtures.py — tiny random MarianMT models and what transformers computes with them,
for tests/test_marian.c and tests/cli/test_translate.sh. Writes tests/fixtures/marian/.

    tools/.venv/bin/python tools/gen_marian_fixtures.py

Everything is made here, offline and seeded:
  tiny/      a Marian tokenizer directory (a sentencepiece unigram model, vocab 160, trained on
             the Debian license texts, identity normalization to keep the file small, as
             source.spm = target.spm; vocab.json laid out as OPUS-MT's: </s> 0, <unk> 1, the
             pieces, <pad> last) and a random MarianMTModel over it (d_model 32, 2 + 2
             layers, 4 heads, FFN 64, swish, scale_embedding, shared embeddings, tied head,
             random final_logits_bias and LayerNorm weights); config.json and
             generation_config.json as OPUS-MT writes them (decoder_start = pad,
             bad_words_ids [[pad]], forced_eos, num_beams 4, max_length 40).
  sep/       the same tokenizer with a second random model: separate decoder embeddings
             (share_encoder_decoder_embeddings false), gelu, no embedding scale, 3 + 1 layers.
  expect.tiny.safetensors, expect.sep.safetensors:
      src_ids [Σ len] int32, src_lens [n] — the batch of sources (tokenized by
          MarianTokenizer, different lengths, run as one padded batch);
      enc_out [Σ len, C] — the encoder's last hidden state of every real source token;
      dec_ids [n, T] — decoder inputs (start token, then random ids) and
      dec_logits [n, T, V] — MarianMTModel's logits for them (teacher forcing);
      for each decoding setup NAME: NAME.ids [Σ out] int32 and NAME.lens [n] — generate()'s
          output per source without the start token, cut after the first EOS (or at the
          padding), and NAME.scores [n] (beam search: sequences_scores).
      The setups (and their options) are listed in the "setups" metadata entry as JSON.
  texts.txt, expect.translate.txt: source lines and the text transformers' decode(generate())
      gives for them with the tiny model's generation config (the CLI test);
      expect.translate_greedy12.txt: the same with num_beams=1, max_length=12.
"""
import json
import os
import shutil
import tempfile

import numpy as np
import sentencepiece as spm
import torch
from safetensors.numpy import save_file
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "marian")
LICENSES = "/usr/share/common-licenses"

SOURCES = [
    "Hello world!",
    "The GNU General Public License is a free, copyleft license for software.",
    "You may copy it.",
    "x",
    "This License applies to any program or other work which contains a notice placed by the "
    "copyright holder.",
    "Everyone is permitted to copy and distribute verbatim copies.",
]

# name, generate() options (besides the generation config of the model directory)
SETUPS = [
    ("greedy", dict(num_beams=1)),
    ("beam4", dict(num_beams=4)),
    ("beam4_lp06_es", dict(num_beams=4, length_penalty=0.6, early_stopping=True)),
    ("beam4_lp2_nr2", dict(num_beams=4, length_penalty=2.0, no_repeat_ngram_size=2)),
    ("beam4_lpm1_never", dict(num_beams=4, length_penalty=-1.0, early_stopping="never")),
    ("beam3_new7", dict(num_beams=3, max_new_tokens=7)),
    ("greedy_nr3", dict(num_beams=1, no_repeat_ngram_size=3, max_new_tokens=20)),
    ("beam4_renorm_nr2", dict(num_beams=4, renormalize_logits=True, no_repeat_ngram_size=2)),
]


def corpus():
    lines = []
    for f in sorted(os.listdir(LICENSES)):
        p = os.path.join(LICENSES, f)
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, encoding="utf-8", errors="replace") as fh:
                lines.extend(l.rstrip("\n") for l in fh if l.strip())
    return lines


def opus_vocab(sp):
    """A vocab.json for the sentencepiece model sp laid out as OPUS-MT's: </s> 0, <unk> 1, the
    pieces in the model's order (control and unknown pieces left out), <pad> last."""
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        if p not in vocab and not sp.is_unknown(i) and not sp.is_control(i):
            vocab[p] = len(vocab)
    vocab["<pad>"] = len(vocab)
    return vocab


def make_tokenizer(tmp, out):
    txt = os.path.join(tmp, "corpus.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus()[:3000]) + "\n")
    prefix = os.path.join(tmp, "uni")
    spm.SentencePieceTrainer.train(input=txt, model_prefix=prefix, vocab_size=160,
                                   model_type="unigram", normalization_rule_name="identity",
                                   character_coverage=1.0, num_threads=1, seed_sentencepiece_size=5000,
                                   minloglevel=2)
    vocab = opus_vocab(spm.SentencePieceProcessor(model_file=prefix + ".model"))
    os.makedirs(out, exist_ok=True)
    shutil.copy(prefix + ".model", os.path.join(out, "source.spm"))
    shutil.copy(prefix + ".model", os.path.join(out, "target.spm"))
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=1)
    return MarianTokenizer(os.path.join(out, "source.spm"), os.path.join(out, "target.spm"),
                           os.path.join(out, "vocab.json")), len(vocab)


def randomize(model, seed, eos_bias=4.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.35 * torch.randn(p.shape, generator=g))
        b = 0.5 * torch.randn(model.final_logits_bias.shape, generator=g)
        b[0, model.config.eos_token_id] += eos_bias  # so that some hypotheses end before max_length
        model.final_logits_bias.copy_(b)


def trim(row, pad, eos):
    out = []
    for t in row[1:]:  # row[0] is decoder_start_token_id
        out.append(int(t))
        if t == eos:
            break
    while out and out[-1] == pad and eos != pad:
        out.pop()
    return out


def build(name, cfg_kw, tok, V, seed, Vd=None, eos_bias=4.0):
    """Vd: the decoder's vocabulary when it is separate (tools/gen_marian_sepvocab_fixtures.py);
    then pad = decoder start = Vd - 1 and tokenizer_config.json is kept (separate_vocabs)."""
    d = os.path.join(FIX, name)
    sepvocab = Vd is not None
    Vd = Vd if sepvocab else V
    pad = Vd - 1
    cfg = MarianConfig(vocab_size=V, decoder_vocab_size=Vd, d_model=32, encoder_ffn_dim=64,
                       decoder_ffn_dim=64, encoder_attention_heads=4, decoder_attention_heads=4,
                       max_position_embeddings=128, pad_token_id=pad, eos_token_id=0,
                       decoder_start_token_id=pad, forced_eos_token_id=0, dropout=0.0,
                       attention_dropout=0.0, activation_dropout=0.0, **cfg_kw)
    torch.manual_seed(seed)
    model = MarianMTModel(cfg).eval()
    randomize(model, seed, eos_bias)
    gen = GenerationConfig(bad_words_ids=[[pad]], decoder_start_token_id=pad, eos_token_id=0,
                           forced_eos_token_id=0, max_length=40, num_beams=4, pad_token_id=pad,
                           renormalize_logits=False)
    model.generation_config = gen
    model.save_pretrained(d)
    tok.save_pretrained(d)
    for extra in ("special_tokens_map.json",) if sepvocab else ("tokenizer_config.json",
                                                                 "special_tokens_map.json"):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    model = MarianMTModel.from_pretrained(d).eval()  # what a user loads

    batch = tok(SOURCES, return_tensors="pt", padding=True)
    lens = batch.attention_mask.sum(1)
    t = {"src_lens": lens.numpy().astype(np.int64)}
    t["src_ids"] = np.concatenate([batch.input_ids[i, :lens[i]].numpy() for i in range(len(lens))]
                                  ).astype(np.int32)
    with torch.no_grad():
        enc = model.get_encoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        h = enc.last_hidden_state
        t["enc_out"] = np.concatenate([h[i, :lens[i]].numpy() for i in range(len(lens))]
                                      ).astype(np.float32)
        g = torch.Generator().manual_seed(seed + 1)
        T = 9
        dec = torch.randint(0, Vd - 1, (len(SOURCES), T), generator=g)
        dec[:, 0] = pad
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    decoder_input_ids=dec)
        t["dec_ids"] = dec.numpy().astype(np.int32)
        t["dec_logits"] = out.logits.numpy().astype(np.float32)
        setups = []
        for sname, kw in SETUPS:
            r = model.generate(**batch, output_scores=True, return_dict_in_generate=True, **kw)
            rows = [trim(r.sequences[i].tolist(), pad, 0) for i in range(len(SOURCES))]
            t[sname + ".ids"] = np.array([x for row in rows for x in row], dtype=np.int32)
            t[sname + ".lens"] = np.array([len(row) for row in rows], dtype=np.int64)
            if kw.get("num_beams", 1) > 1:
                t[sname + ".scores"] = r.sequences_scores.numpy().astype(np.float32)
            setups.append({"name": sname, **{k: v for k, v in kw.items()}})
            print(name, sname, [len(x) for x in rows])
    meta = {"setups": json.dumps(setups), "transformers": __import__("transformers").__version__}
    save_file(t, os.path.join(FIX, "expect.%s.safetensors" % name), metadata=meta)
    return model


def main():
    os.makedirs(FIX, exist_ok=True)
    tmp = tempfile.mkdtemp()
    tokdir = os.path.join(tmp, "tok")
    tok, V = make_tokenizer(tmp, tokdir)
    model = build("tiny", dict(encoder_layers=2, decoder_layers=2, activation_function="swish",
                               scale_embedding=True, share_encoder_decoder_embeddings=True),
                  tok, V, 16)
    build("sep", dict(encoder_layers=3, decoder_layers=1, activation_function="gelu",
                      scale_embedding=False, share_encoder_decoder_embeddings=False,
                      tie_word_embeddings=True), tok, V, 17)
    # the CLI test: lines in, transformers' decode(generate()) out, with the directory's config
    lines = SOURCES + ["Copyright (C) 2007 Free Software Foundation, Inc.", "", "  spaces  around  "]
    with open(os.path.join(FIX, "texts.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    for suffix, kw in (("", {}), ("_greedy12", dict(num_beams=1, max_length=12))):
        outs = []
        for line in lines:  # one at a time: a line's translation never depends on its batch
            b = tok([line], return_tensors="pt")
            with torch.no_grad():
                r = model.generate(**b, **kw)
            outs.append(tok.decode(r[0], skip_special_tokens=True))
        with open(os.path.join(FIX, "expect.translate%s.txt" % suffix), "w", encoding="utf-8") as f:
            f.write("\n".join(outs) + "\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
