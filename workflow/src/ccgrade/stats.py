"""Model-comparison statistics of the studies: DeLong AUC variance, CI and test; McNemar; per-class metrics.

- ``delong``: AUCs of one or several score vectors on the same patients and their covariance, by the
  fast O(n log n) midrank algorithm of Sun & Xu (IEEE SPL 2014) for DeLong et al. (Biometrics 1988);
- ``auc_ci``: the DeLong confidence interval (normal approximation, clipped to [0, 1]), and
  ``bootstrap_auc_ci``: a seeded, class-stratified percentile bootstrap;
- ``delong_test``: two correlated AUCs on the same patients (Cui Table 4, Li Table 2, Sun);
- ``mcnemar``: paired correct/incorrect calls of two models, exact binomial and chi-square with
  continuity correction (Li: sensitivity among high-grade, specificity among low-grade patients);
- ``class_metrics``: accuracy, AUC, precision, sensitivity, specificity and F1 per class (Cui Tables 3-4).
Labels are 1 for the positive class (high grade) and 0 otherwise; scores are P(high grade).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def midrank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (the midrank), for a 1D array."""
    return stats.rankdata(x, method="average")


def _check(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(int).ravel()
    s = np.atleast_2d(np.asarray(scores, float))
    if s.shape[1] != len(y):
        raise ValueError(f"scores have {s.shape[1]} values for {len(y)} labels")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0/1")
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError("AUC needs both classes among the labels")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance (k, k) for k score vectors (k, n) on labels y (n,)."""
    y, s = _check(y, scores)
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    k = s.shape[0]
    tx = np.array([midrank(pos[r]) for r in range(k)])
    ty = np.array([midrank(neg[r]) for r in range(k)])
    tz = np.array([midrank(np.concatenate([pos[r], neg[r]])) for r in range(k)])
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v01 = (tz[:, :m] - tx) / n  # structural components of the positives
    v10 = 1.0 - (tz[:, m:] - ty) / m  # ... and of the negatives
    sx = np.atleast_2d(np.cov(v01)) if m > 1 else np.zeros((k, k))
    sy = np.atleast_2d(np.cov(v10)) if n > 1 else np.zeros((k, k))
    return aucs, sx / m + sy / n


def auc_ci(y: np.ndarray, score: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """AUC and its DeLong confidence interval (normal approximation, clipped to [0, 1])."""
    aucs, cov = delong(y, score)
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    z = stats.norm.ppf(0.5 + level / 2)
    a = float(aucs[0])
    return a, max(0.0, a - z * se), min(1.0, a + z * se)


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict:
    """DeLong's test of two correlated AUCs on the same patients (two-sided)."""
    aucs, cov = delong(y, np.vstack([score_a, score_b]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    if var <= 1e-15:
        z, p = 0.0, 1.0 if abs(diff) < 1e-12 else 0.0
    else:
        z = diff / np.sqrt(var)
        p = float(2 * stats.norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": diff, "z": float(z), "p_value": p,
            "var_difference": float(var)}


def bootstrap_auc_ci(y: np.ndarray, score: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC, resampling positives and negatives separately (seeded).

    All resamples are ranked at once (vectorised midranks), in chunks to bound memory."""
    y, s = _check(y, score)
    s = s[0]
    rng = np.random.default_rng(seed)
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (m + n))
    for a in range(0, n_boot, chunk):
        b = min(n_boot, a + chunk)
        p = pos[rng.integers(0, m, (b - a, m))]
        q = neg[rng.integers(0, n, (b - a, n))]
        r = stats.rankdata(np.concatenate([p, q], axis=1), method="average", axis=1)
        out[a:b] = (r[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    lo, hi = np.quantile(out, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test on paired correct/incorrect calls: exact (binomial) and chi-square with continuity."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError("paired calls must have the same length")
    n01 = int((a & ~b).sum())  # A right, B wrong
    n10 = int((~a & b).sum())
    n = n01 + n10
    p_exact = 1.0 if n == 0 else float(min(1.0, 2 * stats.binom.cdf(min(n01, n10), n, 0.5)))
    chi2 = 0.0 if n == 0 else (abs(n01 - n10) - 1) ** 2 / n
    chi2 = max(chi2, 0.0) if n else 0.0
    p_chi2 = 1.0 if n == 0 else float(stats.chi2.sf(chi2, 1))
    return {"a_right_b_wrong": n01, "a_wrong_b_right": n10, "both_right": int((a & b).sum()),
            "both_wrong": int((~a & ~b).sum()), "p_exact": p_exact, "chi2_cc": float(chi2), "p_chi2_cc": p_chi2}


def class_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> list[dict]:
    """Cui Tables 3-4: one row per class (low, high) with accuracy, AUC, precision, sensitivity,
    specificity and F1, the class taken as positive; the AUC and accuracy are the same for both rows."""
    y, s = _check(y, score)
    s = s[0]
    pred = (s >= threshold).astype(int)
    acc = float((pred == y).mean())
    auc = float(delong(y, s)[0][0])
    rows = []
    for name, cls in (("low", 0), ("high", 1)):
        tp = int(((pred == cls) & (y == cls)).sum())
        fp = int(((pred == cls) & (y != cls)).sum())
        fn = int(((pred != cls) & (y == cls)).sum())
        tn = int(((pred != cls) & (y != cls)).sum())
        prec = tp / (tp + fp) if tp + fp else float("nan")
        sens = tp / (tp + fn) if tp + fn else float("nan")
        spec = tn / (tn + fp) if tn + fp else float("nan")
        f1 = 2 * prec * sens / (prec + sens) if prec == prec and sens == sens and prec + sens > 0 else float("nan")
        rows.append({"class": name, "n": int((y == cls).sum()), "accuracy": acc, "auc": auc, "precision": prec,
                     "sensitivity": sens, "specificity": spec, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn})
    return rows
