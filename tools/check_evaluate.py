#!/usr/bin/env python3
"""check_evaluate.py QKV SOURCE_DIR — `qkv evaluate` against scikit-learn.

On the tiny classifiers of tests/fixtures/cls (single-label, sentence pairs, multi-label,
regression) and labelled files written here (random texts over the fixtures' vocabulary, random
labels, seeded), runs `qkv evaluate --report --json --predictions`, then gives scikit-learn the
true labels and the predictions of the predictions file and requires:
  - the --report file byte-identical to classification_report(y_true, y_pred,
    labels=range(C), target_names=id2label, digits=D) (D = 2, 4, 0; multi-label: indicator
    matrices);
  - the JSON's accuracy, macro_f1, per-class precision / recall / F1 / support and the
    confusion matrix equal to sklearn's (the same doubles);
  - regression: MSE, MAE, RMSE, R² (sklearn) and Pearson's r (numpy) within 1e-12 relative.
Exit 0 when all hold, 1 otherwise; 77 (skip) without numpy or scikit-learn."""
import json
import os
import random
import subprocess
import sys
import tempfile
import warnings

try:
    import numpy as np
    from sklearn import metrics
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

warnings.filterwarnings("ignore")  # sklearn's UndefinedMetricWarning for 0/0 ratios

WORDS = ("the is was good bad not very movie film great awful team game vote law cell atom "
         "paint music it this and of to in love hate play win").split()
failures = []


def fail(what):
    failures.append(what)
    print("FAIL:", what)


def text(r):
    return " ".join(r.choice(WORDS) for _ in range(r.randint(1, 9)))


def id2label(model):
    with open(os.path.join(model, "config.json")) as f:
        m = json.load(f)["id2label"]
    return [m[str(i)] for i in range(len(m))]


def evaluate(qkv, model, data, tmp, *extra):
    out = {k: os.path.join(tmp, k) for k in ("report", "json", "predictions")}
    cmd = [qkv, "evaluate", "--model", model, "--data", data] + list(extra)
    for k, p in out.items():
        cmd += ["--" + k, p]
    p = subprocess.run(cmd, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.decode()}")
    with open(out["report"], encoding="utf-8") as f:
        report = f.read()
    with open(out["json"]) as f:
        js = json.load(f)
    with open(out["predictions"]) as f:
        preds = [json.loads(line) for line in f]
    return report, js, preds, p.stdout.decode()


def same(what, a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or not np.array_equal(a, b):
        fail(f"{what}: qkv {a.tolist()} != sklearn {b.tolist()}")


def check_single(qkv, model, tmp, r, pairs, n):
    names = id2label(model)
    path = os.path.join(tmp, "data.tsv")
    rows = []
    with open(path, "w") as f:
        f.write("text\ttext_pair\tlabel\n" if pairs else "text\tlabel\n")
        for _ in range(n):
            row = [text(r)] + ([text(r)] if pairs else []) + [r.choice(names)]
            rows.append(row)
            f.write("\t".join(row) + "\n")
    for digits in (2, 4, 0):
        report, js, preds, stdout = evaluate(qkv, model, path, tmp, "--digits", str(digits))
        tag = f"{os.path.basename(model)} digits {digits}"
        if [p["true"] for p in preds] != [row[-1] for row in rows]:
            fail(f"{tag}: true labels of the predictions file differ from the data")
        y_true = [names.index(p["true"]) for p in preds]
        y_pred = [names.index(p["predicted"]) for p in preds]
        labels = list(range(len(names)))
        want = metrics.classification_report(y_true, y_pred, labels=labels, target_names=names,
                                             digits=digits)
        if report != want:
            fail(f"{tag}: report differs\n--- qkv\n{report}--- sklearn\n{want}")
        if not stdout.startswith(want):
            fail(f"{tag}: stdout does not start with the report")
        if len(set(y_pred)) < 2:
            print(f"note: {tag}: every prediction is '{names[y_pred[0]]}'")
        if digits != 2:
            continue
        p, rc, f1, sup = metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels)
        same(f"{tag}: precision", [c["precision"] for c in js["classes"]], p)
        same(f"{tag}: recall", [c["recall"] for c in js["classes"]], rc)
        same(f"{tag}: f1", [c["f1-score"] for c in js["classes"]], f1)
        same(f"{tag}: support", [c["support"] for c in js["classes"]], sup)
        same(f"{tag}: accuracy", js["accuracy"], metrics.accuracy_score(y_true, y_pred))
        same(f"{tag}: macro_f1", js["macro_f1"],
             metrics.f1_score(y_true, y_pred, labels=labels, average="macro"))
        same(f"{tag}: confusion matrix", js["confusion_matrix"],
             metrics.confusion_matrix(y_true, y_pred, labels=labels))
        print(f"{tag}: {n} examples, accuracy {js['accuracy']:.3f}, report identical")


def check_multi(qkv, model, tmp, r, n):
    names = id2label(model)
    path = os.path.join(tmp, "data.jsonl")
    truth = []
    with open(path, "w") as f:
        for _ in range(n):
            labels = [x for x in names if r.random() < 0.4]
            truth.append(labels)
            f.write(json.dumps({"text": text(r), "labels": labels}) + "\n")
    for digits, threshold in ((2, "0.5"), (3, "0.55")):
        report, js, preds, _ = evaluate(qkv, model, path, tmp, "--digits", str(digits),
                                        "--threshold", threshold)
        tag = f"multi digits {digits} threshold {threshold}"
        C = len(names)
        yt = np.array([[int(x in p["true"]) for x in names] for p in preds])
        yp = np.array([[int(x in p["predicted"]) for x in names] for p in preds])
        want_true = np.array([[int(x in t) for x in names] for t in truth])
        if not np.array_equal(yt, want_true):
            fail(f"{tag}: true sets of the predictions file differ from the data")
        sig = np.array([[p["scores"][x] for x in names] for p in preds])
        if not np.array_equal(yp, (sig > float(threshold)).astype(int)):
            fail(f"{tag}: predicted sets are not the scores above the threshold")
        want = metrics.classification_report(yt, yp, labels=list(range(C)), target_names=names,
                                             digits=digits)
        if report != want:
            fail(f"{tag}: report differs\n--- qkv\n{report}--- sklearn\n{want}")
        same(f"{tag}: accuracy", js["accuracy"], metrics.accuracy_score(yt, yp))
        same(f"{tag}: macro_f1", js["macro_f1"], metrics.f1_score(yt, yp, average="macro"))
        same(f"{tag}: multilabel confusion", js["multilabel_confusion_matrix"],
             metrics.multilabel_confusion_matrix(yt, yp))
        print(f"{tag}: {n} examples, exact-row accuracy {js['accuracy']:.3f}, report identical")


def check_regression(qkv, model, tmp, r, n):
    path = os.path.join(tmp, "data.csv")
    with open(path, "w") as f:
        f.write("text,label\n")
        for _ in range(n):
            f.write(f"{text(r)},{r.uniform(-2.5, 0.5):.4f}\n")
    _, js, preds, _ = evaluate(qkv, model, path, tmp)
    # both sides are floats (the file has the shortest digits that read back to them)
    y = np.array([p["true"] for p in preds], dtype=np.float32).astype(np.float64)
    p = np.array([p["predicted"] for p in preds], dtype=np.float32).astype(np.float64)
    want = {"mse": metrics.mean_squared_error(y, p), "mae": metrics.mean_absolute_error(y, p),
            "rmse": metrics.root_mean_squared_error(y, p), "r2": metrics.r2_score(y, p),
            "pearson_r": np.corrcoef(y, p)[0, 1]}
    for k, v in want.items():
        if not abs(js[k] - v) <= 1e-12 * max(1.0, abs(v)):
            fail(f"regression {k}: qkv {js[k]!r} sklearn/numpy {v!r}")
    worst = max(abs(js[k] - v) / max(1.0, abs(v)) for k, v in want.items())
    print(f"regression: {n} examples, " + ", ".join(f"{k} {js[k]:.6g}" for k in want) +
          f"; largest relative difference {worst:.2g}")


def main():
    qkv, src = sys.argv[1], sys.argv[2]
    fix = os.path.join(src, "tests", "fixtures", "cls")
    r = random.Random(20261207)
    with tempfile.TemporaryDirectory() as tmp:
        check_single(qkv, os.path.join(fix, "single"), tmp, r, False, 300)
        check_single(qkv, os.path.join(fix, "pair"), tmp, r, True, 120)
        check_multi(qkv, os.path.join(fix, "multi"), tmp, r, 200)
        check_regression(qkv, os.path.join(fix, "regression"), tmp, r, 150)
    if failures:
        print(f"check_evaluate: {len(failures)} failure(s)")
        sys.exit(1)
    print("check_evaluate: every report identical to scikit-learn's")


if __name__ == "__main__":
    main()
