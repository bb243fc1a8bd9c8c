"""External validation (config ``external``; docs/deploy.md).

Every model a study trained on the main cohort is evaluated, unchanged, on another centre's cohort: the
external sheet (the cohort sheet's contract, grades required) or, with the demo, a second synthetic centre
with a deliberate shift (another vendor's series descriptions, other noise and slice thickness, another grade
mix). The external patients are ingested as predict's new patients are; each is cropped with exactly the
preprocessing the cells' bundles record and graded by every bundle of the study (``grade_patients``: one job
per study, each bundle loaded once, the crops made once per patient and distinct preprocessing). A member that cannot grade the
patient (a phase it reads is missing, no usable crop) is a status row: that model is evaluated without the
patient and the table counts them.

The study's external table (``write_table``) has one row per model (ROI setting, architecture, phases,
variant; its fold and seed members averaged): its internal test patients (as the failure analysis pools them:
a fold ensemble's out-of-fold patients) with AUC and 95% CI, the external patients' AUC with its 95% CI and the
patient bootstrap CI, accuracy, sensitivity and specificity at the frozen threshold with their Wilson 95% CIs,
calibration slope and intercept, and external minus internal AUC (z test of two independent DeLong
variances, bootstrap CI), its P values adjusted over the table's rows. The AUC intervals shown are the study
tables' (``tables.auc_cis``): Newcombe's score interval (``statistics.mode: honest``, the default) or DeLong's
Wald interval in paper mode; the CSV keeps the external patients' DeLong Wald bounds (``auc_wald_ci_*``) and
names the interval (``ci_method``). The figure puts internal beside external AUC, its axis naming the
interval, and draws the external decision curves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade.outputs import Outputs, pyplot, read_table, write_tsv

MODEL_KEYS = ["roi", "arch", "phases", "variant"]
MEMBER_KEYS = MODEL_KEYS + ["fold", "seed"]
COLUMNS = ["patient_id", *MEMBER_KEYS, "source", "slice_index", "prob_high", "threshold", "status"]
#: what a crop depends on in a bundle's preprocess.json (the network's keys are not)
CROP_KEYS = ("roi_name", "roi", "window", "phases", "targets", "stack_phases", "mask_label", "rtstruct_roi",
             "rtstruct_link")


# ------------------------------------------------------------------------------------------ one patient

def load_members(bundles: list[str | Path]) -> list[tuple[dict, object]]:
    """Each bundle's member key and its loaded network (``ccgrade.deploy.bundle.Bundle``), or the reason it has
    none: loaded once for every patient a job grades."""
    from ccgrade.deploy.bundle import Bundle

    out = []
    for path in bundles:
        meta = json.loads((Path(path) / "metadata.json").read_text())
        key = {k: meta["cell"][k] for k in MEMBER_KEYS}
        if not meta.get("trained", True):
            out.append((key, f"not trained: {meta.get('reason') or 'see its meta.json'}"))
        else:
            out.append((key, Bundle(path)))
    return out


def grade_patient(bundles: list[str | Path], volumes: str | Path, sources: dict[str, dict], patient: str,
                  secret: str | Path | None = None, members: list | None = None) -> pd.DataFrame:
    """P(high) per image of one external patient from every bundle (``sources``: the patient's annotation
    files per ROI setting, ``{roi: {phase: {format: file}}}``; ``members``: the bundles already loaded by
    ``load_members``). A member that cannot grade the patient (not trained, a phase it reads missing, no
    usable crop) gives one row with NaN P(high) and the reason as ``status``; the others ``ok``. The crops
    are made once per distinct preprocessing."""
    rows, crops = [], {}
    for key, b in load_members(bundles) if members is None else members:
        if isinstance(b, str):
            rows.append({**key, "status": b})
            continue
        pre = json.dumps({k: b.preprocess.get(k) for k in CROP_KEYS}, sort_keys=True)
        try:
            if pre not in crops:
                try:
                    crops[pre] = b.crops(volumes, sources.get(key["roi"], {}), patient, secret)
                except ValueError as e:  # remembered: the members sharing this preprocessing fail alike
                    crops[pre] = e
            if isinstance(crops[pre], Exception):
                raise crops[pre]
            img = b.predict_crops(crops[pre], patient)
        except ValueError as e:
            rows.append({**key, "status": str(e)})
            continue
        rows += [{**key, **r, "status": "ok"} for r in img.to_dict("records")]
    out = pd.DataFrame(rows).reindex(columns=COLUMNS)
    out["patient_id"] = patient
    out["slice_index"] = out["slice_index"].astype("Int64")  # an integer beside a status row's blank
    out["threshold"] = 0.5 if not bundles else _threshold(bundles)
    return out


def grade_patients(bundles: list[str | Path], patients: list[dict], out_dir: str | Path,
                   secret: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Every external patient (``{"patient_id", "volumes", "sources"}``) graded by every bundle of a study,
    the bundles loaded once: one ``<out_dir>/<patient_id>.tsv`` per patient (``grade_patient``'s rows)."""
    members = load_members(bundles)
    out = {}
    for p in patients:
        pid = p["patient_id"]
        out[pid] = grade_patient(bundles, p["volumes"], p["sources"], pid, secret, members)
        write_tsv(Path(out_dir) / f"{pid}.tsv", out[pid])
    return out


def _threshold(bundles: list) -> float:
    for path in bundles:
        pre = json.loads((Path(path) / "preprocess.json").read_text())
        if pre:
            return float(pre.get("threshold", 0.5))
    return 0.5


# ------------------------------------------------------------------------------------------ the table

def patient_probabilities(images: pd.DataFrame) -> pd.DataFrame:
    """Per model and patient: P(high), each member's mean over its images averaged over the members that
    graded the patient; members counted."""
    ok = images[images["status"] == "ok"]
    per = ok.groupby(MEMBER_KEYS + ["patient_id"], dropna=False)["prob_high"].mean().reset_index()
    out = per.groupby(MODEL_KEYS + ["patient_id"], dropna=False).agg(
        prob_high=("prob_high", "mean"), n_members=("prob_high", "size")).reset_index()
    return out


def internal_patients(cells: list[dict]) -> pd.DataFrame:
    """A model's own test patients (label, P(high)): its folds' test patients pooled, seeds averaged."""
    from ccgrade.evaluate.failures import test_patients

    t = test_patients([{"dir": c["dir"], "fold": c["fold"]} for c in cells])
    if t.empty:
        return t[["patient_id", "label", "prob_high"]]
    return t.groupby("patient_id").agg(label=("label", "first"), prob_high=("prob_high", "mean")).reset_index()


def external_table(images: pd.DataFrame, sheet: pd.DataFrame, models: list[dict], opt: dict | None = None
                   ) -> pd.DataFrame:
    """One row per model: internal and external metrics and their comparison (see the module's doc)."""
    from ccgrade.deploy.predict import metrics_table
    from ccgrade.evaluate.tables import adjust_columns

    pats = patient_probabilities(images)
    grades = sheet.set_index("patient_id")["grade_group"].to_dict()
    n_ext = int(sum(g in ("low", "high") for g in grades.values()))
    thr = float(images["threshold"].dropna().iloc[0]) if images["threshold"].notna().any() else 0.5
    rows = []
    for key, cells in _models(models).items():
        mine = pats[np.logical_and.reduce([pats[k].astype(str) == str(v) for k, v in zip(MODEL_KEYS, key)])] \
            if len(pats) else pats
        t = pd.DataFrame({"patient_id": mine["patient_id"].astype(str), "prob_high": mine["prob_high"].astype(float)})
        t["grade_group"] = t["patient_id"].map(grades).fillna("")
        t["threshold"] = thr
        m = metrics_table(t, opt, internal_patients(cells)).iloc[0].to_dict()
        rows.append({**dict(zip(MODEL_KEYS, key)), "n_members": len(cells),
                     "n_external": n_ext, "n_not_graded": n_ext - int(m["n_graded"]), **m})
    out = pd.DataFrame(rows)
    if "auc_difference_p" in out:
        adjust_columns(out, ["auc_difference_p"], opt)
    return out


def _models(models: list[dict]) -> dict[tuple, list[dict]]:
    """The study's cells grouped into models (their folds and seeds are the members), in matrix order."""
    out: dict[tuple, list[dict]] = {}
    for c in models:
        out.setdefault(tuple(str(c[k]) for k in MODEL_KEYS), []).append(c)
    return out


def write_table(image_files: list[str], sheet: pd.DataFrame, models: list[dict], study: str, centre: str,
                out: Outputs, opt: dict | None = None, thresholds: np.ndarray | None = None) -> pd.DataFrame:
    """The study's external table (CSV + Markdown) and figure (internal vs external AUC; external decision
    curves)."""
    from ccgrade.evaluate.tables import auc_ci_note, ci_text, est_text, family_note, fmt, proportion_note

    images = pd.concat([read_table(f) for f in image_files], ignore_index=True) if image_files else \
        pd.DataFrame(columns=COLUMNS)
    for c in ("fold", "seed"):
        images[c] = images[c].astype("Int64").astype(str)
    models = [{**c, "fold": str(c["fold"]), "seed": str(c["seed"])} for c in models]
    t = external_table(images, sheet, models, opt)
    view = t[MODEL_KEYS + ["n_members"]].copy()
    view["internal n"] = t.get("internal_n", pd.Series(np.nan, index=t.index)).map(
        lambda v: "" if v != v else int(v))
    view["internal AUC (95% CI)"] = [ci_text(r, "internal_") if "internal_auc" in t else "" for _, r in t.iterrows()]
    view["external n (high)"] = [f"{int(r.n_graded)} ({int(r.n_high) if 'n_high' in t and r.n_high == r.n_high else 0})"
                                 for r in t.itertuples()]
    view["external AUC (95% CI)"] = [ci_text(r) if "auc" in t else "" for _, r in t.iterrows()]
    for c in ("sensitivity", "specificity"):
        view[f"{c} (95% CI)"] = [est_text(r, c) for _, r in t.iterrows()] if c in t else ""
    for c in ("cal_slope", "cal_intercept"):
        view[c] = t[c].map(fmt) if c in t else ""
    if "auc_difference" in t:
        view["ΔAUC ext - int (95% CI)"] = [
            "" if r.auc_difference != r.auc_difference else
            f"{r.auc_difference:+.3f} ({r.auc_difference_boot_low:+.3f} to {r.auc_difference_boot_high:+.3f})"
            for r in t.itertuples()]
        view["P"] = t["auc_difference_p"].map(fmt)
        for m in [c for c in t if c.startswith("auc_difference_p_")]:
            view[f"P ({m.rsplit('_', 1)[1]})"] = t[m].map(fmt)
    notes = [f"External centre {centre}: every model trained on the main cohort, evaluated unchanged (nothing "
             "re-fitted or re-chosen on these patients). Patient level: a patient's P(high) is each member's mean "
             "over its images, averaged over the model's members (its folds and seeds).",
             "Internal: the model's own test patients (a fold ensemble's out-of-fold patients, each judged by the "
             "fold model that did not see it).", auc_ci_note(opt, "Internal and external"),
             f"Sensitivity (high) and specificity (low) at the frozen threshold {t['threshold'].iloc[0] if len(t) and 'threshold' in t else 0.5}. "
             "Calibration: logistic recalibration slope and intercept on the external patients (ideal 1 and 0; "
             "empty when the classes separate or one is absent).",
             proportion_note(opt, None, "sensitivity and specificity (and of accuracy, in the CSV)")]
    if "auc_difference_p" in t:
        notes.append("ΔAUC: external minus internal; P from the z test of two independent samples' DeLong variances, "
                     "CI from independent patient bootstraps of the two (empty where either set has one grade group).")
        notes.append(family_note(t, "auc_difference_p", "the external-vs-internal comparisons of this table's "
                                                        "models", opt))
    if len(t) and (t["n_not_graded"] > 0).any():
        notes.append("n_not_graded: external patients a model could not grade (a phase it reads missing, no usable "
                     "crop; the reasons are in the per-patient files), evaluated without them.")
    out.table("table", t, markdown=view, title=f"{study}: external validation on centre {centre}", footnotes=notes)
    figure(t, images, sheet, study, centre, out, thresholds, opt)
    return t


def auc_axis_label(opt: dict | None = None) -> str:
    """The AUC axis's label, naming the interval the table shows (``tables.auc_cis``, as ``statistics`` says)."""
    from ccgrade.evaluate.tables import stats_options

    return "AUC (95% CI, " + ("DeLong Wald" if stats_options(opt)["mode"] == "paper" else "Newcombe score") + ")"


def figure(t: pd.DataFrame, images: pd.DataFrame, sheet: pd.DataFrame, study: str, centre: str, out: Outputs,
           thresholds: np.ndarray | None = None, opt: dict | None = None) -> None:
    """Left: internal and external AUC (95% CI, the interval ``opt``'s mode shows) per model. Right: the
    external patients' decision curves."""
    from ccgrade.evaluate.decision import net_benefit, treat_all

    plt = pyplot()
    thresholds = np.arange(0.05, 0.951, 0.01) if thresholds is None else thresholds
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.4 * max(len(t), 4) + 1.5))
    names = [" ".join(str(r[k]) for k in MODEL_KEYS) for _, r in t.iterrows()]
    ys = np.arange(len(t))
    for col, dy, colour, label in (("internal_", -0.15, "#2e86c1", "internal test"), ("", 0.15, "#c0392b",
                                                                                      f"external ({centre})")):
        if f"{col}auc" not in t:
            continue
        a, lo, hi = (t[f"{col}auc{s}"].to_numpy(float) for s in ("", "_ci_low", "_ci_high"))
        axes[0].errorbar(a, ys + dy, xerr=[a - lo, hi - a], fmt="o", color=colour, label=label, ms=4, capsize=2)
    axes[0].axvline(0.5, color="grey", lw=0.6, ls=":")
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels(names, fontsize=6)
    axes[0].set_xlim(0, 1.02)
    axes[0].invert_yaxis()  # the table's order, top down
    axes[0].set_xlabel(auc_axis_label(opt))
    axes[0].legend(fontsize=7, loc="lower left")
    axes[0].set_title(f"{study}: internal vs external AUC", fontsize=9)
    grades = sheet.set_index("patient_id")["grade_group"].to_dict()
    pats = patient_probabilities(images) if len(images) else pd.DataFrame(columns=MODEL_KEYS + ["patient_id"])
    pats = pats[pats["patient_id"].map(grades).isin(["low", "high"])] if len(pats) else pats
    groups = dict(list(pats.groupby(MODEL_KEYS, sort=False))) if len(pats) else {}
    for key in [tuple(str(r[k]) for k in MODEL_KEYS) for _, r in t.iterrows()]:  # the table's order
        if key not in groups:
            continue
        g = groups[key]
        y = (g["patient_id"].map(grades) == "high").to_numpy(int)
        axes[1].plot(thresholds, net_benefit(y, g["prob_high"].to_numpy(float), thresholds), lw=1, label=" ".join(key))
    y_all = np.array([int(g == "high") for g in grades.values() if g in ("low", "high")])
    if len(y_all):
        axes[1].plot(thresholds, treat_all(y_all, thresholds), "--", color="grey", label="treat all")
        axes[1].axhline(0, color="k", lw=0.6, label="treat none")
        axes[1].set_ylim(-0.05, max(float(np.mean(y_all)), 0.05) * 1.1)
    axes[1].set_xlabel("threshold probability")
    axes[1].set_ylabel("net benefit")
    axes[1].legend(fontsize=5)
    axes[1].set_title(f"Decision curves, external centre {centre}", fontsize=9)
    fig.tight_layout()
    out.figure("figure", fig)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ the CLI

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="External validation: a study's models on another centre's patients.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("grade", help="the external patients graded by every bundle of a study")
    p.add_argument("--patient", nargs="+", required=True,
                   help="per patient: JSON {patient_id, volumes, sources: {roi: {phase: {format: file}}}}")
    p.add_argument("--bundles", nargs="*", default=[])
    p.add_argument("--secret")
    p.add_argument("--out-dir", required=True)
    t = sub.add_parser("table", help="a study's external table and figure")
    t.add_argument("--images", nargs="*", default=[])
    t.add_argument("--sheet", required=True, help="JSON records {patient_id, grade, grade_group}")
    t.add_argument("--models", required=True, help="JSON: the study's cells with their dirs")
    t.add_argument("--study", required=True)
    t.add_argument("--centre", required=True)
    t.add_argument("--stats", default="{}")
    t.add_argument("--outputs", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "grade":
        graded = grade_patients(a.bundles, [json.loads(p) for p in a.patient], a.out_dir, a.secret)
        for pid, rows in graded.items():
            print(pid, rows.groupby(MEMBER_KEYS, dropna=False)["status"].first().to_string(), sep="\n")
    else:
        sheet = pd.DataFrame(json.loads(a.sheet), columns=["patient_id", "grade", "grade_group"])
        res = write_table(a.images, sheet, json.loads(a.models), a.study, a.centre, Outputs.from_json(a.outputs),
                          json.loads(a.stats) or None)
        print(res.T.to_string())


if __name__ == "__main__":
    main()
