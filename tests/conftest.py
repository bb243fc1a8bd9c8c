"""Shared fixtures: the repository's config, a tiny demo cohort, and the location of ../shared/data."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PHASES = ["up", "cmp", "np", "ep"]

TINY_DEMO = {"n_patients": 6, "seed": 3, "matrix": 96, "fov_mm": 300, "n_slices": 14,
             "slice_thickness_mm": 5.0, "noise_hu": 8, "high_grade_fraction": 0.4, "centres": {"A": 0.5, "B": 0.5}}


def repo_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def merged(base: dict, over: dict) -> dict:
    """Snakemake's --configfile semantics: mappings merge recursively, everything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_config() -> dict:
    """The demo config shrunk for tests: 6 patients, 96 px, 14 slices, 32-px crops, one epoch, 200 bootstrap draws."""
    cfg = copy.deepcopy(repo_config())
    cfg["demo"] = dict(TINY_DEMO)
    for roi in cfg["rois"].values():
        roi["size"] = 16 if roi["kind"] == "cube" else 32
    cfg["rois"]["centroid"]["box_px"] = 32
    cfg["splits"]["schemes"]["dai"]["k"] = 3
    cfg["figures"]["montage_patients"] = 1
    cfg["predict"]["demo_patients"] = 2
    # the external centre: 3 patients, the shift kept (noise, thinner slices over the same length, vendor names)
    cfg["external"]["demo"].update(n_patients=3, n_slices=23, slice_thickness_mm=3.0, seed=1)  # seed 1: low, high, high
    for name in ("demo", "demo_li", "demo_dai"):
        cfg["training"]["presets"][name].update(epochs=1, batch=8)
    cfg["statistics"]["n_boot"] = 200  # the tables' bootstrap CIs: the same code, fewer resamples
    return cfg


def reduced_config() -> dict:
    """The tiny demo cut to what exercises every kind of job once: ingest, one ROI's crops, splits,
    baseline tables, the geometry and montage, and one (GPU) training cell with its paper tables."""
    cfg = tiny_config()
    cfg["rois"] = {"box": cfg["rois"]["box"]}
    cfg["figures"]["montage_roi"] = "box"
    cfg["radiomics"]["enabled"] = False
    cfg["fusion"]["enabled"] = False
    cfg["external"]["demo"]["n_patients"] = 0
    cui = cfg["training"]["studies"]["cui"]
    cui["models"] = {"resnet34": ["cmp"]}
    cfg["training"]["studies"] = {"cui": cui}
    return cfg


#: the files that take minutes (a Snakemake DAG each), heaviest first: collected first, so that the two workers
#: (``--dist loadfile``) start them first and finish together rather than one running test_workflow.py alone at
#: the end (.ci/run's wall time; the rest keep their order)
HEAVY_FIRST = ("test_workflow.py", "test_slurm.py", "test_byo_workflow.py", "test_one_phase_cohort.py",
               "test_determinism.py", "test_interruptions.py", "test_fusion.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def cfg() -> dict:
    return tiny_config()


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """Three tiny demo patients written once per test session (DICOM + annotations)."""
    from ccgrade.ingest import demo

    root = tmp_path_factory.mktemp("demo")
    for i in range(3):
        demo.generate_patient(i, TINY_DEMO, root)
    return root


@pytest.fixture
def patient_copy(demo_root, tmp_path) -> Path:
    """A writable copy of DEMO001's DICOM folder, for tests that damage files."""
    dst = tmp_path / "DEMO001"
    shutil.copytree(demo_root / "dicom" / "DEMO001", dst)
    return dst


def shared_data(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} (../shared/data is absent on this machine)")
    return p


def ingest_to(folder: Path, pid: str, workdir: Path, volumes: str = "vol", images: dict | None = None) -> tuple[dict, Path]:
    """Run the two ingest stages as the DAG does (index -> TSVs -> convert); return the index and the volume folder."""
    from ccgrade.ingest import patient as ingest

    cfg = repo_config()
    res = ingest.index_patient(folder, pid, cfg["ingest"], PHASES, images=images)
    workdir.mkdir(parents=True, exist_ok=True)
    for n in ("slices", "phases"):
        res[n].to_csv(workdir / f"{n}.tsv", sep="\t", index=False)
    ingest.convert_patient(folder, pid, workdir, workdir / volumes, images)
    return res, workdir / volumes


#: one privacy key for the runs a test compares byte for byte (each study makes its own otherwise, and its
#: pseudonymous UIDs in results/ingest differ from another study's by design)
TEST_SECRET = "9f1c2b7e4d0a86f35c1e7b29d4a0f6e8c3b57d1a9e2f40c6b8d3e1f7a5c092b4"  # (not a repeated unit)


def share_secret(workdir: Path) -> None:
    key = workdir / "resources" / "private" / "secret.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(TEST_SECRET + "\n")


def run_reduced_study(workdir: Path, *extra: str) -> None:
    """The reduced study (``reduced_config``) in ``workdir`` on this machine, 2 cores, one GPU slot."""
    import os
    import subprocess
    import sys

    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(reduced_config()))
    share_secret(workdir)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
           "--resources", "gpu=1", "-q", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="session")
def reduced_local_run(tmp_path_factory) -> Path:
    """One completed local run of the reduced study, shared by the determinism and SLURM tests."""
    wd = tmp_path_factory.mktemp("reduced") / "local"
    run_reduced_study(wd)
    return wd


def reexport_series(src: Path, dst: Path, *, drop_first: int = 0, drop_last: int = 0, **overrides) -> list[str]:
    """Write a DICOM series again as a PACS re-export does: every SOP Instance UID new (the series and frame of
    reference kept unless ``overrides`` set them), optionally without its first/last slices along z, other
    elements set from ``overrides`` (e.g. SeriesInstanceUID=...). Returns the new SOP UIDs in z order."""
    import pydicom
    from pydicom.uid import generate_uid

    files = sorted((f for f in src.iterdir() if f.is_file()),
                   key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    keep = files[drop_first:len(files) - drop_last]
    dst.mkdir(parents=True, exist_ok=True)
    uids = []
    for n, f in enumerate(keep):
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = n + 1
        for k, v in overrides.items():
            setattr(ds, k, v)
        ds.save_as(dst / f"EXP{n:04d}.dcm")
        uids.append(str(ds.SOPInstanceUID))
    return uids


def one_phase_rtstruct_cohort(root: Path, n: int = 8, ids: list[str] | None = None) -> Path:
    """A cohort as a hospital exports it for a one-phase RTSTRUCT study: per patient a folder with the plain
    (unenhanced) CT re-exported with new SOP UIDs and without its tumour-free end slices, and an RTSTRUCT drawn
    on the original series (so it references the old SOP UIDs); numeric IDs with leading zeros; a sheet with
    patient_id, grade, dicom_dir and rtstruct_up only (no clinical columns). Returns the sheet's path."""
    import numpy as np
    import pandas as pd
    import SimpleITK as sitk

    from ccgrade.annotations import readers as ann, rtstruct
    from ccgrade.ingest import demo
    from ccgrade.outputs import read_table

    ids = ids or [f"{i + 1:03d}" for i in range(n)]
    spec = dict(TINY_DEMO, n_patients=len(ids))
    src = root / "_generated"
    truth = demo.draw_cohort(spec, 3, src)
    rows = []
    for i, pid in enumerate(ids):
        demo.generate_patient(i, spec, src)
        dpid = demo.patient_id(i)
        res, vol = ingest_to(src / "dicom" / dpid, dpid, src / "ingest" / dpid)
        img = sitk.ReadImage(str(vol / "up.nii.gz"))
        slices = read_table(vol / "up.slices.tsv")
        st = res["phases"].set_index("phase").loc["up"]
        first = res["slices"][res["slices"]["series_uid"] == st["series_uid"]].iloc[0]
        mask = ann.read_mask(src / "annotations" / dpid / "up" / "mask.nii.gz", img, 1, patient=dpid, phase="up")
        pdir = root / "export" / f"patient_{pid}"
        rtstruct.write_rtstruct(pdir / "RTSTRUCT.dcm", mask, img, slices, series_uid=st["series_uid"],
                                study_uid=first.study_uid, frame_uid=first.frame_uid, patient_id=dpid, roi_name="GTV")
        rows_with = np.flatnonzero(mask.reshape(len(mask), -1).any(1))
        reexport_series(src / "dicom" / dpid / "S02", pdir / "CT", drop_first=min(1, int(rows_with[0])),
                        drop_last=min(1, len(mask) - 1 - int(rows_with[-1])))
        rows.append({"patient_id": pid, "grade": int(truth.iloc[i]["grade"]), "dicom_dir": f"export/patient_{pid}/CT",
                     "rtstruct_up": f"export/patient_{pid}/RTSTRUCT.dcm"})
    sheet = root / "cohort.tsv"
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return sheet


def registry_outputs(kind: str, tables, figures, study: str | None = None):
    """A study kind's files as the registry names them (ccgrade.evaluate.studies), with results/tables and
    results/figures moved to ``tables`` and ``figures``: what a rule would pass its builder."""
    from ccgrade.evaluate import studies
    from ccgrade.outputs import Outputs

    moved = {}
    for role, p in studies.outputs(kind, study or kind).items():
        base = Path(tables) if p.startswith(studies.TABLES) else Path(figures)
        moved[role] = str(base / Path(p).name)
    return Outputs(moved)
