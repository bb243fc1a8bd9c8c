"""Cohort-level tables gathered from per-patient artefacts: series/phase review table, exclusions, crop manifest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ccgrade.outputs import read_table, write_table, write_tsv

SERIES_COLUMNS = ["patient_id", "series_number", "series_description", "n_files", "phase", "method", "status",
                  "reason", "choice", "choice_reason", "notes", "evidence", "spacing", "slice_thickness", "kernel",
                  "contrast_agent", "transfer_syntax", "series_uid"]


def concat_tsv(paths: list[str]) -> pd.DataFrame:
    """Concatenate TSV files (keeping empty strings as such)."""
    frames = [pd.read_csv(p, sep="\t", keep_default_na=False, dtype=str) for p in paths]
    frames = [f for f in frames if len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def exclusions(ingest: list[str], manifests: list[str], splits: list[str], cohort: list[str] | None = None) -> pd.DataFrame:
    """Every exclusion of the run, one row each, naming patient, phase, ROI, file, stage and reason."""
    rows = concat_tsv(list(cohort or []) + list(ingest))
    man = concat_tsv(manifests)
    if len(man):
        man = man[man["status"] != "ok"]
        rows = pd.concat([rows, pd.DataFrame({"patient_id": man["patient_id"], "phase": man["phase"], "roi": man["roi"],
                                              "file": man["file"], "stage": "crops", "reason": man["reason"]})],
                         ignore_index=True)
    for p in splits:
        doc = json.loads(Path(p).read_text())
        for e in doc.get("excluded", []):
            rows = pd.concat([rows, pd.DataFrame([{**e, "stage": f"splits:{doc['scheme']}"}])], ignore_index=True)
    cols = ["patient_id", "stage", "phase", "roi", "file", "reason"]
    for c in cols:
        if c not in rows:
            rows[c] = ""
    return rows[cols].fillna("").sort_values(["patient_id", "stage", "phase", "roi"], kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Gather per-patient tables into cohort tables.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("series")
    s.add_argument("--series", nargs="+", required=True)
    s.add_argument("--phases", nargs="+", required=True)
    s.add_argument("--out-series", required=True)
    s.add_argument("--out-phases", required=True)
    m = sub.add_parser("manifest")
    m.add_argument("--manifests", nargs="+", required=True)
    m.add_argument("--out", required=True)
    c = sub.add_parser("cohort", help="the analysis cohort: sheet without paths + mask geometry")
    c.add_argument("--sheet", required=True)
    c.add_argument("--config", required=True, help="JSON: {cohort} section")
    c.add_argument("--geometry", nargs="*", default=[])
    c.add_argument("--out", required=True)
    g = sub.add_parser("geometry", help="the tumour geometry table (CSV + Markdown)")
    g.add_argument("--tables", nargs="+", required=True)
    g.add_argument("--out", required=True, help="the CSV to write")
    g.add_argument("--md", help="the Markdown to write (default: beside the CSV)")
    e = sub.add_parser("exclusions")
    e.add_argument("--ingest", nargs="*", default=[])
    e.add_argument("--manifests", nargs="*", default=[])
    e.add_argument("--splits", nargs="*", default=[])
    e.add_argument("--cohort", nargs="*", default=[], help="cases left out of the cohort by an adapter (TSV)")
    e.add_argument("--out", required=True, help="the CSV to write")
    e.add_argument("--md", help="the Markdown to write (default: beside the CSV)")
    a = ap.parse_args(argv)
    if a.cmd == "cohort":
        from ccgrade.config.cohort import analysis_cohort, validate_cohort

        sep = "," if a.sheet.lower().endswith(".csv") else "\t"
        sheet = validate_cohort(read_table(a.sheet, sep=sep), json.loads(a.config),
                                file=a.sheet, check_paths=False)
        geo = pd.concat([read_table(p) for p in a.geometry],
                        ignore_index=True) if a.geometry else None
        out = analysis_cohort(sheet, geo, json.loads(a.config).get("columns"))
        write_tsv(a.out, out)
        print(f"{len(out)} patients: " + ", ".join(f"{k} {v}" for k, v in out["grade_group"].value_counts().items()))
    elif a.cmd == "geometry":
        from ccgrade.preprocess.geometry import geometry_table

        t = concat_tsv(a.tables)
        df, kw = geometry_table(t)
        write_table(a.out, df, md=a.md, **kw)
        print(f"{len(t)} patients")
    elif a.cmd == "series":
        series = concat_tsv(a.series)
        write_tsv(a.out_series, series[[c for c in SERIES_COLUMNS if c in series]])
        write_tsv(a.out_phases, concat_tsv(a.phases))
        print(f"{len(series)} series")
    elif a.cmd == "manifest":
        man = concat_tsv(a.manifests)
        write_tsv(a.out, man)
        print(man.groupby(["roi", "status"]).size().to_string())
    else:
        ex = exclusions(a.ingest, a.manifests, a.splits, a.cohort)
        write_table(a.out, ex, md=a.md, title=f"Exclusions ({len(ex)} rows)",
                    footnotes=["Each row is one patient x phase x ROI (or file) left out, with the reason; "
                               "nothing is dropped silently."])
        print(f"{len(ex)} exclusion rows")


if __name__ == "__main__":
    main()
