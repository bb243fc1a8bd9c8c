"""Benchmark: the privacy scan over a finished study's results/ (docs/privacy.md).

Prints the needles collected from the cohort's headers and paths (and how long that took), then the scan's
files, bytes searched, numeric bytes counted, hits and wall time, and the rate over the bytes searched.

    .venv/bin/python benchmarks/bench_privacy_scan.py --study /path/to/study   # a folder with results/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "src"))

from ccgrade.report import phiscan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, help="a study folder holding results/ and resources/private/")
    a = ap.parse_args()
    study = Path(a.study)
    sources = json.loads((study / "resources/private/sources.json").read_text())
    root = sources.get("root") or ""
    if root and not Path(root).is_absolute():  # paths in the sources are relative to the study folder
        sources["root"] = str(study / root)
    for rec in sources["patients"].values():
        for k in ("dicom_dir",):
            if rec.get(k) and not Path(rec[k]).is_absolute():
                rec[k] = str(study / rec[k])
        rec["files"] = [f if Path(f).is_absolute() else str(study / f) for f in rec.get("files", [])]
    t = time.perf_counter()
    needles = phiscan.collect_needles(sources, phiscan.vocabulary({}))
    t_needles = time.perf_counter() - t
    print(f"needles: {len(needles)} values from {len(sources['patients'])} patients in {t_needles:.1f} s")
    t = time.perf_counter()
    hits, s = phiscan.scan(study / "results", needles)
    dt = time.perf_counter() - t
    print(f"scan: {s['files']} files, {s['bytes_searched'] / 1e6:.1f} MB searched, "
          f"{s['numeric_bytes_counted'] / 1e6:.0f} MB numeric counted, {s['hits']} hits, {dt:.1f} s "
          f"({s['bytes_searched'] / 1e6 / dt:.1f} MB/s searched)")
    if len(hits):
        print(hits.groupby(["what"]).size().to_string())


if __name__ == "__main__":
    main()
