"""Readers for the three annotation formats of the studies, each linked to slices of an ingested series.

- labelme rectangle JSON, one file per slice (Cui); ``imagePath`` names the DICOM file (any extension)
  or its SOPInstanceUID;
- NIfTI/NRRD label masks on the series grid (ITK-SNAP style; Li, Sun), geometry-checked;
- MD.ai-style polygon JSON with vertex lists per SOPInstanceUID (Dai).
Coordinates are labelme's continuous pixel coordinates: pixel (row j, column i) covers [i, i+1) x [j, j+1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ccgrade.errors import AnnotationError, GeometryError

Box = tuple[float, float, float, float]  # x1, y1, x2, y2


def _slice_lookup(slices: pd.DataFrame) -> dict[str, int]:
    look = {}
    for r in slices.itertuples():
        look[Path(str(r.file)).name] = r.k
        look[Path(str(r.file)).stem] = r.k
        look[str(r.sop_uid)] = r.k
        if "name_key" in slices:  # a pseudonymised slice table: the keyed hash of the file's name
            look[str(r.name_key)] = r.k
    return look


def _find(look: dict[str, int], names: list[str], key) -> int | None:
    """The slice a file name or SOP UID names (through ``key``'s pseudonyms when the table holds them)."""
    for n in names:
        for cand in ([n, key.key("name", Path(n).stem), key.uid(n)] if key is not None else [n]):
            if cand in look:
                return look[cand]
    return None


def read_labelme_boxes(folder: str | Path, slices: pd.DataFrame, shape: tuple[int, int], *,
                       patient: str, phase: str, key=None) -> tuple[dict[int, Box], list[str]]:
    """Rectangles per slice index from a folder of labelme JSON files; returns boxes and notes."""
    folder = Path(folder)
    look, boxes, notes = _slice_lookup(slices), {}, []
    h, w = shape
    for f in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            shapes = doc["shapes"]
            image_path = str(doc.get("imagePath") or f.stem)
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise AnnotationError(f"not a labelme JSON ({type(e).__name__}: {e})", patient=patient, phase=phase,
                                  file=str(f)) from None
        stem = Path(image_path.replace("\\", "/")).stem
        k = _find(look, [stem, Path(image_path).name], key)
        if k is None:
            raise AnnotationError(f"imagePath {image_path!r} matches no slice (file name or SOPInstanceUID) of the "
                                  f"{phase} series", patient=patient, phase=phase, file=str(f))
        if doc.get("imageHeight") and doc.get("imageWidth") and (int(doc["imageHeight"]), int(doc["imageWidth"])) != (h, w):
            raise AnnotationError(f"annotated image is {doc['imageHeight']}x{doc['imageWidth']} but the series slice "
                                  f"is {h}x{w}", patient=patient, phase=phase, file=str(f))
        rects = [s for s in shapes if s.get("shape_type") == "rectangle"]
        if not rects:
            notes.append(f"{f.name}: no rectangle")
            continue
        pts = np.array([p for s in rects for p in s["points"]], float)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2 or not np.isfinite(pts).all():
            raise AnnotationError("rectangle points must be two [x, y] pairs", patient=patient, phase=phase, file=str(f))
        x1, y1 = pts.min(axis=0)
        x2, y2 = pts.max(axis=0)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            raise AnnotationError(f"rectangle has no area ({x1:.1f},{y1:.1f})-({x2:.1f},{y2:.1f})", patient=patient,
                                  phase=phase, file=str(f))
        if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
            raise AnnotationError(f"rectangle ({x1:.1f},{y1:.1f})-({x2:.1f},{y2:.1f}) lies outside the {w}x{h} image",
                                  patient=patient, phase=phase, file=str(f))
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            notes.append(f"{f.name}: rectangle clipped to the image")
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if k in boxes:  # several files for one slice: union
            b = boxes[k]
            x1, y1, x2, y2 = min(b[0], x1), min(b[1], y1), max(b[2], x2), max(b[3], y2)
        boxes[k] = (float(x1), float(y1), float(x2), float(y2))
    return boxes, notes


def read_polygons(path: str | Path, slices: pd.DataFrame, *, patient: str, phase: str,
                  key=None) -> dict[int, np.ndarray]:
    """Polygon vertices (N x 2, pixel x/y) per slice index from an MD.ai-style JSON export."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        anns = [a for ds in doc.get("datasets", [doc]) for a in ds.get("annotations", [])]
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"not a polygon JSON ({e})", patient=patient, phase=phase, file=str(path)) from None
    look, out = _slice_lookup(slices), {}
    for a in anns:
        sop = str(a.get("SOPInstanceUID", ""))
        if key is not None:
            sop = key.uid(sop)
        if sop not in look:
            raise AnnotationError(f"SOPInstanceUID {sop!r} is not a slice of the {phase} series", patient=patient,
                                  phase=phase, file=str(path))
        v = np.asarray((a.get("data") or {}).get("vertices", []), float)
        if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
            raise AnnotationError(f"polygon on {sop} needs at least three [x, y] vertices", patient=patient,
                                  phase=phase, file=str(path))
        out[look[sop]] = v
    return out


def polygon_centroid(v: np.ndarray) -> tuple[float, float]:
    """Area centroid of a simple polygon (shoelace formula); vertex mean if degenerate."""
    x, y = v[:, 0], v[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = cross.sum() / 2
    if abs(a) < 1e-9:
        return float(x.mean()), float(y.mean())
    return float(((x + x1) * cross).sum() / (6 * a)), float(((y + y1) * cross).sum() / (6 * a))


def same_geometry(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-2) -> str:
    """Empty string when two images share size, spacing, origin and direction; else what differs."""
    if a.GetSize() != b.GetSize():
        return f"size {b.GetSize()} vs image {a.GetSize()}"
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-4, atol=1e-5):
        return f"spacing {np.round(b.GetSpacing(), 4).tolist()} vs image {np.round(a.GetSpacing(), 4).tolist()}"
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol_mm):
        return f"origin {np.round(b.GetOrigin(), 3).tolist()} vs image {np.round(a.GetOrigin(), 3).tolist()}"
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4):
        return "direction cosines differ"
    return ""


def read_label_image(path: str | Path, *, patient: str, phase: str = "") -> sitk.Image:
    """Read a NIfTI/NRRD label image; a clear error names the patient, phase and file."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise AnnotationError(f"cannot read mask ({str(e).strip().splitlines()[-1]})", patient=patient, phase=phase,
                              file=str(path)) from None


def aligned_label_image(m: sitk.Image, reference: sitk.Image, *, patient: str, phase: str, file: str) -> sitk.Image:
    """A label image on the reference image's grid: as it is, or the same grid stored in another axis order or
    direction (e.g. KiTS masks vs LPS volumes) reoriented; any other geometry is an error naming the file."""
    diff = same_geometry(reference, m)
    if diff:
        code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(reference.GetDirection())
        try:
            oriented = sitk.DICOMOrient(m, code) if len(code) == 3 else None
        except RuntimeError:
            oriented = None
        if oriented is not None and not same_geometry(reference, oriented):
            return oriented
        raise GeometryError(f"mask geometry differs from the image: {diff}", patient=patient, phase=phase, file=file)
    return m


def read_mask(path: str | Path, reference: sitk.Image, label: int, *, patient: str, phase: str) -> np.ndarray:
    """Boolean tumour mask (z, y, x) of ``label`` from a label image that must share the image's geometry."""
    m = aligned_label_image(read_label_image(path, patient=patient, phase=phase), reference, patient=patient,
                            phase=phase, file=str(path))
    arr = sitk.GetArrayFromImage(m) == label
    if not arr.any():
        raise AnnotationError(f"mask has no voxel with the tumour label {label}", patient=patient, phase=phase,
                              file=str(path))
    return arr


def boxes_from_mask(mask: np.ndarray, min_pixels: int = 1) -> dict[int, Box]:
    """Tight per-slice bounding boxes (labelme coordinates) of a 3D mask."""
    out = {}
    for k in np.nonzero(mask.reshape(len(mask), -1).sum(1) >= min_pixels)[0]:
        jj, ii = np.nonzero(mask[k])
        out[int(k)] = (float(ii.min()), float(jj.min()), float(ii.max() + 1), float(jj.max() + 1))
    return out
