#!/usr/bin/env python3
"""gen_sacrebleu_fixtures.py — writes tests/fixtures/sacrebleu/: what the sacrebleu package
computes for varied hypothesis / reference sets, for tests/test_sacrebleu.c and the CLI test.

cases.json: a list of cases {name, metric ("bleu" | "chrf"), opts, hyps, refs (a list of
reference streams), and sacreBLEU's results: score (repr, exact), signature, text1 / text2
(Score.format with width 1 / 2 and the signature, as `sacrebleu -f text` prints it), and for
BLEU counts, totals, precisions, bp, sys_len, ref_len}. Corpus-level cases come from
corpus_score; sentence-level ones (name "sent/...") from sentence_score on one segment.

cli/: hyp.txt, ref1.txt, ref2.txt and the sacrebleu CLI's own output on them (`sacrebleu
ref1.txt [ref2.txt] -i hyp.txt -m bleu chrf -f text`, and with -w 4, --chrf-word-order 2,
-tok intl, -lc; and sentence by sentence, -sl), for tests/cli/test_evaluate_mt.sh.

Usage: tools/.venv/bin/python tools/gen_sacrebleu_fixtures.py
"""
import json
import os
import random
import subprocess
import sys

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "sacrebleu")

cases = []


def bleu_case(name, hyps, refs, **opts):
    m = BLEU(**opts)
    s = m.corpus_score(hyps, refs) if not name.startswith("sent/") else \
        m.sentence_score(hyps[0], [r[0] for r in refs])
    sig = str(m.get_signature())
    cases.append({
        "name": name, "metric": "bleu", "opts": opts, "hyps": hyps, "refs": refs,
        "score": s.score, "counts": [float(x) for x in s.counts],
        "totals": [float(x) for x in s.totals], "precisions": s.precisions, "bp": s.bp,
        "sys_len": s.sys_len, "ref_len": s.ref_len, "signature": sig,
        "text1": s.format(1, signature=sig), "text2": s.format(2, signature=sig)})


def chrf_case(name, hyps, refs, **opts):
    m = CHRF(**opts)
    s = m.corpus_score(hyps, refs) if not name.startswith("sent/") else \
        m.sentence_score(hyps[0], [r[0] for r in refs])
    sig = str(m.get_signature())
    cases.append({
        "name": name, "metric": "chrf", "opts": opts, "hyps": hyps, "refs": refs,
        "score": s.score, "signature": sig,
        "text1": s.format(1, signature=sig), "text2": s.format(2, signature=sig)})


def both(name, hyps, refs, bleu_opts=None, chrf_opts=None):
    bleu_case("bleu/" + name, hyps, refs, **(bleu_opts or {}))
    chrf_case("chrf/" + name, hyps, refs, **(chrf_opts or {}))
    chrf_case("chrf++/" + name, hyps, refs, word_order=2, **(chrf_opts or {}))


# ---------------------------------------------------------------- hand-written sets
simple_h = ["The cat sat on the mat.", "It is raining today, isn't it?",
            "He paid $1,000.50 for 3-4 books in 2019.", "A quick brown fox jumps over the dog"]
simple_r = [["The cat is sitting on the mat.", "It rains today, doesn't it?",
             "He paid $1,000.50 for three or four books in 2019.",
             "The quick brown fox jumps over the lazy dog."]]
both("simple", simple_h, simple_r)

refs2 = simple_r + [["A cat sat on the mat.", "Today it is raining, right?",
                     "He spent $1,000.50 on 3-4 books (2019).",
                     "A quick brown fox jumped over a dog!"]]
both("two_refs", simple_h, refs2)
refs3 = refs2 + [["On the mat sat the cat.", "", "1,000.50 dollars: 3-4 books, 2019.",
                  "quick brown fox"]]
both("three_refs_one_empty", simple_h, refs3)

empty_h = ["", "Hello world", "", "   ", "Trailing spaces   \t"]
empty_r = [["", "Hello world!", "Something", "", "Trailing spaces"]]
both("empty_lines", empty_h, empty_r)
both("all_empty_hyps", ["", "", ""], [["a b c", "d e", "f"]])
both("zero_matches", ["alpha beta gamma", "delta"], [["one two three", "four five"]])
both("one_word", ["word"], [["word"]])

uni_h = ["«Bonjour», dit-il — «ça va ?»", "Größe: 1.234,56 € – ungefähr…",
         "¿Qué tal? ¡Muy bien!", "東京は大きい都市です。", "Emoji 😀 and 👍🏽 here!",
         "“Quoted” ‘text’ here,and there.", "Numbers 1,000,000 and 3.14 and 2-3 and x-y.",
         "&quot;HTML&quot; &amp; &lt;tags&gt; <skipped> here", "ΟΔΟΣ ΣΙΣΥΦΟΣ. Σ ΑΣ.Α",
         "İstanbul IĞDIR ǅemal ß ẞ", "tab\there\u00a0nbsp\u2003em\u3000ideo\x1cfs",
         "1. 2, 3.a ,b .5 5. a.b a,b 7-8 -9 x-"]
uni_r = [["«Bonjour», a-t-il dit — «ça va ?»", "Größe: 1.234,56 € – etwa…",
          "¿Qué tal? ¡Bien!", "東京は大都市です。", "Emoji 😀 and 👍🏽 there!",
          "\"Quoted\" 'text' here, and there.", "Numbers 1,000,000 and 3.14 and 2–3 and x-y.",
          "\"HTML\" & <tags> here", "οδος σισυφος. σ ας.α", "istanbul ığdır ǆemal ss ß",
          "tab here nbsp em ideo fs", "1. 2, 3.a ,b .5 5. a.b a,b 7-8 -9 x-"]]
both("unicode", uni_h, uni_r)
both("unicode_lc", uni_h, uni_r, {"lowercase": True}, {"lowercase": True})
bleu_case("bleu/unicode_intl", uni_h, uni_r, tokenize="intl")
bleu_case("bleu/unicode_none", uni_h, uni_r, tokenize="none")
bleu_case("bleu/unicode_intl_lc", uni_h, uni_r, tokenize="intl", lowercase=True)
bleu_case("bleu/simple_intl", simple_h, refs2, tokenize="intl")
for sm in ("none", "floor", "add-k"):
    bleu_case(f"bleu/simple_smooth_{sm}", simple_h, simple_r, smooth_method=sm)
bleu_case("bleu/simple_floor_0.3", simple_h, simple_r, smooth_method="floor", smooth_value=0.3)
bleu_case("bleu/simple_addk_2", simple_h, simple_r, smooth_method="add-k", smooth_value=2)
bleu_case("bleu/simple_order2", simple_h, simple_r, max_ngram_order=2)
bleu_case("bleu/simple_order6_eff", simple_h, simple_r, max_ngram_order=6, effective_order=True)
bleu_case("bleu/short_eff", ["a b", "c"], [["a b", "c d"]], effective_order=True)
bleu_case("bleu/short_noeff", ["a b", "c"], [["a b", "c d"]])
chrf_case("chrf/unicode_whitespace", uni_h, uni_r, whitespace=True)
chrf_case("chrf/unicode_eps", uni_h, uni_r, eps_smoothing=True)
chrf_case("chrf/simple_beta1_nc4", simple_h, refs2, beta=1, char_order=4)
chrf_case("chrf/simple_nw1", simple_h, refs2, word_order=1)
chrf_case("chrf++/empty_eps", empty_h, empty_r, word_order=2, eps_smoothing=True)

# ---------------------------------------------------------------- sentence level
for i, h in enumerate(uni_h + simple_h + empty_h):
    rs = (uni_r if i < len(uni_h) else simple_r if i < len(uni_h) + len(simple_h) else empty_r)
    j = i if i < len(uni_h) else i - len(uni_h) if i < len(uni_h) + len(simple_h) else \
        i - len(uni_h) - len(simple_h)
    bleu_case(f"sent/bleu/{i}", [h], [[rs[0][j]]], effective_order=True)
    chrf_case(f"sent/chrf/{i}", [h], [[rs[0][j]]])
    chrf_case(f"sent/chrf++/{i}", [h], [[rs[0][j]]], word_order=2)

# ---------------------------------------------------------------- random corpora
rng = random.Random(16)
pool = (list("abcdefghij") + ["Über", "straße", "ΣΑΣ", "İ", "ǅ", "東", "京", "😀"] +
        list(".,-!?;:'\"()[]{}&$%@/\\«»“”‘’—–…¿¡·•€£¥©®°±×÷§¶") + list("0123456789") +
        [" ", " ", " ", " ", "\t", "\u00a0", "\u2003", "\u3000", "\x1c", "\u200b", "\u0301",
         "&amp;", "&lt;", "<skipped>", "1,000", "3.5", "x-1"])


def rand_line(n):
    return "".join(rng.choice(pool) for _ in range(n))


def rand_words(vocab, n):
    return " ".join(rng.choice(vocab) for _ in range(n))


vocab = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "in", "park", "big", "small",
         ".", ",", "!", "red", "blue", "(it)", "isn't", "1,000", "3.5", "x-1"]
H = [rand_words(vocab, rng.randint(0, 25)) for _ in range(300)]
R1 = [rand_words(vocab, rng.randint(0, 25)) for _ in range(300)]
R2 = [rand_words(vocab, rng.randint(0, 25)) for _ in range(300)]
both("random_words_1ref", H, [R1])
both("random_words_2ref", H, [R1, R2])
bleu_case("bleu/random_words_2ref_intl", H, [R1, R2], tokenize="intl")
Hc = [rand_line(rng.randint(0, 60)) for _ in range(200)]
Rc = [rand_line(rng.randint(0, 60)) for _ in range(200)]
both("random_chars", Hc, [Rc])
both("random_chars_lc", Hc, [Rc], {"lowercase": True}, {"lowercase": True})
bleu_case("bleu/random_chars_intl", Hc, [Rc], tokenize="intl")
bleu_case("bleu/random_chars_none", Hc, [Rc], tokenize="none")
# near-copies: high scores
Hn = [r if rng.random() < 0.3 else " ".join(w for w in r.split() if rng.random() < 0.85) for r in R1]
both("random_near_copy", Hn, [R1])

os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
    json.dump({"sacrebleu": sacrebleu.__version__, "cases": cases}, f, ensure_ascii=False,
              indent=0)

# ---------------------------------------------------------------- CLI
cli = os.path.join(OUT, "cli")
os.makedirs(cli, exist_ok=True)
hyp = uni_h + simple_h + Hn[:40] + ["trailing \r"]
r1 = uni_r[0] + simple_r[0] + R1[:40] + ["trailing"]
r2 = [x.upper() for x in uni_r[0]] + refs2[1] + R2[:40] + ["Trailing"]
for name, lines in (("hyp.txt", hyp), ("ref1.txt", r1), ("ref2.txt", r2)):
    with open(os.path.join(cli, name), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(x + "\n" for x in lines))
exe = os.path.join(os.path.dirname(sys.executable), "sacrebleu")
runs = {
    "default_1ref": ["ref1.txt"],
    "default_2ref": ["ref1.txt", "ref2.txt"],
    "w4_chrfpp": ["ref1.txt", "--chrf-word-order", "2", "-w", "4"],
    "intl_lc": ["ref1.txt", "ref2.txt", "-tok", "intl", "-lc", "--chrf-lowercase", "-w", "3"],
}
for name, args in runs.items():
    out = subprocess.run([exe] + args + ["-i", "hyp.txt", "-m", "bleu", "chrf", "-f", "text"],
                         cwd=cli, check=True, capture_output=True, text=True).stdout
    with open(os.path.join(cli, f"expected_{name}.txt"), "w", encoding="utf-8") as f:
        f.write(out)
# sentence level (-sl): one metric, one line per segment; BLEU with effective order
sl_runs = {
    "sl_bleu": ["ref1.txt", "-m", "bleu"],
    "sl_bleu_2ref_w3": ["ref1.txt", "ref2.txt", "-m", "bleu", "-w", "3", "-tok", "intl"],
    "sl_chrf": ["ref1.txt", "-m", "chrf"],
    "sl_chrfpp_lc": ["ref1.txt", "ref2.txt", "-m", "chrf", "--chrf-word-order", "2",
                     "--chrf-lowercase", "-w", "2"],
}
for name, args in sl_runs.items():
    out = subprocess.run([exe] + args + ["-i", "hyp.txt", "-sl", "-f", "text"],
                         cwd=cli, check=True, capture_output=True, text=True).stdout
    with open(os.path.join(cli, f"expected_{name}.txt"), "w", encoding="utf-8") as f:
        f.write(out)
print(f"wrote {len(cases)} cases and {len(runs) + len(sl_runs)} CLI outputs to {OUT}")
