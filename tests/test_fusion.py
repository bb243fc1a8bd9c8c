"""Radiomics/deep/clinical fusion: no test patient reaches the fitted selection; calibration and
decision-curve numbers against hand computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ccgrade import stats
from ccgrade.evaluate import decision
from ccgrade.fusion import model as fusion, report as fusion_report



def fusion_outputs(out, tables, figures) -> list[str]:
    """The fusion job's --outputs as its rule declares them, under three test folders."""
    import json

    o, t, f = Path(out), Path(tables), Path(figures)
    paths = {"predictions": o / "predictions.tsv", "left_out": o / "left_out.tsv", "selected": o / "selected_features.tsv",
             "table": t / "fusion_models.csv", "table_md": t / "fusion_models.md", "coef": t / "fusion_coefficients.csv",
             "coef_md": t / "fusion_coefficients.md", "roc": f / "fusion_roc.png", "roc_pdf": f / "fusion_roc.pdf",
             "dca": f / "fusion_calibration_dca.png", "dca_pdf": f / "fusion_calibration_dca.pdf",
             "nested": o / "nested_predictions.tsv", "nested_table": t / "fusion_nested_cv.csv",
             "nested_table_md": t / "fusion_nested_cv.md"}
    return ["--outputs", json.dumps({k: str(v) for k, v in paths.items()})]

def cohort(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    feats = {f"f{j:02d}": rng.normal(size=n) for j in range(30)}
    feats["f00"] = feats["f00"] + 1.5 * y           # informative
    feats["f01"] = feats["f01"] - 1.0 * y           # informative
    feats["f02"] = feats["f00"] * 2 + 0.01 * rng.normal(size=n)  # a near copy of f00 (correlation filter)
    feats["f03"] = np.full(n, 3.0)                  # constant (variance filter)
    df = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], **feats,
                       "age": rng.normal(60, 10, n) + 4 * y, "sex": rng.choice(["F", "M"], n)})
    df.loc[5, "f05"] = np.nan                       # a missing value (training median)
    return df, y


def test_selection_filters():
    df, _ = cohort()
    kept = fusion.select_columns(df[[f"f{j:02d}" for j in range(6)]].fillna(0), max_corr=0.9)
    assert "f03" not in kept and "f00" in kept and "f02" not in kept and "f01" in kept


def test_fusion_learns_and_sees_no_test_patient():
    df, y = cohort()
    tr, te = np.arange(0, 90), np.arange(90, 120)
    cols = [f"f{j:02d}" for j in range(30)]
    clinical = [{"name": "age", "type": "continuous"}, {"name": "sex", "type": "categorical"}]
    pred, fit = fusion.fit_fusion(df.iloc[tr], df.iloc[te], y[tr], blocks={"radiomics": cols}, clinical=clinical,
                                  seed=1)
    bm = fit["blocks"]["radiomics"]
    assert {"f00", "f01"} <= set(bm.selected) and "f03" not in bm.kept
    t = pred[(pred["set"] == "test") & (pred["model"] == "combined")]
    assert roc_auc_score(y[te], t["prob_high"]) > 0.75
    assert set(pred["model"]) == {"radiomics", "clinical", "combined"}
    # wild changes to every test patient's features leave the fit and the training predictions unchanged
    wild = df.copy()
    rng = np.random.default_rng(9)
    wild.loc[wild.index[te], cols + ["age"]] = rng.normal(0, 100, (len(te), len(cols) + 1))
    wild.loc[wild.index[te], "sex"] = "X"
    pred2, fit2 = fusion.fit_fusion(wild.iloc[tr], wild.iloc[te], y[tr], blocks={"radiomics": cols},
                                    clinical=clinical, seed=1)
    bm2 = fit2["blocks"]["radiomics"]
    assert bm2.kept == bm.kept and bm2.selected == bm.selected
    np.testing.assert_array_equal(bm2.model.coef_, bm.model.coef_)
    np.testing.assert_array_equal(fit2["combined"].model.coef_, fit["combined"].model.coef_)
    a, b = pred[pred["set"] == "train"], pred2[pred2["set"] == "train"]
    np.testing.assert_array_equal(a["prob_high"].to_numpy(), b["prob_high"].to_numpy())


def test_decision_curve_and_calibration_by_hand():
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05])
    t = np.array([0.25, 0.5])
    # t = 0.25: treat p >= .25 -> patients 0-4: TP 2, FP 3; NB = 2/8 - 3/8 * (1/3)
    # t = 0.5: treat 0-2: TP 2, FP 1; NB = 2/8 - 1/8 * 1
    np.testing.assert_allclose(decision.net_benefit(y, p, t), [2 / 8 - 3 / 8 / 3, 2 / 8 - 1 / 8])
    np.testing.assert_allclose(decision.treat_all(y, t), [3 / 8 - 5 / 8 / 3, 3 / 8 - 5 / 8])
    assert decision.brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    # Hosmer-Lemeshow with 2 groups of 4 (by risk): low-risk {.05,.1,.2,.3} has 1 event, high {.4,.6,.8,.9} 2
    e1, e2 = 0.65, 2.7
    want = (1 - e1) ** 2 / (4 * (e1 / 4) * (1 - e1 / 4)) + (2 - e2) ** 2 / (4 * (e2 / 4) * (1 - e2 / 4))
    hl = stats.hosmer_lemeshow(y, p, groups=2)  # held out: g degrees of freedom; in sample g - 2 (at least 1)
    assert hl["hl_chi2"] == pytest.approx(want) and hl["hl_df"] == 2
    assert stats.hosmer_lemeshow(y, p, groups=2, held_out=False)["hl_df"] == 1
    cal = decision.calibration_curve(y, p, bins=2)
    assert cal["observed"].tolist() == [0.25, 0.5] and cal["mean_predicted"].tolist() == pytest.approx([e1 / 4, e2 / 4])


def test_the_command_line_stage_end_to_end(tmp_path):
    """The DAG's fusion job on files: cohort, split, radiomics and deep tables -> tables and figures."""
    import json

    df, y = cohort(n=80, seed=4)
    ids = df["patient_id"].tolist()
    sheet = df[["patient_id", "age", "sex"]].assign(grade_group=np.where(y == 1, "high", "low"))
    sheet.to_csv(tmp_path / "cohort.tsv", sep="\t", index=False)
    split = {"folds": [{"train": ids[:50], "val": ids[50:56], "test": ids[56:]}]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    rad = df[["patient_id"] + [f"f{j:02d}" for j in range(20)]].assign(phase="cmp", mode="full", status="ok",
                                                                      reason="", pyradiomics_version="v3.0.1")
    rad.loc[3, "status"], rad.loc[3, "reason"] = "excluded", "the tumour mask is empty"
    rad.to_csv(tmp_path / "rad.tsv", sep="\t", index=False)
    deep = df[["patient_id"] + [f"f{j:02d}" for j in range(20, 30)]]
    deep.to_csv(tmp_path / "deep.tsv", sep="\t", index=False)
    prm = {"clinical": [{"name": "age", "type": "continuous"}, {"name": "sex", "type": "categorical"}], "seed": 3,
           "cv": 4, "thresholds": [0.05, 0.95, 0.05], "nested_cv": 3}
    fusion.main(["fit", "--cohort", str(tmp_path / "cohort.tsv"), "--split", str(tmp_path / "split.json"),
                 "--radiomics", str(tmp_path / "rad.tsv"), "--deep", str(tmp_path / "deep.tsv"), "--params",
                 json.dumps(prm), *fusion_outputs(tmp_path / "out", tmp_path / "t", tmp_path / "f")])
    t = pd.read_csv(tmp_path / "t/fusion_models.csv")
    assert set(t["model"]) == {"radiomics", "deep", "clinical", "combined"}
    pred = pd.read_csv(tmp_path / "out/predictions.tsv", sep="\t")
    assert ids[3] not in set(pred["patient_id"])  # the excluded patient is left out, and listed
    assert pd.read_csv(tmp_path / "out/left_out.tsv", sep="\t")["patient_id"].tolist() == [ids[3]]
    assert set(pred.loc[pred["set"] == "train", "patient_id"]) == set(ids[:56]) - {ids[3]}  # val joins training
    test = pred[(pred["set"] == "test") & (pred["model"] == "combined")]
    row = t[(t["model"] == "combined") & (t["set"] == "test")].iloc[0]
    assert row["auc"] == pytest.approx(roc_auc_score(test["label"], test["prob_high"]))
    assert row["brier"] == pytest.approx(np.mean((test["prob_high"] - test["label"]) ** 2))
    # nested models: no DeLong against the combined model; ΔAUC with a bootstrap CI, the LR test on training rows
    assert "delong_p_vs_combined" not in t
    for m in ("radiomics", "deep", "clinical"):
        r = t[(t["model"] == m) & (t["set"] == "test")].iloc[0]
        other = pred[(pred["set"] == "test") & (pred["model"] == m)].set_index("patient_id").loc[test["patient_id"]]
        want = roc_auc_score(test["label"], test["prob_high"]) - roc_auc_score(other["label"], other["prob_high"])
        assert r["delta_auc_vs_combined"] == pytest.approx(want, abs=1e-12)
        assert r["delta_auc_boot_low"] <= r["delta_auc_vs_combined"] <= r["delta_auc_boot_high"]
        assert np.isnan(r["lr_p"])
    # the LR tests leave the in-sample deep block out: none on its row, its score not in the design (radiomics
    # score + age + sex=M: 3 terms, so radiomics is tested on 2 df and the clinical variables on 1)
    for m, df_ in (("radiomics", 2), ("clinical", 1)):
        tr = t[(t["model"] == m) & (t["set"] == "train")].iloc[0]
        assert 0 <= tr["lr_p"] <= tr["lr_p_holm"] <= 1 and tr["lr_df"] == df_
    assert t[(t["model"] == "deep") & (t["set"] == "train")]["lr_p"].isna().all()
    assert (t.loc[t["set"] == "test", "hl_df"] == 10).all() and (t.loc[t["set"] == "train", "hl_df"] == 8).all()
    md = (tmp_path / "t/fusion_models.md").read_text()
    assert "In-sample deep block" in md and "likelihood-ratio" in md and "Holm" in md
    assert "without the deep score" in md and "Left out of the LR tests: the deep block" in md
    assert "out-of-fold block scores" not in md and "DeLong P" not in md
    # nothing was missing: the imputed counts say 0, on the clinical and combined rows only
    assert (t.loc[t["model"].isin(["clinical", "combined"]), ["imputed_age", "imputed_sex"]] == 0).all().all()
    assert t.loc[t["model"].isin(["radiomics", "deep"]), "imputed_age"].isna().all()
    assert "age training 0, test 0; sex training 0, test 0" in md
    for stem in ("fusion_roc", "fusion_calibration_dca"):
        assert (tmp_path / f"f/{stem}.png").stat().st_size > 1000 and (tmp_path / f"f/{stem}.pdf").exists()
    # nested CV over all patients: radiomics + clinical only (the deep block comes from a fixed split)
    nested = pd.read_csv(tmp_path / "out/nested_predictions.tsv", sep="\t")
    assert set(nested["model"]) == {"radiomics", "clinical", "combined"} and set(nested["fold"]) == {0, 1, 2}
    assert len(nested) == 3 * (len(ids) - 1)
    md = (tmp_path / "t/fusion_nested_cv.md").read_text()
    assert "deep block" in md and "Outer folds' AUC" in md
    # too few patients: the outputs say why instead of crashing
    split["folds"][0]["train"] = ids[:6]
    (tmp_path / "split.json").write_text(json.dumps(split))
    fusion.main(["fit", "--cohort", str(tmp_path / "cohort.tsv"), "--split", str(tmp_path / "split.json"),
                 "--radiomics", str(tmp_path / "rad.tsv"), "--params", json.dumps(prm), *fusion_outputs(tmp_path / "out2", tmp_path / "t2", tmp_path / "f2")])
    assert "not fitted" in (tmp_path / "t2/fusion_models.md").read_text()


def test_an_untrained_deep_cell_gives_an_empty_block(tmp_path):
    import json

    (tmp_path / "meta.json").write_text(json.dumps({"status": "not trained", "reason": "one grade group"}))
    t = fusion.deep_feature_table(str(tmp_path), {"arch": "resnet50"}, [])
    assert list(t.columns) == ["patient_id"] and t.empty
    df, y = cohort(n=60, seed=2)
    c = df[["patient_id", "age", "sex"]].assign(grade_group=np.where(y == 1, "high", "low"))
    rad = df[["patient_id", "f00", "f01", "f04"]].assign(status="ok", reason="")
    ids = df["patient_id"].tolist()
    pred, fitted, left = fusion.run_fusion(c, (ids[:40], ids[40:]), radiomics=rad, deep=t,
                                           clinical=[{"name": "age", "type": "continuous"}], seed=1)
    assert set(pred["model"]) == {"radiomics", "clinical", "combined"} and left.empty


def test_nested_cv_refits_everything_without_the_held_out_fold():
    """Each outer fold's predictions are exactly those of the whole pipeline fitted on the other folds
    (which take no label of the held-out patients); each patient is predicted once per model; the pooled
    table's AUC is scikit-learn's on the pooled predictions, the fold mean and SD numpy's."""
    from sklearn.model_selection import StratifiedKFold

    df, y = cohort(n=100, seed=5)
    df = df.assign(grade_group=np.where(y == 1, "high", "low"))
    blocks = {"radiomics": [f"f{j:02d}" for j in range(12)]}
    clinical = [{"name": "age", "type": "continuous"}, {"name": "sex", "type": "categorical"}]
    pred = fusion.nested_cv(df, blocks, clinical=clinical, seed=7, outer=4, cv=3)
    assert set(pred["set"]) == {fusion.NESTED_SET} and set(pred["fold"]) == {0, 1, 2, 3}
    for _, g in pred.groupby("model"):
        assert sorted(g["patient_id"]) == sorted(df["patient_id"])  # everyone once
    folds = list(StratifiedKFold(n_splits=4, shuffle=True, random_state=7).split(np.zeros(len(y)), y))
    tr, te = folds[2]
    direct, _ = fusion.fit_fusion(df.iloc[tr], df.iloc[te], y[tr], blocks=blocks, clinical=clinical, seed=7, cv=3)
    direct = direct[direct["set"] == "test"].set_index(["model", "patient_id"])["prob_high"]
    mine = pred[pred["fold"] == 2].set_index(["model", "patient_id"])["prob_high"]
    pd.testing.assert_series_equal(mine.sort_index(), direct.sort_index())
    assert (pred.set_index("patient_id")["label"].groupby(level=0).first()
            == pd.Series(y, index=df["patient_id"]).sort_index()).all()
    t = fusion_report.nested_table(pred).set_index("model")
    comb = pred[pred["model"] == "combined"]
    assert t.loc["combined", "auc"] == pytest.approx(roc_auc_score(comb["label"], comb["prob_high"]))
    assert t.loc["combined", "auc"] > 0.75  # the signal of f00/f01 and age survives honest validation
    aucs = [roc_auc_score(d["label"], d["prob_high"]) for _, d in comb.groupby("fold")]
    assert t.loc["combined", "fold_auc_mean"] == pytest.approx(np.mean(aucs))
    assert t.loc["combined", "fold_auc_sd"] == pytest.approx(np.std(aucs, ddof=1))
    assert (t["outer_folds"] == 4).all()


def test_no_test_label_reaches_any_fusion_selection():
    """Features, penalties, coefficients and every training prediction are the same when the test patients'
    grades are flipped: nothing is chosen on them (only their own rows' labels change)."""
    df, y = cohort(n=90, seed=5)
    ids = df["patient_id"].tolist()
    rad = df[["patient_id"] + [f"f{j:02d}" for j in range(12)]].assign(status="ok", reason="")
    clinical = [{"name": "age", "type": "continuous"}, {"name": "sex", "type": "categorical"}]
    runs = []
    for flip in (False, True):
        yy = np.where(np.arange(len(y)) >= 60, 1 - y, y) if flip else y
        c = df[["patient_id", "age", "sex"]].assign(grade_group=np.where(yy == 1, "high", "low"))
        runs.append(fusion.run_fusion(c, (ids[:60], ids[60:]), radiomics=rad, deep=None, clinical=clinical, seed=2))
    (p1, f1, _), (p2, f2, _) = runs
    assert f1["blocks"]["radiomics"].selected == f2["blocks"]["radiomics"].selected
    assert f1["blocks"]["radiomics"].model.C_ == f2["blocks"]["radiomics"].model.C_
    for part in ("clinical", "combined"):
        np.testing.assert_array_equal(f1[part].model.coef_, f2[part].model.coef_)
    np.testing.assert_array_equal(p1["prob_high"].to_numpy(), p2["prob_high"].to_numpy())
    assert (p1.loc[p1["set"] == "test", "label"] != p2.loc[p2["set"] == "test", "label"]).all()


def test_only_too_little_data_is_written_up_as_not_fitted(tmp_path):
    """Too few patients: tables that say so (exit 0). Any other problem, such as a clinical variable the
    cohort lacks, fails the job with its message instead of hiding behind a "not fitted" table."""
    import json

    from ccgrade.errors import InsufficientDataError

    df, y = cohort(n=40, seed=1)
    ids = df["patient_id"].tolist()
    sheet = df[["patient_id", "age", "sex"]].assign(grade_group=np.where(y == 1, "high", "low"))
    sheet.to_csv(tmp_path / "cohort.tsv", sep="\t", index=False)
    rad = df[["patient_id", "f00", "f01"]].assign(status="ok", reason="")
    rad.to_csv(tmp_path / "rad.tsv", sep="\t", index=False)
    with pytest.raises(InsufficientDataError, match="too few"):
        fusion._check_trainable(np.array([0, 0, 0, 1]), 5)

    def fit(train, clinical, out):
        (tmp_path / "split.json").write_text(json.dumps({"folds": [{"train": train, "test": ids[30:]}]}))
        prm = {"clinical": clinical, "seed": 1, "cv": 3, "nested_cv": 0}
        fusion.main(["fit", "--cohort", str(tmp_path / "cohort.tsv"), "--split", str(tmp_path / "split.json"),
                     "--radiomics", str(tmp_path / "rad.tsv"), "--params", json.dumps(prm), *fusion_outputs(tmp_path / out, tmp_path / out / "t", tmp_path / out / "f")])

    fit(ids[:5], [{"name": "age", "type": "continuous"}], "few")
    assert "not fitted: the training set holds" in (tmp_path / "few/t/fusion_models.md").read_text()
    with pytest.raises(ValueError, match=r"clinical variables \['bmi'\] are not columns"):
        fit(ids[:30], [{"name": "bmi", "type": "continuous"}], "nobmi")


def test_an_external_centre_is_scored_by_the_fitted_models_unchanged(tmp_path):
    """The external set's P(high) is the fitted parts applied to its features (block score -> its calibration;
    clinical standardised by the training patients; the combined model on both), nothing re-fitted; a
    patient without radiomics is left out as external; a centre lacking a clinical variable is not scored."""
    df, y = cohort(n=120, seed=5)
    df["grade_group"] = np.where(y == 1, "high", "low")
    cols = [f"f{j:02d}" for j in range(12)]
    clinical = [{"name": "age", "type": "continuous"}, {"name": "sex", "type": "categorical"}]
    main_ids, ext_ids = df["patient_id"][:90].tolist(), df["patient_id"][90:].tolist()
    rad = df[["patient_id"] + cols].assign(status="ok", reason="")
    ext_cohort = df.iloc[90:][["patient_id", "grade_group", "age", "sex"]].copy()
    ext_cohort["patient_id"] = ["X" + p for p in ext_cohort["patient_id"]]  # its own IDs
    ext_rad = rad.iloc[90:].copy()
    ext_rad["patient_id"] = ext_cohort["patient_id"].to_numpy()
    ext_rad.iloc[0, ext_rad.columns.get_loc("status")] = "excluded"
    ext_rad.iloc[0, ext_rad.columns.get_loc("reason")] = "the tumour mask is empty"
    split = (main_ids[:60], main_ids[60:])
    external = {"name": "C", "cohort": ext_cohort, "radiomics": ext_rad.rename(columns=lambda c: c)}
    rad_r = rad.rename(columns={c: c for c in cols})
    pred, fitted, left = fusion.run_fusion(df.iloc[:90], split, radiomics=rad_r, deep=None, clinical=clinical,
                                           seed=2, cv=4, external=external)
    ext = pred[pred["set"] == "external"]
    assert set(ext["patient_id"]) == set(ext_cohort["patient_id"][1:]) and fitted["external"] == "C"
    assert left["reason"].tolist() == ["external: radiomics: the tumour mask is empty"]
    # by hand from the fitted parts: the radiomics block's score through its calibration, the combined model
    e = ext_cohort.iloc[1:].merge(ext_rad.rename(columns={c: f"radiomics:{c}" for c in cols}), on="patient_id")
    bm = fitted["blocks"]["radiomics"]
    s = bm.score(e)
    c_tr = fusion.clinical_matrix(df.iloc[:90][df["patient_id"][:90].isin(split[0])].reset_index(drop=True), clinical)
    c_x = fusion.clinical_matrix(e, clinical, reference=df.iloc[:60])
    want = fitted["combined"].prob(pd.concat([pd.DataFrame({"radiomics_score": s}), c_x], axis=1))
    got = ext[ext["model"] == "combined"].set_index("patient_id").loc[e["patient_id"], "prob_high"].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert list(c_tr.columns) == list(c_x.columns)
    lab = ext[ext["model"] == "combined"].set_index("patient_id")["label"]
    assert (lab == (e.set_index("patient_id")["grade_group"] == "high").astype(int)).all()
    # the fitted parts are those without the external centre
    pred0, fitted0, _ = fusion.run_fusion(df.iloc[:90], split, radiomics=rad_r, deep=None, clinical=clinical, seed=2,
                                          cv=4)
    np.testing.assert_array_equal(fitted0["combined"].model.coef_, fitted["combined"].model.coef_)
    pd.testing.assert_frame_equal(pred0, pred[pred["set"] != "external"].reset_index(drop=True))
    # a centre without a variable the models use: not scored, said why
    _, _, left2 = fusion.run_fusion(df.iloc[:90], split, radiomics=rad_r, deep=None, clinical=clinical, seed=2, cv=4,
                                    external={**external, "cohort": ext_cohort.drop(columns="age")})
    assert "external centre not scored: its sheet lacks the clinical variable(s) ['age']" in left2["reason"].tolist()
    # the table gets the external rows and the figure its panel
    t = fusion_report.model_table(pred)
    r = t[(t["model"] == "combined") & (t["set"] == "external")].iloc[0]
    assert r["auc"] == pytest.approx(roc_auc_score(lab, got), abs=1e-12) and r["n"] == len(got)


def test_the_fusion_job_writes_the_external_centres_rows_and_curves(tmp_path):
    import json

    df, y = cohort(n=110, seed=6)
    ids = df["patient_id"].tolist()
    sheet = df[["patient_id", "age", "sex"]].assign(grade_group=np.where(y == 1, "high", "low"))
    sheet.iloc[:80].to_csv(tmp_path / "cohort.tsv", sep="\t", index=False)
    (tmp_path / "split.json").write_text(json.dumps({"folds": [{"train": ids[:55], "val": [], "test": ids[55:80]}]}))
    cols = [f"f{j:02d}" for j in range(15)]
    rad = df[["patient_id"] + cols].assign(phase="cmp", mode="full", status="ok", reason="", pyradiomics_version="v3")
    rad.iloc[:80].to_csv(tmp_path / "rad.tsv", sep="\t", index=False)
    rad.iloc[80:].to_csv(tmp_path / "ext_rad.tsv", sep="\t", index=False)
    ext = {"name": "C", "cohort": sheet.iloc[80:].to_dict("records")}
    prm = {"clinical": [{"name": "age", "type": "continuous"}, {"name": "sex", "type": "categorical"}], "seed": 3,
           "cv": 4, "thresholds": [0.05, 0.95, 0.05], "nested_cv": 0}
    fusion.main(["fit", "--cohort", str(tmp_path / "cohort.tsv"), "--split", str(tmp_path / "split.json"),
                 "--radiomics", str(tmp_path / "rad.tsv"), "--external", json.dumps(ext), "--external-radiomics",
                 str(tmp_path / "ext_rad.tsv"), "--params", json.dumps(prm),
                 *fusion_outputs(tmp_path / "out", tmp_path / "t", tmp_path / "f")])
    t = pd.read_csv(tmp_path / "t/fusion_models.csv")
    pred = pd.read_csv(tmp_path / "out/predictions.tsv", sep="\t")
    e = pred[(pred["set"] == "external") & (pred["model"] == "combined")]
    assert set(e["patient_id"]) == set(ids[80:])
    r = t[(t["model"] == "combined") & (t["set"] == "external")].iloc[0]
    assert r["n"] == 30 and r["auc"] == pytest.approx(roc_auc_score(e["label"], e["prob_high"]))
    assert "centre C's patients scored by these models unchanged" in (tmp_path / "t/fusion_models.md").read_text()
    assert (tmp_path / "f/fusion_calibration_dca.png").stat().st_size > 1000


def test_missing_clinical_values_are_imputed_from_the_training_patients_and_counted(tmp_path):
    """A missing continuous value takes the training median; a missing categorical value is its own level
    '(missing)' when some training patient lacks it, else the training share of each level (never the
    baseline level); no patient is left out for it, and the table counts the imputed patients per set."""
    import json

    train = pd.DataFrame({"age": [50.0, 60.0, np.nan, 70.0, 80.0], "sex": ["F", "M", "M", None, "M"],
                          "side": ["L", "R", "R", "L", "R"]})
    test = pd.DataFrame({"age": [np.nan, 65.0], "sex": [None, "F"], "side": [None, "L"]})
    clinical = [{"name": "age", "type": "continuous"}, {"name": "sex", "type": "categorical"},
                {"name": "side", "type": "categorical"}]
    c_tr = fusion.clinical_matrix(train, clinical)
    c_te = fusion.clinical_matrix(test, clinical, reference=train)
    assert list(c_tr.columns) == ["age", "sex=M", "sex=(missing)", "side=R"] == list(c_te.columns)
    assert c_tr["age"].tolist() == [50.0, 60.0, 65.0, 70.0, 80.0]  # the training median of 50, 60, 70, 80
    assert c_tr.loc[3, ["sex=M", "sex=(missing)"]].tolist() == [0.0, 1.0]
    assert c_te.loc[0].tolist() == [65.0, 0.0, 1.0, 0.6]  # side: no training patient lacks it -> the share of R
    assert c_te.loc[1].tolist() == [65.0, 0.0, 0.0, 0.0]
    assert fusion.imputed_counts(train, clinical) == {"age": 1, "sex": 1, "side": 0}
    assert fusion.imputed_counts(test, clinical) == {"age": 1, "sex": 1, "side": 1}
    # through the job: patients with missing values are kept, and the table and footnote count them
    df, y = cohort(n=80, seed=4)
    ids = df["patient_id"].tolist()
    sheet = df[["patient_id", "age", "sex"]].assign(grade_group=np.where(y == 1, "high", "low"))
    sheet.loc[[0, 1, 2], "age"] = np.nan
    sheet.loc[[3, 70], "sex"] = np.nan
    sheet.to_csv(tmp_path / "cohort.tsv", sep="\t", index=False)
    (tmp_path / "split.json").write_text(json.dumps({"folds": [{"train": ids[:56], "test": ids[56:]}]}))
    rad = df[["patient_id"] + [f"f{j:02d}" for j in range(12)]].assign(status="ok", reason="")
    rad.to_csv(tmp_path / "rad.tsv", sep="\t", index=False)
    prm = {"clinical": clinical[:2], "seed": 3, "cv": 3, "nested_cv": 0}
    fusion.main(["fit", "--cohort", str(tmp_path / "cohort.tsv"), "--split", str(tmp_path / "split.json"),
                 "--radiomics", str(tmp_path / "rad.tsv"), "--params", json.dumps(prm),
                 *fusion_outputs(tmp_path / "out", tmp_path / "t", tmp_path / "f")])
    assert pd.read_csv(tmp_path / "out/left_out.tsv", sep="\t").empty
    pred = pd.read_csv(tmp_path / "out/predictions.tsv", sep="\t")
    assert set(pred["patient_id"]) == set(ids)
    t = pd.read_csv(tmp_path / "t/fusion_models.csv").set_index(["model", "set"])
    assert t.loc[("clinical", "train"), "imputed_age"] == 3 and t.loc[("combined", "train"), "imputed_sex"] == 1
    assert t.loc[("clinical", "test"), "imputed_age"] == 0 and t.loc[("combined", "test"), "imputed_sex"] == 1
    assert np.isnan(t.loc[("radiomics", "train"), "imputed_age"])
    coef = pd.read_csv(tmp_path / "t/fusion_coefficients.csv")
    assert "sex=(missing)" in set(coef.loc[coef["model"] == "clinical", "term"])
    md = (tmp_path / "t/fusion_models.md").read_text()
    assert "age training 3, test 0; sex training 1, test 1" in md


def test_the_separation_footnote_names_each_fit_for_what_it_is():
    """A calibration not estimated is the row's own risks separating its set; an LR test not estimated is
    the training patients' combined design separating: neither is blamed for the other."""
    t = pd.DataFrame({"model": ["radiomics", "clinical", "radiomics"], "set": ["train", "train", "test"],
                      "cal_note": ["", "", "separation"], "lr_note": ["separation", "separation", ""],
                      "lr_p": [np.nan, np.nan, np.nan]})
    notes = fusion_report.comparison_notes({"radiomics": {}, "clinical": {}}, t, lr_left_out=["deep"])
    cal = [n for n in notes if n.startswith("Calibration slope and intercept not estimated")]
    lr = [n for n in notes if n.startswith("LR test not estimated")]
    assert len(cal) == 1 and "radiomics (test)" in cal[0] and "train" not in cal[0]
    assert len(lr) == 1 and "for radiomics, clinical:" in lr[0] and "radiomics score + clinical variables" in lr[0]
    assert any("without the deep score" in n for n in notes) and any("Left out of the LR tests" in n for n in notes)
