"""Paper performance tables and figures from the matrix's predictions.

- Cui (Tables 3-4, Figures 2-4): image level (every test image is one call, as Cui et al.) and patient
  level (mean probability per patient); per class (low, high rows): accuracy, AUC with its 95% CIs,
  precision, sensitivity, specificity, F1; Table 4 compares two architectures on the same test images /
  patients (DeLong's test for correlated AUCs; at image level on the patient-clustered covariance).
- Li (Tables 2-3, Figures 4-5, A1-A2): the "strong" 3D network (one cube per patient) per phase, with
  DeLong P against a reference phase chosen without the test patients (on validation patients; a split
  without them has no reference and every pair of phases is compared instead); the "weak" 2D network
  per slice and per patient by Li's rule (more than three consecutive slices with one call, linked by
  box IoU > 0.3); strong vs weak per phase by McNemar on sensitivity (high-grade patients) and
  specificity (low-grade patients), and DeLong.
- Dai (Table 5, Figures 9-10): k-fold cross-validation per variant (the batch-size sweep); the folds'
  test predictions pooled (out of fold), and the mean and SD of the per-fold AUCs.
Threshold 0.5 on P(high) throughout (fixed, never tuned). Image- and slice-level intervals and tests are
patient-clustered (Obuchowski 1997) and bootstrapped by patient; ``statistics.mode: paper`` shows the
papers' naive intervals (images as independent) and chooses the "best" phase on the test set, as they
did, and the footnotes say so. Every table holding two or more tests gives Holm-adjusted P values (and
Benjamini-Hochberg ones when asked) beside the raw ones, and names the family.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .outputs import Outputs, pyplot, read_table, save_figure

PHASE_LABEL = {"up": "plain", "cmp": "corticomedullary", "np": "parenchymal", "ep": "excretory",
               "all": "four phases combined", "stack": "three phases as channels"}
DEFAULT_STATS = {"mode": "honest", "adjust": ["holm"], "n_boot": 2000}
ADJUST_NAMES = stats.ADJUST_NAMES


def stats_options(opt: dict | None = None) -> dict:
    """The statistics settings (config ``statistics``) with their defaults and what the mode implies:
    ``clustered`` (image-level CIs and tests by patient) and ``selection`` (validation or test)."""
    o = {**DEFAULT_STATS, **(opt or {})}
    if isinstance(o["adjust"], str):
        o["adjust"] = [o["adjust"]]
    paper = o["mode"] == "paper"
    return {**o, "clustered": not paper, "selection": "test" if paper else "validation"}


def _levels(pred: pd.DataFrame, set_name: str = "test") -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(labels, P(high), unit IDs, the units' patients) at image and patient level for one set (default: test)."""
    t = pred[pred["set"] == set_name]
    pat = t.groupby("patient_id").agg(label=("label", "first"), prob=("prob_high", "mean"))
    return {"image": (t["label"].to_numpy(int), t["prob_high"].to_numpy(float),
                      (t["patient_id"] + ":" + t["source"] + ":" + t["slice_index"].astype(str)).to_numpy(),
                      t["patient_id"].to_numpy()),
            "patient": (pat["label"].to_numpy(int), pat["prob"].to_numpy(float), pat.index.to_numpy(), pat.index.to_numpy())}


def metric_rows(pred: pd.DataFrame, model: dict, opt: dict | None = None) -> list[dict]:
    """Per-class metrics with AUC CIs at image (patient-clustered) and patient level for one model's test
    predictions."""
    rows = []
    if pred.empty:
        return [{**model, "level": "", "class": "", "n": 0, "note": "not trained (see the model's meta.json)"}]
    for level, (y, p, _, pid) in _levels(pred).items():
        if len(np.unique(y)) < 2:
            rows.append({**model, "level": level, "class": "", "n": len(y), "note": "test set holds one grade group"})
            continue
        ci = auc_cis(y, p, pid if level == "image" else None, opt=opt)
        for r in stats.class_metrics(y, p):
            rows.append({**model, "level": level, **r, **ci, "note": ""})
    return rows


def auc_cis(y: np.ndarray, p: np.ndarray, clusters: np.ndarray | None = None, seed: int = 0,
            opt: dict | None = None, bootstrap: bool = True) -> dict:
    """AUC with its 95% CIs. Per patient (``clusters`` None): DeLong's, and the class-stratified bootstrap.
    Per image or slice (``clusters``: each unit's patient): Obuchowski's patient-clustered CI and the
    patient-level (cluster) bootstrap; the naive DeLong CI (images as independent) is kept in
    ``auc_naive_ci_*`` and shown as ``auc_ci_*`` only in paper mode."""
    o = stats_options(opt)
    auc, lo, hi = stats.auc_ci(y, p)
    out = {"auc": auc, "n_patients": len(np.unique(clusters)) if clusters is not None else len(y)}
    if clusters is None:
        out.update(auc_ci_low=lo, auc_ci_high=hi, ci_method="DeLong")
    else:
        _, clo, chi = stats.auc_ci(y, p, clusters=clusters)
        shown = (clo, chi) if o["clustered"] else (lo, hi)
        out.update(auc_ci_low=shown[0], auc_ci_high=shown[1],
                   ci_method="Obuchowski, patient-clustered" if o["clustered"] else "DeLong, images as independent",
                   auc_clustered_ci_low=clo, auc_clustered_ci_high=chi, auc_naive_ci_low=lo, auc_naive_ci_high=hi)
    if bootstrap:  # off where only the DeLong/Obuchowski interval is shown (the bootstrap costs n_boot AUCs)
        b = stats.cluster_bootstrap(y, p, clusters, n_boot=o["n_boot"], seed=seed)
        out.update(auc_boot_low=float(b["low"][0]), auc_boot_high=float(b["high"][0]))
    return out


def binary_summary(y: np.ndarray, p: np.ndarray, clusters: np.ndarray | None = None, opt: dict | None = None,
                   threshold: float = 0.5, bootstrap: bool = True) -> dict:
    """n, AUC (CIs as ``auc_cis``; ``bootstrap`` False: without the bootstrap's), accuracy, sensitivity
    (high) and specificity (low) at ``threshold``."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    call = (p >= threshold).astype(int)
    out = {"n": len(y), "n_high": int(y.sum()), "accuracy": float((call == y).mean()) if len(y) else np.nan,
           "sensitivity": float(call[y == 1].mean()) if (y == 1).any() else np.nan,
           "specificity": float(1 - call[y == 0].mean()) if (y == 0).any() else np.nan}
    if len(np.unique(y)) == 2:
        out.update(auc_cis(y, p, clusters, opt=opt, bootstrap=bootstrap))
    else:
        out.update(auc=np.nan, auc_ci_low=np.nan, auc_ci_high=np.nan, auc_boot_low=np.nan, auc_boot_high=np.nan)
    return out


def compare(pred_a: pd.DataFrame, pred_b: pd.DataFrame, opt: dict | None = None) -> dict[str, dict]:
    """DeLong test of two models on the same test units, per level; at image level on Obuchowski's
    patient-clustered covariance (naive in paper mode)."""
    o = stats_options(opt)
    out = {}
    la, lb = _levels(pred_a), _levels(pred_b)
    for level in ("image", "patient"):
        ya, pa, ida, pid = la[level]
        yb, pb, idb, _ = lb[level]
        common = np.intersect1d(ida, idb)
        ia = pd.Series(np.arange(len(ida)), index=ida).loc[common].to_numpy()
        ib = pd.Series(np.arange(len(idb)), index=idb).loc[common].to_numpy()
        if len(np.unique(ya[ia])) < 2:
            out[level] = {"p_value": np.nan, "n": len(common)}
            continue
        cl = pid[ia] if level == "image" and o["clustered"] else None
        out[level] = {**stats.delong_test(ya[ia], pa[ia], pb[ib], clusters=cl), "n": len(common),
                      "method": "DeLong" + (", patient-clustered (Obuchowski)" if cl is not None else "")}
    return out


def adjust_columns(t: pd.DataFrame, cols: list[str], opt: dict | None = None) -> None:
    """One family spread over several columns (e.g. McNemar on sensitivity, on specificity, and DeLong, per
    row): every non-missing P value of ``cols`` adjusted together, written back as ``<col>_<method>``."""
    cols = [c for c in cols if c in t]
    flat = t[cols].to_numpy(float).ravel() if len(t) else np.zeros(0)
    for m in stats_options(opt)["adjust"]:
        adj = stats.adjust(flat, m).reshape(len(t), len(cols)) if len(t) else np.zeros((0, len(cols)))
        for j, c in enumerate(cols):
            t[f"{c}_{m}"] = adj[:, j]


def family_note(t: pd.DataFrame, col: str | list[str], family: str, opt: dict | None = None) -> str:
    """The footnote naming a table's family of tests (the P values in ``col``) and its adjustment."""
    cols = [col] if isinstance(col, str) else col
    k = int(sum(t[c].notna().sum() for c in cols if c in t))
    names = " and ".join(ADJUST_NAMES[m] for m in stats_options(opt)["adjust"])
    return (f"Multiplicity: the family is {family}, {k} test{'s' if k != 1 else ''}; {names}-adjusted P values "
            "are given beside the raw ones (columns " + ", ".join(f"{c}_{m}" for c in cols for m in
                                                                  stats_options(opt)["adjust"]) + " in the CSV).")


def seed_summary(t: pd.DataFrame, keys: list[str], seed_col: str = "seed") -> pd.DataFrame:
    """With two or more seeds: ``t`` plus, per ``keys`` group, a row of the seeds' means (``seed`` = "mean")
    and one of their SDs (``seed`` = "sd") for every numeric column; with one seed, ``t`` unchanged."""
    if t.empty or seed_col not in t or t[seed_col].nunique() < 2:
        return t
    num = [c for c in t.columns if c not in keys + [seed_col] and pd.api.types.is_numeric_dtype(t[c])]
    g = t.groupby(keys, sort=False, dropna=False)[num]
    mean, sd = g.mean().reset_index(), g.std(ddof=1).reset_index()
    out = pd.concat([t.assign(**{seed_col: t[seed_col].astype(str)}), mean.assign(**{seed_col: "mean"}),
                     sd.assign(**{seed_col: "sd"})], ignore_index=True)
    return out


def read_predictions(m: dict) -> pd.DataFrame:
    """A cell's prediction table (``predictions`` path, or ``dir``/predictions.tsv)."""
    path = m.get("predictions") or f"{m['dir']}/predictions.tsv"
    return read_table(path, dtype={"source": str})


def fmt(v: float) -> str:
    return "" if v != v else f"{v + 0.0:.3f}".replace("-0.000", "0.000")  # no "negative zero" after rounding


def _view(t: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    v = t.copy()
    v["AUC (95% CI)"] = [f"{a:.3f} ({lo:.3f}–{hi:.3f})" if a == a and a is not None else "" for a, lo, hi in
                         zip(v["auc"], v["auc_ci_low"], v["auc_ci_high"])]
    for c in ("accuracy", "precision", "sensitivity", "specificity", "f1"):
        v[c] = v[c].map(fmt)
    keep = first + ["level", "class", "n", "accuracy", "AUC (95% CI)", "precision", "sensitivity", "specificity", "f1",
                    "note"]
    v["note"] = v["note"].fillna("")
    return v[[c for c in keep if c in v]]


def image_ci_note(opt: dict | None, what: str = "image") -> str:
    """The footnote sentence saying how image-level (or slice-level) AUC intervals were made."""
    n_boot = f"{stats_options(opt)['n_boot']:,}"
    if stats_options(opt)["clustered"]:
        return (f"At {what} level the AUC 95% CI is patient-clustered (Obuchowski 1997: a patient's {what}s are "
                f"correlated) and the CSV adds the patient-level bootstrap CI ({n_boot} resamples of patients) and "
                f"the naive DeLong CI (auc_naive_ci_*) that treats every {what} as independent.")
    return (f"Paper mode: at {what} level the AUC 95% CI is DeLong's with every {what} taken as independent, as in "
            f"the paper; it is too narrow, since a patient's {what}s are correlated (the CSV gives the "
            f"patient-clustered CI, auc_clustered_ci_*, and the patient-level bootstrap, {n_boot} resamples).")


def cui_tables(models: list[dict], out: Outputs, table3_arch: str = "resnet34",
               table4_arch: str = "se_resnet34", opt: dict | None = None, pinned: dict | None = None) -> None:
    """Cui Table 3 (one architecture over the phase sets), Table 4 (two architectures on a shared
    phase set, with DeLong P), and Figures 2-4 (ROC curves and confusion matrices). ``pinned`` names
    the phase sets the config gave ``table4_arch`` (said in Table 4's footnote: not selected by this run)."""
    preds = {(m["arch"], m["phases"], m["seed"]): read_predictions(m) for m in models}
    rows = []
    for m in models:
        rows += metric_rows(preds[m["arch"], m["phases"], m["seed"]],
                            {"arch": m["arch"], "phases": m["phases"], "seed": m["seed"]}, opt)
    cols = ["arch", "phases", "seed", "level", "class", "n", "n_patients", "accuracy", "auc", "auc_ci_low",
            "auc_ci_high", "ci_method", "auc_boot_low", "auc_boot_high", "auc_clustered_ci_low", "auc_clustered_ci_high",
            "auc_naive_ci_low", "auc_naive_ci_high", "precision", "sensitivity", "specificity", "f1", "tp", "fp", "fn",
            "tn", "note"]
    t = pd.DataFrame(rows).reindex(columns=cols)
    t3 = t[t["arch"] == table3_arch].copy()
    t3.insert(1, "phase set", t3["phases"].map(PHASE_LABEL))
    t3 = seed_summary(t3, ["arch", "phase set", "phases", "level", "class"])
    notes = ["Test set of the cui split; image level = every test image is one call (as Cui et al.), patient "
             "level = mean probability per patient. Threshold 0.5 on P(high), fixed in advance. Patient-level AUC "
             "95% CI by DeLong (the CSV adds the class-stratified bootstrap CI).", image_ci_note(opt),
             "Rows per class: the class taken as positive (precision, sensitivity, specificity, F1 change; "
             "accuracy and AUC are shared). Each network's epoch was chosen on the validation patients."]
    if (t3["seed"].astype(str) == "mean").any():
        notes.append("Seeds: one row per seed, then the seeds' mean and SD (rows 'mean', 'sd').")
    out.table("t3", t3, title=f"Cui Table 3: {table3_arch} per phase set", footnotes=notes,
                markdown=_view(t3, ["phase set", "seed"]))
    # Table 4: both architectures on every phase set they share, with DeLong P per level
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
            sub["delong_p"] = [cmp_[lv]["p_value"] if a == table4_arch and f else np.nan
                               for a, lv, f in zip(sub["arch"], sub["level"], first)]
            sub["comparison"] = [cmp_[lv].get("method", "") if a == table4_arch and f else ""
                                 for a, lv, f in zip(sub["arch"], sub["level"], first)]
            rows4.append(sub)
    t4 = pd.concat(rows4, ignore_index=True) if rows4 else pd.DataFrame(columns=list(t.columns) + ["delong_p", "comparison"])
    adjust_columns(t4, ["delong_p"], opt)
    v4 = _view(t4, ["arch", "phases", "seed"]) if len(t4) else t4
    if len(t4):
        v4["DeLong P"] = [fmt(p) for p in t4["delong_p"]]
        for m in stats_options(opt)["adjust"]:
            v4[f"P ({ADJUST_NAMES[m]})"] = [fmt(p) for p in t4[f"delong_p_{m}"]]
    pinned_note = (f"{table4_arch}'s phase set ({', '.join(pinned[table4_arch])}) is set in the config "
                   f"(training.studies.cui.models.{table4_arch}), as Cui et al. chose theirs after Table 3; this run "
                   "did not select it." if pinned and pinned.get(table4_arch) else "")
    out.table("t4", t4, title=f"Cui Table 4: {table3_arch} vs {table4_arch}", markdown=v4,
                footnotes=notes[:2] + [f"DeLong P: {table4_arch} vs {table3_arch} on the same test images (image "
                                       "level, on the patient-clustered covariance unless paper mode) or patients "
                                       "(patient level), two-sided, once per level (on the low-class row).",
                                       family_note(t4, "delong_p", f"this table's {table4_arch} vs {table3_arch} "
                                                   "comparisons (phase sets x levels x seeds)", opt)]
                + ([pinned_note] if pinned_note else []))
    _figures(models, preds, out)


def roc_panel(ax, curves: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> None:
    """ROC curves (label, labels, P(high)) on one axis; curves with one class are skipped."""
    from sklearn.metrics import roc_curve

    for label, y, p in curves:
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{label} (AUC {stats.delong(y, p)[0][0]:.2f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity (high grade)")
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="lower right")


def confusion_panel(ax, y: np.ndarray | None, call: np.ndarray | None, title: str) -> None:
    """A 2 x 2 confusion matrix (rows true low/high, columns predicted); blank when there is nothing."""
    from sklearn.metrics import confusion_matrix

    if y is None or len(y) == 0:
        ax.axis("off")
        ax.set_title(title, fontsize=7)
        return
    cm = confusion_matrix(y, call, labels=[0, 1])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks([0, 1], ["low", "high"], fontsize=7)
    ax.set_yticks([0, 1], ["low", "high"], fontsize=7)
    ax.set_xlabel("predicted", fontsize=7)
    ax.set_ylabel("true", fontsize=7)
    ax.set_title(title, fontsize=7)


def roc_figure(panels: list[tuple[str, list]], png: Path, ncols: int = 2, pdf: Path | None = None) -> None:
    """ROC panels (title, curves) on a grid, ``ncols`` per row (PNG + PDF, ``pdf`` beside it by default)."""
    plt = pyplot()
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 4.2 * nrows), squeeze=False)
    for ax, (title, curves) in zip(axes.ravel(), panels):
        roc_panel(ax, curves, title)
    fig.tight_layout()
    save_figure(fig, png, pdf=pdf)
    plt.close(fig)


def confusion_figure(panels: list[tuple[str, np.ndarray | None, np.ndarray | None]], png: Path,
                     pdf: Path | None = None) -> None:
    plt = pyplot()
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.6), squeeze=False)
    for ax, (title, y, call) in zip(axes[0], panels):
        confusion_panel(ax, y, call, title)
    fig.tight_layout()
    save_figure(fig, png, pdf=pdf)
    plt.close(fig)


def _figures(models: list[dict], preds: dict, out: Outputs) -> None:
    roc_figure([(f"ROC, test set, {level} level",
                 [(f"{m['arch']} {m['phases']}", *_levels(preds[m["arch"], m["phases"], m["seed"]])[level][:2])
                  for m in models if not preds[m["arch"], m["phases"], m["seed"]].empty])
                for level in ("image", "patient")], out["roc"], pdf=out["roc_pdf"])
    panels = []
    for m in models:
        pr = preds[m["arch"], m["phases"], m["seed"]]
        y, p, _, _ = _levels(pr)["image"] if not pr.empty else (None, None, None, None)
        panels.append((f"{m['arch']}\n{m['phases']}", y, None if p is None else (p >= 0.5).astype(int)))
    confusion_figure(panels, out["confusion"], pdf=out["confusion_pdf"])


# ----------------------------------------------------------------------------------------------- Li et al.

def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def li_patient_call(slices: np.ndarray, boxes: np.ndarray, calls: np.ndarray, prob: np.ndarray,
                    min_run: int = 4, iou: float = 0.3) -> tuple[int, str]:
    """Li et al.'s rule: a grade needs more than three consecutive slices with the same call, where
    consecutive means adjacent slice indices whose boxes overlap with IoU > 0.3. High wins when both
    grades have such a run; with neither, the mean probability decides. Returns (call, basis)."""
    order = np.argsort(slices)
    s, b, c = slices[order], boxes[order], calls[order]
    best = {0: 0, 1: 0}
    run = 1
    for i in range(len(s)):
        if i and s[i] == s[i - 1] + 1 and c[i] == c[i - 1] and box_iou(b[i], b[i - 1]) > iou:
            run += 1
        else:
            run = 1
        best[int(c[i])] = max(best[int(c[i])], run)
    if best[1] >= min_run:
        return 1, f"{best[1]} consecutive high-grade slices"
    if best[0] >= min_run:
        return 0, f"{best[0]} consecutive low-grade slices"
    return int(np.mean(prob) >= 0.5), "no run of more than three slices: mean probability"


def li_patient_calls(pred: pd.DataFrame, set_name: str) -> pd.DataFrame:
    """Per patient of one set: label, mean P(high), and the call by Li's consecutive-slice rule."""
    rows = []
    for pid, g in pred[pred["set"] == set_name].groupby("patient_id", sort=True):
        prob = g["prob_high"].to_numpy(float)
        call, basis = li_patient_call(g["slice_index"].to_numpy(int), g[["x1", "y1", "x2", "y2"]].to_numpy(float),
                                      (prob >= 0.5).astype(int), prob)
        rows.append({"patient_id": pid, "label": int(g["label"].iloc[0]), "prob_mean": float(prob.mean()),
                     "call_li": call, "basis": basis})
    return pd.DataFrame(rows, columns=["patient_id", "label", "prob_mean", "call_li", "basis"])


def ci_text(r: dict | pd.Series, prefix: str = "") -> str:
    a = r[f"{prefix}auc"]
    if str(r.get("seed", "")) == "sd":  # the seeds' SD row: the SD of the AUC, no interval
        return "" if a != a else f"SD {a:.3f}"
    return "" if a != a else f"{a:.3f} ({r[f'{prefix}auc_ci_low']:.3f}–{r[f'{prefix}auc_ci_high']:.3f})"


def choose_reference(t2: pd.DataFrame, seed, selection: str, key: str = "phases", what: str = "phase"
                     ) -> tuple[str, str]:
    """The reference ``key`` (Li Table 2: the phase; Sun: the ROI setting) for one seed, and what it was
    chosen on: the best AUC on the validation patients (``selection`` validation), or on the test patients
    (``test``: the papers' post hoc procedure); ("", reason) when none can be chosen without the test patients."""
    set_name = "val" if selection == "validation" else "test"
    cand = t2[(t2["set"] == set_name) & (t2["seed"] == seed) & t2["auc"].notna()]
    if cand.empty:
        return "", (f"no validation patients in the split: no {what} is chosen, every pair is compared"
                    if selection == "validation" else "no test AUC")
    best = cand.sort_values(["auc", key], ascending=[False, True], kind="stable")[key].iloc[0]
    return best, ("best validation AUC" if set_name == "val" else "selected post hoc on the test set (paper mode)")


def li_comparisons(t2: pd.DataFrame, preds: dict, strong: str, opt: dict | None = None) -> pd.DataFrame:
    """Li Table 2's tests: per seed, each phase against the reference phase (chosen by ``choose_reference``,
    never on test patients unless paper mode) or, without a reference, every pair of phases; DeLong on the
    test patients both models saw, with the family's adjusted P values."""
    o = stats_options(opt)
    rows = []
    for sd in sorted(set(t2["seed"])):
        test = t2[(t2["set"] == "test") & (t2["seed"] == sd) & t2["auc"].notna()]
        ref, basis = choose_reference(t2, sd, o["selection"])
        phases = list(dict.fromkeys(test["phases"]))
        pairs = ([(ph, ref) for ph in phases if ph != ref] if ref else
                 [(a, b) for i, a in enumerate(phases) for b in phases[i + 1:]])
        for a, b in pairs:
            c = compare(preds[strong, a, sd], preds[strong, b, sd], opt)["patient"]
            rows.append({"seed": sd, "phase_a": a, "phase_b": b, "reference": ref, "chosen_on": basis,
                         "n": c.get("n"), "auc_a": c.get("auc_a", np.nan), "auc_b": c.get("auc_b", np.nan),
                         "difference": c.get("difference", np.nan), "z": c.get("z", np.nan), "p_value": c["p_value"]})
    out = pd.DataFrame(rows, columns=["seed", "phase_a", "phase_b", "reference", "chosen_on", "n", "auc_a", "auc_b",
                                      "difference", "z", "p_value"])
    adjust_columns(out, ["p_value"], opt)
    return out


def li_tables(models: list[dict], out: Outputs, strong: str = "resnet3d18",
              weak: str = "resnet18", opt: dict | None = None) -> dict[str, pd.DataFrame]:
    """Li Table 2 (strong, per phase, DeLong P vs a reference phase chosen without test patients, or all
    pairs), its comparisons table, Table 3 (weak, slice and patient level), the strong-vs-weak
    McNemar/DeLong table, and Figures 4-5 / A1-A2 (ROC, confusion)."""
    o = stats_options(opt)
    preds = {(m["arch"], m["phases"], m["seed"]): read_predictions(m) for m in models}
    t2 = _li_table2(models, preds, out, strong, o)
    t3, calls = _li_table3(models, preds, out, weak, o)
    mc = _li_strong_vs_weak(models, preds, calls, out, strong, weak, o)
    _li_figures(models, preds, calls, out, strong, weak)
    return {"table2": t2, "table3": t3, "mcnemar": mc}


def _li_table2(models: list[dict], preds: dict, out: Outputs, strong: str, o: dict) -> pd.DataFrame:
    """Li Table 2 (the 3D model per phase, DeLong P vs a reference phase) and its comparisons table."""
    # one cube (= one image) per patient
    rows2 = []
    for m in models:
        if m["arch"] != strong:
            continue
        pr = preds[strong, m["phases"], m["seed"]]
        for set_name in ("train", "val", "test"):
            if set_name == "val" and (pr.empty or not (pr["set"] == "val").any()):
                continue
            y, p, _, _ = _levels(pr, set_name)["patient"] if not pr.empty else (np.zeros(0), np.zeros(0), [], [])
            rows2.append({"phases": m["phases"], "seed": m["seed"], "set": set_name, **binary_summary(y, p, opt=o)})
    t2 = pd.DataFrame(rows2)
    comp = li_comparisons(t2, preds, strong, o) if len(t2) else li_comparisons(
        pd.DataFrame(columns=["set", "seed", "auc", "phases"]), preds, strong, o)
    if len(t2):
        t2["reference_phase"], t2["chosen_on"] = "", ""
        t2["delong_p_vs_reference"] = np.nan
        for m in o["adjust"]:
            t2[f"delong_p_vs_reference_{m}"] = np.nan
        for sd in sorted(set(t2["seed"])):
            ref, basis = choose_reference(t2, sd, o["selection"])
            sel = t2["seed"] == sd
            t2.loc[sel, "reference_phase"], t2.loc[sel, "chosen_on"] = ref, basis
            if not ref:
                continue
            for _, c in comp[(comp["seed"] == sd) & (comp["phase_b"] == ref)].iterrows():
                i = t2.index[sel & (t2["set"] == "test") & (t2["phases"] == c["phase_a"])]
                t2.loc[i, "delong_p_vs_reference"] = c["p_value"]
                for m in o["adjust"]:
                    t2.loc[i, f"delong_p_vs_reference_{m}"] = c[f"p_value_{m}"]
    t2 = seed_summary(t2, ["phases", "set"]) if len(t2) else t2
    v2 = pd.DataFrame({"Phase": t2["phases"].str.upper(), "Seed": t2["seed"], "Set": t2["set"], "n": t2["n"],
                       "AUC (95% CI)": [ci_text(r) for _, r in t2.iterrows()],
                       **{c.capitalize(): t2[c].map(fmt) for c in ("accuracy", "sensitivity", "specificity")},
                       "Reference": t2["reference_phase"].fillna("").str.upper(),
                       "DeLong P vs reference": t2["delong_p_vs_reference"].map(fmt),
                       **{f"P ({ADJUST_NAMES[m]})": t2[f"delong_p_vs_reference_{m}"].map(fmt) for m in o["adjust"]}}
                      ) if len(t2) else t2
    bases = sorted({b for b in comp["chosen_on"]} | ({b for b in t2["chosen_on"].dropna() if b} if len(t2) else set()))
    out.table("t2", t2, title=f"Li Table 2: strongly supervised {strong} per phase", markdown=v2,
                footnotes=["One 32³ tumour cube per patient; threshold 0.5 on P(high); sensitivity for high grade. "
                           "AUC 95% CI by DeLong (bootstrap CI in the CSV).",
                           "DeLong P: each phase's test-set AUC against the reference phase's, on the same patients. "
                           "Reference: " + ("; ".join(bases) if bases else "none") + "." +
                           (" Selected post hoc on the test set, as Li et al. did: these P values lean towards "
                            "significance." if o["selection"] == "test" else
                            " Never chosen on the test patients; without a reference see li_comparisons."),
                           family_note(comp, "p_value", "the phases' comparisons of each seed (li_comparisons)", o)])
    vc = comp.assign(**{c: comp[c].map(fmt) for c in ["auc_a", "auc_b", "difference", "p_value"] +
                        [f"p_value_{m}" for m in o["adjust"]]})
    out.table("comparisons", comp, title=f"Li Table 2's tests: {strong} phases compared (DeLong, test set)",
                markdown=vc, footnotes=["Each row: DeLong's test of two phases' test-set AUCs on the patients both "
                                        "models saw (two-sided); difference = AUC a - AUC b.",
                                        family_note(comp, "p_value", "all rows of this table", o)])
    return t2


def _li_table3(models: list[dict], preds: dict, out: Outputs, weak: str, o: dict) -> tuple[pd.DataFrame, dict]:
    """Li Table 3: the 2D model per slice and per patient (Li's rule, and the mean probability); the calls."""
    rows3, calls = [], {}
    for m in models:
        if m["arch"] != weak:
            continue
        pr = preds[weak, m["phases"], m["seed"]]
        for set_name in ("train", "test"):
            if pr.empty:
                continue
            y, p, _, pid = _levels(pr, set_name)["image"]
            pc = li_patient_calls(pr, set_name)
            calls[m["phases"], m["seed"], set_name] = pc
            sl = binary_summary(y, p, pid, opt=o)
            pat = binary_summary(pc["label"].to_numpy(), pc["call_li"].to_numpy(float))  # calls as 0/1 scores
            mean = binary_summary(pc["label"].to_numpy(), pc["prob_mean"].to_numpy())
            rows3.append({"phases": m["phases"], "seed": m["seed"], "set": set_name,
                          **{f"slice_{k}": v for k, v in sl.items()},
                          **{f"li_{k}": pat[k] for k in ("n", "accuracy", "sensitivity", "specificity")},
                          **{f"mean_{k}": v for k, v in mean.items()}})
    t3 = seed_summary(pd.DataFrame(rows3), ["phases", "set"])
    v3 = pd.DataFrame({"Phase": t3["phases"].str.upper(), "Seed": t3["seed"], "Set": t3["set"],
                       "Slices": t3["slice_n"], "Slice AUC (95% CI)": [ci_text(r, "slice_") for _, r in t3.iterrows()],
                       **{f"Slice {c}": t3[f"slice_{c}"].map(fmt) for c in ("accuracy", "sensitivity", "specificity")},
                       "Patients": t3["li_n"],
                       **{f">3 slices {c}": t3[f"li_{c}"].map(fmt) for c in ("accuracy", "sensitivity", "specificity")},
                       "Patient AUC, mean P (95% CI)": [ci_text(r, "mean_") for _, r in t3.iterrows()]}) if len(t3) else t3
    out.table("t3", t3, title=f"Li Table 3: weakly supervised {weak} per phase", markdown=v3,
                footnotes=["Single slice: every tumour slice is one call. >3 slices: Li's patient rule, a grade needs "
                           "more than three consecutive slices with that call, adjacent slices linked by tumour-box "
                           "IoU > 0.3 (high wins if both; neither: mean probability). Threshold 0.5.",
                           image_ci_note(o, "slice"),
                           "The last column ranks patients by their mean slice probability (our addition)."])
    return t3, calls


def _li_strong_vs_weak(models: list[dict], preds: dict, calls: dict, out: Outputs, strong: str, weak: str,
                       o: dict) -> pd.DataFrame:
    """Strong vs weak, per phase and seed, on the test patients both models saw: McNemar and DeLong."""
    rows = []
    for m in models:
        if m["arch"] != strong or (weak, m["phases"], m["seed"]) not in preds:
            continue
        ps = preds[strong, m["phases"], m["seed"]]
        pc = calls.get((m["phases"], m["seed"], "test"))
        if ps.empty or pc is None or pc.empty:
            continue
        ys, p_s, ids, _ = _levels(ps)["patient"]
        st = pd.DataFrame({"label": ys, "prob_strong": p_s}, index=ids)
        j = st.join(pc.set_index("patient_id")[["call_li", "prob_mean"]], how="inner")
        call_s = (j["prob_strong"] >= 0.5).astype(int).to_numpy()
        y = j["label"].to_numpy(int)
        rec = {"phases": m["phases"], "seed": m["seed"], "n": len(j)}
        for name, cls in (("sensitivity", 1), ("specificity", 0)):
            sel = y == cls
            right_s, right_w = call_s[sel] == cls, j["call_li"].to_numpy()[sel] == cls
            mc = stats.mcnemar(right_s, right_w)
            rec.update({f"{name}_n": int(sel.sum()), f"{name}_strong": float(right_s.mean()) if sel.any() else np.nan,
                        f"{name}_weak": float(right_w.mean()) if sel.any() else np.nan,
                        f"{name}_p_exact": mc["p_exact"], f"{name}_p_chi2_cc": mc["p_chi2_cc"]})
        if len(np.unique(y)) == 2:
            d = stats.delong_test(y, j["prob_strong"].to_numpy(), j["prob_mean"].to_numpy())
            rec.update(auc_strong=d["auc_a"], auc_weak=d["auc_b"], delong_p=d["p_value"])
        rows.append(rec)
    mc = pd.DataFrame(rows)
    fam = ["sensitivity_p_exact", "specificity_p_exact", "delong_p"]
    adjust_columns(mc, fam, o)
    h = o["adjust"][0]
    vm = pd.DataFrame({"Phase": mc["phases"].str.upper(), "Seed": mc["seed"], "Patients": mc["n"],
                       "Sensitivity strong / weak": [f"{a:.3f} / {b:.3f}" if a == a else "" for a, b in
                                                     zip(mc["sensitivity_strong"], mc["sensitivity_weak"])],
                       "McNemar P (exact)": mc["sensitivity_p_exact"].map(fmt),
                       f"{ADJUST_NAMES[h]}": mc[f"sensitivity_p_exact_{h}"].map(fmt),
                       "Specificity strong / weak": [f"{a:.3f} / {b:.3f}" if a == a else "" for a, b in
                                                     zip(mc["specificity_strong"], mc["specificity_weak"])],
                       "McNemar P (exact) ": mc["specificity_p_exact"].map(fmt),
                       f"{ADJUST_NAMES[h]} ": mc[f"specificity_p_exact_{h}"].map(fmt),
                       "DeLong P (AUC)": mc.get("delong_p", pd.Series(np.nan, index=mc.index)).map(fmt),
                       f"{ADJUST_NAMES[h]}  ": mc.get(f"delong_p_{h}", pd.Series(np.nan, index=mc.index)).map(fmt)}) \
        if len(mc) else mc
    out.table("mcnemar", mc, title="Li: strongly (3D) vs weakly (2D, >3-slice rule) supervised, test set",
                markdown=vm, footnotes=["McNemar on paired correct/incorrect calls: sensitivity among the high-grade, "
                                        "specificity among the low-grade test patients (exact binomial; the CSV also "
                                        "gives chi-square with continuity correction).",
                                        "DeLong: the 3D P(high) against the 2D mean slice probability per patient.",
                                        family_note(mc, fam, "every test of this table (McNemar on sensitivity and "
                                                    "on specificity, and DeLong, per phase and seed)", o)])
    return mc


def _li_figures(models, preds, calls, out: Outputs, strong: str, weak: str) -> None:
    roc_figure([(f"{arch} ({what}), {set_name}ing set",
                 [(f"{m['phases'].upper()} s{m['seed']}", *_levels(preds[arch, m["phases"], m["seed"]], set_name)[level][:2])
                  for m in models if m["arch"] == arch and not preds[arch, m["phases"], m["seed"]].empty])
                for arch, level, what in ((strong, "patient", "3D, per patient"), (weak, "image", "2D, per slice"))
                for set_name in ("train", "test")], out["roc"], pdf=out["roc_pdf"])
    panels = []
    for m in models:
        pr = preds[m["arch"], m["phases"], m["seed"]]
        if pr.empty:
            panels.append((f"{m['arch']} {m['phases'].upper()}", None, None))
        elif m["arch"] == weak and (m["phases"], m["seed"], "test") in calls:
            pc = calls[m["phases"], m["seed"], "test"]
            panels.append((f"{weak} {m['phases'].upper()}\n>3-slice rule", pc["label"].to_numpy(), pc["call_li"].to_numpy()))
        else:
            y, p, _, _ = _levels(pr)["patient"]
            panels.append((f"{m['arch']} {m['phases'].upper()}\nper patient", y, (p >= 0.5).astype(int)))
    confusion_figure(panels, out["confusion"], pdf=out["confusion_pdf"])


# --------------------------------------------------------------------------------------------------- Dai

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
                y, pr, _, _ = _levels(p)[level]
                if len(np.unique(y)) == 2:
                    fold_aucs.append(stats.delong(y, pr)[0][0])
            y, pr, _, pid = _levels(test)[level] if len(test) else (np.zeros(0), np.zeros(0), [], [])
            rows.append({"arch": arch, "phases": ph, "variant": var, "batch": hp_batch, "seed": sd, "level": level,
                         "folds": len(folds), "folds_trained": sum(not p.empty for _, p in folds),
                         **binary_summary(y, pr, pid if level == "image" else None, opt=opt),
                         "fold_auc_mean": float(np.mean(fold_aucs)) if fold_aucs else np.nan,
                         "fold_auc_sd": float(np.std(fold_aucs, ddof=1)) if len(fold_aucs) > 1 else np.nan})
    t5 = seed_summary(pd.DataFrame(rows), ["arch", "phases", "variant", "batch", "level"])
    v5 = pd.DataFrame({"Model": t5["arch"] + " " + t5["phases"].str.upper(), "Variant": t5["variant"],
                       "Batch": t5["batch"], "Level": t5["level"], "n": t5["n"],
                       **{c.capitalize(): t5[c].map(fmt) for c in ("sensitivity", "specificity", "accuracy")},
                       "AUC (95% CI), pooled": [ci_text(r) for _, r in t5.iterrows()],
                       "Fold AUC mean ± SD": [f"{a:.3f} ± {b:.3f}" if b == b else fmt(a) for a, b in
                                              zip(t5["fold_auc_mean"], t5["fold_auc_sd"])]}) if len(t5) else t5
    out.table("t5", t5, title="Dai Table 5: k-fold cross-validation per variant (batch-size sweep)",
                markdown=v5, footnotes=["Pooled: every fold's test predictions together (each patient predicted once, "
                                        "by the model that did not train on it). Slice level: every slice is one "
                                        "call; patient level: mean probability. Threshold 0.5; sensitivity for high "
                                        "grade. Patient-level AUC 95% CI by DeLong (bootstrap CI in the CSV).",
                                        image_ci_note(opt, "slice"),
                                        "No test: the variants are described side by side, none is selected (every "
                                        "fold trains for its set number of epochs; there is no validation set)."])
    roc_figure([(f"ROC, out-of-fold, {'slice' if level == 'image' else level} level",
                 [(f"{a} {ph} {v} s{sd}", *_levels(t)[level][:2]) for (a, ph, v, sd), t in pooled.items() if len(t)])
                for level in ("image", "patient")], out["roc"], pdf=out["roc_pdf"])
    panels = []
    for (a, ph, v, sd), t in pooled.items():
        y, p, _, _ = _levels(t)["image"] if len(t) else (None, None, None, None)
        panels.append((f"{a} {v}\nslices, out-of-fold", y, None if p is None else (p >= 0.5).astype(int)))
    confusion_figure(panels, out["confusion"], pdf=out["confusion_pdf"])
    return t5


# ------------------------------------------------------------------------------------------ Sun et al.

def sun_tables(models: list[dict], out: Outputs, opt: dict | None = None) -> dict[str, pd.DataFrame]:
    """Sun et al.'s ROI settings compared: the same network on each ROI setting (rectangular box, tumour
    only, box expanded 5 mm; config ``roi: [box, tumor, box5mm]``), patient-level AUC (mean P(high) over a
    patient's crops) on the training and test patients, and the test image-level AUC with its
    patient-clustered CI; DeLong tests against the setting with the best validation AUC, or every pair
    when the split has no validation patients, with the family's adjusted P values; ROC curves per set."""
    o = stats_options(opt)
    preds = {(m["roi"], m["arch"], m["phases"], m["seed"]): read_predictions(m) for m in models}
    rows = []
    for (roi, arch, ph, sd), pr in preds.items():
        for set_name in ("train", "val", "test"):
            if pr.empty or not (pr["set"] == set_name).any():
                continue
            lv = _levels(pr, set_name)
            y, p, _, _ = lv["patient"]
            row = {"roi": roi, "arch": arch, "phases": ph, "seed": sd, "set": set_name, **binary_summary(y, p, opt=o)}
            yi, pi, _, pid = lv["image"]
            img = binary_summary(yi, pi, pid, opt=o)
            row.update(image_n=img["n"], image_auc=img["auc"], image_auc_ci_low=img["auc_ci_low"],
                       image_auc_ci_high=img["auc_ci_high"])
            rows.append(row)
    t = pd.DataFrame(rows)
    comp_rows = []
    for (arch, ph, sd) in sorted({(a, p_, s_) for _, a, p_, s_ in preds}):
        sub = t[(t["arch"] == arch) & (t["phases"] == ph) & (t["seed"] == sd)] if len(t) else t
        ref, basis = choose_reference(sub, sd, o["selection"], key="roi", what="ROI setting") if len(sub) else ("", "")
        rois = [r for r, a, p_, s_ in preds if (a, p_, s_) == (arch, ph, sd) and not preds[r, a, p_, s_].empty]
        pairs = [(r, ref) for r in rois if r != ref] if ref else [(a, b) for i, a in enumerate(rois) for b in rois[i + 1:]]
        for a, b in pairs:
            c = compare(preds[a, arch, ph, sd], preds[b, arch, ph, sd], o)["patient"]
            comp_rows.append({"arch": arch, "phases": ph, "seed": sd, "roi_a": a, "roi_b": b, "reference": ref,
                              "chosen_on": basis, "n": c.get("n"), "auc_a": c.get("auc_a", np.nan),
                              "auc_b": c.get("auc_b", np.nan), "difference": c.get("difference", np.nan),
                              "p_value": c["p_value"]})
    comp = pd.DataFrame(comp_rows, columns=["arch", "phases", "seed", "roi_a", "roi_b", "reference", "chosen_on", "n",
                                            "auc_a", "auc_b", "difference", "p_value"])
    adjust_columns(comp, ["p_value"], o)
    if len(t):  # each test row: its DeLong P against the reference (or, without one, see the pairs below)
        t["reference_roi"] = ""
        t["delong_p_vs_reference"] = np.nan
        for m in o["adjust"]:
            t[f"delong_p_vs_reference_{m}"] = np.nan
        for _, c in comp[comp["reference"] != ""].iterrows():
            i = t.index[(t["set"] == "test") & (t["roi"] == c["roi_a"]) & (t["arch"] == c["arch"]) &
                        (t["phases"] == c["phases"]) & (t["seed"] == c["seed"])]
            t.loc[i, "delong_p_vs_reference"] = c["p_value"]
            for m in o["adjust"]:
                t.loc[i, f"delong_p_vs_reference_{m}"] = c[f"p_value_{m}"]
        for key, ref in {(r["arch"], r["phases"], r["seed"]): r["reference"] for _, r in comp.iterrows()}.items():
            t.loc[(t["arch"] == key[0]) & (t["phases"] == key[1]) & (t["seed"] == key[2]), "reference_roi"] = ref
        t = seed_summary(t, ["roi", "arch", "phases", "set"])
    view = pd.DataFrame({"ROI setting": t["roi"], "Model": t["arch"] + " " + t["phases"], "Seed": t["seed"],
                         "Set": t["set"], "n": t["n"], "AUC (95% CI), patient": [ci_text(r) for _, r in t.iterrows()],
                         **{c.capitalize(): t[c].map(fmt) for c in ("accuracy", "sensitivity", "specificity")},
                         "AUC (95% CI), image": [ci_text(r, "image_") for _, r in t.iterrows()],
                         "DeLong P vs reference": t["delong_p_vs_reference"].map(fmt),
                         **{f"P ({ADJUST_NAMES[m]})": t[f"delong_p_vs_reference_{m}"].map(fmt) for m in o["adjust"]}}
                        ) if len(t) else t
    pairs_text = "; ".join(f"{a} vs {b}: P {fmt(p)}" + "".join(f", {ADJUST_NAMES[m]} {fmt(r[f'p_value_{m}'])}"
                                                             for m in o["adjust"])
                           for a, b, p, (_, r) in zip(comp["roi_a"], comp["roi_b"], comp["p_value"], comp.iterrows()))
    bases = sorted({b for b in comp["chosen_on"] if b})
    out.table("rois", t, title="Sun et al.: the ROI settings compared (the same network and phases on each)",
              markdown=view, footnotes=[
                  "Patient level: mean P(high) over a patient's crops; threshold 0.5; AUC 95% CI by DeLong. Image "
                  "level (test): every crop one call, " + ("naive DeLong CI (paper mode)." if not o["clustered"] else
                                                           "patient-clustered CI (Obuchowski 1997)."),
                  "DeLong P: each setting's test-set patient-level AUC against the reference setting's, on the same "
                  "patients. Reference: " + ("; ".join(bases) if bases else "none") + "." +
                  (" Selected post hoc on the test set (paper mode)." if o["selection"] == "test" else
                   " Never chosen on the test patients."),
                  ("Pairs compared: " + pairs_text + "." if len(comp) else "No pair of settings could be compared."),
                  family_note(comp, "p_value", "the ROI settings' comparisons of each model and seed", o)])
    curves = [(f"ROC, {set_name} set, patient level",
               [(f"{r} ({a} {p_}, s{sd})", *_levels(pr, set_name)["patient"][:2])
                for (r, a, p_, sd), pr in preds.items() if not pr.empty and (pr["set"] == set_name).any()])
              for set_name in ("train", "test")]
    roc_figure(curves, out["roc"], pdf=out["roc_pdf"])
    return {"rois": t, "comparisons": comp}
