import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ccgrade.annotations import readers as ann
from ccgrade.config.cohort import patient_sources
from ccgrade.errors import AnnotationError, GeometryError
from ccgrade.preprocess import crops
from conftest import PHASES, ingest_to, repo_config

CFG = repo_config()


@pytest.fixture(scope="module")
def volumes(demo_root, tmp_path_factory):
    return ingest_to(demo_root / "dicom" / "DEMO002", "DEMO002", tmp_path_factory.mktemp("vol"), "DEMO002")[1]


def test_window_numbers():
    hu = np.array([-200.0, -105.0, 40.0, 185.0, 400.0])
    np.testing.assert_allclose(crops.apply_window(hu, {"level": 40, "width": 290}), [0, 0, 0.5, 1, 1])
    z = crops.apply_window(hu, {"zscore": True})
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-3


def demo_sources(root, pid):
    return patient_sources({"annotation_dir": str(root / "annotations" / pid)}, PHASES)


def test_box_crop_equals_pixels_when_not_resized():
    img = np.arange(100.0).reshape(10, 10)
    out = crops.sample_box(img, (2, 3, 6, 7), 4)  # labelme box covering columns 2-5, rows 3-6
    np.testing.assert_allclose(out, img[3:7, 2:6])
    assert crops.sample_box(img, (8, 8, 12, 12), 4)[-1, -1] == crops.AIR_HU  # outside -> air


def test_polygon_centroid_square_and_triangle():
    assert ann.polygon_centroid(np.array([[0, 0], [4, 0], [4, 2], [0, 2]], float)) == pytest.approx((2, 1))
    assert ann.polygon_centroid(np.array([[0, 0], [3, 0], [0, 3]], float)) == pytest.approx((1, 1))


def test_every_roi_of_a_demo_patient(demo_root, volumes, tmp_path):
    windows = CFG["windows"]
    rois = {"box": {"kind": "box", "source": "labelme", "margin_mm": 0.0, "size": 24, "window": "cui"},
            "tumor": {"kind": "tumor", "source": "mask", "size": 24, "window": "cui"},
            "box5mm": {"kind": "box", "source": "labelme", "margin_mm": 5.0, "size": 24, "window": "cui"},
            "centroid": {"kind": "centroid", "source": "polygons", "box_px": 20, "size": 24, "window": "dai"},
            "cube": {"kind": "cube", "source": "mask", "spacing_mm": 1.0, "size": 16, "window": "zscore"},
            "slice": {"kind": "slice", "source": "mask", "size": 24, "window": "zscore"}}
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(demo_root / "annotations/DEMO002/cmp/mask.nii.gz")))
    n_tumour_slices = int((mask.reshape(len(mask), -1).sum(1) >= 10).sum())
    res = {}
    for name, roi in rois.items():
        man = crops.crop_patient("DEMO002", name, roi, windows[roi["window"]], PHASES, ["cmp", "np", "ep"], volumes,
                                 demo_sources(demo_root, "DEMO002"), 1, tmp_path / name)
        assert (man["status"] == "ok").all(), man
        res[name] = {p: np.load(tmp_path / name / f"{p}.npz") for p in PHASES + ["stack"]}
    box = res["box"]["cmp"]
    assert box["images"].shape == (n_tumour_slices, 1, 24, 24) and box["images"].dtype == np.float16
    assert res["box"]["stack"]["images"].shape == (n_tumour_slices, 3, 24, 24)
    # the stack's first channel is the cmp crop itself
    np.testing.assert_array_equal(res["box"]["stack"]["images"][:, 0], box["images"][:, 0])
    # box5mm is the same box grown by 5 mm on each side
    sp = 300 / 96
    np.testing.assert_allclose(res["box5mm"]["cmp"]["boxes"], box["boxes"] + np.array([-5, -5, 5, 5]) / sp, atol=1e-6)
    # tumour-only: zero outside the mask, windowed HU inside
    t = res["tumor"]["cmp"]
    assert t["slice_index"].tolist() == np.nonzero(mask.reshape(len(mask), -1).any(1))[0].tolist()
    assert (t["images"] == 0).any() and t["images"].max() > 0.3
    # centroid boxes are box_px wide, centred on the polygon centroid
    c = res["centroid"]["cmp"]["boxes"]
    np.testing.assert_allclose(c[:, 2] - c[:, 0], 20)
    cube = res["cube"]["cmp"]["images"].astype(np.float32)
    assert cube.shape == (1, 1, 16, 16, 16) and abs(cube.mean()) < 0.05 and abs(cube.std() - 1) < 0.05
    # Li's 2D input: the whole slice (resized, z-scored per slice) at every tumour slice; the boxes stay the tumour's
    sl = res["slice"]["cmp"]
    assert sl["slice_index"].tolist() == t["slice_index"].tolist()
    img = sl["images"].astype(np.float32)
    assert img.shape == (len(t["slice_index"]), 1, 24, 24)
    np.testing.assert_allclose(img.mean(axis=(1, 2, 3)), 0, atol=2e-3)
    np.testing.assert_allclose(img.std(axis=(1, 2, 3)), 1, atol=2e-3)
    np.testing.assert_allclose(sl["boxes"], t["boxes"])
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(volumes / "cmp.nii.gz")))
    k = int(sl["slice_index"][0])
    whole = crops.apply_window(crops.sample_box(hu[k].astype(np.float32), (0, 0, 96, 96), 24), {"zscore": True})
    np.testing.assert_allclose(img[0, 0], whole, atol=2e-2)  # float16 storage
    # plausibility: corticomedullary tumour enhancement exceeds the plain phase's
    assert res["tumor"]["cmp"]["images"].astype(float).sum() > res["tumor"]["up"]["images"].astype(float).sum()


def test_only_the_targets_read_are_cropped(demo_root, volumes, tmp_path):
    """A crop job makes the files some model or figure reads; the rest are empty placeholders without a manifest
    row, and the files it makes equal those of a job that crops everything."""
    roi = {"kind": "box", "source": "labelme", "margin_mm": 0.0, "size": 24, "window": "cui"}
    args = ("DEMO002", "box", roi, CFG["windows"]["cui"], PHASES, ["cmp", "np", "ep"], volumes,
            demo_sources(demo_root, "DEMO002"), 1)
    full = crops.crop_patient(*args, tmp_path / "all")
    part = crops.crop_patient(*args, tmp_path / "part", targets=["np", "stack"])
    assert list(part["phase"]) == ["np", "stack"] and list(full["phase"]) == PHASES + ["stack"]
    for t in PHASES + ["stack"]:
        z = np.load(tmp_path / "part" / f"{t}.npz")
        if t in ("np", "stack"):
            np.testing.assert_array_equal(z["images"], np.load(tmp_path / "all" / f"{t}.npz")["images"])
        else:
            assert str(z["status"]) == "skipped" and z["images"].size == 0 and "no configured model" in str(z["reason"])


def test_box_outside_image_names_patient_phase_file(demo_root, volumes, tmp_path):
    lab = tmp_path / "ann" / "cmp" / "labelme"
    shutil.copytree(demo_root / "annotations/DEMO002/cmp/labelme", lab)
    f = sorted(lab.glob("*.json"))[0]
    doc = json.loads(f.read_text())
    doc["shapes"][0]["points"] = [[200, 200], [230, 240]]
    f.write_text(json.dumps(doc))
    slices = pd.read_csv(volumes / "cmp.slices.tsv", sep="\t", dtype=str).assign(k=lambda d: d.k.astype(int))
    with pytest.raises(AnnotationError) as e:
        ann.read_labelme_boxes(lab, slices, (96, 96), patient="DEMO002", phase="cmp")
    msg = str(e.value)
    assert "patient DEMO002" in msg and "phase cmp" in msg and f.name in msg and "outside" in msg
    doc["shapes"][0]["points"] = [[50, 50], [50, 60]]
    f.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match="no area"):
        ann.read_labelme_boxes(lab, slices, (96, 96), patient="DEMO002", phase="cmp")
    doc["shapes"][0]["points"] = [[90, 40], [110, 60]]
    f.write_text(json.dumps(doc))
    boxes, notes = ann.read_labelme_boxes(lab, slices, (96, 96), patient="DEMO002", phase="cmp")
    assert max(b[2] for b in boxes.values()) == 96 and any("clipped" in n for n in notes)


def test_mask_geometry_mismatch(demo_root, volumes, tmp_path):
    ref = sitk.ReadImage(str(volumes / "cmp.nii.gz"))
    m = sitk.ReadImage(str(demo_root / "annotations/DEMO002/cmp/mask.nii.gz"))
    m.SetOrigin(tuple(np.array(m.GetOrigin()) + [0, 0, 2.5]))
    sitk.WriteImage(m, str(tmp_path / "m.nii.gz"))
    with pytest.raises(GeometryError, match=r"patient DEMO002, phase cmp, file .*m\.nii\.gz: mask geometry differs.*origin"):
        ann.read_mask(tmp_path / "m.nii.gz", ref, 1, patient="DEMO002", phase="cmp")


def test_excluded_phase_gives_excluded_crop(volumes, demo_root, tmp_path):
    vol = tmp_path / "vol"
    shutil.copytree(volumes, vol)
    st = pd.read_csv(vol / "phases.tsv", sep="\t", keep_default_na=False)
    st.loc[st.phase == "np", ["status", "reason"]] = ["excluded", "missing slice(s): gap"]
    st.to_csv(vol / "phases.tsv", sep="\t", index=False)
    man = crops.crop_patient("DEMO002", "box", {"kind": "box", "size": 16, "window": "cui"}, CFG["windows"]["cui"],
                             PHASES, ["cmp", "np", "ep"], vol, demo_sources(demo_root, "DEMO002"), 1, tmp_path / "c")
    m = man.set_index("phase")
    assert m.loc["np", "status"] == "excluded" and "missing slice" in m.loc["np", "reason"]
    assert m.loc["stack", "status"] == "excluded" and m.loc["cmp", "status"] == "ok"
