#!/usr/bin/env python3
"""gen_logreg_fixture.py — scikit-learn's LogisticRegression fitted on small random problems,
for tests/test_logreg.c (qkv_logreg_fit must reach the same optimum).

Writes tests/fixtures/logreg/logreg.safetensors; for each case <c> (c0, c1, ...):
  <c>.x        [n, d] F32 training features (qkv gets exactly these floats; sklearn gets them
               as float64, so both fit the same data)
  <c>.y        [n] I32 labels in [0, K)
  <c>.xt       [m, d] F32 held-out features
  <c>.meta     [5] F64: K, C, fit_intercept (0/1), n_iter_ (sklearn's iterations), max
               |gradient| of sklearn's objective at its solution (computed here in numpy)
  <c>.coef     [R, d] F64 coef_ (R = 1 for two classes, else K)
  <c>.intercept [R] F64 intercept_
  <c>.proba    [m, K] F64 predict_proba(xt)
  <c>.pred     [m] I32 predict(xt)
and "cases" [1] I32: the number of cases.

sklearn runs LogisticRegression(C=C, l1_ratio=0 (penalty "l2"), solver="lbfgs",
fit_intercept=..., tol=1e-10, max_iter=100000): tight, so its answer is the optimum to about
1e-9 in gradient, not wherever the default tol=1e-4 happens to stop. The script checks that
the gradient at sklearn's solution is small and that the solution is stationary.

Cases: 3 classes (C 1), 5 imbalanced classes with correlated features (C 0.1, 1, 10), binary
(C 1; the binomial model, one row), binary without an intercept, 10 classes with d 40, a
linearly separable 3-class problem (the penalty keeps it finite), features of very different
scales.

Run: tools/.venv/bin/python tools/gen_logreg_fixture.py   (scikit-learn 1.9.1, numpy,
safetensors)
"""
import os
import warnings

import numpy as np
import sklearn
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "logreg")


def probs_residual(z, y, K):
    """Probabilities from decision values z [n, R] (R = 1: the binomial model) and the
    residual p - onehot(y) per decision value, [n, R]."""
    if K == 2:
        p = 1 / (1 + np.exp(-z[:, 0]))
        return p, (p - y)[:, None]
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    r = p.copy()
    r[np.arange(len(y)), y] -= 1
    return p, r


def objective_grad(x, y, K, C, fit_intercept, coef, intercept):
    """max |gradient| of sklearn's objective: mean CE + ||W||^2 / (2 C n)."""
    n = x.shape[0]
    _, r = probs_residual(x @ coef.T + intercept, y, K)
    gw = r.T @ x / n + coef / (C * n)
    gb = r.sum(0) / n if fit_intercept else np.zeros(0)
    return max(np.abs(gw).max(), np.abs(gb).max() if gb.size else 0.0)


def newton_polish(x, y, K, C, fit_intercept, coef, intercept, iters=8):
    """Newton's method from sklearn's solution to the optimum at rounding level (the Hessian
    is small here); min-norm steps keep the intercepts' sum where sklearn's is. Returns
    (coef, intercept, max |gradient|, smallest Hessian eigenvalue off the null direction)."""
    n, d = x.shape
    R = coef.shape[0]
    xt = np.hstack([x, np.ones((n, 1))]) if fit_intercept else x
    D = xt.shape[1]
    th = np.hstack([coef, intercept[:, None]]) if fit_intercept else coef.copy()
    pen = np.ones((R, D)) / (C * n)
    if fit_intercept:
        pen[:, d] = 0
    for _ in range(iters):
        p, r = probs_residual(xt @ th.T, y, K)
        if K == 2:
            A = (p * (1 - p))[:, None, None]
        else:
            A = np.einsum("ik,kl->ikl", p, np.eye(K)) - np.einsum("ik,il->ikl", p, p)
        g = r.T @ xt / n + pen * th
        H = np.einsum("ikl,ia,ib->kalb", A, xt, xt).reshape(R * D, R * D) / n
        H += np.diag(pen.ravel())
        step = np.linalg.lstsq(H, g.ravel(), rcond=1e-13)[0]
        th = th - step.reshape(R, D)
    ev = np.linalg.eigvalsh(H)
    lam = ev[ev > 1e-12 * ev.max()].min()
    gmax = objective_grad(x, y, K, C, fit_intercept, th[:, :d],
                          th[:, d] if fit_intercept else np.zeros(R))
    return th[:, :d], (th[:, d] if fit_intercept else np.zeros(R)), gmax, lam


def make(rng, n, d, K, mix=0.5, noise=1.0, scales=None, imbalance=None):
    x = rng.standard_normal((n, d))
    if mix:  # correlated features
        x = x @ (np.eye(d) + mix * rng.standard_normal((d, d)) / np.sqrt(d))
    if scales is not None:
        x = x * scales
    w = rng.standard_normal((K, d))
    logits = x @ w.T / np.sqrt(d) * 2 + noise * rng.standard_normal((n, K))
    if imbalance is not None:
        logits += np.log(imbalance)
    y = logits.argmax(1)
    return x.astype(np.float32), y.astype(np.int32)


def _proba(x, K, coef, icpt):
    z = x @ coef.T + icpt
    if K == 2:
        p = 1 / (1 + np.exp(-z[:, 0]))
        return np.stack([1 - p, p], 1)
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def main():
    rng = np.random.default_rng(20240601)
    cases = []
    cases.append((make(rng, 120, 6, 3), 3, 1.0, True))
    xi, yi = make(rng, 300, 12, 5, mix=1.5, imbalance=np.array([8, 4, 2, 1, 0.5]))
    for C in (0.1, 1.0, 10.0):
        cases.append(((xi, yi), 5, C, True))
    cases.append((make(rng, 150, 8, 2), 2, 1.0, True))
    cases.append((make(rng, 150, 8, 2), 2, 0.5, False))
    cases.append((make(rng, 400, 40, 10), 10, 1.0, True))
    xs, ys = make(rng, 90, 5, 3, noise=0.0)  # labels a function of x: separable
    cases.append(((xs, ys), 3, 1.0, True))
    sc = np.array([1e-2, 0.1, 1, 10, 3, 0.3], dtype=np.float64)
    cases.append((make(rng, 200, 6, 4, scales=sc), 4, 1.0, True))

    tensors = {"cases": np.array([len(cases)], dtype=np.int32)}
    for i, ((x, y), K, C, fi) in enumerate(cases):
        assert sorted(set(y.tolist())) == list(range(K)), (i, np.bincount(y))
        xt = rng.standard_normal((25, x.shape[1])).astype(np.float32) * x.std(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a ConvergenceWarning would be a bad fixture
            clf = LogisticRegression(C=C, l1_ratio=0.0, solver="lbfgs", fit_intercept=fi,
                                     tol=1e-10, max_iter=100000)
            clf.fit(x.astype(np.float64), y)
        coef = clf.coef_
        icpt = clf.intercept_ if fi else np.zeros(coef.shape[0])
        x64 = x.astype(np.float64)
        g = objective_grad(x64, y, K, C, fi, coef, icpt)
        assert g < 1e-6, (i, g)
        ocoef, oicpt, og, lam = newton_polish(x64, y, K, C, fi, coef, icpt)
        assert og < 1e-13, (i, og)
        dist = max(np.abs(ocoef - coef).max(), np.abs(oicpt - icpt).max())
        assert dist < g / lam * 10, (i, dist, g, lam)
        xt64 = xt.astype(np.float64)
        c = f"c{i}"
        tensors[c + ".x"] = x
        tensors[c + ".y"] = y
        tensors[c + ".xt"] = xt
        tensors[c + ".meta"] = np.array([K, C, float(fi), float(clf.n_iter_[0]), g, og, lam])
        tensors[c + ".opt_coef"] = np.ascontiguousarray(ocoef)
        tensors[c + ".opt_intercept"] = np.ascontiguousarray(oicpt)
        tensors[c + ".opt_proba"] = _proba(xt.astype(np.float64), K, ocoef, oicpt)
        tensors[c + ".coef"] = np.ascontiguousarray(coef, dtype=np.float64)
        tensors[c + ".intercept"] = np.asarray(icpt, dtype=np.float64)
        tensors[c + ".proba"] = clf.predict_proba(xt64)
        tensors[c + ".pred"] = clf.predict(xt64).astype(np.int32)
        print(f"{c}: n={x.shape[0]} d={x.shape[1]} K={K} C={C} intercept={fi} "
              f"n_iter={clf.n_iter_[0]} |grad|max={g:.2e} polished={og:.1e} "
              f"|sklearn - optimum|={dist:.1e} lambda_min={lam:.2e}")
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "logreg.safetensors"),
              metadata={"sklearn": sklearn.__version__, "numpy": np.__version__})


if __name__ == "__main__":
    main()
