"""Failure analysis of a study (issue 17): where its model is wrong, and for whom.

The analysed model is the study's first (its first architecture, ROI setting, phase set, variant and seed,
as ``predict.model`` fills nulls), every fold pooled: for a k-fold scheme each patient is then judged by the
one model that did not see it, for a holdout scheme by the test set's model. A patient's P(high) is the
mean of its test images' probabilities and the call is high at 0.5, as in the study tables.

- ``failures``: the misclassified test patients, most confident first (|P(high) - 0.5| largest), with their
  grade, P(high), size, centre and usable phases; the ``montage`` figure shows up to ``n`` of them, each a row
  of up to four of its crops with the Grad-CAM of the high-grade class on top.
- ``error_rates``: the error rate of every test patient by subgroup (tumour size band, centre, usable
  phases, sex: those the cohort has), with the exact (Clopper-Pearson) 95% CI; descriptive, no test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade.outputs import Outputs, pyplot, read_table

#: tumour size bands (cm): the TNM T1a / T1b / T2 limits
SIZE_BANDS = ((0.0, 4.0, "<= 4 cm"), (4.0, 7.0, "4-7 cm"), (7.0, np.inf, "> 7 cm"))


def analysed_cells(models: list[dict]) -> list[dict]:
    """The study's first model, every fold (the cells come in the matrix's order)."""
    if not models:
        return []
    first = models[0]
    return [m for m in models if all(m[k] == first[k] for k in ("arch", "roi", "phases", "variant", "seed"))]


def test_patients(cells: list[dict]) -> pd.DataFrame:
    """One row per test patient: label, P(high) (mean over its test images), the call, and the fold's cell."""
    rows = []
    for c in cells:
        pred = read_table(Path(c["dir"]) / "predictions.tsv")
        if pred.empty:
            continue
        t = pred[pred["set"] == "test"]
        for pid, g in t.groupby("patient_id"):
            rows.append({"patient_id": str(pid), "label": int(g["label"].iloc[0]), "prob_high": float(g["prob_high"].mean()),
                         "n_images": len(g), "fold": c["fold"]})
    out = pd.DataFrame(rows, columns=["patient_id", "label", "prob_high", "n_images", "fold"])
    out["call"] = (out["prob_high"] >= 0.5).astype(int)
    out["error"] = (out["call"] != out["label"]).astype(int)
    out["confidence"] = (out["prob_high"] - 0.5).abs()
    return out


def exact_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of k successes in n (beta quantiles; 0 and 1 at the edges): the error rates'
    interval, ``ccgrade.proportions.clopper_pearson``."""
    from ccgrade.proportions import clopper_pearson

    return clopper_pearson(k, n, level)


def size_band(cm: float) -> str:
    if cm != cm:
        return "unknown"
    return next(name for lo, hi, name in SIZE_BANDS if lo < cm <= hi or (lo == 0 and cm <= hi))


def subgroups(pat: pd.DataFrame, cohort: pd.DataFrame, phases: pd.DataFrame | None) -> pd.DataFrame:
    """The patients' subgroup columns: size band (sheet's tumor_size_cm, else the mask's largest 3D diameter),
    centre, sex and the number of usable phases (ingest's phase status)."""
    c = cohort.set_index(cohort["patient_id"].astype(str))
    out = pat[["patient_id"]].copy()
    size = None
    if "tumor_size_cm" in c:
        size = pd.to_numeric(c["tumor_size_cm"], errors="coerce")
    if "mask_max_diameter_3d_mm" in c:
        mask = pd.to_numeric(c["mask_max_diameter_3d_mm"], errors="coerce") / 10.0
        size = mask if size is None else size.fillna(mask)
    if size is not None:
        out["size band"] = [size_band(float(size.get(p, np.nan))) for p in out["patient_id"]]
    for col, name in (("centre", "centre"), ("sex", "sex")):
        if col in c:
            out[name] = [str(c[col].get(p, "unknown")) if c[col].get(p) == c[col].get(p) else "unknown"
                         for p in out["patient_id"]]
    if phases is not None and not phases.empty:
        ok = phases[phases["status"] == "ok"].groupby(phases["patient_id"].astype(str))["phase"].nunique()
        out["usable phases"] = [str(int(ok.get(p, 0))) for p in out["patient_id"]]
    return out


def error_rates(pat: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Errors / patients per subgroup level (and overall) with the exact 95% CI."""
    df = pat.merge(groups, on="patient_id")
    rows = []

    def row(subgroup: str, level: str, g: pd.DataFrame) -> None:
        n, k = len(g), int(g["error"].sum())
        lo, hi = exact_ci(k, n) if n else (np.nan, np.nan)
        rows.append({"subgroup": subgroup, "level": level, "n": n, "errors": k, "error_rate": k / n if n else np.nan,
                     "ci_low": lo, "ci_high": hi, "n_high": int(g["label"].sum())})

    row("all", "all test patients", df)
    for col in [c for c in groups.columns if c != "patient_id"]:
        for level, g in sorted(df.groupby(col), key=lambda kv: str(kv[0])):
            row(col, str(level), g)
    return pd.DataFrame(rows)


def montage(top: pd.DataFrame, cells: list[dict], crops: dict[tuple[str, str], list[str]], out: Outputs) -> None:
    """One row per patient of ``top``: up to four of its crops (evenly through the tumour) with the Grad-CAM
    of the high-grade class of the fold model that judged it."""
    import torch

    from ccgrade.evaluate.heatmaps import draw_cam, spread
    from ccgrade.learn import train

    plt = pyplot()
    nrow = max(len(top), 1)
    fig, axes = plt.subplots(nrow, 4, figsize=(8.4, 2.2 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    by_fold = {c["fold"]: c for c in cells}
    torch.manual_seed(0)
    for r, p in enumerate(top.itertuples()):
        c = by_fold[p.fold]
        imgs = []
        for f in crops.get((c["roi"], p.patient_id), []):
            z = np.load(f)
            if str(z["status"]) == "ok" and z["images"].shape[0]:
                imgs += [(Path(f).stem, int(z["slice_index"][i]), z["images"][i].astype(np.float32))
                         for i in spread(len(z["images"]))]
        imgs = imgs[:4]
        if not imgs:
            axes[r, 0].set_title(f"{p.patient_id}: no crop", fontsize=6)
            continue
        net = train.load_best(Path(c["dir"]), c["hp"], in_channels=imgs[0][2].shape[0])
        for k, (t, sl, img) in enumerate(imgs):
            draw_cam(axes[r, k], net, img, alpha=0.35)
            axes[r, k].set_title(f"{t} {'cube' if img.ndim == 4 else f'slice {sl}'}", fontsize=6)
        truth = "high" if p.label else "low"
        axes[r, 0].text(-0.1, 0.5, f"{p.patient_id}\n{truth} grade\nP(high) {p.prob_high:.2f}",
                        transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
    if top.empty:
        axes[0, 0].set_title("no misclassified test patient", fontsize=8)
    fig.suptitle("Most confident errors (test patients), with the Grad-CAM of the high-grade class", fontsize=8)
    fig.tight_layout()
    out.figure("failure_montage", fig)
    plt.close(fig)


def analyse(models: list[dict], crop_files: list[str], cohort: pd.DataFrame, phases: pd.DataFrame | None,
            out: Outputs, n: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the study's failure table, error-rate table and montage."""
    from ccgrade.evaluate.tables import fmt

    cells = analysed_cells(models)
    pat = test_patients(cells)
    groups = subgroups(pat, cohort, phases)
    wrong = pat[pat["error"] == 1].sort_values(["confidence", "patient_id"], ascending=[False, True])
    failures = wrong.merge(groups, on="patient_id", how="left")
    failures = failures.assign(grade_group=np.where(failures["label"] == 1, "high", "low"))
    cols = ["patient_id", "grade_group", "prob_high", "confidence", "n_images", "fold"] + [
        c for c in groups.columns if c != "patient_id"]
    name = (f"{cells[0]['arch']} on {cells[0]['phases']} ({cells[0]['roi']}, {cells[0]['variant']}, seed "
            f"{cells[0]['seed']}{', folds pooled' if len(cells) > 1 else ''})") if cells else "no model"
    view = failures[cols].copy()
    for c in ("prob_high", "confidence"):
        view[c] = view[c].map(fmt)
    out.table("failures", failures[cols], markdown=view, title=f"Most confident errors: {name}",
              footnotes=[f"{len(wrong)} of {len(pat)} test patients misclassified (call high at P(high) >= 0.5; "
                         "P(high): the mean of the patient's test images). Confidence: |P(high) - 0.5|."])
    rates = error_rates(pat, groups)
    rview = rates.copy()
    rview["error rate (95% CI)"] = [f"{fmt(r.error_rate)} ({fmt(r.ci_low)}-{fmt(r.ci_high)})" if r.n else ""
                                    for r in rates.itertuples()]
    out.table("error_rates", rates, markdown=rview[["subgroup", "level", "n", "n_high", "errors", "error rate (95% CI)"]],
              title=f"Error rates by subgroup: {name}",
              footnotes=["Test patients; exact (Clopper-Pearson) 95% CIs. Descriptive: subgroups this small are not "
                         "tested against each other. Size band: the sheet's tumor_size_cm, else the mask's largest 3D "
                         "diameter; usable phases: the phases ingest accepted."])
    by_key: dict[tuple[str, str], list[str]] = {}
    targets = {c["phases"] for c in cells}
    for f in crop_files:
        roi, pid, stem = Path(f).parent.parent.name, Path(f).parent.name, Path(f).stem
        if stem in targets or "all" in targets and stem != "stack":
            by_key.setdefault((roi, pid), []).append(f)
    montage(wrong.head(n), cells, by_key, out)
    return failures, rates


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="A study's failure analysis: its most confident errors and error rates.")
    ap.add_argument("--models", required=True, help="JSON list of cells {arch, phases, roi, variant, fold, seed, dir, hp}")
    ap.add_argument("--crops", nargs="*", default=[])
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--phases", default="")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--outputs", required=True)
    a = ap.parse_args(argv)
    phases = read_table(a.phases) if a.phases and Path(a.phases).exists() else None
    f, r = analyse(json.loads(a.models), a.crops, read_table(a.cohort), phases, Outputs.from_json(a.outputs), a.n)
    print(f.to_string(index=False))
    print(r.to_string(index=False))


if __name__ == "__main__":
    main()
