"""Radiomics, deep-feature and clinical models and their fusion (Sun et al.), fitted on training patients only.

Per feature block (radiomics, deep): median imputation, a near-zero-variance filter, a correlation
filter (of each pair with |r| above ``max_corr`` the later column in a fixed order goes), standardisation
and an L1 (LASSO) logistic regression whose penalty is chosen by stratified cross-validation on the
training patients (AUC). Its linear predictor is the block's score (the "radiomics score", "deep
score"); the block's model is that score through a one-variable logistic calibration fitted on the
training patients' out-of-fold scores. The clinical model is a logistic regression on the configured
variables (categorical ones one-hot). The combined model is a logistic regression on the block scores and
the clinical variables; the training scores it is fitted on are out-of-fold at the LASSO step (each
training patient scored by a block model that did not see it). The deep block is the exception by
default: its features are the embeddings of a CNN trained on the same training patients, so its training
scores are in-sample at the network step and the combined model over-weights it (the table's footnote
says so; the nested CV and the likelihood-ratio tests leave it out). With ``fusion.deep.oof_folds`` the
deep block is one out-of-fold CNN score per patient instead (``fusion.oof``) and joins the LR tests. The training rows of every model are
in-sample predictions (the block scores of the block models fitted on all training patients); with
``fusion.optimism_boot`` they also get Harrell's bootstrap optimism-corrected AUC, slope and Brier
(``fusion.optimism``). Every
step's statistics (medians, levels, kept columns, means, SDs, penalties) come from the training patients:
test patients never influence what is selected or how it is scaled.

Missing values are imputed, never a reason to leave a patient out (``clinical_matrix``): a continuous
clinical variable takes the training median, a categorical one its own level ``(missing)``; a block's
missing feature value takes the training median (a patient without any of a block's features is left out,
with the reason). How many patients of each set were imputed, per clinical variable, is recorded
(``fitted["imputed"]``: the table's ``imputed_<variable>`` columns and footnote).

Comparisons with the combined model are of nested models (each block and the clinical model are parts
of it), for which DeLong's test is invalid (Demler, Pencina & D'Agostino, Stat Med 2012): the tables give
the likelihood-ratio test of the nested designs on the training patients (the in-sample deep block left
out unless out of fold, ``IN_SAMPLE_BLOCKS``), and the AUC difference with a paired patient-bootstrap CI on each set;
calibration by Hosmer-Lemeshow (g df held out, g - 2 in sample), logistic recalibration slope and
intercept, and Spiegelhalter's z. This module holds the feature blocks, the risk models, the pipeline and
its command line; ``fusion_report`` writes the tables and figures, ``decision`` the net benefit and
calibration curve, ``stats`` the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from ccgrade.errors import InsufficientDataError
from ccgrade.fusion.optimism import bootstrap_optimism
from ccgrade.fusion.report import NESTED_TITLE, not_fitted, write_nested, write_outputs
from ccgrade.outputs import Outputs


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


MISSING_LEVEL = "(missing)"
#: blocks whose training scores are in-sample (the CNN was trained on the training patients it embeds): left
#: out of the likelihood-ratio tests until out-of-fold deep cells exist
IN_SAMPLE_BLOCKS = ("deep",)


def missing_values(x: pd.Series, kind: str) -> pd.Series:
    """Which values of a clinical variable are missing (continuous: not a number; categorical: empty)."""
    if kind == "continuous":
        return pd.to_numeric(x, errors="coerce").isna()
    return x.isna() | (x.astype(str).str.strip() == "")


def imputed_counts(df: pd.DataFrame, variables: list[dict]) -> dict[str, int]:
    """Per clinical variable, how many of ``df``'s patients lack it (each imputed by ``clinical_matrix``)."""
    return {v["name"]: int(missing_values(df[v["name"]], v["type"]).sum()) for v in variables}


def clinical_matrix(df: pd.DataFrame, variables: list[dict], reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Numeric design columns, every statistic from ``reference`` (the training patients; default ``df``):
    continuous as is, categorical one-hot on the training patients' levels (the first is the baseline).

    Missing values (imputed, no patient left out): a continuous variable takes the training median; a
    categorical one is its own level, the dummy ``name=(missing)``, fitted like any level, when some training
    patient lacks it. When none does, that level has no training patient to learn from, so a patient lacking
    it gets the training patients' share of each level (every dummy at its training mean: the variable adds
    nothing to the standardised linear predictor) rather than the baseline level."""
    ref = df if reference is None else reference
    cols = {}
    for v in variables:
        name = v["name"]
        if v["type"] == "continuous":
            x = pd.to_numeric(df[name], errors="coerce")
            cols[name] = x.fillna(pd.to_numeric(ref[name], errors="coerce").median())
        else:
            cols.update(_dummies(df[name], ref[name], name))
    return pd.DataFrame(cols, index=df.index)


def _dummies(x: pd.Series, ref: pd.Series, name: str) -> dict[str, pd.Series]:
    """One-hot columns of a categorical variable (levels from ``ref``), with its missing-value policy."""
    ref_miss, miss = missing_values(ref, "categorical"), missing_values(x, "categorical")
    ref_obs = ref[~ref_miss].astype(str)
    levels = sorted(ref_obs.unique())
    out = {f"{name}={lev}": ((x.astype(str) == lev) & ~miss).astype(float) for lev in levels[1:]}
    if ref_miss.any():
        out[f"{name}={MISSING_LEVEL}"] = miss.astype(float)
    elif miss.any():  # no training patient lacks it: the training share of each level (its dummy's training mean)
        for lev in levels[1:]:
            out[f"{name}={lev}"] = out[f"{name}={lev}"].mask(miss, float((ref_obs == lev).mean()))
    return out


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
               clinical: list[dict], seed: int, cv: int = 5, min_var: float = 1e-8, max_corr: float = 0.9,
               extra: dict[str, pd.DataFrame] | None = None, in_sample: tuple[str, ...] = IN_SAMPLE_BLOCKS
               ) -> tuple[pd.DataFrame, dict]:
    """Every model's P(high) for the training and test patients, and the fitted parts.

    ``blocks`` maps a block name (radiomics, deep) to its feature columns in ``train``/``test``.
    Models: one per block (its LASSO score through a one-variable logistic calibration), the clinical
    model, and the combined model (block scores + clinical variables). ``extra``: further sets (e.g. the
    external centre, with the same columns) predicted by the fitted parts unchanged, as the test set is.
    ``in_sample``: the blocks whose training features are in sample (left out of the likelihood-ratio tests).
    """
    kw = {"cv": cv, "min_var": min_var, "max_corr": max_corr}
    preds = {"train": {}, "test": {}}
    others = {k: v for k, v in (extra or {}).items() if len(v)}
    fitted: dict = {"blocks": {}}
    score_cols_tr, score_cols_te = {}, {}
    for k in others:
        preds[k] = {}
    score_cols_x: dict[str, dict] = {k: {} for k in others}
    for name, cols in blocks.items():
        bm = fit_block(train[cols], y_train, seed=seed, **kw)
        fitted["blocks"][name] = bm
        s_tr_oof = oof_scores(train[cols], y_train, seed=seed, **kw)
        s_te = bm.score(test[cols])
        score_cols_tr[f"{name}_score"], score_cols_te[f"{name}_score"] = s_tr_oof, s_te
        cal = Standardised(seed).fit(pd.DataFrame({f"{name}_score": s_tr_oof}), y_train)
        preds["train"][name] = cal.prob(pd.DataFrame({f"{name}_score": bm.score(train[cols])}))
        preds["test"][name] = cal.prob(pd.DataFrame({f"{name}_score": s_te}))
        for k, df in others.items():
            score_cols_x[k][f"{name}_score"] = s = bm.score(df[cols])
            preds[k][name] = cal.prob(pd.DataFrame({f"{name}_score": s}))
    parts_tr, parts_te = [pd.DataFrame(score_cols_tr, index=train.index)], [pd.DataFrame(score_cols_te, index=test.index)]
    parts_x = {k: [pd.DataFrame(score_cols_x[k], index=df.index)] for k, df in others.items()}
    if clinical:
        c_tr = clinical_matrix(train, clinical)
        c_te = clinical_matrix(test, clinical, reference=train)
        clin = Standardised(seed).fit(c_tr, y_train)
        fitted["clinical"] = clin
        preds["train"]["clinical"], preds["test"]["clinical"] = clin.prob(c_tr), clin.prob(c_te)
        parts_tr.append(c_tr)
        parts_te.append(c_te)
        for k, df in others.items():
            c_x = clinical_matrix(df, clinical, reference=train)
            preds[k]["clinical"] = clin.prob(c_x)
            parts_x[k].append(c_x)
    if len(blocks) + bool(clinical) > 1:
        X_tr, X_te = pd.concat(parts_tr, axis=1), pd.concat(parts_te, axis=1)
        comb = Standardised(seed).fit(X_tr, y_train)
        fitted["combined"] = comb
        # in-sample training probabilities use the in-sample block scores (as the block rows do)
        X_tr_in = X_tr.copy()
        for name, cols in blocks.items():
            X_tr_in[f"{name}_score"] = fitted["blocks"][name].score(train[cols])
        preds["train"]["combined"], preds["test"]["combined"] = comb.prob(X_tr_in), comb.prob(X_te)
        for k in others:
            preds[k]["combined"] = comb.prob(pd.concat(parts_x[k], axis=1))
        fitted["lr"], fitted["lr_left_out"] = _lr_tests(X_tr, y_train, blocks, c_tr.columns if clinical else [],
                                                        in_sample)
    if clinical:
        fitted["imputed"] = {s: imputed_counts(d, clinical) for s, d in (("train", train), ("test", test), *others.items())}
    rows = []
    for set_name, df in (("train", train), ("test", test), *others.items()):
        for model, p in preds[set_name].items():
            rows.append(pd.DataFrame({"patient_id": df["patient_id"].to_numpy(), "set": set_name, "model": model,
                                      "prob_high": p}))
    return pd.concat(rows, ignore_index=True), fitted


def _lr_tests(X: pd.DataFrame, y: np.ndarray, blocks: dict, clinical_cols, in_sample: tuple[str, ...] = IN_SAMPLE_BLOCKS
              ) -> tuple[dict[str, dict], list[str]]:
    """The training rows' LR tests with the in-sample blocks (``in_sample``) left out of the tested parts and
    of the combined design alike, and the blocks left out."""
    left = [n for n in blocks if n in in_sample]
    kept = {n: c for n, c in blocks.items() if n not in left}
    return nested_lr_tests(X.drop(columns=[f"{n}_score" for n in left]), y, kept, clinical_cols), left


def nested_lr_tests(X: pd.DataFrame, y: np.ndarray, blocks: dict, clinical_cols) -> dict[str, dict]:
    """Likelihood-ratio test of each part model (a block's score, the clinical variables) against the
    design ``X`` of all the parts (the combined design), both refitted by unpenalised maximum likelihood on
    the training patients (block scores out-of-fold at the LASSO step). None with fewer than two parts (a
    part is then the whole design). A fit that fails (separation) gives NaN with the reason."""
    from ccgrade import stats

    parts = {name: [f"{name}_score"] for name in blocks}
    if len(clinical_cols):
        parts["clinical"] = list(clinical_cols)
    if len(parts) < 2:
        return {}
    out = {}
    for name, cols in parts.items():
        try:
            out[name] = stats.lr_test(y, X[cols].to_numpy(float), X.to_numpy(float))
        except Exception as e:  # noqa: BLE001 - statsmodels raises several kinds on separation
            out[name] = {"lr_chi2": np.nan, "lr_df": np.nan, "lr_p": np.nan, "lr_note": f"not fitted: {e}"}
    return out


# ------------------------------------------------------------------------------------------ the pipeline

def deep_feature_table(cell_dir: str, hp: dict, crop_files: list[str]) -> pd.DataFrame:
    """Penultimate-layer embeddings of a trained cell, averaged over each patient's images (one row each)."""
    import torch

    from ccgrade.fusion.oof import patient_images
    from ccgrade.learn import models, train

    import json

    rows, net = [], None
    meta = json.loads((Path(cell_dir) / "meta.json").read_text())
    if meta.get("status") == "not trained":  # e.g. one grade group in a tiny training set: no deep block
        return pd.DataFrame(columns=["patient_id"])
    for pid, images in patient_images(crop_files):
        x = torch.from_numpy(images)
        if net is None:
            net = train.load_best(cell_dir, hp, in_channels=x.shape[1]).eval()
        with torch.no_grad():
            e = torch.cat([models.embed(net, x[s:s + 64]) for s in range(0, len(x), 64)]).mean(dim=0).numpy()
        rows.append({"patient_id": pid, **{f"deep_{i:04d}": float(v) for i, v in enumerate(e)}})
    return pd.DataFrame(rows)


def _load_split(path: str, fold: int = 0) -> tuple[list[str], list[str]]:
    import json

    f = json.loads(Path(path).read_text())["folds"][fold]
    return sorted(f["train"] + f.get("val", [])), sorted(f["test"])  # validation patients join training


def join_blocks(cohort: pd.DataFrame, *, radiomics: pd.DataFrame | None, deep: pd.DataFrame | None,
                clinical: list[dict]) -> tuple[pd.DataFrame, dict[str, list[str]], pd.DataFrame]:
    """One row per patient with every block's features (columns ``block:feature``) and the clinical
    variables; returns (table, the blocks' columns, the patients left out with the reason)."""
    from ccgrade.fusion.radiomics import feature_columns

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
               min_var: float = 1e-8, external: dict | None = None, deep_oof: bool = False, optimism_boot: int = 0
               ) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Join the blocks per patient, fit on the split's training patients, predict both sets, and with
    ``external`` ({"cohort", "radiomics", "deep"}: another centre's patients and their blocks) that centre's
    patients too, as set ``external``, by the models fitted here, unchanged. ``deep_oof``: the deep block holds
    out-of-fold CNN scores (``fusion.oof``), so it is not in sample and joins the likelihood-ratio tests.
    ``optimism_boot`` B > 0: Harrell's bootstrap optimism of the training rows (``fusion.optimism``), the
    whole ``fit_fusion`` refitted on B resamples of the training patients, in ``fitted["optimism"]``.

    Returns (predictions, fitted parts, the patients left out with the reason)."""
    df, blocks, left = join_blocks(cohort, radiomics=radiomics, deep=deep, clinical=clinical)
    train_ids, test_ids = split
    tr = df[df["patient_id"].isin(train_ids)].reset_index(drop=True)
    te = df[df["patient_id"].isin(test_ids)].reset_index(drop=True)
    y_tr = (tr["grade_group"] == "high").astype(int).to_numpy()
    _check_trainable(y_tr, cv)
    ext, ext_left = external_blocks(external, blocks, clinical) if external else (None, [])
    pred, fitted = fit_fusion(tr, te, y_tr, blocks=blocks, clinical=clinical, seed=seed, cv=cv, min_var=min_var,
                              max_corr=max_corr, extra={EXTERNAL_SET: ext} if ext is not None else None,
                              in_sample=() if deep_oof else IN_SAMPLE_BLOCKS)
    fitted["deep_oof"] = bool(deep_oof and "deep" in blocks)
    if optimism_boot:
        fit = partial(fit_fusion, blocks=blocks, clinical=clinical, seed=seed, cv=cv, min_var=min_var,
                      max_corr=max_corr, in_sample=() if deep_oof else IN_SAMPLE_BLOCKS)
        fitted["optimism"] = bootstrap_optimism(tr, y_tr, pred, fit, n_boot=int(optimism_boot), seed=seed)
    labels = dict(zip(df["patient_id"], (df["grade_group"] == "high").astype(int)))
    ext_labels = dict(zip(ext["patient_id"], (ext["grade_group"] == "high").astype(int))) if ext is not None else {}
    pred.insert(2, "label", [ext_labels.get(p) if s == EXTERNAL_SET else labels.get(p)
                             for p, s in zip(pred["patient_id"], pred["set"])])
    if ext_left:
        left = pd.concat([left, pd.DataFrame(ext_left)], ignore_index=True)
    fitted["external"] = external.get("name", "") if external else ""
    return pred, fitted, left


EXTERNAL_SET = "external"


def external_blocks(external: dict, blocks: dict[str, list[str]], clinical: list[dict]
                    ) -> tuple[pd.DataFrame | None, list[dict]]:
    """The external centre's patients with the training blocks' columns (a feature the centre lacks is
    missing, imputed by the training medians as any missing value is), or None with the reason when the
    centre cannot be scored (a clinical variable the models use is not in its sheet; no graded patient).
    Patients lacking a block's features are left out (``external: ...`` reasons)."""
    coh = external["cohort"]
    graded = coh[coh["grade_group"].isin(["low", "high"])] if "grade_group" in coh else coh.iloc[:0]
    missing = [v["name"] for v in clinical if v["name"] not in coh]
    if missing or graded.empty:
        why = (f"its sheet lacks the clinical variable(s) {missing}" if missing else "no patient has a grade")
        return None, [{"patient_id": "", "reason": f"external centre not scored: {why}"}]
    rad = external.get("radiomics") if "radiomics" in blocks else None
    deep = external.get("deep") if "deep" in blocks else None
    df, _, left = join_blocks(graded, radiomics=rad, deep=deep, clinical=clinical)
    for name, cols in blocks.items():
        if (rad if name == "radiomics" else deep) is None:  # the centre has no such block: every patient lacks it
            return None, [{"patient_id": "", "reason": f"external centre not scored: no {name} features"}]
        for c in cols:
            if c not in df:
                df[c] = np.nan
    return df, [{"patient_id": r["patient_id"], "reason": f"external: {r['reason']}"} for r in left.to_dict("records")]


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


def _check_trainable(y: np.ndarray, cv: int) -> None:
    counts = np.bincount(y, minlength=2)
    if counts.min() < max(2, min(cv, 3)) * 2:
        raise InsufficientDataError(f"the training set holds {counts[0]} low- and {counts[1]} high-grade patients: "
                                    f"too few to select features by {cv}-fold cross-validation")


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    from ccgrade.outputs import read_table, write_tsv

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
    f.add_argument("--external", help="JSON {name, cohort: records (patient_id, grade_group, the clinical "
                   "variables)}: another centre's patients, scored by the fitted models unchanged")
    f.add_argument("--external-radiomics")
    f.add_argument("--external-deep")
    f.add_argument("--params", required=True, help="JSON: clinical [{name, type}], seed, cv, max_corr, thresholds; "
                   "optional nested_cv, deep_oof, optimism_boot (B bootstrap refits, 0: none)")
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
    external = None
    if a.external:
        e = json.loads(a.external)
        external = {"name": e["name"], "cohort": pd.DataFrame(e["cohort"]).astype({"patient_id": str}),
                    "radiomics": read_table(a.external_radiomics) if a.external_radiomics else None,
                    "deep": read_table(a.external_deep) if a.external_deep else None}
    try:
        pred, fitted, left = run_fusion(cohort, _load_split(a.split), radiomics=rad, deep=deep,
                                        clinical=prm["clinical"], seed=prm["seed"], cv=prm.get("cv", 5),
                                        max_corr=prm.get("max_corr", 0.9), external=external,
                                        deep_oof=bool(prm.get("deep_oof")),
                                        optimism_boot=int(prm.get("optimism_boot", 0)))
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
    from ccgrade.outputs import write_tsv

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
    miss = imputed_counts(df, prm["clinical"])
    note = ("Missing clinical values imputed in each outer fold as in the fusion table, from that fold's training "
            "part (continuous: its median; categorical: its own level (missing), or the part's level shares when none of "
            "its patients lacks the variable); patients lacking a value: "
            + ", ".join(f"{k} {v}" for k, v in miss.items()) + ".") if miss else ""
    t = write_nested(pred, out, outer=int(pred["fold"].nunique()), cv=cv, dropped=dropped,
                     opt=prm.get("statistics"), extra_notes=[note] if note else [])
    print(t[["model", "set", "n", "auc", "auc_ci_low", "auc_ci_high", "fold_auc_mean"]].to_string(index=False))


if __name__ == "__main__":
    main()
