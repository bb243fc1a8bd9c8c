"""Issue 29, item 9: the pre-flight says when a split's test patients are too few for a usable interval."""

from __future__ import annotations

import pytest
from statsmodels.stats.proportion import proportion_confint

from ccgrade.plan import design
from conftest import repo_config


@pytest.mark.parametrize("events", [4, 10, 25, 60])
def test_the_width_is_wilsons(events):
    lo, hi = proportion_confint(0.8 * events, events, method="wilson")
    assert design.wilson_width(events) == pytest.approx(hi - lo, abs=1e-9)


def test_a_51_patient_cohort_with_cuis_split_is_warned_with_the_design_that_fits():
    """The audit's case: 51 patients, Cui's 8:1:1 split leaves 5 test patients (2 events)."""
    cfg = repo_config()
    cfg["training"]["studies"] = {"cui": cfg["training"]["studies"]["cui"]}
    cfg["fusion"]["enabled"] = False
    probs = design.design_problems(cfg, 51, 21, {"A": (51, 21)})
    assert len(probs) == 1 and probs[0].level == "warning" and probs[0].scope == "study"
    assert "split scheme cui: its test set holds about 5 patients (2 high grade, 3 low)" in probs[0].message
    assert "kind: kfold, k: 5" in probs[0].fix and "centre" not in probs[0].fix  # (one centre: no LOCO advice)


def test_a_large_enough_design_is_not_warned_and_a_tiny_cohort_is_told_to_add_patients():
    cfg = repo_config()
    cfg["training"]["studies"] = {"dai": cfg["training"]["studies"]["dai"]}
    cfg["fusion"]["enabled"] = False
    assert design.design_problems(cfg, 400, 160, {"A": (400, 160)}) == []  # 5-fold pooled: every patient once
    (tiny,) = design.design_problems(cfg, 12, 5, {"A": (6, 2), "B": (6, 3)})
    assert "add patients" in tiny.fix


def test_out_of_fold_deep_folds_the_training_set_cannot_fill_are_an_error_before_any_job():
    """fusion.deep.oof_folds: the li scheme (7:3) trains on 70%; 20 high-grade patients leave 14 to deal."""
    cfg = repo_config()
    cfg["training"]["studies"] = {"dai": cfg["training"]["studies"]["dai"]}
    cfg["fusion"]["deep"] = {**cfg["fusion"]["deep"], "oof_folds": 5}
    assert design.oof_problems(cfg, 400, 20) == []
    (err,) = design.oof_problems(cfg, 60, 5)  # 5 high grade, 3.5 of them training: 3 folds at most
    assert err.level == "error" and "oof_folds 5" in err.message and "about 3 of the smaller" in err.message
    assert "oof_folds to 3 or fewer" in err.fix and err in design.design_problems(cfg, 60, 5, {"A": (60, 5)})
    cfg["fusion"]["deep"]["oof_folds"] = 0
    assert design.oof_problems(cfg, 60, 5) == []
