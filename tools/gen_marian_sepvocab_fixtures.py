#!/usr/bin/env python3
"""gen_marian_sepvocab_fixtures.py — a tiny random MarianMT model with separate source and
target vocabularies (MarianTokenizer's separate_vocabs: vocab.json for the source,
target_vocab.json for the target and the decoder), and what transformers computes with it, for
tests/test_marian.c and tests/cli/test_translate.sh. Writes tests/fixtures/marian/sepvocab/,
expect.sepvocab.safetensors and expect.sepvocab.translate.txt; the other Marian fixtures
(tools/gen_marian_fixtures.py) are left as they are.

    tools/.venv/bin/python tools/gen_marian_sepvocab_fixtures.py

The source side is the tiny fixture's source.spm + vocab.json (160 ids); the target side a
second sentencepiece unigram model (vocab 160) trained on other lines of the Debian license
texts, with target_vocab.json laid out as OPUS-MT's (</s> 0, <unk> 1, the pieces, <pad> last:
160 ids, so <pad> is 159 on both sides — transformers' decode skips special tokens by their
source ids — while the pieces between differ). The model: d 32, 2 + 2 layers, swish,
scale_embedding, separate encoder and decoder embeddings, head tied to the decoder's, pad =
decoder start = 159, a smaller EOS bias (3.0) than the other fixtures so outputs run longer;
tokenizer_config.json as MarianTokenizer.save_pretrained writes it (separate_vocabs: true).
expect.sepvocab.safetensors has gen_marian_fixtures.py's entries plus tgt_ids [Σ len] /
tgt_lens [n]: the SOURCES encoded as targets (text_target: target.spm, target_vocab.json, </s>).
"""
import os
import shutil
import tempfile

import numpy as np
import sentencepiece as spm
import torch
from safetensors.numpy import load_file, save_file
from safetensors import safe_open
from transformers import MarianTokenizer

import gen_marian_fixtures as gm


def main():
    tmp = tempfile.mkdtemp()
    tiny = os.path.join(gm.FIX, "tiny")
    txt = os.path.join(tmp, "corpus.txt")
    with open(txt, "w", encoding="utf-8") as f:
        f.write("\n".join(gm.corpus()[3000:6000]) + "\n")
    prefix = os.path.join(tmp, "tgt")
    spm.SentencePieceTrainer.train(input=txt, model_prefix=prefix, vocab_size=160,
                                   model_type="unigram", normalization_rule_name="identity",
                                   character_coverage=1.0, num_threads=1,
                                   seed_sentencepiece_size=5000, minloglevel=2)
    tvocab = gm.opus_vocab(spm.SentencePieceProcessor(model_file=prefix + ".model"))
    src = os.path.join(tmp, "src")
    os.makedirs(src)
    shutil.copy(os.path.join(tiny, "source.spm"), os.path.join(src, "source.spm"))
    shutil.copy(os.path.join(tiny, "vocab.json"), os.path.join(src, "vocab.json"))
    shutil.copy(prefix + ".model", os.path.join(src, "target.spm"))
    import json
    with open(os.path.join(src, "target_vocab.json"), "w", encoding="utf-8") as f:
        json.dump(tvocab, f, ensure_ascii=False, indent=1)
    tok = MarianTokenizer(os.path.join(src, "source.spm"), os.path.join(src, "target.spm"),
                          os.path.join(src, "vocab.json"),
                          target_vocab_file=os.path.join(src, "target_vocab.json"),
                          separate_vocabs=True)
    V, Vd = len(tok.encoder), len(tvocab)
    model = gm.build("sepvocab", dict(encoder_layers=2, decoder_layers=2,
                                      activation_function="swish", scale_embedding=True,
                                      share_encoder_decoder_embeddings=False,
                                      tie_word_embeddings=True), tok, V, 18, Vd=Vd,
                      eos_bias=3.0)
    d = os.path.join(gm.FIX, "sepvocab")
    tok = MarianTokenizer.from_pretrained(d)  # what a user loads
    assert tok.separate_vocabs and len(tok.target_encoder) == Vd
    ex = os.path.join(gm.FIX, "expect.sepvocab.safetensors")
    with safe_open(ex, "np") as f:
        meta = f.metadata()
    t = load_file(ex)
    rows = [tok(text_target=s).input_ids for s in gm.SOURCES]
    t["tgt_ids"] = np.array([x for r in rows for x in r], dtype=np.int32)
    t["tgt_lens"] = np.array([len(r) for r in rows], dtype=np.int64)
    save_file(t, ex, metadata=meta)
    lines = gm.SOURCES + ["Copyright (C) 2007 Free Software Foundation, Inc.", "",
                          "  spaces  around  "]
    outs = []
    for line in lines:
        b = tok([line], return_tensors="pt")
        with torch.no_grad():
            r = model.generate(**b)
        outs.append(tok.decode(r[0], skip_special_tokens=True))
    with open(os.path.join(gm.FIX, "expect.sepvocab.translate.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(outs) + "\n")
    shutil.rmtree(tmp)
    print("sepvocab: V", V, "Vd", Vd, outs[:3])


if __name__ == "__main__":
    main()
