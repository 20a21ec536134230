#!/usr/bin/env python3
"""gen_parallel_fixtures.py — what transformers' MarianTokenizer gives for line-aligned parallel
text, for the parallel datasets of `qkv data prepare --source --target` (tests/test_data_parallel.c).
Writes tests/fixtures/parallel/.

    tools/.venv/bin/python tools/gen_parallel_fixtures.py

  marian/      a Marian tokenizer directory whose two sides differ: source.spm and vocab.json of
               tests/fixtures/marian/tiny, and a target.spm trained here (sentencepiece unigram,
               vocabulary 64, identity normalization, seeded input order) so that target pieces
               differ from source pieces (pieces vocab.json lacks become <unk>, as Marian does).
  src.txt, tgt.txt       the parallel lines (CRLF on one line, Unicode, a literal space run).
  expect.src.ids         MarianTokenizer(src)["input_ids"] per line (</s> appended), ids
                         space-separated, one line per sentence;
  expect.tgt.ids         MarianTokenizer(text_target=tgt)["input_ids"] per line (target.spm).
"""
import os
import shutil
import tempfile

import sentencepiece as spm
from transformers import MarianTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TINY = os.path.join(ROOT, "tests", "fixtures", "marian", "tiny")
OUT = os.path.join(ROOT, "tests", "fixtures", "parallel")

SRC = [
    "Hello world!",
    "You may copy it.",
    "x",
    "The GNU General Public License is a free, copyleft license for software.",
    "Everyone is permitted to copy and distribute verbatim copies.",
    "  spaces  around  ",
    "caf\u00e9 na\u00efve \u00fcber",
    "Copyright (C) 2007 Free Software Foundation, Inc.",
]
TGT = [
    "Hallo Welt!",
    "Sie d\u00fcrfen es kopieren.",
    "y",
    "Die GNU General Public License ist eine freie Lizenz f\u00fcr Software.",
    "Jeder darf w\u00f6rtliche Kopien kopieren und verbreiten.",
    "Leerzeichen  ringsum",
    "Kaffee naiv \u00fcber",
    "Copyright (C) 2007 Free Software Foundation, Inc.",
]


def main():
    md = os.path.join(OUT, "marian")
    os.makedirs(md, exist_ok=True)
    shutil.copy(os.path.join(TINY, "source.spm"), os.path.join(md, "source.spm"))
    shutil.copy(os.path.join(TINY, "vocab.json"), os.path.join(md, "vocab.json"))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write("\n".join(TGT * 4) + "\n")
        prefix = os.path.join(tmp, "tgt")
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=prefix, vocab_size=64, model_type="unigram",
            normalization_rule_name="identity", character_coverage=1.0, shuffle_input_sentence=False,
            seed_sentencepiece_size=1000, num_threads=1, minloglevel=2)
        shutil.copy(prefix + ".model", os.path.join(md, "target.spm"))
    tok = MarianTokenizer(os.path.join(md, "source.spm"), os.path.join(md, "target.spm"),
                          os.path.join(md, "vocab.json"))
    with open(os.path.join(OUT, "src.txt"), "w", encoding="utf-8", newline="") as f:
        for i, s in enumerate(SRC):
            f.write(s + ("\r\n" if i == 1 else "\n"))
    with open(os.path.join(OUT, "tgt.txt"), "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(TGT))  # the last line without "\n"
    # the lines as `qkv data prepare` reads them: "\n" and one "\r" before it removed
    src_ids = [tok(s)["input_ids"] for s in SRC]
    tgt_ids = [tok(text_target=t)["input_ids"] for t in TGT]
    assert any(tok(t)["input_ids"] != tok(text_target=t)["input_ids"] for t in TGT)
    for name, rows in (("expect.src.ids", src_ids), ("expect.tgt.ids", tgt_ids)):
        with open(os.path.join(OUT, name), "w") as f:
            for r in rows:
                f.write(" ".join(map(str, r)) + "\n")


if __name__ == "__main__":
    main()
