"""Benchmark (prints figures; not a test): the DAG at cohort scale, and the no-op rerun of the demo.

Usage: .venv/bin/python benchmarks/bench_dag_scale.py [--patients 1000] [--demo-dir DIR]

1. Writes a synthetic cohort sheet of N patients x 4 phases (``cohort.source: sheet``; each patient a tiny
   NIfTI volume per phase and matching annotation files in the conventional layout) and the full study
   matrix of config.yaml (Cui, Li, Dai, Sun, radiomics, fusion), then times ``snakemake -n`` on it: once
   cold (the pre-flight surveys every header) and then with the survey cached: the job count, the seconds
   (best of --rounds) and the peak RSS of the Snakemake process. Targets (issue 6): 1,000 patients under
   30 s and 1 GB.
2. With --demo-dir (a completed demo study, e.g. the repository itself after README command 1): the
   seconds of a no-op rerun, `snakemake --cores 8 --resources gpu=1`, which must print "Nothing to be
   done" (target < 5 s).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PHASES = ["up", "cmp", "np", "ep"]


def write_cohort(root: Path, n: int) -> Path:
    """The sheet and its files: per patient and phase a tiny NIfTI volume (image_<phase>) with a matching mask,
    labelme and polygon files in the conventional layout, so that the pre-flight survey passes (it reads every
    header) and a dry run plans the whole matrix; no job is run."""
    import json

    import numpy as np
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.zeros((4, 8, 8), np.int16))
    img.SetSpacing((1.0, 1.0, 5.0))
    tumour = np.zeros((4, 8, 8), np.uint8)
    tumour[1:3, 2:6, 2:6] = 1
    m = sitk.GetImageFromArray(tumour)
    m.CopyInformation(img)
    cols = [f"image_{ph}" for ph in PHASES]
    rows = ["\t".join(["patient_id", "grade", "annotation_dir", *cols, "centre", "age", "sex", "side", "bmi",
                        "hypertension", "diabetes", "tumor_size_cm"])]
    for i in range(n):
        pid = f"P{i:05d}"
        (root / "img" / pid).mkdir(parents=True)
        for ph in PHASES:
            sitk.WriteImage(img, str(root / "img" / pid / f"{ph}.nii.gz"))
            a = root / "ann" / pid / ph
            (a / "labelme").mkdir(parents=True)
            (a / "labelme" / "slice_010.json").write_text(json.dumps({"shapes": [], "imagePath": "x"}))
            sitk.WriteImage(m, str(a / "mask.nii.gz"))
            (a / "polygons.json").write_text("{}")
        rows.append("\t".join([pid, str(1 + i % 4), f"ann/{pid}", *[f"img/{pid}/{ph}.nii.gz" for ph in PHASES],
                               "AB"[i % 2], str(40 + i % 40), "FM"[i % 2], ["left", "right"][(i // 2) % 2],
                               str(20 + i % 15), "no" if i % 3 else "yes", "no" if i % 5 else "yes", str(2 + i % 9)]))
    sheet = root / "cohort.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def timed(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    """Seconds, peak RSS (MB) of the child, and its output: measured in a fresh wrapper process."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, r.returncode); "
               "sys.stdout.write(r.stdout + r.stderr)")
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, capture_output=True, text=True, check=True)
    head, _, out = r.stdout.partition("\n")
    secs, rss, rc = head.split()
    if int(rc):
        sys.exit(f"snakemake failed:\n{out[-3000:]}")
    return float(secs), int(rss), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--demo-dir", type=Path, help="a completed demo study (its no-op rerun is timed)")
    a = ap.parse_args()
    smk = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        t = time.perf_counter()
        sheet = write_cohort(wd, a.patients)
        cfg = yaml.safe_load((REPO / "config.yaml").read_text())
        cfg["cohort"].update(source="sheet", sheet=str(sheet))
        (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
        print(f"cohort sheet: {a.patients} patients x {len(PHASES)} phases, placeholder files written in "
              f"{time.perf_counter() - t:.1f} s")
        # the first dry run surveys every patient's headers (the pre-flight); later ones read its cache
        cold, rss, out = timed(smk + ["-d", str(wd), "-n", "--cores", "8", "--quiet", "rules"], wd)
        print(f"first snakemake -n (pre-flight survey of {a.patients} patients' headers, 8 processes): {cold:.1f} s, "
              f"peak RSS {rss} MB")
        best = None
        for _ in range(a.rounds):
            s, r, out = timed(smk + ["-d", str(wd), "-n", "--cores", "8", "--quiet", "rules"], wd)
            best, rss = (s if best is None else min(best, s)), max(rss, r)
        total = re.search(r"^total\s+(\d+)", out, re.M)
        print(f"snakemake -n: {total.group(1) if total else '?'} jobs in {best:.1f} s (best of {a.rounds}), "
              f"peak RSS {rss} MB (targets: < 30 s, < 1 GB at 1,000 patients)")
        stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))  # (a dry run prints the table twice)
        print("  jobs per rule: " + ", ".join(f"{k} {v}" for k, v in stats.items() if k != "total"))
    if a.demo_dir:
        # the demo's own Snakefile (a clone's): another checkout's code is other inputs, and would rerun everything
        own = a.demo_dir / "Snakefile"
        cmd = [sys.executable, "-m", "snakemake", "-s", str(own if own.exists() else REPO / "Snakefile")]
        s, r, out = timed(cmd + ["-d", str(a.demo_dir), "-n", "--cores", "8", "--resources", "gpu=1"], a.demo_dir)
        if "Nothing to be done" in out:
            s, r, out = timed(cmd + ["-d", str(a.demo_dir), "--cores", "8", "--resources", "gpu=1"], a.demo_dir)
        ok = "Nothing to be done" in out
        print(f"no-op rerun of the completed demo in {a.demo_dir}: {s:.1f} s, peak RSS {r} MB "
              f"({'Nothing to be done' if ok else 'NOT a no-op: ' + out[-500:]}) (target < 5 s)")


if __name__ == "__main__":
    main()
