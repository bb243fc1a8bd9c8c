"""Cui et al.'s tables: Table 3, Table 4 and Figures 2-4.

Image level (every test image is one call, as Cui et al.) and patient level (mean probability per
patient); per class (low, high rows): accuracy, AUC, precision, sensitivity, specificity and F1, each
with its 95% CI (``ccgrade.proportions``: Wilson per patient, patient-clustered Wilson per image, the
patient bootstrap for F1). Table 3 is one architecture over the phase sets; Table 4 compares two architectures on
the same test images / patients (``tables.compare``: the within-patient permutation test of the AUCs, a
patient's images swapped together; DeLong's test in paper mode, as Cui et al.). Figures 2-4: ROC curves and
confusion matrices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccgrade import proportions, stats
from ccgrade.evaluate.tables import (adjust_columns, ADJUST_NAMES, auc_ci_note, auc_cis, CI_SUFFIXES, compare, confusion_figure,
                                     count_text, est_text, family_note, fmt, image_ci_note, levels, paired_test_note,
                                     proportion_note, read_predictions, roc_figure, seed_note, seed_summary, seed_view,
                                     stats_options)
from ccgrade.outputs import Outputs

PHASE_LABEL = {"up": "plain", "cmp": "corticomedullary", "np": "parenchymal", "ep": "excretory",
               "all": "four phases combined", "stack": "three phases as channels"}


#: the per-class metrics whose 95% CIs the rows carry (``<metric>_ci_low``/``_ci_high``)
INTERVAL_METRICS = ("accuracy", "precision", "sensitivity", "specificity", "f1")


def class_intervals(y: np.ndarray, p: np.ndarray, clusters: np.ndarray | None, cls: int, opt: dict | None = None
                    ) -> dict:
    """The 95% CIs of one class row's metrics (the class taken as positive: ``proportions.binary_metrics`` of
    the flipped labels and calls for the low class) and their methods."""
    y, call = np.asarray(y, int), (np.asarray(p, float) >= 0.5).astype(int)
    if cls == 0:
        y, call = 1 - y, 1 - call
    m = proportions.binary_metrics(y, call, clusters, n_boot=stats_options(opt)["n_boot"])
    return {**{f"{k}{s}": m[f"{k}{s}"] for k in INTERVAL_METRICS for s in CI_SUFFIXES[1:]},
            "proportion_ci_method": m["proportion_ci_method"], "f1_ci_method": m["f1_ci_method"]}


def metric_rows(pred: pd.DataFrame, model: dict, opt: dict | None = None) -> list[dict]:
    """Per-class metrics with their 95% CIs, and the AUC's, at image (patient-clustered) and patient level for
    one model's test predictions."""
    rows = []
    if pred.empty:
        return [{**model, "level": "", "class": "", "n": 0, "note": "not trained (see the model's meta.json)"}]
    for level, (y, p, _, pid) in levels(pred).items():
        if len(np.unique(y)) < 2:
            rows.append({**model, "level": level, "class": "", "n": len(y), "note": "test set holds one grade group"})
            continue
        cl = pid if level == "image" else None
        ci = auc_cis(y, p, cl, opt=opt)
        for r in stats.class_metrics(y, p):
            rows.append({**model, "level": level, **r, **ci,
                         **class_intervals(y, p, cl, 1 if r["class"] == "high" else 0, opt), "note": ""})
    return rows


def _view(t: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    """The Markdown of Table 3 or 4: each metric with its 95% CI, "0.800 (0.490–0.943)"; in a seeds' summary
    row (``seed_view``) the seeds' "mean ± SD (range min–max)"."""
    rows = [r for _, r in t.iterrows()]
    v = t.copy()
    v["n"] = [count_text(r) for r in rows]
    v["AUC (95% CI)"] = [est_text(r, "auc") for r in rows]
    for c in INTERVAL_METRICS:
        v[f"{c} (95% CI)"] = [est_text(r, c) for r in rows]
    keep = first + ["level", "class", "n", "accuracy (95% CI)", "AUC (95% CI)"] + [
        f"{c} (95% CI)" for c in INTERVAL_METRICS[1:]] + ["note"]
    v["note"] = v["note"].fillna("") if "note" in v else ""
    return v[[c for c in keep if c in v]]


#: Tables 3-4's CSV columns: each metric followed by its interval
COLUMNS = ["arch", "phases", "seed", "level", "class", "n", "n_patients", "accuracy", "accuracy_ci_low",
           "accuracy_ci_high", "auc", "auc_ci_low", "auc_ci_high", "ci_method", "auc_boot_low", "auc_boot_high",
           "auc_clustered_ci_low", "auc_clustered_ci_high", "auc_naive_ci_low", "auc_naive_ci_high",
           *[f"{c}{s}" for c in INTERVAL_METRICS[1:] for s in CI_SUFFIXES], "proportion_ci_method", "f1_ci_method",
           "tp", "fp", "fn", "tn", "note"]


def _notes(opt: dict | None) -> list[str]:
    """The footnotes Tables 3 and 4 share: levels, the AUC's CIs, the proportions' CIs and the class rows."""
    return ["Test set of the cui split; image level = every test image is one call (as Cui et al.), patient "
            "level = mean probability per patient. Threshold 0.5 on P(high), fixed in advance.", auc_ci_note(opt),
            image_ci_note(opt),
            proportion_note(opt, "image", "accuracy, precision, sensitivity and specificity", f1=True),
            "Rows per class: the class taken as positive (precision, sensitivity, specificity, F1 change; "
            "accuracy and AUC are shared). Each network's epoch was chosen on the validation patients."]


def cui_tables(models: list[dict], out: Outputs, table3_arch: str = "resnet34",
               table4_arch: str = "se_resnet34", opt: dict | None = None, pinned: dict | None = None) -> None:
    """Cui Table 3 (one architecture over the phase sets), Table 4 (two architectures on a shared
    phase set, with the AUC test's P), and Figures 2-4 (ROC curves and confusion matrices). ``pinned`` names
    the phase sets the config gave ``table4_arch`` (said in Table 4's footnote: not selected by this run)."""
    preds = {(m["arch"], m["phases"], m["seed"]): read_predictions(m) for m in models}
    rows = []
    for m in models:
        rows += metric_rows(preds[m["arch"], m["phases"], m["seed"]],
                            {"arch": m["arch"], "phases": m["phases"], "seed": m["seed"]}, opt)
    t = pd.DataFrame(rows).reindex(columns=COLUMNS)
    t3 = t[t["arch"] == table3_arch].copy()
    t3.insert(1, "phase set", t3["phases"].map(PHASE_LABEL))
    keys = ["arch", "phase set", "phases", "level", "class"]
    t3 = seed_summary(t3, keys)
    notes = _notes(opt)
    out.table("t3", t3, title=f"Cui Table 3: {table3_arch} per phase set", footnotes=notes + seed_note(t3),
              markdown=_view(seed_view(t3, keys), ["phase set", "seed"]))
    # Table 4: both architectures on every phase set they share, with the AUC test's P per level
    shared = sorted({m["phases"] for m in models if m["arch"] == table4_arch} &
                    {m["phases"] for m in models if m["arch"] == table3_arch})
    rows4 = []
    for ph in shared:
        seeds = sorted({m["seed"] for m in models if m["phases"] == ph})
        for sd in seeds:
            if (table3_arch, ph, sd) not in preds or (table4_arch, ph, sd) not in preds:
                continue
            if preds[table3_arch, ph, sd].empty or preds[table4_arch, ph, sd].empty:
                continue
            cmp_ = compare(preds[table4_arch, ph, sd], preds[table3_arch, ph, sd], opt)
            sub = t[(t["phases"] == ph) & (t["seed"] == sd) & t["arch"].isin([table3_arch, table4_arch])].copy()
            first = sub["class"] == "low"  # the test belongs to the level, not the class: once per level
            sub["auc_p"] = [cmp_[lv]["p_value"] if a == table4_arch and f else np.nan
                               for a, lv, f in zip(sub["arch"], sub["level"], first)]
            sub["comparison"] = [cmp_[lv].get("method", "") if a == table4_arch and f else ""
                                 for a, lv, f in zip(sub["arch"], sub["level"], first)]
            rows4.append(sub)
    t4 = pd.concat(rows4, ignore_index=True) if rows4 else pd.DataFrame(columns=COLUMNS + ["auc_p", "comparison"])
    adjust_columns(t4, ["auc_p"], opt, by=["level", "seed"])
    v4 = _view(t4, ["arch", "phases", "seed"]) if len(t4) else t4
    if len(t4):
        v4["AUC P"] = [fmt(p) for p in t4["auc_p"]]
        for m in stats_options(opt)["adjust"]:
            v4[f"P ({ADJUST_NAMES[m]})"] = [fmt(p) for p in t4[f"auc_p_{m}"]]
    pinned_note = (f"{table4_arch}'s phase set ({', '.join(pinned[table4_arch])}) is set in the config "
                   f"(training.studies.cui.models.{table4_arch}), as Cui et al. chose theirs after Table 3; this run "
                   "did not select it." if pinned and pinned.get(table4_arch) else "")
    out.table("t4", t4, title=f"Cui Table 4: {table3_arch} vs {table4_arch}", markdown=v4,
                footnotes=notes + [f"AUC P: {table4_arch} vs {table3_arch} on the same test images (image level) "
                                       "or patients (patient level), two-sided, once per level (on the low-class "
                                       "row); the CSV's comparison column names the test.", paired_test_note(opt),
                                       family_note(t4, "auc_p", f"this table's {table4_arch} vs {table3_arch} "
                                                   "comparisons over its phase sets", opt, by=["level", "seed"])]
                + ([pinned_note] if pinned_note else []))
    _figures(models, preds, out)


def _figures(models: list[dict], preds: dict, out: Outputs) -> None:
    roc_figure([(f"ROC, test set, {level} level",
                 [(f"{m['arch']} {m['phases']}", *levels(preds[m["arch"], m["phases"], m["seed"]])[level][:2])
                  for m in models if not preds[m["arch"], m["phases"], m["seed"]].empty])
                for level in ("image", "patient")], out["roc"], pdf=out["roc_pdf"])
    panels = []
    for m in models:
        pr = preds[m["arch"], m["phases"], m["seed"]]
        y, p, _, _ = levels(pr)["image"] if not pr.empty else (None, None, None, None)
        panels.append((f"{m['arch']}\n{m['phases']}", y, None if p is None else (p >= 0.5).astype(int)))
    confusion_figure(panels, out["confusion"], pdf=out["confusion_pdf"])
