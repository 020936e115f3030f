"""Fitting measured times: non-negative least squares of time on work, bytes, depth and launches, R^2, slopes.

Pure numerics (numpy; scipy.optimize.nnls when installed, imported only when a fit runs).
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def nnls_exhaustive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||a x - b|| subject to x >= 0, exactly, by least squares on every subset of columns (small n only).

    The optimum is the unconstrained least-squares solution on its own support, so the best feasible subset
    solution is the NNLS solution.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n = a.shape[1]
    if n > 12:
        raise ValueError("nnls_exhaustive is for a handful of columns")
    best = np.zeros(n)
    best_res = float(np.sum(b * b))
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            sub = a[:, cols]
            x, *_ = np.linalg.lstsq(sub, b, rcond=None)
            if np.any(x < 0):
                continue
            res = float(np.sum((sub @ x - b) ** 2))
            if res < best_res - 1e-15 * max(1.0, best_res):
                best_res = res
                best = np.zeros(n)
                best[list(cols)] = x
    return best


def nnls(a: np.ndarray, b: np.ndarray, method: str = "auto") -> tuple[np.ndarray, str]:
    """NNLS via scipy.optimize.nnls when scipy is installed (method "auto" or "scipy"), else the built-in solver."""
    if method in ("auto", "scipy"):
        try:
            from scipy.optimize import nnls as scipy_nnls
        except ImportError:
            if method == "scipy":
                raise
        else:
            x, _ = scipy_nnls(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
            return np.asarray(x, dtype=float), "scipy.optimize.nnls"
    return nnls_exhaustive(a, b), "built-in (exhaustive active set)"


def r_squared(y: np.ndarray, pred: np.ndarray) -> float | None:
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return None
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


def fit_time(work, depth, times, method: str = "auto") -> dict:
    """Fit times ~ alpha*W + beta*D + gamma (alpha, beta, gamma >= 0), minimising relative errors.

    Columns are scaled to unit maximum and rows divided by the measured time before NNLS; both keep the
    constraint x >= 0 and the problem well conditioned.
    """
    w = np.asarray(work, dtype=float)
    d = np.asarray(depth, dtype=float)
    t = np.asarray(times, dtype=float)
    a = np.column_stack([w, d, np.ones_like(w)])
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    weight = 1.0 / t
    x, used = nnls(a / scale * weight[:, None], t * weight, method)
    alpha, beta, gamma = (float(v) for v in x / scale)
    pred = a @ np.array([alpha, beta, gamma])
    r2 = r_squared(t, pred)
    r2_log = r_squared(np.log(t), np.log(pred)) if np.all(pred > 0) else None
    return {"alpha_s_per_op": alpha, "beta_s_per_level": beta, "gamma_s": gamma, "r2": r2, "r2_log": r2_log,
            "method": used, "weighting": "relative (rows divided by the measured time)",
            "predicted_s": [float(v) for v in pred]}


SCIPY_MISSING = ("scipy is not installed (pip install 'depthscope[validate]'): solved by the built-in exhaustive "
                 "active-set solver, which is exact for a handful of terms")
EXPLAINS_SHARE = 0.01  # a term with a non-zero coefficient explains the measurements when it is 1% of the time


def fit_terms(columns: dict[str, list], times, method: str = "auto") -> dict:
    """Fit times ~ sum_j c_j * column_j with every c_j >= 0 (relative errors), and each term's share of the time.

    A term's share is its part of the fitted time averaged over the sizes (each size weighs the same, as in the
    fit); the terms that explain the measurements have a non-zero coefficient and at least 1% of the time.
    """
    names = list(columns)
    t = np.asarray(times, dtype=float)
    a = np.column_stack([np.asarray(columns[n], dtype=float) for n in names])
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    weight = 1.0 / t
    x, used = nnls(a / scale * weight[:, None], t * weight, method)
    coef = x / scale
    pred = a @ coef
    parts = a * coef  # rows: sizes, columns: each term's seconds
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(pred[:, None] > 0, parts / pred[:, None], 0.0).mean(axis=0)
    terms = [{"term": n, "coefficient": float(c), "share": float(sh), "share_at_largest": float(parts[-1, j] / pred[-1])
              if pred[-1] > 0 else 0.0} for j, (n, c, sh) in enumerate(zip(names, coef, shares))]
    return {
        "terms": terms,
        "explained_by": [row["term"] for row in terms if row["coefficient"] > 0 and row["share"] >= EXPLAINS_SHARE],
        "r2": r_squared(t, pred),
        "r2_log": r_squared(np.log(t), np.log(pred)) if np.all(pred > 0) else None,
        "method": used,
        "note": SCIPY_MISSING if method == "auto" and used.startswith("built-in") else None,
        "weighting": "relative (rows divided by the measured time)",
        "predicted_s": [float(v) for v in pred],
    }


def slope(xs, ys) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two usable points)."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pairs) < 2 or len({p[0] for p in pairs}) < 2:
        return None
    lx, ly = np.array(pairs).T
    return float(np.polyfit(lx, ly, 1)[0])


def slopes(xs, ys) -> dict:
    """Slope over all sizes and over the upper half (the largest sizes, at least two)."""
    k = max(2, (len(xs) + 1) // 2)
    return {"all": slope(xs, ys), "tail": slope(xs[-k:], ys[-k:])}
