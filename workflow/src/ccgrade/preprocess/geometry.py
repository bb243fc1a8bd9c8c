"""Tumour geometry from a label mask alone: volume, diameters, extents, ROI sizes and tumour side.

Works on real cohort masks of any orientation (e.g. KiTS's 611 x 512 x 512 volumes whose first array
axis runs head-to-foot), in physical LPS coordinates as SimpleITK reads them:

- ``volume_ml``: tumour voxels x voxel volume (all lesions); when the mask holds several separate
  lesions (``n_components``), every size below describes the largest, the index lesion
  (``index_volume_ml``), as a radiologist's "tumour size" does;
- ``max_diameter_3d_mm``: largest distance between two tumour voxel centres (convex hull of the
  per-line extreme voxels, then all hull-vertex pairs: exact, and fast on 10^6-voxel tumours);
- ``max_axial_diameter_mm``: the same within single axial slices (how radiologists measure size);
- ``extent_{x,y,z}_mm``: the tumour's bounding box along the patient axes (voxel edges included);
- ROI extents of the three settings of Sun et al. on the tumour's largest axial slice: ``box`` (tight
  rectangle), ``box5mm`` (rectangle grown 5 mm per side) and ``tumor`` (tumour-only area), in mm/mm²;
- ``side``: the tumour's kidney (left/right/bilateral) from the mask's kidney labels: foreground
  voxels split into two clusters along the patient's left-right axis; LPS +x is the patient's left.
  ``kidney_dz_mm`` (left kidney centroid minus right, craniocaudal) is written so that a cohort-level
  anatomical check (the left kidney usually lies higher) can confirm the header's orientation. A mask
  with one cluster (a tumour-only mask, a solitary kidney) gets its side from the anatomy when the CT is
  at hand (the tumour's centroid against the body's midline on its slices, outside a margin), otherwise
  ``unknown``: never a guess from the volume's centre.
The tumour may come from a label mask, or from an RTSTRUCT or polygon outline rasterised on the ingested
volume (``patient_geometry``); a patient whose outline cannot be read gets a row with ``status`` excluded
and the reason.
Only a bounding region of the foreground is ever copied out of the mask (the full-volume passes are
two max-projections), so the stage costs little more than reading the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ccgrade.annotations.readers import read_label_image
from ccgrade.errors import AnnotationError
from ccgrade.outputs import write_tsv
from ccgrade.privacy.pseudonyms import for_job, run_scrubbed, scrub

GEOMETRY_COLUMNS = [
    "patient_id", "phase", "status", "reason", "source", "mask_file", "tumour_label", "n_voxels", "n_components", "volume_ml", "index_volume_ml",
    "max_diameter_3d_mm", "max_axial_diameter_mm", "extent_x_mm", "extent_y_mm", "extent_z_mm", "n_axial_slices",
    "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "box_w_mm", "box_h_mm", "box_area_mm2",
    "box5mm_w_mm", "box5mm_h_mm", "box5mm_area_mm2", "tumor_area_mm2", "tumor_fill_of_box",
    "side", "side_method", "kidney_dz_mm", "spacing_mm", "size_voxels",
]


def _axis_map(img: sitk.Image) -> list[int]:
    """For each patient axis (x, y, z of LPS) the image axis (SimpleITK order) most aligned with it."""
    d = np.abs(np.array(img.GetDirection()).reshape(3, 3))
    out = [int(np.argmax(d[p])) for p in range(3)]
    if len(set(out)) != 3:
        raise ValueError("oblique mask: no one-to-one mapping of image axes to patient axes")
    return out


def foreground_region(arr: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding slices (numpy order) of the non-zero voxels via two cheap max-projections."""
    p = arr.max(axis=0)
    rows, cols = np.flatnonzero(p.any(axis=1)), np.flatnonzero(p.any(axis=0))
    if not len(rows):
        return None
    sub = arr[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    zs = np.flatnonzero(sub.reshape(len(sub), -1).max(axis=1))
    return slice(zs[0], zs[-1] + 1), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _to_physical(img: sitk.Image, idx_zyx: np.ndarray) -> np.ndarray:
    """Physical LPS points (N x 3) of numpy (z, y, x) voxel indices."""
    ijk = idx_zyx[:, ::-1].astype(float)
    d = np.array(img.GetDirection()).reshape(3, 3)
    return np.asarray(img.GetOrigin()) + (ijk * np.asarray(img.GetSpacing())) @ d.T


def extreme_points(mask: np.ndarray) -> np.ndarray:
    """(z, y, x) indices of the first and last True voxel on every line along the last axis.

    The convex hull of these equals the convex hull of the whole mask (every voxel lies between two).
    """
    hit = mask.any(axis=2)
    z, y = np.nonzero(hit)
    first = mask.argmax(axis=2)[z, y]
    last = mask.shape[2] - 1 - mask[:, :, ::-1].argmax(axis=2)[z, y]
    return np.concatenate([np.column_stack([z, y, first]), np.column_stack([z, y, last])])


def max_pairwise_distance(pts: np.ndarray) -> float:
    """Largest distance between two points (exact): convex-hull vertices, then all their pairs."""
    pts = np.unique(pts, axis=0)
    if len(pts) < 2:
        return 0.0
    if len(pts) > 4:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:  # flat (single slice / line): the diameter is still among all points
            pass
    best = 0.0
    for s in range(0, len(pts), 512):  # chunked so that memory stays bounded
        d = ((pts[s:s + 512, None, :] - pts[None, :, :]) ** 2).sum(-1)
        best = max(best, float(d.max()))
    return float(np.sqrt(best))


def _clusters(profile: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """Runs of True in a 1D profile, runs closer than ``min_gap`` empty cells merged."""
    idx = np.flatnonzero(profile)
    if not len(idx):
        return []
    runs, start, prev = [], idx[0], idx[0]
    for i in idx[1:]:
        if i - prev > min_gap:
            runs.append((start, prev))
            start = i
        prev = i
    runs.append((start, prev))
    return runs


def tumour_geometry(img: sitk.Image, tumour_label: int = 2, *, patient: str, phase: str = "", file: str = "",
                    margin_mm: float = 5.0, min_gap_mm: float = 10.0, bilateral_ml: float = 1.0,
                    body: sitk.Image | None = None, midline_margin_mm: float = 10.0) -> dict:
    """The geometry record of one patient's tumour mask (see the module docstring); ``body`` is the CT on the
    mask's grid, when there is one, for the side of a one-cluster mask."""
    if img.GetDimension() != 3:
        raise AnnotationError(f"mask must be 3D, not {img.GetDimension()}D", patient=patient, phase=phase, file=file)
    arr = sitk.GetArrayViewFromImage(img)
    try:
        axes = _axis_map(img)
    except ValueError as e:
        raise AnnotationError(str(e), patient=patient, phase=phase, file=file) from None
    region = foreground_region(arr)
    crop = np.asarray(arr[region]) if region is not None else np.zeros((0, 0, 0), arr.dtype)
    tumour = crop == tumour_label
    n = int(np.count_nonzero(tumour))
    if n == 0:
        labels = sorted(int(v) for v in np.unique(crop)) if crop.size else []
        raise AnnotationError(f"mask has no voxel with the tumour label {tumour_label} (labels present: {labels})",
                              patient=patient, phase=phase, file=file)
    off = np.array([s.start for s in region])
    sp = np.array(img.GetSpacing())  # x, y, z of the image axes
    sp_np = sp[::-1]  # numpy order
    # numpy axis of the patient x (left-right) and z (craniocaudal) directions
    ax_np = [2 - a for a in axes]
    lab, ncomp = ndimage.label(tumour)
    allt = tumour
    if ncomp > 1:  # several lesions: sizes and ROI extents describe the largest (index) lesion
        sizes = np.bincount(lab.ravel())[1:]
        tumour = lab == int(np.argmax(sizes)) + 1
    n_index = int(np.count_nonzero(tumour))
    # volume, 3D diameter, centroid
    pts_idx = extreme_points(tumour) + off
    pts = _to_physical(img, pts_idx)
    d3 = max_pairwise_distance(pts)
    tz, ty, tx = np.nonzero(tumour)
    cen = _to_physical(img, np.array([[tz.mean(), ty.mean(), tx.mean()]]) + off)[0]
    ext = [(np.ptp(v) + 1) * sp_np[k] for k, v in enumerate((tz, ty, tx))]
    extent = {p: float(ext[ax_np[i]]) for i, p in enumerate("xyz")}
    # per axial slice: in-plane diameter, tight box, area
    zax = ax_np[2]
    in_plane = [a for a in range(3) if a != zax]
    counts = tumour.sum(axis=tuple(in_plane))
    d_ax, best = 0.0, None
    for s in np.flatnonzero(counts):
        if best is None or counts[s] > counts[best]:
            best = s
        ep = extreme_points(np.take(tumour, s, axis=zax)[None])  # (0, row, col) of the slice's line ends
        idx = np.zeros((len(ep), 3))
        idx[:, zax] = s
        idx[:, in_plane[0]], idx[:, in_plane[1]] = ep[:, 1], ep[:, 2]
        d_ax = max(d_ax, max_pairwise_distance(_to_physical(img, idx + off)))
    sl = np.take(tumour, best, axis=zax)
    r, c = np.nonzero(sl)
    w = (np.ptp(c) + 1) * sp_np[in_plane[1]]
    h = (np.ptp(r) + 1) * sp_np[in_plane[0]]
    area = float(len(r) * sp_np[in_plane[0]] * sp_np[in_plane[1]])
    side, method, dz = _side(img, crop, allt, off, ax_np, sp_np, min_gap_mm, bilateral_ml * 1000.0 / sp.prod())
    if side == "unknown" and body is not None:
        side, method = side_from_anatomy(body, cen, tz + off[0], midline_margin_mm) if zax == 0 else (side, method)
    return {
        "patient_id": patient, "phase": phase, "status": "ok", "reason": "", "source": "mask",
        "mask_file": Path(file).name if file else "",
        "tumour_label": tumour_label, "n_voxels": n, "n_components": int(ncomp),
        "volume_ml": n * float(sp.prod()) / 1000.0, "index_volume_ml": n_index * float(sp.prod()) / 1000.0,
        "max_diameter_3d_mm": d3, "max_axial_diameter_mm": d_ax,
        "extent_x_mm": extent["x"], "extent_y_mm": extent["y"], "extent_z_mm": extent["z"],
        "n_axial_slices": int(np.count_nonzero(counts)),
        "centroid_x_mm": float(cen[0]), "centroid_y_mm": float(cen[1]), "centroid_z_mm": float(cen[2]),
        "box_w_mm": float(w), "box_h_mm": float(h), "box_area_mm2": float(w * h),
        "box5mm_w_mm": float(w + 2 * margin_mm), "box5mm_h_mm": float(h + 2 * margin_mm),
        "box5mm_area_mm2": float((w + 2 * margin_mm) * (h + 2 * margin_mm)), "tumor_area_mm2": area,
        "tumor_fill_of_box": area / float(w * h), "side": side, "side_method": method, "kidney_dz_mm": dz,
        "spacing_mm": " ".join(f"{v:.4g}" for v in sp), "size_voxels": "x".join(map(str, img.GetSize())),
    }


def _side(img: sitk.Image, crop: np.ndarray, tumour: np.ndarray, off: np.ndarray, ax_np: list[int],
          sp_np: np.ndarray, min_gap_mm: float, bilateral_vox: float) -> tuple[str, str, float]:
    """Tumour side from the kidney clusters along the left-right axis (LPS +x = patient's left)."""
    xa = ax_np[0]
    others = tuple(a for a in range(3) if a != xa)
    fg = crop > 0
    profile = fg.any(axis=others)
    runs = _clusters(profile, max(1, int(round(min_gap_mm / sp_np[xa]))))
    tprof = tumour.sum(axis=others)

    def phys_x(i: float) -> float:
        idx = np.zeros((1, 3))
        idx[0, xa] = i
        return float(_to_physical(img, idx + off)[0, 0])

    if len(runs) >= 2:
        vox = [int(fg.take(range(a, b + 1), axis=xa).sum()) for a, b in runs]
        two = sorted(np.argsort(vox)[-2:])
        (a1, b1), (a2, b2) = runs[two[0]], runs[two[1]]
        t1, t2 = int(tprof[a1:b1 + 1].sum()), int(tprof[a2:b2 + 1].sum())
        first_is_left = phys_x((a1 + b1) / 2) > phys_x((a2 + b2) / 2)
        left_run, right_run = ((a1, b1), (a2, b2)) if first_is_left else ((a2, b2), (a1, b1))
        t_left, t_right = (t1, t2) if first_is_left else (t2, t1)
        if min(t_left, t_right) >= bilateral_vox:
            side = "bilateral"
        else:
            side = "left" if t_left > t_right else "right"
        za = ax_np[2]

        def z_of(run: tuple[int, int]) -> float:
            sub = fg.take(range(run[0], run[1] + 1), axis=xa)
            prof = sub.sum(axis=tuple(a for a in range(3) if a != za))
            k = float((np.arange(len(prof)) * prof).sum() / prof.sum())
            idx = np.zeros((1, 3))
            idx[0, za] = k
            return float(_to_physical(img, idx + off)[0, 2])

        return side, "two kidney clusters", z_of(left_run) - z_of(right_run)
    # one cluster (a tumour-only mask, a solitary kidney): the mask alone cannot tell the side
    return "unknown", "one cluster in the mask: side unknown without the image", float("nan")


def side_from_anatomy(body: sitk.Image, centroid: np.ndarray, tumour_slices: np.ndarray,
                      margin_mm: float = 10.0) -> tuple[str, str]:
    """The tumour's side from the CT itself: its centroid's left-right position against the body's midline
    (the mean left-right position of body voxels, HU > -500, on the tumour's axial slices). Within
    ``margin_mm`` of the midline the side stays ``unknown``. ``body`` is axial (numpy z first)."""
    arr = sitk.GetArrayViewFromImage(body)
    ks = np.unique(tumour_slices)
    ks = ks[(ks >= 0) & (ks < arr.shape[0])]
    if not len(ks):
        return "unknown", "tumour outside the image: side unknown"
    inside = np.asarray(arr[ks]) > -500
    if not inside.any():
        return "unknown", "no body voxels on the tumour's slices: side unknown"
    cols = np.nonzero(inside)[2]
    d = np.array(body.GetDirection()).reshape(3, 3)
    # physical x of a column index (axial image: x varies with the column, the first image axis)
    x_mid = float(body.GetOrigin()[0] + cols.mean() * body.GetSpacing()[0] * d[0, 0])
    off = float(centroid[0]) - x_mid
    if abs(off) < margin_mm:
        return "unknown", f"tumour within {margin_mm:g} mm of the body midline: side unknown"
    return ("left" if off > 0 else "right"), f"tumour vs body midline on the CT ({off:+.0f} mm)"


#: tumour outlines geometry reads, in order of preference (labelme gives boxes only)
OUTLINE_SOURCES = ("mask", "rtstruct", "polygons")


def patient_geometry(patient: str, phase: str, params: dict, *, mask_file: str | None = None,
                     volumes: Path | None = None, sources: dict[str, str] | None = None, key=None) -> dict:
    """One patient's geometry row from whichever tumour outline they have on ``phase``: a label mask (alone,
    or with the ingested CT for the side), else an RTSTRUCT or polygon outline rasterised on the ingested
    volume. A file that cannot be read or an empty outline gives ``status`` excluded and the reason."""
    from ccgrade.annotations.readers import aligned_label_image
    from ccgrade.errors import CcgradeError, GeometryError
    from ccgrade.outputs import read_table
    from ccgrade.preprocess import crops

    sources = dict(sources or {})
    if mask_file:
        sources.setdefault("mask", mask_file)
    kw = {k: params[k] for k in ("margin_mm", "min_gap_mm", "bilateral_ml", "midline_margin_mm") if k in params}
    label = int(params.get("tumour_label", 1))
    source = next((f for f in OUTLINE_SOURCES if f in sources), "")
    try:
        body = None
        if volumes is not None:
            status = read_table(volumes / "phases.tsv", keep_default_na=False).set_index("phase")
            if phase in status.index and status.loc[phase, "status"] == "ok":
                body = sitk.ReadImage(str(volumes / f"{phase}.nii.gz"))
        if source == "mask":
            img = read_label_image(sources["mask"], patient=patient, phase=phase)
            if body is not None:
                img = aligned_label_image(img, body, patient=patient, phase=phase, file=sources["mask"])
            rec = tumour_geometry(img, label, patient=patient, phase=phase, file=sources["mask"], body=body, **kw)
        elif source:
            if body is None:
                raise GeometryError(f"a {source} outline needs the {phase} image, which is not usable (see the ingest "
                                    "exclusions)", patient=patient, phase=phase)
            slices = read_table(volumes / f"{phase}.slices.tsv")
            _, arr, _, _ = crops.roi_boxes("tumor", {"kind": "tumor", "source": source}, src=sources, phase=phase,
                                           slices=slices, img=body, mask_label=1, patient=patient,
                                           series_uid=str(status.loc[phase, "series_uid"]),
                                           rtstruct_roi=params.get("rtstruct_roi") or crops.rts.DEFAULT_ROI,
                                           rtstruct_link=params.get("rtstruct_link", "auto"), key=key)
            img = sitk.GetImageFromArray(arr.astype(np.uint8))
            img.CopyInformation(body)
            rec = tumour_geometry(img, 1, patient=patient, phase=phase, file=sources[source], body=body, **kw)
        else:
            raise GeometryError(f"no tumour outline ({', '.join(OUTLINE_SOURCES)}) for phase {phase}", patient=patient,
                                phase=phase)
    except CcgradeError as e:
        return {**{c: "" for c in GEOMETRY_COLUMNS}, "patient_id": patient, "phase": phase, "status": "excluded",
                "reason": str(e), "source": source}
    return {**rec, "source": source}


def geometry_table(t: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The cohort's geometry table and its formatted Markdown view (write with ``outputs.write_table``)."""
    t = t.copy()
    if "status" not in t:
        t["status"] = "ok"
    excluded = t[t["status"] != "ok"]
    t = t[t["status"] == "ok"].reset_index(drop=True)
    num = [c for c in GEOMETRY_COLUMNS if c not in ("patient_id", "phase", "status", "reason", "source", "mask_file",
                                                    "side", "side_method", "spacing_mm", "size_voxels")]
    for c in num:
        t[c] = pd.to_numeric(t[c], errors="coerce")
    view = t[["patient_id", "volume_ml", "max_diameter_3d_mm", "max_axial_diameter_mm", "extent_x_mm", "extent_y_mm",
              "extent_z_mm", "box_w_mm", "box_h_mm", "box5mm_w_mm", "box5mm_h_mm", "tumor_area_mm2",
              "tumor_fill_of_box", "side", "side_method"]].round(2)
    two = t[t["side_method"] == "two kidney clusters"]
    higher = float((two["kidney_dz_mm"] > 0).mean()) if len(two) else float("nan")
    notes = [
        "Volume: tumour voxels x voxel volume (all lesions). Diameters, extents and ROI sizes describe the largest "
        "(index) lesion when the mask holds several. Diameters: largest distance between tumour voxel centres, in "
        "3D and within one axial slice. Extents: bounding box along the patient axes (voxel edges).",
        "ROI settings on the tumour's largest axial slice: box = tight rectangle (Cui), box5mm = rectangle grown "
        "5 mm per side (Sun), tumor = tumour-only area; tumor_fill_of_box = tumour area / box area.",
        "Side from the mask: tumour in the left or right of the two kidney clusters along the patient's "
        "left-right axis (LPS +x = left) as the file header orients it; a mask with one cluster takes the side "
        "from the CT (tumour centroid vs the body's midline, 10 mm margin) or stays unknown without it.",
    ]
    if len(excluded):
        notes.append(f"Not measured ({len(excluded)}): " + "; ".join(f"{r.patient_id}: {r.reason}"
                                                                     for r in excluded.itertuples()) + ".")
    if len(two):
        notes.append(f"Orientation check: in {higher:.0%} of the {len(two)} two-kidney cases the kidney called left "
                     "lies higher (cranial) than the right one, as the left kidney usually does.")
    return t, {"markdown": view, "title": f"Tumour geometry from the masks ({len(t)} patients)", "footnotes": notes}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Tumour geometry of one patient's tumour outline.")
    ap.add_argument("--patient", required=True)
    ap.add_argument("--phase", default="")
    ap.add_argument("--mask", help="label mask file")
    ap.add_argument("--volumes", help="the patient's ingested volume folder (side from the CT; RTSTRUCT/polygons)")
    ap.add_argument("--sources", default="{}", help="JSON {format: path} of the phase's annotations")
    ap.add_argument("--params", required=True, help="JSON of config key geometry (+ tumour_label, rtstruct_*)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--secret", default=None, help="the study's privacy key file (privacy.mode: pseudonymise)")
    a = ap.parse_args(argv)
    sources = json.loads(a.sources)
    key, labels = for_job(a.secret, {a.phase: {**sources, **({"mask": a.mask} if a.mask else {})}})
    rec = run_scrubbed(lambda: patient_geometry(a.patient, a.phase, json.loads(a.params), mask_file=a.mask,
                                                volumes=Path(a.volumes) if a.volumes else None, sources=sources,
                                                key=key), labels)
    if labels:
        rec = {k: scrub(v, labels) if isinstance(v, str) else v for k, v in rec.items()}
    write_tsv(a.out, pd.DataFrame([rec], columns=GEOMETRY_COLUMNS))
    print(json.dumps({k: rec[k] for k in ("status", "reason", "source", "volume_ml", "max_diameter_3d_mm",
                                          "max_axial_diameter_mm", "side")}, default=str))


if __name__ == "__main__":
    main()
