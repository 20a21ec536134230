"""qkv.Model.classify against `qkv classify --all` on the tiny classifiers of
tests/fixtures/cls (single-label, multi-label, regression, text pairs): the same labels in the
same order and the same scores to the 7 significant digits the CLI prints (%.7g, so within
1e-6 relative), and transformers' pipeline scores of the fixtures within 1e-5."""

import numpy as np
import pytest

import qkv
from conftest import FIX

CLS = FIX / "cls"


def parse_all(tsv):
    """label<TAB>score<TAB>... lines (best first) -> list of [(label, score), ...]."""
    rows = []
    for line in tsv.decode("utf-8").splitlines():
        f = line.split("\t")
        rows.append([(f[i], float(f[i + 1])) for i in range(0, len(f), 2)])
    return rows


def ranked(result, names, i):
    """Row i best first, ties in label order (as the CLI ranks them)."""
    order = sorted(range(len(names)), key=lambda c: -result.scores[i, c])
    return [(names[c], float(result.scores[i, c])) for c in order]


def check_same(got, want, tol):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert [x[0] for x in g] == [x[0] for x in w], f"input {i + 1}: labels"
        np.testing.assert_allclose([x[1] for x in g], [x[1] for x in w], rtol=tol, atol=tol,
                                   err_msg=f"input {i + 1}")


@pytest.mark.parametrize("name,problem", [("single", "single_label_classification"),
                                          ("multi", "multi_label_classification"),
                                          ("regression", "regression")])
def test_classify_equals_cli(run, name, problem):
    texts = (CLS / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    want = parse_all(run("classify", "--model", CLS / name, "--all", CLS / f"{name}.txt"))
    with qkv.Model(CLS / name) as m:
        assert m.problem_type == problem
        r = m.classify(texts)
        names = m.labels
        assert r.scores.shape == (len(texts), m.num_labels) and r.scores.dtype == np.float32
        got = [ranked(r, names, i) for i in range(len(texts))]
        check_same(got, want, 1e-6)
        assert r.labels == [w[0][0] for w in want]  # the best label
        check_same(got, parse_all((CLS / f"{name}_pipeline.tsv").read_bytes()), 1e-5)
        want_logits = np.array([[float(x) for x in line.split(b"\t")[1::2]] for line in
                                run("classify", "--model", CLS / name, "--all", "--logits",
                                    CLS / f"{name}.txt").splitlines()])
        np.testing.assert_allclose(np.sort(r.logits, axis=1)[:, ::-1], want_logits, rtol=1e-6,
                                   atol=1e-6)


def test_pairs_equal_cli(run):
    lines = (CLS / "pair.txt").read_text(encoding="utf-8").splitlines()
    texts = [ln.split("\t", 1)[0] for ln in lines]
    pairs = [ln.split("\t", 1)[1] if "\t" in ln and ln.split("\t", 1)[1] else None
             for ln in lines]
    want = parse_all(run("classify", "--model", CLS / "pair", "--pairs", "--all",
                         CLS / "pair.txt"))
    with qkv.Model(CLS / "pair") as m:
        r = m.classify(texts, pairs)
        check_same([ranked(r, m.labels, i) for i in range(len(lines))], want, 1e-6)
        alone = m.classify(texts)  # without pairs the scores differ
        assert not np.array_equal(alone.scores, r.scores)
        with pytest.raises(ValueError):
            m.classify(texts, pairs[:-1])


def test_no_classification_head():
    with qkv.Model(FIX / "train" / "bert_tiny" / "model") as m:
        assert m.num_labels == 0 and m.labels == []
        with pytest.raises(qkv.Unsupported) as e:
            m.classify(["x"])
        assert "classification head" in e.value.message and e.value.status == 5
