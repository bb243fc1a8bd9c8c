"""Grading new patients (ccgrade.deploy.predict): which cells grade, what the pre-flight says of a new patient the
model cannot read, and the ensemble's arithmetic on real crops. (That `snakemake predict` on a study's own
test patients gives the study's probabilities is tested on the tiny demo DAG, test_workflow.)"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ccgrade import stats
from ccgrade.config.cohort import cohort_problems, patient_sources
from ccgrade.deploy import bundle, predict
from ccgrade.learn import models
from ccgrade.outputs import Outputs
from ccgrade.plan import preflight
from conftest import PHASES, ingest_to, tiny_config
from test_bundle import fake_cell


def derived(cfg=None):
    cfg = copy.deepcopy(cfg or tiny_config())
    cfg["phases"] = list(PHASES)
    cfg["stack"]["phases"] = ["cmp", "np", "ep"]
    cfg["cohort"]["source"] = "demo"
    return cfg


def test_model_cells_fill_nulls_with_the_first_model_and_average_every_fold():
    cfg = derived()
    members, probs = predict.model_cells(cfg)  # the repository's choice: Dai, every fold
    assert not probs and [m["fold"] for m in members] == [0, 1, 2]  # tiny_config: 3 folds
    assert {(m["arch"], m["phases"], m["roi"], m["variant"]) for m in members} == {("resnet50", "cmp", "centroid", "b16")}
    assert "3 fold models averaged" in predict.model_name(members)
    # a fold that could not be trained is taken out of the title's count (its footnote names it)
    assert ", 2 of 3 fold models averaged)" in predict.model_name(members, left_out=1)
    assert predict.with_left_out(predict.model_name(members), "fold 1: one grade group") == \
        predict.model_name(members, left_out=1)
    assert predict.with_left_out(predict.model_name(members), "") == predict.model_name(members)
    cfg["predict"]["model"] = {"study": "cui", "arch": "resnet34", "phases": "np", "folds": "all"}
    members, _ = predict.model_cells(cfg)
    assert [(m["arch"], m["phases"], m["fold"]) for m in members] == [("resnet34", "np", 0)]
    cfg["predict"]["model"] = {"study": "dai", "folds": [2]}
    assert [m["fold"] for m in predict.model_cells(cfg)[0]] == [2]
    # what cannot be graded: each names its key and what there is
    for spec, key, says in (({"study": "nope"}, "study", "cui, li, dai, sun"), ({"study": "cui", "arch": "resnet50"}, "arch",
                            "resnet34, se_resnet34"), ({"study": "dai", "folds": [7]}, "folds", "[0, 1, 2]")):
        cfg["predict"]["model"] = {"folds": "all", **spec}
        members, probs = predict.model_cells(cfg)
        assert not members and len(probs) == 1 and f"predict.model.{key}'" in probs[0].message and says in probs[0].message


def test_needs_of_each_phase_set():
    cfg = derived()
    cell = {"roi": "box", "phases": "stack"}
    assert predict.needs(cfg, cell)["images"] == ["cmp", "np", "ep"] and predict.needs(cfg, cell)["outlines"] == ["cmp"]
    cell = {"roi": "box", "phases": "all"}
    assert predict.needs(cfg, cell)["images"] == PHASES == predict.needs(cfg, cell)["outlines"]
    assert predict.needs(cfg, {"roi": "box", "phases": "np"})["formats"][0] == "labelme"


def test_sheet_problems_name_patient_phase_and_mismatch(tmp_path):
    cfg = derived()
    cfg["predict"]["model"] = {"study": "cui", "arch": "resnet34", "phases": "cmp", "folds": "all"}
    members, _ = predict.model_cells(cfg)
    (tmp_path / "a" / "cmp").mkdir(parents=True)
    (tmp_path / "a" / "cmp" / "mask.nii.gz").write_bytes(b"")  # box reads labelme, mask, rtstruct or polygons
    (tmp_path / "b" / "np").mkdir(parents=True)
    (tmp_path / "b" / "np" / "mask.nii.gz").write_bytes(b"")
    sheet = pd.DataFrame([{"patient_id": "007", "annotation_dir": str(tmp_path / "a")},
                          {"patient_id": "NA", "annotation_dir": str(tmp_path / "b")}])
    surveys = {"007": {"images": {"cmp": {"status": "ok"}, "np": {"status": "ok"}}},
               "NA": {"images": {"np": {"status": "ok"}, "cmp": {"status": "excluded", "reason": "localizer only"}}}}
    probs = predict.sheet_problems(sheet, surveys, cfg, members, "new.tsv")
    assert len(probs) == 2 and all(p.level == "error" for p in probs)
    img, ann = probs
    assert img.message.startswith("patient NA, phase cmp, file new.tsv: the model (cui resnet34 on cmp")
    assert "localizer only; usable phases: np" in img.message and "predict.model" in img.fix
    assert ann.message.startswith("patient NA, phase cmp") and "labelme or mask or rtstruct or polygons" in ann.message
    assert "has none there" in ann.message


def test_grade_is_optional_on_a_predict_sheet_but_checked_when_given(tmp_path):
    cfg = derived()
    df = pd.DataFrame([{"patient_id": "P1"}, {"patient_id": "P2"}])
    out, probs = cohort_problems(df, cfg, check_paths=False, grade_optional=True)
    assert not [p for p in probs if p.level == "error"] and out["grade"].isna().all() and list(out["grade_group"]) == ["", ""]
    df = pd.DataFrame([{"patient_id": "P1", "grade": ""}, {"patient_id": "P2", "grade": "G4"},
                       {"patient_id": "P3", "grade": "V"}])
    out, probs = cohort_problems(df, cfg, check_paths=False, grade_optional=True)
    assert [p.message for p in probs if p.level == "error"] == ["patient P3, file <cohort sheet>: unknown grade value 'V' "
                                                                "(expected 1-4, 'G1'-'G4' or I-IV)"]
    assert out["grade_group"].tolist()[:2] == ["", "high"]
    _, probs = cohort_problems(pd.DataFrame([{"patient_id": "P1"}]), cfg, check_paths=False)  # the cohort: required
    assert "lacks required column(s) ['grade']" in probs[0].message


def test_the_demo_grades_new_patients_drawn_after_the_cohort():
    cfg = derived()
    cfg["predict"]["demo_patients"] = 3
    cohort, members, probs = preflight.predict_cohort(cfg, cache=None)
    assert not probs and list(cohort["patient_id"]) == ["DEMO007", "DEMO008", "DEMO009"] and len(members) == 3
    assert set(cohort["grade_group"]) <= {"low", "high"} and cohort["dicom_dir"].iloc[0].endswith("dicom/DEMO007")
    cfg["cohort"]["source"] = "sheet"  # a user's cohort without predict.sheet: nothing to grade
    assert preflight.predict_cohort(cfg, cache=None)[0].empty


def test_a_demo_that_does_not_train_the_predict_model_skips_its_new_patients_instead_of_failing():
    cfg = derived()
    cfg["training"]["studies"] = {"cui": cfg["training"]["studies"]["cui"]}  # predict.model.study stays dai
    cohort, members, probs = preflight.predict_cohort(cfg, cache=None)
    assert cohort.empty and not members and [x.level for x in probs] == ["skipped"]
    assert "predict.model.study" in probs[0].message and "snakemake predict" in probs[0].fix
    cfg["predict"]["sheet"] = "new.csv"  # asked for by a sheet: an error (with the missing sheet's, at once)
    probs = preflight.predict_cohort(cfg, cache=None)[2]
    assert {x.level for x in probs} == {"error"} and any("predict.model.study" in x.message for x in probs)
    assert any("new.csv" in x.message for x in probs)


def test_ensemble_arithmetic_on_a_real_patient(demo_root, tmp_path):
    """Two bundles (distinct networks) grade an ingested demo patient: each member's image probabilities are its
    bundle's own, the patient's P(high) is the mean of the members' means, the call is at the bundles'
    threshold, and the page is written."""
    cfg = derived()
    cfg["rois"]["box"]["size"] = 32
    cell = {"study": "cui", "roi": "box", "arch": "resnet18", "phases": "cmp", "variant": "base", "fold": 0, "seed": 1}
    paths = []
    for k in range(2):
        d, _, _ = fake_cell(tmp_path / f"c{k}")
        torch.manual_seed(k + 5)
        torch.save(models.build_model("resnet18", in_channels=1).state_dict(), d / "best.pt")
        bundle.export(d, tmp_path / f"b{k}", config=cfg, cell={**cell, "fold": k}, study="cui")
        paths.append(tmp_path / f"b{k}")
    _, vol = ingest_to(demo_root / "dicom" / "DEMO001", "DEMO001", tmp_path / "ing")
    src = patient_sources({"annotation_dir": str(demo_root / "annotations" / "DEMO001")}, PHASES)
    src = {ph: {"labelme": s["labelme"]} for ph, s in src.items()}
    names = ("images", "summary", "page", "page_pdf")
    out = Outputs({n: tmp_path / "out" / f"{n}.{ext}" for n, ext in zip(names, ("tsv", "json", "png", "pdf"))})
    s = predict.run_patient([str(p) for p in paths], vol, src, "DEMO001", out, grade="high")
    img = pd.read_csv(out["images"], sep="\t")
    for k, p in enumerate(paths):
        own = bundle.load(p).predict(vol, src, patient="DEMO001")
        np.testing.assert_allclose(img.loc[img["member"] == k, "prob_high"], own["prob_high"], atol=1e-6)
    want = float(np.mean([img.loc[img["member"] == k, "prob_high"].mean() for k in (0, 1)]))
    assert s["prob_high"] == pytest.approx(want, abs=1e-6) and s["n_members"] == 2
    assert s["call"] == ("high" if want >= 0.5 else "low") and s["n_images"] == (img["member"] == 0).sum() > 0
    assert json.loads(out["summary"].read_text())["prob_high"] == pytest.approx(want)
    assert out["page"].stat().st_size > 10_000 and out["page_pdf"].stat().st_size > 5_000


def test_metrics_of_graded_new_patients_match_scikit_learn(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        y = i % 3 == 0
        rows.append({"patient_id": f"N{i:02d}", "prob_high": float(np.clip(0.35 + 0.3 * y + rng.normal(0, 0.2), 0, 1)),
                     "call": "", "threshold": 0.4, "n_images": 3})
    sheet = pd.DataFrame({"patient_id": [r["patient_id"] for r in rows],
                          "grade": [4 if i % 3 == 0 else (2 if i < 27 else np.nan) for i in range(30)]})
    sheet["grade_group"] = [("high" if g >= 3 else "low") if g == g else "" for g in sheet["grade"]]
    files = []
    for r in rows:
        f = tmp_path / f"{r['patient_id']}.json"
        f.write_text(json.dumps(r))
        files.append(str(f))
    out = Outputs({n: tmp_path / f"{n}.{'md' if n.endswith('_md') else 'csv'}"
                   for n in ("predictions", "predictions_md", "metrics", "metrics_md")})
    t, m = predict.write_tables(files, sheet, "a model", out)
    graded = t[t["grade_group"] != ""]
    y, p = (graded["grade_group"] == "high").to_numpy(int), graded["prob_high"].to_numpy()
    r = m.iloc[0]
    assert r["n_graded"] == 28 and r["n_ungraded"] == 2 and r["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    call = p >= 0.4  # the bundles' threshold, not 0.5
    assert r["sensitivity"] == pytest.approx(call[y == 1].mean()) and r["specificity"] == pytest.approx(1 - call[y == 0].mean())
    assert r["auc_ci_low"] < r["auc"] < r["auc_ci_high"]
    assert (r["auc_ci_low"], r["auc_ci_high"]) == pytest.approx(stats.auc_interval_score(y, p)[1:], abs=1e-12)
    assert "AUC 95% CI: Newcombe's score interval" in (tmp_path / "metrics_md.md").read_text()
    assert len(pd.read_csv(out["predictions"])) == 30


def test_graded_new_patients_are_compared_with_the_models_own_test_patients(tmp_path):
    """Where the new patients come from another centre this is external validation: their AUC beside the
    model's internal test AUC (the members' test patients pooled), the difference with its test, and the
    calibration at the frozen model."""
    import statsmodels.api as sm

    from ccgrade import stats

    rng = np.random.default_rng(1)
    files = []
    for k in range(2):  # two fold models, each with its own test patients (4 images each)
        d = tmp_path / f"fold{k}"
        d.mkdir()
        rows = [{"patient_id": f"I{k}{i:02d}", "set": s, "label": int(i % 2), "prob_high":
                 float(np.clip(0.3 + 0.4 * (i % 2) + rng.normal(0, 0.15), 0, 1)), "source": "cmp", "slice_index": j}
                for i in range(12) for j in range(4) for s in (("test",) if i < 10 else ("train",))]
        pd.DataFrame(rows).to_csv(d / "predictions.tsv", sep="\t", index=False)
        files.append(str(d / "predictions.tsv"))
    internal = predict.internal_patients(files + [str(tmp_path / "untrained/predictions.tsv")])
    assert len(internal) == 20 and set(internal["fold"]) == {0, 1}
    pred = pd.concat(pd.read_csv(f, sep="\t") for f in files)
    pat = pred[pred["set"] == "test"].groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
    new = pd.DataFrame({"patient_id": [f"N{i:02d}" for i in range(24)], "threshold": 0.5,
                        "prob_high": np.clip(0.4 + 0.15 * (np.arange(24) % 3 == 0) + rng.normal(0, 0.2, 24), 0.01, 0.99),
                        "grade_group": np.where(np.arange(24) % 3 == 0, "high", "low")})
    r = predict.metrics_table(new, {"n_boot": 300}, internal).iloc[0]
    y, p = (new["grade_group"] == "high").to_numpy(int), new["prob_high"].to_numpy()
    assert r["internal_n"] == 20 and r["internal_auc"] == pytest.approx(roc_auc_score(pat["y"], pat["p"]))
    yi, pi = pat["y"].to_numpy(int), pat["p"].to_numpy(float)  # the tables' interval: Newcombe's, honest mode
    assert (r["internal_auc_ci_low"], r["internal_auc_ci_high"]) == pytest.approx(
        stats.auc_interval(yi, pi, method="score")[1:], abs=1e-12)
    assert (r["auc_ci_low"], r["auc_ci_high"]) == pytest.approx(stats.auc_interval(y, p, method="score")[1:],
                                                                abs=1e-12) and r["ci_method"] == "Newcombe score"
    paper = predict.metrics_table(new, {"n_boot": 300, "mode": "paper"}, internal).iloc[0]  # DeLong's Wald
    assert (paper["internal_auc_ci_low"], paper["internal_auc_ci_high"]) == pytest.approx(stats.auc_ci(yi, pi)[1:],
                                                                                          abs=1e-12)
    assert (paper["auc_ci_low"], paper["auc_ci_high"]) == pytest.approx(stats.auc_ci(y, p)[1:], abs=1e-12)
    assert r["auc_difference"] == pytest.approx(roc_auc_score(y, p) - roc_auc_score(pat["y"], pat["p"]))
    want = stats.unpaired_auc_test(y, p, pat["y"].to_numpy(), pat["p"].to_numpy(), n_boot=300)
    assert r["auc_difference_p"] == pytest.approx(want["p_value"])
    lp = np.log(p / (1 - p))
    slope = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit().params[1]
    assert r["cal_slope"] == pytest.approx(slope, rel=1e-6)
    assert "internal_auc" not in predict.metrics_table(new, {"n_boot": 300}).columns  # no model predictions given
