"""Every study's decision and calibration curves on its test patients (issue 29, item 8): what the papers do not
show and a reader of a prediction model expects (TRIPOD+AI items 12e and 23).

One curve per model (architecture, phase set, ROI setting, variant) at patient level, the mean P(high) over a
patient's images; a k-fold model's folds pooled (each patient scored by the fold that did not see it); the first
seed only (another seed is another model, not a replicate to average). The table gives the net benefit at
thresholds 0.1-0.9 with its patient-bootstrap 95% interval and the net interventions avoided per 100 patients
against treating all, and each model's calibration errors (ICI, E50, E90, Emax); the figure the decision curves
and the smoothed calibration curves with their bootstrap bands (``ccgrade.evaluate.decision``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccgrade.evaluate import decision
from ccgrade.evaluate.tables import fmt, levels, read_predictions, stats_options
from ccgrade.outputs import Outputs, pyplot

THRESHOLDS = np.round(np.arange(0.1, 0.91, 0.1), 2)
CURVE = np.round(np.arange(0.02, 0.99, 0.02), 2)
WEIGHTED_NOTE = ("P(high) of a network trained with a class-weighted loss is a score, not a risk: the weights move "
                 "its outputs towards the rarer grade group, so its calibration and net benefit describe the score "
                 "as it is, uncalibrated.")


def model_name(m: dict) -> str:
    parts = [m["arch"], m["phases"], m.get("roi", "")] + ([m["variant"]] if m.get("variant") not in ("base", "") else [])
    return " ".join(p for p in parts if p)


def patient_predictions(models: list[dict]) -> dict[str, pd.DataFrame]:
    """Per model, its test patients' labels and mean P(high): the first seed, every fold pooled."""
    first_seed = min(m["seed"] for m in models)
    out: dict[str, list[pd.DataFrame]] = {}
    for m in models:
        if m["seed"] != first_seed:
            continue
        y, prob, pid, _ = levels(read_predictions(m))["patient"]  # (the test set's patients, as the tables)
        out.setdefault(model_name(m), []).append(pd.DataFrame({"patient_id": pid, "label": y, "prob": prob}))
    return {k: pd.concat(v, ignore_index=True).drop_duplicates("patient_id") for k, v in out.items()}


def _rows(name: str, pat: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    y, p = pat["label"].to_numpy(int), pat["prob"].to_numpy(float)
    nb = decision.net_benefit_ci(y, p, THRESHOLDS, n_boot=n_boot, seed=seed)
    cal = decision.calibration_errors(y, p)
    return nb.assign(model=name, n=len(y), n_high=int(y.sum()), **cal)


def study_curves(models: list[dict], out: Outputs, opt: dict | None = None) -> pd.DataFrame:
    """Write the study's decision table and figure (roles ``decision``, ``decision_figure``); return the table."""
    o = stats_options(opt)
    preds = {k: v for k, v in patient_predictions(models).items() if v["label"].nunique() == 2}
    cols = ["model", "n", "n_high", "threshold", "net_benefit", "nb_low", "nb_high", "treat_all",
            "interventions_avoided_per_100", "ici", "e50", "e90", "emax"]
    n_boot = min(int(o["n_boot"]), 500)
    t = pd.concat([_rows(k, v, n_boot, i) for i, (k, v) in enumerate(sorted(preds.items()))],
                  ignore_index=True)[cols] if preds else pd.DataFrame(columns=cols)
    view = pd.DataFrame({"Model": t["model"], "Threshold": t["threshold"].map(lambda v: f"{v:.1f}"),
                         "Net benefit (95% CI)": [f"{fmt(a)} ({fmt(b)}–{fmt(c)})" for a, b, c in
                                                  zip(t["net_benefit"], t["nb_low"], t["nb_high"])],
                         "Treat all": t["treat_all"].map(fmt),
                         "Interventions avoided /100": t["interventions_avoided_per_100"].map(lambda v: f"{v:.1f}"),
                         "ICI": t["ici"].map(fmt), "E90": t["e90"].map(fmt)})
    out.table("decision", t, title="Decision curves and calibration, test patients", markdown=view, footnotes=[
        "Patient level (mean P(high) over a patient's images); a k-fold model's folds pooled; the first seed only.",
        f"Net benefit = TP/n - FP/n x t/(1-t) (Vickers & Elkin 2006), 95% CI by a patient bootstrap ({n_boot} "
        "resamples); interventions avoided per 100 patients against treating all = (NB - NB_all) (1-t)/t x 100.",
        "Calibration: lowess of the outcome on P(high) without robustness iterations (as rms::val.prob); ICI, E50, "
        "E90, Emax: the mean, median, 90th percentile and largest distance between P(high) and that curve.",
        WEIGHTED_NOTE])
    _figure(preds, out, n_boot)
    return t


def calibration_band(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> pd.DataFrame:
    """The smoothed calibration curve and its bootstrap band on ``CURVE`` within the range of ``p``."""
    return decision.calibration_band(y, p, CURVE[(CURVE >= p.min()) & (CURVE <= p.max())], n_boot=n_boot, seed=seed)


def draw_band(ax, band: pd.DataFrame, label: str) -> None:
    """One model's calibration curve with its band shaded in the curve's colour."""
    line, = ax.plot(band["predicted"], band["observed"], label=label)
    ax.fill_between(band["predicted"], band["low"], band["high"], color=line.get_color(), alpha=0.15)


def _figure(preds: dict[str, pd.DataFrame], out: Outputs, n_boot: int) -> None:
    plt = pyplot()
    fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, (name, pat) in enumerate(sorted(preds.items())):
        y, p = pat["label"].to_numpy(int), pat["prob"].to_numpy(float)
        ax_d.plot(CURVE, decision.net_benefit(y, p, CURVE), label=name)
        draw_band(ax_c, calibration_band(y, p, n_boot // 2, seed=i), name)
    if preds:
        y_all = next(iter(preds.values()))["label"].to_numpy(int)
        ax_d.plot(CURVE, decision.treat_all(y_all, CURVE), "k--", lw=1, label="treat all")
    ax_d.axhline(0, color="grey", lw=1, label="treat none")
    ax_d.set(xlabel="threshold P(high)", ylabel="net benefit", title="Decision curves (test patients)", ylim=(-0.1, None))
    ax_c.plot([0, 1], [0, 1], color="grey", lw=1)
    ax_c.set(xlabel="P(high)", ylabel="observed high grade", title="Calibration (lowess, bootstrap band)",
             xlim=(0, 1), ylim=(0, 1))
    for ax in (ax_d, ax_c):
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.figure("decision_figure", fig)
    plt.close(fig)
