"""Property-based tests (hypothesis) of the geometry and crop functions against brute-force computations, and of
patient IDs kept as written through every table the front half of the DAG writes and reads."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from ccgrade.preprocess import crops, geometry

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)  # derandomized: the same cases every run


def masks(max_side=9):
    shapes = st.tuples(*(st.integers(1, max_side) for _ in range(3)))
    return shapes.flatmap(lambda s: arrays(np.bool_, s, elements=st.booleans()))


@SETTINGS
@given(masks())
def test_foreground_region_is_the_bounding_box_of_the_nonzero_voxels(m):
    region = geometry.foreground_region(m.astype(np.uint8))
    if not m.any():
        assert region is None
        return
    idx = np.argwhere(m)
    want = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0), idx.max(0)))
    assert region == want


@SETTINGS
@given(masks(), st.tuples(*(st.floats(0.3, 5.0) for _ in range(3))))
def test_diameter_from_extreme_points_equals_all_pairs(m, spacing):
    """The largest voxel-centre distance (anisotropic spacing) from the lines' end points equals the brute
    force over every voxel pair."""
    if not m.any():
        return
    sp = np.array(spacing)[::-1]  # (z, y, x) scaling
    pts = geometry.extreme_points(m) * sp
    every = np.argwhere(m) * sp
    brute = np.sqrt(((every[:, None, :] - every[None, :, :]) ** 2).sum(-1).max())
    assert np.isclose(geometry.max_pairwise_distance(pts), brute, rtol=1e-12, atol=1e-9)


@SETTINGS
@given(masks(8), st.tuples(*(st.floats(0.5, 3.0) for _ in range(3))),
       st.tuples(*(st.floats(-200, 200) for _ in range(3))))
def test_tumour_volume_and_3d_diameter_in_physical_units(m, spacing, origin):
    if not m.any():
        return
    arr = np.zeros((m.shape[0] + 2, m.shape[1] + 2, m.shape[2] + 2), np.uint8)
    arr[1:-1, 1:-1, 1:-1] = np.where(m, 2, 0)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    g = geometry.tumour_geometry(img, 2, patient="P")
    assert np.isclose(g["volume_ml"], m.sum() * np.prod(spacing) / 1000, rtol=1e-9)
    # the diameters describe the index (largest face-connected) lesion when there are several
    lab, n = ndimage.label(arr == 2)
    index_lesion = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    assert g["n_components"] == n
    every = np.argwhere(index_lesion)[:, ::-1] * np.array(spacing)  # (x, y, z) in mm
    brute = np.sqrt(((every[:, None, :] - every[None, :, :]) ** 2).sum(-1).max())
    assert np.isclose(g["max_diameter_3d_mm"], brute, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-2000, 3000)),
       st.floats(-200, 300), st.floats(1, 2000))
def test_window_is_a_clipped_monotone_map_to_the_unit_interval(hu, level, width):
    out = crops.apply_window(hu, {"level": level, "width": width})
    assert out.min() >= 0 and out.max() <= 1
    order = np.argsort(hu, kind="stable")
    assert (np.diff(out[order]) >= -1e-6).all()
    inside = (hu > level - width / 2 + 1e-3) & (hu < level + width / 2 - 1e-3)
    np.testing.assert_allclose(out[inside], ((hu[inside] - (level - width / 2)) / width), rtol=1e-5, atol=1e-5)


@SETTINGS
@given(st.integers(0, 20), st.integers(0, 20), st.integers(1, 12), st.integers(1, 12))
def test_an_unresized_box_crop_is_the_pixel_block(x1, y1, w, h):
    """A labelme box on pixel edges, sampled at its own size, returns exactly those pixels (air outside)."""
    img = np.arange(24 * 24, dtype=float).reshape(24, 24)
    size = w
    box = (x1, y1, x1 + w, y1 + w)  # square: one output size for both axes
    out = crops.sample_box(img, box, size)
    want = np.full((size, size), crops.AIR_HU)
    ys, xs = slice(y1, min(y1 + w, 24)), slice(x1, min(x1 + w, 24))
    want[: ys.stop - ys.start, : xs.stop - xs.start] = img[ys, xs]
    np.testing.assert_allclose(out, want)
    grown = crops.expand_box(box, 5.0, (0.8, 1.25))
    assert np.allclose([box[0] - grown[0], grown[2] - box[2]], 5 / 0.8)
    assert np.allclose([box[1] - grown[1], grown[3] - box[3]], 5 / 1.25)


#: valid patient IDs (the contract's pattern), biased towards what spreadsheets and pandas love to convert
PATIENT_IDS = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,8}\Z"),
    st.sampled_from(["007", "1e3", "12.50", "NA", "None", "null", "nan", "NaN", "inf", "True", "0", "00", "1.0", "-1"]).filter(
        lambda s: s[0].isalnum()),
    st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,3}|e[0-9])?\Z"),
)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(PATIENT_IDS, min_size=4, max_size=8, unique_by=str.casefold))  # (IDs differing in case only: an error)
def test_patient_ids_survive_every_table_read_of_the_front_half(tmp_path_factory, ids):
    """The stages' own command lines (analysis cohort, split, baseline), fed the tables the DAG writes,
    keep ``007`` as ``007`` and ``NA`` as a patient, not a missing value, in every table they write."""
    import json

    import pandas as pd

    from ccgrade.evaluate import baseline
    from ccgrade.outputs import write_tsv
    from ccgrade.preprocess import collect, splits
    from conftest import repo_config

    cfg = repo_config()
    d = tmp_path_factory.mktemp("ids")
    sheet = pd.DataFrame({"patient_id": ids, "grade": [1 + i % 4 for i in range(len(ids))],
                          "age": [50 + i for i in range(len(ids))], "sex": ["M", "F"] * (len(ids) // 2) + ["M"] * (len(ids) % 2)})
    write_tsv(d / "cohort.tsv", sheet)
    conf = json.dumps({"cohort": cfg["cohort"], "columns": ["age", "sex"]})
    collect.main(["cohort", "--sheet", str(d / "cohort.tsv"), "--config", conf, "--out", str(d / "sheet.tsv")])
    phase_files = []
    for i, pid in enumerate(ids):
        write_tsv(d / f"phases{i}.tsv", pd.DataFrame({"patient_id": [pid], "phase": ["up"], "status": ["ok"],
                                                      "series_uid": ["1.2"], "n_slices": [3], "spacing": [5.0],
                                                      "reason": [""]}))
        phase_files.append(str(d / f"phases{i}.tsv"))
    sconf = json.dumps({"seed": 1, "cohort": cfg["cohort"], "splits": {
        "require_phases": ["up"], "schemes": {"s": {"kind": "holdout", "fractions": {"train": 1, "test": 1}}}}})
    splits.main(["--cohort", str(d / "sheet.tsv"), "--config", sconf, "--scheme", "s", "--phase-tables", *phase_files,
                 "--json", str(d / "s.json"), "--tsv", str(d / "s.tsv")])
    doc = json.loads((d / "s.json").read_text())
    assert doc["excluded"] == [] and sorted(p for f in doc["folds"] for v in f.values() for p in v) == sorted(ids)
    for f in ("sheet.tsv", "s.tsv"):
        assert sorted(pd.read_csv(d / f, sep="\t", dtype=str, keep_default_na=False)["patient_id"]) == sorted(ids), f
    bconf = json.dumps({"seed": 1, "cohort": cfg["cohort"], "baseline": {**cfg["baseline"], "variables": [
        {"name": "age", "type": "continuous"}]}})
    baseline.main(["--cohort", str(d / "sheet.tsv"), "--split", str(d / "s.tsv"), "--config", bconf, "--by", "split",
                   "--out", str(d / "base")])
    base = pd.read_csv(d / "base.csv")
    assert any(c.startswith("train (n=") for c in base.columns)
    n = sum(int(c.split("n=")[1].rstrip(")")) for c in base.columns if "(n=" in c)
    assert n == len(ids)  # every patient reached the table
