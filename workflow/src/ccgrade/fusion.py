"""Radiomics, deep-feature and clinical models and their fusion (Sun et al.), fitted on training patients only.

Per feature block (radiomics, deep): median imputation, a near-zero-variance filter, a correlation
filter (of each pair with |r| above ``max_corr`` the later column in a fixed order goes), standardisation
and an L1 (LASSO) logistic regression whose penalty is chosen by stratified cross-validation on the
training patients (AUC). Its linear predictor is the block's score (the "radiomics score", "deep
score"). The clinical model is a logistic regression on the configured variables (categorical ones
one-hot). The combined model is a logistic regression on the block scores and the clinical variables;
the training scores it is fitted on are out-of-fold at the LASSO step (each training patient scored by a
block model that did not see it). The deep block is the exception that remains: its features are the
embeddings of a CNN trained on the same training patients, so its training scores are in-sample at the
network step and the combined model over-weights it (the table's footnote says so; the nested CV leaves
it out). Every step's statistics (medians, kept columns, means, SDs, penalties) come from the training
patients: test patients never influence what is selected or how it is scaled.

Comparisons with the combined model are of nested models (each block and the clinical model are parts
of it), for which DeLong's test is invalid (Demler, Pencina & D'Agostino, Stat Med 2012): the tables give
the likelihood-ratio test of the nested designs on the training patients, and the AUC difference with
a paired patient-bootstrap CI on each set; calibration by Hosmer-Lemeshow (g df held out, g - 2 in
sample), logistic recalibration slope and intercept, and Spiegelhalter's z.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from .errors import InsufficientDataError
from .outputs import Outputs


@dataclass
class BlockModel:
    """A fitted feature block: the selection and the LASSO model (all from the training patients)."""
    columns: list[str]
    medians: pd.Series
    kept: list[str]
    mean: np.ndarray
    sd: np.ndarray
    model: LogisticRegression
    selected: list[str] = field(default_factory=list)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        Z = X[self.columns].astype(float).fillna(self.medians)[self.kept].to_numpy()
        return (Z - self.mean) / self.sd

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """The block's score: the LASSO model's linear predictor."""
        return self.model.decision_function(self.transform(X))


def _folds(y: np.ndarray, k: int, seed: int) -> StratifiedKFold:
    k = int(max(2, min(k, np.bincount(y, minlength=2).min())))
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)


def select_columns(X: pd.DataFrame, min_var: float = 1e-8, max_corr: float = 0.9) -> list[str]:
    """Columns left after the variance filter and the greedy correlation filter (in column order)."""
    v = X.var(axis=0, ddof=1)
    cols = [c for c in X.columns if v[c] > min_var]
    if not cols:
        return []
    r = np.abs(np.corrcoef(X[cols].to_numpy(float), rowvar=False))
    r = np.atleast_2d(np.nan_to_num(r))
    keep: list[int] = []
    for j in range(len(cols)):
        if all(r[j, i] <= max_corr for i in keep):
            keep.append(j)
    return [cols[j] for j in keep]


def fit_block(X: pd.DataFrame, y: np.ndarray, *, seed: int, cv: int = 5, min_var: float = 1e-8,
              max_corr: float = 0.9, n_cs: int = 20) -> BlockModel:
    """Fit one block's selection and LASSO logistic model on training patients."""
    cols = list(X.columns)
    med = X.astype(float).median(axis=0)
    Xf = X.astype(float).fillna(med)
    kept = select_columns(Xf, min_var, max_corr)
    if not kept:
        raise InsufficientDataError("no feature varies across the training patients")
    Z = Xf[kept].to_numpy()
    mean, sd = Z.mean(axis=0), Z.std(axis=0, ddof=0)
    sd[sd == 0] = 1.0
    Z = (Z - mean) / sd
    lasso = LogisticRegressionCV(Cs=n_cs, cv=_folds(y, cv, seed), l1_ratios=(1,), solver="liblinear",
                                 scoring="roc_auc", class_weight="balanced", random_state=seed, max_iter=5000,
                                 use_legacy_attributes=False)
    lasso.fit(Z, y)
    coef = lasso.coef_[0]
    if not np.any(coef):  # the CV chose a penalty that drops everything: keep the weakest penalty that does not
        for c in sorted(lasso.Cs_):
            m = LogisticRegression(C=c, l1_ratio=1, solver="liblinear", class_weight="balanced",
                                   random_state=seed, max_iter=5000).fit(Z, y)
            if np.any(m.coef_[0]):
                lasso, coef = m, m.coef_[0]
                break
    return BlockModel(cols, med, kept, mean, sd, lasso, [k for k, c in zip(kept, coef) if c != 0])


def oof_scores(X: pd.DataFrame, y: np.ndarray, *, seed: int, cv: int = 5, **kw) -> np.ndarray:
    """Out-of-fold block scores for the training patients (each fold's block model fitted without it)."""
    out = np.zeros(len(y))
    for tr, te in _folds(y, cv, seed).split(np.zeros(len(y)), y):
        out[te] = fit_block(X.iloc[tr], y[tr], seed=seed, cv=cv, **kw).score(X.iloc[te])
    return out


def clinical_matrix(df: pd.DataFrame, variables: list[dict], reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Numeric design columns: continuous as is (missing -> training median), categorical one-hot
    (levels and medians from ``reference``, the training patients; the first level is the baseline)."""
    ref = df if reference is None else reference
    cols = {}
    for v in variables:
        name = v["name"]
        if v["type"] == "continuous":
            x = pd.to_numeric(df[name], errors="coerce")
            cols[name] = x.fillna(pd.to_numeric(ref[name], errors="coerce").median())
        else:
            levels = sorted(ref[name].dropna().astype(str).unique())
            for lev in levels[1:]:
                cols[f"{name}={lev}"] = (df[name].astype(str) == lev).astype(float)
    return pd.DataFrame(cols, index=df.index)


class Standardised:
    """A logistic regression on standardised columns (means and SDs of the training patients), lightly
    L2-penalised (C = 1) so that small cohorts and separable data still give finite coefficients."""

    def __init__(self, seed: int, c: float = 1.0):
        self.seed, self.c = seed, c

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> "Standardised":
        self.columns = list(X.columns)
        self.mean = X.mean(axis=0).to_numpy()
        self.sd = X.std(axis=0, ddof=0).replace(0, 1).to_numpy()
        # unweighted: its probabilities are risks (calibration, decision curves); class weights would shift them
        self.model = LogisticRegression(C=self.c, max_iter=5000, random_state=self.seed)
        self.model.fit(self._z(X), y)
        return self

    def _z(self, X: pd.DataFrame) -> np.ndarray:
        return (X[self.columns].to_numpy(float) - self.mean) / self.sd

    def prob(self, X: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self._z(X))[:, 1]

    def coefficients(self) -> pd.DataFrame:
        return pd.DataFrame({"term": ["intercept"] + self.columns,
                             "coef_per_sd": [float(self.model.intercept_[0])] + [float(c) for c in self.model.coef_[0]],
                             "train_mean": [np.nan] + list(self.mean), "train_sd": [np.nan] + list(self.sd)})


def fit_fusion(train: pd.DataFrame, test: pd.DataFrame, y_train: np.ndarray, *, blocks: dict[str, list[str]],
               clinical: list[dict], seed: int, cv: int = 5, min_var: float = 1e-8, max_corr: float = 0.9
               ) -> tuple[pd.DataFrame, dict]:
    """Every model's P(high) for the training and test patients, and the fitted parts.

    ``blocks`` maps a block name (radiomics, deep) to its feature columns in ``train``/``test``.
    Models: one per block (its LASSO score through a one-variable logistic calibration), the clinical
    model, and the combined model (block scores + clinical variables).
    """
    kw = {"cv": cv, "min_var": min_var, "max_corr": max_corr}
    preds = {"train": {}, "test": {}}
    fitted: dict = {"blocks": {}}
    score_cols_tr, score_cols_te = {}, {}
    for name, cols in blocks.items():
        bm = fit_block(train[cols], y_train, seed=seed, **kw)
        fitted["blocks"][name] = bm
        s_tr_oof = oof_scores(train[cols], y_train, seed=seed, **kw)
        s_te = bm.score(test[cols])
        score_cols_tr[f"{name}_score"], score_cols_te[f"{name}_score"] = s_tr_oof, s_te
        cal = Standardised(seed).fit(pd.DataFrame({f"{name}_score": s_tr_oof}), y_train)
        preds["train"][name] = cal.prob(pd.DataFrame({f"{name}_score": bm.score(train[cols])}))
        preds["test"][name] = cal.prob(pd.DataFrame({f"{name}_score": s_te}))
    parts_tr, parts_te = [pd.DataFrame(score_cols_tr, index=train.index)], [pd.DataFrame(score_cols_te, index=test.index)]
    if clinical:
        c_tr = clinical_matrix(train, clinical)
        c_te = clinical_matrix(test, clinical, reference=train)
        clin = Standardised(seed).fit(c_tr, y_train)
        fitted["clinical"] = clin
        preds["train"]["clinical"], preds["test"]["clinical"] = clin.prob(c_tr), clin.prob(c_te)
        parts_tr.append(c_tr)
        parts_te.append(c_te)
    if len(blocks) + bool(clinical) > 1:
        X_tr, X_te = pd.concat(parts_tr, axis=1), pd.concat(parts_te, axis=1)
        comb = Standardised(seed).fit(X_tr, y_train)
        fitted["combined"] = comb
        # in-sample training probabilities use the in-sample block scores (as the block rows do)
        X_tr_in = X_tr.copy()
        for name, cols in blocks.items():
            X_tr_in[f"{name}_score"] = fitted["blocks"][name].score(train[cols])
        preds["train"]["combined"], preds["test"]["combined"] = comb.prob(X_tr_in), comb.prob(X_te)
        fitted["lr"] = nested_lr_tests(X_tr, y_train, blocks, c_tr.columns if clinical else [])
    rows = []
    for set_name, df in (("train", train), ("test", test)):
        for model, p in preds[set_name].items():
            rows.append(pd.DataFrame({"patient_id": df["patient_id"].to_numpy(), "set": set_name, "model": model,
                                      "prob_high": p}))
    return pd.concat(rows, ignore_index=True), fitted


def nested_lr_tests(X: pd.DataFrame, y: np.ndarray, blocks: dict, clinical_cols) -> dict[str, dict]:
    """Likelihood-ratio test of each part model (a block's score, the clinical variables) against the
    combined design that contains it, both refitted by unpenalised maximum likelihood on the training
    patients' combined design (out-of-fold block scores). A fit that fails (separation) gives NaN."""
    from . import stats

    parts = {name: [f"{name}_score"] for name in blocks}
    if len(clinical_cols):
        parts["clinical"] = list(clinical_cols)
    out = {}
    for name, cols in parts.items():
        try:
            out[name] = stats.lr_test(y, X[cols].to_numpy(float), X.to_numpy(float))
        except Exception as e:  # noqa: BLE001 - statsmodels raises several kinds on separation
            out[name] = {"lr_chi2": np.nan, "lr_df": np.nan, "lr_p": np.nan, "lr_note": f"not fitted: {e}"}
    return out


# ------------------------------------------------------------------------------ calibration and decisions

def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def hosmer_lemeshow(y: np.ndarray, p: np.ndarray, groups: int = 10, held_out: bool = True) -> dict:
    """Hosmer-Lemeshow (``stats.hosmer_lemeshow``): g df on held-out predictions, g - 2 in sample."""
    from . import stats

    return stats.hosmer_lemeshow(y, p, groups, held_out)


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 5) -> pd.DataFrame:
    """Observed fraction of high grade against mean predicted risk, in quantile bins."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    rows = [{"bin": i, "n": len(idx), "mean_predicted": float(p[idx].mean()), "observed": float(y[idx].mean())}
            for i, idx in enumerate(np.array_split(order, min(bins, len(y)))) if len(idx)]
    return pd.DataFrame(rows)


def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Decision-curve net benefit (Vickers & Elkin 2006): TP/n - FP/n * t / (1 - t), treating p >= t."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    n = len(y)
    out = []
    for t in thresholds:
        treat = p >= t
        tp, fp = int((treat & (y == 1)).sum()), int((treat & (y == 0)).sum())
        out.append(tp / n - fp / n * t / (1 - t))
    return np.array(out)


def treat_all(y: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    prev = float(np.mean(y))
    return prev - (1 - prev) * thresholds / (1 - thresholds)


# ------------------------------------------------------------------------------------------ the pipeline

def deep_feature_table(cell_dir: str, hp: dict, crop_files: list[str]) -> pd.DataFrame:
    """Penultimate-layer embeddings of a trained cell, averaged over each patient's images (one row each)."""
    import torch

    from . import models, train

    import json

    rows, net = [], None
    meta = json.loads((Path(cell_dir) / "meta.json").read_text())
    if meta.get("status") == "not trained":  # e.g. one grade group in a tiny training set: no deep block
        return pd.DataFrame(columns=["patient_id"])
    for f in sorted(crop_files):
        z = np.load(f)
        if str(z["status"]) != "ok" or z["images"].shape[0] == 0:
            continue
        x = torch.from_numpy(z["images"].astype(np.float32))
        if net is None:
            net = train.load_best(cell_dir, hp, in_channels=x.shape[1]).eval()
        with torch.no_grad():
            e = torch.cat([models.embed(net, x[s:s + 64]) for s in range(0, len(x), 64)]).mean(dim=0).numpy()
        rows.append({"patient_id": Path(f).parent.name, **{f"deep_{i:04d}": float(v) for i, v in enumerate(e)}})
    return pd.DataFrame(rows)


def _load_split(path: str, fold: int = 0) -> tuple[list[str], list[str]]:
    import json

    f = json.loads(Path(path).read_text())["folds"][fold]
    return sorted(f["train"] + f.get("val", [])), sorted(f["test"])  # validation patients join training


def join_blocks(cohort: pd.DataFrame, *, radiomics: pd.DataFrame | None, deep: pd.DataFrame | None,
                clinical: list[dict]) -> tuple[pd.DataFrame, dict[str, list[str]], pd.DataFrame]:
    """One row per patient with every block's features (columns ``block:feature``) and the clinical
    variables; returns (table, the blocks' columns, the patients left out with the reason)."""
    from .radiomics import feature_columns

    missing = [v["name"] for v in clinical if v["name"] not in cohort]
    if missing:
        raise ValueError(f"clinical variables {missing} are not columns of the cohort")
    df = cohort[["patient_id", "grade_group"] + [v["name"] for v in clinical]].copy()
    blocks: dict[str, list[str]] = {}
    left = []
    for name, table in (("radiomics", radiomics), ("deep", deep)):
        if table is None:
            continue
        t = table
        if "status" in t:
            bad = t[t["status"] != "ok"]
            left += [{"patient_id": p, "reason": f"{name}: {r}"} for p, r in zip(bad["patient_id"], bad["reason"])]
            t = t[t["status"] == "ok"]
        cols = feature_columns(t) if name == "radiomics" else [c for c in t.columns if c != "patient_id"]
        if not cols:  # an empty block (e.g. its network could not be trained) is left out of the fusion
            continue
        blocks[name] = [f"{name}:{c}" for c in cols]
        df = df.merge(t[["patient_id"] + cols].rename(columns={c: f"{name}:{c}" for c in cols}), on="patient_id",
                      how="left")
        missing = df.loc[df[blocks[name]].isna().all(axis=1), "patient_id"]
        left += [{"patient_id": p, "reason": f"no {name} features"} for p in missing if p not in {r["patient_id"] for r in left}]
    drop = {r["patient_id"] for r in left}
    df = df[~df["patient_id"].isin(drop)].reset_index(drop=True)
    return df, blocks, pd.DataFrame(left, columns=["patient_id", "reason"])


def run_fusion(cohort: pd.DataFrame, split: tuple[list[str], list[str]], *, radiomics: pd.DataFrame | None,
               deep: pd.DataFrame | None, clinical: list[dict], seed: int, cv: int = 5, max_corr: float = 0.9,
               min_var: float = 1e-8) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Join the blocks per patient, fit on the split's training patients, predict both sets.

    Returns (predictions, fitted parts, the patients left out with the reason)."""
    df, blocks, left = join_blocks(cohort, radiomics=radiomics, deep=deep, clinical=clinical)
    train_ids, test_ids = split
    tr = df[df["patient_id"].isin(train_ids)].reset_index(drop=True)
    te = df[df["patient_id"].isin(test_ids)].reset_index(drop=True)
    y_tr = (tr["grade_group"] == "high").astype(int).to_numpy()
    _check_trainable(y_tr, cv)
    pred, fitted = fit_fusion(tr, te, y_tr, blocks=blocks, clinical=clinical, seed=seed, cv=cv, min_var=min_var,
                              max_corr=max_corr)
    labels = dict(zip(df["patient_id"], (df["grade_group"] == "high").astype(int)))
    pred.insert(2, "label", pred["patient_id"].map(labels))
    return pred, fitted, left


NESTED_SET = "nested CV"


def nested_cv(df: pd.DataFrame, blocks: dict[str, list[str]], *, clinical: list[dict], seed: int, outer: int,
              cv: int = 5, max_corr: float = 0.9, min_var: float = 1e-8) -> pd.DataFrame:
    """Nested cross-validation of the whole fusion pipeline, for cohorts too small for one holdout.

    Outer: ``outer`` stratified folds of all patients (seeded). In each, every step (imputation, filters,
    standardisation, the LASSO penalty by the inner ``cv``-fold CV, the out-of-fold block scores, the
    clinical and combined models) is fitted on the other folds alone and predicts the held-out fold. Each
    patient is predicted once, by a pipeline that never saw their label. Returns the pooled
    out-of-fold predictions with their outer fold.
    """
    y = (df["grade_group"] == "high").astype(int).to_numpy()
    _check_trainable(y, cv)
    k = int(min(outer, np.bincount(y, minlength=2).min()))
    rows = []
    for fold, (tr, te) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
                                    .split(np.zeros(len(y)), y)):
        _check_trainable(y[tr], cv)
        pred, _ = fit_fusion(df.iloc[tr], df.iloc[te], y[tr], blocks=blocks, clinical=clinical, seed=seed, cv=cv,
                             min_var=min_var, max_corr=max_corr)
        pred = pred[pred["set"] == "test"].assign(set=NESTED_SET, fold=fold)
        pred.insert(2, "label", y[te][pd.Index(df["patient_id"].iloc[te]).get_indexer(pred["patient_id"])])
        rows.append(pred)
    return pd.concat(rows, ignore_index=True)


def nested_table(pred: pd.DataFrame, opt: dict | None = None) -> pd.DataFrame:
    """Per model: the pooled out-of-fold summary (model_table) and the outer folds' AUC mean and SD."""
    from sklearn.metrics import roc_auc_score

    t = model_table(pred, opt=opt)
    per_fold = {m: [roc_auc_score(d["label"], d["prob_high"]) for _, d in g.groupby("fold") if d["label"].nunique() == 2]
                for m, g in pred.groupby("model")}
    t["outer_folds"] = int(pred["fold"].nunique())
    t["fold_auc_mean"] = t["model"].map(lambda m: float(np.mean(per_fold[m])))
    t["fold_auc_sd"] = t["model"].map(lambda m: float(np.std(per_fold[m], ddof=1)) if len(per_fold[m]) > 1 else np.nan)
    return t


MODEL_ORDER = ["radiomics", "deep", "clinical", "combined"]


def model_table(pred: pd.DataFrame, lr: dict | None = None, opt: dict | None = None) -> pd.DataFrame:
    """Per model and set: AUC (DeLong and bootstrap CIs), accuracy, sensitivity, specificity, Brier and
    calibration (``stats.calibration``: held out unless the set is ``train``); against the combined model,
    the AUC difference (combined - model) with its paired patient-bootstrap CI, and on the training rows
    the likelihood-ratio test of the nested designs (``lr``, from ``fit_fusion``) with adjusted P values."""
    from . import stats
    from .evaluate import adjust_columns, binary_summary, stats_options

    o = stats_options(opt)
    rows = []
    models_ = [m for m in MODEL_ORDER if m in set(pred["model"])]
    for set_name in dict.fromkeys(pred["set"]):
        s = pred[pred["set"] == set_name]
        comb = s[s["model"] == "combined"].set_index("patient_id")
        for m in models_:
            t = s[s["model"] == m].set_index("patient_id")
            y, p = t["label"].to_numpy(int), t["prob_high"].to_numpy(float)
            row = {"model": m, "set": set_name, **binary_summary(y, p, opt=o), "brier": brier(y, p),
                   **stats.calibration(y, p, held_out=set_name != "train"),
                   "delta_auc_vs_combined": np.nan, "delta_auc_boot_low": np.nan, "delta_auc_boot_high": np.nan,
                   "lr_chi2": np.nan, "lr_df": np.nan, "lr_p": np.nan, "lr_note": ""}
            if m != "combined" and len(comb) and len(np.unique(y)) == 2:
                c = comb.loc[t.index, "prob_high"].to_numpy(float)
                b = stats.cluster_bootstrap(y, np.vstack([c, p]), n_boot=o["n_boot"], seed=0)
                auc = stats.delong(y, np.vstack([c, p]))[0]
                row.update(delta_auc_vs_combined=float(auc[0] - auc[1]) + 0.0, delta_auc_boot_low=0.0 - float(b["diff_high"][1]),
                           delta_auc_boot_high=0.0 - float(b["diff_low"][1]))
            if lr and set_name == "train" and m in lr:
                row.update({k: lr[m].get(k, "") for k in ("lr_chi2", "lr_df", "lr_p", "lr_note")})
            rows.append(row)
    t = pd.DataFrame(rows)
    if len(t):
        adjust_columns(t, ["lr_p"], o)
    return t


def _table_view(t: pd.DataFrame) -> pd.DataFrame:
    """The Markdown view of a model table: AUC with its DeLong CI and the rounded summaries."""
    from .evaluate import _ci_text, _fmt

    view = pd.DataFrame({"Model": t["model"], "Set": t["set"], "n": t["n"], "AUC (95% CI)": [_ci_text(r) for _, r in t.iterrows()],
                         **{c.capitalize(): t[c].map(_fmt) for c in ("accuracy", "sensitivity", "specificity", "brier")},
                         "Calibration slope / intercept": [f"{_fmt(a)} / {_fmt(b)}" if a == a else "" for a, b in
                                                           zip(t["cal_slope"], t["cal_intercept"])],
                         "Hosmer-Lemeshow P (df)": [f"{_fmt(p)} ({d})" if p == p else "" for p, d in zip(t["hl_p"], t["hl_df"])],
                         "Spiegelhalter P": t["spiegelhalter_p"].map(_fmt),
                         "ΔAUC combined − model (95% CI)": [
                             f"{_fmt(d)} ({_fmt(lo)} to {_fmt(hi)})" if d == d else "" for d, lo, hi in
                             zip(t["delta_auc_vs_combined"], t["delta_auc_boot_low"], t["delta_auc_boot_high"])]})
    if t["lr_p"].notna().any():
        h = [c for c in t.columns if c.startswith("lr_p_")]
        view["LR test P vs combined"] = t["lr_p"].map(_fmt)
        for c in h:
            view[f"LR P ({c.removeprefix('lr_p_')})"] = t[c].map(_fmt)
    if "fold_auc_mean" in t:
        view.insert(4, "Outer folds' AUC (mean ± SD)",
                    [f"{_fmt(m)} ± {_fmt(sd)}" for m, sd in zip(t["fold_auc_mean"], t["fold_auc_sd"])])
    return view


NESTED_TITLE = "Nested cross-validation of the fusion pipeline (pooled out-of-fold predictions)"


def comparison_notes(lr: bool, t: pd.DataFrame | None = None) -> list[str]:
    """Footnotes on how the fusion tables compare and calibrate models (``t``: the model table, whose
    separated fits are named)."""
    notes = ["Each model is nested in the combined one, so the combined model is not compared by DeLong's test "
             "(invalid for nested models): ΔAUC = combined − model on the same patients, 95% CI from a paired "
             "bootstrap of patients (class-stratified)."]
    if lr:
        notes.append("LR test (training rows): likelihood-ratio test of the model's design against the combined design "
                     "containing it, both refitted by unpenalised maximum likelihood on the training patients (out-of-fold "
                     "block scores); family: these LR tests, Holm-adjusted (lr_p_holm).")
    notes.append("Calibration: slope and intercept by logistic recalibration (ideal 1 and 0); Hosmer-Lemeshow in 10 "
                 "groups of equal size by predicted risk (fewer when there are fewer patients), chi-square over both "
                 "outcomes with g df on held-out predictions and g − 2 on the training patients; a group expecting "
                 "none of an observed outcome is counted (hl_degenerate), never skipped; Spiegelhalter's z test.")
    if t is not None and len(t):
        sep = [f"{m} ({s})" for m, s, a, b in zip(t["model"], t["set"], t["cal_note"], t.get("lr_note", [""] * len(t)))
               if "separation" in (a, b)]
        if sep:
            notes.append("Not estimated where the predicted risks separate the classes completely (no finite maximum "
                         "likelihood; Konis's linear-programming check): " + ", ".join(sep) + ". Their calibration slope, "
                         "intercept and LR test are left blank rather than given as a diverged fit.")
    return notes


def write_nested(pred: pd.DataFrame, out: Outputs, *, outer: int, cv: int, dropped: list[str],
                 opt: dict | None = None) -> pd.DataFrame:
    """The nested cross-validation table (CSV + Markdown, role ``nested_table``)."""
    t = nested_table(pred, opt)
    notes = [f"Every patient predicted once, by the whole pipeline refitted on the other {outer - 1} of {outer} "
             f"stratified outer folds (inner {cv}-fold CV for the LASSO penalty and the out-of-fold block scores); "
             "AUC 95% CI by DeLong on the pooled out-of-fold predictions (bootstrap CI in the CSV); threshold 0.5."
             ] + comparison_notes(lr=False, t=t)
    if dropped:
        notes.append(f"Left out of the nested CV: the {', '.join(dropped)} block (its network was trained on a fixed "
                     "split, so its embeddings of that split's training patients carry their labels).")
    out.table("nested_table", t, title=NESTED_TITLE, markdown=_table_view(t), footnotes=notes)
    return t


def write_outputs(pred: pd.DataFrame, fitted: dict, left: pd.DataFrame, out: Outputs,
                  thresholds: np.ndarray, opt: dict | None = None) -> pd.DataFrame:
    """Fusion tables (models, coefficients) and figures (ROC, calibration and decision curves), written
    to the rule's files by role (``table``, ``coef``, ``roc``, ``dca``)."""
    from .evaluate import _fmt, roc_figure
    from .outputs import pyplot

    t = model_table(pred, fitted.get("lr"), opt)
    view = _table_view(t)
    notes = ["Fitted on the training patients only (validation patients join them); threshold 0.5. AUC 95% CI by "
             "DeLong (bootstrap CI in the CSV). Block models: LASSO logistic regression on the block's filtered, "
             "standardised features; combined: logistic regression on the out-of-fold block scores and the clinical "
             "variables."] + comparison_notes(lr=bool(fitted.get("lr")), t=t)
    if "deep" in fitted.get("blocks", {}):
        notes.append("In-sample deep block: its features are embeddings of a CNN trained on these same training "
                     "patients, so its training scores (out-of-fold only at the LASSO step) are optimistic and the "
                     "combined model over-weights it; its test rows are honest. The nested CV leaves it out.")
    if len(left):
        notes.append(f"{len(left)} patients left out (see {out['left_out'].name} in {out['left_out'].parent}).")
    out.table("table", t, title="Radiomics, deep and clinical models and their fusion (Sun et al.)",
                markdown=view, footnotes=notes)
    coef = []
    if "combined" in fitted:
        coef.append(fitted["combined"].coefficients().assign(model="combined"))
    if "clinical" in fitted:
        coef.append(fitted["clinical"].coefficients().assign(model="clinical"))
    for name, bm in fitted["blocks"].items():
        c = bm.model.coef_[0]
        coef.append(pd.DataFrame({"term": ["intercept"] + [k for k, v in zip(bm.kept, c) if v != 0],
                                  "coef_per_sd": [float(bm.model.intercept_[0])] + [float(v) for v in c if v != 0]})
                    .assign(model=f"{name} score"))
    ct = pd.concat(coef, ignore_index=True) if coef else pd.DataFrame(columns=["model", "term", "coef_per_sd"])
    ct["odds_ratio_per_sd"] = np.exp(ct["coef_per_sd"])
    ct = ct[["model", "term", "coef_per_sd", "odds_ratio_per_sd"] + [c for c in ("train_mean", "train_sd") if c in ct]]
    view = ct.assign(**{c: ct[c].map(_fmt) for c in ("coef_per_sd", "odds_ratio_per_sd")},
                     **{c: ct[c].map(lambda v: "" if v != v else f"{v:.4g}") for c in ("train_mean", "train_sd") if c in ct})
    out.table("coef", ct, markdown=view, title="Model coefficients (per training SD; nomogram points "
                "are proportional to coefficient x standardised value)",
                footnotes=["Block scores are LASSO linear predictors; their terms are the selected features."])
    sets = ("train", "test")
    roc_figure([(f"ROC, {s}ing set", [(m, *(lambda d: (d["label"].to_numpy(int), d["prob_high"].to_numpy(float)))(
        pred[(pred["set"] == s) & (pred["model"] == m)])) for m in MODEL_ORDER if m in set(pred["model"])])
        for s in sets], out["roc"], pdf=out["roc_pdf"])
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    test = pred[pred["set"] == "test"]
    for m in MODEL_ORDER:
        d = test[test["model"] == m]
        if d.empty:
            continue
        cal = calibration_curve(d["label"].to_numpy(), d["prob_high"].to_numpy())
        axes[0].plot(cal["mean_predicted"], cal["observed"], "o-", label=m)
        axes[1].plot(thresholds, net_benefit(d["label"].to_numpy(), d["prob_high"].to_numpy(), thresholds), label=m)
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set_xlabel("predicted risk of high grade")
    axes[0].set_ylabel("observed fraction high grade")
    axes[0].set_title("Calibration, test set (quantile bins)", fontsize=9)
    y = test.drop_duplicates("patient_id")["label"].to_numpy()
    if len(y):
        axes[1].plot(thresholds, treat_all(y, thresholds), "--", color="grey", label="treat all")
    axes[1].axhline(0, color="black", lw=0.8, label="treat none")
    top = max(0.05, float(np.mean(y)) if len(y) else 0.05)
    axes[1].set_ylim(-0.05, top * 1.2)
    axes[1].set_xlabel("threshold probability")
    axes[1].set_ylabel("net benefit")
    axes[1].set_title("Decision curves, test set", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.figure("dca", fig)
    plt.close(fig)
    return t


def not_fitted(reason: str, out: Outputs, left: pd.DataFrame | None = None) -> None:
    """The fusion outputs when the models cannot be fitted (e.g. a tiny cohort), each saying why."""
    from .outputs import pyplot, write_tsv

    write_tsv(out["predictions"], pd.DataFrame(columns=["patient_id", "set", "label", "model", "prob_high"]))
    write_tsv(out["left_out"], left if left is not None else pd.DataFrame(columns=["patient_id", "reason"]))
    write_tsv(out["selected"], pd.DataFrame(columns=["block", "feature", "selected"]))
    note = [f"not fitted: {reason}"]
    out.table("table", pd.DataFrame(columns=["model", "set", "n", "auc"]), footnotes=note,
              title="Radiomics, deep and clinical models and their fusion (Sun et al.)")
    out.table("coef", pd.DataFrame(columns=["model", "term", "coef_per_sd"]), footnotes=note, title="Model coefficients")
    plt = pyplot()
    for role in ("roc", "dca"):
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, note[0], ha="center", va="center", wrap=True)
        out.figure(role, fig)
        plt.close(fig)


def _check_trainable(y: np.ndarray, cv: int) -> None:
    counts = np.bincount(y, minlength=2)
    if counts.min() < max(2, min(cv, 3)) * 2:
        raise InsufficientDataError(f"the training set holds {counts[0]} low- and {counts[1]} high-grade patients: "
                                    f"too few to select features by {cv}-fold cross-validation")


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    from .outputs import read_table, write_tsv

    ap = argparse.ArgumentParser(description="Deep features, and the radiomics/deep/clinical fusion models.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("deep", help="per-patient embeddings of a trained cell")
    d.add_argument("--cell", required=True)
    d.add_argument("--hp", required=True)
    d.add_argument("--crops", nargs="+", required=True)
    d.add_argument("--out", required=True)
    f = sub.add_parser("fit", help="fit and evaluate the fusion models")
    f.add_argument("--cohort", required=True)
    f.add_argument("--split", required=True)
    f.add_argument("--radiomics")
    f.add_argument("--deep")
    f.add_argument("--params", required=True, help="JSON: clinical [{name, type}], seed, cv, max_corr, thresholds")
    f.add_argument("--outputs", required=True, help="JSON {role: path}: the files the rule declares (predictions, "
                   "left_out, selected, table, coef, roc, dca with their _md/_pdf; nested, nested_table when nested_cv)")
    a = ap.parse_args(argv)
    if a.cmd == "deep":
        t = deep_feature_table(a.cell, json.loads(a.hp), a.crops)
        write_tsv(a.out, t)
        print(f"{len(t)} patients, {t.shape[1] - 1} deep features")
        return
    prm = json.loads(a.params)
    cohort = read_table(a.cohort)
    rad = read_table(a.radiomics) if a.radiomics else None
    deep = read_table(a.deep) if a.deep else None
    out = Outputs.from_json(a.outputs)
    try:
        pred, fitted, left = run_fusion(cohort, _load_split(a.split), radiomics=rad, deep=deep,
                                        clinical=prm["clinical"], seed=prm["seed"], cv=prm.get("cv", 5),
                                        max_corr=prm.get("max_corr", 0.9))
    except InsufficientDataError as e:  # too few patients of a grade to select and cross-validate: say so
        not_fitted(str(e), out)
        print(f"not fitted: {e}")
    else:
        write_tsv(out["predictions"], pred)
        write_tsv(out["left_out"], left)
        sel = [{"block": n, "feature": f, "selected": f in bm.selected} for n, bm in fitted["blocks"].items()
               for f in bm.kept]
        write_tsv(out["selected"], pd.DataFrame(sel, columns=["block", "feature", "selected"]))
        lo, hi, step = prm.get("thresholds", [0.01, 0.99, 0.01])
        t = write_outputs(pred, fitted, left, out, np.arange(lo, hi + 1e-9, step),
                          opt=prm.get("statistics"))
        print(t[["model", "set", "n", "auc", "auc_ci_low", "auc_ci_high"]].to_string(index=False))
    outer = int(prm.get("nested_cv", 0))
    if outer:  # the nested CV runs over all patients: it does not need the holdout fit to have worked
        _run_nested(cohort, rad, prm, outer, out, dropped=["deep"] if deep is not None else [])


def _run_nested(cohort: pd.DataFrame, rad: pd.DataFrame | None, prm: dict, outer: int, out: Outputs,
                dropped: list[str]) -> None:
    from .outputs import write_tsv

    cv = prm.get("cv", 5)
    df, blocks, _ = join_blocks(cohort, radiomics=rad, deep=None, clinical=prm["clinical"])
    try:
        pred = nested_cv(df, blocks, clinical=prm["clinical"], seed=prm["seed"], outer=outer, cv=cv,
                         max_corr=prm.get("max_corr", 0.9))
    except InsufficientDataError as e:
        write_tsv(out["nested"], pd.DataFrame(columns=["patient_id", "set", "label", "model", "prob_high", "fold"]))
        out.table("nested_table", pd.DataFrame(columns=["model", "set", "n", "auc"]), title=NESTED_TITLE,
                  footnotes=[f"not fitted: {e}"])
        print(f"nested CV not fitted: {e}")
        return
    write_tsv(out["nested"], pred)
    t = write_nested(pred, out, outer=int(pred["fold"].nunique()), cv=cv, dropped=dropped,
                     opt=prm.get("statistics"))
    print(t[["model", "set", "n", "auc", "auc_ci_low", "auc_ci_high", "fold_auc_mean"]].to_string(index=False))


if __name__ == "__main__":
    main()
