"""What an annotation stage would say of a patient's annotation files, found from the files and the image
headers alone (no voxels read): a mask not on its image's grid, an RTSTRUCT whose ROIs, references or contour
planes do not fit the image (and how its contours link to the slices), a labelme folder or a polygon JSON
naming images that are not slices of the series. Each check returns the problems it finds, naming the
patient, phase and file; the header survey (``survey``) runs them per phase.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ccgrade.errors import Problem, problem
from ccgrade.plan.grids import grid_of_header, same_grid


def rtstruct_roi_names(path: str) -> list[str]:
    """The ROI names of a structure set ([] when it cannot be read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, specific_tags=[0x30060020])
        return [str(getattr(r, "ROIName", "")) for r in getattr(ds, "StructureSetROISequence", [])]
    except Exception:  # noqa: BLE001 - a best effort for the starter config
        return []


def rtstruct_check(path: str, img: dict, pid: str, phase: str, roi_pattern: str, link: str) -> tuple[list[Problem], str]:
    """What the crop stage would say of an RTSTRUCT on this image, from the file alone: ROI names, the series
    and frame of reference it references, and whether every contour lies on a slice plane of the image.
    Returns the problems and the expected link (uid, position, or 'uid, position')."""
    out: list[Problem] = []

    def err(msg: str, fix: str) -> None:
        out.append(problem("error", msg, fix, patient=pid, phase=phase, file=path))

    ds = _rtstruct_dataset(path, phase, err)
    chosen = _chosen_rois(ds, roi_pattern, err) if ds is not None else set()
    if not chosen or not img or img.get("status") != "ok":
        return out, ""  # (the image's own problem is reported by ingest)
    ref_series, frames = _rtstruct_references(ds, chosen)
    series_uid, frame_uid = img.get("series_uid", ""), img.get("frame_uid", "")
    if series_uid and ref_series and series_uid not in ref_series and link != "position":
        same_frame = bool(frame_uid) and frame_uid in frames  # a re-export keeps its frame of reference
        err(f"RTSTRUCT references series {sorted(ref_series)}, not the {phase} image series"
            + (": it was drawn on another series of the same frame of reference" if same_frame else
               " (nor its frame of reference): it was drawn on other images, perhaps another patient's"),
            f"give the structure set drawn on the {phase} series" +
            (" (or, if it was and the series was re-exported, set rtstruct_link: position)" if same_frame else ""))
        return out, ""
    matches = bool(series_uid and series_uid in ref_series) or frame_uid in frames
    how, off_plane, outside, pos = _contour_planes(ds, chosen, img, link, matches, phase, err)
    if how is None:
        return out, ""
    if outside:
        err(f"{len(outside)} contour(s) lie outside the {phase} image (at {sorted(outside)[0]:.1f} mm; the image "
            f"spans {pos.min():.1f} to {pos.max():.1f} mm): the image lacks slices they were drawn on",
            "export the whole series the structure set was drawn on")
    if off_plane:
        err(f"{len(off_plane)} contour(s) lie between slice planes of the {phase} image (e.g. at {off_plane[0]:.1f} "
            "mm)", "the structure set must be drawn on this series' slices (not on a reformat or another reconstruction)")
    return out, ", ".join(sorted(how))


def _rtstruct_dataset(path: str, phase: str, err):
    """The structure set's dataset, or None (after ``err``) when the file is no readable RTSTRUCT."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's problem
        err(f"not a readable DICOM file ({type(e).__name__}: {e})", f"give the RTSTRUCT file as rtstruct_{phase}")
        return None
    if str(getattr(ds, "Modality", "")) != "RTSTRUCT":
        err(f"not an RTSTRUCT (Modality {getattr(ds, 'Modality', '')!r})", f"give the RTSTRUCT file as rtstruct_{phase}")
        return None
    return ds


def _chosen_rois(ds, roi_pattern: str, err) -> set[int]:
    """The numbers of the ROIs whose names match ``roi_pattern`` (after ``err`` when none does)."""
    names = {int(r.ROINumber): str(getattr(r, "ROIName", "")) for r in getattr(ds, "StructureSetROISequence", [])}
    rx = re.compile(roi_pattern, re.I)
    chosen = {n for n, name in names.items() if rx.search(name)}
    if not chosen:
        err(f"no ROI name matches rtstruct_roi {roi_pattern!r} (ROIs: {sorted(names.values())})",
            "set config key rtstruct_roi to a pattern matching the tumour ROI's name, e.g. "
            f"rtstruct_roi: \"{re.escape(sorted(names.values())[0]) if names else 'tumour'}\"")
    return chosen


def _rtstruct_references(ds, chosen: set[int]) -> tuple[set[str], set[str]]:
    """The series and the frames of reference a structure set (and its chosen ROIs) reference."""
    refs = getattr(ds, "ReferencedFrameOfReferenceSequence", [])
    series = {str(s.SeriesInstanceUID) for fr in refs for st in getattr(fr, "RTReferencedStudySequence", [])
              for s in getattr(st, "RTReferencedSeriesSequence", []) if "SeriesInstanceUID" in s}
    frames = {str(fr.FrameOfReferenceUID) for fr in refs if "FrameOfReferenceUID" in fr}
    frames |= {str(r.ReferencedFrameOfReferenceUID) for r in getattr(ds, "StructureSetROISequence", [])
               if int(r.ROINumber) in chosen and "ReferencedFrameOfReferenceUID" in r}
    return series, frames


def _contour_planes(ds, chosen: set[int], img: dict, link: str, matches: bool, phase: str, err):
    """How the chosen ROIs' contours link (a set of 'uid'/'position'), the heights of those between slice
    planes and of those outside the image, and the slice positions; ``how`` is None (after ``err``) when a
    contour cannot be linked at all. ``matches``: the structure set references the series or its frame."""
    grid, sops = img["grid"], set(img.get("sop_uids") or [])
    d = np.asarray(grid["direction"], float).reshape(3, 3)
    normal, origin = d[:, 2], np.asarray(grid["origin"], float)
    pos = np.asarray(grid["positions"] if grid.get("positions") else
                     [float(origin @ normal + k * grid["spacing"][2]) for k in range(grid["size"][2])])
    dz = grid["spacing"][2]
    how, off_plane, outside = set(), [], []
    for rc in getattr(ds, "ROIContourSequence", []):
        if int(rc.ReferencedROINumber) not in chosen:
            continue
        for c in getattr(rc, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            refs = [str(r.ReferencedSOPInstanceUID) for r in getattr(c, "ContourImageSequence", [])]
            ref = refs[0] if refs else "(none)"
            if link != "position" and refs and set(refs) & sops:
                how.add("uid")
            elif link == "uid":
                err(f"contour references image {ref}, which is not a slice of the {phase} series (rtstruct_link: uid)",
                    "set rtstruct_link: auto to link contours by plane position")
                return None, [], [], pos
            elif link == "auto" and sops and not matches:
                err(f"contour references image {ref}, which is not a slice of the {phase} series, and neither the "
                    "series nor the frame of reference matches: it was drawn on another image",
                    f"give the structure set drawn on the {phase} series")
                return None, [], [], pos
            else:
                how.add("position")
            z = float(np.asarray(c.ContourData[:3], float) @ normal)
            k = int(np.argmin(np.abs(pos - z)))
            if abs(pos[k] - z) > 0.25 * dz:
                (outside if z < pos.min() - 0.25 * dz or z > pos.max() + 0.25 * dz else off_plane).append(z)
    return how, off_plane, outside, pos


def mask_check(path: str, img: dict | None, pid: str, phase: str) -> list[Problem]:
    """A label mask whose header cannot be read, or that is not on the phase image's grid."""
    try:
        g = grid_of_header(path)
    except RuntimeError as e:
        return [problem("error", f"cannot read the mask header ({str(e).strip().splitlines()[-1][:160]})",
                        "give a NIfTI/NRRD/MHA label image", patient=pid, phase=phase, file=path)]
    diff = same_grid(img["grid"], g) if img and img["status"] == "ok" else ""
    if diff:
        return [problem("error", f"the mask is not on the {phase} image's grid: {diff}",
                        f"give the mask drawn on this patient's {phase} series (same size, spacing and position)",
                        patient=pid, phase=phase, file=path)]
    return []


def labelme_check(folder: Path, img: dict | None, pid: str, phase: str) -> list[Problem]:
    """A labelme folder: JSON files at all, each readable, each naming a slice of the series (its file name or
    SOP Instance UID)."""
    files = sorted(folder.glob("*.json"))
    if not files:
        return [problem("warning", "the labelme folder holds no JSON file", f"add the rectangles, or remove the column "
                        f"labelme_{phase}", patient=pid, phase=phase, file=str(folder))]
    known = set(img["sop_uids"]) | set(img["file_names"]) if img else None
    bad, unreadable = [], []
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            ref = str(doc.get("imagePath") or f.stem).replace("\\", "/")
        except (OSError, ValueError, AttributeError):
            unreadable.append(f.name)
            continue
        if known is not None and not ({Path(ref).name, Path(ref).stem} & known):
            bad.append(f"{f.name} -> {ref}")
    out = []
    if unreadable:
        out.append(problem("error", f"{len(unreadable)} file(s) are not labelme JSON ({', '.join(unreadable[:3])})",
                           "save the rectangles from labelme again", patient=pid, phase=phase, file=str(folder)))
    if bad:
        out.append(problem("error", f"{len(bad)} labelme file(s) name an image that is not a slice of the {phase} series "
                                    f"({'; '.join(bad[:2])})", "imagePath must be the DICOM file's name or its "
                           "SOPInstanceUID", patient=pid, phase=phase, file=str(folder)))
    return out


def polygons_check(path: str, img: dict | None, pid: str, phase: str) -> list[Problem]:
    """A polygon JSON: readable, and every annotation on a SOP Instance UID of the series."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        anns = [a for ds in doc.get("datasets", [doc]) for a in ds.get("annotations", [])]
    except (OSError, ValueError, AttributeError) as e:
        return [problem("error", f"not a polygon JSON ({e})", "export the polygons as JSON (MD.ai style)",
                        patient=pid, phase=phase, file=path)]
    if img is None:
        return []
    bad = sorted({str(a.get("SOPInstanceUID", "")) for a in anns} - set(img["sop_uids"]))
    if bad:
        return [problem("error", f"{len(bad)} polygon(s) on SOPInstanceUID(s) that are not slices of the {phase} series "
                                 f"(e.g. {bad[0]!r})", f"export the polygons drawn on the {phase} series",
                        patient=pid, phase=phase, file=path)]
    return []
