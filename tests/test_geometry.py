"""Geometry and the KiTS adapter on synthetic inputs whose answers are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from ccgrade import geometry, kits
from ccgrade.errors import CohortError


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
