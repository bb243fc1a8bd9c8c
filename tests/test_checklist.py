"""The reporting checklist: every CLAIM item answered from the run or marked, and the run's numbers right."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ccgrade.report import checklist
from conftest import PHASES, tiny_config

PIDS = [f"P{i:03d}" for i in range(1, 21)]


def derived():
    cfg = copy.deepcopy(tiny_config())
    cfg["phases"] = list(PHASES)
    cfg["stack"]["phases"] = ["cmp", "np", "ep"]
    cfg["splits"]["require_phases"] = ["cmp"]
    cfg["radiomics"]["phase"] = "cmp"
    cfg["cohort"]["source"] = "sheet"
    return cfg


def fake_run(tmp_path, overlap=False):
    """A run's files: 20 patients (8 high), a 10/10 holdout, one study of two archs, error rates."""
    rng = np.random.default_rng(3)
    labels = np.array([1] * 8 + [0] * 12)
    cohort = pd.DataFrame({"patient_id": PIDS, "grade": np.where(labels == 1, 3, 1), "grade_group":
                           np.where(labels == 1, "high", "low"), "centre": ["A"] * 12 + ["B"] * 8,
                           "age": [60.0] * 19 + [np.nan], "sex": ["M", "F"] * 10})
    cohort.to_csv(tmp_path / "cohort.tsv", sep="\t", index=False)
    pd.DataFrame([{"patient_id": "P099", "stage": "ingest", "phase": "ep", "roi": "", "file": "x.dcm",
                   "reason": "localizer"}]).to_csv(tmp_path / "exclusions.csv", index=False)
    train, test = PIDS[::2], PIDS[1::2]
    if overlap:
        test = test + [train[0]]
    (tmp_path / "cui.json").write_text(json.dumps({"scheme": "cui", "kind": "holdout", "seed": 5, "n_patients": 20,
                                                   "excluded": [{"patient_id": "P099"}],
                                                   "folds": [{"train": train, "val": [], "test": test}]}))
    (tmp_path / "prov.json").write_text(json.dumps({
        "config_sha256": "a" * 64, "derived_config_sha256": "b" * 64, "git": {"commit": "c0ffee", "dirty": False},
        "python": "3.11.2", "packages": {"torch": "2.14.1", "pydicom": "3.0.1", "SimpleITK": "not installed"}}))
    cells, probs = [], {}
    for arch in ("resnet34", "se_resnet34"):
        d = tmp_path / arch
        d.mkdir()
        rows = []
        for i, pid in enumerate(PIDS):
            p = float(np.clip(0.3 + 0.25 * labels[i] + rng.normal(0, 0.2), 0.01, 0.99))
            for k in range(3):  # three images per patient
                rows.append({"patient_id": pid, "set": "test" if pid in test else "train", "label": labels[i],
                             "prob_high": float(np.clip(p + rng.normal(0, 0.05), 0, 1)), "source": "np",
                             "slice_index": k})
        pd.DataFrame(rows).to_csv(d / "predictions.tsv", sep="\t", index=False)
        (d / "meta.json").write_text(json.dumps({"selection": "best validation AUC (ties: lower validation loss)",
                                                 "input_shape": [1, 32, 32]}))
        probs[arch] = pd.DataFrame(rows)
        cells.append({"study": "cui", "arch": arch, "roi": "box", "phases": "np", "variant": "default", "fold": 0,
                      "seed": 1, "dir": str(d), "hp": {"optimizer": "sgd", "lr": 0.001, "batch": 32, "epochs": 50,
                                                       "weight_decay": 0.0001, "class_weight": "balanced",
                                                       "augment": {"hflip": True}, "pretrained": "imagenet"}})
    pd.DataFrame([{"subgroup": "all", "level": "all test patients", "n": 10, "errors": 3, "error_rate": 0.3,
                   "ci_low": 0.0667, "ci_high": 0.6525, "n_high": 4}]).to_csv(tmp_path / "rates.csv", index=False)
    files = {"provenance": str(tmp_path / "prov.json"), "cohort": str(tmp_path / "cohort.tsv"),
             "exclusions": str(tmp_path / "exclusions.csv"), "splits": [str(tmp_path / "cui.json")],
             "baseline": ["results/tables/baseline_low_vs_high.csv"], "tables": ["results/tables/cui_table3.csv"],
             "error_rates": {"cui": str(tmp_path / "rates.csv")}}
    return files, {"cui": {"kind": "cui", "cells": cells}}, probs, test


def answer(t, guideline, item=None, topic=None):
    sub = t[(t["guideline"] == guideline) & ((t["item"] == item) if item else t["topic"].str.startswith(topic))]
    assert len(sub) == 1, (item, topic)
    return sub.iloc[0]


def test_every_claim_item_is_filled_or_marked_and_the_numbers_are_the_runs(tmp_path):
    files, studies, probs, test = fake_run(tmp_path)
    t = checklist.build(derived(), files, studies)
    claim = t[t["guideline"] == "CLAIM"]
    assert list(claim["item"]) == [str(i) for i in range(1, 43)]
    assert set(t["status"]) <= set(checklist.STATUS_TEXT) and (t["answer"].str.len() > 20).all()
    for r in t.itertuples():  # what the run cannot know says so; what it answered is not left blank
        assert (checklist.AUTHORS in r.answer) == (r.status != "filled") or "NOT" in r.answer, (r.item, r.answer)
    # item 36: the first model's patient-level test AUC, checked against scikit-learn
    pred = probs["resnet34"]
    pat = pred[pred["set"] == "test"].groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
    auc = roc_auc_score(pat["y"], pat["p"])
    assert 0.5 < auc < 1  # not a degenerate case
    sens = float(((pat["p"] >= 0.5) & (pat["y"] == 1)).sum() / (pat["y"] == 1).sum())
    a36 = answer(t, "CLAIM", "36").answer
    assert f"{len(test)} test patients" in a36 and f"AUC {auc:.3f}" in a36 and f"sensitivity {sens:.3f}" in a36
    assert "resnet34 on np" in a36 and "se_resnet34" not in a36
    assert "3 of 10 test patients misclassified" in answer(t, "CLAIM", "37").answer
    assert "torch 2.14.1" in answer(t, "CLAIM", "23").answer and "SimpleITK" not in answer(t, "CLAIM", "23").answer
    assert "c0ffee" in answer(t, "CLAIM", "41").answer
    assert "train 10, val 0, test 10" in answer(t, "CLAIM", "20").answer and "seed 5" in answer(t, "CLAIM", "20").answer
    assert "no patient in two sets" in answer(t, "CLAIM", "21").answer
    assert "age 1" in answer(t, "CLAIM", "13").answer  # one missing age
    assert "8 high grade, 12 low grade" in answer(t, "CLAIM", "14").answer
    assert "ingest 1 patient(s)" in answer(t, "CLAIM", "8").answer
    assert "Not performed" in answer(t, "CLAIM", "32").answer
    # item 19, TRIPOD+AI 7: Riley et al.'s minimum, recomputed here from its formulas (8 of 20 high grade)
    import math
    cfg = derived()
    types = {v["name"]: v.get("type") for v in cfg["baseline"]["variables"]}
    cohort = pd.read_csv(files["cohort"], sep="\t", dtype=str, keep_default_na=False)
    params = int(cfg["radiomics"]["enabled"]) + int(bool(cfg["fusion"].get("deep"))) + sum(
        max(cohort[c].replace("", None).dropna().nunique() - 1, 1) if types.get(c) == "categorical" and c in cohort
        else 1 for c in cfg["fusion"]["clinical"])
    phi = 8 / 20
    r2 = 0.15 * (1 - math.exp(2 * (phi * math.log(phi) + (1 - phi) * math.log(1 - phi))))
    s_vh = r2 / (r2 + 0.05 * r2 / 0.15)
    need = max(math.ceil(params / ((0.9 - 1) * math.log(1 - r2 / 0.9))),
               math.ceil(params / ((s_vh - 1) * math.log(1 - r2 / s_vh))), math.ceil((1.96 / 0.05) ** 2 * phi * (1 - phi)))
    a19 = answer(t, "CLAIM", "19")
    assert a19.status == "partly" and f"({params} parameters" in a19.answer and f": {need} patients" in a19.answer
    assert "falls short of it" in a19.answer
    assert "ImageNet" in answer(t, "CLAIM", "24").answer and "sgd lr 0.001" in answer(t, "CLAIM", "25").answer
    # no patient identifier in any answer
    assert not any(p in text for p in PIDS + ["P099"] for text in t["answer"])
    md = checklist.markdown(t, "c0ffee")
    assert "## CLAIM" in md and "## TRIPOD+AI" in md and md.count("| 36 |") == 1
    n = t[t["guideline"] == "CLAIM"]["status"].value_counts()
    assert f"{n.get('filled', 0)} filled from the run, {n.get('partly', 0)} partly filled" in md


def test_partitions_that_share_a_patient_are_reported_as_not_disjoint(tmp_path):
    files, studies, _, _ = fake_run(tmp_path, overlap=True)
    a21 = answer(checklist.build(derived(), files, studies), "CLAIM", "21").answer
    assert a21.startswith("NOT disjoint") and "cui fold 0: train and test" in a21


def test_a_run_without_trained_models_or_imaging_files_still_gives_every_item(tmp_path):
    files, studies, _, _ = fake_run(tmp_path)
    for c in studies["cui"]["cells"]:
        for f in ("predictions.tsv", "meta.json"):
            (tmp_path / c["arch"] / f).unlink()
    files.pop("error_rates")
    t = checklist.build(derived(), files, studies)
    assert len(t[t["guideline"] == "CLAIM"]) == 42
    assert "cui: no trained model" in answer(t, "CLAIM", "36").answer
    assert answer(t, "CLAIM", "37").status == "authors"


def test_calibration_is_the_logistic_recalibration_of_the_first_models_test_patients(tmp_path):
    import statsmodels.api as sm

    files, studies, probs, _ = fake_run(tmp_path)
    pd.DataFrame([{"model": "combined", "set": "test", "n": 10, "auc": 0.8, "cal_slope": 0.71, "cal_intercept": -0.2},
                  {"model": "combined", "set": "train", "n": 10, "auc": 0.9, "cal_slope": 1.0, "cal_intercept": 0.0}]
                 ).to_csv(tmp_path / "fusion.csv", index=False)
    files["fusion"] = str(tmp_path / "fusion.csv")
    a = answer(checklist.build(derived(), files, studies), "TRIPOD+AI", topic="Calibration")
    pred = probs["resnet34"]
    pat = pred[pred["set"] == "test"].groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
    lp = np.log(pat["p"] / (1 - pat["p"]))
    slope = sm.GLM(pat["y"], sm.add_constant(lp), family=sm.families.Binomial()).fit().params.iloc[1]
    icpt = sm.GLM(pat["y"], np.ones((len(lp), 1)), family=sm.families.Binomial(), offset=lp).fit().params.iloc[0]
    assert a.status == "filled" and f"cui: slope {slope:.2f}, intercept {icpt:.2f}" in a.answer, a.answer
    assert "combined: slope 0.71, intercept -0.20" in a.answer and "slope 1.00" not in a.answer  # test rows only


def test_external_validation_is_answered_from_the_studies_external_tables(tmp_path):
    files, studies, _, _ = fake_run(tmp_path)
    pd.DataFrame([{"roi": "box", "arch": a, "phases": "np", "variant": "default", "n_external": 16, "n_high": 7,
                   "auc": auc, "auc_difference": d} for a, auc, d in (("resnet34", 0.612, -0.201),
                                                                      ("se_resnet34", 0.701, -0.05))]
                 ).to_csv(tmp_path / "cui_external.csv", index=False)
    files["external"] = {"cui": str(tmp_path / "cui_external.csv")}
    a32 = answer(checklist.build(derived(), files, studies), "CLAIM", "32")
    assert a32.status == "filled" and "External centre C" in a32.answer
    assert "cui: 2 model(s) on 16 patients (7 high grade), external AUC 0.61-0.70" in a32.answer
    assert "external minus internal -0.20 to -0.05" in a32.answer


def multicentre_run(tmp_path, external=True):
    """fake_run's files for a study trained on a leave-one-centre-out split (centre A 12 patients, 8 high; B 8,
    none high) beside a 3-fold study (dai) whose fold models the external table and predict average."""
    files, studies, _, _ = fake_run(tmp_path)
    cfg = derived()
    cfg["splits"]["schemes"]["loco"] = {"kind": "leave_one_centre_out"}
    cfg["training"]["studies"]["cui"]["scheme"] = "loco"
    cfg["predict"]["model"].update(study="dai", folds="all")
    a, b = PIDS[:12], PIDS[12:]
    (tmp_path / "loco.json").write_text(json.dumps({
        "scheme": "loco", "kind": "leave_one_centre_out", "seed": 5, "n_patients": 20, "excluded": [],
        "folds": [{"train": b, "test": a, "centre": "A"}, {"train": a, "test": b, "centre": "B"}]}))
    files["splits"].append(str(tmp_path / "loco.json"))
    hp = studies["cui"]["cells"][0]["hp"]
    studies["dai"] = {"kind": "dai", "cells": [
        {"study": "dai", "arch": "resnet50", "roi": "centroid", "phases": "cmp", "variant": "base", "fold": f, "seed": 1,
         "dir": str(tmp_path / f"dai{f}"), "hp": hp} for f in range(3)]}
    if external:
        pd.DataFrame([{"roi": "centroid", "arch": "resnet50", "phases": "cmp", "variant": "base", "n_members": 3,
                       "n_external": 16, "n_high": 7, "auc": 0.64, "auc_difference": -0.1}]
                     ).to_csv(tmp_path / "dai_external.csv", index=False)
        files["external"] = {"dai": str(tmp_path / "dai_external.csv")}
    return cfg, files, studies


def test_a_multicentre_run_with_an_external_centre_and_a_fold_ensemble_is_not_over_claimed(tmp_path):
    """Differences between the sets, ensembling and stratification are read from the run: an external centre
    and held-out centres are named (not 'one cohort'), the fold models the external table and predict average
    are said to be averaged (not 'none'), and the leave-one-centre-out split is not called stratified."""
    cfg, files, studies = multicentre_run(tmp_path)
    t = checklist.build(cfg, files, studies)
    diff = answer(t, "TRIPOD+AI", topic="Differences between development").answer
    assert "one cohort of 2 centres (A 12, B 8)" in diff and "external centre C: 16 patients of another centre" in diff
    assert "split loco tests whole held-out centres (fold 0 tests centre A (12 patients, 8 high grade)" in diff
    assert "used by cui fold 0)" in diff  # the matrix trains one fold of a leave-one-centre-out split
    ens = answer(t, "CLAIM", "27")
    assert ens.status == "filled" and "None" not in ens.answer
    assert "dai: 3 fold models per model, pooled out of fold" in ens.answer
    assert "averaged over its members" in ens.answer and "dai up to 3 members (results/tables/dai_external.csv)" in ens.answer
    assert "study dai, folds all): P(high) averaged over 3 fold models" in ens.answer
    imb = answer(t, "TRIPOD+AI", topic="Class imbalance").answer
    assert ("loco (leave_one_centre_out; used by cui fold 0): whole centres held out, not stratified by grade group: fold 0 tests "
            "centre A (12 patients, 8 high grade), fold 1 tests centre B (8 patients, 0 high grade)") in imb
    assert "cui (holdout): stratified by grade_group, centre" in imb  # the holdout scheme is, by both columns
    a20 = answer(t, "CLAIM", "20").answer
    assert "loco: leave one centre out, not stratified (whole centres held out" in a20
    assert "cui: hold-out train:val:test 8:1:1, stratified by grade_group, centre" in a20
    assert "external validation on centre C" in answer(t, "CLAIM", "6").answer
    # without the external centre: the held-out centres are the validation beyond the cohort's split, said so
    (tmp_path / "no_ext").mkdir()
    cfg, files, studies = multicentre_run(tmp_path / "no_ext", external=False)
    t = checklist.build(cfg, files, studies)
    assert "internal-external validation by leaving one centre out: cui fold 0 on split loco" in answer(t, "CLAIM", "32").answer
    assert "external centre" not in answer(t, "TRIPOD+AI", topic="Differences between development").answer
    assert "External validation" not in answer(t, "CLAIM", "27").answer


def test_missing_data_is_read_from_the_fusion_table(tmp_path):
    """CLAIM 13 gives the patients the fusion imputed per set and variable, as its table's imputed_* columns
    record them; a fusion that was not fitted is said to be so, not described."""
    files, studies, _, _ = fake_run(tmp_path)
    rows = [{"model": m, "set": s, "n": 10, "auc": 0.7, "imputed_age": n_age if m in ("clinical", "combined") else None,
             "imputed_sex": 0 if m in ("clinical", "combined") else None}
            for s, n_age in (("train", 2), ("test", 1)) for m in ("radiomics", "clinical", "combined")]
    pd.DataFrame(rows).to_csv(tmp_path / "fusion.csv", index=False)
    files["fusion"] = str(tmp_path / "fusion.csv")
    a13 = answer(checklist.build(derived(), files, studies), "CLAIM", "13")
    assert a13.status == "filled" and "patients imputed per set: training age 2, sex 0; test age 1, sex 0" in a13.answer
    assert "the footnote of fusion.md" in a13.answer  # the policy, beside the table it came from
    pd.DataFrame(columns=["model", "set", "n", "auc"]).to_csv(tmp_path / "fusion.csv", index=False)
    a13 = answer(checklist.build(derived(), files, studies), "CLAIM", "13").answer
    assert "the fusion models were not fitted in this run" in a13 and "patients imputed" not in a13


def test_the_statistics_answer_names_the_modes_auc_interval_and_test():
    """CLAIM 29 names what the tables show: in honest mode Newcombe's score interval and the within-patient
    permutation test, in paper mode DeLong's interval and test (``tables.auc_cis``, ``tables.paired_test``)."""
    for mode in ("honest", "paper"):
        cfg = derived()
        cfg["statistics"]["mode"] = mode
        status, text = checklist.Run(cfg, {}, {}).statistics()
        assert status == "filled"
        ci, test = text.split("; AUCs of two models compared by ")[0], text.split("compared by ")[1].split(";")[0]
        if mode == "honest":
            assert ci.startswith("AUC 95% CIs by Newcombe's score interval") and "permutation" in test
            assert "DeLong" not in test
        else:
            assert ci.startswith("AUC 95% CIs by DeLong's Wald interval") and test.startswith("DeLong's test")
            assert "permutation" not in text and "Newcombe" not in text
        assert "Jaccard" in text  # F1's fallback interval
