"""Paper performance tables and figures from the matrix's predictions.

- Cui (Tables 3-4, Figures 2-4): image level (every test image is one call, as Cui et al.) and patient
  level (mean probability per patient); per class (low, high rows): accuracy, AUC with its DeLong and
  bootstrap 95% CIs, precision, sensitivity, specificity, F1; Table 4 compares two architectures on the
  same test images / patients with DeLong's test for correlated AUCs.
- Li (Tables 2-3, Figures 4-5, A1-A2): the "strong" 3D network (one cube per patient) per phase, with
  DeLong P against the best phase; the "weak" 2D network per slice and per patient by Li's rule (more
  than three consecutive slices with one call, linked by box IoU > 0.3); strong vs weak per phase by
  McNemar on sensitivity (high-grade patients) and specificity (low-grade patients), and DeLong.
- Dai (Table 5, Figures 9-10): k-fold cross-validation per variant (the batch-size sweep); the folds'
  test predictions pooled (out of fold), and the mean and SD of the per-fold AUCs.
Threshold 0.5 on P(high) throughout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .outputs import pyplot, read_table, save_figure, write_table

PHASE_LABEL = {"up": "plain", "cmp": "corticomedullary", "np": "parenchymal", "ep": "excretory",
               "all": "four phases combined", "stack": "three phases as channels"}


def _levels(pred: pd.DataFrame, set_name: str = "test") -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(labels, P(high), unit IDs) at image and patient level for one set (default: test)."""
    t = pred[pred["set"] == set_name]
    pat = t.groupby("patient_id").agg(label=("label", "first"), prob=("prob_high", "mean"))
    return {"image": (t["label"].to_numpy(int), t["prob_high"].to_numpy(float),
                      (t["patient_id"] + ":" + t["source"] + ":" + t["slice_index"].astype(str)).to_numpy()),
            "patient": (pat["label"].to_numpy(int), pat["prob"].to_numpy(float), pat.index.to_numpy())}


def metric_rows(pred: pd.DataFrame, model: dict) -> list[dict]:
    """Per-class metrics with DeLong CIs at image and patient level for one model's test predictions."""
    rows = []
    if pred.empty:
        return [{**model, "level": "", "class": "", "n": 0, "note": "not trained (see the model's meta.json)"}]
    for level, (y, p, _) in _levels(pred).items():
        if len(np.unique(y)) < 2:
            rows.append({**model, "level": level, "class": "", "n": len(y), "note": "test set holds one grade group"})
            continue
        ci = auc_cis(y, p)
        for r in stats.class_metrics(y, p):
            rows.append({**model, "level": level, **r, **ci, "note": ""})
    return rows


def auc_cis(y: np.ndarray, p: np.ndarray, seed: int = 0) -> dict:
    """AUC with its DeLong and (seeded, class-stratified) bootstrap 95% CIs."""
    auc, lo, hi = stats.auc_ci(y, p)
    blo, bhi = stats.bootstrap_auc_ci(y, p, n_boot=2000, seed=seed)
    return {"auc": auc, "auc_ci_low": lo, "auc_ci_high": hi, "auc_boot_low": blo, "auc_boot_high": bhi}


def binary_summary(y: np.ndarray, p: np.ndarray) -> dict:
    """n, AUC (DeLong and bootstrap CIs), accuracy, sensitivity (high) and specificity (low) at 0.5."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    call = (p >= 0.5).astype(int)
    out = {"n": len(y), "n_high": int(y.sum()), "accuracy": float((call == y).mean()) if len(y) else np.nan,
           "sensitivity": float(call[y == 1].mean()) if (y == 1).any() else np.nan,
           "specificity": float(1 - call[y == 0].mean()) if (y == 0).any() else np.nan}
    if len(np.unique(y)) == 2:
        out.update(auc_cis(y, p))
    else:
        out.update(auc=np.nan, auc_ci_low=np.nan, auc_ci_high=np.nan, auc_boot_low=np.nan, auc_boot_high=np.nan)
    return out


def compare(pred_a: pd.DataFrame, pred_b: pd.DataFrame) -> dict[str, dict]:
    """DeLong test of two models on the same test units, per level."""
    out = {}
    la, lb = _levels(pred_a), _levels(pred_b)
    for level in ("image", "patient"):
        ya, pa, ida = la[level]
        yb, pb, idb = lb[level]
        common = np.intersect1d(ida, idb)
        ia = pd.Series(np.arange(len(ida)), index=ida).loc[common].to_numpy()
        ib = pd.Series(np.arange(len(idb)), index=idb).loc[common].to_numpy()
        if len(np.unique(ya[ia])) < 2:
            out[level] = {"p_value": np.nan, "n": len(common)}
            continue
        out[level] = {**stats.delong_test(ya[ia], pa[ia], pb[ib]), "n": len(common)}
    return out


def read_predictions(m: dict) -> pd.DataFrame:
    """A cell's prediction table (``predictions`` path, or ``dir``/predictions.tsv)."""
    path = m.get("predictions") or f"{m['dir']}/predictions.tsv"
    return read_table(path, dtype={"source": str})


def _fmt(v: float) -> str:
    return "" if v != v else f"{v:.3f}"


def _view(t: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    v = t.copy()
    v["AUC (95% CI)"] = [f"{a:.3f} ({lo:.3f}–{hi:.3f})" if a == a and a is not None else "" for a, lo, hi in
                         zip(v["auc"], v["auc_ci_low"], v["auc_ci_high"])]
    for c in ("accuracy", "precision", "sensitivity", "specificity", "f1"):
        v[c] = v[c].map(_fmt)
    keep = first + ["level", "class", "n", "accuracy", "AUC (95% CI)", "precision", "sensitivity", "specificity", "f1",
                    "note"]
    v["note"] = v["note"].fillna("")
    return v[[c for c in keep if c in v]]


def cui_tables(models: list[dict], out_dir: Path, fig_dir: Path, table3_arch: str = "resnet34",
               table4_arch: str = "se_resnet34") -> None:
    """Cui Table 3 (one architecture over the phase sets), Table 4 (two architectures on a shared
    phase set, with DeLong P), and Figures 2-4 (ROC curves and confusion matrices)."""
    preds = {(m["arch"], m["phases"], m["seed"]): read_predictions(m) for m in models}
    rows = []
    for m in models:
        rows += metric_rows(preds[m["arch"], m["phases"], m["seed"]],
                            {"arch": m["arch"], "phases": m["phases"], "seed": m["seed"]})
    cols = ["arch", "phases", "seed", "level", "class", "n", "accuracy", "auc", "auc_ci_low", "auc_ci_high",
            "auc_boot_low", "auc_boot_high", "precision", "sensitivity", "specificity", "f1", "tp", "fp", "fn", "tn", "note"]
    t = pd.DataFrame(rows).reindex(columns=cols)
    t3 = t[t["arch"] == table3_arch].copy()
    t3.insert(1, "phase set", t3["phases"].map(PHASE_LABEL))
    notes = ["Test set of the cui split; image level = every test image is one call (as Cui et al.), patient "
             "level = mean probability per patient. Threshold 0.5 on P(high). AUC 95% CI by DeLong (the CSV also "
             "gives the class-stratified bootstrap CI, 2,000 resamples); at image level both treat a patient's "
             "images as independent, as the paper did.",
             "Rows per class: the class taken as positive (precision, sensitivity, specificity, F1 change; "
             "accuracy and AUC are shared)."]
    write_table(out_dir / "cui_table3", t3, title=f"Cui Table 3: {table3_arch} per phase set", footnotes=notes,
                markdown=_view(t3, ["phase set"]))
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
            cmp_ = compare(preds[table4_arch, ph, sd], preds[table3_arch, ph, sd])
            sub = t[(t["phases"] == ph) & (t["seed"] == sd) & t["arch"].isin([table3_arch, table4_arch])].copy()
            sub["delong_p"] = [cmp_[lv]["p_value"] if a == table4_arch else np.nan for a, lv in zip(sub["arch"], sub["level"])]
            rows4.append(sub)
    t4 = pd.concat(rows4, ignore_index=True) if rows4 else pd.DataFrame(columns=list(t.columns) + ["delong_p"])
    v4 = _view(t4, ["arch", "phases"]) if len(t4) else t4
    if len(t4):
        v4["DeLong P"] = [_fmt(p) for p in t4["delong_p"]]
    write_table(out_dir / "cui_table4", t4, title=f"Cui Table 4: {table3_arch} vs {table4_arch}", markdown=v4,
                footnotes=notes[:1] + [f"DeLong P: {table4_arch} vs {table3_arch} on the same test images (image "
                                       "level) or patients (patient level), two-sided."])
    _figures(models, preds, fig_dir)


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


def roc_figure(panels: list[tuple[str, list]], stem: Path, ncols: int = 2) -> None:
    """ROC panels (title, curves) on a grid, ``ncols`` per row (PNG + PDF)."""
    plt = pyplot()
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 4.2 * nrows), squeeze=False)
    for ax, (title, curves) in zip(axes.ravel(), panels):
        roc_panel(ax, curves, title)
    fig.tight_layout()
    save_figure(fig, stem)
    plt.close(fig)


def confusion_figure(panels: list[tuple[str, np.ndarray | None, np.ndarray | None]], stem: Path) -> None:
    plt = pyplot()
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.6), squeeze=False)
    for ax, (title, y, call) in zip(axes[0], panels):
        confusion_panel(ax, y, call, title)
    fig.tight_layout()
    save_figure(fig, stem)
    plt.close(fig)


def _figures(models: list[dict], preds: dict, fig_dir: Path) -> None:
    roc_figure([(f"ROC, test set, {level} level",
                 [(f"{m['arch']} {m['phases']}", *_levels(preds[m["arch"], m["phases"], m["seed"]])[level][:2])
                  for m in models if not preds[m["arch"], m["phases"], m["seed"]].empty])
                for level in ("image", "patient")], fig_dir / "cui_roc")
    panels = []
    for m in models:
        pr = preds[m["arch"], m["phases"], m["seed"]]
        y, p, _ = _levels(pr)["image"] if not pr.empty else (None, None, None)
        panels.append((f"{m['arch']}\n{m['phases']}", y, None if p is None else (p >= 0.5).astype(int)))
    confusion_figure(panels, fig_dir / "cui_confusion")


# ----------------------------------------------------------------------------------------------- Li et al.

def li_patient_calls(pred: pd.DataFrame, set_name: str) -> pd.DataFrame:
    """Per patient of one set: label, mean P(high), and the call by Li's consecutive-slice rule."""
    from .train import li_patient_call

    rows = []
    for pid, g in pred[pred["set"] == set_name].groupby("patient_id", sort=True):
        prob = g["prob_high"].to_numpy(float)
        call, basis = li_patient_call(g["slice_index"].to_numpy(int), g[["x1", "y1", "x2", "y2"]].to_numpy(float),
                                      (prob >= 0.5).astype(int), prob)
        rows.append({"patient_id": pid, "label": int(g["label"].iloc[0]), "prob_mean": float(prob.mean()),
                     "call_li": call, "basis": basis})
    return pd.DataFrame(rows, columns=["patient_id", "label", "prob_mean", "call_li", "basis"])


def _ci_text(r: dict | pd.Series, prefix: str = "") -> str:
    a = r[f"{prefix}auc"]
    return "" if a != a else f"{a:.3f} ({r[f'{prefix}auc_ci_low']:.3f}–{r[f'{prefix}auc_ci_high']:.3f})"


def li_tables(models: list[dict], out_dir: Path, fig_dir: Path, strong: str = "resnet3d18",
              weak: str = "resnet18") -> dict[str, pd.DataFrame]:
    """Li Table 2 (strong, per phase, DeLong P vs the best phase), Table 3 (weak, slice and patient
    level), the strong-vs-weak McNemar/DeLong table, and Figures 4-5 / A1-A2 (ROC, confusion)."""
    preds = {(m["arch"], m["phases"], m["seed"]): read_predictions(m) for m in models}
    seeds = sorted({m["seed"] for m in models})
    # Table 2: the 3D model, one cube (= one image) per patient
    rows2 = []
    for m in models:
        if m["arch"] != strong:
            continue
        pr = preds[strong, m["phases"], m["seed"]]
        for set_name in ("train", "test"):
            y, p, ids = _levels(pr, set_name)["patient"] if not pr.empty else (np.zeros(0), np.zeros(0), [])
            rows2.append({"phases": m["phases"], "seed": m["seed"], "set": set_name, **binary_summary(y, p)})
    t2 = pd.DataFrame(rows2)
    if len(t2):
        t2["delong_p_vs_best"] = np.nan
        t2["best_phase"] = ""
        for sd in seeds:
            test = t2[(t2["set"] == "test") & (t2["seed"] == sd) & t2["auc"].notna()]
            if test.empty:
                continue
            best = test.sort_values("auc", ascending=False)["phases"].iloc[0]
            for i in test.index:
                ph = t2.loc[i, "phases"]
                if ph != best:  # DeLong on the patients both models saw (the shared comparison of Cui Table 4)
                    t2.loc[i, "delong_p_vs_best"] = compare(preds[strong, ph, sd], preds[strong, best, sd])["patient"]["p_value"]
                t2.loc[i, "best_phase"] = best
    v2 = pd.DataFrame({"Phase": t2["phases"].str.upper(), "Seed": t2["seed"], "Set": t2["set"], "n": t2["n"],
                       "AUC (95% CI)": [_ci_text(r) for _, r in t2.iterrows()],
                       **{c.capitalize(): t2[c].map(_fmt) for c in ("accuracy", "sensitivity", "specificity")},
                       "DeLong P vs best": t2["delong_p_vs_best"].map(_fmt)}) if len(t2) else t2
    write_table(out_dir / "li_table2", t2, title=f"Li Table 2: strongly supervised {strong} per phase", markdown=v2,
                footnotes=["One 32³ tumour cube per patient; threshold 0.5 on P(high); sensitivity for high grade. "
                           "AUC 95% CI by DeLong (bootstrap CI in the CSV).",
                           "DeLong P: each phase's test-set AUC against the best phase's, on the same patients."])
    # Table 3: the 2D model, per slice and per patient (Li's rule, and the mean probability)
    rows3, calls = [], {}
    for m in models:
        if m["arch"] != weak:
            continue
        pr = preds[weak, m["phases"], m["seed"]]
        for set_name in ("train", "test"):
            if pr.empty:
                continue
            y, p, _ = _levels(pr, set_name)["image"]
            pc = li_patient_calls(pr, set_name)
            calls[m["phases"], m["seed"], set_name] = pc
            sl = binary_summary(y, p)
            pat = binary_summary(pc["label"].to_numpy(), pc["call_li"].to_numpy(float))  # calls as 0/1 scores
            mean = binary_summary(pc["label"].to_numpy(), pc["prob_mean"].to_numpy())
            rows3.append({"phases": m["phases"], "seed": m["seed"], "set": set_name,
                          **{f"slice_{k}": v for k, v in sl.items()},
                          **{f"li_{k}": pat[k] for k in ("n", "accuracy", "sensitivity", "specificity")},
                          **{f"mean_{k}": v for k, v in mean.items()}})
    t3 = pd.DataFrame(rows3)
    v3 = pd.DataFrame({"Phase": t3["phases"].str.upper(), "Seed": t3["seed"], "Set": t3["set"],
                       "Slices": t3["slice_n"], "Slice AUC (95% CI)": [_ci_text(r, "slice_") for _, r in t3.iterrows()],
                       **{f"Slice {c}": t3[f"slice_{c}"].map(_fmt) for c in ("accuracy", "sensitivity", "specificity")},
                       "Patients": t3["li_n"],
                       **{f">3 slices {c}": t3[f"li_{c}"].map(_fmt) for c in ("accuracy", "sensitivity", "specificity")},
                       "Patient AUC, mean P (95% CI)": [_ci_text(r, "mean_") for _, r in t3.iterrows()]}) if len(t3) else t3
    write_table(out_dir / "li_table3", t3, title=f"Li Table 3: weakly supervised {weak} per phase", markdown=v3,
                footnotes=["Single slice: every tumour slice is one call. >3 slices: Li's patient rule, a grade needs "
                           "more than three consecutive slices with that call, adjacent slices linked by tumour-box "
                           "IoU > 0.3 (high wins if both; neither: mean probability). Threshold 0.5.",
                           "The last column ranks patients by their mean slice probability (our addition)."])
    # strong vs weak, per phase and seed, on the test patients both models saw
    rows = []
    for m in models:
        if m["arch"] != strong or (weak, m["phases"], m["seed"]) not in preds:
            continue
        ps = preds[strong, m["phases"], m["seed"]]
        pc = calls.get((m["phases"], m["seed"], "test"))
        if ps.empty or pc is None or pc.empty:
            continue
        ys, p_s, ids = _levels(ps)["patient"]
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
    vm = pd.DataFrame({"Phase": mc["phases"].str.upper(), "Seed": mc["seed"], "Patients": mc["n"],
                       "Sensitivity strong / weak": [f"{a:.3f} / {b:.3f}" if a == a else "" for a, b in
                                                     zip(mc["sensitivity_strong"], mc["sensitivity_weak"])],
                       "McNemar P (exact)": mc["sensitivity_p_exact"].map(_fmt),
                       "Specificity strong / weak": [f"{a:.3f} / {b:.3f}" if a == a else "" for a, b in
                                                     zip(mc["specificity_strong"], mc["specificity_weak"])],
                       "McNemar P (exact) ": mc["specificity_p_exact"].map(_fmt),
                       "DeLong P (AUC)": mc.get("delong_p", pd.Series(np.nan, index=mc.index)).map(_fmt)}) \
        if len(mc) else mc
    write_table(out_dir / "li_mcnemar", mc, title="Li: strongly (3D) vs weakly (2D, >3-slice rule) supervised, test set",
                markdown=vm, footnotes=["McNemar on paired correct/incorrect calls: sensitivity among the high-grade, "
                                        "specificity among the low-grade test patients (exact binomial; the CSV also "
                                        "gives chi-square with continuity correction).",
                                        "DeLong: the 3D P(high) against the 2D mean slice probability per patient."])
    _li_figures(models, preds, calls, fig_dir, strong, weak)
    return {"table2": t2, "table3": t3, "mcnemar": mc}


def _li_figures(models, preds, calls, fig_dir: Path, strong: str, weak: str) -> None:
    roc_figure([(f"{arch} ({what}), {set_name}ing set",
                 [(f"{m['phases'].upper()} s{m['seed']}", *_levels(preds[arch, m["phases"], m["seed"]], set_name)[level][:2])
                  for m in models if m["arch"] == arch and not preds[arch, m["phases"], m["seed"]].empty])
                for arch, level, what in ((strong, "patient", "3D, per patient"), (weak, "image", "2D, per slice"))
                for set_name in ("train", "test")], fig_dir / "li_roc")
    panels = []
    for m in models:
        pr = preds[m["arch"], m["phases"], m["seed"]]
        if pr.empty:
            panels.append((f"{m['arch']} {m['phases'].upper()}", None, None))
        elif m["arch"] == weak and (m["phases"], m["seed"], "test") in calls:
            pc = calls[m["phases"], m["seed"], "test"]
            panels.append((f"{weak} {m['phases'].upper()}\n>3-slice rule", pc["label"].to_numpy(), pc["call_li"].to_numpy()))
        else:
            y, p, _ = _levels(pr)["patient"]
            panels.append((f"{m['arch']} {m['phases'].upper()}\nper patient", y, (p >= 0.5).astype(int)))
    confusion_figure(panels, fig_dir / "li_confusion")


# --------------------------------------------------------------------------------------------------- Dai

def dai_tables(models: list[dict], out_dir: Path, fig_dir: Path) -> pd.DataFrame:
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
                y, pr, _ = _levels(p)[level]
                if len(np.unique(y)) == 2:
                    fold_aucs.append(stats.delong(y, pr)[0][0])
            y, pr, _ = _levels(test)[level] if len(test) else (np.zeros(0), np.zeros(0), [])
            rows.append({"arch": arch, "phases": ph, "variant": var, "batch": hp_batch, "seed": sd, "level": level,
                         "folds": len(folds), "folds_trained": sum(not p.empty for _, p in folds),
                         **binary_summary(y, pr),
                         "fold_auc_mean": float(np.mean(fold_aucs)) if fold_aucs else np.nan,
                         "fold_auc_sd": float(np.std(fold_aucs, ddof=1)) if len(fold_aucs) > 1 else np.nan})
    t5 = pd.DataFrame(rows)
    v5 = pd.DataFrame({"Model": t5["arch"] + " " + t5["phases"].str.upper(), "Variant": t5["variant"],
                       "Batch": t5["batch"], "Level": t5["level"], "n": t5["n"],
                       **{c.capitalize(): t5[c].map(_fmt) for c in ("sensitivity", "specificity", "accuracy")},
                       "AUC (95% CI), pooled": [_ci_text(r) for _, r in t5.iterrows()],
                       "Fold AUC mean ± SD": [f"{a:.3f} ± {b:.3f}" if b == b else _fmt(a) for a, b in
                                              zip(t5["fold_auc_mean"], t5["fold_auc_sd"])]}) if len(t5) else t5
    write_table(out_dir / "dai_table5", t5, title="Dai Table 5: k-fold cross-validation per variant (batch-size sweep)",
                markdown=v5, footnotes=["Pooled: every fold's test predictions together (each patient predicted once, "
                                        "by the model that did not train on it). Slice level: every slice is one "
                                        "call; patient level: mean probability. Threshold 0.5; sensitivity for high "
                                        "grade. AUC 95% CI by DeLong (bootstrap CI in the CSV)."])
    roc_figure([(f"ROC, out-of-fold, {'slice' if level == 'image' else level} level",
                 [(f"{a} {ph} {v} s{sd}", *_levels(t)[level][:2]) for (a, ph, v, sd), t in pooled.items() if len(t)])
                for level in ("image", "patient")], fig_dir / "dai_roc")
    panels = []
    for (a, ph, v, sd), t in pooled.items():
        y, p, _ = _levels(t)["image"] if len(t) else (None, None, None)
        panels.append((f"{a} {v}\nslices, out-of-fold", y, None if p is None else (p >= 0.5).astype(int)))
    confusion_figure(panels, fig_dir / "dai_confusion")
    return t5


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Paper tables and figures from the model matrix's predictions.")
    ap.add_argument("--study", required=True, choices=["cui", "li", "dai"])
    ap.add_argument("--models", required=True, help="JSON list of cells {arch, phases, variant, fold, seed, dir}")
    ap.add_argument("--tables", required=True)
    ap.add_argument("--figures", required=True)
    a = ap.parse_args(argv)
    models = json.loads(a.models)
    {"cui": cui_tables, "li": li_tables, "dai": dai_tables}[a.study](models, Path(a.tables), Path(a.figures))
    print(f"{len(models)} models evaluated")


if __name__ == "__main__":
    main()
