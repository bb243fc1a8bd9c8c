"""Integration (slow; run by .ci/run): a one-phase RTSTRUCT cohort as hospitals export it, end to end.

Twelve patients with IDs that tables love to convert (001, 007, 00, 1e3, 12.50, NA, None, null, nan, ...); per patient the plain CT re-exported with new
SOP UIDs and without its tumour-free end slices, and an RTSTRUCT drawn on the original series (it references
the old SOP UIDs); a sheet of patient_id, grade, dicom_dir and rtstruct_up only: no clinical column. The user
config sets the sheet and three keys sized for twelve patients: the fusion's 2-fold inner CV, no nested CV,
and a 2-fold split for Dai's cross-validation (CPU time: its cells are ResNet50s). Everything
else is derived from the cohort: ingest, crops of every ROI setting from the RTSTRUCT linked by plane position,
geometry, splits, baseline tables, radiomics, the model cells the one phase feeds, the radiomics-only fusion
and the report.
"""

from __future__ import annotations

import base64
import json
import re

import pandas as pd
import pytest
import yaml

from conftest import one_phase_rtstruct_cohort
from test_workflow import smk

pytestmark = pytest.mark.slow
#: IDs as hospitals and spreadsheets write them: leading zeros, and strings pandas would read as numbers or NaN
IDS = ["001", "002", "007", "010", "0", "00", "1e3", "12.50", "NA", "None", "null", "nan"]


def leaf_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += leaf_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("onephase")
    sheet = one_phase_rtstruct_cohort(root / "hospital", ids=IDS)
    wd = root / "run"
    wd.mkdir()
    cfg = {"cohort": {"sheet": str(sheet)}, "fusion": {"cv": 2, "nested_cv": 0}, "splits": {"schemes": {"dai": {"k": 2}}}}
    assert len([k for k in leaf_keys(cfg) if k != "cohort.sheet"]) <= 3
    (wd / "my_study.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--configfile", str(wd / "my_study.yaml")]
    dry = smk(wd, "-n", "--cores", "2", *args)
    smk(wd, "--cores", "2", "--resources", "gpu=1", "-q", *args)
    smk(wd, "--report", "results/report.html", *args)
    return {"wd": wd, "res": wd / "results", "dry": dry.stdout + dry.stderr}


def test_the_preflight_report_says_how_the_rtstructs_link_and_what_is_left_out(run):
    out = run["dry"]
    assert "ccgrade pre-flight: 12 patients (sheet), phases ['up']" in out
    assert "RTSTRUCTs: contours linked to slices by plane position (12)" in out
    assert "training.studies.sun: the cohort feeds none of its models" in out
    assert "ERROR" not in out


def test_every_patient_is_in_every_table_as_written(run):
    res = run["res"]

    def ids(path, **kw):
        return set(pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                               **kw)["patient_id"])

    for f in ("cohort/sheet.tsv", "cohort/cohort.tsv", "ingest/series.tsv", "ingest/phase_status.tsv",
              "crops/manifest.tsv", "splits/li.tsv", "splits/cui.tsv", "splits/dai.tsv", "radiomics/features.tsv",
              "tables/tumour_geometry.csv", "fusion/predictions.tsv"):
        assert ids(res / f) == set(IDS), f
    for scheme in ("li", "cui", "dai"):
        doc = json.loads((res / f"splits/{scheme}.json").read_text())
        assert doc["excluded"] == [] and doc["n_patients"] == 12
    assert pd.read_csv(res / "tables/exclusions.csv").empty


def test_every_crop_came_from_the_rtstruct_linked_by_plane_position(run):
    man = pd.read_csv(run["res"] / "crops/manifest.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert set(man["phase"]) == {"up"} and (man["status"] == "ok").all()  # (one phase: no stack is read)
    assert (man["source"] == "rtstruct").all()
    assert man["link"].str.fullmatch(r"position \d+").all() and (man["n_contours"].astype(int) > 0).all()
    geo = pd.read_csv(run["res"] / "tables/tumour_geometry.csv", dtype={"patient_id": str})
    assert (geo["source"] == "rtstruct").all() and (geo["volume_ml"] > 0).all()
    assert set(geo["side"]) <= {"left", "right"}  # found on the CT (body midline): no guess, no unknown here


def test_baseline_tables_say_there_is_no_clinical_column(run):
    t2 = (run["res"] / "tables/baseline_low_vs_high.md").read_text()
    assert "Left out, not in the cohort: sex, age, bmi" in t2 and "Tumor side" in t2
    t1 = (run["res"] / "tables/baseline_train_vs_test_li.md").read_text()
    assert "Grade group" in t1 and "Left out, not in the cohort" in t1


def test_model_cells_and_a_radiomics_only_fusion(run):
    res = run["res"]
    cells = sorted(p.parent.relative_to(res / "models").as_posix() for p in (res / "models").rglob("predictions.tsv"))
    assert "cui/box/resnet34/up/base/fold0/seed1" in cells and "li/cube/resnet3d18/up/base/fold0/seed1" in cells
    assert not any(c.startswith("sun/") for c in cells)
    pred = pd.read_csv(res / "models/cui/box/resnet34/up/base/fold0/seed1/predictions.tsv", sep="\t", dtype={"patient_id": str})
    split = json.loads((res / "splits/cui.json").read_text())["folds"][0]
    assert set(pred.loc[pred["set"] == "test", "patient_id"]) == set(split["test"])
    fus = pd.read_csv(res / "tables/fusion_models.csv")
    assert set(fus["model"]) == {"radiomics"}, fus
    test = fus[fus["set"] == "test"].iloc[0]
    assert 0 <= test["auc"] <= 1 and test["n"] == len(json.loads((res / "splits/li.json").read_text())["folds"][0]["test"])


def test_the_report_holds_every_patient(run):
    html = (run["res"] / "report.html").read_text(encoding="utf-8")
    decoded = "\n".join(base64.b64decode(m).decode("utf-8", "replace")
                        for m in re.findall(r'data:text/[-a-z]+;[^"]*?base64,([A-Za-z0-9+/]+={0,2})"', html))
    for pid in IDS:
        assert re.search(rf"(?m)^{re.escape(pid)}\t", decoded), pid  # a row of an embedded table starts with the ID
    assert "Sun: fused models" in html and "Cui Table 2" in html
