"""Benchmark (prints figures; not a test): pyradiomics per patient, serially vs in parallel by the DAG.

Usage: .venv/bin/python benchmarks/bench_radiomics.py [--patients 12] [--cores 2]
Run it after the demo study has completed (it reads the demo's ingested volumes and annotations). In
the same run it times (1) one Python process extracting the patients one after another and (2)
Snakemake re-running the `radiomics_patient` jobs of the same patients with --cores N (separate
processes, as the DAG runs them), and prints features per second and seconds per patient for both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "src"))

from ccgrade.fusion import radiomics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    rad = cfg["radiomics"]
    roi = cfg["rois"][rad["roi"]]
    vols = sorted((REPO / "results/volumes").glob("DEMO*"))[: a.patients]
    if not vols:
        sys.exit("run the demo study first (results/volumes is empty)")
    pids = [v.name for v in vols]
    t = time.perf_counter()
    n_feat = 0
    for v in vols:
        src = {"mask": str(REPO / f"resources/demo_cohort/annotations/{v.name}/{rad['phase']}/mask.nii.gz")}
        row = radiomics.patient_features(v.name, rad["phase"], REPO / rad["params"], volumes=v, roi=roi, sources=src)
        n_feat = len(radiomics.feature_columns(row))
    serial = time.perf_counter() - t
    targets = [f"results/radiomics/patients/{p}.tsv" for p in pids]
    t = time.perf_counter()
    # targets first: --forcerun and --quiet take lists and would swallow them
    subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", str(a.cores), "--forcerun",
                    "radiomics_patient", "--quiet", "all"], cwd=REPO, check=True)
    dag = time.perf_counter() - t
    print(f"pyradiomics {radiomics.version()}, {n_feat} features per patient, {len(pids)} demo patients "
          f"(params {rad['params']}: {json.dumps(yaml.safe_load((REPO / rad['params']).read_text())['imageType'])})")
    print(f"  serial, one process:     {serial / len(pids):.2f} s/patient, {n_feat * len(pids) / serial:.0f} features/s")
    print(f"  DAG, --cores {a.cores}:          {dag / len(pids):.2f} s/patient, {n_feat * len(pids) / dag:.0f} features/s "
          f"(incl. Snakemake and interpreter start-up per job)")
    print(f"  speed-up {serial / dag:.2f}x")


if __name__ == "__main__":
    main()
