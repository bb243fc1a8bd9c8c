"""Benchmark (prints figures; not a test): the ingest index at cohort scale, headers only.

Usage: .venv/bin/python benchmarks/bench_ingest_scale.py [--patients 1000] [--slices 24]

Writes N synthetic patients x 4 phases of header-complete CT DICOM with 8 x 8 pixels (the index reads
headers, never pixels; one demo patient's headers, each copy with its own patient ID and UIDs), then
times, in one process, what the DAG's index jobs do for every patient (`ingest.index_patient`: header
index, geometry checks, phase assignment) and the gather stage over all of them (`collect series`),
printing seconds per patient, files per second and the peak RSS. The DAG runs one index job per
patient, so its memory is one patient's; this process holds them all and is the upper bound.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "src"))

from ccgrade.ingest import demo, patient as ingest  # noqa: E402
from ccgrade.outputs import write_tsv  # noqa: E402


def write_cohort(root: Path, n: int, slices: int, cfg: dict) -> int:
    tiny = dict(cfg["demo"], matrix=32, n_slices=slices)
    demo.generate_patient(0, tiny, root / "template")
    templates = {s.name: [pydicom.dcmread(f) for f in sorted(s.iterdir())]
                 for s in sorted((root / "template/dicom/DEMO001").iterdir())}
    px = np.zeros((8, 8), np.uint16).tobytes()
    count = 0
    root_uid = "1.2.826.0.1.3680043.10.999"  # short UIDs (<= 64 characters) unique per patient, series, slice
    for i in range(n):
        pid = f"P{i:05d}"
        study = f"{root_uid}.{i + 1}"
        for s_idx, (series, dss) in enumerate(templates.items()):
            uid = f"{study}.{s_idx + 1}"
            out = root / "dicom" / pid / series
            out.mkdir(parents=True)
            for k, ds in enumerate(dss):
                ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = pid, study, uid
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{uid}.{k + 1}"
                ds.Rows = ds.Columns = 8
                ds.PixelData = px
                ds.save_as(out / f"IM{k + 1:04d}")
                count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--slices", type=int, default=24)
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        n_files = write_cohort(root, a.patients, a.slices, cfg)
        print(f"wrote {a.patients} patients x 4 phases x {a.slices} slices = {n_files} DICOM files "
              f"in {time.perf_counter() - t:.0f} s")
        series, phases = [], []
        t = time.perf_counter()
        for pdir in sorted((root / "dicom").iterdir()):
            res = ingest.index_patient(pdir, pdir.name, cfg["ingest"], ["up", "cmp", "np", "ep"])
            assert (res["phases"]["status"] == "ok").all(), res["phases"]
            for name, tab in (("series", res["series"]), ("phases", res["phases"])):
                f = root / "ingest" / pdir.name / f"{name}.tsv"
                write_tsv(f, tab)
                (series if name == "series" else phases).append(str(f))
        index_s = time.perf_counter() - t
        from ccgrade.preprocess import collect

        t = time.perf_counter()
        collect.main(["series", "--series", *series, "--phases", *phases, "--out-series", str(root / "series.tsv"),
                      "--out-phases", str(root / "phase_status.tsv")])
        gather_s = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"index: {index_s:.0f} s for {a.patients} patients ({index_s / a.patients * 1000:.0f} ms per patient, "
              f"{n_files / index_s:.0f} files/s); gather (series + phase tables): {gather_s:.1f} s; "
              f"peak RSS of this process {rss:.0f} MB")


if __name__ == "__main__":
    main()
