"""pyradiomics per patient: features against numpy on the same voxels, shape from a mask alone, errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from ccgrade.errors import AnnotationError
from ccgrade.fusion import radiomics
from conftest import ingest_to


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    """Native spacing (no resampling), original image: numbers a plain numpy computation can confirm."""
    p = tmp_path_factory.mktemp("rad") / "params.yaml"
    p.write_text(yaml.safe_dump({"setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}},
                                 "featureClass": {"shape": None, "firstorder": None}}))
    return p


@pytest.fixture(scope="module")
def volumes(demo_root, tmp_path_factory):
    return ingest_to(demo_root / "dicom" / "DEMO001", "DEMO001", tmp_path_factory.mktemp("vol"), "DEMO001")[1]


def test_features_agree_with_numpy_on_the_same_voxels(demo_root, volumes, params):
    mask_file = demo_root / "annotations/DEMO001/cmp/mask.nii.gz"
    row = radiomics.patient_features("DEMO001", "cmp", params, volumes=volumes, roi={"kind": "tumor", "source": "mask"},
                                     sources={"mask": str(mask_file)})
    assert row["status"].iloc[0] == "ok" and row["mode"].iloc[0] == "full"
    img = sitk.ReadImage(str(volumes / "cmp.nii.gz"))
    hu = sitk.GetArrayFromImage(img)
    m = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_file))) == 1
    vox = hu[m].astype(float)
    r = row.iloc[0]
    assert r["original_shape_VoxelVolume"] == pytest.approx(m.sum() * np.prod(img.GetSpacing()))
    assert r["original_firstorder_Mean"] == pytest.approx(vox.mean(), rel=1e-6)
    assert r["original_firstorder_Maximum"] == pytest.approx(vox.max())
    assert r["original_firstorder_Variance"] == pytest.approx(vox.var(), rel=1e-6)
    assert r["pyradiomics_version"] == radiomics.version()
    # the mask alone gives the same shape features (no intensities needed), and only those
    shape = radiomics.patient_features("DEMO001", "cmp", params, mask_file=str(mask_file))
    assert shape["mode"].iloc[0] == "shape"
    feats = radiomics.feature_columns(shape)
    assert feats and all("_shape_" in f for f in feats)
    for f in feats:
        assert shape[f].iloc[0] == pytest.approx(r[f], rel=1e-9), f


def test_bad_masks_are_named_and_recorded(demo_root, volumes, params, tmp_path):
    img = sitk.ReadImage(str(volumes / "cmp.nii.gz"))
    shifted = sitk.Image(img.GetSize(), sitk.sitkUInt8)
    shifted.CopyInformation(img)
    shifted.SetOrigin(tuple(o + 3.0 for o in img.GetOrigin()))
    shifted[10, 10, 5] = 1
    with pytest.raises(AnnotationError, match=r"DEMO001.*origin"):
        radiomics.extract(shifted, params, patient="DEMO001", image=img)
    empty = tmp_path / "empty.nii.gz"
    blank = sitk.Image(img.GetSize(), sitk.sitkUInt8)
    blank.CopyInformation(img)
    sitk.WriteImage(blank, str(empty))
    row = radiomics.patient_features("DEMO001", "cmp", params, mask_file=str(empty))
    assert row["status"].iloc[0] == "excluded" and "empty" in row["reason"].iloc[0]
    table = radiomics.feature_table([row, radiomics.patient_features("DEMO002", "cmp", params,
                                                                       mask_file=str(demo_root / "annotations/DEMO002/cmp/mask.nii.gz"))])
    assert table["patient_id"].tolist() == ["DEMO001", "DEMO002"] and table["status"].tolist() == ["excluded", "ok"]


def test_shape_fast_path_equals_a_plain_pyradiomics_extraction():
    """Shape features from the mask alone skip pyradiomics' whole-volume work but not its resampling grid:
    on an anisotropic, flipped, off-origin mask they equal a plain extraction with the repository's
    settings (1 mm B-spline resampling, padding) to the last bit."""
    import logging
    from pathlib import Path

    from radiomics import featureextractor

    from conftest import REPO

    zz, yy, xx = np.mgrid[:40, :50, :60]
    arr = ((((zz - 20) / 9) ** 2 + ((yy - 23) / 8) ** 2 + ((xx - 31) / 13) ** 2) < 1).astype(np.uint8)
    arr[18:22, 10:14, 20:26] = 1  # a knob: not a plain ellipsoid
    mask = sitk.GetImageFromArray(arr)
    mask.SetSpacing((0.81054, 0.81054, 0.5))
    mask.SetOrigin((-102.3, 17.7, -500.25))
    mask.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    params = Path(REPO / "config/radiomics.yaml")
    fast = radiomics.extract(mask, params, patient="P1")
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    ext = featureextractor.RadiomicsFeatureExtractor(str(params))
    ext.disableAllFeatures()
    ext.enableFeatureClassByName("shape")
    ext.disableAllImageTypes()
    ext.enableImageTypeByName("Original")
    plain = {k: float(v) for k, v in ext.execute(sitk.Cast(mask, sitk.sitkFloat32), mask, label=1).items()
             if not k.startswith("diagnostics_")}
    assert ext.settings["resampledPixelSpacing"] == [1, 1, 1] and len(plain) == 14
    assert fast == plain


@pytest.mark.realdata
def test_shape_features_of_real_kits_masks(params):
    """Real KiTS23 masks (label 2 = tumour): pyradiomics' voxel volume and extent against nibabel + numpy."""
    import nibabel as nib
    from conftest import shared_data

    root = shared_data("kits23")
    for case in ("case_00061", "case_00041"):  # 00041 holds several separate lesions
        f = next((root / "masks").glob(f"{case}*"))
        row = radiomics.patient_features(case, "cmp", params, mask_file=str(f), mask_label=2)
        assert row["status"].iloc[0] == "ok" and row["mode"].iloc[0] == "shape"
        nii = nib.load(str(f))
        tum = np.asarray(nii.dataobj) == 2
        voxel_ml = abs(np.linalg.det(nii.affine[:3, :3]))
        assert row["original_shape_VoxelVolume"].iloc[0] == pytest.approx(tum.sum() * voxel_ml, rel=1e-9)
        assert row["original_shape_MeshVolume"].iloc[0] == pytest.approx(tum.sum() * voxel_ml, rel=0.05)


def test_a_missing_annotation_is_an_exclusion_row(volumes, params):
    row = radiomics.patient_features("DEMO001", "cmp", params, volumes=volumes,
                                     roi={"kind": "tumor", "source": ["mask", "rtstruct"]}, sources={})
    assert row["status"].iloc[0] == "excluded"
    assert row["reason"].iloc[0] == "patient DEMO001: no mask or rtstruct annotation for phase cmp"
