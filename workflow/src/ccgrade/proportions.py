"""95% intervals for the proportions the study tables print (accuracy, sensitivity, specificity, precision/PPV,
NPV) and for F1; a foundation module (numpy and scipy only).

- ``wilson``: the Wilson score interval of k successes in n (Wilson 1927; Newcombe 1998, method 3), the
  interval for a proportion of patients: it keeps its coverage at small n and near 0 or 1, where the Wald
  interval fails;
- ``clopper_pearson``: the exact (beta) interval (Clopper & Pearson 1934), for the failure analysis's
  error rates;
- ``clustered_wilson``: a proportion of units clustered in patients (images, slices): Wilson's interval
  on the effective sample size n / deff (Kish 1965; Korn & Graubard 1998), where the design effect deff
  is the ratio of the ratio-estimator (cluster-robust) variance of the proportion to the binomial one
  (Genders et al., Radiology 2012; 265:910-916). One unit per patient gives deff = 1 exactly, so then
  it *is* Wilson's interval. Chosen over the patient-level cluster bootstrap because it is closed-form
  and deterministic, and it keeps Wilson's behaviour at 0 and 1, where a percentile bootstrap collapses
  to a point. Where the design effect cannot be estimated (proportion 0 or 1, or one patient) it is taken
  as the units per patient (every patient's units agreeing, what such data show): n_eff = patients;
- ``f1_bootstrap``: the seeded percentile bootstrap of F1 over patients (whole patients resampled with
  their units, within strata of patients holding positives only, negatives only, or both, as
  ``stats.cluster_bootstrap`` does for the AUC); the option, no longer the default (below);
- ``f1_wilson``: F1 = 2J / (1 + J) is an increasing function of the Jaccard index J = TP / (TP + FP + FN),
  and J *is* a proportion: of the units that the label or the call makes positive (TP + FP + FN of them,
  each unit counted once), the share that both do. Given their number, TP is binomial, so Wilson's
  interval of J (its clustered form with patients), mapped through 2J / (1 + J), is an interval for F1
  that keeps Wilson's behaviour at 0 and 1; its delta-method variance, 4 TP (FP + FN) m / (m + TP)^4 with
  m = TP + FP + FN, is exactly the multinomial delta-method variance of F1 (Takahashi et al., Appl Intell
  2022; 52:4961-4972, extended to the binary F1). No doubled count of TP, so no dependence to ignore.
  The default (``F1_INTERVAL_DEFAULT``), chosen by ``benchmarks/bench_f1_coverage.py`` (docs/statistics.md,
  "F1 intervals"): with test sets drawn from a population it covered 0.935-0.960 at 16-100 patients, clustered
  or not, where the class-stratified bootstrap covered 0.805-0.900 (it holds the classes' counts fixed, so it
  misses the prevalence's share of F1's variance); with the classes' counts fixed by design it is conservative
  (0.975-0.988), the bootstrap then 0.898-0.943;
- ``f1_interval``: the bootstrap's interval, except where it collapses to a point (or is undefined) while
  F1 is defined: within every stratum every patient then contributes the same counts, e.g. at 5 test
  patients, and the resamples see no sampling variability that the binomial model of J sees; there
  ``f1_wilson`` is given, and the method string says so. The option ``f1_method="bootstrap"``;
- ``binary_metrics``: from labels, 0/1 calls and optional clusters, every metric with
  ``<metric>_ci_low``/``<metric>_ci_high`` and the methods' names.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: the intervals' names, as tables and their footnotes give them
WILSON = "Wilson score"
CLUSTERED = "Wilson score on the patient-clustered effective sample size (n / design effect)"
METRICS = ("accuracy", "sensitivity", "specificity", "precision", "npv", "f1")
#: F1's default interval (``f1_wilson``), and the bootstrap's fallback where it collapses
JACCARD = "Wilson score interval of the Jaccard index J = TP / (TP + FP + FN), mapped to F1 = 2J / (1 + J)"
#: the clustered form's suffix to ``JACCARD``
JACCARD_CLUSTERED = " on the patient-clustered effective sample size"
#: ``binary_metrics``' F1 intervals: ``f1_wilson`` (the default) or ``f1_interval`` (the bootstrap)
F1_INTERVALS = ("jaccard_wilson", "bootstrap")
F1_INTERVAL_DEFAULT = "jaccard_wilson"


def bootstrap_name(n_boot: int, seed: int = 0) -> str:
    return f"patient-level bootstrap percentile ({n_boot:,} resamples, class-stratified, seed {seed})"


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must lie between 0 and 1, not {level}")
    return float(stats.norm.ppf(1 - (1 - level) / 2))


def _counts(k: float, n: float) -> None:
    if not (n >= 0 and 0 <= k <= n):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def wilson(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` (either may be a non-integer effective count);
    (NaN, NaN) when n is 0. The bounds are exactly 0 at k = 0 and 1 at k = n."""
    _counts(k, n)
    if n == 0:
        return np.nan, np.nan
    z = _z(level)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, float(centre - half))
    hi = 1.0 if k == n else min(1.0, float(centre + half))
    return lo, hi


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of ``k`` successes in ``n`` (beta quantiles; 0 and 1 at the edges);
    (NaN, NaN) when n is 0."""
    _counts(k, n)
    if n == 0:
        return np.nan, np.nan
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def design_effect(x: np.ndarray, clusters: np.ndarray) -> float:
    """The design effect of the proportion of ``x`` (0/1 per unit) with units clustered in ``clusters``:
    the ratio-estimator variance I/(I - 1) sum_i (a_i - p m_i)^2 / M^2 (a_i successes among cluster i's
    m_i units, M = sum m_i, I clusters) over the binomial variance with the same small-sample factor,
    p (1 - p) / (M - 1); at least 1 (units are never worth more than independent ones). 1 exactly with
    one unit per cluster; M / I where it cannot be estimated (p is 0 or 1, or a single cluster)."""
    x = np.asarray(x, float).ravel()
    ids, inv = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
    big_m, n_cl = len(x), len(ids)
    if n_cl == big_m:
        return 1.0
    a = np.bincount(inv, weights=x, minlength=n_cl)
    m = np.bincount(inv, minlength=n_cl).astype(float)
    p = a.sum() / big_m
    if n_cl < 2 or p in (0.0, 1.0):
        return big_m / n_cl
    v_cluster = n_cl / (n_cl - 1) * float(np.sum((a - p * m) ** 2)) / big_m ** 2
    v_binomial = p * (1 - p) / (big_m - 1)
    return max(1.0, v_cluster / v_binomial)


def clustered_wilson(x: np.ndarray, clusters: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Wilson interval of the proportion of ``x`` (0/1 per unit) on the effective sample size
    n / ``design_effect``; (NaN, NaN) without units."""
    x = np.asarray(x, float).ravel()
    if len(np.asarray(clusters).ravel()) != len(x):
        raise ValueError(f"{len(np.asarray(clusters).ravel())} cluster labels for {len(x)} units")
    if not len(x):
        return np.nan, np.nan
    n_eff = len(x) / design_effect(x, clusters)
    return wilson(float(x.mean()) * n_eff, n_eff, level)


def proportion_ci(x: np.ndarray, clusters: np.ndarray | None = None, level: float = 0.95
                  ) -> tuple[float, float, float]:
    """(proportion, low, high) of ``x`` (0/1 per unit): Wilson's, or ``clustered_wilson`` with
    ``clusters``; NaNs without units."""
    x = np.asarray(x, float).ravel()
    if not len(x):
        return np.nan, np.nan, np.nan
    if clusters is None:
        return (float(x.mean()), *wilson(float(x.sum()), len(x), level))
    return (float(x.mean()), *clustered_wilson(x, clusters, level))


def _f1(tp, fp, fn):
    tp, fp, fn = (np.asarray(v, float) for v in (tp, fp, fn))
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)


def f1_bootstrap(y: np.ndarray, call: np.ndarray, clusters: np.ndarray | None = None, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of F1 = 2 TP / (2 TP + FP + FN) over ``n_boot`` seeded resamples of patients
    (``clusters``; each unit its own without), stratified as ``stats.cluster_bootstrap`` (patients with
    positives only, negatives only, both); (NaN, NaN) when no resample defines F1."""
    y, call = np.asarray(y, int).ravel(), np.asarray(call, int).ravel()
    c = np.arange(len(y)) if clusters is None else np.asarray(clusters).ravel()
    if not len(y):
        return np.nan, np.nan
    ids, inv = np.unique(c, return_inverse=True)
    n_cl = len(ids)
    per = [np.bincount(inv, weights=w, minlength=n_cl) for w in
           ((y == 1) & (call == 1), (y == 0) & (call == 1), (y == 1) & (call == 0), y == 1, y == 0)]
    tp, fp, fn, pos, neg = per
    strata = [np.flatnonzero((pos > 0) & (neg == 0)), np.flatnonzero((pos == 0) & (neg > 0)),
              np.flatnonzero((pos > 0) & (neg > 0))]
    rng = np.random.default_rng(seed)
    counts = np.zeros(n_boot * n_cl)
    rows = np.arange(n_boot)[:, None] * n_cl
    for st in strata:
        if len(st):
            pick = st[rng.integers(0, len(st), (n_boot, len(st)))]
            counts += np.bincount((rows + pick).ravel(), minlength=n_boot * n_cl)
    counts = counts.reshape(n_boot, n_cl)
    draws = _f1(counts @ tp, counts @ fp, counts @ fn)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return np.nan, np.nan
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def f1_wilson(y: np.ndarray, call: np.ndarray, clusters: np.ndarray | None = None, level: float = 0.95
              ) -> tuple[float, float]:
    """F1's interval from the Jaccard index J = TP / (TP + FP + FN): Wilson's interval of the TPs among the
    units with a positive label or call (``clustered_wilson`` with ``clusters``, the patient of each unit),
    mapped through F1 = 2J / (1 + J); (NaN, NaN) where F1 is undefined (no such unit). The bounds are
    exactly 0 with no TP and 1 with neither FP nor FN."""
    y, call = np.asarray(y, int).ravel(), np.asarray(call, int).ravel()
    flagged = (y == 1) | (call == 1)
    tp = ((y == 1) & (call == 1))[flagged]
    if clusters is None:
        lo, hi = wilson(float(tp.sum()), len(tp), level)
    else:
        lo, hi = clustered_wilson(tp, np.asarray(clusters).ravel()[flagged], level)
    return float(2 * lo / (1 + lo)), float(2 * hi / (1 + hi))


def f1_interval(y: np.ndarray, call: np.ndarray, clusters: np.ndarray | None = None, n_boot: int = 2000,
                level: float = 0.95, seed: int = 0) -> tuple[float, float, str]:
    """(low, high, method) of F1: ``f1_bootstrap``'s percentile interval where it has a positive width,
    else (it collapsed to one value, or no resample defined F1) ``f1_wilson``'s, NaN only where F1 itself
    is undefined (no positive label and no positive call)."""
    lo, hi = f1_bootstrap(y, call, clusters, n_boot, level, seed)
    if hi > lo:
        return lo, hi, bootstrap_name(n_boot, seed)
    lo, hi = f1_wilson(y, call, clusters, level)
    if lo != lo:
        return lo, hi, bootstrap_name(n_boot, seed)
    where = "" if clusters is None else JACCARD_CLUSTERED
    return lo, hi, f"{JACCARD}{where} (the {bootstrap_name(n_boot, seed)} collapsed to one value)"


def jaccard_name(clusters: np.ndarray | None = None) -> str:
    """``f1_wilson``'s name, with ``JACCARD_CLUSTERED`` when there are clusters."""
    return JACCARD + ("" if clusters is None else JACCARD_CLUSTERED)


def binary_metrics(y: np.ndarray, call: np.ndarray, clusters: np.ndarray | None = None, level: float = 0.95,
                   n_boot: int = 2000, seed: int = 0, f1: bool = True, f1_method: str = F1_INTERVAL_DEFAULT
                   ) -> dict:
    """Accuracy, sensitivity, specificity, precision (PPV), NPV and F1 of 0/1 ``call`` against 0/1 labels
    ``y`` (class 1 positive), each with ``<metric>_ci_low``/``<metric>_ci_high``; the counts (tp, fp, fn,
    tn); and the methods (``proportion_ci_method``: Wilson, or its clustered form with ``clusters``, the
    patient of each unit; ``f1_ci_method``: ``f1_method`` "jaccard_wilson" (default), ``f1_wilson``'s
    Jaccard-Wilson interval, clustered with ``clusters``; "bootstrap", ``f1_interval``'s, the patient
    bootstrap of ``n_boot`` resamples (``seed``) or, where it collapses, the Jaccard-Wilson interval; skipped
    with ``f1`` False). A metric whose denominator is empty is NaN, with NaN bounds."""
    y, call = np.asarray(y).astype(int).ravel(), np.asarray(call).astype(int).ravel()
    if len(call) != len(y):
        raise ValueError(f"{len(call)} calls for {len(y)} labels")
    if not set(np.unique(np.r_[y, call])) <= {0, 1}:
        raise ValueError("labels and calls must be 0/1")
    if f1_method not in F1_INTERVALS:
        raise ValueError(f"f1_method must be one of {F1_INTERVALS}, not {f1_method!r}")
    cl = None if clusters is None else np.asarray(clusters).ravel()
    if cl is not None and len(cl) != len(y):
        raise ValueError(f"{len(cl)} cluster labels for {len(y)} units")
    out: dict = {}
    for name, sel, hit in (("accuracy", np.ones(len(y), bool), call == y), ("sensitivity", y == 1, call == 1),
                           ("specificity", y == 0, call == 0), ("precision", call == 1, y == 1),
                           ("npv", call == 0, y == 0)):
        p, lo, hi = proportion_ci(hit[sel], None if cl is None else cl[sel], level)
        out.update({name: p, f"{name}_ci_low": lo, f"{name}_ci_high": hi})
    tp, fp = int(((y == 1) & (call == 1)).sum()), int(((y == 0) & (call == 1)).sum())
    fn, tn = int(((y == 1) & (call == 0)).sum()), int(((y == 0) & (call == 0)).sum())
    if not f1:
        lo, hi, f1_name = np.nan, np.nan, ""
    elif f1_method == "bootstrap":
        lo, hi, f1_name = f1_interval(y, call, cl, n_boot, level, seed)
    else:
        lo, hi, f1_name = (*f1_wilson(y, call, cl, level), jaccard_name(cl))
    out.update(f1=float(_f1(tp, fp, fn)), f1_ci_low=lo, f1_ci_high=hi, tp=tp, fp=fp, fn=fn, tn=tn,
               proportion_ci_method=WILSON if cl is None else CLUSTERED, f1_ci_method=f1_name)
    return out
