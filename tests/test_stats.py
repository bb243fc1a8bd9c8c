"""Statistics against independent computations: sklearn/Mann-Whitney AUC, a naive O(m n) DeLong,
statsmodels' McNemar, sklearn's per-class metrics; Obuchowski's clustered AUC variance against a literal
loop over its formula, a hand-worked case, DeLong (one image per patient) and a simulation; the cluster
bootstrap against a plain loop; Holm and Benjamini-Hochberg against statsmodels; calibration slope,
intercept, Hosmer-Lemeshow and Spiegelhalter against direct computations; the LR test against sklearn fits."""

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
    # the 2 x 2 table counted by hand from the paired calls, not from the function's own counts
    table = [[sum(x and z for x, z in zip(a, b)), sum(x and not z for x, z in zip(a, b))],
             [sum(z and not x for x, z in zip(a, b)), sum(not x and not z for x, z in zip(a, b))]]
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


# ------------------------------------------------------------------------------------- clustered AUC

def literal_obuchowski(y, s, c):
    """Obuchowski (1997) eqs. 3-5 written out with loops: psi over every positive-negative unit pair."""
    y, s, c = map(np.asarray, (y, s, c))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    M, N = len(pos), len(neg)
    psi = lambda a, b: 1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0  # noqa: E731
    theta = sum(psi(a, b) for a in pos for b in neg) / (M * N)
    v10 = {a: sum(psi(a, b) for b in neg) / N for a in pos}
    v01 = {b: sum(psi(a, b) for a in pos) / M for b in neg}
    clusters = sorted(set(c))
    A = {i: sum(v10[a] for a in pos if c[a] == i) - sum(1 for a in pos if c[a] == i) * theta for i in clusters}
    B = {i: sum(v01[b] for b in neg if c[b] == i) - sum(1 for b in neg if c[b] == i) * theta for i in clusters}
    I10 = sum(1 for i in clusters if any(c[a] == i for a in pos))
    I01 = sum(1 for i in clusters if any(c[b] == i for b in neg))
    I = len(clusters)
    S10 = I10 / ((I10 - 1) * M) * sum(A[i] ** 2 for i in clusters)
    S01 = I01 / ((I01 - 1) * N) * sum(B[i] ** 2 for i in clusters)
    S11 = I / (I - 1) * sum(A[i] * B[i] for i in clusters)
    return theta, S10 / M + S01 / N + 2 * S11 / (M * N)


@pytest.mark.parametrize("seed", range(4))
def test_clustered_variance_with_one_image_per_patient_is_delong(seed):
    y, a, b = data(seed, n=70, ties=seed % 2 == 1)
    au, cov = stats.delong(y, np.vstack([a, b]))
    au2, cov2 = stats.clustered_auc(y, np.vstack([a, b]), [f"P{i:03d}" for i in range(len(y))])
    np.testing.assert_allclose(au2, au, atol=1e-12)
    np.testing.assert_allclose(cov2, cov, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_clustered_variance_equals_its_formula_written_out(seed):
    rng = np.random.default_rng(seed)
    c = np.repeat(np.arange(12), rng.integers(1, 5, 12))
    y = (rng.random(12) < 0.5).astype(int)[c]
    y[c == 0], y[c == 1] = 1, 0  # both classes
    if seed == 2:  # a patient with both positive and negative units (lesion-level labels): S11 matters
        y[np.flatnonzero(c == 3)[:1]] = 1 - y[np.flatnonzero(c == 3)[:1]]
    s = np.round(y + rng.normal(0, 1, len(y)) + rng.normal(0, 1, 12)[c], 1)
    theta, var = literal_obuchowski(y, s, c)
    au, cov = stats.clustered_auc(y, s, c)
    assert au[0] == pytest.approx(theta, abs=1e-12) and cov[0, 0] == pytest.approx(var, abs=1e-12)


def test_clustered_variance_by_hand():
    """Two high-grade patients (images 0.9, 0.4 and 0.8) and two low-grade (0.5, 0.1 and 0.3).
    psi rows (positives x negatives 0.5, 0.1, 0.3): 0.9 -> 1 1 1; 0.4 -> 0 1 1; 0.8 -> 1 1 1; AUC = 8/9.
    V10 = 1, 2/3, 1; V01 (per negative) = 2/3, 1, 1. Cluster sums minus m_i AUC: positives
    A = (1 + 2/3 - 16/9, 1 - 8/9) = (-1/9, 1/9); negatives B = (2/3 + 1 - 16/9, 1 - 8/9) = (-1/9, 1/9).
    S10 = 2/(1 * 3) * (1/81 + 1/81) = 4/243, S01 the same, S11 = 0 (no patient holds both classes);
    var = S10/3 + S01/3 = 8/729."""
    y = [1, 1, 1, 0, 0, 0]
    s = [0.9, 0.4, 0.8, 0.5, 0.1, 0.3]
    c = ["a", "a", "b", "c", "c", "d"]
    au, cov = stats.clustered_auc(y, s, c)
    assert au[0] == pytest.approx(8 / 9, abs=1e-15) and cov[0, 0] == pytest.approx(8 / 729, abs=1e-15)
    # DeLong treating the six images as independent: S10 = var(1, 2/3, 1) = 1/27, S01 = 1/27 -> 2/81
    assert stats.delong(y, s)[1][0, 0] == pytest.approx(2 / 81, abs=1e-15)


def test_clustered_variance_matches_the_spread_over_simulated_cohorts():
    """Images of a patient share a random effect: across simulated cohorts the clustered variance estimates
    the AUC's true sampling variance, while DeLong (images as independent) underestimates it."""
    rng = np.random.default_rng(0)
    aucs, v_cl, v_dl = [], [], []
    for _ in range(400):
        c = np.repeat(np.arange(30), 8)
        yp = np.r_[np.ones(12, int), np.zeros(18, int)]
        y = yp[c]
        s = 0.8 * y + rng.normal(0, 1, 30)[c] + rng.normal(0, 0.3, len(c))
        au, cov = stats.clustered_auc(y, s, c)
        aucs.append(au[0])
        v_cl.append(cov[0, 0])
        v_dl.append(stats.delong(y, s)[1][0, 0])
    true = np.var(aucs, ddof=1)
    assert np.mean(v_cl) == pytest.approx(true, rel=0.2)
    assert np.mean(v_dl) < 0.5 * true


def test_cluster_bootstrap_equals_a_plain_loop_over_the_same_resamples():
    rng = np.random.default_rng(4)
    c = np.repeat(np.arange(10), 3)
    y = np.r_[np.ones(4, int), np.zeros(6, int)][c]
    a = np.round(y + rng.normal(0, 1, 30), 1)
    b = np.round(0.5 * y + rng.normal(0, 1, 30), 1)
    n_boot, seed = 200, 9
    r = np.random.default_rng(seed)
    want = []
    pos_cl, neg_cl = np.arange(4), np.arange(4, 10)  # the strata, in the function's order: positives, negatives
    for _ in range(n_boot):
        pick = np.r_[pos_cl[r.integers(0, 4, 4)], neg_cl[r.integers(0, 6, 6)]]
        idx = np.concatenate([np.flatnonzero(c == i) for i in pick])
        want.append([roc_auc_score(y[idx], a[idx]), roc_auc_score(y[idx], b[idx])])
    want = np.array(want)
    got = stats.cluster_bootstrap(y, np.vstack([a, b]), c, n_boot=n_boot, seed=seed)
    np.testing.assert_allclose(got["draws"], want, atol=1e-12)
    np.testing.assert_allclose(got["low"], np.quantile(want, 0.025, axis=0), atol=1e-12)
    np.testing.assert_allclose(got["diff_high"][1], np.quantile(want[:, 1] - want[:, 0], 0.975), atol=1e-12)


def test_cluster_bootstrap_with_mixed_clusters_equals_ranking_each_resample():
    # clusters holding both grades form their own stratum; a resample with one class only is skipped; the
    # vectorised weighted U must equal ranking each expanded resample, draw for draw
    rng = np.random.default_rng(11)
    c = np.repeat(np.arange(12), rng.integers(1, 5, 12))
    y = (rng.random(len(c)) < 0.4).astype(int)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=len(c)) + y, 0)  # heavy ties
    n_boot, seed = 300, 3
    ids = np.unique(c)
    has_pos = np.array([y[c == i].max() == 1 for i in ids])
    has_neg = np.array([y[c == i].min() == 0 for i in ids])
    strata = [ids[has_pos & ~has_neg], ids[~has_pos & has_neg], ids[has_pos & has_neg]]
    r, want = np.random.default_rng(seed), []
    for _ in range(n_boot):
        pick = np.concatenate([st[r.integers(0, len(st), len(st))] for st in strata if len(st)])
        idx = np.concatenate([np.flatnonzero(c == i) for i in pick])
        if y[idx].min() != y[idx].max():
            want.append(roc_auc_score(y[idx], s[idx]))
    got = stats.cluster_bootstrap(y, s, c, n_boot=n_boot, seed=seed)
    np.testing.assert_allclose(got["draws"][:, 0], want, atol=1e-12)


def test_clustered_comparison_with_one_image_per_patient_is_delongs_test():
    y, a, b = data(5, n=80)
    t1, t2 = stats.delong_test(y, a, b), stats.delong_test(y, a, b, clusters=np.arange(80))
    assert t2["p_value"] == pytest.approx(t1["p_value"], abs=1e-12)


# ----------------------------------------------------------------------------------------- multiplicity

@pytest.mark.parametrize("seed", range(3))
def test_holm_and_bh_match_statsmodels(seed):
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(seed).random(9) ** 2
    p[3] = p[5]  # a tie
    for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        np.testing.assert_allclose(stats.adjust(p, ours), multipletests(p, method=theirs)[1], atol=1e-15)
    with_nan = np.r_[p[:4], np.nan, p[4:]]
    np.testing.assert_allclose(np.delete(stats.adjust(with_nan), 4), multipletests(p, method="holm")[1], atol=1e-15)
    assert np.isnan(stats.adjust(with_nan)[4])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.2 -> 4 x 0.01 = 0.04, 3 x 0.03 = 0.09, max(0.09, 2 x 0.04) = 0.09, 0.2
    np.testing.assert_allclose(stats.adjust([0.04, 0.01, 0.2, 0.03]), [0.09, 0.04, 0.2, 0.09], atol=1e-15)


# ------------------------------------------------------------------------------------------- calibration

def test_hosmer_lemeshow_degrees_of_freedom_and_degenerate_groups():
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05])
    e1, e2 = 0.65, 2.7  # expected events in the low- and high-risk halves; observed 1 and 2
    want = (1 - e1) ** 2 / e1 + (3 - (4 - e1)) ** 2 / (4 - e1) + (2 - e2) ** 2 / e2 + (2 - (4 - e2)) ** 2 / (4 - e2)
    held, fit = stats.hosmer_lemeshow(y, p, 2, held_out=True), stats.hosmer_lemeshow(y, p, 4, held_out=False)
    assert held["hl_chi2"] == pytest.approx(want) and held["hl_df"] == 2
    assert held["hl_p"] == pytest.approx(sps.chi2.sf(want, 2))
    assert fit["hl_df"] == 2 and fit["hl_groups"] == 4
    # a group predicted at exactly 0 risk with an event in it: infinite, counted, P 0 (not skipped)
    d = stats.hosmer_lemeshow(np.array([1, 0, 0, 1]), np.array([0.0, 0.0, 0.7, 0.8]), 2)
    assert d["hl_degenerate"] == 1 and np.isinf(d["hl_chi2"]) and d["hl_p"] == 0


def test_calibration_slope_and_intercept_are_the_recalibration_mles():
    from scipy.optimize import minimize

    rng = np.random.default_rng(2)
    lp = rng.normal(0, 1.5, 300)
    y = (rng.random(300) < 1 / (1 + np.exp(-(0.3 + 0.6 * lp)))).astype(float)
    p = 1 / (1 + np.exp(-lp))
    nll = lambda ab, off=0: -np.sum(y * (ab[0] + ab[1] * lp) - np.log1p(np.exp(ab[0] + ab[1] * lp)))  # noqa: E731
    ab = minimize(nll, [0, 1], method="BFGS", options={"gtol": 1e-10}).x
    a0 = minimize(lambda a: nll([a[0], 1.0]), [0.0], method="BFGS", options={"gtol": 1e-10}).x[0]
    got = stats.calibration_slope_intercept(y, p)
    assert got["cal_slope"] == pytest.approx(ab[1], abs=1e-5) and got["cal_intercept"] == pytest.approx(a0, abs=1e-5)
    perfect = stats.calibration_slope_intercept(y, 1 / (1 + np.exp(-(0.3 + 0.6 * lp))))
    assert abs(perfect["cal_slope"] - 1) < 0.35 and abs(perfect["cal_intercept"]) < 0.35
    # a saturated network gives every patient the same risk (an external centre's shift can): no slope, said why
    same = stats.calibration_slope_intercept(np.array([0, 1, 1]), np.array([1.0, 1.0, 1.0]))
    assert np.isnan(same["cal_slope"]) and same["cal_note"] == "constant predictions"


def test_spiegelhalter_z_is_the_standardised_brier_score():
    """Spiegelhalter (1986): z = (B - E0[B]) / sqrt(Var0[B]), B the Brier sum, under perfect calibration."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, 200)
    y = (rng.random(200) < np.clip(p + 0.1, 0, 1)).astype(float)
    b = np.sum((y - p) ** 2)
    e0, v0 = np.sum(p * (1 - p)), np.sum((1 - 2 * p) ** 2 * p * (1 - p))
    got = stats.spiegelhalter(y, p)
    assert got["spiegelhalter_z"] == pytest.approx((b - e0) / np.sqrt(v0), abs=1e-12)
    assert got["spiegelhalter_p"] == pytest.approx(2 * sps.norm.sf(abs((b - e0) / np.sqrt(v0))), abs=1e-12)


def test_lr_test_matches_unpenalised_sklearn_fits():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(6)
    X = rng.normal(size=(150, 3))
    y = (rng.random(150) < 1 / (1 + np.exp(-(X[:, 0] + 0.4 * X[:, 2])))).astype(int)

    def ll(cols):
        m = LogisticRegression(C=np.inf, max_iter=10000, tol=1e-12).fit(X[:, cols], y)
        q = m.predict_proba(X[:, cols])[:, 1]
        return np.sum(y * np.log(q) + (1 - y) * np.log(1 - q))

    stat = 2 * (ll([0, 1, 2]) - ll([0]))
    got = stats.lr_test(y, X[:, [0]], X)
    assert got["lr_df"] == 2 and got["lr_chi2"] == pytest.approx(stat, abs=1e-6)
    assert got["lr_p"] == pytest.approx(sps.chi2.sf(stat, 2), abs=1e-6)


def test_separation_check_agrees_with_a_diverging_unpenalised_fit():
    """Konis's LP says 'separated' exactly when the unpenalised log-likelihood can be driven to 0 (the
    coefficients grow without bound as the penalty goes): checked by sklearn fits with a vanishing penalty."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(11)
    base = rng.normal(size=(40, 2))
    y_sep = (base @ [1.0, -2.0] > 0.1).astype(int)  # a plane separates the classes
    y_mix = (rng.random(40) < 1 / (1 + np.exp(-(base @ [1.0, -2.0])))).astype(int)
    x1 = np.array([1, 2, 3, 3, 4, 5.0])[:, None]  # quasi-complete: the tie at 3 holds both classes
    cases = [(base, y_sep, True), (base, y_mix, False), (x1, np.array([0, 0, 0, 1, 1, 1]), True),
             (np.array([1, 2, 4, 3, 5, 6.0])[:, None], np.array([0, 0, 0, 1, 1, 1]), False)]
    for X, y, want in cases:
        norms = [np.linalg.norm(LogisticRegression(C=c, max_iter=100000, tol=1e-10).fit(X, y).coef_) for c in (1e2, 1e6)]
        assert (norms[1] > 1.5 * norms[0]) == want  # diverges exactly when separated (else the same MLE twice)
        assert stats.separated(y, np.column_stack([np.ones(len(y)), X])) == want
    # and the estimates that would diverge are left blank, said why
    got = stats.lr_test(y_sep, base[:, :1], base)
    assert np.isnan(got["lr_p"]) and got["lr_note"] == "separation"
    lp = base @ [1.0, -2.0]
    cal = stats.calibration_slope_intercept(y_sep, 1 / (1 + np.exp(-lp)))
    assert np.isnan(cal["cal_slope"]) and cal["cal_note"] == "separation"
    assert stats.calibration_slope_intercept(y_mix, 1 / (1 + np.exp(-lp)))["cal_note"] == ""


@pytest.mark.parametrize("seed", [0, 1])
def test_unpaired_auc_test_is_the_z_test_of_two_independent_delong_variances(seed):
    """Internal vs external AUC: independent samples, so the difference's variance is the sum of the two
    DeLong variances (written out with placement values here), and the bootstrap CI of the difference
    resamples each sample on its own."""
    y_a, a, _ = data(seed, n=90)
    rng = np.random.default_rng(seed + 10)
    y_b = (rng.random(70) < 0.5).astype(int)
    b = y_b * 0.3 + rng.normal(size=70)  # a weaker model on the other cohort
    r = stats.unpaired_auc_test(y_a, a, y_b, b, n_boot=500, seed=3)
    (auc_a,), va = naive_delong(y_a, a)
    (auc_b,), vb = naive_delong(y_b, b)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y_a, a)) and r["auc_b"] == pytest.approx(roc_auc_score(y_b, b))
    z = (auc_a - auc_b) / np.sqrt(va[0, 0] + vb[0, 0])
    assert r["z"] == pytest.approx(z) and r["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z)))
    assert r["diff_boot_low"] < r["difference"] < r["diff_boot_high"]
    # the two samples' bootstraps are independent: the same seeds give the same interval, a swap negates it
    assert stats.unpaired_auc_test(y_a, a, y_b, b, n_boot=500, seed=3)["diff_boot_low"] == r["diff_boot_low"]
    s = stats.unpaired_auc_test(y_b, b, y_a, a, n_boot=500, seed=3)
    assert s["z"] == pytest.approx(-r["z"]) and s["p_value"] == pytest.approx(r["p_value"])
    # one sample against itself: no difference
    same = stats.unpaired_auc_test(y_a, a, y_a, a, n_boot=200)
    assert same["difference"] == 0 and same["p_value"] == pytest.approx(1.0)
