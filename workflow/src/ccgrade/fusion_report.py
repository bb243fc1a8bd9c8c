"""The fusion study's tables and figures (Sun et al.): per model and set the AUC with its CIs, accuracy,
calibration (Hosmer-Lemeshow with g df held out and g - 2 in sample, logistic recalibration, Spiegelhalter)
and, against the combined model, the AUC difference with a paired bootstrap CI and the likelihood-ratio
test of the nested designs; the coefficients; ROC, calibration and decision curves; the nested CV table.
Each is written to the fusion rule's declared files by role (:class:`~ccgrade.outputs.Outputs`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .decision import brier, calibration_curve, net_benefit, treat_all
from .outputs import Outputs


def nested_table(pred: pd.DataFrame, opt: dict | None = None) -> pd.DataFrame:
    """Per model: the pooled out-of-fold summary (model_table) and the outer folds' AUC mean and SD."""
    from sklearn.metrics import roc_auc_score

    t = model_table(pred, opt=opt)
    per_fold = {m: [roc_auc_score(d["label"], d["prob_high"]) for _, d in g.groupby("fold") if d["label"].nunique() == 2]
                for m, g in pred.groupby("model")}
    t["outer_folds"] = int(pred["fold"].nunique())
    t["fold_auc_mean"] = t["model"].map(lambda m: float(np.mean(per_fold[m])))
    t["fold_auc_sd"] = t["model"].map(lambda m: float(np.std(per_fold[m], ddof=1)) if len(per_fold[m]) > 1 else np.nan)
    return t


MODEL_ORDER = ["radiomics", "deep", "clinical", "combined"]


def model_table(pred: pd.DataFrame, lr: dict | None = None, opt: dict | None = None) -> pd.DataFrame:
    """Per model and set: AUC (DeLong and bootstrap CIs), accuracy, sensitivity, specificity, Brier and
    calibration (``stats.calibration``: held out unless the set is ``train``); against the combined model,
    the AUC difference (combined - model) with its paired patient-bootstrap CI, and on the training rows
    the likelihood-ratio test of the nested designs (``lr``, from ``fit_fusion``) with adjusted P values."""
    from . import stats
    from .evaluate import adjust_columns, binary_summary, stats_options

    o = stats_options(opt)
    rows = []
    models_ = [m for m in MODEL_ORDER if m in set(pred["model"])]
    for set_name in dict.fromkeys(pred["set"]):
        s = pred[pred["set"] == set_name]
        comb = s[s["model"] == "combined"].set_index("patient_id")
        for m in models_:
            t = s[s["model"] == m].set_index("patient_id")
            y, p = t["label"].to_numpy(int), t["prob_high"].to_numpy(float)
            row = {"model": m, "set": set_name, **binary_summary(y, p, opt=o), "brier": brier(y, p),
                   **stats.calibration(y, p, held_out=set_name != "train"),
                   "delta_auc_vs_combined": np.nan, "delta_auc_boot_low": np.nan, "delta_auc_boot_high": np.nan,
                   "lr_chi2": np.nan, "lr_df": np.nan, "lr_p": np.nan, "lr_note": ""}
            if m != "combined" and len(comb) and len(np.unique(y)) == 2:
                c = comb.loc[t.index, "prob_high"].to_numpy(float)
                b = stats.cluster_bootstrap(y, np.vstack([c, p]), n_boot=o["n_boot"], seed=0)
                auc = stats.delong(y, np.vstack([c, p]))[0]
                row.update(delta_auc_vs_combined=float(auc[0] - auc[1]) + 0.0, delta_auc_boot_low=0.0 - float(b["diff_high"][1]),
                           delta_auc_boot_high=0.0 - float(b["diff_low"][1]))
            if lr and set_name == "train" and m in lr:
                row.update({k: lr[m].get(k, "") for k in ("lr_chi2", "lr_df", "lr_p", "lr_note")})
            rows.append(row)
    t = pd.DataFrame(rows)
    if len(t):
        adjust_columns(t, ["lr_p"], o)
    return t


def _table_view(t: pd.DataFrame) -> pd.DataFrame:
    """The Markdown view of a model table: AUC with its DeLong CI and the rounded summaries."""
    from .evaluate import ci_text, fmt

    view = pd.DataFrame({"Model": t["model"], "Set": t["set"], "n": t["n"], "AUC (95% CI)": [ci_text(r) for _, r in t.iterrows()],
                         **{c.capitalize(): t[c].map(fmt) for c in ("accuracy", "sensitivity", "specificity", "brier")},
                         "Calibration slope / intercept": [f"{fmt(a)} / {fmt(b)}" if a == a else "" for a, b in
                                                           zip(t["cal_slope"], t["cal_intercept"])],
                         "Hosmer-Lemeshow P (df)": [f"{fmt(p)} ({d})" if p == p else "" for p, d in zip(t["hl_p"], t["hl_df"])],
                         "Spiegelhalter P": t["spiegelhalter_p"].map(fmt),
                         "ΔAUC combined − model (95% CI)": [
                             f"{fmt(d)} ({fmt(lo)} to {fmt(hi)})" if d == d else "" for d, lo, hi in
                             zip(t["delta_auc_vs_combined"], t["delta_auc_boot_low"], t["delta_auc_boot_high"])]})
    if t["lr_p"].notna().any():
        h = [c for c in t.columns if c.startswith("lr_p_")]
        view["LR test P vs combined"] = t["lr_p"].map(fmt)
        for c in h:
            view[f"LR P ({c.removeprefix('lr_p_')})"] = t[c].map(fmt)
    if "fold_auc_mean" in t:
        view.insert(4, "Outer folds' AUC (mean ± SD)",
                    [f"{fmt(m)} ± {fmt(sd)}" for m, sd in zip(t["fold_auc_mean"], t["fold_auc_sd"])])
    return view


NESTED_TITLE = "Nested cross-validation of the fusion pipeline (pooled out-of-fold predictions)"


def comparison_notes(lr: bool, t: pd.DataFrame | None = None) -> list[str]:
    """Footnotes on how the fusion tables compare and calibrate models (``t``: the model table, whose
    separated fits are named)."""
    notes = ["Each model is nested in the combined one, so the combined model is not compared by DeLong's test "
             "(invalid for nested models): ΔAUC = combined − model on the same patients, 95% CI from a paired "
             "bootstrap of patients (class-stratified)."]
    if lr:
        notes.append("LR test (training rows): likelihood-ratio test of the model's design against the combined design "
                     "containing it, both refitted by unpenalised maximum likelihood on the training patients (out-of-fold "
                     "block scores); family: these LR tests, Holm-adjusted (lr_p_holm).")
    notes.append("Calibration: slope and intercept by logistic recalibration (ideal 1 and 0); Hosmer-Lemeshow in 10 "
                 "groups of equal size by predicted risk (fewer when there are fewer patients), chi-square over both "
                 "outcomes with g df on held-out predictions and g − 2 on the training patients; a group expecting "
                 "none of an observed outcome is counted (hl_degenerate), never skipped; Spiegelhalter's z test.")
    if t is not None and len(t):
        sep = [f"{m} ({s})" for m, s, a, b in zip(t["model"], t["set"], t["cal_note"], t.get("lr_note", [""] * len(t)))
               if "separation" in (a, b)]
        if sep:
            notes.append("Not estimated where the predicted risks separate the classes completely (no finite maximum "
                         "likelihood; Konis's linear-programming check): " + ", ".join(sep) + ". Their calibration slope, "
                         "intercept and LR test are left blank rather than given as a diverged fit.")
    return notes


def write_nested(pred: pd.DataFrame, out: Outputs, *, outer: int, cv: int, dropped: list[str],
                 opt: dict | None = None) -> pd.DataFrame:
    """The nested cross-validation table (CSV + Markdown, role ``nested_table``)."""
    t = nested_table(pred, opt)
    notes = [f"Every patient predicted once, by the whole pipeline refitted on the other {outer - 1} of {outer} "
             f"stratified outer folds (inner {cv}-fold CV for the LASSO penalty and the out-of-fold block scores); "
             "AUC 95% CI by DeLong on the pooled out-of-fold predictions (bootstrap CI in the CSV); threshold 0.5."
             ] + comparison_notes(lr=False, t=t)
    if dropped:
        notes.append(f"Left out of the nested CV: the {', '.join(dropped)} block (its network was trained on a fixed "
                     "split, so its embeddings of that split's training patients carry their labels).")
    out.table("nested_table", t, title=NESTED_TITLE, markdown=_table_view(t), footnotes=notes)
    return t


def write_outputs(pred: pd.DataFrame, fitted: dict, left: pd.DataFrame, out: Outputs,
                  thresholds: np.ndarray, opt: dict | None = None) -> pd.DataFrame:
    """Fusion tables (models, coefficients) and figures (ROC, calibration and decision curves), written
    to the rule's files by role (``table``, ``coef``, ``roc``, ``dca``)."""
    from .evaluate import roc_figure

    t = model_table(pred, fitted.get("lr"), opt)
    out.table("table", t, title="Radiomics, deep and clinical models and their fusion (Sun et al.)",
              markdown=_table_view(t), footnotes=_model_notes(pred, fitted, left, out, t))
    _coefficient_table(fitted, out)
    sets = [x for x in ("train", "test", "external") if x in set(pred["set"])]
    roc_figure([(f"ROC, {s}ing set" if s != "external" else f"ROC, external centre {fitted.get('external', '')}", [(m, *(lambda d: (d["label"].to_numpy(int), d["prob_high"].to_numpy(float)))(
        pred[(pred["set"] == s) & (pred["model"] == m)])) for m in MODEL_ORDER if m in set(pred["model"])])
        for s in sets], out["roc"], pdf=out["roc_pdf"])
    _curves_figure(pred, fitted, out, thresholds)
    return t


def _model_notes(pred: pd.DataFrame, fitted: dict, left: pd.DataFrame, out: Outputs, t: pd.DataFrame) -> list[str]:
    """The model table's footnotes: how each model was fitted, the deep block's caveat, the external centre."""
    notes = ["Fitted on the training patients only (validation patients join them); threshold 0.5. AUC 95% CI by "
             "DeLong (bootstrap CI in the CSV). Block models: LASSO logistic regression on the block's filtered, "
             "standardised features; combined: logistic regression on the out-of-fold block scores and the clinical "
             "variables."] + comparison_notes(lr=bool(fitted.get("lr")), t=t)
    if "deep" in fitted.get("blocks", {}):
        notes.append("In-sample deep block: its features are embeddings of a CNN trained on these same training "
                     "patients, so its training scores (out-of-fold only at the LASSO step) are optimistic and the "
                     "combined model over-weights it; its test rows are honest. The nested CV leaves it out.")
    if fitted.get("external"):
        ext = pred[pred["set"] == "external"]
        notes.append(f"external: centre {fitted['external']}'s patients scored by these models unchanged (fitted on the "
                     "main cohort's training patients; nothing re-fitted there): the radiomics from its own images, "
                     "the deep block by the frozen network with its bundle's preprocessing, its clinical variables "
                     "standardised by the training patients'. " + ("" if len(ext) else "Not scored: see "
                                                                    f"{out['left_out'].name}."))
    if len(left):
        notes.append(f"{len(left)} patients left out (see {out['left_out'].name} in {out['left_out'].parent}).")
    return notes


def _coefficient_table(fitted: dict, out: Outputs) -> None:
    """Every model's coefficients per training SD, with odds ratios (the ``coef`` table)."""
    from .evaluate import fmt

    coef = []
    if "combined" in fitted:
        coef.append(fitted["combined"].coefficients().assign(model="combined"))
    if "clinical" in fitted:
        coef.append(fitted["clinical"].coefficients().assign(model="clinical"))
    for name, bm in fitted["blocks"].items():
        c = bm.model.coef_[0]
        coef.append(pd.DataFrame({"term": ["intercept"] + [k for k, v in zip(bm.kept, c) if v != 0],
                                  "coef_per_sd": [float(bm.model.intercept_[0])] + [float(v) for v in c if v != 0]})
                    .assign(model=f"{name} score"))
    ct = pd.concat(coef, ignore_index=True) if coef else pd.DataFrame(columns=["model", "term", "coef_per_sd"])
    ct["odds_ratio_per_sd"] = np.exp(ct["coef_per_sd"])
    ct = ct[["model", "term", "coef_per_sd", "odds_ratio_per_sd"] + [c for c in ("train_mean", "train_sd") if c in ct]]
    view = ct.assign(**{c: ct[c].map(fmt) for c in ("coef_per_sd", "odds_ratio_per_sd")},
                     **{c: ct[c].map(lambda v: "" if v != v else f"{v:.4g}") for c in ("train_mean", "train_sd") if c in ct})
    out.table("coef", ct, markdown=view, title="Model coefficients (per training SD; nomogram points "
              "are proportional to coefficient x standardised value)",
              footnotes=["Block scores are LASSO linear predictors; their terms are the selected features."])


def _decision_curves(ax, rows: pd.DataFrame, thresholds: np.ndarray, title: str) -> None:
    """Net benefit of each model on ``rows`` (one set's predictions), with treat all and treat none."""
    for m in MODEL_ORDER:
        d = rows[rows["model"] == m]
        if len(d):
            ax.plot(thresholds, net_benefit(d["label"].to_numpy(), d["prob_high"].to_numpy(), thresholds), label=m)
    y = rows.drop_duplicates("patient_id")["label"].to_numpy()
    if len(y):
        ax.plot(thresholds, treat_all(y, thresholds), "--", color="grey", label="treat all")
    ax.axhline(0, color="black", lw=0.8, label="treat none")
    ax.set_ylim(-0.05, max(0.05, float(np.mean(y)) if len(y) else 0.05) * 1.2)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(title, fontsize=9)


def _curves_figure(pred: pd.DataFrame, fitted: dict, out: Outputs, thresholds: np.ndarray) -> None:
    """Calibration and decision curves on the test set (and the external centre's decision curves)."""
    from .outputs import pyplot

    plt = pyplot()
    has_ext = "external" in set(pred["set"])
    fig, axes = plt.subplots(1, 3 if has_ext else 2, figsize=(13.5 if has_ext else 9, 4.2))
    if has_ext:  # the external centre's decision curves, beside the test set's
        _decision_curves(axes[2], pred[pred["set"] == "external"], thresholds,
                         f"Decision curves, external centre {fitted.get('external', '')}")
    test = pred[pred["set"] == "test"]
    for m in MODEL_ORDER:
        d = test[test["model"] == m]
        if d.empty:
            continue
        cal = calibration_curve(d["label"].to_numpy(), d["prob_high"].to_numpy())
        axes[0].plot(cal["mean_predicted"], cal["observed"], "o-", label=m)
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set_xlabel("predicted risk of high grade")
    axes[0].set_ylabel("observed fraction high grade")
    axes[0].set_title("Calibration, test set (quantile bins)", fontsize=9)
    _decision_curves(axes[1], test, thresholds, "Decision curves, test set")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.figure("dca", fig)
    plt.close(fig)


def not_fitted(reason: str, out: Outputs, left: pd.DataFrame | None = None) -> None:
    """The fusion outputs when the models cannot be fitted (e.g. a tiny cohort), each saying why."""
    from .outputs import pyplot, write_tsv

    write_tsv(out["predictions"], pd.DataFrame(columns=["patient_id", "set", "label", "model", "prob_high"]))
    write_tsv(out["left_out"], left if left is not None else pd.DataFrame(columns=["patient_id", "reason"]))
    write_tsv(out["selected"], pd.DataFrame(columns=["block", "feature", "selected"]))
    note = [f"not fitted: {reason}"]
    out.table("table", pd.DataFrame(columns=["model", "set", "n", "auc"]), footnotes=note,
              title="Radiomics, deep and clinical models and their fusion (Sun et al.)")
    out.table("coef", pd.DataFrame(columns=["model", "term", "coef_per_sd"]), footnotes=note, title="Model coefficients")
    plt = pyplot()
    for role in ("roc", "dca"):
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, note[0], ha="center", va="center", wrap=True)
        out.figure(role, fig)
        plt.close(fig)
