"""DICOM ingest, phase assignment: each series' contrast phase from its description words, else the
bolus-to-acquisition delay, else a phase map; the reconstruction used when a phase has several."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from ccgrade.ingest.index import int_text


#: one row per patient x configured phase: usable or excluded, and why
PHASE_COLUMNS = ["patient_id", "phase", "status", "series_uid", "n_slices", "spacing", "reason"]


def _tokens(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def phase_from_description(desc: str, keywords: dict[str, list[str]]) -> tuple[str | None, str]:
    """The phase whose keyword (whole words, case-insensitive) occurs in a series description."""
    toks = _tokens(desc)
    hits = {ph: kw for ph, kws in keywords.items() for kw in kws if _tokens(kw) in toks}
    if len(hits) == 1:
        ph, kw = next(iter(hits.items()))
        return ph, f"description {desc!r} matched {kw!r}"
    if len(hits) > 1:
        return None, f"description {desc!r} matched several phases {sorted(hits)}"
    return None, ""


def assign_phases(series: pd.DataFrame, cfg_ingest: dict, mapping: pd.DataFrame | None = None,
                  key=None) -> pd.DataFrame:
    """Give every candidate series a phase by mapping file, description, contrast agent or bolus timing.

    A phase given to a series by the phase map is that series' alone: other series that the heuristics
    would give the same phase are set aside (method ``superseded``), so mapping the wanted series suffices.
    The map may name a series by its UID or by its pseudonym (results/ingest/series.tsv under ``key``).
    """
    series = series.copy()
    series["phase"], series["method"], series["evidence"] = "", "", ""
    mapped = {}
    if mapping is not None and len(mapping):
        pid = series["patient_id"].iloc[0] if len(series) else None
        m = mapping[(mapping["patient_id"].astype(str) == str(pid)) | (mapping["patient_id"].astype(str) == "*")]
        mapped = dict(zip(m["series_instance_uid"].astype(str), m["phase"].astype(str)))
    for i, s in series.iterrows():
        if s["status"] == "ignored":
            continue
        ev = []
        hit = mapped.get(s["series_uid"]) or (mapped.get(key.uid(s["series_uid"])) if key is not None else None)
        if hit:
            series.loc[i, ["phase", "method", "evidence"]] = [hit, "mapping", "phase map file"]
            continue
        ph, why = phase_from_description(s["series_description"], cfg_ingest["keywords"])
        delay = s["acq_s"] - s["bolus_s"]
        timed = None
        if s["contrast_agent"] and np.isfinite(delay):
            for p, (lo, hi) in cfg_ingest["bolus_delay_s"].items():
                if lo <= delay < hi:
                    timed = p
            ev.append(f"bolus delay {delay:.0f} s" + (f" -> {timed}" if timed else ""))
        ev.append(f"contrast agent {s['contrast_agent']!r}" if s["contrast_agent"] else "no contrast agent")
        if ph:
            method = "description"
            if (timed and timed != ph) or (ph == "up" and s["contrast_agent"]):
                ev.append(f"CONFLICT: header timing/agent suggests {timed or 'enhanced'}")
        elif not s["contrast_agent"] and not np.isfinite(s["bolus_s"]):
            ph, method = "up", "contrast-agent"
        elif timed:
            ph, method = timed, "bolus-timing"
        else:
            method = "unassigned"
        series.loc[i, ["phase", "method", "evidence"]] = [ph or "", method, "; ".join(x for x in [why] + ev if x)]
    # a mapped phase belongs to the mapped series only
    by_map = series[series["method"] == "mapping"]
    for ph, uids in by_map.groupby("phase")["series_number"]:
        other = (series["phase"] == ph) & (series["method"] != "mapping")
        nums = ", ".join(f"#{int_text(float(n)) if n == n else '?'}" for n in uids)
        series.loc[other, "evidence"] = series.loc[other, "evidence"] + f"; phase {ph} given to series {nums} by the phase map"
        series.loc[other, ["phase", "method"]] = ["", "superseded"]
    # fallback: enhanced series still without a phase, ordered by acquisition time, fill the free phases
    free = [p for p in ("cmp", "np", "ep") if p in cfg_ingest["bolus_delay_s"] and p not in set(series["phase"])]
    todo = series[(series["method"] == "unassigned") & (series["contrast_agent"] != "")].sort_values("acq_s")
    if len(todo) and len(todo) <= len(free):
        for (i, _), p in zip(todo.iterrows(), free):
            series.loc[i, ["phase", "method"]] = [p, "acquisition-order"]
            series.loc[i, "evidence"] += f"; enhanced series ordered by acquisition time -> {p}"
    return series


def _avoided_kernel(kernel: str, description: str, avoid: list[str]) -> str:
    """The first avoided kernel word found in a series' ConvolutionKernel or description ('' if none)."""
    for word in avoid:
        w = word.lower()
        if w in kernel.lower() or _tokens(w) in _tokens(description):
            return word
    return ""


def choose_reconstruction(good: pd.DataFrame, pref: dict) -> tuple[int | None, dict[int, str]]:
    """Of several series of one phase, the one the preference picks (index into ``good``, None when it
    cannot decide) and a reason per series: avoided kernels lose first, then the slice thickness furthest
    from ``thickness_mm``."""
    avoid = list(pref.get("avoid_kernels") or [])
    target = pref.get("thickness_mm")
    keys, facts = {}, {}
    for i, s in good.iterrows():
        thick = s["slice_thickness"] if np.isfinite(s["slice_thickness"]) else s["spacing"]
        bad = _avoided_kernel(str(s["kernel"]), str(s["series_description"]), avoid)
        dist = abs(float(thick) - float(target)) if target is not None and np.isfinite(thick) else 0.0
        keys[i] = (bool(bad), round(dist, 3))
        facts[i] = (f"{thick:.1f} mm" if np.isfinite(thick) else "thickness unknown") + \
                   (f", kernel {s['kernel']!r}" if s["kernel"] else "") + (f" (avoided: {bad})" if bad else "")
    best = min(keys.values())
    winners = [i for i, k in keys.items() if k == best]
    if len(winners) != 1:
        return None, facts
    return winners[0], facts


def choose_phases(series: pd.DataFrame, phases: list[str], patient: str,
                  pref: dict | None = None) -> tuple[pd.DataFrame, list[dict], pd.DataFrame]:
    """One row per configured phase (ok or excluded, with the reason), the exclusion records, and the series
    table with ``choice`` (chosen / alternative) and its reason where a phase had several reconstructions."""
    rows, excl = [], []
    series = series.copy()
    series["choice"], series["choice_reason"] = "", ""
    for ph in phases:
        cand = series[series["phase"] == ph] if len(series) else series
        good, bad = cand[cand["status"] == "candidate"], cand[cand["status"] == "bad"]
        pick = good.index[0] if len(good) == 1 else None
        if len(good) > 1:
            pick, facts = choose_reconstruction(good, pref or {})
            if pick is not None:
                pref_txt = ", ".join(f"{k} {v}" for k, v in (pref or {}).items())
                series.loc[pick, ["choice", "choice_reason"]] = ["chosen", f"{facts[pick]}; by ingest.reconstruction ({pref_txt})"]
                for i in good.index.drop(pick):
                    series.loc[i, ["choice", "choice_reason"]] = [
                        "alternative", f"{facts[i]}; series #{int_text(float(series.loc[pick, 'series_number']))} "
                                       f"{series.loc[pick, 'series_description']!r} preferred ({facts[pick]})"]
        if pick is not None:
            s = series.loc[pick]
            rows.append({"patient_id": patient, "phase": ph, "status": "ok", "series_uid": s["series_uid"],
                         "n_slices": int(s["n_files"]), "spacing": s["spacing"], "reason": ""})
            continue
        if len(good) > 1:
            reason = (f"ambiguous: {len(good)} series look like this phase and ingest.reconstruction cannot tell them "
                      "apart (" + ", ".join(f"#{s.series_number} {s.series_description!r}: {facts[s.Index]}"
                                            for s in good.itertuples())
                      + "); map the wanted series in ingest.phase_map")
            uid, file = ";".join(good["series_uid"]), ";".join(good["first_file"])
        elif len(bad):
            reason, uid, file = "; ".join(bad["reason"]), ";".join(bad["series_uid"]), ";".join(bad["problem_file"])
        else:
            reason, uid, file = "missing phase: no series was assigned to it", "", ""
        rows.append({"patient_id": patient, "phase": ph, "status": "excluded", "series_uid": uid,
                     "n_slices": 0, "spacing": np.nan, "reason": reason})
        excl.append({"patient_id": patient, "phase": ph, "file": file, "stage": "ingest", "reason": reason})
    return pd.DataFrame(rows, columns=PHASE_COLUMNS), excl, series
