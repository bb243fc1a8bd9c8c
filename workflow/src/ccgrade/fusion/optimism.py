"""Harrell's bootstrap optimism correction of the fusion models' training rows (``fusion.optimism_boot``).

Harrell, Lee & Mark (Stat Med 1996); Steyerberg, Clinical Prediction Models (2019), ch. 5; as
``rms::validate`` does. The training rows of the fusion table are apparent (in-sample) performance. For
b = 1..B a bootstrap sample of the training patients is drawn (``resample``: within each grade group as
many patients as it has, with replacement, seeded by (seed, b)) and the WHOLE pipeline is refitted on it
(``fit_fusion``: imputation, filters, the LASSO with its CV penalty, the out-of-fold block scores, the
clinical and combined models). Each model's AUC, calibration slope and Brier are measured on the bootstrap
sample (apparent_b, in sample as the training rows are) and on the original training patients (test_b);

    optimism = mean over the resamples that fitted of (apparent_b - test_b),
    corrected = apparent - optimism           (AUC, calibration slope, Brier alike).

rms's apparent slope is 1 by construction (an unpenalised fit on its own linear predictor), so its corrected
slope reads 1 - optimism; here the apparent slope is measured (the block models' calibration is fitted on
out-of-fold scores, the clinical and combined models are lightly penalised), and the same formula is used.
A resample whose fit fails (too few of a class for the CV, no feature varying: ``InsufficientDataError``,
scikit-learn's ``ValueError``) is skipped and counted with its reason; a model whose slope is undefined on
a resample (its risks separate the classes) skips that resample for that model only (``optimism_boot_ok``).
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Callable

import numpy as np
import pandas as pd

from ccgrade import stats
from ccgrade.errors import InsufficientDataError

#: the columns the training rows of the fusion table get (NaN on the other rows)
COLUMNS = ("auc_optimism", "auc_corrected", "slope_corrected", "brier_corrected", "optimism_boot_ok")
METRICS = ("auc", "slope", "brier")


def resample(y: np.ndarray, seed: int, b: int) -> np.ndarray:
    """Resample ``b``'s row positions: within each grade group (low first) as many patients as it has,
    drawn with replacement by ``numpy.random.default_rng((seed, b))``."""
    rng = np.random.default_rng((seed, b))
    return np.concatenate([rng.choice(np.flatnonzero(y == c), size=int(np.sum(y == c)), replace=True)
                           for c in (0, 1)])


def performance(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, calibration slope (logistic recalibration, ``stats.calibration_slope_intercept``) and Brier."""
    from sklearn.metrics import roc_auc_score

    y, p = np.asarray(y, int), np.asarray(p, float)
    return {"auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else np.nan,
            "slope": stats.calibration_slope_intercept(y, p)["cal_slope"],
            "brier": float(np.mean((p - y) ** 2))}


def by_model(pred: pd.DataFrame, set_name: str) -> dict[str, np.ndarray]:
    """Each model's P(high) on one set, in the set's row order (a bootstrap sample repeats patients)."""
    s = pred[pred["set"] == set_name]
    return {m: g["prob_high"].to_numpy(float) for m, g in s.groupby("model", sort=False)}


def bootstrap_optimism(train: pd.DataFrame, y: np.ndarray, pred: pd.DataFrame,
                       fit: Callable[[pd.DataFrame, pd.DataFrame, np.ndarray], tuple[pd.DataFrame, dict]], *,
                       n_boot: int, seed: int) -> dict:
    """The optimism and the corrected AUC, slope and Brier of each model's training rows.

    ``train``/``y``: the training patients and their grades (1 high); ``pred``: the fit's predictions (its
    ``train`` rows are the apparent ones, in ``train``'s order); ``fit(train_b, test, y_b)``: the whole
    pipeline (``fit_fusion`` with its settings bound), returning (predictions, fitted parts). Returns
    {"n_boot", "skipped": {reason: resamples}, "models": {model: {COLUMNS..., "<metric>_optimism"}}}."""
    y = np.asarray(y, int)
    apparent = {m: performance(y, p) for m, p in by_model(pred, "train").items()}
    diffs: dict[str, list[dict]] = {m: [] for m in apparent}
    skipped: Counter = Counter()
    for b in range(1, n_boot + 1):
        idx = resample(y, seed, b)
        try:
            with warnings.catch_warnings():  # liblinear/statsmodels convergence chatter, B times over
                warnings.simplefilter("ignore")
                boot, _ = fit(train.iloc[idx].reset_index(drop=True), train, y[idx])
        except (InsufficientDataError, ValueError) as e:
            skipped[str(e).split(":")[0][:80] or type(e).__name__] += 1
            continue
        app_b, test_b = by_model(boot, "train"), by_model(boot, "test")
        for m, d in diffs.items():
            a, t = performance(y[idx], app_b[m]), performance(y, test_b[m])
            if all(np.isfinite(a[k]) and np.isfinite(t[k]) for k in METRICS):
                d.append({k: a[k] - t[k] for k in METRICS})
    return {"n_boot": int(n_boot), "skipped": dict(skipped),
            "models": {m: _corrected(apparent[m], diffs[m]) for m in apparent}}


def _corrected(apparent: dict[str, float], diffs: list[dict]) -> dict:
    """corrected = apparent - mean(apparent_b - test_b), per metric; NaN when no resample fitted."""
    opt = {k: float(np.mean([d[k] for d in diffs])) if diffs else np.nan for k in METRICS}
    return {"auc_optimism": opt["auc"], "auc_corrected": apparent["auc"] - opt["auc"],
            "slope_corrected": apparent["slope"] - opt["slope"], "brier_corrected": apparent["brier"] - opt["brier"],
            "optimism_boot_ok": len(diffs), "slope_optimism": opt["slope"], "brier_optimism": opt["brier"]}


def add_columns(t: pd.DataFrame, result: dict | None) -> pd.DataFrame:
    """The model table with ``COLUMNS`` on its training rows (NaN elsewhere); unchanged without ``result``."""
    if not result or not len(t):
        return t
    t = t.copy()
    rows = [result["models"].get(m, {}) if s == "train" else {} for m, s in zip(t["model"], t["set"])]
    for c in COLUMNS:
        t[c] = [r.get(c, np.nan) for r in rows]
    t["optimism_boot_ok"] = pd.array([r.get("optimism_boot_ok") for r in rows], dtype="Int64")
    return t


def note(result: dict, deep_in_sample: bool) -> str:
    """The table's footnote on the correction: the method, B, the resamples that fitted, the deep caveat."""
    ok = ", ".join(f"{m} {r['optimism_boot_ok']}" for m, r in result["models"].items())
    skipped = "; ".join(f"{n} skipped ({why})" for why, n in result["skipped"].items())
    text = ("Training rows, optimism-corrected (Harrell's bootstrap: Harrell, Lee & Mark 1996; Steyerberg, Clinical "
            f"Prediction Models, ch. 5; as rms::validate): the whole pipeline (imputation, filters, the LASSO with its "
            "CV penalty, the out-of-fold block scores, the clinical and combined models) refitted on each of "
            f"B = {result['n_boot']} bootstrap samples of the training patients (drawn within each grade group, "
            "seeded); optimism = mean over the resamples of (AUC, calibration slope, Brier on the bootstrap sample − "
            "the same on the original training patients); corrected = apparent − optimism (auc_optimism, "
            "auc_corrected, slope_corrected against the apparent cal_slope, brier_corrected in the CSV). Resamples "
            f"fitted (optimism_boot_ok): {ok}" + (f"; {skipped}" if skipped else "") + ". The test and external rows "
            "are held out and need no correction.")
    if deep_in_sample:
        text += (" The in-sample deep block's CNN is not retrained in the resamples (its embeddings stay features "
                 "learnt on all training patients), so the deep and combined rows' correction leaves out the "
                 "network's own optimism: it is incomplete (fusion.deep.oof_folds makes the deep score an "
                 "out-of-fold feature, corrected as validly as radiomics).")
    return text
