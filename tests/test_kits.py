"""The KiTS adapter and the mask geometry stage on real KiTS23 files (skipped when ../shared/data is absent).

Every geometric number is checked against an independent computation: nibabel (not SimpleITK) reads
the same file, and volumes, diameters and side come from plain numpy/scipy on its RAS affine.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.distance import pdist

from ccgrade.config.cohort import validate_cohort
from ccgrade.errors import AnnotationError
from ccgrade.ingest import kits
from ccgrade.preprocess import geometry
from conftest import repo_config, shared_data

pytestmark = pytest.mark.realdata

#: small real masks (fast to read); case_00041 holds several separate lesions
CASES = ["case_00061", "case_00038", "case_00148", "case_00110", "case_00004", "case_00041"]
#: radiographic size (CT report, cm) vs our maximal axial diameter: agreement within this many cm
SIZE_TOLERANCE_CM = 1.0


@pytest.fixture(scope="module")
def kits_root():
    return shared_data("kits23")


def test_adapter_keeps_graded_clear_cell_and_maps_fields(kits_root):
    df, left = kits.load_kits(kits_root)
    raw = {c["case_id"]: c for c in json.loads((kits_root / "kits23.json").read_text())}
    assert len(df) == 308 and len(left) == len(raw) - 308
    assert df["grade"].value_counts().sort_index().tolist() == [34, 151, 86, 37]
    assert ((df["grade"] <= 2).sum(), (df["grade"] >= 3).sum()) == (185, 123)
    assert set(left["reason"].str.split().str[0]) == {"histology", "no"}
    assert (left["reason"] == "no ISUP grade").sum() == 2
    # field mapping, checked against the raw JSON for every kept case
    for r in df.itertuples():
        c = raw[r.patient_id]
        como = c["comorbidities"]
        assert r.age == c["age_at_nephrectomy"] and r.sex == {"male": "M", "female": "F"}[c["gender"]]
        want = "yes" if (como["uncomplicated_diabetes_mellitus"] or como["diabetes_mellitus_with_end_organ_damage"]) else "no"
        assert r.diabetes == want and r.ckd == ("yes" if como["chronic_kidney_disease"] else "no")
        if c["radiographic_size"] is None:
            assert np.isnan(r.tumor_size_cm)
        else:
            assert r.tumor_size_cm == pytest.approx(c["radiographic_size"])
        if c["pathology_t_stage"]:
            assert r.t_stage == "T" + c["pathology_t_stage"] and r.t_stage_group == "T" + c["pathology_t_stage"][0]
    assert (df["mask"].notna()).all() and df["image"].isna().all()  # masks only in ../shared/data
    # through the cohort contract: a mask-only cohort is valid (no images needed for mask stages)
    cfg = repo_config()
    c = validate_cohort(kits.kits_sources(df, "cmp"), cfg, file="kits23.json")
    assert (c["grade_group"] == "high").sum() == 123 and "mask_cmp" in c


def _independent(path):
    """Volume, 3D/axial diameter, bounding box and side from nibabel + numpy (RAS coordinates)."""
    import nibabel as nib

    im = nib.load(str(path))
    a = np.asarray(im.dataobj)
    aff = im.affine
    zooms = np.asarray(im.header.get_zooms()[:3], float)
    t = a == 2
    vol = t.sum() * zooms.prod() / 1000
    lab, n = ndimage.label(t)
    if n > 1:  # sizes describe the largest lesion
        t = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    border = t & ~ndimage.binary_erosion(t)  # hull points lie on the border
    ijk = np.argwhere(border)
    xyz = nib.affines.apply_affine(aff, ijk)
    d3 = pdist(xyz).max()
    # axial = the voxel axis most aligned with RAS z
    zax = int(np.argmax(np.abs(aff[2, :3])))
    d_ax = 0.0
    for s in np.unique(ijk[:, zax]):
        pts = xyz[ijk[:, zax] == s]
        if len(pts) > 1:
            d_ax = max(d_ax, pdist(pts).max())
    # side: the two largest connected components of kidney+tumour+cyst; which holds the tumour
    t = a == 2
    lab, n = ndimage.label(a > 0)
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, range(1, n + 1))
    big = np.argsort(sizes)[-2:] + 1
    side = None
    if n >= 2:
        cx = [nib.affines.apply_affine(aff, np.argwhere(lab == k).mean(0))[0] for k in big]
        tk = [int((t & (lab == k)).sum()) for k in big]
        tumour_comp = int(np.argmax(tk))
        # RAS +x is the patient's right; >= 1 mL of tumour in each kidney is bilateral
        if min(tk) * zooms.prod() / 1000 >= 1.0:
            side = "bilateral"
        else:
            side = "right" if cx[tumour_comp] > cx[1 - tumour_comp] else "left"
    return {"volume_ml": vol, "d3": d3, "d_ax": d_ax, "side": side}


@pytest.mark.parametrize("case", CASES)
def test_geometry_matches_independent_numpy(kits_root, case):
    path = kits_root / "masks" / f"{case}.nii.gz"
    rec = geometry.tumour_geometry(sitk.ReadImage(str(path)), 2, patient=case, file=str(path))
    ind = _independent(path)
    assert rec["volume_ml"] == pytest.approx(ind["volume_ml"], rel=1e-9)
    assert rec["max_diameter_3d_mm"] == pytest.approx(ind["d3"], abs=1e-3)
    assert rec["max_axial_diameter_mm"] == pytest.approx(ind["d_ax"], abs=1e-3)
    if ind["side"] is not None and rec["side_method"] == "two kidney clusters":
        assert rec["side"] == ind["side"]
    # ROI extents: box5mm is the box grown 5 mm per side; the tumour fills part of its box
    assert rec["box5mm_w_mm"] == pytest.approx(rec["box_w_mm"] + 10)
    assert 0.3 < rec["tumor_fill_of_box"] <= 1.0
    assert rec["max_axial_diameter_mm"] <= rec["max_diameter_3d_mm"] + 1e-9


def test_size_agreement_with_radiographic_size(kits_root):
    """Report how many of the test cases' maximal axial diameters agree with the table's radiographic size."""
    df, _ = kits.load_kits(kits_root)
    size = df.set_index("patient_id")["tumor_size_cm"]
    agree = []
    for case in CASES:
        path = kits_root / "masks" / f"{case}.nii.gz"
        rec = geometry.tumour_geometry(sitk.ReadImage(str(path)), 2, patient=case, file=str(path))
        agree.append(abs(rec["max_axial_diameter_mm"] / 10 - size[case]) <= SIZE_TOLERANCE_CM)
    print(f"{sum(agree)}/{len(agree)} cases within {SIZE_TOLERANCE_CM} cm of the radiographic size")
    assert sum(agree) >= len(agree) - 1


def test_no_tumour_label_names_file(kits_root, tmp_path):
    m = sitk.ReadImage(str(kits_root / "masks" / "case_00004.nii.gz"))
    with pytest.raises(AnnotationError, match=r"patient case_00004, file .*case_00004.*no voxel with the tumour label 5"):
        geometry.tumour_geometry(m, 5, patient="case_00004", file="case_00004.nii.gz")
