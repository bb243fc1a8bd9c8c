"""Riley et al. (BMJ 2020) sample-size criteria for a binary outcome, as pmsampsize computes them."""

from __future__ import annotations

import math

import pytest

from ccgrade import samplesize


def test_the_papers_worked_example():
    """Riley et al. 2020 (and pmsampsize's example): R² 0.288, 24 parameters, prevalence 0.174 gives
    623 (shrinkage), 662 (optimism), 221 (overall risk): 662 patients, shrinkage 0.905."""
    r = samplesize.riley_binary(0.174, 24, r2_cs=0.288)
    assert r["criteria"] == {"shrinkage": 623, "optimism": 662, "overall_risk": 221}
    assert r["n"] == 662 and r["shrinkage"] == pytest.approx(0.905, abs=5e-4) and not r["assumed_r2"]
    assert r["events"] == math.ceil(662 * 0.174) and r["epp"] == pytest.approx(662 * 0.174 / 24)


def test_the_largest_r2_and_the_conservative_default():
    phi = 0.4
    by_hand = 1 - math.exp(2 * (0.4 * math.log(0.4) + 0.6 * math.log(0.6)))
    assert samplesize.max_r2_cs(phi) == pytest.approx(by_hand)
    r = samplesize.riley_binary(phi, 10)
    assert r["assumed_r2"] and r["r2_cs"] == pytest.approx(0.15 * by_hand)
    # criterion 1 by hand at that R²
    assert r["criteria"]["shrinkage"] == math.ceil(10 / ((0.9 - 1) * math.log(1 - r["r2_cs"] / 0.9)))


def test_nonsense_is_refused():
    with pytest.raises(ValueError):
        samplesize.riley_binary(0.0, 5)
    with pytest.raises(ValueError):
        samplesize.riley_binary(0.3, 0)
