"""Statistics against independent computations: sklearn/Mann-Whitney AUC, a naive O(m n) DeLong,
statsmodels' McNemar, sklearn's per-class metrics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from ccgrade import stats


def naive_delong(y, scores):
    """DeLong et al. (1988) literally: placement values from all positive-negative pairs."""
    y = np.asarray(y)
    s = np.atleast_2d(scores)
    k = len(s)
    aucs, v10, v01 = [], [], []
    for r in range(k):
        x, z = s[r][y == 1], s[r][y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))  # per positive
        v01.append(psi.mean(axis=0))  # per negative
    v10, v01 = np.array(v10), np.array(v01)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.array([[np.sum((v10[a] - aucs[a]) * (v10[b] - aucs[b])) / (m - 1) for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - aucs[a]) * (v01[b] - aucs[b])) / (n - 1) for b in range(k)] for a in range(k)])
    return np.array(aucs), s10 / m + s01 / n


def data(seed, n=80, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    a = y * 0.8 + rng.normal(size=n)
    b = 0.6 * a + y * 0.3 + rng.normal(size=n)
    if ties:  # coarse scores, as from a few-level classifier or rounded probabilities
        a, b = np.round(a), np.round(b * 2) / 2
    return y, a, b


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, False), (3, True)])
def test_delong_matches_naive_and_sklearn(seed, ties):
    y, a, b = data(seed, ties=ties)
    aucs, cov = stats.delong(y, np.vstack([a, b]))
    ref_aucs, ref_cov = naive_delong(y, np.vstack([a, b]))
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    assert aucs[0] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    u = sps.mannwhitneyu(a[y == 1], a[y == 0]).statistic
    assert aucs[0] == pytest.approx(u / (y.sum() * (1 - y).sum()), abs=1e-12)
    t = stats.delong_test(y, a, b)
    var = ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1]
    z = (ref_aucs[0] - ref_aucs[1]) / np.sqrt(var)
    assert t["z"] == pytest.approx(z, abs=1e-6) and t["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z)), abs=1e-6)


def test_delong_ci_and_identical_models():
    y, a, _ = data(5, n=200)
    auc, lo, hi = stats.auc_ci(y, a)
    ref_auc, ref_cov = naive_delong(y, a)
    se = np.sqrt(ref_cov[0, 0])
    assert (lo, hi) == pytest.approx((ref_auc[0] - 1.959963984540054 * se, ref_auc[0] + 1.959963984540054 * se), abs=1e-9)
    t = stats.delong_test(y, a, a)
    assert t["p_value"] == 1.0 and t["difference"] == 0.0
    # perfectly separating scores: AUC 1, CI clipped at 1
    assert stats.auc_ci(y, y + 0.0)[2] == 1.0


def test_bootstrap_ci_is_seeded_and_covers():
    y, a, _ = data(7, n=150)
    ci1 = stats.bootstrap_auc_ci(y, a, n_boot=500, seed=3)
    assert ci1 == stats.bootstrap_auc_ci(y, a, n_boot=500, seed=3)
    auc, lo, hi = stats.auc_ci(y, a)
    assert ci1[0] < auc < ci1[1] and abs((ci1[1] - ci1[0]) - (hi - lo)) < 0.05


def test_auc_input_errors():
    with pytest.raises(ValueError, match="both classes"):
        stats.delong([1, 1, 1], [0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="3 values for 2 labels"):
        stats.delong([0, 1], [0.1, 0.2, 0.3])


@pytest.mark.parametrize("seed", range(4))
def test_mcnemar_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(60) < 0.7
    b = rng.random(60) < 0.55
    r = stats.mcnemar(a, b)
    table = [[r["both_right"], r["a_right_b_wrong"]], [r["a_wrong_b_right"], r["both_wrong"]]]
    assert r["p_exact"] == pytest.approx(sm_mcnemar(table, exact=True).pvalue, abs=1e-12)
    ref = sm_mcnemar(table, exact=False, correction=True)
    assert r["chi2_cc"] == pytest.approx(ref.statistic, abs=1e-12) and r["p_chi2_cc"] == pytest.approx(ref.pvalue, abs=1e-12)


def test_class_metrics_match_sklearn():
    y, a, _ = data(11, n=120)
    p = 1 / (1 + np.exp(-a))
    rows = {r["class"]: r for r in stats.class_metrics(y, p)}
    pred = (p >= 0.5).astype(int)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=[0, 1])
    for i, c in enumerate(("low", "high")):
        assert rows[c]["precision"] == pytest.approx(prec[i]) and rows[c]["sensitivity"] == pytest.approx(rec[i])
        assert rows[c]["f1"] == pytest.approx(f1[i]) and rows[c]["n"] == sup[i]
    # one class's specificity is the other's sensitivity
    assert rows["low"]["specificity"] == pytest.approx(rows["high"]["sensitivity"])
    assert rows["low"]["auc"] == rows["high"]["auc"] == pytest.approx(roc_auc_score(y, p))


def test_bootstrap_ci_equals_a_plain_loop_over_the_same_resamples():
    from sklearn.metrics import roc_auc_score

    y, a, _ = data(11, n=60)
    a = np.round(a, 1)  # ties
    n_boot, seed = 300, 5
    rng = np.random.default_rng(seed)
    pos, neg = a[y == 1], a[y == 0]
    ip = rng.integers(0, len(pos), (n_boot, len(pos)))  # the function draws all positives, then all negatives
    iq = rng.integers(0, len(neg), (n_boot, len(neg)))
    ref = [roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos[i], neg[j]]) for i, j in zip(ip, iq)]
    want = np.quantile(ref, [0.025, 0.975])
    assert stats.bootstrap_auc_ci(y, a, n_boot=n_boot, seed=seed) == pytest.approx(tuple(want), abs=1e-12)
