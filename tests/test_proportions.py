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
    assert m["proportion_ci_method"] == pr.WILSON and "bootstrap" in m["f1_ci_method"]
    assert m["f1_ci_low"] < m["f1"] < m["f1_ci_high"]
    # one image per patient: the clustered metrics are the patient-level ones (F1's too, the patients drawn in
    # the same order; named otherwise they sort otherwise, and the same stream draws other resamples)
    c = pr.binary_metrics(y, call, np.arange(60), n_boot=500)
    assert {k: v for k, v in c.items() if k != "proportion_ci_method"} == {
        k: v for k, v in m.items() if k != "proportion_ci_method"}
    assert c["proportion_ci_method"] == pr.CLUSTERED
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
