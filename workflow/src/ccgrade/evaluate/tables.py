"""What every paper's tables share (the builders are ``cui``, ``li``, ``dai`` and ``sun``).

The statistics settings (``stats_options``); a prediction table read (``read_predictions``) and cut into
image and patient level (``levels``); AUC with its 95% CIs and the binary metrics at the threshold with
theirs (``auc_cis``, ``binary_summary``; the proportions' intervals are ``ccgrade.proportions``'); the paired
comparison of two models' AUCs on the same test units (``paired_test``, ``compare``) and the footnote naming its
test (``paired_test_note``); the multiplicity adjustment of a table's
family of tests and its footnote (``adjust_columns``, ``family_note``); the seeds' summary rows (``seed_summary``
for the CSV: mean, SD, min and max of every point estimate, never of an interval bound or a P value;
``seed_view`` for the Markdown: one row per group, "mean ± SD (range min–max)"); the reference chosen without
the test patients (``choose_reference``, Li Table 2 and Sun); the number formats and footnote sentences
(``fmt``, ``est_text``, ``ci_text``, ``count_text``, ``image_ci_note``, ``proportion_note``, ``seed_note``); and the
ROC and confusion-matrix figures (``roc_figure``, ``confusion_figure``).

Threshold 0.5 on P(high) throughout (fixed, never tuned). Image- and slice-level intervals and tests are
patient-clustered (Obuchowski 1997) and bootstrapped by patient. Two models' AUCs are compared by the
within-patient permutation test of ranks (``stats.paired_auc_test``: a patient's images swapped together; exact
when 2^patients <= 10,000, otherwise 10,000 patterns drawn with a fixed seed), chosen for its size at small
samples (docs/statistics.md). ``statistics.mode: paper`` shows the papers' naive AUC intervals and compares AUCs by
DeLong's test (images as independent), and chooses the "best" phase on the test set, as they did, and the
footnotes say so. Proportions (accuracy, sensitivity, specificity, precision, NPV) carry Wilson
intervals per patient and the patient-clustered Wilson interval per image in both modes (the papers gave
none); F1 the Wilson interval of the Jaccard index mapped to F1 (``proportions.F1_INTERVAL_DEFAULT``, chosen by
benchmarks/bench_f1_coverage.py). Every table holding two or more tests gives Holm-adjusted P values
(and Benjamini-Hochberg ones when asked) beside the raw ones, and names the family.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade import proportions, stats
from ccgrade.outputs import pyplot, read_table, save_figure

DEFAULT_STATS = {"mode": "honest", "adjust": ["holm"], "n_boot": 2000}
ADJUST_NAMES = stats.ADJUST_NAMES
CI_SUFFIXES = ("", "_ci_low", "_ci_high")  # a metric's columns: the estimate, then its interval
SUMMARY_ROWS = ("mean", "sd", "min", "max")  # the seeds' summary rows of a CSV (``seed`` column)


def stats_options(opt: dict | None = None) -> dict:
    """The statistics settings (config ``statistics``) with their defaults and what the mode implies:
    ``clustered`` (image-level CIs and tests by patient) and ``selection`` (validation or test)."""
    o = {**DEFAULT_STATS, **(opt or {})}
    if isinstance(o["adjust"], str):
        o["adjust"] = [o["adjust"]]
    paper = o["mode"] == "paper"
    return {**o, "clustered": not paper, "selection": "test" if paper else "validation"}


def levels(pred: pd.DataFrame, set_name: str = "test") -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(labels, P(high), unit IDs, the units' patients) at image and patient level for one set (default: test)."""
    t = pred[pred["set"] == set_name]
    pat = t.groupby("patient_id").agg(label=("label", "first"), prob=("prob_high", "mean"))
    return {"image": (t["label"].to_numpy(int), t["prob_high"].to_numpy(float),
                      (t["patient_id"] + ":" + t["source"] + ":" + t["slice_index"].astype(str)).to_numpy(),
                      t["patient_id"].to_numpy()),
            "patient": (pat["label"].to_numpy(int), pat["prob"].to_numpy(float), pat.index.to_numpy(), pat.index.to_numpy())}


def auc_cis(y: np.ndarray, p: np.ndarray, clusters: np.ndarray | None = None, seed: int = 0,
            opt: dict | None = None, bootstrap: bool = True) -> dict:
    """AUC with its 95% CIs. Shown (``auc_ci_*``): Newcombe's score interval (``stats.AUC_INTERVAL_DEFAULT``,
    chosen by ``benchmarks/bench_auc_coverage.py``; per image or slice, ``clusters`` each unit's patient, with
    Obuchowski's patient-clustered design effect); in paper mode the papers' Wald interval (DeLong's, images as
    independent). Kept beside it: the Wald intervals (``auc_wald_ci_*`` per patient; ``auc_clustered_ci_*``,
    Obuchowski's, and ``auc_naive_ci_*`` per image) and the patient-level (cluster) bootstrap."""
    o = stats_options(opt)
    auc, lo, hi = stats.auc_ci(y, p)
    out = {"auc": auc, "n_patients": len(np.unique(clusters)) if clusters is not None else len(y)}
    if clusters is None:
        out.update(auc_wald_ci_low=lo, auc_wald_ci_high=hi)
    else:
        _, clo, chi = stats.auc_ci(y, p, clusters=clusters)
        out.update(auc_clustered_ci_low=clo, auc_clustered_ci_high=chi, auc_naive_ci_low=lo, auc_naive_ci_high=hi)
    if o["mode"] == "paper":
        shown, method = (lo, hi), "DeLong (Wald)" + (", images as independent" if clusters is not None else "")
    else:
        _, s_lo, s_hi = stats.auc_interval(y, p, clusters=clusters)
        shown, method = (s_lo, s_hi), "Newcombe score" + (", patient-clustered" if clusters is not None else "")
    out.update(auc_ci_low=shown[0], auc_ci_high=shown[1], ci_method=method)
    if bootstrap:  # off where only the interval is shown (the bootstrap costs n_boot AUCs)
        b = stats.cluster_bootstrap(y, p, clusters, n_boot=o["n_boot"], seed=seed)
        out.update(auc_boot_low=float(b["low"][0]), auc_boot_high=float(b["high"][0]))
    return out


def auc_ci_note(opt: dict | None, level: str = "Patient-level") -> str:
    """The footnote sentence naming the AUC interval a table shows."""
    if stats_options(opt)["mode"] == "paper":
        return (f"{level} AUC 95% CI: DeLong's Wald interval, as the paper (paper mode; it under-covers at these "
                "sizes: docs/statistics.md; the CSV adds the bootstrap CI).")
    return (f"{level} AUC 95% CI: Newcombe's score interval (chosen for its coverage at small samples, "
            "docs/statistics.md; finite and informative at AUC 1); the CSV adds DeLong's Wald interval "
            "(auc_wald_ci_*) and the bootstrap CI.")


def binary_summary(y: np.ndarray, p: np.ndarray, clusters: np.ndarray | None = None, opt: dict | None = None,
                   threshold: float = 0.5, bootstrap: bool = True) -> dict:
    """n, AUC (CIs as ``auc_cis``; ``bootstrap`` False: without the bootstrap's), accuracy, sensitivity
    (high) and specificity (low) at ``threshold``, each with its 95% CI (``<metric>_ci_low``/``_ci_high``:
    Wilson per patient, the patient-clustered Wilson with ``clusters``; ``proportion_ci_method``)."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    call = (p >= threshold).astype(int)
    m = proportions.binary_metrics(y, call, clusters, f1=False)
    out = {"n": len(y), "n_high": int(y.sum()),
           **{f"{k}{s}": m[f"{k}{s}"] for k in ("accuracy", "sensitivity", "specificity") for s in CI_SUFFIXES},
           "proportion_ci_method": m["proportion_ci_method"]}
    if len(np.unique(y)) == 2:
        out.update(auc_cis(y, p, clusters, opt=opt, bootstrap=bootstrap))
    else:
        out.update(auc=np.nan, auc_ci_low=np.nan, auc_ci_high=np.nan, auc_boot_low=np.nan, auc_boot_high=np.nan)
    return out


#: the within-patient permutation test's patterns and seed (fixed: a table's P values are the same every run)
PAIRED_N_PERM, PAIRED_SEED = 10000, 0


def paired_test(y: np.ndarray, a: np.ndarray, b: np.ndarray, clusters: np.ndarray | None = None,
                opt: dict | None = None) -> dict:
    """Two models' AUCs on the same units compared, two-sided (``stats.paired_auc_test``): the within-patient
    permutation of ranks (``clusters``: each unit's patient, whose units are swapped together; None: each unit a
    patient), or in paper mode DeLong's test as the papers did (Obuchowski's with ``clusters``). ``method``
    names the test in words, ``test`` as ``paired_auc_test`` does."""
    paper = stats_options(opt)["mode"] == "paper"
    r = stats.paired_auc_test(y, a, b, clusters, method="delong" if paper else "permutation",
                              n_perm=PAIRED_N_PERM, seed=PAIRED_SEED)
    if paper:
        words = "DeLong" + (", patient-clustered (Obuchowski)" if clusters is not None else "")
    elif r["exact"]:
        words = f"within-patient permutation of ranks (exact, 2^{int(r['n_perm']).bit_length() - 1} patterns)"
    else:
        words = f"within-patient permutation of ranks ({r['n_perm']:,} random patterns)"
    return {**r, "test": r["method"], "method": words}


def paired_test_note(opt: dict | None = None, what: str | None = "image") -> str:
    """The footnote sentence naming the test behind a table's AUC P values (``paired_test``); ``what``: the
    units clustered in patients (image, slice), None for a patient-level table."""
    if stats_options(opt)["mode"] == "paper":
        return ("The AUC test: DeLong's test of two correlated AUCs, as the papers (paper mode" +
                (f"; {what}s taken as independent" if what else "") + "); it is anti-conservative at these sizes "
                "(docs/statistics.md).")
    return ("The AUC test: a two-sided permutation test of the two models' ranks within patients (each "
            "patient's two ranks swapped with probability 1/2" + (f", all its {what}s together" if what else "") +
            f"; exact over all 2^patients swap patterns up to {PAIRED_N_PERM:,}, otherwise {PAIRED_N_PERM:,} "
            f"random ones, seed {PAIRED_SEED}), chosen for its size at small samples (docs/statistics.md); "
            "DeLong's test, which the papers used, is anti-conservative at these sizes.")


def compare(pred_a: pd.DataFrame, pred_b: pd.DataFrame, opt: dict | None = None) -> dict[str, dict]:
    """Two models on the same test units, per level (``paired_test``: the within-patient permutation test, at
    image level a patient's images swapped together; in paper mode DeLong's, images as independent). Each
    level's dict: ``p_value``, ``auc_a``, ``auc_b``, ``difference``, ``n`` and ``method`` (the test in words)."""
    o = stats_options(opt)
    out = {}
    la, lb = levels(pred_a), levels(pred_b)
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
        r = paired_test(ya[ia], pa[ia], pb[ib], cl, o)
        if level == "image" and cl is None:
            r["method"] += ", images as independent"
        out[level] = {**r, "n": len(common)}
    return out


#: the multiplicity rule (docs/statistics.md): a table declares one family of hypotheses; the same comparison at
#: image and at patient level, or in another seed, repeats a hypothesis rather than adding one, so a family is
#: adjusted within each level and seed (``by``), never pooled over them
FAMILY_RULE = ("levels and seeds of one comparison are one hypothesis: the family is adjusted within each level and "
               "seed, not pooled over them")


def adjust_columns(t: pd.DataFrame, cols: list[str], opt: dict | None = None, by: list[str] | None = None) -> None:
    """One family spread over several columns (e.g. McNemar on sensitivity, on specificity, and the AUC test, per
    row): every non-missing P value of ``cols`` adjusted together within each group of ``by`` (the level and
    seed, ``FAMILY_RULE``), written back as ``<col>_<method>``."""
    cols = [c for c in cols if c in t]
    by = [b for b in (by or []) if b in t]
    groups = [idx for _, idx in t.groupby(by, sort=False, dropna=False).groups.items()] if by and len(t) else [t.index]
    for m in stats_options(opt)["adjust"]:
        adj = pd.DataFrame(np.nan, index=t.index, columns=cols)
        for idx in groups:
            flat = t.loc[idx, cols].to_numpy(float).ravel()
            adj.loc[idx, cols] = stats.adjust(flat, m).reshape(len(idx), len(cols)) if len(idx) else flat
        for c in cols:
            t[f"{c}_{m}"] = adj[c].to_numpy(float)


def family_note(t: pd.DataFrame, col: str | list[str], family: str, opt: dict | None = None,
                by: list[str] | None = None) -> str:
    """The footnote naming a table's family of tests (the P values in ``col``), its size (the largest group of
    ``by``, as ``adjust_columns`` adjusted it) and its adjustment."""
    cols = [col] if isinstance(col, str) else col
    by = [b for b in (by or []) if b in t]
    counts = t[[c for c in cols if c in t]].notna().sum(axis=1)
    k = int(counts.groupby([t[b] for b in by], dropna=False).sum().max()) if by and len(t) else int(counts.sum())
    names = " and ".join(ADJUST_NAMES[m] for m in stats_options(opt)["adjust"])
    within = (f" in each {' and '.join(by)} ({FAMILY_RULE})" if by else "")
    return (f"Multiplicity: the family is {family}, {k} test{'s' if k != 1 else ''}{within}; {names}-adjusted P "
            "values are given beside the raw ones (columns " + ", ".join(f"{c}_{m}" for c in cols for m in
                                                                       stats_options(opt)["adjust"]) + " in the CSV).")


def not_averaged(col: str) -> bool:
    """Interval bounds (``*_ci_low``, ``*_boot_high``, ...) and P values (any column with a ``p`` part:
    ``p_value``, ``auc_p``, ``auc_p_vs_reference_holm``, ``*_p_exact``, ...): they belong to one seed and are never
    averaged over seeds."""
    parts = col.split("_")
    return (len(parts) >= 2 and parts[-2] in ("ci", "boot") and parts[-1] in ("low", "high")) or "p" in parts


def _seed_groups(t: pd.DataFrame, keys: list[str], seed_col: str):
    """The seeds' rows of ``t`` (summary rows dropped), their point-estimate columns, and the groups of
    ``keys`` holding two or more seeds, grouped; None when no group has two seeds."""
    if t.empty or seed_col not in t:
        return None
    rows = t[~t[seed_col].astype(str).isin(SUMMARY_ROWS)]
    point = [c for c in rows.columns if c not in keys + [seed_col] and not not_averaged(c)
             and pd.api.types.is_numeric_dtype(rows[c])]
    n = rows.groupby(keys, sort=False, dropna=False)[seed_col].transform("nunique")
    if not (n >= 2).any():
        return None
    return rows, point, rows[n >= 2].groupby(keys, sort=False, dropna=False)


def seed_summary(t: pd.DataFrame, keys: list[str], seed_col: str = "seed") -> pd.DataFrame:
    """With two or more seeds: ``t`` (its seeds as text) plus, per ``keys`` group of two or more seeds, the
    rows ``seed`` = "mean", "sd", "min" and "max" of every point estimate over the seeds; their interval
    bounds, P values and text columns are left empty (``not_averaged``: an averaged bound or P value is no
    interval and no P value). With one seed, ``t`` unchanged."""
    found = _seed_groups(t, keys, seed_col)
    if found is None:
        return t
    _, point, g = found
    g = g[point]
    parts = [t.assign(**{seed_col: t[seed_col].astype(str)})]
    for name, stat in zip(SUMMARY_ROWS, (g.mean(), g.std(ddof=1), g.min(), g.max())):
        parts.append(stat.reset_index().assign(**{seed_col: name}))
    return pd.concat(parts, ignore_index=True).reindex(columns=t.columns)


def seed_view(t: pd.DataFrame, keys: list[str], seed_col: str = "seed") -> pd.DataFrame:
    """The rows a table's Markdown shows: each seed's, then per ``keys`` group of two or more seeds one
    summary row (``seed`` = "all k seeds") holding the seeds' mean of every point estimate and, beside it,
    ``<col>_sd``, ``<col>_min`` and ``<col>_max`` (which ``est_text``, ``ci_text`` and ``count_text`` show as
    "mean ± SD (range min–max)"); interval bounds and P values empty. ``t``: with or without
    ``seed_summary``'s rows. One seed: ``t`` unchanged."""
    found = _seed_groups(t, keys, seed_col)
    if found is None:
        return t
    rows, point, g = found
    mean = g[point].mean()
    extra = {f"{c}_{name}": stat[c] for name, stat in (("sd", g[point].std(ddof=1)), ("min", g[point].min()),
                                                         ("max", g[point].max())) for c in point}
    k = g[seed_col].nunique()
    summary = pd.concat([mean, pd.DataFrame(extra, index=mean.index)], axis=1).reset_index()
    summary[seed_col] = [f"all {int(v)} seeds" for v in k.to_numpy()]
    out = pd.concat([rows.assign(**{seed_col: rows[seed_col].astype(str)}), summary], ignore_index=True)
    return out.reindex(columns=list(t.columns) + list(extra))


def read_predictions(m: dict) -> pd.DataFrame:
    """A cell's prediction table (``predictions`` path, or ``dir``/predictions.tsv)."""
    path = m.get("predictions") or f"{m['dir']}/predictions.tsv"
    return read_table(path, dtype={"source": str})


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


def fmt(v: float) -> str:
    return "" if v != v else f"{v + 0.0:.3f}".replace("-0.000", "0.000")  # no "negative zero" after rounding


def _summary(r: dict | pd.Series, col: str) -> tuple[float, float, float] | None:
    """(SD, min, max) of ``col`` over the seeds in a ``seed_view`` summary row; None in any other row."""
    lo = r.get(f"{col}_min", np.nan)
    if lo is None or lo != lo:
        return None
    return r.get(f"{col}_sd", np.nan), lo, r.get(f"{col}_max", np.nan)


def est_text(r: dict | pd.Series, col: str, ci: bool = True) -> str:
    """One estimate as a table shows it: "0.800 (0.490–0.943)" with its 95% CI (``<col>_ci_low``/``_ci_high``,
    where the row has them and ``ci``), "0.800" without; in a seeds' summary row (``seed_view``) the seeds'
    "mean ± SD (range min–max)"; empty when missing."""
    v = r.get(col, np.nan)
    if v is None or v != v:
        return ""
    spread = _summary(r, col)
    if spread is not None:
        sd, lo, hi = spread
        return f"{fmt(v)} ± {fmt(sd)} (range {fmt(lo)}–{fmt(hi)})" if sd == sd else fmt(v)
    lo, hi = r.get(f"{col}_ci_low", np.nan), r.get(f"{col}_ci_high", np.nan)
    if ci and lo is not None and hi is not None and lo == lo and hi == hi:
        return f"{fmt(v)} ({fmt(lo)}–{fmt(hi)})"
    return fmt(v)


def ci_text(r: dict | pd.Series, prefix: str = "", metric: str = "auc") -> str:
    """``prefix`` + ``metric`` (default the AUC) with its 95% CI, as ``est_text``."""
    return est_text(r, f"{prefix}{metric}")


def count_text(r: dict | pd.Series, col: str = "n") -> str:
    """A count: the integer; in a seeds' summary row the one count of every seed, or its range."""
    v = r.get(col, np.nan)
    spread = _summary(r, col)
    if spread is not None:
        _, lo, hi = spread
        return f"{int(lo)}" if lo == hi else f"{int(lo)}–{int(hi)}"
    return "" if v is None or v != v else f"{int(v)}"


def seed_note(t: pd.DataFrame, seed_col: str = "seed") -> list[str]:
    """The footnote sentence on the seeds' summary rows, where ``t`` (a ``seed_summary`` table) has them."""
    if seed_col not in t or not t[seed_col].astype(str).isin(SUMMARY_ROWS).any():
        return []
    return ["Seeds: one row per seed, then per model a summary row ('all k seeds'; in the CSV the rows seed = mean, "
            "sd, min, max): each point estimate's mean ± SD over the seeds, with its range (min–max). Intervals and "
            "P values belong to one seed's test and are not averaged: they are left empty in the summary rows."]


def proportion_note(opt: dict | None = None, what: str | None = "image",
                    metrics: str = "accuracy, sensitivity and specificity", f1: bool = False) -> str:
    """The footnote sentence naming the proportions' 95% CI methods: Wilson per patient, the patient-clustered
    Wilson per ``what`` (image, slice; None: a patient-level table) and, with ``f1``, F1's Jaccard-Wilson interval."""
    text = f"95% CIs of {metrics}: Wilson score interval" + (" at patient level" if what else "") + "."
    if what:
        text += (f" At {what} level Wilson's interval on the patient-clustered effective sample size: {what}s / "
                 f"design effect, the design effect from the ratio-estimator (cluster-robust) variance of the "
                 f"proportion with a patient's {what}s clustered (Genders et al. 2012), in either statistics mode.")
    if f1:
        text += (" F1: " + (f"patient and {what} level alike, " if what else "") + "Wilson score interval of the "
                 "Jaccard index J = TP/(TP + FP + FN), mapped to F1 = 2J/(1 + J)"
                 + (f" (at {what} level on J's patient-clustered effective sample size)" if what else "")
                 + "; chosen over the patient bootstrap, which covered too rarely at small test sets "
                 "(docs/statistics.md, F1 intervals); f1_ci_method names it.")
    return text


def image_ci_note(opt: dict | None, what: str = "image") -> str:
    """The footnote sentence saying how image-level (or slice-level) AUC intervals were made."""
    n_boot = f"{stats_options(opt)['n_boot']:,}"
    if stats_options(opt)["clustered"]:
        return (f"At {what} level the AUC 95% CI is the score interval with a patient-clustered design effect "
                f"(Obuchowski 1997's variance over the naive one: a patient's {what}s are correlated); the CSV adds "
                f"Obuchowski's Wald CI (auc_clustered_ci_*), the patient-level bootstrap CI ({n_boot} resamples of "
                f"patients) and the naive DeLong CI (auc_naive_ci_*) that treats every {what} as independent.")
    return (f"Paper mode: at {what} level the AUC 95% CI is DeLong's with every {what} taken as independent, as in "
            f"the paper; it is too narrow, since a patient's {what}s are correlated (the CSV gives the "
            f"patient-clustered CI, auc_clustered_ci_*, and the patient-level bootstrap, {n_boot} resamples).")


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
