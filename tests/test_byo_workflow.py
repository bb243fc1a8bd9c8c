"""Integration: bring-your-own cohorts through the whole DAG (marked slow; run by .ci/run).

1. A hospital-style sheet (CSV) mixing every contract path: DICOM folder + conventional annotation folder,
   NIfTI/NRRD volumes with NRRD masks, DICOM + RTSTRUCT + labelme + polygons given per phase, and a
   patient whose corticomedullary mask is missing. Crops must be identical to those made from the
   NIfTI masks, the missing pieces must be exclusion rows, and no file path reaches results/.
2. The real KiTS23 adapter on a subset of real cases (masks only): the DAG skips images, measures the
   masks and writes the baseline table with the subset's grade counts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from ccgrade.annotations import readers as ann, rtstruct
from ccgrade.ingest import demo
from ccgrade.preprocess import crops
from conftest import PHASES, REPO, TINY_DEMO, ingest_to, merged, shared_data, tiny_config
from test_workflow import smk

pytestmark = pytest.mark.slow


def pacs_layout(dicom: Path, dst: Path, ann_dir: Path) -> None:
    """The demo patient's series laid out as many PACS exports are: a folder named after the patient and
    birth date, one per series named after the hospital, files named after the patient, and the patient's
    name and MRN typed into SeriesDescription, StudyDescription and ProtocolName (issue 27: these reached 20
    files under results/); the labelme files (named after the image, as labelme does) follow."""
    import pydicom

    for n, series in enumerate(sorted(dicom.iterdir()), 1):
        out = dst / "Doe_Jane_19600101" / f"Secret Hospital CT {n}"
        out.mkdir(parents=True)
        for f in sorted(series.iterdir()):
            ds = pydicom.dcmread(f)
            ds.SeriesDescription = f"{ds.SeriesDescription} Qzxwv Jorunn 80417733"
            ds.StudyDescription, ds.ProtocolName = "CT kidneys for Jorunn Qzxwv", "Qzxwv renal 80417733"
            ds.save_as(out / f"Doe_Jane_{n}_{f.name[2:]}.dcm")
    for lab in ann_dir.glob("*/labelme"):
        for j in sorted(lab.glob("*.json")):
            doc = json.loads(j.read_text())
            n = 1 + ["up", "cmp", "np", "ep"].index(lab.parent.name)
            stem = f"Doe_Jane_{n}_{j.stem[2:]}"
            doc["imagePath"] = f"{stem}.bmp"
            (lab / f"{stem}.json").write_text(json.dumps(doc))
            j.unlink()


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    wd = tmp_path_factory.mktemp("byo")
    src = wd / "export"
    d = dict(TINY_DEMO, n_patients=5)  # DEMO001-004 grade 3-4, DEMO005 grade 2
    for i in range(5):
        demo.generate_patient(i, d, src)
    clinical = demo.draw_cohort(d, 3, src).drop(columns=["dicom_dir", "annotation_dir"])
    # a hospital layout with identifying folder names (which must never reach results/)
    h = wd / "Doe_Jane_hospital"
    rows = []
    for r in clinical.to_dict("records"):
        pid = r["patient_id"]
        pdir = h / f"{pid}_Doe_Jane"
        shutil.copytree(src / "annotations" / pid, pdir / "ann")
        pacs_layout(src / "dicom" / pid, pdir / "dicom", pdir / "ann")
        rows.append({**r, "dicom_dir": str(pdir / "dicom"), "annotation_dir": str(pdir / "ann")})
    sheet = pd.DataFrame(rows)
    # DEMO005: a mask named after the patient, given in the sheet
    p5 = h / "DEMO005_Doe_Jane"
    shutil.move(p5 / "ann" / "cmp" / "mask.nii.gz", p5 / "Doe_Jane_19600101 tumour.nii.gz")
    sheet.loc[4, "mask_cmp"] = str(p5 / "Doe_Jane_19600101 tumour.nii.gz")
    # DEMO002: NIfTI/NRRD volumes per phase and NRRD masks, no DICOM, no labelme/polygons
    p2 = h / "DEMO002_Doe_Jane"
    ingest_to(p2 / "dicom", "DEMO002", p2)
    for ph in PHASES:
        img = sitk.ReadImage(str(p2 / "vol" / f"{ph}.nii.gz"))
        sitk.WriteImage(img, str(p2 / f"Doe_Jane_ct_{ph}.nrrd" if ph != "cmp" else p2 / f"Doe_Jane_ct_{ph}.nii.gz"))
        shutil.copy(p2 / "ann" / ph / "mask.nii.gz", p2 / f"seg_{ph}.nii.gz")
        m = sitk.ReadImage(str(p2 / f"seg_{ph}.nii.gz"))
        sitk.WriteImage(m, str(p2 / f"seg_{ph}.nrrd"))
        sheet.loc[1, f"image_{ph}"] = f"DEMO002_Doe_Jane/Doe_Jane_ct_{ph}" + (".nii.gz" if ph == "cmp" else ".nrrd")
        sheet.loc[1, f"mask_{ph}"] = f"DEMO002_Doe_Jane/seg_{ph}.nrrd"
    shutil.rmtree(p2 / "dicom")
    shutil.rmtree(p2 / "ann")
    sheet.loc[1, ["dicom_dir", "annotation_dir"]] = np.nan
    # DEMO003: DICOM folder + per-phase RTSTRUCT, labelme folder and polygon JSON (no NIfTI masks)
    p3 = h / "DEMO003_Doe_Jane"
    res, _ = ingest_to(p3 / "dicom", "DEMO003", p3)
    for ph in PHASES:
        img = sitk.ReadImage(str(p3 / "vol" / f"{ph}.nii.gz"))
        table = pd.read_csv(p3 / "vol" / f"{ph}.slices.tsv", sep="\t", dtype={"sop_uid": str})
        uid = res["phases"].set_index("phase").loc[ph, "series_uid"]
        first = res["slices"][res["slices"]["series_uid"] == uid].iloc[0]
        mask = ann.read_mask(p3 / "ann" / ph / "mask.nii.gz", img, 1, patient="DEMO003", phase=ph)
        rtstruct.write_rtstruct(p3 / f"rt_{ph}.dcm", mask, img, table, series_uid=uid, study_uid=first.study_uid,
                                frame_uid=first.frame_uid, patient_id="DEMO003", roi_name="GTV tumour")
        shutil.move(p3 / "ann" / ph / "labelme", p3 / f"boxes_{ph}")
        shutil.move(p3 / "ann" / ph / "polygons.json", p3 / f"poly_{ph}.json")
        sheet.loc[2, f"rtstruct_{ph}"] = str(p3 / f"rt_{ph}.dcm")
        sheet.loc[2, f"labelme_{ph}"] = f"DEMO003_Doe_Jane/boxes_{ph}"
        sheet.loc[2, f"polygons_{ph}"] = f"DEMO003_Doe_Jane/poly_{ph}.json"
    shutil.move(p3 / "vol", wd / "ref_vol_DEMO003")
    shutil.rmtree(p3 / "ann")
    sheet.loc[2, "annotation_dir"] = np.nan
    # DEMO004: the corticomedullary mask is missing
    (h / "DEMO004_Doe_Jane" / "ann" / "cmp" / "mask.nii.gz").unlink()
    sheet.to_csv(h / "cohort.csv", index=False)
    cfg = tiny_config()
    cfg["cohort"].update(source="sheet", sheet=str(h / "cohort.csv"))
    cfg["rois"]["tumor"]["source"] = ["mask", "rtstruct"]
    cfg["rois"]["cube"]["source"] = ["mask", "rtstruct"]
    cfg["splits"]["schemes"]["dai"]["k"] = 2
    run = wd / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    smk(run, "--cores", "2", "--resources", "gpu=1", "-q")
    smk(run, "--report", "results/report.html")
    smk(run, "--cores", "1", "privacy_report", "-q")  # the report page scanned too
    return {"run": run, "cfg": cfg, "wd": wd, "src": src}


def test_mixed_sources_give_identical_crops(hospital):
    run, src = hospital["run"], hospital["src"]
    man = pd.read_csv(run / "results/crops/manifest.tsv", sep="\t", keep_default_na=False).set_index(["patient_id", "roi", "phase"])
    # (tumor feeds Sun's stack only, on cmp's outline; cube Li's up, cmp and np: only those are cropped)
    assert man.loc[("DEMO003", "tumor", "stack"), "source"] == "rtstruct"
    assert man.loc[("DEMO002", "tumor", "stack"), "source"] == "mask"
    assert man.loc[("DEMO003", "box", "cmp"), "status"] == "ok" and man.loc[("DEMO003", "centroid", "cmp"), "status"] == "ok"
    # DEMO002 has no labelme boxes (volumes have no per-slice files): source auto boxes its NRRD mask instead
    assert man.loc[("DEMO002", "box", "cmp"), "status"] == "ok" and man.loc[("DEMO002", "box", "cmp"), "source"] == "mask"
    assert man.loc[("DEMO004", "tumor", "stack"), "status"] == "excluded"
    assert man.loc[("DEMO004", "cube", "cmp"), "status"] == "excluded" and man.loc[("DEMO004", "cube", "np"), "status"] == "ok"
    # tumour crops from RTSTRUCT (DEMO003) and from NRRD masks on NIfTI/NRRD volumes (DEMO002) equal
    # the crops made from the original NIfTI masks on the DICOM route
    cfg = hospital["cfg"]
    for pid, vol in (("DEMO002", run / "results/volumes/DEMO002"), ("DEMO003", run / "results/volumes/DEMO003")):
        sources = {ph: {"mask": str(src / "annotations" / pid / ph / "mask.nii.gz")} for ph in PHASES}
        for roi_name in ("tumor", "cube"):
            roi = dict(cfg["rois"][roi_name], source="mask")
            ref = crops.crop_patient(pid, roi_name, roi, cfg["windows"][roi["window"]], PHASES, ["cmp", "np", "ep"],
                                     vol, sources, 1, hospital["wd"] / "ref" / pid / roi_name)
            assert (ref["status"] == "ok").all()
            made = [t for t in PHASES + ["stack"]
                    if str(np.load(run / f"results/crops/{roi_name}/{pid}/{t}.npz")["status"]) != "skipped"]
            assert made == {"tumor": ["stack"], "cube": ["up", "cmp", "np"]}[roi_name]
            for t in made:
                a = np.load(run / f"results/crops/{roi_name}/{pid}/{t}.npz")["images"]
                b = np.load(hospital["wd"] / "ref" / pid / roi_name / f"{t}.npz")["images"]
                np.testing.assert_array_equal(a, b)
    # the NIfTI/NRRD volumes of DEMO002 equal its DICOM series voxel for voxel (converted in the fixture)
    v = sitk.GetArrayFromImage(sitk.ReadImage(str(run / "results/volumes/DEMO003/cmp.nii.gz")))
    r = sitk.GetArrayFromImage(sitk.ReadImage(str(hospital["wd"] / "ref_vol_DEMO003/cmp.nii.gz")))
    np.testing.assert_array_equal(v, r)


def test_exclusions_geometry_and_no_paths_in_results(hospital):
    run = hospital["run"]
    ex = pd.read_csv(run / "results/tables/exclusions.csv", keep_default_na=False)
    assert ("DEMO004", "tumor") in set(zip(ex["patient_id"], ex["roi"]))  # its cmp mask is missing (tumor: mask, rtstruct)
    assert ("DEMO002", "box") not in set(zip(ex["patient_id"], ex["roi"]))
    geo = pd.read_csv(run / "results/tables/tumour_geometry.csv").set_index("patient_id")
    # every patient is measured from the tumour outline it has on cmp: a mask, DEMO003's RTSTRUCT, and for
    # DEMO004 (cmp mask missing) the polygons of its annotation folder
    assert set(geo.index) == {"DEMO001", "DEMO002", "DEMO003", "DEMO004", "DEMO005"}
    assert geo.loc["DEMO003", "source"] == "rtstruct" and geo.loc["DEMO004", "source"] == "polygons"
    assert (geo.loc[["DEMO001", "DEMO002", "DEMO005"], "source"] == "mask").all()
    cohort = pd.read_csv(run / "results/cohort/cohort.tsv", sep="\t")
    assert len(cohort) == 5 and not [c for c in cohort if c.startswith(("image_", "mask_cmp", "dicom", "rtstruct"))]
    # the side found on the CT (tumour-only masks: the body midline) agrees with the demo's recorded side
    m = cohort.dropna(subset=["mask_side"])
    assert (m["mask_side"] == m["side"]).all() and len(m) == 5 and set(m["side"]) == {"left", "right"}
    for f in (run / "results").rglob("*"):
        if f.suffix in (".tsv", ".csv", ".md", ".json", ".log"):
            assert "Doe_Jane" not in f.read_text(errors="replace"), f
    assert (run / "results/tables/baseline_low_vs_high.md").exists()


def test_the_privacy_scan_of_results_and_report_finds_nothing_and_would_see_a_leak(hospital, tmp_path):
    from ccgrade.report import phiscan

    run = hospital["run"]
    for stem, files in (("privacy_scan", 300), ("privacy_scan_report", 1)):  # everything, then the report page
        hits = pd.read_csv(run / f"results/{stem}.tsv", sep="\t")
        summary = json.loads((run / f"results/{stem}.json").read_text())
        assert hits.empty, hits.to_dict("records")[:5]
        assert summary["files"] >= files and summary["needles"] > 500 and summary["mode"] == "pseudonymise"
        assert summary["bytes_searched"] > 10**5
    assert (run / "results/report.html").stat().st_size > 10**5
    # what it looked for: every kind of identifying value, and the names inside the user's folders
    sources = json.loads((run / "resources/private/sources.json").read_text())
    needles = phiscan.collect_needles(sources, phiscan.vocabulary(hospital["cfg"]))
    values = {n.value for n in needles}
    assert {"PatientName", "PatientBirthDate", "InstitutionName", "AccessionNumber", "SOPInstanceUID",
            "SeriesInstanceUID", "path component"} <= {n.kind for n in needles}
    assert {"Doe_Jane_19600101", "Secret Hospital CT 2", "Doe_Jane_2_0007.dcm", "Doe_Jane_19600101 tumour.nii.gz",
            "DEMO003_Doe_Jane", "Doe_Jane_ct_np.nrrd"} <= values
    # the name and MRN typed into free text (the scan above found none of them under results/)
    assert {"80417733", "Qzxwv Jorunn", "Jorunn 80417733", "Jorunn Qzxwv", "Qzxwv renal"} <= values
    series = (run / "results/ingest/series.tsv").read_text()
    assert "Qzxwv" not in series and "80417733" not in series and "#" in series  # the safe form, tagged
    # a leak planted in a copy of results/ (an original UID inside the report's base64, a folder name in a
    # crop's npz) is found: the clean result above is the scan's, not its blindness
    copy = tmp_path / "results"
    shutil.copytree(run / "results", copy, ignore=shutil.ignore_patterns("models", "volumes"))
    uid = next(n.value for n in needles if n.kind == "SOPInstanceUID")
    html = (copy / "report.html").read_bytes()
    import base64

    (copy / "report.html").write_bytes(html + b"<a href='data:text/plain;base64," +
                                       base64.b64encode(f"sop {uid}".encode()) + b"'>x</a>")
    np.savez(copy / "crops/box/DEMO001/cmp.npz", sop_uid=np.array(["Secret Hospital CT 2"]))
    hits, _ = phiscan.scan(copy, needles)
    got = set(zip(hits["file"], hits["what"]))
    assert got == {("report.html", "SOPInstanceUID"), ("crops/box/DEMO001/cmp.npz", "path component")}, got
    # the lookup table outside results/ maps each pseudonym back
    look = pd.read_csv(run / "resources/private/lookup.tsv", sep="\t", dtype=str)
    sl = pd.read_csv(run / "results/volumes/DEMO001/cmp.slices.tsv", sep="\t", dtype=str)
    orig = look.set_index(["patient_id", "pseudonym"])["original"]
    assert orig[("DEMO001", sl["sop_uid"].iloc[0])] in values
    assert orig[("DEMO001", sl["file"].iloc[0])].startswith("Doe_Jane_19600101/Secret Hospital CT 2/")


@pytest.mark.realdata
def test_kits_subset_through_the_dag(tmp_path):
    root = shared_data("kits23")
    cases = json.loads((root / "kits23.json").read_text())
    graded = [c for c in cases if c["tumor_histologic_subtype"] == "clear_cell_rcc" and c["tumor_isup_grade"]]
    low = [c for c in graded if int(c["tumor_isup_grade"]) <= 2][:6]
    high = [c for c in graded if int(c["tumor_isup_grade"]) >= 3][:4]
    other = [c for c in cases if c["tumor_histologic_subtype"] != "clear_cell_rcc"][:2]
    sub = tmp_path / "kits_subset"
    (sub / "masks").mkdir(parents=True)
    (sub / "kits23.json").write_text(json.dumps(low + high + other))
    for c in low + high:
        (sub / "masks" / f"{c['case_id']}.nii.gz").symlink_to(root / "masks" / f"{c['case_id']}.nii.gz")
    cfg = merged(yaml.safe_load((REPO / "config.yaml").read_text()), yaml.safe_load((REPO / "config/kits23.yaml").read_text()))
    cfg["cohort"]["kits"]["root"] = str(sub)
    cfg["splits"]["schemes"]["dai"]["k"] = 2
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    smk(run, "--cores", "2", "-q")
    assert not (run / "results/volumes").exists() and not (run / "results/crops").exists()  # no images: no ingest
    base = pd.read_csv(run / "results/tables/baseline_low_vs_high.csv")
    assert any(c.startswith("low (n=6)") for c in base.columns) and any(c.startswith("high (n=4)") for c in base.columns)
    assert {"Radiographic tumour size (cm)", "Tumour side (mask)", "Pathologic T stage"} <= set(base["variable"])
    geo = pd.read_csv(run / "results/tables/tumour_geometry.csv")
    assert len(geo) == 10 and (geo["volume_ml"] > 0).all() and set(geo["side"]) <= {"left", "right", "bilateral", "unknown"}
    # a mask with one kidney cluster and no CT: the side is unknown, never guessed
    assert (geo.loc[geo["side"] == "unknown", "side_method"].str.startswith("one cluster")).all()
    ex = pd.read_csv(run / "results/tables/exclusions.csv", keep_default_na=False)
    assert set(ex.loc[ex["stage"] == "cohort", "patient_id"]) == {c["case_id"] for c in other}
    split = json.loads((run / "results/splits/li.json").read_text())
    assert split["n_patients"] == 10
