"""Li et al.'s tables: Tables 2-3, the strong-vs-weak comparison, and Figures 4-5 and A1-A2.

Table 2: the "strong" 3D network (one cube per patient) per phase, with the AUC test's P against a reference
phase chosen without the test patients (on validation patients; a split without them has no reference
and every pair of phases is compared instead, in the comparisons table). Table 3: the "weak" 2D network
per slice and per patient by Li's rule (more than three consecutive slices with one call, linked by box
IoU > 0.3). Strong vs weak per phase by McNemar on sensitivity (high-grade patients) and specificity
(low-grade patients), and the AUC test (``tables.paired_test``: the within-patient permutation test, DeLong's
in paper mode as Li et al.). Every accuracy, sensitivity and specificity carries its 95% CI (Wilson per
patient, patient-clustered per slice: ``ccgrade.proportions``). Figures 4-5 (ROC) and A1-A2 (confusion matrices).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccgrade import proportions, stats
from ccgrade.evaluate.tables import (adjust_columns, ADJUST_NAMES, auc_ci_note, binary_summary, choose_reference, CI_SUFFIXES,
                                     ci_text, compare, confusion_figure, count_text, est_text, family_note, fmt,
                                     image_ci_note, levels, paired_test, paired_test_note, proportion_note,
                                     read_predictions, roc_figure, seed_note, seed_summary, seed_view, stats_options)
from ccgrade.outputs import Outputs


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def li_patient_call(slices: np.ndarray, boxes: np.ndarray, calls: np.ndarray, prob: np.ndarray,
                    min_run: int = 4, iou: float = 0.3) -> tuple[int, str]:
    """Li et al.'s rule: a grade needs more than three consecutive slices with the same call, where
    consecutive means adjacent slice indices whose boxes overlap with IoU > 0.3. High wins when both
    grades have such a run; with neither, the mean probability decides. Returns (call, basis)."""
    order = np.argsort(slices)
    s, b, c = slices[order], boxes[order], calls[order]
    best = {0: 0, 1: 0}
    run = 1
    for i in range(len(s)):
        if i and s[i] == s[i - 1] + 1 and c[i] == c[i - 1] and box_iou(b[i], b[i - 1]) > iou:
            run += 1
        else:
            run = 1
        best[int(c[i])] = max(best[int(c[i])], run)
    if best[1] >= min_run:
        return 1, f"{best[1]} consecutive high-grade slices"
    if best[0] >= min_run:
        return 0, f"{best[0]} consecutive low-grade slices"
    return int(np.mean(prob) >= 0.5), "no run of more than three slices: mean probability"


def li_patient_calls(pred: pd.DataFrame, set_name: str) -> pd.DataFrame:
    """Per patient of one set: label, mean P(high), and the call by Li's consecutive-slice rule."""
    rows = []
    for pid, g in pred[pred["set"] == set_name].groupby("patient_id", sort=True):
        prob = g["prob_high"].to_numpy(float)
        call, basis = li_patient_call(g["slice_index"].to_numpy(int), g[["x1", "y1", "x2", "y2"]].to_numpy(float),
                                      (prob >= 0.5).astype(int), prob)
        rows.append({"patient_id": pid, "label": int(g["label"].iloc[0]), "prob_mean": float(prob.mean()),
                     "call_li": call, "basis": basis})
    return pd.DataFrame(rows, columns=["patient_id", "label", "prob_mean", "call_li", "basis"])


def li_comparisons(t2: pd.DataFrame, preds: dict, strong: str, opt: dict | None = None) -> pd.DataFrame:
    """Li Table 2's tests: per seed, each phase against the reference phase (chosen by ``choose_reference``,
    never on test patients unless paper mode) or, without a reference, every pair of phases; the AUC test
    (``compare``: permutation within patients, DeLong in paper mode; ``method`` names it, ``z`` is DeLong's only)
    on the test patients both models saw, with the family's adjusted P values."""
    o = stats_options(opt)
    rows = []
    for sd in sorted(set(t2["seed"])):
        test = t2[(t2["set"] == "test") & (t2["seed"] == sd) & t2["auc"].notna()]
        ref, basis = choose_reference(t2, sd, o["selection"])
        phases = list(dict.fromkeys(test["phases"]))
        pairs = ([(ph, ref) for ph in phases if ph != ref] if ref else
                 [(a, b) for i, a in enumerate(phases) for b in phases[i + 1:]])
        for a, b in pairs:
            c = compare(preds[strong, a, sd], preds[strong, b, sd], opt)["patient"]
            rows.append({"seed": sd, "phase_a": a, "phase_b": b, "reference": ref, "chosen_on": basis,
                         "n": c.get("n"), "auc_a": c.get("auc_a", np.nan), "auc_b": c.get("auc_b", np.nan),
                         "difference": c.get("difference", np.nan), "z": c.get("z", np.nan), "p_value": c["p_value"],
                         "method": c.get("method", "")})
    out = pd.DataFrame(rows, columns=["seed", "phase_a", "phase_b", "reference", "chosen_on", "n", "auc_a", "auc_b",
                                      "difference", "z", "p_value", "method"])
    adjust_columns(out, ["p_value"], opt, by=["seed"])
    return out


def li_tables(models: list[dict], out: Outputs, strong: str = "resnet3d18",
              weak: str = "resnet18", opt: dict | None = None) -> dict[str, pd.DataFrame]:
    """Li Table 2 (strong, per phase, the AUC test's P vs a reference phase chosen without test patients, or
    all pairs), its comparisons table, Table 3 (weak, slice and patient level), the strong-vs-weak
    McNemar/AUC-test table, and Figures 4-5 / A1-A2 (ROC, confusion)."""
    o = stats_options(opt)
    preds = {(m["arch"], m["phases"], m["seed"]): read_predictions(m) for m in models}
    t2 = _li_table2(models, preds, out, strong, o)
    t3, calls = _li_table3(models, preds, out, weak, o)
    mc = _li_strong_vs_weak(models, preds, calls, out, strong, weak, o)
    _li_figures(models, preds, calls, out, strong, weak)
    return {"table2": t2, "table3": t3, "mcnemar": mc}


def _li_table2(models: list[dict], preds: dict, out: Outputs, strong: str, o: dict) -> pd.DataFrame:
    """Li Table 2 (the 3D model per phase, the AUC test's P vs a reference phase) and its comparisons table."""
    # one cube (= one image) per patient
    rows2 = []
    for m in models:
        if m["arch"] != strong:
            continue
        pr = preds[strong, m["phases"], m["seed"]]
        for set_name in ("train", "val", "test"):
            if set_name == "val" and (pr.empty or not (pr["set"] == "val").any()):
                continue
            y, p, _, _ = levels(pr, set_name)["patient"] if not pr.empty else (np.zeros(0), np.zeros(0), [], [])
            rows2.append({"phases": m["phases"], "seed": m["seed"], "set": set_name, **binary_summary(y, p, opt=o)})
    t2 = pd.DataFrame(rows2)
    comp = li_comparisons(t2, preds, strong, o) if len(t2) else li_comparisons(
        pd.DataFrame(columns=["set", "seed", "auc", "phases"]), preds, strong, o)
    if len(t2):
        t2["reference_phase"], t2["chosen_on"] = "", ""
        t2["auc_p_vs_reference"] = np.nan
        for m in o["adjust"]:
            t2[f"auc_p_vs_reference_{m}"] = np.nan
        for sd in sorted(set(t2["seed"])):
            ref, basis = choose_reference(t2, sd, o["selection"])
            sel = t2["seed"] == sd
            t2.loc[sel, "reference_phase"], t2.loc[sel, "chosen_on"] = ref, basis
            if not ref:
                continue
            for _, c in comp[(comp["seed"] == sd) & (comp["phase_b"] == ref)].iterrows():
                i = t2.index[sel & (t2["set"] == "test") & (t2["phases"] == c["phase_a"])]
                t2.loc[i, "auc_p_vs_reference"] = c["p_value"]
                for m in o["adjust"]:
                    t2.loc[i, f"auc_p_vs_reference_{m}"] = c[f"p_value_{m}"]
    t2 = seed_summary(t2, ["phases", "set"]) if len(t2) else t2
    w2 = seed_view(t2, ["phases", "set"]) if len(t2) else t2
    r2 = [r for _, r in w2.iterrows()]
    v2 = pd.DataFrame({"Phase": w2["phases"].str.upper(), "Seed": w2["seed"], "Set": w2["set"],
                       "n": [count_text(r) for r in r2], "AUC (95% CI)": [ci_text(r) for r in r2],
                       **{f"{c.capitalize()} (95% CI)": [est_text(r, c) for r in r2]
                          for c in ("accuracy", "sensitivity", "specificity")},
                       "Reference": w2["reference_phase"].fillna("").str.upper(),
                       "AUC P vs reference": w2["auc_p_vs_reference"].map(fmt),
                       **{f"P ({ADJUST_NAMES[m]})": w2[f"auc_p_vs_reference_{m}"].map(fmt) for m in o["adjust"]}}
                      ) if len(t2) else t2
    bases = sorted({b for b in comp["chosen_on"]} | ({b for b in t2["chosen_on"].dropna() if b} if len(t2) else set()))
    out.table("t2", t2, title=f"Li Table 2: strongly supervised {strong} per phase", markdown=v2,
                footnotes=["One 32³ tumour cube per patient; threshold 0.5 on P(high); sensitivity for high grade.",
                           auc_ci_note(o, "The"), proportion_note(o, None),
                           "AUC P: each phase's test-set AUC against the reference phase's, on the same patients. "
                           "Reference: " + ("; ".join(bases) if bases else "none") + "." +
                           (" Selected post hoc on the test set, as Li et al. did: these P values lean towards "
                            "significance." if o["selection"] == "test" else
                            " Never chosen on the test patients; without a reference see li_comparisons."),
                           paired_test_note(o, None),
                           family_note(comp, "p_value", "the phases' comparisons (li_comparisons)", o, by=["seed"])]
                + seed_note(t2))
    vc = comp.assign(**{c: comp[c].map(fmt) for c in ["auc_a", "auc_b", "difference", "p_value"] +
                        [f"p_value_{m}" for m in o["adjust"]]})
    out.table("comparisons", comp, title=f"Li Table 2's tests: {strong} phases compared (AUC, test set)",
                markdown=vc, footnotes=["Each row: a paired test of two phases' test-set AUCs on the patients both "
                                        "models saw (two-sided; method names it, z is DeLong's, paper mode only); "
                                        "difference = AUC a - AUC b.", paired_test_note(o, None),
                                        family_note(comp, "p_value", "the phases' comparisons", o, by=["seed"])])
    return t2


def _li_table3(models: list[dict], preds: dict, out: Outputs, weak: str, o: dict) -> tuple[pd.DataFrame, dict]:
    """Li Table 3: the 2D model per slice and per patient (Li's rule, and the mean probability); the calls."""
    rows3, calls = [], {}
    for m in models:
        if m["arch"] != weak:
            continue
        pr = preds[weak, m["phases"], m["seed"]]
        for set_name in ("train", "test"):
            if pr.empty:
                continue
            y, p, _, pid = levels(pr, set_name)["image"]
            pc = li_patient_calls(pr, set_name)
            calls[m["phases"], m["seed"], set_name] = pc
            sl = binary_summary(y, p, pid, opt=o)
            pat = binary_summary(pc["label"].to_numpy(), pc["call_li"].to_numpy(float))  # calls as 0/1 scores
            mean = binary_summary(pc["label"].to_numpy(), pc["prob_mean"].to_numpy())
            rows3.append({"phases": m["phases"], "seed": m["seed"], "set": set_name,
                          **{f"slice_{k}": v for k, v in sl.items()},
                          "li_n": pat["n"], **{f"li_{k}{s}": pat[f"{k}{s}"] for k in ("accuracy", "sensitivity",
                                                                                        "specificity")
                                               for s in CI_SUFFIXES},
                          **{f"mean_{k}": v for k, v in mean.items()}})
    t3 = seed_summary(pd.DataFrame(rows3), ["phases", "set"])
    w3 = seed_view(t3, ["phases", "set"])
    r3 = [r for _, r in w3.iterrows()]
    metrics = ("accuracy", "sensitivity", "specificity")
    v3 = pd.DataFrame({"Phase": w3["phases"].str.upper(), "Seed": w3["seed"], "Set": w3["set"],
                       "Slices": [count_text(r, "slice_n") for r in r3],
                       "Slice AUC (95% CI)": [ci_text(r, "slice_") for r in r3],
                       **{f"Slice {c} (95% CI)": [est_text(r, f"slice_{c}") for r in r3] for c in metrics},
                       "Patients": [count_text(r, "li_n") for r in r3],
                       **{f">3 slices {c} (95% CI)": [est_text(r, f"li_{c}") for r in r3] for c in metrics},
                       "Patient AUC, mean P (95% CI)": [ci_text(r, "mean_") for r in r3]}) if len(t3) else t3
    out.table("t3", t3, title=f"Li Table 3: weakly supervised {weak} per phase", markdown=v3,
                footnotes=["Single slice: every tumour slice is one call. >3 slices: Li's patient rule, a grade needs "
                           "more than three consecutive slices with that call, adjacent slices linked by tumour-box "
                           "IoU > 0.3 (high wins if both; neither: mean probability). Threshold 0.5.",
                           image_ci_note(o, "slice"), proportion_note(o, "slice"),
                           "The last column ranks patients by their mean slice probability (our addition)."]
                + seed_note(t3))
    return t3, calls


def _li_strong_vs_weak(models: list[dict], preds: dict, calls: dict, out: Outputs, strong: str, weak: str,
                       o: dict) -> pd.DataFrame:
    """Strong vs weak, per phase and seed, on the test patients both models saw: McNemar and the AUC test."""
    rows = []
    for m in models:
        if m["arch"] != strong or (weak, m["phases"], m["seed"]) not in preds:
            continue
        ps = preds[strong, m["phases"], m["seed"]]
        pc = calls.get((m["phases"], m["seed"], "test"))
        if ps.empty or pc is None or pc.empty:
            continue
        ys, p_s, ids, _ = levels(ps)["patient"]
        st = pd.DataFrame({"label": ys, "prob_strong": p_s}, index=ids)
        j = st.join(pc.set_index("patient_id")[["call_li", "prob_mean"]], how="inner")
        call_s = (j["prob_strong"] >= 0.5).astype(int).to_numpy()
        y = j["label"].to_numpy(int)
        rec = {"phases": m["phases"], "seed": m["seed"], "n": len(j)}
        for name, cls in (("sensitivity", 1), ("specificity", 0)):
            sel = y == cls
            right_s, right_w = call_s[sel] == cls, j["call_li"].to_numpy()[sel] == cls
            mc = stats.mcnemar(right_s, right_w)
            rec[f"{name}_n"] = int(sel.sum())
            for model, right in (("strong", right_s), ("weak", right_w)):  # each with its Wilson 95% CI
                est, lo, hi = proportions.proportion_ci(right)
                rec.update({f"{name}_{model}": est, f"{name}_{model}_ci_low": lo, f"{name}_{model}_ci_high": hi})
            rec.update({f"{name}_p_exact": mc["p_exact"], f"{name}_p_chi2_cc": mc["p_chi2_cc"]})
        if len(np.unique(y)) == 2:
            d = paired_test(y, j["prob_strong"].to_numpy(), j["prob_mean"].to_numpy(), opt=o)
            rec.update(auc_strong=d["auc_a"], auc_weak=d["auc_b"], auc_p=d["p_value"], auc_method=d["method"])
        rows.append(rec)
    mc = pd.DataFrame(rows)
    fam = ["sensitivity_p_exact", "specificity_p_exact", "auc_p"]
    adjust_columns(mc, fam, o, by=["seed"])
    h = o["adjust"][0]
    vm = pd.DataFrame({"Phase": mc["phases"].str.upper(), "Seed": mc["seed"], "Patients": mc["n"],
                       "Sensitivity strong / weak (95% CI)": _pair(mc, "sensitivity"),
                       "McNemar P (exact)": mc["sensitivity_p_exact"].map(fmt),
                       f"{ADJUST_NAMES[h]}": mc[f"sensitivity_p_exact_{h}"].map(fmt),
                       "Specificity strong / weak (95% CI)": _pair(mc, "specificity"),
                       "McNemar P (exact) ": mc["specificity_p_exact"].map(fmt),
                       f"{ADJUST_NAMES[h]} ": mc[f"specificity_p_exact_{h}"].map(fmt),
                       "AUC P": mc.get("auc_p", pd.Series(np.nan, index=mc.index)).map(fmt),
                       f"{ADJUST_NAMES[h]}  ": mc.get(f"auc_p_{h}", pd.Series(np.nan, index=mc.index)).map(fmt)}) \
        if len(mc) else mc
    out.table("mcnemar", mc, title="Li: strongly (3D) vs weakly (2D, >3-slice rule) supervised, test set",
                markdown=vm, footnotes=["McNemar on paired correct/incorrect calls: sensitivity among the high-grade, "
                                        "specificity among the low-grade test patients (exact binomial; the CSV also "
                                        "gives chi-square with continuity correction).",
                                        proportion_note(o, None, "sensitivity and specificity"),
                                        "AUC P: the 3D P(high) against the 2D mean slice probability per patient.",
                                        paired_test_note(o, None),
                                        family_note(mc, fam, "every test of this table (McNemar on sensitivity and "
                                                    "on specificity, and the AUC test, per phase)", o, by=["seed"])])
    return mc


def _pair(mc: pd.DataFrame, name: str) -> list[str]:
    """Strong and weak ``name`` (sensitivity, specificity) side by side, each with its 95% CI."""
    return [f"{est_text(r, f'{name}_strong')} / {est_text(r, f'{name}_weak')}"
            if r[f"{name}_strong"] == r[f"{name}_strong"] else "" for _, r in mc.iterrows()]


def _li_figures(models, preds, calls, out: Outputs, strong: str, weak: str) -> None:
    roc_figure([(f"{arch} ({what}), {set_name}ing set",
                 [(f"{m['phases'].upper()} s{m['seed']}", *levels(preds[arch, m["phases"], m["seed"]], set_name)[level][:2])
                  for m in models if m["arch"] == arch and not preds[arch, m["phases"], m["seed"]].empty])
                for arch, level, what in ((strong, "patient", "3D, per patient"), (weak, "image", "2D, per slice"))
                for set_name in ("train", "test")], out["roc"], pdf=out["roc_pdf"])
    panels = []
    for m in models:
        pr = preds[m["arch"], m["phases"], m["seed"]]
        if pr.empty:
            panels.append((f"{m['arch']} {m['phases'].upper()}", None, None))
        elif m["arch"] == weak and (m["phases"], m["seed"], "test") in calls:
            pc = calls[m["phases"], m["seed"], "test"]
            panels.append((f"{weak} {m['phases'].upper()}\n>3-slice rule", pc["label"].to_numpy(), pc["call_li"].to_numpy()))
        else:
            y, p, _, _ = levels(pr)["patient"]
            panels.append((f"{m['arch']} {m['phases'].upper()}\nper patient", y, (p >= 0.5).astype(int)))
    confusion_figure(panels, out["confusion"], pdf=out["confusion_pdf"])
