"""Integration (slow, real data): a cohort made of files other tools wrote, through the starter config and the
front half of the DAG. Three patients, three layouts: a NIfTI CT with a TotalSegmentator label mask
(label 1, the spleen, stands in for a tumour: its side is known to be left), the rt-utils phantom CT with
its RTSTRUCT (ROI "ROI-1", which the default pattern does not match), and a real Siemens JPEG 2000 DICOM
series without any annotation. Each patient gives a different phase; `python -m ccgrade.plan.init` must write a
config that plans without errors, and the front half must run on it."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import shared_data
from test_workflow import smk

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_files_from_other_tools_through_the_starter_config_and_the_front_half(tmp_path):
    from ccgrade.plan import init

    ts, rt = shared_data("totalseg"), shared_data("rt-utils")
    sheet = tmp_path / "cohort.tsv"
    pd.DataFrame([
        {"patient_id": "TS-CT", "grade": 2, "image_np": str(ts / "example_ct_sm.nii.gz"),
         "mask_np": str(ts / "example_seg.nii.gz"), "Age": 61},
        {"patient_id": "RTU", "grade": 3, "dicom_dir": str(rt), "rtstruct_up": str(rt / "rt.dcm"), "Age": 55},
        {"patient_id": "TS-DCM", "grade": 4, "dicom_dir": str(ts / "dicom"), "Age": 70},
    ]).to_csv(sheet, sep="\t", index=False)
    text = init.starter_config(sheet)
    cfg = yaml.safe_load(text)
    assert cfg["rtstruct_roi"] == "^ROI\\-1$" and cfg["splits"]["schemes"]["dai"]["k"] == 3
    assert cfg["baseline"]["variables"] == [{"name": "Age", "label": "Age", "type": "continuous"}]
    assert "# Phases with a usable image (patients): up 1, np 2" in text and "uid (1 patients)" in text
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "study.yaml").write_text(text)
    targets = ["results/ingest/phase_status.tsv", "results/crops/manifest.tsv", "results/tables/tumour_geometry.csv",
               "results/splits/li.json",
               "results/tables/baseline_low_vs_high.csv", "results/tables/exclusions.csv"]
    smk(wd, *targets, "--configfile", str(wd / "study.yaml"), "--cores", "2", "-q")
    res = wd / "results"
    phases = pd.read_csv(res / "ingest/phase_status.tsv", sep="\t", keep_default_na=False)
    ok = phases[phases["status"] == "ok"].set_index("patient_id")["phase"].to_dict()
    assert ok == {"TS-CT": "np", "RTU": "up", "TS-DCM": "np"}
    man = pd.read_csv(res / "crops/manifest.tsv", sep="\t", keep_default_na=False).set_index(["patient_id", "roi", "phase"])
    # (only the crops a model reads are made: Li's cube reads masks and RTSTRUCTs on up and np)
    assert man.loc[("RTU", "cube", "up"), "link"] == "uid 2" and man.loc[("TS-CT", "cube", "np"), "source"] == "mask"
    assert man.loc[("TS-DCM", "cube", "np"), "status"] == "excluded"  # no annotation: an exclusion row
    geo = pd.read_csv(res / "tables/tumour_geometry.csv").set_index("patient_id")
    assert set(geo.index) == {"TS-CT", "RTU"} and geo.loc["RTU", "phase"] == "up"  # measured on its own phase
    assert geo.loc["TS-CT", "side"] == "left"  # the spleen, found left of the body's midline on the CT
    ex = pd.read_csv(res / "tables/exclusions.csv", keep_default_na=False)
    assert {"TS-DCM"} <= set(ex["patient_id"])
