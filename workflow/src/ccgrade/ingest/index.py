"""DICOM ingest, the header index: every file of a patient's folder read header-only (pydicom, ``defer_size``;
pixel data never loaded), one row per slice with what the later stages need and nothing identifying."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError

from ccgrade.errors import DicomError


PIXEL_DATA = 0x7FE00010

SLICE_COLUMNS = ["patient_id", "file", "series_uid", "sop_uid", "sop_class", "study_uid", "frame_uid", "modality",
                 "image_type", "series_number", "instance_number", "series_description", "contrast_agent",
                 "acq_s", "bolus_s", "ipp_x", "ipp_y", "ipp_z", "iop", "row_spacing", "col_spacing",
                 "slice_thickness", "gantry_tilt", "kernel", "rows", "cols", "slope", "intercept", "photometric", "bits_stored",
                 "pixel_representation", "bits_allocated", "samples_per_pixel", "transfer_syntax", "file_bytes",
                 "pixel_offset", "pixel_bytes_needed", "truncated"]

#: uncompressed transfer syntaxes (implicit and explicit VR little endian, explicit VR big endian)
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _seconds(tm: object) -> float:
    """DICOM TM (HHMMSS.frac) to seconds after midnight; NaN when absent or malformed."""
    s = str(tm or "").strip()
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", s)
    if not m:
        return float("nan")
    h, mi, se, fr = m.groups()
    return int(h) * 3600 + int(mi or 0) * 60 + int(se or 0) + float(fr or 0)


#: SOP classes that are not images (PS3.4 Annex B; PS3.3 F for the media storage directory), each with what a
#: reader is told it is: listed in the index as such, never a missing slice. (Entries match the class itself
#: and every class below it: ``...88`` is every structured report.)
NON_IMAGE_CLASSES = (
    ("1.2.840.10008.1.3.10", "media storage directory (DICOMDIR)"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "key object selection"),
    ("1.2.840.10008.5.1.4.1.1.88", "structured report (e.g. a dose report)"),
    ("1.2.840.10008.5.1.4.1.1.11", "presentation state"),
    ("1.2.840.10008.5.1.4.1.1.66.4", "segmentation (SEG)"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data or registration"),
    ("1.2.840.10008.5.1.4.1.1.481", "radiotherapy object (RTSTRUCT, plan, dose)"),
    ("1.2.840.10008.5.1.4.1.1.104", "encapsulated document (PDF, CDA)"),
    ("1.2.840.10008.5.1.4.1.1.9", "waveform"),
)


def object_kind(sop_class: str) -> str:
    """What a non-image SOP class is ('' for an image class or an unknown one)."""
    c = str(sop_class or "").strip()
    return next((what for uid, what in NON_IMAGE_CLASSES if c == uid or c.startswith(uid + ".")), "")


class MissingPixelData(ValueError):
    """A file that says it is an image (its SOP class or modality) but holds no PixelData."""


def walk_files(folder: str | Path) -> Iterator[tuple[Path, str]]:
    """Every file below ``folder`` (hidden files and folders left out) with what it is, judged before its
    contents are read: ``dicom`` (the DICM preamble, or a ``.dcm`` name), ``other`` (neither: README.txt,
    Thumbs.db), or why it is skipped: a special file (FIFO, socket, device: never opened, so a FIFO cannot
    hang the run), a link to nothing, an empty file, a file that cannot be opened. Linked folders are
    followed (once each); one that leads outside ``folder`` is yielded itself, as ``note: ...``."""
    top = os.path.realpath(folder)
    seen = {top}
    for root, dirs, files in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(d for d in dirs if not d.startswith(".")):
            real = os.path.realpath(os.path.join(root, d))
            if real in seen:  # a link back to a folder already read (or a loop)
                continue
            seen.add(real)
            keep.append(d)
            if os.path.islink(os.path.join(root, d)) and os.path.commonpath([top, real]) != top:
                yield Path(root) / d, ("note: a folder linked from outside the patient's folder; its files are read: "
                                       "check that they are this patient's")
        dirs[:] = keep
        for f in sorted(files):
            if f.startswith("."):
                continue
            p = Path(root) / f
            try:
                st = os.stat(p)
            except OSError:
                yield p, "a link to a file that does not exist"
                continue
            if not stat.S_ISREG(st.st_mode):
                yield p, "not a regular file (a FIFO, socket or device): never opened"
                continue
            if st.st_size == 0:
                yield p, "an empty file (0 bytes)"
                continue
            try:
                with open(p, "rb") as fh:
                    head = fh.read(132)
            except OSError as e:
                yield p, f"cannot be opened ({e.strerror})"
                continue
            yield p, "dicom" if head[128:132] == b"DICM" or p.suffix.lower() == ".dcm" else "other"


def find_dicom_files(folder: str | Path) -> list[Path]:
    """All files below ``folder`` (any layout, any extension) that carry the DICOM preamble or end in .dcm."""
    return [p for p, kind in walk_files(folder) if kind == "dicom"]


def has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False

#: the elements the index reads (only these are parsed from a header); converted by pydicom itself
INDEX_TAGS = [0x00080005, 0x00080008, 0x00080016, 0x00080018, 0x00080031, 0x00080032, 0x00080060, 0x0008103E,
              0x00180010, 0x00180050, 0x00181042, 0x00181120, 0x00181210, 0x0020000D, 0x0020000E, 0x00200011,
              0x00200013, 0x00200032, 0x00200037, 0x00200052, 0x00280002, 0x00280004, 0x00280010, 0x00280011,
              0x00280030, 0x00280100, 0x00280101, 0x00280103, 0x00281052, 0x00281053, PIXEL_DATA]


def header_values(ds: pydicom.Dataset, tags: list[int]) -> dict[int, object]:
    """The values of ``tags`` converted by pydicom's own value conversion (``pydicom.values.convert_value``):
    the VR from the file, or the data dictionary's for implicit-VR files; text in the declared character
    set. Empty values are left out. (The Dataset's per-access machinery is skipped: it costs as much as
    reading the file.)"""
    from pydicom.charset import convert_encodings
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import RawDataElement
    from pydicom.values import convert_value

    def convert(tag: int, encodings):
        raw = ds.get_item(tag)
        if raw is None:
            return None
        if isinstance(raw, RawDataElement):
            return convert_value(raw.VR or dictionary_VR(tag), raw, encodings)
        return raw.value

    cs = convert(0x00080005, None)
    encodings = convert_encodings(cs if cs else None)
    out = {}
    for tag in tags:
        if tag == PIXEL_DATA:
            continue
        v = convert(tag, encodings)
        if v is not None and v != "" and not (isinstance(v, (list, pydicom.multival.MultiValue)) and not len(v)):
            out[tag] = v
    return out


def _text(vals: dict, tag: int) -> str:
    v = vals.get(tag)
    if v is None:
        return ""
    if isinstance(v, (list, pydicom.multival.MultiValue)):
        return "\\".join(str(x) for x in v)
    return str(v).strip()


def _numbers(vals: dict, tag: int) -> list[float]:
    v = vals.get(tag)
    if v is None:
        return []
    return [float(x) for x in (v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v])]


def _number(vals: dict, tag: int, default: float) -> float:
    v = _numbers(vals, tag)
    return float(v[0]) if v else default


def oversized_element(path: Path) -> str:
    """The element whose declared length runs past the end of the file (which hides everything after it,
    PixelData included), described for a reason; '' when there is none."""
    size = path.stat().st_size
    try:
        ds = pydicom.dcmread(path, defer_size=256, force=True)
    except Exception:  # noqa: BLE001 - only a diagnosis: the caller reports the missing PixelData anyway
        return ""
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
        if length is not None and tell is not None and length != 0xFFFFFFFF and tell + length > size:
            kind = "private element" if tag.is_private else "element"
            return (f"{kind} ({tag.group:04X},{tag.element:04X}) declares {length:,} bytes but the file ends "
                    f"{size - tell:,} bytes after its start: the header is corrupt there and nothing after it "
                    "(PixelData included) can be read")
    return ""


def read_header(path: Path, folder: Path, patient: str) -> dict:
    """One slice's index record from its header, values converted by pydicom (pixel data is deferred: never
    loaded, only size-checked)."""
    ds = pydicom.dcmread(path, defer_size=256, specific_tags=INDEX_TAGS)
    v = header_values(ds, INDEX_TAGS)
    size = path.stat().st_size
    need, offset, trunc = np.nan, np.nan, False
    modality = _text(v, 0x00080060)
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(v, 0x00080016) or str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
    if PIXEL_DATA not in ds and not object_kind(sop_class) and modality in ("CT", "MR", "PT", "OT", ""):
        why = oversized_element(path)
        if why or 0x00280010 not in v:  # the header itself stops short (no Rows either): a cut or damaged file
            raise ValueError(why or f"the header ends after {size} bytes, before the image's Rows and PixelData: "
                             "a truncated file")
        raise MissingPixelData(f"image without PixelData ({size} bytes; the header is whole: exported without "
                               "its pixels?)")
    if PIXEL_DATA in ds:
        raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
        length = getattr(raw, "length", None)
        tell = getattr(raw, "value_tell", None)
        if length is not None and tell is not None and length != 0xFFFFFFFF:
            need, offset = int(tell + length), int(tell)
            trunc = size < need
    ipp = _numbers(v, 0x00200032) + [np.nan] * 3
    iop = _numbers(v, 0x00200037) + [np.nan] * 6
    ps = _numbers(v, 0x00280030) + [np.nan] * 2
    ts = getattr(meta, "TransferSyntaxUID", "")
    series_number = _number(v, 0x00200011, np.nan)
    instance = _number(v, 0x00200013, np.nan)
    desc = _text(v, 0x0008103E)
    series_uid = _text(v, 0x0020000E)
    return {
        "patient_id": patient, "file": str(path.relative_to(folder)),
        # anonymised exports may blank the series UID: fall back to folder + series number + description
        "series_uid": series_uid or f"nouid:{path.parent.relative_to(folder)}:{int_text(series_number)}:{desc}",
        "sop_uid": _text(v, 0x00080018) or path.name, "sop_class": sop_class,
        "study_uid": _text(v, 0x0020000D), "frame_uid": _text(v, 0x00200052),
        "modality": modality, "image_type": _text(v, 0x00080008),
        "series_number": None if series_number != series_number else int(series_number),
        "instance_number": None if instance != instance else int(instance),
        "series_description": desc,
        "contrast_agent": _text(v, 0x00180010),
        "acq_s": _seconds(_text(v, 0x00080032) or _text(v, 0x00080031)),
        "bolus_s": _seconds(_text(v, 0x00181042)),
        "ipp_x": ipp[0], "ipp_y": ipp[1], "ipp_z": ipp[2], "iop": " ".join(f"{v:.6f}" for v in iop[:6]),
        "row_spacing": ps[0], "col_spacing": ps[1],
        "slice_thickness": _number(v, 0x00180050, np.nan) or np.nan,
        "gantry_tilt": _number(v, 0x00181120, 0.0), "kernel": _text(v, 0x00181210),
        "rows": int(_number(v, 0x00280010, 0)), "cols": int(_number(v, 0x00280011, 0)),
        "slope": _number(v, 0x00281053, 1) or 1.0, "intercept": _number(v, 0x00281052, 0) or 0.0,
        "photometric": _text(v, 0x00280004), "bits_stored": int(_number(v, 0x00280101, 0)),
        "pixel_representation": int(_number(v, 0x00280103, 0)),
        "bits_allocated": int(_number(v, 0x00280100, 0)),
        "samples_per_pixel": int(_number(v, 0x00280002, 1) or 1),
        "transfer_syntax": str(ts), "file_bytes": size, "pixel_offset": offset, "pixel_bytes_needed": need,
        "truncated": bool(trunc),
    }


def int_text(v: float) -> str:
    return "" if v != v else str(int(v))


def _salvage_series_uid(path: Path) -> str:
    """The SeriesInstanceUID of a file whose header cannot be read whole, when the part before the damage
    holds it ('' otherwise): used to tell which series an unreadable file would have belonged to."""
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True, specific_tags=[0x0020000E])
        return _text(header_values(ds, [0x0020000E]), 0x0020000E)
    except Exception:  # noqa: BLE001 - a best effort; the file is reported as unreadable either way
        return ""


def index_folder(folder: str | Path, patient: str) -> tuple[pd.DataFrame, list[dict]]:
    """Header index of every DICOM file under ``folder``, and the problems: files that cannot be read (with the
    series UID when the readable part of the header gives it) and files skipped unread (``stage``
    ``skipped``: special files, empty files, links to nothing). A problem with ``attach`` False belongs to no
    series: a file with neither the DICM preamble nor a readable series UID does not claim to be a slice."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(f"DICOM folder {str(folder)!r} does not exist", patient=patient)
    recs, problems = [], []

    def said(rel: str, stage: str, reason: str, **more) -> None:
        problems.append({"patient_id": patient, "phase": "", "file": rel, "stage": stage, "reason": reason, **more})

    for p, kind in walk_files(folder):
        rel = str(p.relative_to(folder))
        if kind == "other":
            continue
        if kind.startswith("note: "):  # said, and read: no series is affected
            said(rel, "note", kind[6:], attach=False)
            continue
        if kind != "dicom":
            said(rel, "skipped", f"skipped: {kind}; no series is affected", attach=False)
            continue
        try:
            recs.append(read_header(p, folder, patient))
        except MissingPixelData as e:
            said(rel, "index", str(e), series_uid=_salvage_series_uid(p))
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            uid = _salvage_series_uid(p)
            claims = bool(uid) or has_preamble(p)
            what = "unreadable DICOM header" if claims else "not a DICOM file (no DICM preamble, no readable header)"
            said(rel, "index" if claims else "skipped", f"{what} ({type(e).__name__}: {e})", series_uid=uid,
                 attach=claims)
    df = pd.DataFrame(recs, columns=SLICE_COLUMNS)
    df["dropped"] = ""
    return df, problems
