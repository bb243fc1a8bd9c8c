"""Image grids from headers alone: the voxel grid a NIfTI/NRRD/MHA file holds (its header read, no voxels) or
that a DICOM series becomes at conversion (from the header index's slice table), and whether two grids are the
same voxels. The header survey compares a mask's grid with its image's and checks contours against the slice
planes with them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _corners(size, spacing, origin, direction) -> list[list[float]]:
    """Physical positions of the 8 corner voxel centres of a grid (sorted: independent of axis order)."""
    d = np.asarray(direction, float).reshape(3, 3)
    pts = []
    for i in (0, size[0] - 1):
        for j in (0, size[1] - 1):
            for k in (0, size[2] - 1):
                pts.append((np.asarray(origin, float) + d @ (np.array([i, j, k]) * np.asarray(spacing, float))).tolist())
    return sorted([round(v, 2) for v in p] for p in pts)


def grid_of_header(path: str) -> dict:
    """Size, spacing and corner positions of a NIfTI/NRRD/MHA file from its header (no voxels read)."""
    import SimpleITK as sitk

    rd = sitk.ImageFileReader()
    rd.SetFileName(str(path))
    rd.ReadImageInformation()
    size, sp = list(rd.GetSize()), list(rd.GetSpacing())
    if len(size) != 3:
        return {"dims": len(size), "size": size}
    return {"dims": 3, "size": size, "spacing": sp, "corners": _corners(size, sp, rd.GetOrigin(), rd.GetDirection()),
            "positions": None, "origin": list(rd.GetOrigin()), "direction": list(rd.GetDirection())}


def grid_of_series(sl: pd.DataFrame) -> dict:
    """The grid a DICOM series becomes at conversion (sorted along its normal), and its slice positions."""
    iop = np.array([float(x) for x in str(sl["iop"].iloc[0]).split()])
    n = np.cross(iop[:3], iop[3:])
    pos = np.sort(sl[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float) @ n)
    first = sl.assign(_p=sl[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float) @ n).sort_values("_p").iloc[0]
    dz = float(np.median(np.diff(pos))) if len(pos) > 1 else float(first["slice_thickness"])
    size = [int(first["cols"]), int(first["rows"]), len(sl)]
    sp = [float(first["col_spacing"]), float(first["row_spacing"]), dz]
    direction = np.column_stack([iop[:3], iop[3:], n]).ravel().tolist()
    origin = [float(first["ipp_x"]), float(first["ipp_y"]), float(first["ipp_z"])]
    return {"dims": 3, "size": size, "spacing": sp, "corners": _corners(size, sp, origin, direction),
            "positions": pos.round(3).tolist(), "origin": origin, "direction": direction}


def same_grid(a: dict, b: dict, tol: float = 0.05) -> str:
    """'' when two grids are the same voxels (in any axis order or direction), else what differs."""
    if a.get("dims") != 3 or b.get("dims") != 3:
        return f"a {b.get('dims')}D image against a 3D image"
    pa = sorted(zip(a["size"], np.round(a["spacing"], 3)))
    pb = sorted(zip(b["size"], np.round(b["spacing"], 3)))
    if pa != pb:
        return f"size {b['size']} at {np.round(b['spacing'], 3).tolist()} mm vs image {a['size']} at " \
               f"{np.round(a['spacing'], 3).tolist()} mm"
    if not np.allclose(np.array(a["corners"]), np.array(b["corners"]), atol=max(tol, 0.1 * min(a["spacing"]))):
        return "the same size but another position in space (origin or direction differ)"
    return ""
