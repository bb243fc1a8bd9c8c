"""Annotation adapters on realistic files: RTSTRUCT and polygon round trips on the demo's real DICOM
series, malformed inputs that must name patient and file, and crops that agree across formats."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ccgrade.annotations import readers as ann, rtstruct
from ccgrade.config.cohort import patient_sources
from ccgrade.errors import AnnotationError, GeometryError
from ccgrade.preprocess import crops
from conftest import PHASES, ingest_to, reexport_series, repo_config, shared_data

CFG = repo_config()


@pytest.fixture(scope="module")
def vol(demo_root, tmp_path_factory):
    """DEMO001 ingested: slice index, volumes per phase, and the cmp mask."""
    out = tmp_path_factory.mktemp("vol")
    res, v = ingest_to(demo_root / "dicom" / "DEMO001", "DEMO001", out, "v")
    info = {}
    for ph in PHASES:
        img = sitk.ReadImage(str(v / f"{ph}.nii.gz"))
        table = pd.read_csv(v / f"{ph}.slices.tsv", sep="\t", dtype={"sop_uid": str, "file": str})
        uid = res["phases"].set_index("phase").loc[ph, "series_uid"]
        first = res["slices"][res["slices"].series_uid == uid].iloc[0]
        mask = ann.read_mask(demo_root / "annotations/DEMO001" / ph / "mask.nii.gz", img, 1, patient="DEMO001", phase=ph)
        info[ph] = {"img": img, "slices": table, "series_uid": uid, "study_uid": first.study_uid,
                    "frame_uid": first.frame_uid, "mask": mask}
    return {"dir": v, "root": out, "phase": info}


def _write_rt(path, p, mask=None, **kw):
    rtstruct.write_rtstruct(path, p["mask"] if mask is None else mask, p["img"], p["slices"], series_uid=p["series_uid"],
                            study_uid=p["study_uid"], frame_uid=p["frame_uid"], patient_id="DEMO001", **kw)


def test_rtstruct_round_trip_is_exact(vol, tmp_path):
    p = vol["phase"]["cmp"]
    _write_rt(tmp_path / "rt.dcm", p)
    import pydicom

    ds = pydicom.dcmread(tmp_path / "rt.dcm")
    assert ds.Modality == "RTSTRUCT" and ds.SOPClassUID == rtstruct.RTSTRUCT_STORAGE
    assert len(ds.ROIContourSequence[0].ContourSequence) >= int(p["mask"].reshape(len(p["mask"]), -1).any(1).sum())
    back = rtstruct.read_rtstruct(tmp_path / "rt.dcm", p["img"], p["slices"], series_uid=p["series_uid"],
                                  patient="DEMO001", phase="cmp")
    np.testing.assert_array_equal(back, p["mask"])


def test_rtstruct_contours_are_in_patient_millimetres(vol, tmp_path):
    """Independent check: the contour vertices lie half a pixel outside the mask's border pixel centres."""
    p = vol["phase"]["cmp"]
    _write_rt(tmp_path / "rt.dcm", p)
    import pydicom

    c = pydicom.dcmread(tmp_path / "rt.dcm").ROIContourSequence[0].ContourSequence[0]
    pts = np.asarray(c.ContourData, float).reshape(-1, 3)
    ipp_z = pd.read_csv(vol["root"] / "slices.tsv", sep="\t")
    # every contour lies exactly on one slice's z (axial demo series)
    assert np.ptp(pts[:, 2]) < 1e-6 and np.isclose(ipp_z["ipp_z"].to_numpy(), pts[0, 2]).any()
    sp = p["img"].GetSpacing()
    org = np.array(p["img"].GetOrigin())
    k = int(round((pts[0, 2] - org[2]) / sp[2]))
    jj, ii = np.nonzero(p["mask"][k])
    xs = (pts[:, 0] - org[0]) / sp[0]
    # the outline spans the tumour columns +- half a pixel
    assert xs.min() == pytest.approx(ii.min() - 0.5, abs=1e-3) and xs.max() == pytest.approx(ii.max() + 0.5, abs=1e-3)


def test_rtstruct_of_another_series_is_rejected(vol, tmp_path):
    np_ = vol["phase"]["np"]
    _write_rt(tmp_path / "rt_np.dcm", np_)
    p = vol["phase"]["cmp"]
    with pytest.raises(AnnotationError) as e:
        rtstruct.read_rtstruct(tmp_path / "rt_np.dcm", p["img"], p["slices"], series_uid=p["series_uid"],
                               patient="DEMO001", phase="cmp")
    msg = str(e.value)
    assert "patient DEMO001" in msg and "phase cmp" in msg and "rt_np.dcm" in msg and "references series" in msg
    # without the series reference, the contour-image SOP references still catch it
    with pytest.raises(AnnotationError, match="not a slice of the cmp series"):
        rtstruct.read_rtstruct(tmp_path / "rt_np.dcm", p["img"], p["slices"], patient="DEMO001", phase="cmp")


def test_rtstruct_roi_names_and_plane_checks(vol, tmp_path):
    p = vol["phase"]["cmp"]
    _write_rt(tmp_path / "kidney.dcm", p, roi_name="Kidney_L")
    with pytest.raises(AnnotationError, match=r"no ROI name matches .* \(ROIs: \['Kidney_L'\]\)"):
        rtstruct.read_rtstruct(tmp_path / "kidney.dcm", p["img"], p["slices"], patient="DEMO001", phase="cmp")
    back = rtstruct.read_rtstruct(tmp_path / "kidney.dcm", p["img"], p["slices"], roi_pattern="kidney",
                                  patient="DEMO001", phase="cmp")
    assert back.sum() == p["mask"].sum()
    # a contour between two slice planes is a geometry error naming the file
    import pydicom

    ds = pydicom.dcmread(tmp_path / "kidney.dcm")
    c = ds.ROIContourSequence[0].ContourSequence[0]
    pts = np.asarray(c.ContourData, float).reshape(-1, 3)
    pts[:, 2] += p["img"].GetSpacing()[2] / 2
    c.ContourData = pts.ravel().round(4).tolist()
    ds.save_as(tmp_path / "between.dcm")
    with pytest.raises(GeometryError, match=r"file .*between\.dcm: contour .* not on a slice plane"):
        rtstruct.read_rtstruct(tmp_path / "between.dcm", p["img"], p["slices"], roi_pattern="kidney",
                               patient="DEMO001", phase="cmp")
    # a CT slice given as an RTSTRUCT
    with pytest.raises(AnnotationError, match=r"CT_small\.dcm: not an RTSTRUCT"):
        rtstruct.read_rtstruct(_a_ct_file(), p["img"], p["slices"], patient="DEMO001", phase="cmp")


def _a_ct_file():
    from pydicom.data import get_testdata_file

    return get_testdata_file("CT_small.dcm")


def test_rtstruct_hole_by_even_odd():
    """Two nested contours on one slice make a ring (how RTSTRUCT draws holes)."""
    outer = np.array([[2, 2], [18, 2], [18, 18], [2, 18]], float)
    inner = np.array([[6, 6], [14, 6], [14, 14], [6, 14]], float)
    m = rtstruct.polygons_to_mask({0: [outer, inner]}, (1, 20, 20))
    assert m[0].sum() == 16 * 16 - 8 * 8 and not m[0, 10, 10] and m[0, 3, 3]


def test_polygon_rasterisation_counts_pixel_centres():
    # a right triangle with legs 10.3 px: pixel centres with x + y < 10.3 (no centre lies on the edge)
    tri = np.array([[0, 0], [10.3, 0], [0, 10.3]], float)
    m = rtstruct.rasterise_polygon(tri, (12, 12))
    jj, ii = np.mgrid[0:12, 0:12]
    want = (ii + 0.5) + (jj + 0.5) < 10.3
    np.testing.assert_array_equal(m, want)


def test_mask_outline_polygon_round_trip_is_exact(vol):
    mask = vol["phase"]["cmp"]["mask"]
    polys = {int(k): rtstruct.mask_outlines(mask[k]) for k in np.flatnonzero(mask.reshape(len(mask), -1).any(1))}
    np.testing.assert_array_equal(rtstruct.polygons_to_mask(polys, mask.shape), mask)


def test_demo_polygon_json_matches_its_mask(vol, demo_root):
    """The demo's MD.ai-style polygons (36-ray outlines) rasterise close to the NIfTI mask they outline."""
    p = vol["phase"]["cmp"]
    polys = ann.read_polygons(demo_root / "annotations/DEMO001/cmp/polygons.json", p["slices"], patient="DEMO001",
                              phase="cmp")
    m = rtstruct.polygons_to_mask(polys, p["mask"].shape)
    ks = sorted(polys)
    dice = 2 * (m[ks] & p["mask"][ks]).sum() / (m[ks].sum() + p["mask"][ks].sum())
    assert dice > 0.9


def test_labelme_reversed_points_parse_and_bad_json_names_file(vol, demo_root, tmp_path):
    lab = tmp_path / "labelme"
    shutil.copytree(demo_root / "annotations/DEMO001/cmp/labelme", lab)
    p = vol["phase"]["cmp"]
    before, _ = ann.read_labelme_boxes(lab, p["slices"], (96, 96), patient="DEMO001", phase="cmp")
    f = sorted(lab.glob("*.json"))[0]
    doc = json.loads(f.read_text())
    (x1, y1), (x2, y2) = doc["shapes"][0]["points"]
    doc["shapes"][0]["points"] = [[x2, y2], [x1, y1]]  # drawn right-to-left: negative width/height
    f.write_text(json.dumps(doc))
    after, _ = ann.read_labelme_boxes(lab, p["slices"], (96, 96), patient="DEMO001", phase="cmp")
    assert after == before
    f.write_text("{not json")
    with pytest.raises(AnnotationError, match=rf"patient DEMO001, phase cmp, file .*{f.name}: not a labelme JSON"):
        ann.read_labelme_boxes(lab, p["slices"], (96, 96), patient="DEMO001", phase="cmp")


def test_crops_agree_across_mask_rtstruct_and_nrrd(vol, demo_root, tmp_path):
    """The tumour-only and cube crops are identical whether the tumour comes from the NIfTI mask, an
    RTSTRUCT, or an NRRD label mask with another label value."""
    p = vol["phase"]["cmp"]
    base = patient_sources({"annotation_dir": str(demo_root / "annotations/DEMO001")}, PHASES)
    rt = {ph: {"rtstruct": str(tmp_path / f"{ph}.dcm")} for ph in PHASES}
    nrrd = {}
    for ph in PHASES:
        _write_rt(tmp_path / f"{ph}.dcm", vol["phase"][ph])
        m = sitk.ReadImage(str(demo_root / "annotations/DEMO001" / ph / "mask.nii.gz"))
        sitk.WriteImage(m * 7, str(tmp_path / f"{ph}.nrrd"))
        nrrd[ph] = {"mask": str(tmp_path / f"{ph}.nrrd")}
    out = {}
    for name, src, roi_src, label in (("mask", base, "mask", 1), ("rt", rt, "rtstruct", 1), ("nrrd", nrrd, "mask", 7)):
        for kind in ("tumor", "cube"):
            roi = {"kind": kind, "source": roi_src, "size": 16, "window": "cui", "spacing_mm": 2.0}
            man = crops.crop_patient("DEMO001", kind, roi, CFG["windows"]["cui"], PHASES, ["cmp", "np", "ep"], vol["dir"],
                                     src, label, tmp_path / name / kind)
            assert (man["status"] == "ok").all(), man
            out[name, kind] = np.load(tmp_path / name / kind / "stack.npz")["images"]
    for kind in ("tumor", "cube"):
        np.testing.assert_array_equal(out["mask", kind], out["rt", kind])
        np.testing.assert_array_equal(out["mask", kind], out["nrrd", kind])
    assert p["mask"].any()


def test_tumor_crop_from_polygons_source(vol, demo_root, tmp_path):
    src = patient_sources({"annotation_dir": str(demo_root / "annotations/DEMO001")}, PHASES)
    roi = {"kind": "tumor", "source": "polygons", "size": 16, "window": "cui"}
    man = crops.crop_patient("DEMO001", "tp", roi, CFG["windows"]["cui"], PHASES, ["cmp", "np", "ep"], vol["dir"], src,
                             1, tmp_path / "tp")
    assert (man["status"] == "ok").all()
    z = np.load(tmp_path / "tp" / "cmp.npz")
    assert z["images"].shape[1:] == (1, 16, 16) and (z["images"] == 0).any()


def test_kits_like_orientation_is_reoriented_for_crops(vol, demo_root, tmp_path):
    """KiTS stores volumes with the slice axis first (611 x 512 x 512): a volume and mask in such a
    permuted, flipped orientation give the same crops as the axial original."""
    from conftest import ingest_to

    images, sources = {}, {}
    for ph in PHASES:
        img = sitk.ReadImage(str(vol["dir"] / f"{ph}.nii.gz"))
        m = sitk.ReadImage(str(demo_root / "annotations/DEMO001" / ph / "mask.nii.gz"))
        for name, im in (("ct", img), ("seg", m)):
            odd = sitk.Flip(sitk.PermuteAxes(im, [2, 1, 0]), [False, True, False])
            assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(odd.GetDirection()) != "LPS"
            sitk.WriteImage(odd, str(tmp_path / f"{name}_{ph}.nii.gz"))
        images[ph] = str(tmp_path / f"ct_{ph}.nii.gz")
        sources[ph] = {"mask": str(tmp_path / f"seg_{ph}.nii.gz")}
    res, v = ingest_to(None, "DEMO001", tmp_path / "ing", images=images)
    assert (res["phases"]["status"] == "ok").all(), res["phases"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(v / "cmp.nii.gz"))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(vol["dir"] / "cmp.nii.gz"))))
    base = patient_sources({"annotation_dir": str(demo_root / "annotations/DEMO001")}, PHASES)
    for name, vdir, src in (("orig", vol["dir"], base), ("odd", v, sources)):
        roi = {"kind": "tumor", "source": "mask", "size": 16, "window": "cui"}
        man = crops.crop_patient("DEMO001", "tumor", roi, CFG["windows"]["cui"], PHASES, ["cmp", "np", "ep"], vdir, src,
                                 1, tmp_path / name)
        assert (man["status"] == "ok").all(), man
    np.testing.assert_array_equal(np.load(tmp_path / "orig" / "stack.npz")["images"],
                                  np.load(tmp_path / "odd" / "stack.npz")["images"])


def _tumour_free_ends(mask: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(mask.reshape(len(mask), -1).any(1))
    return min(2, int(rows[0])), min(2, len(mask) - 1 - int(rows[-1]))


def test_rtstruct_of_a_reexported_series_links_by_plane_position(vol, demo_root, tmp_path):
    """The series written again with new SOP UIDs and a cropped slice range; the RTSTRUCT still references the
    original SOP UIDs. auto links every contour by its plane; uid refuses, naming the fix."""
    from pydicom.uid import generate_uid

    p = vol["phase"]["up"]
    _write_rt(tmp_path / "rt.dcm", p)
    first, last = _tumour_free_ends(p["mask"])
    assert first and last
    reexport_series(demo_root / "dicom/DEMO001/S02", tmp_path / "export", drop_first=first, drop_last=last)
    res, v = ingest_to(tmp_path / "export", "DEMO001", tmp_path / "ing")
    st = res["phases"].set_index("phase").loc["up"]
    assert st["status"] == "ok" and st["series_uid"] == p["series_uid"]
    img = sitk.ReadImage(str(v / "up.nii.gz"))
    from ccgrade.outputs import read_table

    slices = read_table(v / "up.slices.tsv")
    assert not set(slices["sop_uid"]) & set(p["slices"]["sop_uid"])  # no UID in common
    mask, links = rtstruct.link_rtstruct(tmp_path / "rt.dcm", img, slices, series_uid=st["series_uid"],
                                         frame_uid=p["frame_uid"], patient="DEMO001", phase="up")
    n = len(pd.concat([pd.Series(rtstruct.mask_outlines(s)) for s in p["mask"] if s.any()]))
    assert links == {"uid": 0, "position": n}
    np.testing.assert_array_equal(mask, p["mask"][first:len(p["mask"]) - last])
    with pytest.raises(AnnotationError, match=r"patient DEMO001, phase up, file .*rt\.dcm: contour references image .* "
                                              r"not a slice of the up series \(rtstruct_link: uid\).*set rtstruct_link: auto"):
        rtstruct.link_rtstruct(tmp_path / "rt.dcm", img, slices, series_uid=st["series_uid"], frame_uid=p["frame_uid"],
                               patient="DEMO001", phase="up", link="uid")
    # another frame of reference and another series: drawn on another image, an error however it is linked
    other = reexport_series(demo_root / "dicom/DEMO001/S02", tmp_path / "other", FrameOfReferenceUID=generate_uid(),
                            SeriesInstanceUID=generate_uid())
    res2, v2 = ingest_to(tmp_path / "other", "DEMO001", tmp_path / "ing2")
    s2 = read_table(v2 / "up.slices.tsv")
    st2 = res2["phases"].set_index("phase").loc["up"]
    assert set(s2["sop_uid"]) == set(other)
    with pytest.raises(AnnotationError, match=r"nor its frame of reference\): it was drawn on other images") as e:
        rtstruct.link_rtstruct(tmp_path / "rt.dcm", img, s2, series_uid=st2["series_uid"],
                               frame_uid=str(s2["frame_uid"].iloc[0]), patient="DEMO001", phase="up")
    assert "rtstruct_link" not in str(e.value)  # (issue 27: the fix offered to override the mismatch)


def test_crop_manifest_records_how_rtstruct_contours_were_linked(vol, demo_root, tmp_path):
    p = vol["phase"]["up"]
    _write_rt(tmp_path / "rt.dcm", p)
    reexport_series(demo_root / "dicom/DEMO001/S02", tmp_path / "export")
    _, v = ingest_to(tmp_path / "export", "DEMO001", tmp_path / "ing")
    roi = {"kind": "tumor", "source": "rtstruct", "size": 16, "window": "cui"}
    man = crops.crop_patient("DEMO001", "tumor", roi, CFG["windows"]["cui"], ["up"], ["up"], v,
                             {"up": {"rtstruct": str(tmp_path / "rt.dcm")}}, 1, tmp_path / "crops").set_index("phase")
    n = sum(len(rtstruct.mask_outlines(s)) for s in p["mask"] if s.any())
    assert man.loc["up", "status"] == "ok" and man.loc["up", "link"] == f"position {n}"
    assert man.loc["up", "n_contours"] == n
    # the same structure set on the original series: linked by UID
    man = crops.crop_patient("DEMO001", "tumor", roi, CFG["windows"]["cui"], ["up"], ["up"], vol["dir"],
                             {"up": {"rtstruct": str(tmp_path / "rt.dcm")}}, 1, tmp_path / "crops0").set_index("phase")
    assert man.loc["up", "link"] == f"uid {n}"


@pytest.mark.realdata
def test_third_party_rtstructs_link_by_uid_or_fail_naming_the_missing_slice(tmp_path):
    """rt-utils' files: rt.dcm references both CT slices by SOP UID (its frame of reference UID differs from
    the CT's, which a UID link does not need); non_existent_reference_rt.dcm has a contour on a plane the
    two-slice CT does not have."""
    import pydicom
    from matplotlib.path import Path as MplPath

    from ccgrade.outputs import read_table

    d = shared_data("rt-utils")
    (tmp_path / "ct").mkdir()
    for f in ("ct_1.dcm", "ct_2.dcm"):
        shutil.copy(d / f, tmp_path / "ct" / f)
    res, v = ingest_to(tmp_path / "ct", "RTU", tmp_path / "ing")
    st = res["phases"].set_index("phase")
    ph = st.index[st["status"] == "ok"][0]
    img = sitk.ReadImage(str(v / f"{ph}.nii.gz"))
    slices = read_table(v / f"{ph}.slices.tsv")
    kw = dict(series_uid=st.loc[ph, "series_uid"], frame_uid=str(slices["frame_uid"].iloc[0]), patient="RTU", phase=ph)
    mask, links = rtstruct.link_rtstruct(d / "rt.dcm", img, slices, roi_pattern="ROI", **kw)
    assert links == {"uid": 2, "position": 0}
    # independently: pixel centres (in patient mm) inside the contours, even-odd, on the z = 60 mm slice
    ds, ct = pydicom.dcmread(d / "rt.dcm"), pydicom.dcmread(d / "ct_1.dcm")
    ox, oy = (float(x) for x in ct.ImagePositionPatient[:2])
    sy, sx = (float(x) for x in ct.PixelSpacing)
    jj, ii = np.mgrid[0:ct.Rows, 0:ct.Columns]
    centres = np.column_stack([ox + ii.ravel() * sx, oy + jj.ravel() * sy])
    want = np.zeros((ct.Rows, ct.Columns), bool)
    for c in ds.ROIContourSequence[0].ContourSequence:
        pts = np.asarray(c.ContourData, float).reshape(-1, 3)
        want ^= MplPath(pts[:, :2]).contains_points(centres).reshape(want.shape)
    k60 = int(np.argmin(np.abs(slices["position_mm"] - 60.0)))
    assert want.any() and not mask[1 - k60].any()
    np.testing.assert_array_equal(mask[k60], want)
    with pytest.raises(GeometryError, match=r"RTU.*non_existent_reference_rt\.dcm: contour of ROI 'ROI-1' lies on the "
                                            r"plane of slice index 2, outside the image .*position 70\.00 mm"):
        rtstruct.link_rtstruct(d / "non_existent_reference_rt.dcm", img, slices, roi_pattern="ROI-1", **kw)
    with pytest.raises(AnnotationError, match=r"references image 2\.16\.840\.1\.114362\.1\.11940992\.23790159890\.563423471"
                                              r"\.995\.90, which is not a slice"):
        rtstruct.link_rtstruct(d / "non_existent_reference_rt.dcm", img, slices, roi_pattern="ROI-1", link="uid", **kw)
