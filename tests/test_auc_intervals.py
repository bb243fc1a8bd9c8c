"""AUC intervals and the paired AUC test of issue 29 against independent computations: the Hanley-McNeil
variance in its Q1/Q2 form and Newcombe's closed form; the score interval's endpoints as the roots of its
quartic (numpy) and of its defining equation; the logit interval by hand from ``delong``; the BCa interval
from a plain resampling loop with scikit-learn AUCs; the permutation test against all 2^6 swaps; the
degenerate AUC = 1; clustered = unclustered with one image per patient; the dispatcher's defaults; seeds."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from ccgrade import stats

Z95 = 1.959963984540054


def sample(seed: int, n_pos: int = 6, n_neg: int = 10, shift: float = 1.0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    return y, shift * y + rng.standard_normal(len(y))


def clustered_sample(seed: int, n_patients: int = 12):
    rng = np.random.default_rng(seed)
    yp = (np.arange(n_patients) % 3 == 0).astype(int)
    k = rng.integers(2, 5, n_patients)
    pid = np.repeat(np.arange(n_patients), k)
    s = yp[pid] + rng.standard_normal(n_patients)[pid] * 0.7 + rng.standard_normal(len(pid)) * 0.7
    return yp[pid], s, pid


def test_hanley_mcneil_variance_matches_its_q1_q2_form_and_newcombes_closed_form():
    for theta, m, n in [(0.8, 10, 15), (0.55, 6, 10), (0.97, 40, 60)]:
        q1, q2 = theta / (2 - theta), 2 * theta ** 2 / (1 + theta)
        hm = (theta * (1 - theta) + (m - 1) * (q1 - theta ** 2) + (n - 1) * (q2 - theta ** 2)) / (m * n)
        assert stats.hanley_mcneil_variance(theta, m, n) == pytest.approx(hm, rel=1e-13)
        big_n = (m + n) / 2  # Newcombe: theta (1 - theta) ((2N - 1) - (3N - 3) / ((2 - theta)(1 + theta))) / (mn)
        nc = theta * (1 - theta) * ((2 * big_n - 1) - (3 * big_n - 3) / ((2 - theta) * (1 + theta))) / (m * n)
        assert stats.hanley_mcneil_variance(theta, m, n, newcombe=True) == pytest.approx(nc, rel=1e-13)
    # a point worked by hand: theta 0.5, 1 positive and 1 negative -> 0.25 (a single Bernoulli pair)
    assert stats.hanley_mcneil_variance(0.5, 1, 1) == 0.25


def quartic_roots(a_hat: float, m: int, n: int, z: float, newcombe: bool = False) -> np.ndarray:
    """Real roots in [0, 1] of (a_hat - t)^2 (2 - t)(1 + t) m n = z^2 t (1 - t)[(2 - t)(1 + t) + p (1 - t)(1 + t)
    + q t (2 - t)], the score equation with both sides multiplied by (2 - t)(1 + t) m n."""
    p = q = (m + n) / 2 - 1 if newcombe else None
    p, q = (m - 1 if p is None else p), (n - 1 if q is None else q)
    P = np.polynomial.Polynomial
    t = P([0, 1])
    lhs = (a_hat - t) ** 2 * (2 - t) * (1 + t) * (m * n)
    rhs = z ** 2 * t * (1 - t) * ((2 - t) * (1 + t) + p * (1 - t) * (1 + t) + q * t * (2 - t))
    r = (lhs - rhs).roots()
    r = np.real(r[np.abs(np.imag(r)) < 1e-9])
    return np.sort(r[(r >= -1e-12) & (r <= 1 + 1e-12)])


@pytest.mark.parametrize("seed, newcombe", [(0, False), (1, False), (2, True), (3, True)])
def test_score_interval_endpoints_solve_the_defining_equation(seed, newcombe):
    y, s = sample(seed)
    a, lo, hi = stats.auc_interval_score(y, s, newcombe=newcombe)
    assert a == pytest.approx(roc_auc_score(y, s), abs=1e-12) and 0 < lo < a < hi < 1
    for t in (lo, hi):  # |A - theta| = z sqrt(V(theta)) at both ends
        assert abs((a - t) ** 2 - Z95 ** 2 * stats.hanley_mcneil_variance(t, 6, 10, newcombe)) < 1e-12
    roots = quartic_roots(a, 6, 10, Z95, newcombe)
    assert roots.min() == pytest.approx(lo, abs=1e-9) and roots.max() == pytest.approx(hi, abs=1e-9)


def test_logit_interval_by_hand_from_delong():
    y, s = sample(4, 15, 25)
    (a,), cov = stats.delong(y, s)
    n_eff = a * (1 - a) / cov[0, 0]
    x = n_eff * a
    centre = np.log((x + 0.5) / (n_eff - x + 0.5))
    half = Z95 * np.sqrt(1 / (x + 0.5) + 1 / (n_eff - x + 0.5))
    expected = (a, 1 / (1 + np.exp(-(centre - half))), 1 / (1 + np.exp(-(centre + half))))
    assert stats.auc_interval_logit(y, s) == pytest.approx(expected, abs=1e-12)
    # without Haldane's halves the effective counts give the delta-method interval exactly
    se_logit = np.sqrt(cov[0, 0]) / (a * (1 - a))
    assert np.sqrt(1 / x + 1 / (n_eff - x)) == pytest.approx(se_logit, rel=1e-12)
    # and with many patients the halves no longer matter
    y, s = sample(5, 2000, 3000)
    (a,), cov = stats.delong(y, s)
    lo, hi = [1 / (1 + np.exp(-(np.log(a / (1 - a)) + k * Z95 * np.sqrt(cov[0, 0]) / (a * (1 - a))))) for k in (-1, 1)]
    assert stats.auc_interval_logit(y, s)[1:] == pytest.approx((lo, hi), abs=2e-4)


def test_bca_matches_a_plain_resampling_loop():
    y, s, pid = clustered_sample(6)
    n_boot, level = 300, 0.9
    a, lo, hi = stats.auc_interval_bca(y, s, pid, level=level, n_boot=n_boot, seed=11)
    # the same patient-level, stratified resamples as cluster_bootstrap draws them, AUCs by scikit-learn
    ids = np.unique(pid)
    yp = np.array([y[pid == i][0] for i in ids])
    strata = [np.flatnonzero(yp == 1), np.flatnonzero(yp == 0)]
    rng = np.random.default_rng(11)
    draws = []
    for _ in range(n_boot):
        pick = np.concatenate([st[rng.integers(0, len(st), len(st))] for st in strata])
        units = np.concatenate([np.flatnonzero(pid == ids[i]) for i in pick])
        draws.append(roc_auc_score(y[units], s[units]))
    draws = np.array(draws)
    z0 = sps.norm.ppf((np.sum(draws < a) + 0.5 * np.sum(draws == a)) / n_boot)
    jack = np.array([roc_auc_score(y[pid != i], s[pid != i]) for i in ids])
    d = jack.mean() - jack
    acc = np.sum(d ** 3) / (6 * np.sum(d ** 2) ** 1.5)
    zq = sps.norm.ppf([(1 - level) / 2, (1 + level) / 2])
    q = sps.norm.cdf(z0 + (z0 + zq) / (1 - acc * (z0 + zq)))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(draws, q)), abs=1e-12)
    assert a == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("clustered", [False, True])
def test_auc_one_is_finite_and_of_positive_width(clustered):
    if clustered:
        y, s, pid = clustered_sample(7)
        s = y * 10.0 + s
    else:
        (y, s), pid = sample(8, shift=10.0), None
    for method in ("logit", "score"):
        a, lo, hi = stats.auc_interval(y, s, pid, method=method)
        assert a == 1.0 and hi == 1.0 and 0.3 < lo < 0.99, (method, lo)
    assert stats.auc_interval(y, s, pid, method="wald")[1:] == (1.0, 1.0)  # the documented failure
    # score at AUC 1: (1 - theta)^2 = z^2 V(theta), V with the patients' counts when clustered
    m, n = (4, 8) if clustered else (6, 10)
    for newcombe in (True, False):
        lo = stats.auc_interval_score(y, s, pid, newcombe=newcombe)[1]
        assert abs((1 - lo) ** 2 - Z95 ** 2 * stats.hanley_mcneil_variance(lo, m, n, newcombe)) < 1e-12
    # mirrored: AUC 0
    a, lo, hi = stats.auc_interval(y, -s, pid, method="score")
    assert a == 0.0 and lo == 0.0 and 0.01 < hi < 0.7


def test_clustered_score_uses_the_design_effect():
    y, s, pid = clustered_sample(9)
    a, lo, hi = stats.auc_interval_score(y, s, pid)
    deff = max(1.0, stats.clustered_auc(y, s, pid)[1][0, 0] / stats.delong(y, s)[1][0, 0])
    assert deff > 1
    m, n = int(y.sum()), int((1 - y).sum())
    for t in (lo, hi):
        assert abs((a - t) ** 2 - Z95 ** 2 * deff * stats.hanley_mcneil_variance(t, m, n, newcombe=True)) < 1e-12
    assert hi - lo > stats.auc_interval_score(y, s)[2] - stats.auc_interval_score(y, s)[1]


@pytest.mark.parametrize("method", sorted(stats.AUC_INTERVALS))
def test_clustered_equals_unclustered_with_one_image_per_patient(method):
    y, s = sample(10)
    plain = stats.auc_interval(y, s, None, method=method, n_boot=200)
    for pid in (np.arange(len(y)) * 3 + 100, np.arange(len(y))[::-1]):  # one image per patient
        assert stats.auc_interval(y, s, pid, method=method, n_boot=200) == pytest.approx(plain, abs=1e-12)
        if method == "bca":  # the resamples follow the patients' sorted labels: the same draws in that order only
            break


def test_dispatcher_defaults_and_names():
    y, s = sample(12)
    sig = inspect.signature(stats.auc_interval).parameters
    assert (sig["clusters"].default, sig["method"].default, sig["level"].default, sig["n_boot"].default,
            sig["seed"].default) == (None, stats.AUC_INTERVAL_DEFAULT, 0.95, 2000, 0)
    assert stats.AUC_INTERVAL_DEFAULT in stats.AUC_INTERVALS
    assert set(stats.AUC_INTERVALS) == {"wald", "logit", "score", "score_hm", "bca"}
    assert stats.auc_interval(y, s, method="score") == stats.auc_interval_score(y, s, newcombe=True)
    assert stats.auc_interval(y, s, method="score_hm") == stats.auc_interval_score(y, s, newcombe=False)
    assert stats.auc_interval(y, s) == stats.auc_interval(y, s, method=stats.AUC_INTERVAL_DEFAULT)
    assert stats.auc_interval(y, s, method="wald") == pytest.approx(stats.auc_ci(y, s), abs=0)
    assert stats.auc_interval(y, s, method="score", level=0.99)[1] < stats.auc_interval(y, s, method="score")[1]
    with pytest.raises(ValueError, match="unknown AUC interval"):
        stats.auc_interval(y, s, method="exact")
    psig = inspect.signature(stats.paired_auc_test).parameters
    assert psig["method"].default == stats.PAIRED_TEST_DEFAULT in ("delong", "permutation")
    with pytest.raises(ValueError, match="unknown paired AUC test"):
        stats.paired_auc_test(y, s, s, method="bootstrap")


def brute_force_p(y, a, b, pid, ranks):
    """All 2^patients swaps of the two models' scores (or normalised ranks) within patients, AUCs by
    scikit-learn."""
    if ranks:
        a, b = sps.rankdata(a) / len(a), sps.rankdata(b) / len(b)
    ids = np.unique(pid)
    obs = abs(roc_auc_score(y, a) - roc_auc_score(y, b))
    hits = 0
    for sw in itertools.product([False, True], repeat=len(ids)):
        f = np.isin(pid, ids[np.array(sw)])
        d = roc_auc_score(y, np.where(f, b, a)) - roc_auc_score(y, np.where(f, a, b))
        hits += abs(d) >= obs - 1e-12
    return hits / 2 ** len(ids)


@pytest.mark.parametrize("images, swap, seed", [(1, "ranks", 20), (1, "scores", 20), (2, "ranks", 20),
                                               (2, "scores", 20), (3, "ranks", 20), (3, "scores", 20)])
def test_permutation_p_against_all_swaps(images, swap, seed):
    rng = np.random.default_rng(seed)
    yp = np.array([1, 1, 1, 0, 0, 0])
    pid = np.repeat(np.arange(6), images)
    a = yp[pid] * 0.8 + rng.standard_normal(len(pid))
    b = 0.6 * a + 0.8 * rng.standard_normal(len(pid))
    if images == 3:  # coarse scores: ties within and between the models
        a, b = np.round(a), np.round(b)
    y, cl = yp[pid], (pid if images > 1 else None)
    r = stats.paired_auc_test(y, a, b, cl, method="permutation", n_perm=64, swap=swap)
    assert r["exact"] and r["n_perm"] == 64 and 0 < r["p_value"] < 1
    assert r["p_value"] == pytest.approx(brute_force_p(y, a, b, pid, swap == "ranks"), abs=1e-15)
    assert r["difference"] == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    # Monte Carlo swaps (fewer than 64): seeded, and near the exact P
    mc = stats.paired_auc_test(y, a, b, cl, method="permutation", n_perm=40, seed=5, swap=swap)
    assert not mc["exact"] and abs(mc["p_value"] - r["p_value"]) < 0.25


def test_paired_test_delong_is_delong_test_and_identical_models():
    y, a, = sample(14, 15, 25)
    b = a + np.random.default_rng(1).standard_normal(len(a))
    t = stats.paired_auc_test(y, a, b, method="delong")
    assert t["p_value"] == stats.delong_test(y, a, b)["p_value"] and t["method"] == "delong"
    assert stats.paired_auc_test(y, a, a, method="permutation")["p_value"] == 1.0


def test_seeded_determinism():
    y, s, pid = clustered_sample(15, 20)
    b = s + np.random.default_rng(2).standard_normal(len(s))
    assert stats.auc_interval(y, s, pid, method="bca", n_boot=300, seed=4) == \
        stats.auc_interval(y, s, pid, method="bca", n_boot=300, seed=4)
    assert stats.auc_interval(y, s, pid, method="bca", n_boot=300, seed=4) != \
        stats.auc_interval(y, s, pid, method="bca", n_boot=300, seed=5)
    p1 = stats.paired_auc_test(y, s, b, pid, method="permutation", n_perm=500, seed=4)
    assert p1 == stats.paired_auc_test(y, s, b, pid, method="permutation", n_perm=500, seed=4)
    assert not p1["exact"] and 0 < p1["p_value"] <= 1


def test_swap_differences_are_linear_in_the_signs():
    """The permutation's shortcut (each swap pattern a dot product) against swapping and re-scoring, on
    clusters that mix both classes and on tied scores."""
    rng = np.random.default_rng(16)
    y = (rng.random(60) < 0.4).astype(int)
    pid = rng.integers(0, 15, 60)
    a = np.round(y + rng.standard_normal(60), 1)
    b = np.round(0.5 * a + rng.standard_normal(60), 1)
    _, inv = np.unique(pid, return_inverse=True)
    w = stats._swap_weights(y, a, b, inv)
    for _ in range(20):
        sw = rng.random(inv.max() + 1) < 0.5
        f = sw[inv]
        direct = roc_auc_score(y, np.where(f, b, a)) - roc_auc_score(y, np.where(f, a, b))
        assert (1 - 2 * sw) @ w / (2 * y.sum() * (1 - y).sum()) == pytest.approx(direct, abs=1e-12)
