"""Sun et al.'s ROI settings compared (the ``rois`` table and its ROC figure).

The same network on each ROI setting (rectangular box, tumour only, box expanded 5 mm): patient-level
AUC, accuracy, sensitivity and specificity (each with its 95% CI: Wilson's for the proportions) on the
training and test patients and the test image-level AUC with its patient-clustered CI;
paired AUC tests (``tables.compare``: the within-patient permutation test, DeLong's in paper mode) against the
setting with the best validation AUC (or every pair when the split has no validation patients), with the family's
adjusted P values; patient-level ROC curves per set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccgrade.evaluate.tables import (adjust_columns, ADJUST_NAMES, auc_ci_note, binary_summary, choose_reference, ci_text, compare,
                                     count_text, est_text, family_note, fmt, levels, paired_test_note, proportion_note,
                                     read_predictions, roc_figure, seed_note, seed_summary, seed_view, stats_options)
from ccgrade.outputs import Outputs


def _sun_rows(preds: dict, o: dict) -> pd.DataFrame:
    """One row per (ROI setting, model, seed, set): patient-level summary plus the image-level AUC and its CI."""
    rows = []
    for (roi, arch, ph, sd), pr in preds.items():
        for set_name in ("train", "val", "test"):
            if pr.empty or not (pr["set"] == set_name).any():
                continue
            lv = levels(pr, set_name)
            y, p, _, _ = lv["patient"]
            row = {"roi": roi, "arch": arch, "phases": ph, "seed": sd, "set": set_name, **binary_summary(y, p, opt=o)}
            yi, pi, _, pid = lv["image"]
            img = binary_summary(yi, pi, pid, opt=o)
            row.update(image_n=img["n"], image_auc=img["auc"], image_auc_ci_low=img["auc_ci_low"],
                       image_auc_ci_high=img["auc_ci_high"])
            rows.append(row)
    return pd.DataFrame(rows)


SEED_KEYS = ["roi", "arch", "phases", "set"]  # a row's model and set: its seeds are summarised together
_SUN_COMPARISON_COLUMNS = ["arch", "phases", "seed", "roi_a", "roi_b", "reference", "chosen_on", "n",
                           "auc_a", "auc_b", "difference", "p_value", "method"]


def _sun_comparisons(preds: dict, t: pd.DataFrame, o: dict) -> pd.DataFrame:
    """The paired AUC comparisons of ROI settings per (model, seed): each against the reference, or every pair
    when there is none, with the family's adjusted P values."""
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
                              "p_value": c["p_value"], "method": c.get("method", "")})
    comp = pd.DataFrame(comp_rows, columns=_SUN_COMPARISON_COLUMNS)
    adjust_columns(comp, ["p_value"], o, by=["arch", "phases", "seed"])
    return comp


def _sun_with_references(t: pd.DataFrame, comp: pd.DataFrame, o: dict) -> pd.DataFrame:
    """The rows with each test row's AUC P (raw and adjusted) against its reference and the reference's
    name, summarised over seeds; an empty table is returned as it is."""
    if not len(t):
        return t
    t["reference_roi"] = ""
    t["auc_p_vs_reference"] = np.nan
    for m in o["adjust"]:
        t[f"auc_p_vs_reference_{m}"] = np.nan
    for _, c in comp[comp["reference"] != ""].iterrows():
        i = t.index[(t["set"] == "test") & (t["roi"] == c["roi_a"]) & (t["arch"] == c["arch"]) &
                    (t["phases"] == c["phases"]) & (t["seed"] == c["seed"])]
        t.loc[i, "auc_p_vs_reference"] = c["p_value"]
        for m in o["adjust"]:
            t.loc[i, f"auc_p_vs_reference_{m}"] = c[f"p_value_{m}"]
    for key, ref in {(r["arch"], r["phases"], r["seed"]): r["reference"] for _, r in comp.iterrows()}.items():
        t.loc[(t["arch"] == key[0]) & (t["phases"] == key[1]) & (t["seed"] == key[2]), "reference_roi"] = ref
    return seed_summary(t, SEED_KEYS)


def _sun_view(t: pd.DataFrame, o: dict) -> pd.DataFrame:
    """The ROI table as shown in Markdown (AUCs and metrics with their 95% CIs, P values; the seeds' summary
    rows as ``seed_view`` makes them)."""
    if not len(t):
        return t
    t = seed_view(t, SEED_KEYS)
    rows = [r for _, r in t.iterrows()]
    return pd.DataFrame({"ROI setting": t["roi"], "Model": t["arch"] + " " + t["phases"], "Seed": t["seed"],
                         "Set": t["set"], "n": [count_text(r) for r in rows],
                         "AUC (95% CI), patient": [ci_text(r) for r in rows],
                         **{f"{c.capitalize()} (95% CI)": [est_text(r, c) for r in rows]
                            for c in ("accuracy", "sensitivity", "specificity")},
                         "AUC (95% CI), image": [ci_text(r, "image_") for r in rows],
                         "AUC P vs reference": t["auc_p_vs_reference"].map(fmt),
                         **{f"P ({ADJUST_NAMES[m]})": t[f"auc_p_vs_reference_{m}"].map(fmt) for m in o["adjust"]}})


def _sun_footnotes(comp: pd.DataFrame, o: dict, t: pd.DataFrame | None = None) -> list[str]:
    """The ROI table's footnotes: levels and CIs, the reference's basis, the pairs compared and the family."""
    pairs_text = "; ".join(f"{a} vs {b}: P {fmt(p)}" + "".join(f", {ADJUST_NAMES[m]} {fmt(r[f'p_value_{m}'])}"
                                                             for m in o["adjust"])
                           for a, b, p, (_, r) in zip(comp["roi_a"], comp["roi_b"], comp["p_value"], comp.iterrows()))
    bases = sorted({b for b in comp["chosen_on"] if b})
    return ["Patient level: mean P(high) over a patient's crops; threshold 0.5.", auc_ci_note(o),
            "Image level (test): every crop one call, " + ("naive DeLong CI (paper mode)." if not o["clustered"] else
                                                           "the score interval, patient-clustered (Obuchowski's "
                                                           "design effect)."),
            proportion_note(o, None),
            "AUC P: each setting's test-set patient-level AUC against the reference setting's, on the same "
            "patients. Reference: " + ("; ".join(bases) if bases else "none") + "." +
            (" Selected post hoc on the test set (paper mode)." if o["selection"] == "test" else
             " Never chosen on the test patients."), paired_test_note(o, None),
            ("Pairs compared: " + pairs_text + "." if len(comp) else "No pair of settings could be compared."),
            family_note(comp, "p_value", "the ROI settings' comparisons of one model", o,
                        by=["arch", "phases", "seed"])] + (
        seed_note(t) if t is not None else [])


def _sun_curves(preds: dict) -> list:
    """Patient-level ROC curves of every ROI setting and model, one panel per set (train, test)."""
    return [(f"ROC, {set_name} set, patient level",
             [(f"{r} ({a} {p_}, s{sd})", *levels(pr, set_name)["patient"][:2])
              for (r, a, p_, sd), pr in preds.items() if not pr.empty and (pr["set"] == set_name).any()])
            for set_name in ("train", "test")]


def sun_tables(models: list[dict], out: Outputs, opt: dict | None = None) -> dict[str, pd.DataFrame]:
    """Sun et al.'s ROI settings compared: the same network on each ROI setting (rectangular box, tumour
    only, box expanded 5 mm; config ``roi: [box, tumor, box5mm]``), patient-level AUC (mean P(high) over a
    patient's crops) on the training and test patients, and the test image-level AUC with its
    patient-clustered CI; paired AUC tests (``tables.compare``) against the setting with the best validation
    AUC, or every pair when the split has no validation patients, with the family's adjusted P values; ROC
    curves per set."""
    o = stats_options(opt)
    preds = {(m["roi"], m["arch"], m["phases"], m["seed"]): read_predictions(m) for m in models}
    t = _sun_rows(preds, o)
    comp = _sun_comparisons(preds, t, o)
    t = _sun_with_references(t, comp, o)
    out.table("rois", t, title="Sun et al.: the ROI settings compared (the same network and phases on each)",
              markdown=_sun_view(t, o), footnotes=_sun_footnotes(comp, o, t))
    roc_figure(_sun_curves(preds), out["roc"], pdf=out["roc_pdf"])
    return {"rois": t, "comparisons": comp}
