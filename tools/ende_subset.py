#!/usr/bin/env python3
"""ende_subset.py — the training set of the English→German run 3 (docs/TRANSLATION.md): every
catalog pair of the corpus's training split and a seeded random sample of its Ding entries, in
the split's order; valid/test are linked unchanged. Python standard library only.

    python3 tools/ende_subset.py --data /work/ende --out /work/ende-cat --ding 50000 --seed 17
"""
import argparse
import os
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/ende", help="tools/make_ende_dataset.py's output")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ding", type=int, default=50000, help="Ding entries to keep")
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    read = lambda ext: open(os.path.join(a.data, "train." + ext), encoding="utf-8").read().split("\n")[:-1]
    en, de, origin = read("en"), read("de"), read("origin")
    assert len(en) == len(de) == len(origin), "train.en/.de/.origin differ in length"
    catalogs = [i for i, o in enumerate(origin) if o != "ding"]
    ding = [i for i, o in enumerate(origin) if o == "ding"]
    keep = sorted(catalogs + random.Random(a.seed).sample(ding, min(a.ding, len(ding))))
    os.makedirs(a.out, exist_ok=True)
    for ext, lines in (("en", en), ("de", de), ("origin", origin)):
        path = os.path.join(a.out, "train." + ext)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            for i in keep:
                f.write(lines[i] + "\n")
        os.replace(path + ".tmp", path)
    for split in ("valid", "test"):
        for ext in ("en", "de", "origin"):
            link = os.path.join(a.out, f"{split}.{ext}")
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(a.data, f"{split}.{ext}")), link)
    print(f"{a.out}: {len(catalogs)} catalog pairs + {len(keep) - len(catalogs)} Ding entries = {len(keep)}")


if __name__ == "__main__":
    main()
