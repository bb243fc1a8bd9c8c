"""Smoothed calibration (rms::val.prob's lowess, ICI/E50/E90/Emax) and net benefit with intervals and
interventions avoided, each against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest

from ccgrade.evaluate import decision


def lowess_iter0(x, y, at, frac=2 / 3):
    """Cleveland's lowess without robustness iterations, written out: for each point, a weighted linear fit
    over the ceil(frac n) nearest predictions with tricube weights."""
    n = len(x)
    r = int(np.ceil(frac * n))
    out = []
    for x0 in at:
        d = np.abs(x - x0)
        h = np.sort(d)[r - 1]
        w = np.clip(1 - (d / h) ** 3, 0, None) ** 3 if h > 0 else (d == 0).astype(float)
        X = np.column_stack([np.ones(n), x - x0])
        beta = np.linalg.lstsq(X * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
        out.append(beta[0])
    return np.clip(np.array(out), 0, 1)


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, 300)
    y = (rng.uniform(size=300) < p ** 1.5).astype(int)  # over-predicts: a known miscalibration
    return y, p


def test_the_smoothed_curve_is_lowess_without_robustness_iterations(sample):
    y, p = sample
    at = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(decision.smoothed_calibration(y, p, at), lowess_iter0(p, y, at), atol=1e-9)


def test_calibration_errors_summarise_the_distance_to_the_curve(sample):
    y, p = sample
    d = np.abs(p - lowess_iter0(p, y, p))
    e = decision.calibration_errors(y, p)
    assert e["ici"] == pytest.approx(d.mean(), abs=1e-9) and e["e50"] == pytest.approx(np.median(d), abs=1e-9)
    assert e["e90"] == pytest.approx(np.quantile(d, 0.9), abs=1e-9) and e["emax"] == pytest.approx(d.max(), abs=1e-9)
    assert e["ici"] > 0.05  # p against p^1.5: clearly miscalibrated


def test_the_band_holds_the_curve_and_is_seeded(sample):
    y, p = sample
    grid = np.linspace(0.1, 0.9, 9)
    a = decision.calibration_band(y, p, grid, n_boot=100, seed=1)
    b = decision.calibration_band(y, p, grid, n_boot=100, seed=1)
    assert a.equals(b) and ((a["low"] <= a["observed"] + 1e-9) & (a["observed"] <= a["high"] + 1e-9)).all()


def test_net_benefit_intervals_and_interventions_avoided(sample):
    y, p = sample
    t = np.array([0.2, 0.4, 0.6])
    r = decision.net_benefit_ci(y, p, t, n_boot=200, seed=0)
    n = len(y)
    for i, ti in enumerate(t):
        tp, fp = ((p >= ti) & (y == 1)).sum(), ((p >= ti) & (y == 0)).sum()
        nb = tp / n - fp / n * ti / (1 - ti)
        prev = y.mean()
        nb_all = prev - (1 - prev) * ti / (1 - ti)
        assert r.loc[i, "net_benefit"] == pytest.approx(nb)
        assert r.loc[i, "interventions_avoided_per_100"] == pytest.approx((nb - nb_all) * (1 - ti) / ti * 100)
        assert r.loc[i, "nb_low"] <= nb <= r.loc[i, "nb_high"]
