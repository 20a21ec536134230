#!/usr/bin/env python3
"""baseline_dict_translate.py — the word-by-word dictionary baseline of docs/TRANSLATION.md:
every English word of each input line is replaced by one German translation from the Ding
dictionary pairs (ding.en / ding.de, written by tools/make_ende_dataset.py); everything else
(spacing, punctuation, numbers, printf / Python format specifiers) is copied unchanged.

Dictionary: the single-word English entries (a leading "to " of verbs dropped), keyed in
lowercase; for each, the German translation that occurs with it most often in Ding, ties to
the shorter, then the first. Lookup: the word as written, else in lowercase; a word written
with a capital first letter gets one in German too; a word not found is copied.
Usage: python3 tools/baseline_dict_translate.py DING_DIR < test.en > hyp.de
"""
import collections
import os
import re
import sys

FORMAT = (r"%(\d+\$)?[-+ #0']*(\d+|\*)?(\.(\d+|\*))?(hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspnm%]"
          r"|%\([^)]*\)[a-z]|\{[^{}]*\}|\$\{?\w+\}?")
TOKEN = re.compile(f"(?P<fmt>{FORMAT})|(?P<word>[^\\W\\d_]+(?:['’][^\\W\\d_]+)?)")


def load(d):
    counts = collections.defaultdict(collections.Counter)
    order = {}
    with open(os.path.join(d, "ding.en"), encoding="utf-8") as fe, \
            open(os.path.join(d, "ding.de"), encoding="utf-8") as fd:
        for en, de in zip(fe, fd):
            en, de = en.strip(), de.strip()
            if en.startswith("to "):
                en = en[3:]
            if not en or " " in en or " " in de or not de:
                continue
            key = en.lower()
            counts[key][de] += 1
            order.setdefault((key, de), len(order))
    return {k: min(c, key=lambda de: (-c[de], len(de), order[(k, de)])) for k, c in counts.items()}


def main():
    table = load(sys.argv[1])

    def repl(m):
        w = m.group("word")
        if w is None:
            return m.group(0)
        de = table.get(w.lower())
        if de is None:
            return w
        return de[0].upper() + de[1:] if w[0].isupper() else de

    for line in sys.stdin:
        sys.stdout.write(TOKEN.sub(repl, line.rstrip("\n")) + "\n")


if __name__ == "__main__":
    main()
