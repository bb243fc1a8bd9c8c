"""Model-comparison statistics of the studies: DeLong AUC variance, CI and test; McNemar; per-class metrics.

- ``delong``: AUCs of one or several score vectors on the same patients and their covariance, by the
  fast O(n log n) midrank algorithm of Sun & Xu (IEEE SPL 2014) for DeLong et al. (Biometrics 1988);
- ``auc_ci``: the DeLong confidence interval (normal approximation, clipped to [0, 1]), and
  ``bootstrap_auc_ci``: a seeded, class-stratified percentile bootstrap;
- ``delong_test``: two correlated AUCs on the same patients (Cui Table 4, Li Table 2, Sun);
- ``mcnemar``: paired correct/incorrect calls of two models, exact binomial and chi-square with
  continuity correction (Li: sensitivity among high-grade, specificity among low-grade patients);
- ``class_metrics``: accuracy, AUC, precision, sensitivity, specificity and F1 per class (Cui Tables 3-4);
- ``clustered_auc``: AUCs and their covariance when units (images, slices) are clustered in patients, by
  Obuchowski (Biometrics 1997; 53:567-578); with one unit per patient it is DeLong's;
  ``cluster_bootstrap``: the patient-level (cluster) percentile bootstrap of AUCs and their differences;
- ``adjust``: Holm (step-down) or Benjamini-Hochberg adjusted P values of a family of tests;
- calibration of held-out predictions: ``hosmer_lemeshow`` (g df held out, g - 2 in sample),
  ``calibration_slope_intercept`` (logistic recalibration) and ``spiegelhalter`` (z test);
- ``lr_test``: likelihood-ratio test of two nested logistic models (not DeLong, invalid for nested models).
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


def auc_ci(y: np.ndarray, score: np.ndarray, level: float = 0.95, clusters: np.ndarray | None = None
           ) -> tuple[float, float, float]:
    """AUC and its DeLong confidence interval (normal approximation, clipped to [0, 1]); with ``clusters``
    (the patient of each image) Obuchowski's clustered variance instead."""
    aucs, cov = auc_variance(y, score, clusters)
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    z = stats.norm.ppf(0.5 + level / 2)
    a = float(aucs[0])
    return a, max(0.0, a - z * se), min(1.0, a + z * se)


def _z_test(diff: float, var: float) -> tuple[float, float]:
    """Two-sided z test of an AUC difference with its variance (no variance: P 1 when equal, else 0)."""
    if var <= 1e-15:
        return 0.0, 1.0 if abs(diff) < 1e-12 else 0.0
    z = diff / np.sqrt(var)
    return float(z), float(2 * stats.norm.sf(abs(z)))


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, clusters: np.ndarray | None = None) -> dict:
    """DeLong's test of two correlated AUCs on the same patients (two-sided); with ``clusters`` (images in
    patients) the correlated comparison of Obuchowski (1997) on the clustered covariance."""
    aucs, cov = auc_variance(y, np.vstack([score_a, score_b]), clusters)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    z, p = _z_test(diff, var)
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": diff, "z": float(z), "p_value": p,
            "var_difference": float(var)}


def unpaired_auc_test(y_a: np.ndarray, score_a: np.ndarray, y_b: np.ndarray, score_b: np.ndarray,
                      clusters_a: np.ndarray | None = None, clusters_b: np.ndarray | None = None,
                      n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Two AUCs of independent samples (a model on its internal test patients vs an external cohort): the
    z test on their difference with each sample's DeLong (or, with ``clusters``, Obuchowski's) variance,
    two-sided, and the percentile CI of the difference from independent patient-level bootstraps of the two
    samples (``cluster_bootstrap``, seeded ``seed`` and ``seed + 1``)."""
    (auc_a,), va = auc_variance(y_a, score_a, clusters_a)
    (auc_b,), vb = auc_variance(y_b, score_b, clusters_b)
    var = float(va[0, 0] + vb[0, 0])
    diff = float(auc_a - auc_b)
    z, p = _z_test(diff, var)
    da = cluster_bootstrap(y_a, score_a, clusters_a, n_boot=n_boot, level=level, seed=seed)["draws"][:, 0]
    db = cluster_bootstrap(y_b, score_b, clusters_b, n_boot=n_boot, level=level, seed=seed + 1)["draws"][:, 0]
    k = min(len(da), len(db))
    lo, hi = np.quantile(da[:k] - db[:k], [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"auc_a": float(auc_a), "auc_b": float(auc_b), "difference": diff, "z": float(z), "p_value": p,
            "var_difference": var, "diff_boot_low": float(lo), "diff_boot_high": float(hi)}


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


# ------------------------------------------------------------------------------ clustered data (Obuchowski)

def _psi_components(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs (k,) and the structural components V10 (k, M) of the positives and V01 (k, N) of the negatives."""
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = np.array([midrank(r) for r in pos])
    ty = np.array([midrank(r) for r in neg])
    tz = np.array([midrank(np.concatenate([a, b])) for a, b in zip(pos, neg)])
    v10 = (tz[:, :m] - tx) / n  # per positive: the fraction of negatives it outranks (ties half)
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: the fraction of positives outranking it
    return v10.mean(axis=1), v10, v01


def clustered_auc(y: np.ndarray, scores: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) of k score vectors (k, n) and their covariance (k, k) with units clustered in ``clusters``.

    Obuchowski (1997), eqs. 3-5: with V10_i, V01_i the sums of cluster i's positive and negative units'
    structural components, m_i and n_i its positive and negative units, M and N their totals, I10 and
    I01 the clusters holding a positive and a negative unit, and I all clusters,
      S10 = I10 / ((I10 - 1) M) sum_i (V10_i - m_i A)(V10_i - m_i A)',
      S01 = I01 / ((I01 - 1) N) sum_i (V01_i - n_i A)(V01_i - n_i A)',
      S11 = I / (I - 1) sum_i (V10_i - m_i A)(V01_i - n_i A)',
      cov = S10 / M + S01 / N + (S11 + S11') / (M N).
    One unit per cluster gives DeLong's covariance exactly (S11 = 0, the rest are DeLong's terms)."""
    y, s = _check(y, scores)
    c = np.asarray(clusters).ravel()
    if len(c) != len(y):
        raise ValueError(f"{len(c)} cluster labels for {len(y)} units")
    aucs, v10, v01 = _psi_components(y, s)
    ids, inv = np.unique(c, return_inverse=True)
    n_cl, k = len(ids), s.shape[0]
    m_i = np.bincount(inv[y == 1], minlength=n_cl).astype(float)
    n_i = np.bincount(inv[y == 0], minlength=n_cl).astype(float)
    V10 = np.zeros((k, n_cl))
    V01 = np.zeros((k, n_cl))
    for r in range(k):
        V10[r] = np.bincount(inv[y == 1], weights=v10[r], minlength=n_cl)
        V01[r] = np.bincount(inv[y == 0], weights=v01[r], minlength=n_cl)
    a = V10 - m_i * aucs[:, None]
    b = V01 - n_i * aucs[:, None]
    M, N = m_i.sum(), n_i.sum()
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    s10 = i10 / ((i10 - 1) * M) * (a @ a.T) if i10 > 1 else np.zeros((k, k))
    s01 = i01 / ((i01 - 1) * N) * (b @ b.T) if i01 > 1 else np.zeros((k, k))
    s11 = n_cl / (n_cl - 1) * (a @ b.T) if n_cl > 1 else np.zeros((k, k))
    return aucs, s10 / M + s01 / N + (s11 + s11.T) / (M * N)


def auc_variance(y: np.ndarray, scores: np.ndarray, clusters: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's AUCs and covariance, or Obuchowski's clustered ones when ``clusters`` is given."""
    return delong(y, scores) if clusters is None else clustered_auc(y, scores, clusters)


def cluster_bootstrap(y: np.ndarray, scores: np.ndarray, clusters: np.ndarray | None = None, n_boot: int = 2000,
                      level: float = 0.95, seed: int = 0) -> dict:
    """Patient-level (cluster) percentile bootstrap: whole clusters are resampled with replacement,
    within strata of clusters holding positives only, negatives only, or both (so every resample has
    both classes); seeded. Without ``clusters`` each unit is its own cluster (then it is the class-stratified
    bootstrap). Returns per score vector the CI of its AUC (``low``, ``high``: (k,)) and, for two or more,
    the CI of each difference from the first (``diff_low``, ``diff_high``: (k,), 0 for the first) and the
    resampled AUCs (``draws``: (n_boot, k)).

    A resample is a count per cluster (the same draws as picking clusters one by one); each AUC is then the
    Mann-Whitney U of the units weighted by their cluster's count, for every resample at once (numpy)."""
    y, s = _check(y, scores)
    c = np.arange(len(y)) if clusters is None else np.asarray(clusters).ravel()
    ids, inv = np.unique(c, return_inverse=True)
    has_pos = np.bincount(inv, weights=(y == 1), minlength=len(ids)) > 0
    has_neg = np.bincount(inv, weights=(y == 0), minlength=len(ids)) > 0
    strata = [np.flatnonzero(has_pos & ~has_neg), np.flatnonzero(~has_pos & has_neg), np.flatnonzero(has_pos & has_neg)]
    rng = np.random.default_rng(seed)
    counts = np.empty((n_boot, len(ids)))
    for b in range(n_boot):  # the picks only (the seeded stream, drawn as before); the AUCs below are vectorised
        pick = np.concatenate([st[rng.integers(0, len(st), len(st))] for st in strata if len(st)])
        counts[b] = np.bincount(pick, minlength=len(ids))
    w = counts[:, inv]  # (n_boot, units): each unit weighted by how often its cluster was drawn
    draws = np.column_stack([_weighted_auc(y, row, w) for row in s])
    draws = draws[np.isfinite(draws).all(axis=1)]
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    lo, hi = np.quantile(draws, q, axis=0)
    dlo, dhi = np.quantile(draws - draws[:, :1], q, axis=0)
    return {"low": lo, "high": hi, "diff_low": dlo, "diff_high": dhi, "draws": draws}


def _weighted_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray, chunk: int = 4_000_000) -> np.ndarray:
    """AUCs of one score vector (n,) under each row of unit weights ``w`` (B, n): the Mann-Whitney U of the
    weighted units over tied-score groups, divided by W+ x W- (exact in float64 for integer weights, so equal
    to ranking each expanded resample); NaN for a resample with one class only."""
    order = np.argsort(score, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(score[order]) != 0])  # the distinct scores, ascending
    is_pos = (y[order] == 1)
    out = np.empty(len(w))
    step = max(1, chunk // len(y))
    for a in range(0, len(w), step):
        wb = w[a:a + step][:, order]
        p = np.add.reduceat(wb * is_pos, starts, axis=1)  # (B, groups): weighted positives at each distinct score
        n = np.add.reduceat(wb * ~is_pos, starts, axis=1)  # ... and negatives
        above = p.sum(axis=1, keepdims=True) - np.cumsum(p, axis=1)  # positives scored strictly higher
        u_stat = (n * (above + 0.5 * p)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[a:a + step] = u_stat / (p.sum(axis=1) * n.sum(axis=1))
    return out


ADJUST_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}  # the methods ``adjust`` knows, as footnotes name them


def adjust(p_values, method: str = "holm") -> np.ndarray:
    """Adjusted P values of one family of tests: ``holm`` (Holm 1979, step-down, controls the family-wise
    error) or ``bh`` (Benjamini-Hochberg 1995, false discovery rate). Missing P values (NaN) are not
    members of the family and stay NaN."""
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    k = len(ok)
    if not k:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ps = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * ps))
    elif method == "bh":
        adj = np.minimum.accumulate(np.minimum(1.0, ps * k / np.arange(1, k + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown adjustment {method!r} (holm or bh)")
    out[order] = adj
    return out


# ------------------------------------------------------------------------------------------- calibration

def hosmer_lemeshow(y: np.ndarray, p: np.ndarray, groups: int = 10, held_out: bool = True) -> dict:
    """Hosmer-Lemeshow goodness of fit: patients sorted by predicted risk and cut into ``groups`` groups of
    (nearly) equal size; chi-square = sum over groups and both outcomes of (observed - expected)^2 / expected,
    with g degrees of freedom on held-out (test, out-of-fold) predictions and g - 2 on the patients the model
    was fitted on (Hosmer & Lemeshow, Applied Logistic Regression, 2013, sec. 5.2.2). A group whose expected
    count of an outcome is 0 while that outcome was observed makes the statistic infinite (P 0); where
    nothing was expected and nothing observed it adds 0. ``hl_degenerate`` counts such groups."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    g = min(groups, len(y))
    chi2, degenerate = 0.0, 0
    for idx in np.array_split(np.argsort(p, kind="stable"), g):
        for obs, exp in ((y[idx].sum(), p[idx].sum()), ((1 - y[idx]).sum(), (1 - p[idx]).sum())):
            if exp > 0:
                chi2 += (obs - exp) ** 2 / exp
            else:
                degenerate += 1
                chi2 = np.inf if obs > 0 else chi2
    df = g if held_out else max(g - 2, 1)
    return {"hl_chi2": float(chi2), "hl_df": int(df), "hl_p": float(stats.chi2.sf(chi2, df)), "hl_groups": int(g),
            "hl_degenerate": degenerate}


def separated(y: np.ndarray, X: np.ndarray, tol: float = 1e-7) -> bool:
    """Whether the classes are (quasi-)completely separated by the columns of ``X`` (include the intercept),
    so that the logistic maximum likelihood estimate does not exist (Albert & Anderson 1984). Konis's (2007)
    linear program: maximise sum_i s_i x_i'b subject to s_i x_i'b >= 0 for every row (s = +1 for events,
    -1 otherwise) and -1 <= b <= 1; a positive optimum is a direction that separates."""
    from scipy.optimize import linprog

    y = np.asarray(y, float)
    X = np.asarray(X, float).reshape(len(y), -1)
    A = (2 * y - 1)[:, None] * X
    scale = np.abs(A).max(axis=0)
    A = A / np.where(scale > 0, scale, 1)  # columns on one scale, so that tol means the same for each
    res = linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(len(y)), bounds=[(-1, 1)] * A.shape[1], method="highs")
    return bool(res.status == 0 and -res.fun > tol * len(y))


def _logit(p: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    return np.log(p / (1 - p))


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> dict:
    """Logistic recalibration (Cox 1958; Steyerberg, Clinical Prediction Models, 2019, ch. 15): the slope
    is b of logit P(y) = a + b logit(p); the intercept ("calibration in the large") is a of
    logit P(y) = a + logit(p) with the slope fixed at 1 (an offset). Ideal: slope 1, intercept 0."""
    import statsmodels.api as sm

    y, lp = np.asarray(y, float), _logit(p)
    out = {"cal_slope": np.nan, "cal_slope_se": np.nan, "cal_intercept": np.nan, "cal_intercept_se": np.nan,
           "cal_note": ""}
    if len(np.unique(y)) < 2:
        return {**out, "cal_note": "one class"}
    if np.ptp(lp) == 0:  # every patient the same risk (e.g. a saturated network): no slope to fit
        return {**out, "cal_note": "constant predictions"}
    if separated(y, np.column_stack([np.ones(len(y)), lp])):
        return {**out, "cal_note": "separation"}  # the risks order the classes perfectly: no finite slope
    try:
        f1 = sm.GLM(y, sm.add_constant(lp, has_constant="add"), family=sm.families.Binomial()).fit()
        f0 = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit()
    except Exception as e:  # noqa: BLE001 - a fit that does not converge: no estimate, said why
        return {**out, "cal_note": f"not fitted: {e}"}
    return {"cal_slope": float(f1.params[1]), "cal_slope_se": float(f1.bse[1]),
            "cal_intercept": float(f0.params[0]), "cal_intercept_se": float(f0.bse[0]), "cal_note": ""}


def spiegelhalter(y: np.ndarray, p: np.ndarray) -> dict:
    """Spiegelhalter's (1986) z test of calibration: z = sum (y - p)(1 - 2p) / sqrt(sum (1 - 2p)^2 p (1 - p)),
    standard normal under perfect calibration (two-sided P)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    den = float(np.sum((1 - 2 * p) ** 2 * p * (1 - p)))
    if den <= 0:
        return {"spiegelhalter_z": np.nan, "spiegelhalter_p": np.nan}
    z = float(np.sum((y - p) * (1 - 2 * p)) / np.sqrt(den))
    return {"spiegelhalter_z": z, "spiegelhalter_p": float(2 * stats.norm.sf(abs(z)))}


def calibration(y: np.ndarray, p: np.ndarray, held_out: bool, groups: int = 10) -> dict:
    """Hosmer-Lemeshow, calibration slope and intercept, and Spiegelhalter's z of one set's predictions."""
    return {**hosmer_lemeshow(y, p, groups, held_out), **calibration_slope_intercept(y, p), **spiegelhalter(y, p)}


def lr_test(y: np.ndarray, X_small: np.ndarray, X_big: np.ndarray) -> dict:
    """Likelihood-ratio test of two nested logistic regressions (each with an intercept, fitted by maximum
    likelihood without a penalty): 2 (ll_big - ll_small) against chi-square with the difference in
    parameters as degrees of freedom. The small model's columns must lie in the big model's span."""
    import statsmodels.api as sm

    y = np.asarray(y, float)
    big = sm.add_constant(np.asarray(X_big, float).reshape(len(y), -1), has_constant="add")
    if separated(y, big):  # the maximum likelihood does not exist: a chi-square of it would be meaningless
        return {"lr_chi2": np.nan, "lr_df": np.nan, "lr_p": np.nan, "lr_note": "separation"}
    fits = []
    for X in (X_small, X_big):
        X = np.asarray(X, float).reshape(len(y), -1)
        X = sm.add_constant(X, has_constant="add")
        fits.append((sm.GLM(y, X, family=sm.families.Binomial()).fit(), np.linalg.matrix_rank(X)))
    (f0, r0), (f1, r1) = fits
    stat = max(0.0, 2 * (f1.llf - f0.llf))
    df = int(r1 - r0)
    return {"lr_chi2": float(stat), "lr_df": df, "lr_p": float(stats.chi2.sf(stat, df)) if df > 0 else np.nan,
            "lr_note": ""}
