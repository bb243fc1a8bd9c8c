"""DICOM RTSTRUCT contours to a tumour mask on the image grid (and, for tests and demos, back).

Reading: the structure set must reference the image it is rasterised on (frame of reference, series and
contour-image SOP instances), each CLOSED_PLANAR contour must lie on a slice plane, and the ROIs whose
names match ``rtstruct_roi`` (case-insensitive regex) form the tumour. Contours on one slice combine
by even-odd (XOR), which is how holes are drawn in RTSTRUCT. A pixel belongs to the mask when its
centre lies inside the contour.
Writing: per-slice outlines of a mask at the 0.5 iso-level through pixel centres (contourpy), so that
reading them back reproduces the mask.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ccgrade.errors import AnnotationError, GeometryError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DEFAULT_ROI = r"tumou?r|lesion|gtv|mass|rcc|neoplasm"


def rasterise_polygon(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (rows, cols) whose centres (x = col + 0.5, y = row + 0.5) lie inside a polygon in
    labelme/MD.ai continuous pixel coordinates."""
    h, w = shape
    out = np.zeros(shape, bool)
    v = np.asarray(vertices, float)
    x0, y0 = np.floor(v.min(axis=0) - 1).astype(int)
    x1, y1 = np.ceil(v.max(axis=0) + 1).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return out
    from matplotlib.path import Path as MplPath  # (imported where used: a crop job without polygons skips it)

    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = MplPath(v).contains_points(np.column_stack([xx.ravel() + 0.5, yy.ravel() + 0.5]), radius=0.0)
    out[y0:y1, x0:x1] = inside.reshape(yy.shape)
    return out


def polygons_to_mask(polys: dict[int, list[np.ndarray] | np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
    """A (z, y, x) mask from polygons per slice index; several polygons on one slice combine by XOR."""
    mask = np.zeros(shape, bool)
    for k, plist in polys.items():
        if isinstance(plist, np.ndarray):
            plist = [plist]
        for v in plist:
            mask[k] ^= rasterise_polygon(v, shape[1:])
    return mask


def mask_outlines(sl: np.ndarray) -> list[np.ndarray]:
    """Closed outlines (pixel x, y in labelme coordinates) of a 2D mask at the 0.5 level through pixel centres."""
    import contourpy

    z = np.pad(sl.astype(float), 1)
    gen = contourpy.contour_generator(z=z, line_type=contourpy.LineType.Separate)
    out = []
    for line in gen.lines(0.5):
        line = np.asarray(line, float)
        if len(line) >= 4:
            # padded grid index -> pixel index (-1), then pixel centre -> continuous coordinate (+0.5)
            out.append(line[:-1] - 0.5 if np.allclose(line[0], line[-1]) else line - 0.5)
    return out


def _roi_names(ds: Dataset) -> dict[int, str]:
    return {int(r.ROINumber): str(getattr(r, "ROIName", "")) for r in getattr(ds, "StructureSetROISequence", [])}


#: how contours are linked to the image's slices (config ``rtstruct_link``)
LINK_MODES = ("auto", "uid", "position")


def _frames(ds: Dataset, chosen: set[int]) -> set[str]:
    """The frames of reference the structure set (and its chosen ROIs) say they were drawn in."""
    out = {str(fr.FrameOfReferenceUID) for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", [])
           if "FrameOfReferenceUID" in fr}
    out |= {str(r.ReferencedFrameOfReferenceUID) for r in getattr(ds, "StructureSetROISequence", [])
            if int(r.ROINumber) in chosen and "ReferencedFrameOfReferenceUID" in r}
    return out - {""}


def read_rtstruct(path: str | Path, image: sitk.Image, slices: pd.DataFrame, *, series_uid: str = "",
                  roi_pattern: str = DEFAULT_ROI, patient: str, phase: str, link: str = "auto",
                  frame_uid: str = "") -> np.ndarray:
    """Rasterise the tumour ROI(s) of an RTSTRUCT onto ``image`` (numpy z, y, x boolean mask); see
    ``link_rtstruct``."""
    return link_rtstruct(path, image, slices, series_uid=series_uid, roi_pattern=roi_pattern, patient=patient,
                         phase=phase, link=link, frame_uid=frame_uid)[0]


def link_rtstruct(path: str | Path, image: sitk.Image, slices: pd.DataFrame, *, series_uid: str = "",
                  roi_pattern: str = DEFAULT_ROI, patient: str, phase: str, link: str = "auto",
                  frame_uid: str = "", tolerance: float = 0.25, key=None) -> tuple[np.ndarray, dict[str, int]]:
    """Rasterise the tumour ROI(s) of an RTSTRUCT onto ``image``; return the mask and how many contours were
    linked by ``uid`` and by ``position``.

    ``slices`` is the image's slice table (``k``, ``sop_uid``); ``series_uid`` and ``frame_uid`` its
    SeriesInstanceUID and FrameOfReferenceUID ('' for volume files, which carry none). Each contour is
    linked to a slice by its referenced SOP Instance UID when that is a slice of the image (``uid``), else
    (``link`` auto or position) by its plane: the slice whose position it lies on within ``tolerance`` of
    the slice spacing, provided the structure set references this series or was drawn in the image's
    frame of reference (a re-export that renewed the SOP UIDs). ``link: uid`` accepts UID links only;
    ``link: position`` links every contour by its plane. ``key`` (a ``privacy.Keyer``) pseudonymises the
    structure set's UIDs before they are compared with a pseudonymised slice table.
    """
    if link not in LINK_MODES:
        raise AnnotationError(f"unknown rtstruct_link {link!r} (use {', '.join(LINK_MODES)})", patient=patient,
                              phase=phase)
    ln = _Linker(patient, phase, str(path), link, tolerance, key.uid if key is not None else str, series_uid,
                 frame_uid, image)
    ds = ln.read(Path(path))
    ln.sop_k = {str(u): int(k) for u, k in zip(slices["sop_uid"].astype(str), slices["k"])
                if str(u) not in ("", "nan")}
    ln.check_series(ds)
    chosen, names = ln.chosen_rois(ds, roi_pattern, key)
    frames = {ln.uid(f) for f in _frames(ds, chosen)}
    ln.series_ok = bool(series_uid) and series_uid in ln.ref_series
    ln.frame_ok = bool(frame_uid) and frame_uid in frames
    ln.frame_clash = bool(frame_uid) and bool(frames) and not ln.frame_ok
    ln.frames = frames
    size = image.GetSize()
    mask = np.zeros((size[2], size[1], size[0]), bool)
    links = {"uid": 0, "position": 0}
    for rc in getattr(ds, "ROIContourSequence", []):
        if int(rc.ReferencedROINumber) not in chosen:
            continue
        roi = names.get(int(rc.ReferencedROINumber))
        for c in getattr(rc, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            how, k, idx = ln.contour_slice(c, roi)
            mask[k] ^= rasterise_polygon(idx[:, :2] + 0.5, (size[1], size[0]))
            links[how] += 1
    if not mask.any():
        ln.fail(AnnotationError, f"the ROI(s) {sorted(names[n] for n in chosen)} have no closed contour on the image "
                                 f"({sum(links.values())} contours)")
    return mask, links


class _Linker:
    """One structure set linked to one image: what its checks compare, and the errors they raise (each
    naming the patient, phase and file)."""

    def __init__(self, patient, phase, file, link, tolerance, uid, series_uid, frame_uid, image):
        self.patient, self.phase, self.file, self.link, self.tolerance = patient, phase, file, link, tolerance
        self.uid, self.series_uid, self.frame_uid, self.image = uid, series_uid, frame_uid, image
        self.sop_k: dict[str, int] = {}
        self.ref_series: set[str] = set()
        self.frames: set[str] = set()
        self.series_ok = self.frame_ok = self.frame_clash = False

    def fail(self, exc: type, msg: str, fix: str = "") -> None:
        raise exc(msg + (f"; fix: {fix}" if fix else ""), patient=self.patient, phase=self.phase, file=self.file)

    def read(self, path: Path):
        """The structure set's dataset, or an error when the file is no readable RTSTRUCT."""
        import pydicom  # (imported where used: jobs without an RTSTRUCT skip it)
        from pydicom.errors import InvalidDicomError

        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, EOFError, ValueError) as e:
            self.fail(AnnotationError, f"not a readable DICOM file ({type(e).__name__}: {e})")
        if str(getattr(ds, "Modality", "")) != "RTSTRUCT" and str(getattr(ds, "SOPClassUID", "")) != RTSTRUCT_STORAGE:
            self.fail(AnnotationError, f"not an RTSTRUCT (Modality {getattr(ds, 'Modality', '')!r})",
                      f"give the structure set file as rtstruct_{self.phase}")
        return ds

    def check_series(self, ds) -> None:
        """The series the structure set references (``ref_series``); an error when it names only others."""
        uid, phase = self.uid, self.phase
        refs = getattr(ds, "ReferencedFrameOfReferenceSequence", [])
        self.ref_series = {uid(str(s.SeriesInstanceUID)) for fr in refs for st in getattr(fr, "RTReferencedStudySequence", [])
                           for s in getattr(st, "RTReferencedSeriesSequence", []) if "SeriesInstanceUID" in s}
        if not (self.series_uid and self.ref_series and self.series_uid not in self.ref_series
                and self.link != "position"):
            return
        ref_frames = {uid(str(fr.FrameOfReferenceUID)) for fr in refs if "FrameOfReferenceUID" in fr}
        same_frame = bool(self.frame_uid) and self.frame_uid in ref_frames  # a re-export keeps its frame of reference
        self.fail(AnnotationError, f"RTSTRUCT references series {sorted(self.ref_series)}, not the {phase} image "
                                   f"series {self.series_uid}" +
                  (": it was drawn on another series of the same frame of reference" if same_frame else
                   " (nor its frame of reference): it was drawn on other images, perhaps another patient's"),
                  f"give the structure set drawn on the {phase} series" +
                  (" (or, if it was and the series was re-exported, set rtstruct_link: position)" if same_frame else ""))

    def chosen_rois(self, ds, roi_pattern: str, key) -> tuple[set[int], dict[int, str]]:
        """The ROI numbers whose names match ``roi_pattern``, and every ROI's name as messages may show it."""
        names = _roi_names(ds)
        rx = re.compile(roi_pattern, re.I)
        chosen = {n for n, name in names.items() if rx.search(name)}
        if key is not None and key.active:  # ROI names are free text: messages (which reach results/) show safe forms
            from ccgrade.privacy.pseudonyms import DESCRIPTION_WORDS, safe_text

            names = {n: safe_text(name, DESCRIPTION_WORDS, key) for n, name in names.items()}
        if not chosen:
            self.fail(AnnotationError, f"no ROI name matches {roi_pattern!r} (ROIs: {sorted(names.values())})",
                      "set config key rtstruct_roi to a pattern matching the tumour ROI's name")
        return chosen, names

    def contour_slice(self, c, roi) -> tuple[str, int, np.ndarray]:
        """How one contour links (``uid`` or ``position``), the slice index it links to, and its points in
        continuous index coordinates."""
        refs = [self.uid(str(r.ReferencedSOPInstanceUID)) for r in getattr(c, "ContourImageSequence", [])]
        pts = np.asarray(c.ContourData, float).reshape(-1, 3)
        idx = np.array([self.image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in pts])
        z = idx[:, 2]
        k_pos = int(np.round(z[0]))
        if np.ptp(z) > 2 * self.tolerance or abs(z[0] - k_pos) > self.tolerance:
            self.fail(GeometryError, f"contour of ROI {roi!r} is not on a slice plane of the image (slice index "
                                     f"{z.min():.2f}-{z.max():.2f})",
                      "the structure set must be drawn on this series' slices (not on a reformat or another "
                      "reconstruction)")
        hit = [self.sop_k[r] for r in refs if r in self.sop_k] if self.link != "position" else []
        if hit:
            how, k = "uid", hit[0]
            if k != k_pos:
                self.fail(GeometryError, f"contour of ROI {roi!r} references slice {k} (SOP UID) but lies on the "
                                         f"plane of slice {k_pos}", "re-export the structure set from this series")
        else:
            self.check_position_link(refs[0] if refs else "(none)")
            how, k = "position", k_pos
        n = self.image.GetSize()[2]
        if not 0 <= k < n:
            self.fail(GeometryError, f"contour of ROI {roi!r} lies on the plane of slice index {k}, outside the image "
                                     f"(slices 0-{n - 1}; position {pts[0, 2]:.2f} mm): the image lacks the slice "
                                     "it was drawn on", "export the whole series the structure set was drawn on")
        return how, k, idx

    def check_position_link(self, ref: str) -> None:
        """An error unless a contour whose image is not a slice of the series may be linked by its plane."""
        phase = self.phase
        if self.link == "uid":
            self.fail(AnnotationError, f"contour references image {ref}, which is not a slice of the {phase} series "
                                       "(rtstruct_link: uid)",
                      "set rtstruct_link: auto to link contours by plane position when the series or frame of "
                      "reference matches (e.g. after a re-export with new SOP UIDs)")
        if self.frame_clash and not self.series_ok:
            self.fail(AnnotationError, f"contour references image {ref}, which is not a slice of the {phase} series, "
                                       f"and the structure set's frame of reference {sorted(self.frames)} is not the "
                                       f"image's {self.frame_uid}: it was drawn on another image",
                      f"give the structure set drawn on the {phase} series")
        unverifiable = not (self.sop_k or self.series_uid or self.frame_uid)  # a volume file: no UIDs to compare
        if self.link == "auto" and not (self.series_ok or self.frame_ok or unverifiable):
            self.fail(AnnotationError, f"contour references image {ref}, which is not a slice of the {phase} series, "
                                       "and neither the series nor the frame of reference can be matched",
                      f"set rtstruct_link: position if the structure set was drawn on the {phase} series")


def write_rtstruct(path: str | Path, mask: np.ndarray, image: sitk.Image, slices: pd.DataFrame, *, series_uid: str,
                   study_uid: str, frame_uid: str, patient_id: str, roi_name: str = "Tumor") -> None:
    """Write the outlines of ``mask`` (on ``image``) as an RTSTRUCT referencing the image's slices."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "RTSTRUCT", patient_id, study_uid
    ds.SeriesInstanceUID, ds.StructureSetLabel = generate_uid(), "ccgrade"
    sop = slices.set_index("k")["sop_uid"].astype(str).to_dict()
    rs = Dataset()
    rs.SeriesInstanceUID = series_uid
    rs.ContourImageSequence = Sequence([_ref(sop[k]) for k in sorted(sop)])
    st = Dataset()
    st.ReferencedSOPClassUID, st.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", study_uid
    st.RTReferencedSeriesSequence = Sequence([rs])
    fr = Dataset()
    fr.FrameOfReferenceUID = frame_uid
    fr.RTReferencedStudySequence = Sequence([st])
    ds.ReferencedFrameOfReferenceSequence = Sequence([fr])
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = 1, frame_uid, roi_name
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    contours = []
    for k in np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1)):
        for line in mask_outlines(mask[k]):
            pts = [image.TransformContinuousIndexToPhysicalPoint((float(x) - 0.5, float(y) - 0.5, float(k)))
                   for x, y in line]
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [round(float(v), 4) for p in pts for v in p]
            c.ContourImageSequence = Sequence([_ref(sop[int(k)])])
            contours.append(c)
    rc = Dataset()
    rc.ReferencedROINumber, rc.ROIDisplayColor = 1, [255, 0, 0]
    rc.ContourSequence = Sequence(contours)
    ds.ROIContourSequence = Sequence([rc])
    obs = Dataset()
    obs.ObservationNumber, obs.ReferencedROINumber, obs.RTROIInterpretedType, obs.ROIInterpreter = 1, 1, "GTV", ""
    ds.RTROIObservationsSequence = Sequence([obs])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)


def _ref(sop_uid: str) -> Dataset:
    from pydicom.dataset import Dataset

    r = Dataset()
    r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = CT_STORAGE, sop_uid
    return r
