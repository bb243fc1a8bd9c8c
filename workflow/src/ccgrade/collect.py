"""Cohort-level tables gathered from per-patient artefacts: series/phase review table, exclusions, crop manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .outputs import write_table, write_tsv

SERIES_COLUMNS = ["patient_id", "series_number", "series_description", "n_files", "phase", "method", "status",
                  "reason", "evidence", "spacing", "contrast_agent", "transfer_syntax", "series_uid"]


def concat_tsv(paths: list[str]) -> pd.DataFrame:
    """Concatenate TSV files (keeping empty strings as such)."""
    frames = [pd.read_csv(p, sep="\t", keep_default_na=False, dtype=str) for p in paths]
    frames = [f for f in frames if len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def exclusions(ingest: list[str], manifests: list[str], splits: list[str]) -> pd.DataFrame:
    """Every exclusion of the run, one row each, naming patient, phase, ROI, file, stage and reason."""
    rows = concat_tsv(ingest)
    man = concat_tsv(manifests)
    if len(man):
        man = man[man["status"] != "ok"]
        rows = pd.concat([rows, pd.DataFrame({"patient_id": man["patient_id"], "phase": man["phase"], "roi": man["roi"],
                                              "file": man["file"], "stage": "crops", "reason": man["reason"]})],
                         ignore_index=True)
    import json
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
    e = sub.add_parser("exclusions")
    e.add_argument("--ingest", nargs="*", default=[])
    e.add_argument("--manifests", nargs="*", default=[])
    e.add_argument("--splits", nargs="*", default=[])
    e.add_argument("--out", required=True, help="output stem (CSV + Markdown)")
    a = ap.parse_args(argv)
    if a.cmd == "series":
        series = concat_tsv(a.series)
        write_tsv(a.out_series, series[[c for c in SERIES_COLUMNS if c in series]])
        write_tsv(a.out_phases, concat_tsv(a.phases))
        print(f"{len(series)} series")
    elif a.cmd == "manifest":
        man = concat_tsv(a.manifests)
        write_tsv(a.out, man)
        print(man.groupby(["roi", "status"]).size().to_string())
    else:
        ex = exclusions(a.ingest, a.manifests, a.splits)
        write_table(a.out, ex, title=f"Exclusions ({len(ex)} rows)",
                    footnotes=["Each row is one patient x phase x ROI (or file) left out, with the reason; "
                               "nothing is dropped silently."])
        print(f"{len(ex)} exclusion rows")


if __name__ == "__main__":
    main()
