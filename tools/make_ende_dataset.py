#!/usr/bin/env python3
"""make_ende_dataset.py — an English→German parallel corpus from what Debian installs:
the German gettext catalogs (msgunfmt over LOCALE_DIR/*.mo) and the Ding dictionary
(Debian trans-de-en, /usr/share/trans/de-en). Standard library only; needs `msgunfmt`
(Debian gettext) and `dpkg -S` to name each catalog's package.

Catalog pairs: msgid/msgstr (plural entries: msgid/msgstr[0] and msgid_plural/msgstr[1]);
the header, empty translations and format-only strings (nothing but printf / Python format
specifiers, punctuation, digits, whitespace) are dropped; a keyboard accelerator ('_' or '&'
before a letter, once in a string of at most 80 characters) is removed from each side where
present, by the same rule on both sides; whitespace (including the newlines of multi-line
messages) collapses to one space; pairs longer than --max-chars on either side, or whose
lengths differ more than 4x (both over 20 characters), are dropped; exact (en, de) pairs are
kept once.

Split: catalogs are grouped by the Debian package that ships them (iso-codes' many domains
are one package). The packages are shuffled with --seed and whole packages go to test, then
validation, until each holds at least --test-pairs / --valid-pairs pairs (a package larger than the
target is skipped, so no single giant package is the test set). Every other package is
training data. Inside test and valid each English source is kept once; any training pair
whose English side is a test or validation source is removed, so no test source sentence is
seen in training, from a catalog or from the dictionary.

Ding: each line "DE :: EN" has parallel senses separated by " | "; per sense, the first
synonym ("; ") of each side, annotations ({f}, [ugs.], (...), /abbr./) removed, becomes one
word/phrase pair in training only.

Writes OUT/{train,valid,test}.{en,de}, train.origin (per training line: the package or
"ding"), {valid,test}.origin, ding.{en,de} (the dictionary pairs alone), and stats.json.
Usage: python3 tools/make_ende_dataset.py [--out /work/ende] [--seed 16]
"""
import argparse
import collections
import glob
import json
import os
import random
import re
import subprocess
import sys


def parse_po(text):
    """Entries of msgunfmt's output: dicts of msgctxt, msgid, msgid_plural, msgstr[n]."""
    entries, cur, key = [], {}, None
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            if cur:
                entries.append(cur)
                cur, key = {}, None
            continue
        m = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+(".*")$', line)
        if m:  # msgunfmt separates entries with blank lines
            key = m.group(1)
            cur[key] = unquote(m.group(2))
        elif line.startswith('"') and key:
            cur[key] += unquote(line)
    if cur:
        entries.append(cur)
    return entries


ESC = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r", "a": "\a", "b": "\b", "f": "\f",
       "v": "\v"}


def unquote(s):
    s = s[1:-1]
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n in ESC:
                out.append(ESC[n])
                i += 2
                continue
            m = re.match(r"[0-7]{1,3}", s[i + 1:])
            if m:
                out.append(chr(int(m.group(0), 8)))
                i += 1 + len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


FORMAT = re.compile(r"%(\d+\$)?[-+ #0']*(\d+|\*)?(\.(\d+|\*))?(hh|h|ll|l|L|q|j|z|t|I64)?"
                    r"[diouxXeEfFgGaAcspnm%]|%\([^)]*\)[a-z]|\{[^{}]*\}|%[A-Z_]+%|\$\{?\w+\}?")
ACCEL = re.compile(r"(?<![_&\w])[_&](?=[^\W_])|(?<=\w)_(?=[^\W_])")


def format_only(s):
    rest = FORMAT.sub("", s)
    return not any(ch.isalpha() for ch in rest)


def accel_count(s):
    return len(re.findall(r"[_&](?=[^\W\d_])", s))


def strip_accel(s):
    """Removes the one accelerator marker (_X or &X, X a letter) if there is exactly one and
    the string is short (menu / button labels); '&amp;'-style entities are left alone."""
    if len(s) > 80 or accel_count(s) != 1 or re.search(r"&\w+;", s):
        return s
    return re.sub(r"[_&](?=[^\W\d_])", "", s, count=1)


def clean(s):
    return " ".join(s.split())


def catalog_pairs(mo):
    raw = subprocess.run(["msgunfmt", mo], capture_output=True, check=True).stdout
    m = re.search(rb"charset=([A-Za-z0-9_.:-]+)", raw[:2000])
    out = raw.decode(m.group(1).decode() if m else "utf-8")
    pairs = []
    for e in parse_po(out):
        if not e.get("msgid"):
            continue  # the header
        cand = []
        if "msgid_plural" in e:
            cand.append((e["msgid"], e.get("msgstr[0]", "")))
            cand.append((e["msgid_plural"], e.get("msgstr[1]", "")))
        else:
            cand.append((e["msgid"], e.get("msgstr", "")))
        pairs.extend(cand)
    return pairs


def package_of(path):
    r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if r.returncode == 0 and ":" in r.stdout:
        return r.stdout.split(":")[0].split(",")[0].strip()
    return "?" + os.path.basename(path)[:-3]


ANNOT = re.compile(r"\{[^}]*\}|\[[^\]]*\]|\([^)]*\)|(?<!\S)/[^/]+/(?!\S)|<[^>]*>")


def ding_pairs(path):
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or " :: " not in line:
                continue
            de, en = line.rstrip("\n").split(" :: ", 1)
            ds, es = de.split(" | "), en.split(" | ")
            if len(ds) != len(es):
                continue
            for d, e in zip(ds, es):
                d, e = clean(ANNOT.sub(" ", d.split(";")[0])), clean(ANNOT.sub(" ", e.split(";")[0]))
                if d and e and "…" not in d + e and "..." not in d + e:
                    pairs.append((e, d))
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/work/ende")
    ap.add_argument("--locale-dir", default="/usr/share/locale/de/LC_MESSAGES")
    ap.add_argument("--ding", default="/usr/share/trans/de-en")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--test-pairs", type=int, default=3000)
    ap.add_argument("--valid-pairs", type=int, default=2000)
    ap.add_argument("--max-chars", type=int, default=300)
    a = ap.parse_args()

    mos = sorted(glob.glob(os.path.join(a.locale_dir, "*.mo")))
    if not mos:
        sys.exit(f"no catalogs in {a.locale_dir}")
    drop = collections.Counter()
    by_pkg = collections.defaultdict(list)  # package -> [(en, de)]
    raw = 0
    catalogs = {}
    for mo in mos:
        pkg = package_of(mo)
        catalogs[os.path.basename(mo)] = pkg
        for en, de in catalog_pairs(mo):
            raw += 1
            if not de.strip():
                drop["empty translation"] += 1
                continue
            if format_only(en) or format_only(de):
                drop["format-only"] += 1
                continue
            en, de = clean(strip_accel(en)), clean(strip_accel(de))
            if len(en) > a.max_chars or len(de) > a.max_chars:
                drop[f"longer than {a.max_chars} characters"] += 1
                continue
            if min(len(en), len(de)) > 20 and max(len(en), len(de)) > 4 * min(len(en), len(de)):
                drop["length ratio above 4"] += 1
                continue
            by_pkg[pkg].append((en, de))
    # exact duplicates: first occurrence (catalogs in sorted order) wins
    seen, kept = set(), collections.defaultdict(list)
    for pkg in sorted(by_pkg):
        for p in by_pkg[pkg]:
            if p in seen:
                drop["duplicate pair"] += 1
                continue
            seen.add(p)
            kept[pkg].append(p)
    pkgs = sorted(kept)
    rng = random.Random(a.seed)
    rng.shuffle(pkgs)
    split = {}
    for name, target in (("test", a.test_pairs), ("valid", a.valid_pairs)):
        n = 0
        for p in pkgs:
            if p in split or n >= target or len(kept[p]) > target:
                continue
            split[p] = name
            n += len(kept[p])
    data = {"train": [], "valid": [], "test": []}
    for p in sorted(kept):
        data[split.get(p, "train")].extend((en, de, p) for en, de in kept[p])
    held = set()
    for name in ("test", "valid"):
        out, srcs = [], set()
        for en, de, p in data[name]:
            if en in srcs or en in held:
                drop[f"{name}: English source repeated"] += 1
                continue
            srcs.add(en)
            out.append((en, de, p))
        held |= srcs
        data[name] = out
    ding = [(en, de, "ding") for en, de in dict.fromkeys(ding_pairs(a.ding))]
    train = []
    for en, de, p in data["train"] + ding:
        if en in held:
            drop["train: source also in test/valid"] += 1
            continue
        if (en, de) in seen and p == "ding":
            drop["ding pair already from a catalog"] += 1
            continue
        train.append((en, de, p))
    data["train"] = train

    os.makedirs(a.out, exist_ok=True)

    def write(name, rows):
        for ext, col in (("en", 0), ("de", 1), ("origin", 2)):
            tmp = os.path.join(a.out, f".{name}.{ext}.tmp")
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(r[col] + "\n" for r in rows)
            os.replace(tmp, os.path.join(a.out, f"{name}.{ext}"))

    for name in ("train", "valid", "test"):
        write(name, data[name])
    write("ding", ding)
    stats = {
        "catalogs": len(mos), "packages": len(kept), "raw_catalog_pairs": raw,
        "catalog_pairs_after_cleaning_and_dedup": sum(len(v) for v in kept.values()),
        "ding_pairs": len(ding), "dropped": dict(sorted(drop.items())), "seed": a.seed,
        "splits": {n: {"pairs": len(data[n]),
                       "catalog_pairs": sum(1 for r in data[n] if r[2] != "ding"),
                       "packages": sorted({r[2] for r in data[n] if r[2] != "ding"}),
                       "identical_en_de": sum(1 for r in data[n] if r[0] == r[1])}
                   for n in data},
        "catalog_package": catalogs,
    }
    stats["splits"]["train"]["packages"] = len(stats["splits"]["train"]["packages"])
    with open(os.path.join(a.out, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, ensure_ascii=False, indent=1)
    print(json.dumps({k: v for k, v in stats.items() if k != "catalog_package"}, ensure_ascii=False,
                     indent=1))


if __name__ == "__main__":
    main()
