"""Grade new patients with a trained model (target ``predict``; docs/deploy.md).

The model (config ``predict.model``) is one trained cell of a study or an ensemble of its cells: fields left
null take the study's first model, and ``folds: all`` averages every fold's model (Dai's five). Each member
is used through its exported bundle (``ccgrade.deploy.bundle``), so a new patient is cropped with exactly the
preprocessing the bundle records (ROI setting, window, size, spacing, phases, channel order); nothing is
retrained. The new patients come from ``predict.sheet`` (the cohort sheet's contract, grade optional) or, with
the demo, from new synthetic patients drawn after the training cohort's.

Before any job the pre-flight checks every new patient against what the model needs (``sheet_problems``):
a missing phase or an annotation the ROI setting cannot read is an error naming the patient and the
mismatch. Per patient the job writes P(high) per image and member, and a page (PNG/PDF) a radiologist can
read: the call at the model's threshold, the slices or cube used with the Grad-CAM of the high-grade class
on top. The table job writes one row per patient and, when grades are given, the study tables' metrics
(AUC with the study tables' 95% CI, Newcombe's score interval or, in ``statistics.mode: paper``, DeLong's Wald
interval, plus DeLong's Wald and the patient bootstrap CIs in the CSV; accuracy, sensitivity and specificity
at the threshold with their Wilson 95% CIs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade.errors import Problem, problem
from ccgrade.outputs import Outputs, pyplot, write_json, write_tsv

CELL_KEYS = ("roi", "arch", "phases", "variant", "seed")
IMAGE_COLUMNS = ["patient_id", "member", "source", "slice_index", "prob_high"]


# ------------------------------------------------------------------------------------------ the model

def model_cells(cfg: dict) -> tuple[list[dict], list[Problem]]:
    """The cells ``predict.model`` names (the ensemble's members, one per fold unless ``folds`` says which)
    and the config problems that stop it (each naming its key)."""
    from ccgrade.config.matrix import cells

    spec = cfg["predict"]["model"]
    studies = cfg["training"]["studies"]
    study = spec.get("study") or next(iter(studies), None)
    if study not in studies:
        return [], [Problem("error", f"config key 'predict.model.study': no trained study {study!r} (the cohort feeds: "
                                     f"{', '.join(studies) or 'none'})", "name one of training.studies")]
    found = cells(cfg, study)
    for key in CELL_KEYS:
        want = spec.get(key)
        if want is None:
            want = found[0][key]
        kept = [c for c in found if c[key] == want]
        if not kept:
            have = sorted({str(c[key]) for c in found})
            return [], [Problem("error", f"config key 'predict.model.{key}': {want!r} is not a model of study {study} "
                                         f"(it has {', '.join(have)})", "name one of those, or null for the first")]
        found = kept
    folds = spec["folds"]
    if folds != "all":
        missing = sorted(set(folds) - {c["fold"] for c in found})
        if missing:
            return [], [Problem("error", f"config key 'predict.model.folds': study {study} has no fold(s) {missing} "
                                         f"(it has {sorted(c['fold'] for c in found)})", "name existing folds or all")]
        found = [c for c in found if c["fold"] in folds]
    return found, []


def model_name(members: list[dict], left_out: int = 0) -> str:
    """The ensemble as configured (``left_out``: members that could not be trained, known at run time)."""
    c = members[0]
    n = len(members)
    folds = f", {n - left_out} of {n} fold models averaged" if left_out else f", {n} fold models averaged"
    return f"{c['study']} {c['arch']} on {c['phases']} ({c['roi']}, {c['variant']}, seed {c['seed']}" \
           f"{folds if n > 1 else ''})"


def with_left_out(name: str, left_out: str) -> str:
    """A configured ensemble's name with its untrained members taken out of the count."""
    import re

    k = len([x for x in left_out.split(";") if x.strip()]) if left_out else 0
    m = re.search(r", (\d+) fold models averaged", name)
    if not k or not m:
        return name
    n = int(m.group(1))
    return name.replace(m.group(0), f", {n - k} of {n} fold models averaged")


def needs(cfg: dict, cell: dict) -> dict:
    """What a cell's crops read: the phases' images, the phases whose tumour outline places the crop (a
    stack's is its first phase's), and the annotation formats its ROI setting accepts."""
    from ccgrade.config.cohort import roi_sources
    from ccgrade.config.matrix import crop_targets

    phases, stack = list(cfg["phases"]), list(cfg["stack"]["phases"])
    targets = crop_targets(cell["phases"], phases)
    images = list(dict.fromkeys(ph for t in targets for ph in (stack if t == "stack" else [t])))
    outlines = list(dict.fromkeys(stack[0] if t == "stack" else t for t in targets))
    return {"images": images, "outlines": outlines, "roi": cell["roi"],
            "formats": roi_sources(cfg["rois"][cell["roi"]])}


def sheet_problems(cohort: pd.DataFrame, surveys: dict[str, dict], cfg: dict, members: list[dict],
                   file: str) -> list[Problem]:
    """Every new patient checked against what the model needs, before any job: each phase image it reads
    (as ingest will assign the patient's series) and, on each outline phase, an annotation in a format its
    ROI setting reads. One error per mismatch, naming patient, phase and what the model records."""
    from ccgrade.config.cohort import patient_sources, pick_source

    if not members:
        return []
    need, name = needs(cfg, members[0]), model_name(members)
    roi = cfg["rois"][need["roi"]]
    out = []
    for rec in cohort.to_dict("records"):
        pid = rec["patient_id"]
        images = (surveys.get(pid) or {}).get("images", {})
        for ph in need["images"]:
            got = images.get(ph, {})
            if got.get("status") != "ok":
                why = got.get("reason") or "no series of the patient is assigned to it"
                have = sorted(p for p, i in images.items() if i.get("status") == "ok")
                out.append(problem("error", f"the model ({name}) reads the {ph} phase, which this patient's images do "
                                            f"not give ({why}; usable phases: {', '.join(have) or 'none'})",
                                   "add the series, map it with ingest.phase_map, or choose a model of the phases the "
                                   "patient has (predict.model)", patient=pid, phase=ph, file=file))
        src = patient_sources(rec, list(cfg["phases"]))
        for ph in need["outlines"]:
            fmt, path = pick_source(roi, src.get(ph, {}))
            if path is None:
                have = sorted(k for k in src.get(ph, {}) if k != "image")
                out.append(problem("error", f"the model's ROI setting {need['roi']} places its crop from a "
                                            f"{' or '.join(need['formats'])} annotation on {ph}; the patient has "
                                            f"{', '.join(have) or 'none'} there",
                                   "add the annotation (sheet column or annotation_dir layout), or choose a model "
                                   "whose ROI setting reads what the patient has", patient=pid, phase=ph, file=file))
    return out


# ------------------------------------------------------------------------------------------ one patient

def patient_images(bundles: list, volumes: Path, sources: dict, patient: str, secret=None
                   ) -> tuple[pd.DataFrame, dict]:
    """P(high) per image and member, and the first member's crops (the members share their preprocessing:
    they are cells of one model that differ only by fold)."""
    from ccgrade.deploy.bundle import Bundle

    loaded = [b if isinstance(b, Bundle) else Bundle(b) for b in bundles]
    pre = [json.dumps(b.preprocess, sort_keys=True) for b in loaded]
    if len(set(pre)) > 1:
        raise ValueError(f"{patient}: the ensemble's bundles record different preprocessing; an ensemble averages "
                         "cells of one model (predict.model)")
    crops = loaded[0].crops(volumes, sources, patient, secret)
    rows = [loaded[0].predict_crops(crops, patient).assign(member=0)]
    rows += [b.predict_crops(crops, patient).assign(member=i) for i, b in enumerate(loaded[1:], start=1)]
    return pd.concat(rows, ignore_index=True)[IMAGE_COLUMNS], crops


def patient_summary(images: pd.DataFrame, threshold: float) -> dict:
    """A patient's P(high): each member's mean over its images, averaged over members; the call at
    ``threshold`` and the members' spread."""
    per = images.groupby("member")["prob_high"].mean()
    p = float(per.mean())
    return {"prob_high": p, "call": "high" if p >= threshold else "low", "threshold": threshold,
            "member_min": float(per.min()), "member_max": float(per.max()), "n_members": int(len(per)),
            "n_images": int((images["member"] == per.index[0]).sum()),
            "sources": ",".join(dict.fromkeys(images["source"].astype(str))),
            "slices": ",".join(str(int(s)) for s in images.loc[images["member"] == per.index[0], "slice_index"])}


def _shown(crops: dict, images: pd.DataFrame, n: int = 4) -> list[tuple[str, int, np.ndarray]]:
    """Up to ``n`` images for the page: evenly spaced through the tumour (a cube: itself)."""
    from ccgrade.evaluate.heatmaps import spread

    out = []
    first = images[images["member"] == images["member"].min()]
    for t in dict.fromkeys(first["source"]):
        z = crops[t]
        out += [(t, int(z["slice_index"][i]), z["images"][i].astype(np.float32)) for i in spread(len(z["images"]), n)]
    return out[:n]


def patient_page(bundle, crops: dict, images: pd.DataFrame, summary: dict, patient: str, model: str,
                 grade: str | None, out: Outputs) -> None:
    """One page per patient: P(high) and the call, the images used with the Grad-CAM of the high-grade
    class (first member's network), per-image P(high), and the intended use."""
    import torch

    from ccgrade.deploy.bundle import INTENDED_USE
    from ccgrade.evaluate.heatmaps import draw_cam

    plt = pyplot()
    shown = _shown(crops, images)
    ncol = max(len(shown), 1)
    fig = plt.figure(figsize=(2.3 * ncol, 4.6))
    grid = fig.add_gridspec(3, ncol, height_ratios=[0.9, 2.2, 1.4])
    head = fig.add_subplot(grid[0, :])
    head.axis("off")
    spread = (f" (fold models {summary['member_min']:.2f}-{summary['member_max']:.2f})"
              if summary["n_members"] > 1 else "")
    head.text(0, 0.95, f"Patient {patient}", fontsize=11, weight="bold", va="top")
    head.text(0, 0.55, f"P(high grade) = {summary['prob_high']:.2f}{spread};  call at {summary['threshold']:.2f}: "
                       f"{summary['call'].upper()}" + (f";  pathology: {grade}" if grade else ""), fontsize=8, va="top")
    head.text(0, 0.2, f"Model: {model}; {summary['n_images']} image(s) from {summary['sources']}", fontsize=6.5,
              va="top")
    torch.manual_seed(0)
    for k, (t, sl, img) in enumerate(shown):
        ax = fig.add_subplot(grid[1, k])
        ax.axis("off")
        prob = draw_cam(ax, bundle.net, img, alpha=0.35)
        where = "cube, middle plane" if img.ndim == 4 else f"slice {sl}"
        ax.set_title(f"{t} {where}\nP(high) {prob:.2f}", fontsize=6.5)
    bar = fig.add_subplot(grid[2, :])
    first = images[images["member"] == images["member"].min()].reset_index(drop=True)
    bar.bar(np.arange(len(first)), first["prob_high"], color=["#c0392b" if v >= summary["threshold"] else "#2e86c1"
                                                              for v in first["prob_high"]])
    bar.axhline(summary["threshold"], color="k", lw=0.6, ls="--")
    bar.set_ylim(0, 1)
    bar.set_ylabel("P(high)", fontsize=6.5)
    bar.set_xticks(np.arange(len(first)))
    bar.set_xticklabels([f"{s}:{i}" for s, i in zip(first["source"], first["slice_index"])], fontsize=5, rotation=90)
    bar.tick_params(axis="y", labelsize=6)
    fig.text(0.01, 0.005, "Grad-CAM of the high-grade class (red: strongest evidence). " + INTENDED_USE, fontsize=4.5,
             wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out.figure("page", fig)
    plt.close(fig)


def run_patient(bundles: list, volumes: str | Path, sources: dict, patient: str, out: Outputs, grade: str | None = None,
                secret=None) -> dict:
    """Predict one patient with the ensemble and write its image table, summary and page."""
    from ccgrade.deploy.bundle import Bundle

    metas = [json.loads((Path(b) / "metadata.json").read_text()) for b in bundles]
    left = [f"{m['cell']['fold']}: {m.get('reason') or 'not trained'}" for m in metas if not m.get("trained", True)]
    loaded = [Bundle(b) for b, m in zip(bundles, metas) if m.get("trained", True)]
    if not loaded:
        raise ValueError(f"{patient}: no member of the model was trained ({'; '.join(left)})")
    images, crops = patient_images(loaded, Path(volumes), sources, patient, secret)
    threshold = float(loaded[0].preprocess["threshold"])
    summary = {"patient_id": patient, **patient_summary(images, threshold),
               "left_out": "; ".join(f"fold {x}" for x in left)}  # members that could not be trained
    write_tsv(out["images"], images)
    write_json(out["summary"], summary)
    names = [b.metadata.get("name", "") for b in loaded]
    patient_page(loaded[0], crops, images, summary, patient, names[0] + (f" +{len(names) - 1} fold models"
                                                                         if len(names) > 1 else ""), grade, out)
    return summary


# ------------------------------------------------------------------------------------------ the table

def prediction_table(summaries: list[dict], sheet: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, with the sheet's grade (when given) beside the call."""
    t = pd.DataFrame(summaries)
    g = sheet.set_index("patient_id")
    t["grade"] = [g["grade"].get(p) if "grade" in g else np.nan for p in t["patient_id"]]
    t["grade_group"] = [g["grade_group"].get(p, "") if "grade_group" in g else "" for p in t["patient_id"]]
    return t.sort_values("patient_id").reset_index(drop=True)


def internal_patients(prediction_files: list[str]) -> pd.DataFrame:
    """The model's own test patients, one row each (label, P(high) the mean of its test images), from its
    members' ``predictions.tsv``: a fold ensemble's members pooled, each patient judged by the fold model
    that did not see it (as the failure analysis judges them)."""
    from ccgrade.evaluate.failures import test_patients

    return test_patients([{"dir": str(Path(f).parent), "fold": i} for i, f in enumerate(prediction_files)
                          if Path(f).exists()])


def metrics_table(t: pd.DataFrame, opt: dict | None = None, internal: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study tables' metrics on the graded new patients (patient level): AUC with the tables' 95% CIs
    (``tables.binary_summary``: ``auc_ci_*`` Newcombe's score interval, or DeLong's Wald interval in paper mode,
    named by ``ci_method``; ``auc_wald_ci_*`` DeLong's Wald and ``auc_boot_*`` the patient bootstrap's), accuracy,
    sensitivity and specificity at the model's threshold (with Wilson 95% CIs, ``<metric>_ci_low``/``_ci_high``),
    and calibration (logistic recalibration slope and intercept). With ``internal`` (the model's own test
    patients, see ``internal_patients``) also their AUC with the same interval (``internal_auc_ci_*``) and the
    new-minus-internal difference: the z test of two independent samples' DeLong variances and the bootstrap
    CI (``stats.unpaired_auc_test``)."""
    from ccgrade import stats
    from ccgrade.evaluate.tables import binary_summary, stats_options

    graded = t[t["grade_group"].isin(["low", "high"])]
    y = (graded["grade_group"] == "high").to_numpy(int)
    p = graded["prob_high"].to_numpy(float)
    thr = float(t["threshold"].iloc[0]) if len(t) else 0.5
    row = binary_summary(y, p, opt=opt, threshold=thr) if len(y) else {"n": 0}
    if len(y):
        row.update(stats.calibration_slope_intercept(y, p))
    if internal is not None and len(internal):
        yi, pi = internal["label"].to_numpy(int), internal["prob_high"].to_numpy(float)
        both = len(np.unique(yi)) == 2
        interval = stats.auc_ci if stats_options(opt)["mode"] == "paper" else stats.auc_interval
        ci = interval(yi, pi) if both else (np.nan, np.nan, np.nan)
        row.update(internal_n=len(yi), internal_auc=ci[0], internal_auc_ci_low=ci[1], internal_auc_ci_high=ci[2])
        if both and len(np.unique(y)) == 2:
            o = stats_options(opt)
            c = stats.unpaired_auc_test(y, p, yi, pi, n_boot=o["n_boot"])
            row.update(auc_difference=c["difference"], auc_difference_p=c["p_value"],
                       auc_difference_boot_low=c["diff_boot_low"], auc_difference_boot_high=c["diff_boot_high"])
    return pd.DataFrame([{"n_graded": len(y), "n_ungraded": int(len(t) - len(graded)), "threshold": thr, **row}])


def write_tables(summary_files: list[str], sheet: pd.DataFrame, model: str, out: Outputs,
                 opt: dict | None = None, internal: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    from ccgrade.evaluate.tables import auc_ci_note, ci_text, est_text, fmt, proportion_note

    t = prediction_table([json.loads(Path(f).read_text()) for f in summary_files], sheet)
    view = t.assign(prob_high=t["prob_high"].map(fmt), grade=t["grade"].map(lambda v: "" if v != v else int(v)))
    cols = ["patient_id", "prob_high", "call", "n_images", "sources", "grade", "grade_group"]
    notes = [f"P(high): the patient's mean image probability, averaged over the ensemble's members; the call is "
             f"high at P >= {t['threshold'].iloc[0] if len(t) else 0.5}. Nothing was retrained."]
    if "left_out" in t and len(t) and t["left_out"].iloc[0]:
        notes.append(f"Members left out (not trained): {t['left_out'].iloc[0]}.")
        model = with_left_out(model, t["left_out"].iloc[0])
    notes.append("Research use only; not validated for clinical decisions.")
    out.table("predictions", t, markdown=view[[c for c in cols if c in view]],
              title=f"Predicted grade of the new patients: {model}", footnotes=notes)
    m = metrics_table(t, opt, internal)
    mview = m.copy()
    if "auc" in m and m["n_graded"].iloc[0]:
        mview["auc (95% CI)"] = [ci_text(r) for _, r in m.iterrows()]
    for c in ("accuracy", "sensitivity", "specificity"):
        if f"{c}_ci_low" in m:
            mview[f"{c} (95% CI)"] = [est_text(r, c) for _, r in m.iterrows()]
    if "internal_auc" in m:
        mview["internal test AUC (95% CI)"] = [ci_text(r, "internal_") for _, r in m.iterrows()]
    if "auc_difference" in m:
        mview["ΔAUC new - internal (95% CI)"] = [
            f"{r.auc_difference:+.3f} ({r.auc_difference_boot_low:+.3f} to {r.auc_difference_boot_high:+.3f})"
            for r in m.itertuples()]
        mview["P"] = m["auc_difference_p"]
    keep = [c for c in ("n_graded", "n_high", "n_ungraded", "auc (95% CI)", "accuracy (95% CI)",
                        "sensitivity (95% CI)", "specificity (95% CI)", "threshold", "cal_slope", "cal_intercept",
                        "internal_n", "internal test AUC (95% CI)",
                        "ΔAUC new - internal (95% CI)", "P") if c in mview]
    mview = mview[keep].map(lambda v: fmt(v) if isinstance(v, float) else v)
    notes = ["Patient level.", auc_ci_note(opt, "The"), "Sensitivity "
             "(high) and specificity (low) at the model's threshold, frozen (not re-chosen on these patients). "
             "Calibration: logistic recalibration slope and intercept (ideal 1 and 0; n/a when the classes "
             "separate or one is absent).", proportion_note(opt, None)]
    if "internal_auc" in m:
        notes.append("Internal: the model's own test patients (a fold ensemble's out-of-fold patients, each judged by "
                     "one fold model, while the new patients get the members' average). ΔAUC: new minus internal; "
                     "P from the z test of two independent samples' DeLong variances, CI from independent patient "
                     "bootstraps of the two. Where the new patients come from another centre, this is the "
                     "external validation of the model.")
    out.table("metrics", m, markdown=mview, title=f"The new patients with a grade: {model}",
              footnotes=notes if len(m) and m["n_graded"].iloc[0] else
              ["No patient of the sheet has a grade: no metrics."])
    return t, m


# ------------------------------------------------------------------------------------------ the CLI

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Grade new patients with trained models' bundles.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("patient", help="one patient: image table, summary, page")
    p.add_argument("--patient", required=True)
    p.add_argument("--bundles", nargs="+", required=True, help="the ensemble's bundle folders")
    p.add_argument("--volumes", required=True)
    p.add_argument("--sources", required=True, help="JSON {phase: {format: file}}")
    p.add_argument("--grade", default="")
    p.add_argument("--secret")
    p.add_argument("--outputs", required=True, help="JSON {images, summary, page, page_pdf}")
    t = sub.add_parser("table", help="every patient: the predictions table and, with grades, the metrics")
    t.add_argument("--summaries", nargs="*", default=[])
    t.add_argument("--sheet", required=True, help="JSON records {patient_id, grade, grade_group}")
    t.add_argument("--model", required=True)
    t.add_argument("--stats", default="{}")
    t.add_argument("--internal", nargs="*", default=[], help="the members' predictions.tsv (their own test patients)")
    t.add_argument("--outputs", required=True)
    a = ap.parse_args(argv)
    out = Outputs.from_json(a.outputs)
    if a.cmd == "patient":
        s = run_patient(a.bundles, a.volumes, json.loads(a.sources), a.patient, out, a.grade or None, a.secret)
        print(json.dumps(s))
    else:
        sheet = pd.DataFrame(json.loads(a.sheet), columns=["patient_id", "grade", "grade_group"])
        t, m = write_tables(a.summaries, sheet, a.model, out, json.loads(a.stats) or None,
                            internal_patients(a.internal) if a.internal else None)
        print(t.to_string(index=False))
        print(m.T.to_string())


if __name__ == "__main__":
    main()
