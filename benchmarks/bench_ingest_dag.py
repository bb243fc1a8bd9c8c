"""Benchmark (prints figures; not a test): ingest vs bare pydicom reads, and `snakemake -n` times.

Usage: .venv/bin/python benchmarks/bench_ingest_dag.py [--patients 300]
Run it after the demo study has completed (it times the no-op dry run of the completed demo).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "src"))

from ccgrade.ingest import demo, index as ingest_index, patient as ingest, volumes as ingest_volumes  # noqa: E402


def bare_read(files: list[Path]) -> float:
    t = time.perf_counter()
    for f in files:
        pydicom.dcmread(f).pixel_array  # noqa: B018
    return time.perf_counter() - t


def our_ingest(folder: Path, cfg: dict) -> float:
    t = time.perf_counter()
    res = ingest.index_patient(folder, "BENCH", cfg["ingest"], ["up", "cmp", "np", "ep"])
    for r in res["phases"].itertuples():
        if r.status == "ok":
            ingest_volumes.read_volume(folder, res["slices"][res["slices"]["series_uid"] == r.series_uid], "BENCH", r.phase)
    return time.perf_counter() - t


def dry_run(workdir: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n",
                    "--cores", "8"], check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--matrix", type=int, default=None, help="pixels per side of the benchmark patient (demo: 256; "
                                                                 "clinical CT: 512)")
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo.generate_patient(0, dict(cfg["demo"], matrix=a.matrix or cfg["demo"]["matrix"]), root)
        folder = root / "dicom" / "DEMO001"
        files = ingest_index.find_dicom_files(folder)
        bare_read(files)  # warm the page cache for both
        bs, os_ = [], []
        for _ in range(7):  # interleaved rounds, best of each: robust to other load on the machine
            bs.append(bare_read(files))
            os_.append(our_ingest(folder, cfg))
        b, o = min(bs), min(os_)
        print(f"ingest: {len(files)} slices ({a.matrix or cfg['demo']['matrix']}^2): ours {len(files) / o:.0f} slices/s, "
              f"bare pydicom dcmread().pixel_array {len(files) / b:.0f} slices/s, ratio {o / b:.2f}x (target <= 1.5x)")
    if (REPO / "results" / "crops" / "manifest.tsv").exists():
        print(f"snakemake -n on the completed demo ({cfg['demo']['n_patients']} patients): {dry_run(REPO):.1f} s (target < 5 s)")
    else:
        print("snakemake -n on the completed demo: skipped (run the demo study first)")
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        big = dict(cfg)
        big["demo"] = dict(cfg["demo"], n_patients=a.patients)
        (wd / "config.yaml").write_text(yaml.safe_dump(big))
        print(f"snakemake -n on a {a.patients}-patient x {len(cfg['phases'])}-phase cohort sheet (nothing run yet): "
              f"{dry_run(wd):.1f} s (target < 15 s)")


if __name__ == "__main__":
    main()
