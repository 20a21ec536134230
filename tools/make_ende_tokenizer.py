#!/usr/bin/env python3
"""make_ende_tokenizer.py — a Marian (OPUS-MT layout) tokenizer directory for the English→German
corpus of make_ende_dataset.py: one SentencePiece unigram model trained with Google's
`sentencepiece` on the training split of both languages (test and validation never seen),
written as source.spm = target.spm, and a vocab.json laid out as OPUS-MT's (</s> 0, <unk> 1,
the pieces in the model's order, <pad> last). `qkv data prepare --tokenizer OUT` and
transformers' MarianTokenizer read the directory.

    tools/.venv/bin/python tools/make_ende_tokenizer.py [--data /work/ende] [--out DIR]
        [--vocab 8000] [--sentences 300000] [--seed 16]

Normalization nmt_nfkc (SentencePiece's default, as OPUS-MT's models use); character coverage
0.9999; --sentences lines sampled (seeded) from train.en + train.de for the trainer.
"""
import argparse
import json
import os
import random
import shutil
import tempfile

import sentencepiece as spm

from gen_marian_fixtures import opus_vocab


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/ende")
    ap.add_argument("--out", default="/work/runs/ende/tok")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--sentences", type=int, default=300000)
    ap.add_argument("--seed", type=int, default=16)
    a = ap.parse_args()
    lines = []
    for lang in ("en", "de"):
        with open(os.path.join(a.data, "train." + lang), encoding="utf-8") as f:
            lines += [l.rstrip("\n") for l in f if l.strip()]
    random.Random(a.seed).shuffle(lines)
    lines = lines[: a.sentences]
    with tempfile.TemporaryDirectory() as tmp:
        txt = os.path.join(tmp, "corpus.txt")
        with open(txt, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        prefix = os.path.join(tmp, "ende")
        spm.SentencePieceTrainer.train(input=txt, model_prefix=prefix, vocab_size=a.vocab,
                                       model_type="unigram", character_coverage=0.9999,
                                       num_threads=2, seed_sentencepiece_size=500000,
                                       minloglevel=1)
        vocab = opus_vocab(spm.SentencePieceProcessor(model_file=prefix + ".model"))
        os.makedirs(a.out, exist_ok=True)
        for name in ("source.spm", "target.spm"):
            shutil.copy(prefix + ".model", os.path.join(a.out, name + ".tmp"))
            os.replace(os.path.join(a.out, name + ".tmp"), os.path.join(a.out, name))
        with open(os.path.join(a.out, "vocab.json.tmp"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False, indent=1)
        os.replace(os.path.join(a.out, "vocab.json.tmp"), os.path.join(a.out, "vocab.json"))
    print(json.dumps(dict(out=a.out, vocab=len(vocab), sentences=len(lines))))


if __name__ == "__main__":
    main()
