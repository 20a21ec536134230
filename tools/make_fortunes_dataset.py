#!/usr/bin/env python3
"""make_fortunes_dataset.py — a real, reproducible text-classification dataset from the Debian
`fortunes` package: each fortune labelled with the category file it comes from.

Run (any Python 3; only the standard library):
    apt-get install fortunes                      # if /usr/share/games/fortunes is missing
    python3 tools/make_fortunes_dataset.py --out data/fortunes-cls
    qkv baseline --model models/all-MiniLM-L6-v2 --train data/fortunes-cls/train.tsv \\
        --val data/fortunes-cls/val.tsv --test data/fortunes-cls/test.tsv

What it does, all deterministic (the same package version gives byte-identical files):
  - reads /usr/share/games/fortunes/<category> for the categories computers, politics,
    science, startrek, law, food, love, sports, medicine, pets (UTF-8); entries are separated
    by lines holding only "%";
  - normalizes each entry's whitespace (every run of spaces, TABs and newlines becomes one
    space; ends stripped), drops empty entries and removes exact duplicate texts: a text is
    kept once, with the label of its first occurrence in the category order above (a text that
    appears under two categories is counted in stats.json as a cross-category duplicate);
  - keeps the natural imbalance (no resampling) and splits each class separately with a seeded
    shuffle (random.Random(seed), default 1234): round(10%) to test, round(10%) to val, the
    rest to train (stratified 80/10/10);
  - writes OUT/train.tsv, val.tsv, test.tsv ("text<TAB>label" with a header row; texts contain
    no TAB or newline after normalization; a text holding '"' is quoted as RFC 4180 says, as
    Python's csv module, pandas and qkv's TSV reader expect; rows in a seeded random order)
    and OUT/stats.json:
    counts per class and split, duplicates removed, the sha256 of each source file, the
    package's version from dpkg-query and its sha256, the seed and the split fractions.
The data is not committed: it is the package's text, rebuilt by this script.
"""
import argparse
import csv
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys

CATEGORIES = ["computers", "politics", "science", "startrek", "law", "food", "love", "sports",
              "medicine", "pets"]
SRC = "/usr/share/games/fortunes"


def entries(path):
    """The entries of a fortune file: text between lines that are exactly '%'."""
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")
    cur, out = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == "%":
            out.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    out.append("\n".join(cur))
    return raw, out


def package_version():
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "fortunes"], check=True,
                           capture_output=True, text=True)
        return r.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--src", default=SRC, help="the fortune files (default %(default)s)")
    ap.add_argument("--val", type=float, default=0.1, help="fraction per class (0.1)")
    ap.add_argument("--test", type=float, default=0.1, help="fraction per class (0.1)")
    a = ap.parse_args()
    missing = [c for c in CATEGORIES if not os.path.isfile(os.path.join(a.src, c))]
    if missing:
        sys.exit(f"make_fortunes_dataset: {a.src}/{missing[0]} not found; "
                 "install the fortunes: apt-get install fortunes")

    seen = {}
    per_class = {c: [] for c in CATEGORIES}
    sha, dup_within, dup_across, empty = {}, 0, 0, 0
    for c in CATEGORIES:
        raw, ents = entries(os.path.join(a.src, c))
        sha[c] = hashlib.sha256(raw).hexdigest()
        for e in ents:
            t = re.sub(r"\s+", " ", e).strip()
            if not t:
                empty += 1
                continue
            if t in seen:
                if seen[t] == c:
                    dup_within += 1
                else:
                    dup_across += 1
                continue
            seen[t] = c
            per_class[c].append(t)

    rng = random.Random(a.seed)
    splits = {"train": [], "val": [], "test": []}
    counts = {s: {} for s in splits}
    for c in CATEGORIES:
        items = per_class[c][:]
        rng.shuffle(items)
        n_test, n_val = round(a.test * len(items)), round(a.val * len(items))
        parts = {"test": items[:n_test], "val": items[n_test:n_test + n_val],
                 "train": items[n_test + n_val:]}
        for s, p in parts.items():
            splits[s] += [(t, c) for t in p]
            counts[s][c] = len(p)
    os.makedirs(a.out, exist_ok=True)
    for s, rows in splits.items():
        rng.shuffle(rows)
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(["text", "label"])
        w.writerows(rows)
        write_atomic(os.path.join(a.out, s + ".tsv"), buf.getvalue())
    version = package_version()
    stats = {
        "source": a.src, "categories": CATEGORIES, "seed": a.seed,
        "fractions": {"train": 1 - a.val - a.test, "val": a.val, "test": a.test},
        "package": {"name": "fortunes", "version": version,
                    "version_sha256": hashlib.sha256((version or "").encode()).hexdigest()},
        "source_sha256": sha,
        "counts": counts,
        "totals": {s: len(r) for s, r in splits.items()},
        "removed": {"empty": empty, "duplicate_same_category": dup_within,
                    "duplicate_other_category": dup_across},
    }
    write_atomic(os.path.join(a.out, "stats.json"), json.dumps(stats, indent=2) + "\n")
    print(json.dumps({"totals": stats["totals"], "removed": stats["removed"]}))


if __name__ == "__main__":
    main()
