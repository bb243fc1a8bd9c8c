"""Patient-level splits, stratified by grade group (and centre): holdout (8:1:1, 7:3), k-fold, leave-one-centre-out.

Patients are shuffled within strata with a seeded generator, the strata are concatenated, and each
patient in turn is dealt to the set that is furthest behind its target share. That keeps every
stratum's proportions and the overall proportions within one patient of the target, deterministically.
Every split is checked: no patient is in two sets of a fold, and every eligible patient is used.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from ccgrade.errors import SplitError
from ccgrade.outputs import read_table, write_json, write_tsv


def _stratified_order(df: pd.DataFrame, by: list[str], rng: np.random.Generator) -> list[str]:
    cols = [c for c in by if c in df.columns and df[c].notna().all()]
    keys = df[cols].astype(str).agg("|".join, axis=1) if cols else pd.Series("all", index=df.index)
    order = []
    for key in sorted(keys.unique()):
        ids = sorted(df.loc[keys == key, "patient_id"])
        order += [ids[i] for i in rng.permutation(len(ids))]
    return order


def deal(order: list[str], shares: dict[str, float]) -> dict[str, list[str]]:
    """Deal patients in ``order`` to sets so each set's count tracks its share (largest deficit first)."""
    names = list(shares)
    w = np.array([shares[n] for n in names], float)
    w /= w.sum()
    counts = np.zeros(len(names))
    out: dict[str, list[str]] = {n: [] for n in names}
    for i, pid in enumerate(order):
        s = int(np.argmax(w * (i + 1) - counts))
        counts[s] += 1
        out[names[s]].append(pid)
    return {n: sorted(v) for n, v in out.items()}


def check_disjoint(folds: list[dict[str, list[str]]], eligible: set[str] | None = None) -> None:
    """Raise SplitError if a patient is in two sets of a fold, or an eligible patient is missing."""
    for f, fold in enumerate(folds):
        seen: dict[str, str] = {}
        for name, ids in fold.items():
            for pid in ids:
                if pid in seen:
                    raise SplitError(f"fold {f}: patient in both '{seen[pid]}' and '{name}'", patient=pid)
                seen[pid] = name
        if eligible is not None and set(seen) != eligible:
            missing = sorted(eligible - set(seen))
            raise SplitError(f"fold {f}: {len(missing)} eligible patients not assigned (e.g. {missing[:3]})")


def make_split(cohort: pd.DataFrame, scheme: dict, seed: int) -> list[dict[str, list[str]]]:
    """Folds (list of {set: patient IDs}) for one split scheme of the config."""
    rng = np.random.default_rng(scheme.get("seed", seed))
    by = scheme.get("stratify", ["grade_group", "centre"])
    kind = scheme["kind"]
    if kind == "holdout":
        folds = [deal(_stratified_order(cohort, by, rng), scheme["fractions"])]
    elif kind == "kfold":
        k = scheme["k"]
        if len(cohort) < k:
            raise SplitError(f"{k}-fold split needs at least {k} patients, cohort has {len(cohort)}")
        parts = deal(_stratified_order(cohort, by, rng), {f"f{i}": 1.0 for i in range(k)})
        folds = [{"train": sorted(p for j in range(k) if j != i for p in parts[f"f{j}"]), "test": parts[f"f{i}"]}
                 for i in range(k)]
    elif kind == "leave_one_centre_out":
        if "centre" not in cohort or cohort["centre"].isna().all():
            return []  # written as "not applicable" (no centres recorded)
        if cohort["centre"].isna().any():
            missing = sorted(cohort.loc[cohort["centre"].isna(), "patient_id"])[:5]
            raise SplitError(f"leave-one-centre-out needs a 'centre' for every patient (missing for {missing})")
        centres = sorted(cohort["centre"].astype(str).unique())
        folds = [{"train": sorted(cohort.loc[cohort["centre"].astype(str) != c, "patient_id"]),
                  "test": sorted(cohort.loc[cohort["centre"].astype(str) == c, "patient_id"]), "centre": c}
                 for c in centres] if len(centres) > 1 else []
    else:
        raise SplitError(f"unknown split kind {kind!r}")
    check_disjoint([{k: v for k, v in f.items() if k != "centre"} for f in folds], set(cohort["patient_id"]))
    return folds


def eligible_patients(cohort: pd.DataFrame, phase_tables: list[pd.DataFrame], require: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients whose required phases all passed ingest, and the excluded ones with reasons.

    A patient without any phase table (no images at all, e.g. a mask-only cohort) is excluded only when
    phases are required.
    """
    ph = pd.concat(phase_tables, ignore_index=True) if phase_tables else pd.DataFrame(columns=["patient_id", "phase", "status", "reason"])
    ph = ph.astype({"patient_id": str})
    ok = set(zip(ph.loc[ph["status"] == "ok", "patient_id"], ph.loc[ph["status"] == "ok", "phase"]))
    imaged = set(ph["patient_id"])
    rows = []
    for pid in cohort["patient_id"] if require else []:
        if pid not in imaged:
            rows.append({"patient_id": pid, "phase": ", ".join(require), "reason": "not in splits: no images"})
            continue
        bad = [p for p in require if (pid, p) not in ok]
        if bad:
            rows.append({"patient_id": pid, "phase": ", ".join(bad),
                         "reason": f"not in splits: required phase(s) {', '.join(bad)} excluded"})
    excl = pd.DataFrame(rows, columns=["patient_id", "phase", "reason"]).assign(file="", stage="splits")
    excl = excl[["patient_id", "phase", "file", "stage", "reason"]]
    return cohort[~cohort["patient_id"].isin(excl["patient_id"])].reset_index(drop=True), excl


def split_table(folds: list[dict], cohort: pd.DataFrame) -> pd.DataFrame:
    """Long table: patient_id, fold, set, grade_group, centre."""
    rows = [{"patient_id": p, "fold": i, "set": s} for i, f in enumerate(folds) for s, ids in f.items() if s != "centre" for p in ids]
    t = pd.DataFrame(rows, columns=["patient_id", "fold", "set"])
    extra = [c for c in ("grade_group", "centre") if c in cohort]
    return t.merge(cohort[["patient_id"] + extra], on="patient_id", how="left")


def main(argv: list[str] | None = None) -> None:
    from ccgrade.config.cohort import validate_cohort

    ap = argparse.ArgumentParser(description="Write one patient-level split scheme.")
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--config", required=True, help="JSON: {cohort, splits} sections and seed")
    ap.add_argument("--scheme", required=True)
    ap.add_argument("--phase-tables", nargs="*", default=[])
    ap.add_argument("--json", required=True)
    ap.add_argument("--tsv", required=True)
    a = ap.parse_args(argv)
    cfg = json.loads(a.config)
    cohort = validate_cohort(read_table(a.cohort), cfg, file=a.cohort,
                             check_paths=False)
    tables = [read_table(p, keep_default_na=False) for p in a.phase_tables]
    elig, excl = eligible_patients(cohort, tables, cfg["splits"]["require_phases"])
    scheme = cfg["splits"]["schemes"][a.scheme]
    folds = make_split(elig, scheme, cfg["seed"])
    write_json(a.json, {"scheme": a.scheme, "kind": scheme["kind"], "seed": scheme.get("seed", cfg["seed"]),
                        "n_patients": len(elig), "excluded": excl.to_dict("records"), "folds": folds,
                        "note": "" if folds else ("not applicable: the cohort has a single centre" if "centre" in elig
                                                  and elig["centre"].notna().any() else
                                                  "not applicable: no centre recorded")})
    write_tsv(a.tsv, split_table(folds, elig))
    for i, f in enumerate(folds):
        print(f"{a.scheme} fold {i}: " + ", ".join(f"{k}={len(v)}" for k, v in f.items() if k != "centre"))


if __name__ == "__main__":
    main()
