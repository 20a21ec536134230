#!/usr/bin/env python3
"""gen_cls_report_fixtures.py — scikit-learn's classification metrics on a set of cases, for
tests/test_cls_metrics.c (qkv_cls_metrics_*, qkv_cls_report: the report text byte for byte).

Writes tests/fixtures/cls_report/<case>.json, one file per case:
  kind        "single" (class ids) or "multi" (0/1 indicator matrices [N, C])
  n_labels    C; the labels are range(C)
  digits      the digits argument of classification_report
  names       target names ([C] strings, any UTF-8) or null (sklearn then names them "0".."C-1")
  y_true, y_pred   [N] class ids, or [N][C] 0/1 rows
  report      classification_report(y_true, y_pred, labels=range(C), target_names=names,
              digits=digits) (zero_division "warn", i.e. 0.0; the warnings are silenced)
  precision, recall, f1, support   precision_recall_fscore_support(..., labels=range(C),
              average=None)
  averages    {"micro"|"macro"|"weighted"[|"samples"]: [precision, recall, f1]} with average=...
  accuracy    accuracy_score (multi-label: the fraction of rows predicted exactly)
  confusion   single: confusion_matrix(y_true, y_pred, labels=range(C)) [C][C] (row = true,
              column = predicted); multi: multilabel_confusion_matrix [C][2][2] ([[tn, fp],
              [fn, tp]] per class)

numpy_sum.json holds arrays and their np.sum (the order in which numpy adds, pairwise, which
the averages must follow to have sklearn's bits).

Floats are written by json (repr: the shortest text that reads back to the same double).
Cases: random multiclass (10 imbalanced classes, 500 samples; digits 2 and 4), 20 classes x
5000 samples, binary, a class never predicted, a class absent from y_true (and one absent from
both), one sample, default names, long / non-ASCII / XML-special names, digits 0, 1, 15 and 40, a
case searched for values that are exact rounding ties (0.125, 0.375, ...) at 2 and at 1
digits, and multi-label indicators (random; a label never true; rows predicted empty; no true
label at all).

Run: tools/.venv/bin/python tools/gen_cls_report_fixtures.py   (scikit-learn 1.9.1, numpy)
"""
import json
import os
import warnings
from fractions import Fraction

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix,
                             multilabel_confusion_matrix, precision_recall_fscore_support)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "cls_report")


def write_case(name, kind, n_labels, y_true, y_pred, names=None, digits=2):
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(n_labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report(y_true, y_pred, labels=labels, target_names=names,
                                       digits=digits)
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                     average=None)
        avgs = {}
        for a in ("micro", "macro", "weighted") + (("samples",) if kind == "multi" else ()):
            ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                            average=a)
            avgs[a] = [float(ap), float(ar), float(af)]
        acc = float(accuracy_score(y_true, y_pred))
    if kind == "single":
        cm = confusion_matrix(y_true, y_pred, labels=labels)
    else:
        cm = multilabel_confusion_matrix(y_true, y_pred, labels=labels)
    case = {
        "kind": kind, "n_labels": n_labels, "digits": digits, "names": names,
        "y_true": y_true.tolist(), "y_pred": y_pred.tolist(), "report": report,
        "precision": [float(v) for v in p], "recall": [float(v) for v in r],
        "f1": [float(v) for v in f], "support": [int(v) for v in s],
        "averages": avgs, "accuracy": acc, "confusion": cm.tolist(),
    }
    with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as fh:
        json.dump(case, fh, ensure_ascii=False)
        fh.write("\n")
    return case


def imbalanced(rng, n, c, acc):
    """n labels drawn with Zipf-like class frequencies; predictions right with probability acc,
    else a random class (so some classes are confused with the frequent ones)."""
    w = 1.0 / np.arange(1, c + 1) ** 1.1
    y = rng.choice(c, size=n, p=w / w.sum())
    wrong = rng.random(n) > acc
    pred = np.where(wrong, rng.choice(c, size=n, p=w / w.sum()), y)
    return y, pred


def ties(value, digits):
    """1 if value (a double) is exactly halfway between two numbers of `digits` decimals."""
    q = Fraction(value) * 10**digits * 2
    return int(q.denominator == 1 and q.numerator % 2 == 1)


def tie_search(rng, c, digits, tries=6000):
    """The small multiclass case (confusion counts 0..8) with the most exact rounding ties in
    its per-class values, accuracy and averages at `digits`."""
    best, best_n = None, -1
    for _ in range(tries):
        m = rng.integers(0, 9, size=(c, c))
        m[rng.random((c, c)) < 0.4] = 0
        m[np.arange(c), np.arange(c)] += 1  # every class right at least once: few zeros
        if m.sum() == 0:
            continue
        yt = np.repeat(np.repeat(np.arange(c), c), m.ravel())
        yp = np.repeat(np.tile(np.arange(c), c), m.ravel())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, r, f, _ = precision_recall_fscore_support(yt, yp, labels=list(range(c)),
                                                         average=None)
            vals = list(p) + list(r) + list(f) + [accuracy_score(yt, yp)]
            for a in ("macro", "weighted"):
                vals += list(precision_recall_fscore_support(yt, yp, labels=list(range(c)),
                                                             average=a)[:3])
        n = sum(ties(float(v), digits) for v in vals)
        if n > best_n:
            best, best_n = (yt, yp), n
    perm = rng.permutation(len(best[0]))
    return best[0][perm], best[1][perm], best_n


def write_sums():
    """numpy_sum.json: {"arrays": [[...], ...], "sums": [np.sum(a), ...]} for arrays of many
    lengths (both sides of numpy's 8-lane and 128-block limits) and of mixed magnitudes, where
    the order of the additions shows in the result."""
    rng = np.random.default_rng(7)
    arrays, sums = [], []
    for n in list(range(0, 20)) + [63, 64, 127, 128, 129, 130, 255, 256, 257, 1000, 3001]:
        a = rng.random(n) * 10.0 ** rng.integers(-8, 9, n)
        arrays.append([float(v) for v in a])
        sums.append(float(np.sum(a)))
    with open(os.path.join(OUT, "numpy_sum.json"), "w") as fh:
        json.dump({"arrays": arrays, "sums": sums}, fh)
        fh.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    write_sums()
    rng = np.random.default_rng(20240611)
    names10 = ["class_%d" % i for i in range(10)]

    y, p = imbalanced(rng, 500, 10, 0.7)
    write_case("multiclass10", "single", 10, y, p, names10, 2)
    write_case("multiclass10_d4", "single", 10, y, p, names10, 4)
    y, p = imbalanced(rng, 5000, 20, 0.6)
    write_case("multiclass20_5000", "single", 20, y, p, ["c%02d" % i for i in range(20)], 4)

    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.8, y, 1 - y)
    write_case("binary", "single", 2, y, p, ["negative", "positive"], 2)
    write_case("binary_default_names", "single", 2, y, p, None, 3)
    write_case("binary_digits40", "single", 2, y, p, None, 40)  # exact decimal expansions

    # class 2 is never predicted: its precision (and F1) divide by zero
    y = rng.integers(0, 4, 120)
    p = np.where(rng.random(120) < 0.6, y, rng.integers(0, 4, 120))
    p[p == 2] = 3
    write_case("never_predicted", "single", 4, y, p, ["a", "b", "never predicted", "d"], 2)

    # class 1 never occurs in y_true (support 0, recall 0/0); class 4 occurs nowhere
    y = rng.integers(0, 4, 90)
    y[y == 1] = 0
    p = np.where(rng.random(90) < 0.5, y, rng.integers(0, 4, 90))
    write_case("absent_true", "single", 5, y, p, ["zero", "absent", "two", "three", "nowhere"], 3)

    # nothing predicted right: sklearn then counts in float64 and prints "13.0" supports
    write_case("one_sample", "single", 3, [1], [2], ["x", "y", "z"], 2)
    y = rng.integers(0, 3, 40)
    write_case("none_correct", "single", 3, y, (y + 1) % 3, None, 2)

    # names: longer than "weighted avg", multi-byte UTF-8 (2, 3 and 4 bytes), XML specials
    y, p = imbalanced(rng, 300, 6, 0.65)
    long_names = ["très_long_nom_de_classe", "日本語のラベル", "emoji 🙂🎉", "<&> \"q\" 'a'",
                  "Ωmega", "x"]
    write_case("long_utf8_names", "single", 6, y, p, long_names, 3)
    # short names: width comes from "weighted avg", or from digits when digits is larger
    write_case("digits0", "single", 6, y, p, ["a", "b", "c", "d", "e", "f"], 0)
    write_case("digits15", "single", 6, y, p, ["a", "b", "c", "d", "e", "f"], 15)
    write_case("names_wide_digits1", "single", 6, y, p,
               ["ünïcödé-ñame-%d-ß" % i for i in range(6)], 1)

    # exact rounding ties: Python's format rounds the binary value half to even, as printf
    for digits in (2, 1):
        yt, yp, n = tie_search(rng, 4, digits)
        print("ties at %d digits: %d values" % (digits, n))
        write_case("ties_d%d" % digits, "single", 4, yt, yp, ["t0", "t1", "t2", "t3"], digits)

    # multi-label
    n, c = 200, 6
    yt = (rng.random((n, c)) < np.linspace(0.1, 0.6, c)).astype(int)
    yp = np.where(rng.random((n, c)) < 0.8, yt, 1 - yt)
    yp[:7] = 0  # rows predicted empty: samples precision 0/0
    write_case("multilabel", "multi", c, yt, yp, ["tag%d" % i for i in range(c)], 2)
    yt2 = yt.copy()
    yt2[:, 2] = 0  # a label that is never true
    write_case("multilabel_label_never_true", "multi", c, yt2, yp,
               ["α", "β", "γ never", "δ", "ε", "ζ"], 4)
    yt3 = np.zeros((5, 3), dtype=int)  # no true label at all: weighted falls back to mean
    yp3 = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]])
    write_case("multilabel_no_true", "multi", 3, yt3, yp3, None, 2)
    n, c = 1000, 12  # samples average over 1000 rows: numpy's pairwise summation order
    yt = (rng.random((n, c)) < 0.3).astype(int)
    yp = np.where(rng.random((n, c)) < 0.75, yt, 1 - yt)
    write_case("multilabel_1000x12", "multi", c, yt, yp, None, 4)
    print("scikit-learn", sklearn.__version__, "numpy", np.__version__, "->", OUT)


if __name__ == "__main__":
    main()
