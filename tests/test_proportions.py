"""The proportions' intervals (ccgrade.proportions): checked against statsmodels, Newcombe's published values,
scikit-learn, a cluster-robust regression and a plain loop over the same bootstrap resamples."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.metrics import f1_score, precision_score, recall_score
from statsmodels.stats.proportion import proportion_confint

from ccgrade import proportions as pr

GRID = [(0, 1), (1, 1), (0, 20), (1, 29), (3, 11), (5, 10), (15, 148), (81, 263), (29, 29), (199, 200)]


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("k,n", GRID)
def test_wilson_and_clopper_pearson_are_statsmodels(k, n, level):
    want = proportion_confint(k, n, alpha=1 - level, method="wilson")
    assert pr.wilson(k, n, level) == pytest.approx(want, abs=1e-12)
    lo, hi = proportion_confint(k, n, alpha=1 - level, method="beta")
    assert pr.clopper_pearson(k, n, level) == pytest.approx((0.0 if k == 0 else lo, 1.0 if k == n else hi), abs=1e-12)


@pytest.mark.parametrize("k,n,lo,hi", [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
                                       (1, 29, 0.0061, 0.1718)])
def test_wilson_gives_newcombes_published_values(k, n, lo, hi):
    """Newcombe (Stat Med 1998; 17:857-872), Table I, method 3 (score interval without continuity correction)."""
    got = pr.wilson(k, n)
    assert round(got[0], 4) == lo and round(got[1], 4) == hi


def test_edges_and_bad_counts():
    assert pr.wilson(0, 7)[0] == 0.0 and pr.wilson(7, 7)[1] == 1.0  # exactly, not a rounding error away
    assert np.isnan(pr.wilson(0, 0)).all() and np.isnan(pr.clopper_pearson(0, 0)).all()
    for k, n in ((3, 2), (-1, 4)):
        with pytest.raises(ValueError):
            pr.wilson(k, n)
    with pytest.raises(ValueError):
        pr.wilson(1, 2, level=1.5)
    assert np.isnan(pr.proportion_ci(np.zeros(0), np.zeros(0))).all()


def test_the_clustered_interval_is_wilsons_with_one_image_per_patient():
    rng = np.random.default_rng(0)
    for n in (1, 2, 9, 40):
        x = (rng.random(n) < 0.6).astype(int)
        ids = np.array([f"P{i}" for i in rng.permutation(n)])
        assert pr.design_effect(x, ids) == 1.0
        assert pr.clustered_wilson(x, ids) == pr.wilson(int(x.sum()), n)  # exactly equal


def test_the_design_effect_is_the_cluster_robust_variance_over_the_binomial_one():
    """The ratio estimator's variance is the intercept-only regression's cluster-robust one (statsmodels,
    its default small-sample factor G/(G-1) (N-1)/(N-K)); the binomial variance its ordinary one."""
    rng = np.random.default_rng(1)
    m = rng.integers(1, 8, 25)  # 25 patients, 1-7 images each
    cl = np.repeat(np.arange(25), m)
    x = (rng.random(len(cl)) < rng.beta(2, 1, 25)[cl]).astype(float)
    ones = np.ones((len(x), 1))
    robust = sm.OLS(x, ones).fit(cov_type="cluster", cov_kwds={"groups": cl}).bse[0] ** 2
    plain = sm.OLS(x, ones).fit().bse[0] ** 2
    assert pr.design_effect(x, cl) == pytest.approx(max(1.0, robust / plain), rel=1e-10)
    assert pr.design_effect(x, cl) > 1.0
    n_eff = len(x) / pr.design_effect(x, cl)
    assert pr.clustered_wilson(x, cl) == pytest.approx(pr.wilson(x.mean() * n_eff, n_eff), abs=1e-15)


def test_copies_of_a_patients_image_add_no_information():
    """m identical images per patient: n_eff = M (I - 1) / (M - 1), about the I patients, not the M images;
    all successes (or none): n_eff is the patients exactly."""
    x_pat = np.r_[np.ones(7), np.zeros(5)]
    x, cl = np.repeat(x_pat, 6), np.repeat(np.arange(12), 6)
    assert len(x) / pr.design_effect(x, cl) == pytest.approx(72 * 11 / 71, rel=1e-12)
    assert pr.design_effect(np.ones(72), cl) == 6.0 and pr.design_effect(np.zeros(72), cl) == 6.0
    assert pr.clustered_wilson(np.ones(72), cl) == pr.wilson(12, 12)
    assert pr.design_effect(np.r_[1, 0, 1], np.zeros(3)) == 3.0  # one patient: one observation


def test_the_clustered_interval_keeps_its_coverage_where_the_naive_one_loses_it():
    """400 cohorts of 30 patients x 6 images, a patient's images correlated (beta-binomial, ICC 0.4, true
    proportion 0.75): the clustered interval covers about 95%, Wilson on the images far less."""
    rng = np.random.default_rng(7)
    cl = np.repeat(np.arange(30), 6)
    hit = np.zeros(2)
    for _ in range(400):
        x = (rng.random(180) < rng.beta(1.125, 0.375, 30)[cl]).astype(int)
        for j, (lo, hi) in enumerate((pr.clustered_wilson(x, cl), pr.wilson(x.sum(), 180))):
            hit[j] += lo <= 0.75 <= hi
    assert hit[0] / 400 >= 0.92 and hit[1] / 400 <= 0.85


def test_binary_metrics_are_scikit_learns_with_wilson_intervals():
    rng = np.random.default_rng(2)
    y = (rng.random(60) < 0.4).astype(int)
    call = np.where(rng.random(60) < 0.75, y, 1 - y)
    m = pr.binary_metrics(y, call, n_boot=500)
    assert m["precision"] == pytest.approx(precision_score(y, call)) and m["f1"] == pytest.approx(f1_score(y, call))
    assert m["sensitivity"] == pytest.approx(recall_score(y, call))
    assert m["specificity"] == pytest.approx(recall_score(1 - y, 1 - call))
    assert m["npv"] == pytest.approx(precision_score(1 - y, 1 - call))
    for name, k, n in (("sensitivity", m["tp"], m["tp"] + m["fn"]), ("specificity", m["tn"], m["tn"] + m["fp"]),
                       ("precision", m["tp"], m["tp"] + m["fp"]), ("npv", m["tn"], m["tn"] + m["fn"]),
                       ("accuracy", m["tp"] + m["tn"], 60)):
        assert (m[f"{name}_ci_low"], m[f"{name}_ci_high"]) == pr.wilson(k, n), name
    assert m["proportion_ci_method"] == pr.WILSON and m["f1_ci_method"] == pr.JACCARD == pr.jaccard_name()
    assert m["f1_ci_low"] < m["f1"] < m["f1_ci_high"]
    j_lo, j_hi = proportion_confint(m["tp"], m["tp"] + m["fp"] + m["fn"], method="wilson")
    assert (m["f1_ci_low"], m["f1_ci_high"]) == pytest.approx((2 * j_lo / (1 + j_lo), 2 * j_hi / (1 + j_hi)), abs=1e-12)
    boot = pr.binary_metrics(y, call, n_boot=500, f1_method="bootstrap")
    assert (boot["f1_ci_low"], boot["f1_ci_high"]) == pr.f1_bootstrap(y, call, n_boot=500)
    assert boot["f1_ci_method"] == pr.bootstrap_name(500) and boot["f1"] == m["f1"]
    with pytest.raises(ValueError):
        pr.binary_metrics(y, call, f1_method="bca")
    # one image per patient: the clustered metrics are the patient-level ones (F1's too, its design effect 1;
    # the bootstrap's too, the patients drawn in the same order; named otherwise they sort otherwise, and the
    # same stream draws other resamples)
    for kw, got in (({}, m), ({"f1_method": "bootstrap"}, boot)):
        c = pr.binary_metrics(y, call, np.arange(60), n_boot=500, **kw)
        assert {k: v for k, v in c.items() if k not in ("proportion_ci_method", "f1_ci_method")} == {
            k: v for k, v in got.items() if k not in ("proportion_ci_method", "f1_ci_method")}
    assert c["proportion_ci_method"] == pr.CLUSTERED and c["f1_ci_method"] == pr.bootstrap_name(500)
    assert pr.binary_metrics(y, call, np.arange(60))["f1_ci_method"] == pr.JACCARD + pr.JACCARD_CLUSTERED
    named = pr.binary_metrics(y, call, np.array([f"P{i}" for i in range(60)]), n_boot=500)
    assert all(named[k] == m[k] for k in m if k.split("_")[0] in ("accuracy", "sensitivity", "specificity",
                                                                  "precision", "npv"))
    none = pr.binary_metrics(np.zeros(5, int), np.zeros(5, int))  # no positive: sensitivity, precision, F1 undefined
    assert np.isnan([none[k] for k in ("sensitivity", "sensitivity_ci_low", "precision", "f1", "f1_ci_low")]).all()
    assert none["specificity"] == 1.0 and none["npv_ci_high"] == 1.0
    with pytest.raises(ValueError):
        pr.binary_metrics([0, 1], [0, 2])


def test_the_f1_bootstrap_is_a_loop_over_the_same_resampled_patients():
    """The vectorised bootstrap equals scikit-learn's F1 on each resample, the patients drawn by the same
    seeded stream (per stratum: patients with positives only, negatives only, both), expanded to images."""
    rng = np.random.default_rng(4)
    m = rng.integers(1, 5, 20)
    cl = np.repeat(np.arange(20), m)
    y = np.where(np.arange(20) % 4 == 3, rng.integers(0, 2, 20), np.arange(20) % 2)[cl]  # some mixed patients
    call = np.where(rng.random(len(cl)) < 0.7, y, 1 - y)
    got = pr.f1_bootstrap(y, call, cl, n_boot=300, seed=5)
    pos = np.bincount(cl, weights=y == 1) > 0
    neg = np.bincount(cl, weights=y == 0) > 0
    strata = [np.flatnonzero(pos & ~neg), np.flatnonzero(~pos & neg), np.flatnonzero(pos & neg)]
    draw = np.random.default_rng(5)
    picks = [st[draw.integers(0, len(st), (300, len(st)))] for st in strata if len(st)]
    f1s = []
    for b in range(300):
        units = np.concatenate([np.flatnonzero(cl == p) for p in np.concatenate([pk[b] for pk in picks])])
        f1s.append(f1_score(y[units], call[units]))
    assert got == pytest.approx(tuple(np.quantile(f1s, [0.025, 0.975])), abs=1e-12)
    assert pr.f1_bootstrap(y, call, cl, n_boot=300, seed=5) == got  # seeded


def _wilson_by_hand(k, n, z=1.959963984540054):
    """Wilson (1927), written out: the roots in P of (k/n - P)^2 = z^2 P (1 - P) / n."""
    a, b, c = 1 + z * z / n, -(2 * k / n + z * z / n), (k / n) ** 2
    return (-b - np.sqrt(b * b - 4 * a * c)) / (2 * a), (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)


def test_five_patients_whose_bootstrap_collapses_get_the_jaccard_wilson_interval():
    """5 patients, 2 high grade, every one called high: each stratum's patients alike, so every resample has
    TP 2, FP 3 and the percentile interval is the point 4/7. The interval given, by default and by the
    bootstrap option's fallback alike, is Wilson's for J = 2/5, solved here from its quadratic, mapped through
    F1 = 2J / (1 + J): positive width, around 4/7."""
    y, call = np.array([1, 1, 0, 0, 0]), np.ones(5, int)
    lo_b, hi_b = pr.f1_bootstrap(y, call)
    assert lo_b == hi_b == pytest.approx(4 / 7)  # the collapse the issue forbids to print
    default = pr.binary_metrics(y, call)
    m = pr.binary_metrics(y, call, f1_method="bootstrap")
    assert (default["f1_ci_low"], default["f1_ci_high"]) == (m["f1_ci_low"], m["f1_ci_high"])
    assert default["f1_ci_method"] == pr.JACCARD
    assert m["f1"] == pytest.approx(4 / 7) and m["f1_ci_low"] < m["f1"] < m["f1_ci_high"]
    j_lo, j_hi = _wilson_by_hand(2, 5)
    assert (m["f1_ci_low"], m["f1_ci_high"]) == pytest.approx((2 * j_lo / (1 + j_lo), 2 * j_hi / (1 + j_hi)), abs=1e-12)
    j_lo, j_hi = proportion_confint(2, 5, method="wilson")  # J in (0.1176, 0.7693): F1 in (0.2105, 0.8696)
    assert (m["f1_ci_low"], m["f1_ci_high"]) == pytest.approx((2 * j_lo / (1 + j_lo), 2 * j_hi / (1 + j_hi)), abs=1e-12)
    assert (m["f1_ci_low"], m["f1_ci_high"]) == pytest.approx((0.2105, 0.8696), abs=5e-5)
    assert m["f1_ci_method"].startswith(pr.JACCARD) and "collapsed" in m["f1_ci_method"]
    # perfect calls: the bootstrap's point 1; Wilson's J interval for 2 of 2, mapped, reaches 1 exactly
    perfect = pr.binary_metrics(y, y, f1_method="bootstrap")
    assert perfect["f1_ci_method"].startswith(pr.JACCARD) and "collapsed" in perfect["f1_ci_method"]
    j_lo = _wilson_by_hand(2, 2)[0]
    assert (perfect["f1_ci_low"], perfect["f1_ci_high"]) == pytest.approx((2 * j_lo / (1 + j_lo), 1.0), abs=1e-12)
    assert perfect["f1_ci_high"] == 1.0 and perfect["f1_ci_low"] < 1.0


def test_a_bootstrap_that_does_not_collapse_is_kept_and_is_numpys():
    """5 patients, 2 high grade, one missed and one low grade called high (F1 = 1/2): the resamples differ,
    so the bootstrap option's interval stays the percentile bootstrap, recomputed here with numpy from the same
    seeded draws."""
    y, call = np.array([1, 1, 0, 0, 0]), np.array([1, 0, 1, 0, 0])
    m = pr.binary_metrics(y, call, n_boot=1000, seed=3, f1_method="bootstrap")
    draw = np.random.default_rng(3)
    pos, neg = draw.integers(0, 2, (1000, 2)), 2 + draw.integers(0, 3, (1000, 3))  # strata in the order drawn
    tp, fp = (pos == 0).sum(1), (neg == 2).sum(1)
    f1 = 2 * tp / (2 * tp + fp + (pos == 1).sum(1))
    assert (m["f1_ci_low"], m["f1_ci_high"]) == pytest.approx(tuple(np.quantile(f1, [0.025, 0.975])), abs=1e-12)
    assert m["f1_ci_low"] < m["f1"] == 0.5 < m["f1_ci_high"] and m["f1_ci_method"] == pr.bootstrap_name(1000, 3)


def test_the_jaccard_wilson_interval_has_the_multinomial_delta_method_variance():
    """Its delta-method variance (Wilson's J variance J (1 - J) / m through dF1/dJ = 2 / (1 + J)^2) is the
    multinomial one of F1 = 2 p11 / (2 p11 + p10 + p01) over the confusion matrix (Takahashi et al. 2022's
    method for the binary F1), the gradient taken numerically here; and its width shrinks as 1/sqrt(n)."""
    tp, fp, fn, tn = 30, 12, 9, 49
    n, counts = 100, np.array([tp, fp, fn, tn], float)
    p = counts / n
    f = lambda q: 2 * q[0] / (2 * q[0] + q[1] + q[2])  # noqa: E731
    grad = np.array([(f(p + h) - f(p - h)) / 2e-7 for h in np.eye(4) * 1e-7])
    var_multinomial = grad @ (np.diag(p) - np.outer(p, p)) @ grad / n
    m, j = tp + fp + fn, tp / (tp + fp + fn)
    var_jaccard = j * (1 - j) / m * (2 / (1 + j) ** 2) ** 2
    assert var_jaccard == pytest.approx(var_multinomial, rel=1e-6)
    assert var_jaccard == pytest.approx(4 * tp * (fp + fn) * m / (m + tp) ** 4, rel=1e-12)
    y = np.repeat([1, 0, 1, 0], counts.astype(int))
    call = np.repeat([1, 1, 0, 0], counts.astype(int))
    lo, hi = pr.f1_wilson(y, call)
    assert (hi - lo) / (2 * 1.959964) == pytest.approx(np.sqrt(var_multinomial), rel=0.05)  # close at n = 100
    big = pr.f1_wilson(np.repeat(y, 100), np.repeat(call, 100))
    assert (big[1] - big[0]) / (2 * 1.959964) == pytest.approx(np.sqrt(var_multinomial / 100), rel=0.005)


def test_the_collapsed_image_level_interval_is_clustered():
    """5 patients x 2 images, all called high: the image-level interval (the default, and the bootstrap's
    fallback) is Wilson's on J's effective sample size (10 images / design effect 2.25 here), the
    patient-level one's width, not the ten images'."""
    y, call, cl = np.repeat([1, 1, 0, 0, 0], 2), np.ones(10, int), np.repeat(np.arange(5), 2)
    default = pr.binary_metrics(y, call, cl)
    m = pr.binary_metrics(y, call, cl, f1_method="bootstrap")
    assert (default["f1_ci_low"], default["f1_ci_high"]) == (m["f1_ci_low"], m["f1_ci_high"])
    assert default["f1_ci_method"] == pr.JACCARD + pr.JACCARD_CLUSTERED
    n_eff = 10 / pr.design_effect(y, cl)
    assert n_eff == pytest.approx(40 / 9)
    j_lo, j_hi = pr.wilson(0.4 * n_eff, n_eff)
    assert (m["f1_ci_low"], m["f1_ci_high"]) == pytest.approx((2 * j_lo / (1 + j_lo), 2 * j_hi / (1 + j_hi)), abs=1e-12)
    assert "patient-clustered" in m["f1_ci_method"] and m["f1_ci_low"] < pr.f1_wilson(y, call)[0]


def test_f1_s_degenerate_samples():
    """No positive label and no positive call: F1 undefined, NaN interval (the method's name kept). No
    positive label but some positive calls: F1 = 0 (no TP can exist); its interval starts at 0 exactly."""
    none = pr.binary_metrics(np.zeros(5, int), np.zeros(5, int))
    assert np.isnan([none["f1"], none["f1_ci_low"], none["f1_ci_high"]]).all()
    assert none["f1_ci_method"] == pr.JACCARD
    none = pr.binary_metrics(np.zeros(5, int), np.zeros(5, int), np.arange(5), f1_method="bootstrap")
    assert np.isnan([none["f1_ci_low"], none["f1_ci_high"]]).all() and none["f1_ci_method"] == pr.bootstrap_name(2000)
    assert np.isnan(pr.f1_wilson(np.zeros(3, int), np.zeros(3, int))).all()
    assert np.isnan(pr.f1_interval(np.zeros(0, int), np.zeros(0, int))[:2]).all()
    hi = _wilson_by_hand(0, 5)[1]
    for method in pr.F1_INTERVALS:
        fp_only = pr.binary_metrics(np.zeros(5, int), np.ones(5, int), f1_method=method)
        assert fp_only["f1"] == 0.0 and fp_only["f1_ci_low"] == 0.0
        assert fp_only["f1_ci_high"] == pytest.approx(2 * hi / (1 + hi), abs=1e-12)
    assert not pr.binary_metrics(np.zeros(5, int), np.ones(5, int), f1=False)["f1_ci_method"]
