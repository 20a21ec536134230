#!/usr/bin/env python3
"""gen_baseline_fixture.py — tiny labelled data and scikit-learn's answers for
tests/cli/test_baseline_cli.sh (`qkv baseline`).

The encoder is tests/fixtures/cls/single (tools/gen_cls_golden.py: a 2-layer BERT with a
120-token vocabulary; no modules.json, so qkv embeds with mean pooling over the tokens,
unnormalized, truncated at 32 tokens). Here: transformers' BertModel on the same directory, the
mean of last_hidden_state over the tokens of tokenizer(text, truncation=True, max_length=32);
then DummyClassifier(strategy="most_frequent") and LogisticRegression(C, l1_ratio=0, lbfgs,
tol=1e-10, max_iter=100000) on the training set, their test predictions and
classification_report(labels=range(K), target_names=sorted labels, digits=4).

Writes tests/fixtures/baseline/:
  train.tsv, test.tsv               text<TAB>label (3 classes, imbalanced)
  pairs_train.jsonl, pairs_test.jsonl  {"text", "text_pair", "label"} (a fifth of the pairs
                                    null)
  majority.txt                      the report of the majority class on test.tsv
  logreg.txt, logreg_c01.txt        the reports of LogisticRegression (C 1, C 0.1) on test.tsv
  pairs_logreg.txt                  the report on pairs_test.jsonl of the model fitted on
                                    [e(text), e(pair)] (zeros for a missing pair)
Every test prediction's two best probabilities are at least 1e-3 apart, so the embeddings'
float differences (~1e-6) and sklearn's own stop (~1e-6 in coefficients) cannot flip one: the
generator retries other sentences until that holds.

Run: tools/.venv/bin/python tools/gen_baseline_fixture.py   (torch, transformers, sklearn)
"""
import json
import os
import random

import numpy as np
import torch
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report
from transformers import AutoModel, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "tests", "fixtures", "cls", "single")
OUT = os.path.join(ROOT, "tests", "fixtures", "baseline")
KEYS = {"happy": "good great love win very".split(), "sad": "bad awful hate not".split(),
        "science": "cell atom law vote".split()}
FILLER = "the a is was movie film team game it this and of to in i play music paint".split()
SIZES = {"happy": (30, 10), "sad": (18, 6), "science": (10, 5)}  # (train, test)


def sentence(rng, label):
    words = rng.sample(FILLER, rng.randint(2, 5)) + rng.sample(KEYS[label], rng.randint(1, 2))
    if rng.random() < 0.3:  # noise: a key word of another class
        other = rng.choice([k for k in KEYS if k != label])
        words.append(rng.choice(KEYS[other]))
    rng.shuffle(words)
    return " ".join(words)


def embed(tok, model, texts):
    out = []
    with torch.no_grad():
        for t in texts:
            if t is None:
                out.append(np.zeros(model.config.hidden_size))
                continue
            enc = tok(t, truncation=True, max_length=32, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]
            out.append(h.mean(0).double().numpy())
    return np.array(out)


def report(y, p, names):
    return classification_report(y, p, labels=list(range(len(names))), target_names=names,
                                 digits=4, zero_division=0)


def fit_predict(xtr, ytr, xte, C):
    clf = LogisticRegression(C=C, l1_ratio=0.0, solver="lbfgs", tol=1e-10, max_iter=100000)
    clf.fit(xtr, ytr)
    pr = np.sort(clf.predict_proba(xte), 1)
    return clf.predict(xte), float((pr[:, -1] - pr[:, -2]).min())


def write_tsv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(r) + "\n")


def main():
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModel.from_pretrained(MODEL).eval()
    names = sorted(KEYS)
    for attempt in range(100):
        rng = random.Random(attempt)
        data = {"train": [], "test": []}
        for lab, (ntr, nte) in SIZES.items():
            data["train"] += [(sentence(rng, lab), lab) for _ in range(ntr)]
            data["test"] += [(sentence(rng, lab), lab) for _ in range(nte)]
        for v in data.values():
            rng.shuffle(v)
        pairs = {s: [(t, None if rng.random() < 0.2 else sentence(rng, lab), lab)
                     for t, lab in v] for s, v in data.items()}
        y = {s: np.array([names.index(l) for _, l in v]) for s, v in data.items()}
        x = {s: embed(tok, model, [t for t, _ in v]) for s, v in data.items()}
        xp = {s: np.hstack([x[s], embed(tok, model, [p for _, p, _ in v])])
              for s, v in pairs.items()}
        p1, m1 = fit_predict(x["train"], y["train"], x["test"], 1.0)
        p01, m01 = fit_predict(x["train"], y["train"], x["test"], 0.1)
        pp, mp = fit_predict(xp["train"], y["train"], xp["test"], 1.0)
        if min(m1, m01, mp) >= 1e-3:
            break
    else:
        raise SystemExit("no data with clear margins")
    maj = DummyClassifier(strategy="most_frequent").fit(x["train"], y["train"])
    os.makedirs(OUT, exist_ok=True)
    for s in data:
        write_tsv(os.path.join(OUT, f"{s}.tsv"), ["text", "label"], data[s])
        with open(os.path.join(OUT, f"pairs_{s}.jsonl"), "w", encoding="utf-8") as f:
            for t, p, lab in pairs[s]:
                f.write(json.dumps({"text": t, "text_pair": p, "label": lab}) + "\n")
    files = {"majority.txt": maj.predict(x["test"]), "logreg.txt": p1, "logreg_c01.txt": p01,
             "pairs_logreg.txt": pp}
    for f, p in files.items():
        with open(os.path.join(OUT, f), "w") as fh:
            fh.write(report(y["test"], p, names))
    print(f"attempt {attempt}: margins {m1:.3g} {m01:.3g} {mp:.3g}; "
          f"accuracy C1 {np.mean(p1 == y['test']):.3f} C0.1 {np.mean(p01 == y['test']):.3f} "
          f"pairs {np.mean(pp == y['test']):.3f}")


if __name__ == "__main__":
    main()
