"""Paper performance tables and figures from the matrix's test-set predictions.

Cui et al. evaluate at image level (every test image is one call); the tables also give the
patient level (mean probability per patient). Per class (low, high rows as in their Tables 3-4):
accuracy, AUC with its DeLong 95% CI, precision, sensitivity, specificity and F1. Table 4 compares two
architectures on the same test images / patients with DeLong's test for correlated AUCs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .outputs import pyplot, save_figure, write_table

PHASE_LABEL = {"up": "plain", "cmp": "corticomedullary", "np": "parenchymal", "ep": "excretory",
               "all": "four phases combined", "stack": "three phases as channels"}


def _levels(pred: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(labels, P(high), unit IDs) at image and patient level for the test set."""
    t = pred[pred["set"] == "test"]
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
        auc, lo, hi = stats.auc_ci(y, p)
        for r in stats.class_metrics(y, p):
            rows.append({**model, "level": level, **r, "auc_ci_low": lo, "auc_ci_high": hi, "note": ""})
    return rows


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
    preds = {(m["arch"], m["phases"], m["seed"]): pd.read_csv(m["predictions"], sep="\t", dtype={"patient_id": str})
             for m in models}
    rows = []
    for m in models:
        rows += metric_rows(preds[m["arch"], m["phases"], m["seed"]],
                            {"arch": m["arch"], "phases": m["phases"], "seed": m["seed"]})
    cols = ["arch", "phases", "seed", "level", "class", "n", "accuracy", "auc", "auc_ci_low", "auc_ci_high",
            "precision", "sensitivity", "specificity", "f1", "tp", "fp", "fn", "tn", "note"]
    t = pd.DataFrame(rows).reindex(columns=cols)
    t3 = t[t["arch"] == table3_arch].copy()
    t3.insert(1, "phase set", t3["phases"].map(PHASE_LABEL))
    notes = ["Test set of the cui split; image level = every test image is one call (as Cui et al.), patient "
             "level = mean probability per patient. Threshold 0.5 on P(high). AUC 95% CI by DeLong.",
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


def _figures(models: list[dict], preds: dict, fig_dir: Path) -> None:
    plt = pyplot()
    from sklearn.metrics import confusion_matrix, roc_curve

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, level in zip(axes, ("image", "patient")):
        for m in models:
            if preds[m["arch"], m["phases"], m["seed"]].empty:
                continue
            y, p, _ = _levels(preds[m["arch"], m["phases"], m["seed"]])[level]
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=f"{m['arch']} {m['phases']} (AUC {stats.delong(y, p)[0][0]:.2f})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity (high grade)")
        ax.set_title(f"ROC, test set, {level} level", fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    save_figure(fig, fig_dir / "cui_roc")
    plt.close(fig)
    n = len(models)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.6), squeeze=False)
    for ax, m in zip(axes[0], models):
        if preds[m["arch"], m["phases"], m["seed"]].empty:
            ax.axis("off")
            continue
        y, p, _ = _levels(preds[m["arch"], m["phases"], m["seed"]])["image"]
        cm = confusion_matrix(y, (p >= 0.5).astype(int), labels=[0, 1])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set_xticks([0, 1], ["low", "high"], fontsize=7)
        ax.set_yticks([0, 1], ["low", "high"], fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        ax.set_title(f"{m['arch']}\n{m['phases']}", fontsize=7)
    fig.tight_layout()
    save_figure(fig, fig_dir / "cui_confusion")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Paper tables and figures from the model matrix's predictions.")
    ap.add_argument("--study", required=True, choices=["cui"])
    ap.add_argument("--models", required=True, help="JSON list of {arch, phases, seed, predictions}")
    ap.add_argument("--tables", required=True)
    ap.add_argument("--figures", required=True)
    a = ap.parse_args(argv)
    models = json.loads(a.models)
    cui_tables(models, Path(a.tables), Path(a.figures))
    print(f"{len(models)} models evaluated")


if __name__ == "__main__":
    main()
