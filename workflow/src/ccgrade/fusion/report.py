"""The fusion study's tables and figures (Sun et al.): per model and set the AUC with its CIs, accuracy,
calibration (Hosmer-Lemeshow with g df held out and g - 2 in sample, logistic recalibration, Spiegelhalter)
and, against the combined model, the AUC difference with a paired bootstrap CI (no DeLong test: the models
are nested) and, on the training rows, the likelihood-ratio test of the nested designs (the in-sample deep
block left out) and, with ``fusion.optimism_boot``, Harrell's bootstrap optimism-corrected AUC, slope and
Brier (``optimism``); per set and clinical variable, how many patients were imputed; the coefficients; ROC,
calibration and decision curves; the nested CV table. Each is written to the fusion rule's declared files
by role (:class:`~ccgrade.outputs.Outputs`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccgrade.evaluate.decision import brier, calibration_curve, net_benefit, treat_all
from ccgrade.evaluate.tables import auc_ci_note
from ccgrade.fusion import optimism
from ccgrade.outputs import Outputs


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
#: the models that use the clinical variables (the rows that carry the imputed counts)
CLINICAL_MODELS = ("clinical", "combined")
#: the model table's columns of imputed patients, one per clinical variable: ``imputed_<variable>``
IMPUTED_PREFIX = "imputed_"


def model_table(pred: pd.DataFrame, lr: dict | None = None, opt: dict | None = None,
                imputed: dict | None = None) -> pd.DataFrame:
    """Per model and set: AUC with its CIs (``tables.auc_cis``: Newcombe's score interval in honest mode,
    DeLong's Wald interval in paper mode, and the bootstrap CI), accuracy, sensitivity, specificity, Brier and
    calibration (``stats.calibration``: held out unless the set is ``train``); against the combined model,
    the AUC difference (combined - model) with its paired patient-bootstrap CI, and on the training rows
    the likelihood-ratio test of the nested designs (``lr``, from ``fit_fusion``) with adjusted P values;
    with ``imputed`` ({set: {variable: patients}}) a column ``imputed_<variable>`` per clinical variable,
    on the rows of the models that use them."""
    from ccgrade import stats
    from ccgrade.evaluate.tables import adjust_columns, binary_summary, stats_options

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
        for var in dict.fromkeys(v for counts in (imputed or {}).values() for v in counts):
            t[f"{IMPUTED_PREFIX}{var}"] = pd.array(
                [imputed.get(s, {}).get(var) if m in CLINICAL_MODELS else None for m, s in zip(t["model"], t["set"])],
                dtype="Int64")
    return t


def _table_view(t: pd.DataFrame) -> pd.DataFrame:
    """The Markdown view of a model table: AUC with its CI (``tables.auc_cis``' main interval: Newcombe's in
    honest mode, DeLong's Wald in paper mode), on the training rows with ``fusion.optimism_boot`` the
    optimism-corrected AUC, and the rounded summaries."""
    from ccgrade.evaluate.tables import ci_text, fmt

    view = pd.DataFrame({"Model": t["model"], "Set": t["set"], "n": t["n"], "AUC (95% CI)": [ci_text(r) for _, r in t.iterrows()],
                         **{c.capitalize(): t[c].map(fmt) for c in ("accuracy", "sensitivity", "specificity", "brier")},
                         "Calibration slope / intercept": [f"{fmt(a)} / {fmt(b)}" if a == a else "" for a, b in
                                                           zip(t["cal_slope"], t["cal_intercept"])],
                         "Hosmer-Lemeshow P (df)": [f"{fmt(p)} ({d})" if p == p else "" for p, d in zip(t["hl_p"], t["hl_df"])],
                         "Spiegelhalter P": t["spiegelhalter_p"].map(fmt),
                         "ΔAUC combined − model (95% CI)": [
                             f"{fmt(d)} ({fmt(lo)} to {fmt(hi)})" if d == d else "" for d, lo, hi in
                             zip(t["delta_auc_vs_combined"], t["delta_auc_boot_low"], t["delta_auc_boot_high"])]})
    if "auc_corrected" in t:  # Harrell's bootstrap (fusion.optimism): training rows only
        view.insert(4, "AUC corrected", t["auc_corrected"].map(fmt))
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


def comparison_notes(lr: dict | None, t: pd.DataFrame | None = None, opt: dict | None = None,
                     lr_left_out: list[str] | tuple = ()) -> list[str]:
    """Footnotes on how the fusion tables compare and calibrate models. ``lr``: the training rows' LR tests
    (``fit_fusion``'s, by tested part; None: none run), ``lr_left_out``: the blocks left out of them, ``t``:
    the model table (whose fits not estimated for separation are named, each for what it is)."""
    from ccgrade.evaluate.tables import family_note

    notes = ["Each model is nested in the combined one, so the combined model is not compared by DeLong's test "
             "(invalid for nested models): ΔAUC = combined − model on the same patients, 95% CI from a paired "
             "bootstrap of patients (class-stratified)."]
    design = " + ".join(f"{m} score" if m != "clinical" else "clinical variables" for m in (lr or {}))
    if lr:
        notes.append("LR test (training rows): likelihood-ratio test of the model's design against the design "
                     f"{design}" + (f" (the combined model's design without the {', '.join(lr_left_out)} score)"
                                    if lr_left_out else " (the combined model's design)")
                     + ", both refitted by unpenalised maximum likelihood on the training patients (block scores "
                     "out-of-fold at the LASSO step). " + (family_note(t, "lr_p", "the training rows' LR tests", opt)
                                                          if t is not None and len(t) else ""))
    if lr_left_out:
        notes.append(f"Left out of the LR tests: the {', '.join(lr_left_out)} block (no test on its rows, and its "
                     "score is not in the design the others are tested against). Its training scores are in-sample "
                     "at the network step (the CNN was trained on these patients), so a likelihood gain measured "
                     "on them would be optimistic; fusion.deep.oof_folds >= 2 makes it out of fold."
                     + ("" if lr else " No LR test is left: the other parts make a design of one part."))
    notes.append("Calibration: slope and intercept by logistic recalibration (ideal 1 and 0); Hosmer-Lemeshow in 10 "
                 "groups of equal size by predicted risk (fewer when there are fewer patients), chi-square over both "
                 "outcomes with g df on held-out predictions and g − 2 on the training patients; a group expecting "
                 "none of an observed outcome is counted (hl_degenerate), never skipped; Spiegelhalter's z test.")
    if t is not None and len(t):
        notes += _separation_notes(t, design)
    return notes


def _separation_notes(t: pd.DataFrame, design: str) -> list[str]:
    """Which fits were not estimated because the classes separate: a row's calibration (its own predicted
    risks on its set) and the LR tests (the training patients' combined design), each named for what it is."""
    notes = []
    cal = [f"{m} ({s})" for m, s, a in zip(t["model"], t["set"], t["cal_note"]) if a == "separation"]
    if cal:
        notes.append("Calibration slope and intercept not estimated where the model's predicted risks separate the "
                     "set's classes completely (no finite maximum likelihood; Konis's linear-programming check): "
                     + ", ".join(cal) + "; left blank rather than given as a diverged fit.")
    lr = [m for m, b in zip(t["model"], t["lr_note"] if "lr_note" in t else [""] * len(t)) if b == "separation"]
    if lr:
        notes.append(f"LR test not estimated for {', '.join(lr)}: the design they are tested against ({design}) "
                     "separates the training patients' classes completely (no finite maximum likelihood; Konis's "
                     "linear-programming check), so their LR tests are left blank. Their calibration is judged "
                     "separately, on their own predicted risks.")
    return notes


def write_nested(pred: pd.DataFrame, out: Outputs, *, outer: int, cv: int, dropped: list[str],
                 opt: dict | None = None, extra_notes: list[str] | None = None) -> pd.DataFrame:
    """The nested cross-validation table (CSV + Markdown, role ``nested_table``); ``extra_notes``: further
    footnotes (the missing values imputed)."""
    t = nested_table(pred, opt)
    notes = [f"Every patient predicted once, by the whole pipeline refitted on the other {outer - 1} of {outer} "
             f"stratified outer folds (inner {cv}-fold CV for the LASSO penalty and the out-of-fold block scores); "
             "threshold 0.5.", auc_ci_note(opt, "Pooled out-of-fold")] + comparison_notes(None, t, opt) + list(extra_notes or [])
    if dropped:
        notes.append(f"Left out of the nested CV: the {', '.join(dropped)} block (its network was trained on a fixed "
                     "split, so its embeddings of that split's training patients carry their labels).")
    out.table("nested_table", t, title=NESTED_TITLE, markdown=_table_view(t), footnotes=notes)
    return t


def write_outputs(pred: pd.DataFrame, fitted: dict, left: pd.DataFrame, out: Outputs,
                  thresholds: np.ndarray, opt: dict | None = None) -> pd.DataFrame:
    """Fusion tables (models, coefficients) and figures (ROC, calibration and decision curves), written
    to the rule's files by role (``table``, ``coef``, ``roc``, ``dca``)."""
    from ccgrade.evaluate.tables import roc_figure

    t = optimism.add_columns(model_table(pred, fitted.get("lr"), opt, imputed=fitted.get("imputed")),
                             fitted.get("optimism"))
    out.table("table", t, title="Radiomics, deep and clinical models and their fusion (Sun et al.)",
              markdown=_table_view(t), footnotes=_model_notes(pred, fitted, left, out, t, opt))
    _coefficient_table(fitted, out)
    sets = [x for x in ("train", "test", "external") if x in set(pred["set"])]
    roc_figure([(f"ROC, {s}ing set" if s != "external" else f"ROC, external centre {fitted.get('external', '')}", [(m, *(lambda d: (d["label"].to_numpy(int), d["prob_high"].to_numpy(float)))(
        pred[(pred["set"] == s) & (pred["model"] == m)])) for m in MODEL_ORDER if m in set(pred["model"])])
        for s in sets], out["roc"], pdf=out["roc_pdf"])
    _curves_figure(pred, fitted, out, thresholds)
    return t


def deep_note(oof: bool) -> str:
    """The deep block's footnote: out of fold (``fusion.deep.oof_folds``) or in sample (Sun et al.'s embeddings)."""
    if oof:
        return ("Out-of-fold deep block (fusion.deep.oof_folds): its one feature is the CNN's score (its log-odds of "
                "high grade averaged over the patient's images); each training patient is scored by a fold network "
                "trained without it, each test or external patient by the cell trained on all training patients, so "
                "its coefficients and LR tests are valid. The nested CV leaves it out (the network would need "
                "retraining in each outer fold).")
    return ("In-sample deep block: its features are embeddings of a CNN trained on these same training patients, so "
            "its training scores carry their labels even where they are out-of-fold at the LASSO step: its training "
            "rows are optimistic and the combined model over-weights it; its test rows are honest. The nested CV and "
            "the LR tests leave it out (fusion.deep.oof_folds >= 2 makes it out of fold).")


def _model_notes(pred: pd.DataFrame, fitted: dict, left: pd.DataFrame, out: Outputs, t: pd.DataFrame,
                 opt: dict | None = None) -> list[str]:
    """The model table's footnotes: how each model was fitted, the deep block's caveat, the missing values,
    the external centre."""
    notes = ["Fitted on the training patients only (validation patients join them); threshold 0.5.",
             auc_ci_note(opt, "The"), "Block models: a LASSO logistic regression on the block's filtered, "
             "standardised features gives the block score, made a risk by a one-variable logistic calibration "
             "fitted on the training patients' out-of-fold scores; clinical: logistic regression on the clinical "
             "variables; combined: logistic regression on the block scores and the clinical variables, fitted on "
             "training block scores that are out-of-fold at the LASSO step only (each patient scored by a LASSO "
             "fitted without them). Training rows are in-sample: each model predicts the patients it was fitted "
             "on, with the scores of the block models fitted on all training patients."]
    notes += comparison_notes(fitted.get("lr"), t, opt, fitted.get("lr_left_out", ()))
    if "deep" in fitted.get("blocks", {}):
        notes.append(deep_note(bool(fitted.get("deep_oof"))))
    if fitted.get("optimism"):
        notes.append(optimism.note(fitted["optimism"], "deep" in fitted.get("blocks", {})
                                   and not fitted.get("deep_oof")))
    notes.append(missing_note(fitted.get("imputed")))
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


SET_NAMES = {"train": "training", "test": "test", "external": "external"}


def missing_note(imputed: dict | None) -> str:
    """The missing-value policy and, per clinical variable (``imputed``: {set: {variable: patients}}), how
    many patients of each set it was imputed for."""
    head = ("Missing values are imputed, every statistic from the training patients (only a patient lacking all of "
            "a block's features is left out): a block's missing feature value takes the training median")
    if not imputed:
        return head + "."
    names = list(dict.fromkeys(v for counts in imputed.values() for v in counts))
    per = "; ".join(f"{v} " + ", ".join(f"{SET_NAMES.get(s, s)} {c.get(v, 0)}" for s, c in imputed.items())
                    for v in names)
    return (head + ", a continuous clinical variable the training median, a categorical one its own level (missing), "
            "a dummy fitted like any level (when no training patient lacks the variable, a patient lacking it gets "
            "the training patients' share of each level). Patients imputed, per clinical variable and set "
            f"({IMPUTED_PREFIX}<variable> in the CSV, on the clinical and combined rows): {per}.")


def _coefficient_table(fitted: dict, out: Outputs) -> None:
    """Every model's coefficients per training SD, with odds ratios (the ``coef`` table)."""
    from ccgrade.evaluate.tables import fmt

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


def _calibration_panel(ax, test: pd.DataFrame, n_boot: int = 250) -> None:
    """Each model's smoothed calibration curve on the test patients with its 95% patient-bootstrap band,
    drawn as the study figures draw theirs (``evaluate.curves``: lowess as ``rms::val.prob``, on the
    grid ``curves.CURVE`` within the model's range of P(high), ``n_boot`` resamples seeded by the
    model's rank, 250 as the studies' default). Where the lowess is undefined (a model with one class,
    or fewer than 5 patients, too few for its span of 2/3) the model's quantile bins instead, as points."""
    import warnings

    from ccgrade.evaluate.curves import CURVE, calibration_band, draw_band

    binned = False
    for i, m in enumerate(MODEL_ORDER):
        d = test[test["model"] == m]
        y, p = d["label"].to_numpy(int), d["prob_high"].to_numpy(float)
        if not len(y):
            continue
        grid = CURVE[(CURVE >= p.min()) & (CURVE <= p.max())]
        band = None
        if len(np.unique(y)) == 2 and len(grid):
            with warnings.catch_warnings():  # grid points that no resample's lowess reaches are left blank
                warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
                band = calibration_band(y, p, n_boot, seed=i)
        if band is None or band["observed"].isna().all():
            cal = calibration_curve(y, p)
            ax.plot(cal["mean_predicted"], cal["observed"], "o", label=f"{m} (quantile bins)")
            binned = True
            continue
        draw_band(ax, band, m)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted risk of high grade", ylabel="observed fraction high grade")
    ax.set_title("Calibration, test set (lowess, bootstrap band" + ("; bins where too few)" if binned else ")"),
                 fontsize=9)


def _curves_figure(pred: pd.DataFrame, fitted: dict, out: Outputs, thresholds: np.ndarray) -> None:
    """Calibration and decision curves on the test set (and the external centre's decision curves)."""
    from ccgrade.outputs import pyplot

    plt = pyplot()
    has_ext = "external" in set(pred["set"])
    fig, axes = plt.subplots(1, 3 if has_ext else 2, figsize=(13.5 if has_ext else 9, 4.2))
    if has_ext:  # the external centre's decision curves, beside the test set's
        _decision_curves(axes[2], pred[pred["set"] == "external"], thresholds,
                         f"Decision curves, external centre {fitted.get('external', '')}")
    test = pred[pred["set"] == "test"]
    _calibration_panel(axes[0], test)
    _decision_curves(axes[1], test, thresholds, "Decision curves, test set")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.figure("dca", fig)
    plt.close(fig)


def not_fitted(reason: str, out: Outputs, left: pd.DataFrame | None = None) -> None:
    """The fusion outputs when the models cannot be fitted (e.g. a tiny cohort), each saying why."""
    from ccgrade.outputs import pyplot, write_tsv

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
