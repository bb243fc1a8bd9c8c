"""Harrell's bootstrap optimism correction of the fusion's training rows (``fusion.optimism``): the module's
optimism is an independent hand-written bootstrap's; noise features are optimistic; off by default."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pandas as pd
import statsmodels.api as sm
from sklearn.metrics import roc_auc_score

from ccgrade.fusion import model as fusion, optimism, report as fusion_report
from test_fusion import fusion_outputs

CLINICAL = [{"name": "age", "type": "continuous"}]


def small_cohort(n: int = 36, seed: int = 0, signal: float = 1.0, features: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """A few patients and features (cv = 2 keeps each refit under a second): f0 carries ``signal``, age a little."""
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (n // 2))[rng.permutation(n)]
    feats = {f"f{j}": rng.normal(size=n) for j in range(features)}
    feats["f0"] = feats["f0"] + signal * y
    df = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], **feats, "age": rng.normal(60, 10, n) + 3 * y,
                       "grade_group": np.where(y == 1, "high", "low")})
    return df, y


def hand_slope(y: np.ndarray, p: np.ndarray) -> float:
    """Logistic recalibration slope: b of logit P(y) = a + b logit(p), by statsmodels' Logit."""
    lp = np.log(p / (1 - p))
    return float(sm.Logit(y, sm.add_constant(lp)).fit(disp=0).params[1])


def hand_metrics(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.array([roc_auc_score(y, p), hand_slope(y, p), np.mean((p - y) ** 2)])


def rows(pred: pd.DataFrame, set_name: str, model: str) -> np.ndarray:
    return pred[(pred["set"] == set_name) & (pred["model"] == model)]["prob_high"].to_numpy(float)


def test_the_optimism_is_a_hand_written_bootstrap_of_the_whole_pipeline():
    """Resample b: numpy's default_rng((seed, b)) draws, low grade then high, as many patients of each grade as
    there are, with replacement; fit_fusion refitted on them; each model's AUC, slope and Brier on the resample
    minus on the original training patients, averaged; corrected = apparent - optimism."""
    df, y = small_cohort()
    kw = {"blocks": {"radiomics": [f"f{j}" for j in range(5)]}, "clinical": CLINICAL, "seed": 4, "cv": 2}
    pred, _ = fusion.fit_fusion(df, df, y, **kw)
    n_boot = 2
    got = optimism.bootstrap_optimism(df, y, pred, partial(fusion.fit_fusion, **kw), n_boot=n_boot, seed=4)
    diffs = {m: [] for m in ("radiomics", "clinical", "combined")}
    for b in range(1, n_boot + 1):
        rng = np.random.default_rng((4, b))
        idx = np.concatenate([rng.choice(np.flatnonzero(y == 0), size=int((y == 0).sum()), replace=True),
                              rng.choice(np.flatnonzero(y == 1), size=int((y == 1).sum()), replace=True)])
        boot, _ = fusion.fit_fusion(df.iloc[idx].reset_index(drop=True), df, y[idx], **kw)
        for m in diffs:
            diffs[m].append(hand_metrics(y[idx], rows(boot, "train", m)) - hand_metrics(y, rows(boot, "test", m)))
    assert got["n_boot"] == n_boot and got["skipped"] == {}
    for m, d in diffs.items():
        opt = np.mean(d, axis=0)
        apparent = hand_metrics(y, rows(pred, "train", m))
        r = got["models"][m]
        assert r["optimism_boot_ok"] == n_boot
        np.testing.assert_allclose([r["auc_optimism"], r["slope_optimism"], r["brier_optimism"]], opt, atol=1e-6)
        np.testing.assert_allclose([r["auc_corrected"], r["slope_corrected"], r["brier_corrected"]],
                                   apparent - opt, atol=1e-6)


def test_noise_features_are_optimistic_and_the_correction_lowers_their_auc():
    df, y = small_cohort(seed=4, signal=0.0, features=8)
    kw = {"blocks": {"radiomics": [f"f{j}" for j in range(8)]}, "clinical": [], "seed": 1, "cv": 2}
    pred, _ = fusion.fit_fusion(df, df, y, **kw)
    r = optimism.bootstrap_optimism(df, y, pred, partial(fusion.fit_fusion, **kw), n_boot=4, seed=1)["models"]
    apparent = roc_auc_score(y, rows(pred, "train", "radiomics"))
    assert r["radiomics"]["auc_optimism"] > 0 and r["radiomics"]["auc_corrected"] < apparent
    assert r["radiomics"]["brier_corrected"] > np.mean((rows(pred, "train", "radiomics") - y) ** 2)


def test_a_failed_fit_or_an_undefined_slope_skips_the_resample_and_is_counted():
    """A refit that raises InsufficientDataError is skipped for every model, with its reason; a model whose
    risks separate the resample's classes (no finite slope) skips it for that model alone."""
    from ccgrade.errors import InsufficientDataError

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 10)
    calls = []

    def fit(train, test, y_b):
        calls.append(len(calls))
        if len(calls) == 2:
            raise InsufficientDataError("no feature varies across the training patients")
        sets = [("train", y_b), ("test", y)]
        return pd.DataFrame([{"set": s, "model": m, "prob_high": p} for s, yy in sets for m in ("sep", "noisy")
                             for p in (0.3 + 0.4 * yy if m == "sep" else rng.uniform(0.2, 0.8, len(yy)))]
                            ).sort_values(["set", "model"], kind="stable"), {}

    pred, _ = fit(None, None, y)
    calls.clear()
    r = optimism.bootstrap_optimism(pd.DataFrame({"x": np.zeros(20)}), y, pred, fit, n_boot=4, seed=0)
    assert len(calls) == 4 and r["skipped"] == {"no feature varies across the training patients": 1}
    assert r["models"]["noisy"]["optimism_boot_ok"] == 3 and np.isfinite(r["models"]["noisy"]["auc_corrected"])
    assert r["models"]["sep"]["optimism_boot_ok"] == 0 and np.isnan(r["models"]["sep"]["auc_corrected"])
    note = optimism.note(r, deep_in_sample=True)
    assert "1 skipped (no feature varies" in note and "noisy 3, sep 0" in note and "CNN is not retrained" in note


def test_off_by_default_and_through_the_job_when_asked(tmp_path):
    """optimism_boot 0 (or absent): no optimism, no new column, no footnote. optimism_boot B: the training rows
    of fusion_models.csv get the corrected columns, the test rows NaN; the Markdown its column and footnote."""
    df, y = small_cohort(n=48, seed=5)
    ids = df["patient_id"].tolist()
    rad = df[["patient_id"] + [f"f{j}" for j in range(5)]].assign(status="ok", reason="")
    cohort = df[["patient_id", "grade_group", "age"]]
    pred, fitted, left = fusion.run_fusion(cohort, (ids[:36], ids[36:]), radiomics=rad, deep=None, clinical=CLINICAL,
                                           seed=2, cv=2)
    assert "optimism" not in fitted
    t = fusion_report.model_table(pred, fitted.get("lr"))
    assert optimism.add_columns(t, fitted.get("optimism")) is t and not set(optimism.COLUMNS) & set(t.columns)
    assert "AUC corrected" not in fusion_report._table_view(t)
    assert not any("optimism" in n for n in fusion_report._model_notes(pred, fitted, left, None, t))
    cohort.to_csv(tmp_path / "cohort.tsv", sep="\t", index=False)
    rad.to_csv(tmp_path / "rad.tsv", sep="\t", index=False)
    (tmp_path / "split.json").write_text(json.dumps({"folds": [{"train": ids[:36], "test": ids[36:]}]}))
    prm = {"clinical": CLINICAL, "seed": 2, "cv": 2, "nested_cv": 0, "optimism_boot": 1}
    fusion.main(["fit", "--cohort", str(tmp_path / "cohort.tsv"), "--split", str(tmp_path / "split.json"),
                 "--radiomics", str(tmp_path / "rad.tsv"), "--params", json.dumps(prm),
                 *fusion_outputs(tmp_path / "out", tmp_path / "t", tmp_path / "f")])
    t = pd.read_csv(tmp_path / "t/fusion_models.csv")
    train, test = t[t["set"] == "train"], t[t["set"] == "test"]
    assert (train["optimism_boot_ok"] == 1).all() and train["auc_corrected"].notna().all()
    assert test[list(optimism.COLUMNS)].isna().all().all()
    assert np.allclose(train["auc_corrected"], train["auc"] - train["auc_optimism"])
    md = (tmp_path / "t/fusion_models.md").read_text()
    assert "AUC corrected" in md and "Harrell's bootstrap" in md and "B = 1" in md
    assert "need no correction" in md and "CNN is not retrained" not in md  # no deep block here
