"""Geometry and the KiTS adapter on synthetic inputs whose answers are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from ccgrade.errors import CohortError
from ccgrade.ingest import kits
from ccgrade.preprocess import geometry


def test_adapter_names_file_for_bad_grade(tmp_path):
    (tmp_path / "kits23.json").write_text(json.dumps([{"case_id": "case_1", "tumor_histologic_subtype": "clear_cell_rcc",
                                                        "tumor_isup_grade": "high"}]))
    with pytest.raises(CohortError, match=r"patient case_1, file .*kits23\.json: unknown tumor_isup_grade 'high'"):
        kits.load_kits(tmp_path)


def test_synthetic_geometry_exact():
    """A 20 x 10 x 6 mm block at 1 x 0.5 x 2 mm spacing: volume, diameters and extents are known."""
    arr = np.zeros((10, 40, 40), np.uint8)  # z, y, x
    arr[2:5, 5:25, 10:30] = 2  # 3 slices (6 mm), 20 rows (10 mm), 20 columns (20 mm)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 0.5, 2.0))
    rec = geometry.tumour_geometry(img, 2, patient="P")
    assert rec["volume_ml"] == pytest.approx(20 * 10 * 6 / 1000)
    assert (rec["extent_x_mm"], rec["extent_y_mm"], rec["extent_z_mm"]) == pytest.approx((20, 10, 6))
    # voxel-centre distances: 19 x 9.5 x 4 mm corner to corner
    assert rec["max_diameter_3d_mm"] == pytest.approx(np.sqrt(19**2 + 9.5**2 + 4**2))
    assert rec["max_axial_diameter_mm"] == pytest.approx(np.sqrt(19**2 + 9.5**2))
    assert rec["tumor_fill_of_box"] == pytest.approx(1.0) and rec["n_axial_slices"] == 3


@pytest.fixture(scope="module")
def demo_vol(demo_root, tmp_path_factory):
    from conftest import ingest_to

    out = tmp_path_factory.mktemp("geo")
    res, v = ingest_to(demo_root / "dicom" / "DEMO001", "DEMO001", out, "v")
    return {"res": res, "vol": v, "mask": demo_root / "annotations/DEMO001/cmp/mask.nii.gz",
            "polygons": demo_root / "annotations/DEMO001/cmp/polygons.json", "out": out}


def test_geometry_from_an_rtstruct_equals_the_mask_and_side_comes_from_the_ct(demo_vol, demo_root, tmp_path):
    """The tumour-only demo mask has one cluster: alone its side is unknown (never a guess); with the CT the
    body midline gives the side the demo drew. An RTSTRUCT of the same outline gives the same geometry."""
    from ccgrade.annotations import readers as ann, rtstruct
    from ccgrade.ingest import demo
    from ccgrade.outputs import read_table

    prm = {"tumour_label": 1, "margin_mm": 5.0}
    alone = geometry.patient_geometry("DEMO001", "cmp", prm, mask_file=str(demo_vol["mask"]))
    assert alone["status"] == "ok" and alone["side"] == "unknown" and "without the image" in alone["side_method"]
    with_ct = geometry.patient_geometry("DEMO001", "cmp", prm, mask_file=str(demo_vol["mask"]), volumes=demo_vol["vol"])
    truth = demo.draw_cohort(dict(__import__("conftest").TINY_DEMO, n_patients=1)).iloc[0]["side"]
    assert with_ct["side"] == truth and "body midline" in with_ct["side_method"]
    img = sitk.ReadImage(str(demo_vol["vol"] / "cmp.nii.gz"))
    slices = read_table(demo_vol["vol"] / "cmp.slices.tsv")
    st = demo_vol["res"]["phases"].set_index("phase").loc["cmp"]
    first = demo_vol["res"]["slices"][demo_vol["res"]["slices"]["series_uid"] == st["series_uid"]].iloc[0]
    mask = ann.read_mask(demo_vol["mask"], img, 1, patient="DEMO001", phase="cmp")
    rtstruct.write_rtstruct(tmp_path / "rt.dcm", mask, img, slices, series_uid=st["series_uid"],
                            study_uid=first.study_uid, frame_uid=first.frame_uid, patient_id="DEMO001")
    rt = geometry.patient_geometry("DEMO001", "cmp", prm, volumes=demo_vol["vol"], sources={"rtstruct": str(tmp_path / "rt.dcm")})
    assert rt["status"] == "ok" and rt["source"] == "rtstruct" and rt["side"] == truth
    for k in ("volume_ml", "max_diameter_3d_mm", "max_axial_diameter_mm", "extent_x_mm", "extent_z_mm", "box_w_mm"):
        assert rt[k] == pytest.approx(with_ct[k]), k
    # the demo's 36-ray polygons approximate the outline (the smallest end slices have none): a similar volume
    pg = geometry.patient_geometry("DEMO001", "cmp", prm, volumes=demo_vol["vol"], sources={"polygons": str(demo_vol["polygons"])})
    assert pg["source"] == "polygons" and abs(pg["n_axial_slices"] - with_ct["n_axial_slices"]) <= 2, (pg, with_ct)
    assert pg["volume_ml"] == pytest.approx(with_ct["volume_ml"], rel=0.1) and pg["side"] == truth


def test_an_outline_that_cannot_be_read_is_an_excluded_row(demo_vol, tmp_path):
    (tmp_path / "rt.dcm").write_bytes(b"not dicom")
    rec = geometry.patient_geometry("DEMO001", "cmp", {"tumour_label": 1}, volumes=demo_vol["vol"],
                                    sources={"rtstruct": str(tmp_path / "rt.dcm")})
    assert rec["status"] == "excluded" and "patient DEMO001" in rec["reason"] and "rt.dcm" in rec["reason"]
    empty = sitk.Image(sitk.ReadImage(str(demo_vol["mask"])))
    sitk.WriteImage(empty * 0, str(tmp_path / "empty.nii.gz"))
    rec = geometry.patient_geometry("DEMO001", "cmp", {"tumour_label": 1}, mask_file=str(tmp_path / "empty.nii.gz"))
    assert rec["status"] == "excluded" and "no voxel with the tumour label 1" in rec["reason"]
    t, view = geometry.geometry_table(__import__("pandas").DataFrame([rec, geometry.patient_geometry(
        "DEMO002", "cmp", {"tumour_label": 1}, mask_file=str(demo_vol["mask"]))]))
    assert t["patient_id"].tolist() == ["DEMO002"] and any("Not measured (1): DEMO001" in n for n in view["footnotes"])
