"""ROI crops for every patient x phase x ROI setting, cached as arrays with a manifest.

ROI kinds (config ``rois``): ``box`` (annotated rectangle + margin in mm; Cui, and Sun's 5-mm
expansion), ``tumor`` (mask only, background zeroed; Sun), ``centroid`` (fixed square in pixels around
the polygon centroid; Dai), ``cube`` (tumour box resampled to isotropic spacing, then resized with cubic
splines; Li), ``slice`` (the whole axial slice at every tumour slice, resized, e.g. z-scored per slice; Li's
2D input; its stored boxes are the tumour's, which Li's patient rule links by IoU). Every crop job also writes the
multi-channel variant that stacks the configured phases as channels on the reference phase's geometry (Sun). A job
crops only the files some configured model or figure reads (``targets``); the others are empty placeholders.
Images are float16, shape (n, C, S, S) or (1, C, S, S, S); values are windowed to [0, 1] or z-scored per crop.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from ccgrade.annotations import readers as ann, rtstruct as rts
from ccgrade.config.cohort import pick_source, roi_sources
from ccgrade.config.rois import REGISTRY as ROI_KINDS
from ccgrade.errors import AnnotationError
from ccgrade.outputs import read_table, write_npz, write_tsv
from ccgrade.privacy.pseudonyms import for_job, run_scrubbed, scrub_frame

AIR_HU = -1024.0
SKIPPED = "not cropped: no configured model or figure reads it"
MANIFEST_COLUMNS = ["patient_id", "roi", "phase", "status", "source", "link", "n_contours", "n_images", "shape", "window",
                    "file", "reason", "notes"]


def apply_window(hu: np.ndarray, preset: dict, mask: np.ndarray | None = None) -> np.ndarray:
    """Window HU to [0, 1] (level/width) or z-score (over ``mask`` when given, else the whole crop)."""
    hu = hu.astype(np.float32)
    if preset.get("zscore"):
        ref = hu[mask] if mask is not None and mask.any() else hu
        return (hu - ref.mean()) / (ref.std() + 1e-6)
    lo = preset["level"] - preset["width"] / 2
    return np.clip((hu - lo) / preset["width"], 0.0, 1.0)


def sample_box(img: np.ndarray, box: ann.Box, size: int, order: int = 1, cval: float = AIR_HU) -> np.ndarray:
    """Resample the region ``box`` (labelme x1, y1, x2, y2) of a 2D image onto a size x size grid."""
    x1, y1, x2, y2 = box
    u = (np.arange(size) + 0.5) / size
    xs = x1 + u * (x2 - x1) - 0.5
    ys = y1 + u * (y2 - y1) - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return ndimage.map_coordinates(img, [yy, xx], order=order, mode="constant", cval=cval)


def expand_box(box: ann.Box, margin_mm: float, spacing_xy: tuple[float, float]) -> ann.Box:
    """Grow a box by ``margin_mm`` on every side (pixel spacing x, y in mm)."""
    mx, my = margin_mm / spacing_xy[0], margin_mm / spacing_xy[1]
    return (box[0] - mx, box[1] - my, box[2] + mx, box[3] + my)


def crop_slices(vols: list[np.ndarray], boxes: dict[int, ann.Box], size: int, window: dict,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D crops (n, C, size, size) of channel volumes at the boxed slices; background zeroed if ``mask``."""
    ks = sorted(boxes)
    out = np.zeros((len(ks), len(vols), size, size), np.float32)
    for n, k in enumerate(ks):
        m = sample_box(mask[k].astype(np.float32), boxes[k], size, order=0, cval=0) > 0.5 if mask is not None else None
        for c, v in enumerate(vols):
            out[n, c] = apply_window(sample_box(v[k].astype(np.float32), boxes[k], size), window, m)
            if m is not None:
                out[n, c][~m] = 0.0
    return out, np.array(ks, int), np.array([boxes[k] for k in ks], float).reshape(-1, 4)


def crop_cube(imgs: list[sitk.Image], mask: np.ndarray, spacing_mm: float, size: int, window: dict) -> tuple[np.ndarray, np.ndarray]:
    """Li's 3D ROI: the tumour's bounding box resampled to ``spacing_mm`` isotropic (B-spline) and resized to size^3 (cubic)."""
    ref = imgs[0]
    kk, jj, ii = np.nonzero(mask)
    lo_idx, hi_idx = (ii.min(), jj.min(), kk.min()), (ii.max(), jj.max(), kk.max())
    lo = np.array(ref.TransformContinuousIndexToPhysicalPoint([float(v) - 0.5 for v in lo_idx]))
    hi = np.array(ref.TransformContinuousIndexToPhysicalPoint([float(v) + 0.5 for v in hi_idx]))
    pmin, pmax = np.minimum(lo, hi), np.maximum(lo, hi)
    n = np.maximum(np.ceil((pmax - pmin) / spacing_mm).astype(int), 1)
    chans = []
    for img in imgs:
        res = sitk.Resample(img, [int(v) for v in n], sitk.Transform(), sitk.sitkBSpline,
                            [float(v) for v in pmin + spacing_mm / 2], [spacing_mm] * 3,
                            [1, 0, 0, 0, 1, 0, 0, 0, 1], AIR_HU, sitk.sitkFloat32)
        arr = sitk.GetArrayFromImage(res)  # z, y, x at isotropic spacing
        arr = ndimage.zoom(arr, [size / s for s in arr.shape], order=3, mode="nearest", grid_mode=True)
        chans.append(apply_window(arr, window))
    bbox_mm = np.concatenate([pmin, pmax])
    return np.stack(chans)[None].astype(np.float32), bbox_mm


def _on_reference(img: sitk.Image, ref: sitk.Image) -> sitk.Image:
    if ann.same_geometry(ref, img) == "":
        return img
    return sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)


@dataclass
class Annotation:
    """What one annotation file gives on one phase's image: tumour boxes by slice index, the tumour mask
    (z, y, x; None for boxes alone), polygons by slice index (Dai's centroid), notes and how an RTSTRUCT's
    contours were linked."""

    boxes: dict[int, ann.Box]
    mask: np.ndarray | None = None
    polygons: dict[int, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=lambda: {"link": "", "n_contours": ""})


@dataclass
class Context:
    """The image an annotation is read onto, and the settings its readers take."""

    path: str
    img: sitk.Image
    slices: pd.DataFrame
    patient: str
    phase: str
    roi: dict
    outline: bool  # the ROI kind needs the tumour's outline
    mask_label: int = 1
    series_uid: str = ""
    rtstruct_roi: str = rts.DEFAULT_ROI
    rtstruct_link: str = "auto"
    key: object = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.img.GetSize()[1], self.img.GetSize()[0]


def _read_labelme(c: Context) -> Annotation:
    boxes, notes = ann.read_labelme_boxes(c.path, c.slices, c.shape, patient=c.patient, phase=c.phase, key=c.key)
    return Annotation(boxes, notes=notes)


def _read_polygons(c: Context) -> Annotation:
    polys = ann.read_polygons(c.path, c.slices, patient=c.patient, phase=c.phase, key=c.key)
    boxes = {k: (*v.min(axis=0), *v.max(axis=0)) for k, v in polys.items()}
    mask = rts.polygons_to_mask(polys, (c.img.GetSize()[2], *c.shape)) if c.outline else None
    return Annotation(boxes, mask, polys)


def _read_rtstruct(c: Context) -> Annotation:
    frame = next((str(f) for f in c.slices.get("frame_uid", pd.Series(dtype=str)).astype(str)
                  if f not in ("", "nan")), "")
    mask, links = rts.link_rtstruct(c.path, c.img, c.slices, series_uid=c.series_uid, roi_pattern=c.rtstruct_roi,
                                    patient=c.patient, phase=c.phase, link=c.rtstruct_link, frame_uid=frame, key=c.key)
    meta = {"link": ", ".join(f"{k} {v}" for k, v in links.items() if v), "n_contours": sum(links.values())}
    return Annotation(ann.boxes_from_mask(mask, c.roi.get("min_pixels", 1)), mask, meta=meta)


def _read_mask(c: Context) -> Annotation:
    mask = ann.read_mask(c.path, c.img, c.mask_label, patient=c.patient, phase=c.phase)
    return Annotation(ann.boxes_from_mask(mask, c.roi.get("min_pixels", 1)), mask)


#: the annotation readers, by format (config ``rois.<name>.source``; the cohort sheet's columns)
READERS = {"labelme": _read_labelme, "polygons": _read_polygons, "rtstruct": _read_rtstruct, "mask": _read_mask}


def _centroid_boxes(a: Annotation, roi: dict, spacing) -> dict[int, ann.Box]:
    """Dai: a ``box_px`` square at each slice's polygon centroid (a box's centre without polygons)."""
    half = roi["box_px"] / 2
    cents = {k: ann.polygon_centroid(a.polygons[k]) for k in a.boxes} if a.polygons is not None else {
        k: ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for k, b in a.boxes.items()}
    return {k: (cx - half, cy - half, cx + half, cy + half) for k, (cx, cy) in cents.items()}


def _margin_boxes(a: Annotation, roi: dict, spacing) -> dict[int, ann.Box]:
    """Cui, Sun's 5-mm expansion: the tumour's box grown by ``margin_mm``."""
    if roi.get("margin_mm", 0) <= 0:
        return a.boxes
    return {k: expand_box(b, roi["margin_mm"], spacing) for k, b in a.boxes.items()}


#: how an ROI kind shapes the tumour's boxes (kinds not named keep them as read)
BOX_SHAPES = {"centroid": _centroid_boxes, "box": _margin_boxes}


def roi_boxes(kind: str, roi: dict, *, src: dict[str, str], phase: str, slices: pd.DataFrame, img: sitk.Image,
              mask_label: int, patient: str, series_uid: str = "", rtstruct_roi: str = rts.DEFAULT_ROI,
              rtstruct_link: str = "auto", key=None) -> tuple[dict[int, ann.Box], np.ndarray | None, list[str], dict]:
    """The boxes (and mask, for tumour-only and cube crops) an ROI setting needs on one phase, notes, and
    how an RTSTRUCT's contours were linked (``link``: e.g. ``position``, ``uid``; ``n_contours``).

    ``src`` maps annotation formats (labelme, mask, polygons, rtstruct) to this phase's files; ``key`` (a
    ``privacy.Keyer``) links annotations drawn on original UIDs and file names to a pseudonymised slice table.
    """
    source, _ = pick_source(roi, src)
    outline = ROI_KINDS[kind].outline
    a = READERS[source](Context(src[source], img, slices, patient, phase, roi, outline, mask_label, series_uid,
                                rtstruct_roi, rtstruct_link, key))
    boxes = BOX_SHAPES[kind](a, roi, img.GetSpacing()[:2]) if kind in BOX_SHAPES else a.boxes
    if outline and a.mask is None:
        raise AnnotationError(f"ROI kind {kind!r} needs a mask, RTSTRUCT or polygon source, not {source!r}",
                              patient=patient, phase=phase)
    return boxes, a.mask, a.notes, a.meta


def crop_patient(patient: str, roi_name: str, roi: dict, window: dict, phases: list[str], stack: list[str],
                 volumes: Path, sources: dict[str, dict[str, str]], mask_label: int, outdir: Path,
                 rtstruct_roi: str = rts.DEFAULT_ROI, rtstruct_link: str = "auto", key=None,
                 targets: list[str] | None = None) -> pd.DataFrame:
    """Write ``{phase}.npz`` for every phase and ``stack.npz``; return the manifest rows.

    ``sources`` maps each phase to its annotation files by format (see ``cohort.patient_sources``).
    ``targets``: the files some model or figure reads (None: all); the others are written as empty
    ``skipped`` placeholders (the DAG declares every file) with no manifest row, and nothing is cropped for them.
    """
    named = list(phases) + list(stack) + list(targets or [])
    odd = [t for t in named if not re.fullmatch(r"[a-z0-9_]{1,32}", str(t))]
    if odd:  # a crop file is outdir/<target>.npz: a name with a separator or '..' would write elsewhere
        raise ValueError(f"{patient}: phase or target name(s) {odd} are not plain names (a-z, 0-9, _)")
    status = pd.read_csv(volumes / "phases.tsv", sep="\t", keep_default_na=False).set_index("phase")
    kind, rows = roi["kind"], []
    imgs, slices = {}, {}
    for target in list(phases) + ["stack"]:
        if targets is not None and target not in targets:
            write_npz(outdir / f"{target}.npz", images=np.zeros((0,), np.float16), slice_index=np.zeros(0, int),
                      boxes=np.zeros((0, 4)), status="skipped", reason=SKIPPED)
            continue
        chan_phases = stack if target == "stack" else [target]
        ref_phase = chan_phases[0]
        base = {"patient_id": patient, "roi": roi_name, "phase": target, "window": json.dumps(window, sort_keys=True),
                "file": str(outdir / f"{target}.npz"), "notes": "", "link": "", "n_contours": ""}
        bad = [p for p in chan_phases if p not in status.index or status.loc[p, "status"] != "ok"]
        fmt, apath = pick_source(roi, sources.get(ref_phase, {}))
        base["source"] = fmt if apath else ""
        reason = ""
        if bad:
            reason = "; ".join(f"phase {p} excluded at ingest: {status.loc[p, 'reason'] if p in status.index else 'absent'}" for p in bad)
        elif not apath or not Path(apath).exists():
            reason = (f"no {' or '.join(roi_sources(roi))} annotation for phase {ref_phase}" +
                      (f": {Path(apath).name} does not exist" if apath else ""))
        if reason:
            write_npz(outdir / f"{target}.npz", images=np.zeros((0,), np.float16), slice_index=np.zeros(0, int),
                      boxes=np.zeros((0, 4)), status="excluded", reason=reason)
            rows.append({**base, "status": "excluded", "n_images": 0, "shape": "", "reason": reason})
            continue
        for p in chan_phases:
            if p not in imgs:
                imgs[p] = sitk.ReadImage(str(volumes / f"{p}.nii.gz"), sitk.sitkFloat32)
                slices[p] = read_table(volumes / f"{p}.slices.tsv")
        ref = imgs[ref_phase]
        chan_imgs = [_on_reference(imgs[p], ref) for p in chan_phases]
        boxes, mask, notes, meta = roi_boxes(kind, roi, src=sources[ref_phase], phase=ref_phase,
                                             slices=slices[ref_phase], img=ref, mask_label=mask_label, patient=patient,
                                             series_uid=str(status.loc[ref_phase, "series_uid"]),
                                             rtstruct_roi=rtstruct_roi, rtstruct_link=rtstruct_link, key=key)
        sl = slices[ref_phase].set_index("k")
        if ROI_KINDS[kind].dims == 3:
            images, bbox = crop_cube(chan_imgs, mask, roi.get("spacing_mm", 1.0), roi["size"], window)
            ks, bxs = np.array([-1]), bbox[None]
        else:
            vols = [sitk.GetArrayViewFromImage(i) for i in chan_imgs]
            sample = boxes
            if ROI_KINDS[kind].whole_slice:  # the whole slice is the image; the tumour's boxes are kept (Li's rule)
                h, w = vols[0].shape[1:]
                sample = {k: (0.0, 0.0, float(w), float(h)) for k in boxes}
            images, ks, _ = crop_slices(vols, sample, roi["size"], window, mask if ROI_KINDS[kind].masked else None)
            bxs = np.array([boxes[k] for k in ks], float).reshape(-1, 4)
        sops = np.array([sl.loc[k, "sop_uid"] if k >= 0 else "" for k in ks], dtype=str)
        write_npz(outdir / f"{target}.npz", images=images.astype(np.float16), slice_index=ks, boxes=bxs, sop_uid=sops,
                  channels=np.array(chan_phases), spacing=np.array(ref.GetSpacing()), status="ok", reason="")
        rows.append({**base, **meta, "status": "ok" if len(images) else "excluded", "n_images": len(images),
                     "shape": "x".join(map(str, images.shape[1:])), "reason": "" if len(images) else "no annotated slice",
                     "notes": "; ".join(notes)})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Crop one patient's ROIs for one ROI setting.")
    ap.add_argument("--patient", required=True)
    ap.add_argument("--roi-name", required=True)
    ap.add_argument("--roi", required=True, help="JSON of config rois.<name>")
    ap.add_argument("--window", required=True, help="JSON of the window preset")
    ap.add_argument("--phases", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--volumes", required=True)
    ap.add_argument("--sources", required=True, help="JSON {phase: {format: path}} of the annotation files")
    ap.add_argument("--mask-label", type=int, default=1)
    ap.add_argument("--rtstruct-roi", default=rts.DEFAULT_ROI)
    ap.add_argument("--rtstruct-link", default="auto", choices=rts.LINK_MODES)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--secret", default=None, help="the study's privacy key file (privacy.mode: pseudonymise)")
    ap.add_argument("--targets", default=None, help="comma-separated: the crop files read (default: all)")
    a = ap.parse_args(argv)
    out = Path(a.outdir)
    sources = json.loads(a.sources)
    key, labels = for_job(a.secret, sources)
    man = run_scrubbed(lambda: crop_patient(
        a.patient, a.roi_name, json.loads(a.roi), json.loads(a.window), a.phases.split(","), a.stack.split(","),
        Path(a.volumes), sources, a.mask_label, out, a.rtstruct_roi, a.rtstruct_link, key=key,
        targets=None if a.targets is None else [t for t in a.targets.split(",") if t]), labels)
    if labels:
        man = scrub_frame(man, labels, skip=("file",))
    write_tsv(out / "manifest.tsv", man)
    for r in man.itertuples():
        print(f"{a.patient} {a.roi_name} {r.phase}: {r.status} {r.n_images} {r.shape} {r.reason}")


if __name__ == "__main__":
    main()
