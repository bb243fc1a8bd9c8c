"""Dai's table: Table 5 and Figures 9-10.

k-fold cross-validation per variant (the batch-size sweep): the folds' test predictions pooled (out of
fold) at slice and patient level, with 95% CIs of every metric (``tables.binary_summary``), and the mean
and SD of the per-fold AUCs; ROC curves and confusion matrices of the pooled predictions (Figures 9-10).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccgrade import stats
from ccgrade.evaluate.tables import (auc_ci_note, binary_summary, ci_text, confusion_figure, count_text, est_text, fmt,
                                     image_ci_note, levels, proportion_note, read_predictions, roc_figure, seed_note,
                                     seed_summary, seed_view)
from ccgrade.outputs import Outputs


def dai_tables(models: list[dict], out: Outputs, opt: dict | None = None) -> pd.DataFrame:
    """Dai Table 5: per (architecture, phase set, variant, seed), the k folds' test predictions pooled
    (out of fold) at slice and patient level, and the mean and SD of the per-fold AUCs; Figures 9-10."""
    groups: dict[tuple, list[tuple[int, pd.DataFrame]]] = {}
    for m in models:
        groups.setdefault((m["arch"], m["phases"], m["variant"], m["seed"]), []).append((m["fold"], read_predictions(m)))
    rows, pooled = [], {}
    for (arch, ph, var, sd), folds in groups.items():
        hp_batch = next((m["hp"]["batch"] for m in models if (m["arch"], m["variant"]) == (arch, var) and "hp" in m),
                        None)
        test = pd.concat([p[p["set"] == "test"].assign(fold=f) for f, p in folds if not p.empty], ignore_index=True) \
            if any(not p.empty for _, p in folds) else pd.DataFrame(columns=["set", "patient_id", "label", "prob_high"])
        pooled[arch, ph, var, sd] = test
        for level in ("image", "patient"):
            fold_aucs = []
            for f, p in folds:
                if p.empty:
                    continue
                y, pr, _, _ = levels(p)[level]
                if len(np.unique(y)) == 2:
                    fold_aucs.append(stats.delong(y, pr)[0][0])
            y, pr, _, pid = levels(test)[level] if len(test) else (np.zeros(0), np.zeros(0), [], [])
            rows.append({"arch": arch, "phases": ph, "variant": var, "batch": hp_batch, "seed": sd, "level": level,
                         "folds": len(folds), "folds_trained": sum(not p.empty for _, p in folds),
                         **binary_summary(y, pr, pid if level == "image" else None, opt=opt),
                         "fold_auc_mean": float(np.mean(fold_aucs)) if fold_aucs else np.nan,
                         "fold_auc_sd": float(np.std(fold_aucs, ddof=1)) if len(fold_aucs) > 1 else np.nan})
    keys = ["arch", "phases", "variant", "batch", "level"]
    t5 = seed_summary(pd.DataFrame(rows), keys)
    out.table("t5", t5, title="Dai Table 5: k-fold cross-validation per variant (batch-size sweep)",
              markdown=_view(seed_view(t5, keys)),
              footnotes=["Pooled: every fold's test predictions together (each patient predicted once, by the model "
                         "that did not train on it). Slice level: every slice is one call; patient level: mean "
                         "probability. Threshold 0.5; sensitivity for high grade.", auc_ci_note(opt),
                         image_ci_note(opt, "slice"), proportion_note(opt, "slice"),
                         "No test: the variants are described side by side, none is selected (every fold trains for "
                         "its set number of epochs; there is no validation set)."] + seed_note(t5))
    roc_figure([(f"ROC, out-of-fold, {'slice' if level == 'image' else level} level",
                 [(f"{a} {ph} {v} s{sd}", *levels(t)[level][:2]) for (a, ph, v, sd), t in pooled.items() if len(t)])
                for level in ("image", "patient")], out["roc"], pdf=out["roc_pdf"])
    panels = []
    for (a, ph, v, sd), t in pooled.items():
        y, p, _, _ = levels(t)["image"] if len(t) else (None, None, None, None)
        panels.append((f"{a} {v}\nslices, out-of-fold", y, None if p is None else (p >= 0.5).astype(int)))
    confusion_figure(panels, out["confusion"], pdf=out["confusion_pdf"])
    return t5


def _view(t5: pd.DataFrame) -> pd.DataFrame:
    """Table 5's Markdown (``t5``: its ``seed_view``): the metrics with their 95% CIs; in a seeds' summary row
    the seeds' mean ± SD (range)."""
    if not len(t5):
        return t5
    rows = [r for _, r in t5.iterrows()]
    return pd.DataFrame({"Model": t5["arch"] + " " + t5["phases"].str.upper(), "Variant": t5["variant"],
                         "Batch": t5["batch"], "Seed": t5["seed"], "Level": t5["level"],
                         "n": [count_text(r) for r in rows],
                         **{f"{c.capitalize()} (95% CI)": [est_text(r, c) for r in rows]
                            for c in ("sensitivity", "specificity", "accuracy")},
                         "AUC (95% CI), pooled": [ci_text(r) for r in rows],
                         "Fold AUC mean ± SD": [_fold_text(r) for r in rows]})


def _fold_text(r: pd.Series) -> str:
    """The per-fold AUCs' mean ± SD of one seed; in a seeds' summary row the seeds' summary of that mean."""
    if r.get("fold_auc_mean_min", np.nan) == r.get("fold_auc_mean_min", np.nan):
        return est_text(r, "fold_auc_mean")
    a, b = r["fold_auc_mean"], r["fold_auc_sd"]
    return f"{a:.3f} ± {b:.3f}" if b == b else fmt(a)
