"""DICOM ingest: a header-only index, phase assignment, geometry checks, and HU volumes as NIfTI.

Stage 1 (``index``) reads headers only (``defer_size``; pixel data is never loaded) and writes, per
patient, a slice index, a reviewable series table with the phase each series was given and why, and
one row per configured phase saying whether it is usable. Stage 2 (``convert``) reads the pixels of
the chosen series, applies the rescale, sorts by position along the slice normal and writes NIfTI.
PHI (names, birth dates, institutions, accession numbers) is never copied into any output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from .errors import DicomError, GeometryError
from .outputs import atomic_path, write_tsv

PIXEL_DATA = 0x7FE00010
SLICE_COLUMNS = ["patient_id", "file", "series_uid", "sop_uid", "study_uid", "frame_uid", "modality",
                 "image_type", "series_number", "instance_number", "series_description", "contrast_agent",
                 "acq_s", "bolus_s", "ipp_x", "ipp_y", "ipp_z", "iop", "row_spacing", "col_spacing",
                 "slice_thickness", "rows", "cols", "slope", "intercept", "photometric", "bits_stored",
                 "pixel_representation", "bits_allocated", "samples_per_pixel", "transfer_syntax", "file_bytes",
                 "pixel_offset", "pixel_bytes_needed", "truncated"]
#: one row per patient x configured phase: usable or excluded, and why
PHASE_COLUMNS = ["patient_id", "phase", "status", "series_uid", "n_slices", "spacing", "reason"]
#: uncompressed little-endian transfer syntaxes whose pixel bytes convert reads directly at the indexed offset
NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _seconds(tm: object) -> float:
    """DICOM TM (HHMMSS.frac) to seconds after midnight; NaN when absent or malformed."""
    s = str(tm or "").strip()
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", s)
    if not m:
        return float("nan")
    h, mi, se, fr = m.groups()
    return int(h) * 3600 + int(mi or 0) * 60 + int(se or 0) + float(fr or 0)


def find_dicom_files(folder: str | Path) -> list[Path]:
    """All files below ``folder`` (any layout, any extension) that carry the DICOM preamble or end in .dcm."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.startswith(".") or f.upper() == "DICOMDIR":
                continue
            p = Path(root) / f
            try:
                with open(p, "rb") as fh:
                    head = fh.read(132)
            except OSError:
                continue
            if head[128:132] == b"DICM" or p.suffix.lower() == ".dcm":
                out.append(p)
    return out


#: text encodings of SpecificCharacterSet values decoded without pydicom (others use pydicom's conversion)
_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_NUMERIC = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}


class _Header:
    """Reads the index's ~27 elements from a dataset's raw (unconverted) elements.

    pydicom converts and validates every element on access, which costs about as much as the file read;
    the index needs only strings and numbers, so raw values are decoded here (text in the declared
    character set, DS/IS split on backslashes, binary integers in the file's byte order). Anything
    unusual (sequences, other character sets, already-converted elements) goes through pydicom.
    """

    def __init__(self, ds: pydicom.Dataset):
        self.ds = ds
        cs = ds.get_item(0x00080005)
        raw = b"" if cs is None else (cs.value if isinstance(cs.value, bytes) else str(cs.value).encode())
        cs_val = (raw or b"").decode("ascii", "replace").strip(" \x00").split("\\")[0].strip()
        self.encoding = _CHARSETS.get(cs_val)

    def _raw(self, tag: int):
        elem = self.ds.get_item(tag)
        if elem is None:
            return None, None
        if not isinstance(elem, pydicom.dataelem.RawDataElement) or elem.value is None or not isinstance(elem.value, bytes):
            return "converted", elem
        return "raw", elem

    def text(self, tag: int, default: str = "") -> str:
        how, elem = self._raw(tag)
        if how is None:
            return default
        if how == "converted" or self.encoding is None:
            v = self.ds.get(tag)
            v = getattr(v, "value", v)
            return default if v is None else "\\".join(map(str, v)) if isinstance(v, (list, pydicom.multival.MultiValue)) else str(v)
        return elem.value.decode(self.encoding, "replace").strip(" \x00")

    def numbers(self, tag: int) -> list[float] | None:
        how, elem = self._raw(tag)
        if how is None:
            return None
        vr = elem.VR if how == "raw" else None
        if how == "raw" and vr in _NUMERIC:
            size = struct.calcsize("<" + _NUMERIC[vr])
            n = len(elem.value) // size
            order = "<" if elem.is_little_endian else ">"
            return [float(v) for v in struct.unpack(f"{order}{n}{_NUMERIC[vr]}", elem.value[: n * size])]
        if how == "raw" and (vr in ("DS", "IS") or (vr is None and elem.is_implicit_VR)):
            txt = elem.value.decode("ascii", "replace").strip(" \x00")
            try:
                return [float(x) for x in txt.split("\\") if x.strip()] if txt else []
            except ValueError:
                pass
        v = self.ds.get(tag)
        v = getattr(v, "value", v)
        if v is None or v == "":
            return []
        return [float(x) for x in (v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v])]

    def number(self, tag: int, default: float) -> float:
        v = self.numbers(tag)
        return float(v[0]) if v else default


#: the elements the index reads (only these are kept when parsing a header)
INDEX_TAGS = [0x00080005, 0x00080008, 0x00080018, 0x00080031, 0x00080032, 0x00080060, 0x0008103E, 0x00180010,
              0x00180050, 0x00181042, 0x0020000D, 0x0020000E, 0x00200011, 0x00200013, 0x00200032, 0x00200037,
              0x00200052, 0x00280002, 0x00280004, 0x00280010, 0x00280011, 0x00280030, 0x00280100, 0x00280101,
              0x00280103, 0x00281052, 0x00281053, PIXEL_DATA]


def read_header(path: Path, folder: Path, patient: str) -> dict:
    """One slice's index record from its header; pixel data is skipped (deferred) and size-checked."""
    ds = pydicom.dcmread(path, defer_size=256, specific_tags=INDEX_TAGS)
    h = _Header(ds)
    size = path.stat().st_size
    need, offset, trunc = np.nan, np.nan, False
    modality = h.text(0x00080060)
    if PIXEL_DATA not in ds and modality in ("CT", "MR", "PT", "OT", ""):
        raise ValueError(f"image without PixelData ({size} bytes; truncated?)")
    if PIXEL_DATA in ds:
        raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
        length = getattr(raw, "length", None)
        tell = getattr(raw, "value_tell", None)
        if length is not None and tell is not None and length != 0xFFFFFFFF:
            need, offset = int(tell + length), int(tell)
            trunc = size < need
    ipp = (h.numbers(0x00200032) or []) + [np.nan] * 3
    iop = (h.numbers(0x00200037) or []) + [np.nan] * 6
    ps = (h.numbers(0x00280030) or []) + [np.nan] * 2
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")
    series_number = h.number(0x00200011, np.nan)
    instance = h.number(0x00200013, np.nan)
    desc = h.text(0x0008103E)
    series_uid = h.text(0x0020000E)
    return {
        "patient_id": patient, "file": str(path.relative_to(folder)),
        # anonymised exports may blank the series UID: fall back to folder + series number + description
        "series_uid": series_uid or f"nouid:{path.parent.relative_to(folder)}:{_int_text(series_number)}:{desc}",
        "sop_uid": h.text(0x00080018) or path.name,
        "study_uid": h.text(0x0020000D), "frame_uid": h.text(0x00200052),
        "modality": modality, "image_type": h.text(0x00080008),
        "series_number": None if series_number != series_number else int(series_number),
        "instance_number": None if instance != instance else int(instance),
        "series_description": desc,
        "contrast_agent": h.text(0x00180010),
        "acq_s": _seconds(h.text(0x00080032) or h.text(0x00080031)),
        "bolus_s": _seconds(h.text(0x00181042)),
        "ipp_x": ipp[0], "ipp_y": ipp[1], "ipp_z": ipp[2], "iop": " ".join(f"{v:.6f}" for v in iop[:6]),
        "row_spacing": ps[0], "col_spacing": ps[1],
        "slice_thickness": h.number(0x00180050, np.nan) or np.nan,
        "rows": int(h.number(0x00280010, 0)), "cols": int(h.number(0x00280011, 0)),
        "slope": h.number(0x00281053, 1) or 1.0, "intercept": h.number(0x00281052, 0) or 0.0,
        "photometric": h.text(0x00280004), "bits_stored": int(h.number(0x00280101, 0) or 0),
        "pixel_representation": int(h.number(0x00280103, 0) or 0),
        "bits_allocated": int(h.number(0x00280100, 0) or 0),
        "samples_per_pixel": int(h.number(0x00280002, 1) or 1),
        "transfer_syntax": str(ts), "file_bytes": size, "pixel_offset": offset, "pixel_bytes_needed": need,
        "truncated": bool(trunc),
    }


def _int_text(v: float) -> str:
    return "" if v != v else str(int(v))


def read_header_pydicom(path: Path, folder: Path, patient: str) -> dict:
    """Reference implementation of ``read_header`` through pydicom's own value conversion (tests compare)."""
    ds = pydicom.dcmread(path, defer_size=256)
    rec = read_header(path, folder, patient)
    sn, inn = ds.get("SeriesNumber", None), ds.get("InstanceNumber", None)
    ipp = [float(v) for v in ds.get("ImagePositionPatient", [np.nan] * 3)]
    iop = [float(v) for v in ds.get("ImageOrientationPatient", [np.nan] * 6)]
    ps = [float(v) for v in ds.get("PixelSpacing", [np.nan, np.nan])]
    rec.update({
        "series_uid": str(ds.get("SeriesInstanceUID", "") or
                          f"nouid:{path.parent.relative_to(folder)}:{'' if sn is None else int(sn)}:{ds.get('SeriesDescription', '')}"),
        "sop_uid": str(ds.get("SOPInstanceUID", "") or path.name),
        "study_uid": str(ds.get("StudyInstanceUID", "")), "frame_uid": str(ds.get("FrameOfReferenceUID", "")),
        "modality": str(ds.get("Modality", "")), "image_type": "\\".join(map(str, ds.get("ImageType", []))),
        "series_number": None if sn is None else int(sn), "instance_number": None if inn is None else int(inn),
        "series_description": str(ds.get("SeriesDescription", "")),
        "contrast_agent": str(ds.get("ContrastBolusAgent", "")),
        "acq_s": _seconds(ds.get("AcquisitionTime") or ds.get("SeriesTime")),
        "bolus_s": _seconds(ds.get("ContrastBolusStartTime")),
        "ipp_x": ipp[0], "ipp_y": ipp[1], "ipp_z": ipp[2], "iop": " ".join(f"{v:.6f}" for v in iop),
        "row_spacing": ps[0], "col_spacing": ps[1],
        "slice_thickness": float(ds.get("SliceThickness", np.nan) or np.nan),
        "rows": int(ds.get("Rows", 0)), "cols": int(ds.get("Columns", 0)),
        "slope": float(ds.get("RescaleSlope", 1) or 1), "intercept": float(ds.get("RescaleIntercept", 0) or 0),
        "photometric": str(ds.get("PhotometricInterpretation", "")), "bits_stored": int(ds.get("BitsStored", 0) or 0),
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "bits_allocated": int(ds.get("BitsAllocated", 0) or 0), "samples_per_pixel": int(ds.get("SamplesPerPixel", 1) or 1),
    })
    return rec


def index_folder(folder: str | Path, patient: str) -> tuple[pd.DataFrame, list[dict]]:
    """Header index of every DICOM file under ``folder``; unreadable files are returned as problems."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(f"DICOM folder {str(folder)!r} does not exist", patient=patient)
    recs, problems = [], []
    for p in find_dicom_files(folder):
        try:
            recs.append(read_header(p, folder, patient))
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
            problems.append({"patient_id": patient, "phase": "", "file": str(p.relative_to(folder)),
                             "stage": "index", "reason": f"unreadable DICOM header ({type(e).__name__}: {e})"})
    return pd.DataFrame(recs, columns=SLICE_COLUMNS), problems


def _normal(iop: str) -> np.ndarray:
    v = np.array([float(x) for x in iop.split()])
    return np.cross(v[:3], v[3:])


def codec_problem(transfer_syntax: str) -> str:
    """Why pixels of this transfer syntax cannot be decoded here ('' when they can): the codec and the
    package that would decode it (pydicom's pixel-data plugins: pylibjpeg-*, pyjpegls, Pillow)."""
    if not transfer_syntax or transfer_syntax in NATIVE_LE or transfer_syntax == "1.2.840.10008.1.2.2":
        return ""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    uid = UID(transfer_syntax)
    name = uid.name if uid.name != str(uid) else "an unknown transfer syntax"
    try:
        dec = get_decoder(uid)
    except NotImplementedError:
        return f"compressed pixel data in {name} ({uid}): pydicom has no decoder for this transfer syntax"
    if not dec.is_available:  # missing_dependencies: one line per plugin, naming the packages it needs
        return (f"compressed pixel data in {name} ({uid}) and no decoder installed "
                f"({'; '.join(dec.missing_dependencies)})")
    return ""


def series_geometry(sl: pd.DataFrame, tolerance: float = 0.01) -> dict:
    """Check one series' geometry; return spacing/extent facts and ``problem`` (empty when usable)."""
    facts = {"n_slices": len(sl), "problem": "", "problem_file": min(sl["file"])}
    trunc = sl[sl["truncated"]]
    if len(trunc):
        r = trunc.iloc[0]
        facts["problem_file"] = r["file"]
        facts["problem"] = (f"truncated file {r['file']} ({int(r['file_bytes'])} bytes, pixel data needs "
                            f"{int(r['pixel_bytes_needed'])})" + (f" and {len(trunc) - 1} more" if len(trunc) > 1 else ""))
        return facts
    for col, what in (("iop", "orientation"), ("rows", "rows"), ("cols", "columns"), ("row_spacing", "pixel spacing"),
                      ("col_spacing", "pixel spacing"), ("frame_uid", "frame of reference")):
        if sl[col].nunique(dropna=False) > 1:
            facts["problem"] = f"mixed series: {sl[col].nunique(dropna=False)} different {what} values in one series"
            return facts
    if len(sl) < 2:
        facts["problem"] = "single-slice series (not a volume)"
        return facts
    if sl[["ipp_x", "ipp_y", "ipp_z"]].isna().any().any() or "nan" in sl["iop"].iloc[0]:
        facts["problem"] = "missing ImagePositionPatient/ImageOrientationPatient"
        return facts
    n = _normal(sl["iop"].iloc[0])
    if abs(abs(n[2]) - 1) > 1e-3:
        facts["problem"] = f"non-axial orientation (slice normal {np.round(n, 3).tolist()})"
        return facts
    codec = codec_problem(str(sl["transfer_syntax"].iloc[0]))
    if codec:
        facts["problem"] = codec
        return facts
    ipp = sl[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float)
    along = ipp @ n
    order = np.argsort(along, kind="stable")
    pos = along[order]
    files = sl["file"].to_numpy()[order]
    # slices must stack along their normal: in-plane drift of the positions is a tilted gantry (or a
    # sheared reconstruction), which a volume with one direction matrix would silently misplace
    drift = ipp[order] - ipp[order][:1] - np.outer(pos - pos[0], n)
    shift = float(np.abs(drift).max()) if len(drift) else 0.0
    if shift > max(0.05, 0.1 * float(sl["row_spacing"].iloc[0])):
        k = int(np.argmax(np.abs(drift).max(axis=1)))
        facts["problem_file"] = files[k]
        tilt = np.degrees(np.arctan2(np.linalg.norm(drift[-1]), pos[-1] - pos[0])) if pos[-1] > pos[0] else float("nan")
        facts["problem"] = (f"sheared slice positions (gantry tilt of about {tilt:.1f} degrees): slices drift "
                            f"{shift:.2f} mm in-plane; resample to an orthogonal grid (e.g. dcm2niix's tilt "
                            "correction) before use")
        return facts
    d = np.diff(pos)
    if (d < 1e-3).any():
        k = int(np.argmax(d < 1e-3))
        facts["problem_file"] = files[k + 1]
        facts["problem"] = f"duplicate slice positions ({len(d[d < 1e-3])} pairs, first at {pos[k]:.2f} mm)"
        return facts
    med = float(np.median(d))
    facts.update(spacing=med, z_min=float(pos[0]), z_max=float(pos[-1]))
    bad = np.abs(d - med) > tolerance * med + 1e-4
    if bad.any():
        k = int(np.argmax(bad))
        facts["problem_file"] = files[k + 1]
        ratio = d[k] / med
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
            facts["problem"] = (f"missing slice(s): gap of {d[k]:.2f} mm between positions {pos[k]:.2f} and "
                                f"{pos[k + 1]:.2f} mm (expected {med:.2f} mm; ~{round(ratio) - 1} slice(s) absent)")
        else:
            facts["problem"] = f"inconsistent slice spacing ({d.min():.2f}-{d.max():.2f} mm, median {med:.2f} mm)"
    return facts


def _tokens(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def phase_from_description(desc: str, keywords: dict[str, list[str]]) -> tuple[str | None, str]:
    """The phase whose keyword (whole words, case-insensitive) occurs in a series description."""
    toks = _tokens(desc)
    hits = {ph: kw for ph, kws in keywords.items() for kw in kws if _tokens(kw) in toks}
    if len(hits) == 1:
        ph, kw = next(iter(hits.items()))
        return ph, f"description {desc!r} matched {kw!r}"
    if len(hits) > 1:
        return None, f"description {desc!r} matched several phases {sorted(hits)}"
    return None, ""


def assign_phases(series: pd.DataFrame, cfg_ingest: dict, mapping: pd.DataFrame | None = None) -> pd.DataFrame:
    """Give every candidate series a phase by mapping file, description, contrast agent or bolus timing."""
    series = series.copy()
    series["phase"], series["method"], series["evidence"] = "", "", ""
    mapped = {}
    if mapping is not None and len(mapping):
        pid = series["patient_id"].iloc[0] if len(series) else None
        m = mapping[(mapping["patient_id"].astype(str) == str(pid)) | (mapping["patient_id"].astype(str) == "*")]
        mapped = dict(zip(m["series_instance_uid"].astype(str), m["phase"].astype(str)))
    for i, s in series.iterrows():
        if s["status"] == "ignored":
            continue
        ev = []
        if s["series_uid"] in mapped:
            series.loc[i, ["phase", "method", "evidence"]] = [mapped[s["series_uid"]], "mapping", "phase map file"]
            continue
        ph, why = phase_from_description(s["series_description"], cfg_ingest["keywords"])
        delay = s["acq_s"] - s["bolus_s"]
        timed = None
        if s["contrast_agent"] and np.isfinite(delay):
            for p, (lo, hi) in cfg_ingest["bolus_delay_s"].items():
                if lo <= delay < hi:
                    timed = p
            ev.append(f"bolus delay {delay:.0f} s" + (f" -> {timed}" if timed else ""))
        ev.append(f"contrast agent {s['contrast_agent']!r}" if s["contrast_agent"] else "no contrast agent")
        if ph:
            method = "description"
            if (timed and timed != ph) or (ph == "up" and s["contrast_agent"]):
                ev.append(f"CONFLICT: header timing/agent suggests {timed or 'enhanced'}")
        elif not s["contrast_agent"] and not np.isfinite(s["bolus_s"]):
            ph, method = "up", "contrast-agent"
        elif timed:
            ph, method = timed, "bolus-timing"
        else:
            method = "unassigned"
        series.loc[i, ["phase", "method", "evidence"]] = [ph or "", method, "; ".join(x for x in [why] + ev if x)]
    # fallback: enhanced series still without a phase, ordered by acquisition time, fill the free phases
    free = [p for p in ("cmp", "np", "ep") if p in cfg_ingest["bolus_delay_s"] and p not in set(series["phase"])]
    todo = series[(series["method"] == "unassigned") & (series["contrast_agent"] != "")].sort_values("acq_s")
    if len(todo) and len(todo) <= len(free):
        for (i, _), p in zip(todo.iterrows(), free):
            series.loc[i, ["phase", "method"]] = [p, "acquisition-order"]
            series.loc[i, "evidence"] += f"; enhanced series ordered by acquisition time -> {p}"
    return series


def summarise_series(slices: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """One row per series: description, counts, geometry facts, and whether it is a candidate volume."""
    rows = []
    for uid, sl in slices.groupby("series_uid", sort=False):
        first = sl.sort_values("ipp_z").iloc[0]
        row = {k: first[k] for k in ("patient_id", "series_uid", "series_number", "series_description",
                                     "modality", "contrast_agent", "acq_s", "bolus_s", "transfer_syntax")}
        row["n_files"] = len(sl)
        status, reason = "candidate", ""
        if first["modality"] != "CT":
            status, reason = "ignored", f"modality {first['modality']!r} is not CT"
        elif "LOCALIZER" in sl["image_type"].str.upper().str.cat(sep="\\"):
            status, reason = "ignored", "localizer/scout images"
        geo = series_geometry(sl, tolerance) if status == "candidate" else {"problem": ""}
        if geo.get("problem"):
            status, reason = "bad", geo["problem"]
        row.update(status=status, reason=reason, first_file=min(sl["file"]),
                   problem_file=geo.get("problem_file", ""), spacing=geo.get("spacing", np.nan),
                   z_min=geo.get("z_min", np.nan), z_max=geo.get("z_max", np.nan))
        rows.append(row)
    return pd.DataFrame(rows)


def choose_phases(series: pd.DataFrame, phases: list[str], patient: str) -> tuple[pd.DataFrame, list[dict]]:
    """One row per configured phase (ok or excluded, with the reason) and the exclusion records."""
    rows, excl = [], []
    for ph in phases:
        cand = series[series["phase"] == ph] if len(series) else series
        good, bad = cand[cand["status"] == "candidate"], cand[cand["status"] == "bad"]
        if len(good) == 1:
            s = good.iloc[0]
            rows.append({"patient_id": patient, "phase": ph, "status": "ok", "series_uid": s["series_uid"],
                         "n_slices": int(s["n_files"]), "spacing": s["spacing"], "reason": ""})
            continue
        if len(good) > 1:
            reason = (f"ambiguous: {len(good)} series look like this phase ("
                      + ", ".join(f"#{s.series_number} {s.series_description!r}" for s in good.itertuples())
                      + "); resolve with ingest.phase_map")
            uid, file = ";".join(good["series_uid"]), ";".join(good["first_file"])
        elif len(bad):
            reason, uid, file = "; ".join(bad["reason"]), ";".join(bad["series_uid"]), ";".join(bad["problem_file"])
        else:
            reason, uid, file = "missing phase: no series was assigned to it", "", ""
        rows.append({"patient_id": patient, "phase": ph, "status": "excluded", "series_uid": uid,
                     "n_slices": 0, "spacing": np.nan, "reason": reason})
        excl.append({"patient_id": patient, "phase": ph, "file": file, "stage": "ingest", "reason": reason})
    return pd.DataFrame(rows, columns=PHASE_COLUMNS), excl


def image_file_phase(path: str | Path, patient: str, phase: str) -> dict:
    """Phase-table row of a NIfTI/NRRD/MHA volume given as a phase's image (header only, no pixels)."""
    rd = sitk.ImageFileReader()
    rd.SetFileName(str(path))
    name = Path(path).name
    try:
        rd.ReadImageInformation()
    except RuntimeError as e:
        reason = f"cannot read image {name} ({str(e).strip().splitlines()[-1][:200]})"
        return {"patient_id": patient, "phase": phase, "status": "excluded", "series_uid": f"file:{name}",
                "n_slices": 0, "spacing": np.nan, "reason": reason}
    size, d = rd.GetSize(), np.array(rd.GetDirection())
    reason = ""
    if rd.GetDimension() != 3 or size[2] < 2:
        reason = f"image {name} is not a 3D volume (size {list(size)})"
    elif rd.GetNumberOfComponents() != 1:
        reason = f"image {name} has {rd.GetNumberOfComponents()} components per voxel (expected a grey-value CT)"
    elif not np.allclose(np.sort(np.abs(d.reshape(3, 3)), axis=0)[-1], 1, atol=1e-3):
        # any axis-aligned orientation is fine (convert reorients to axial LPS); oblique is not
        reason = f"image {name}: oblique orientation (direction {np.round(d, 3).tolist()})"
    return {"patient_id": patient, "phase": phase, "status": "excluded" if reason else "ok",
            "series_uid": f"file:{name}", "n_slices": int(size[2]) if len(size) > 2 else 0,
            "spacing": float(rd.GetSpacing()[2]) if len(size) > 2 else np.nan, "reason": reason}


def index_patient(folder: str | Path | None, patient: str, cfg_ingest: dict, phases: list[str],
                  mapping: pd.DataFrame | None = None, images: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """Index one patient: the DICOM folder's slice index and series table with phases, plus any per-phase
    image volumes (which take precedence for their phase); a phase table and the exclusions."""
    images = images or {}
    if folder is not None:
        slices, problems = index_folder(folder, patient)
    else:
        slices, problems = pd.DataFrame(columns=SLICE_COLUMNS), []
    if slices.empty:
        series = pd.DataFrame(columns=["patient_id", "series_uid", "status", "phase"])
        if folder is not None:
            problems.append({"patient_id": patient, "phase": "", "file": str(folder), "stage": "index",
                             "reason": "no readable DICOM files in the patient's folder"})
    else:
        series = assign_phases(summarise_series(slices, cfg_ingest["spacing_tolerance"]), cfg_ingest, mapping)
    phase_table, excl = choose_phases(series, [p for p in phases if p not in images], patient)
    file_rows = [image_file_phase(images[p], patient, p) for p in phases if p in images]
    excl += [{"patient_id": patient, "phase": r["phase"], "file": Path(images[r["phase"]]).name, "stage": "ingest",
              "reason": r["reason"]} for r in file_rows if r["status"] != "ok"]
    phase_table = pd.concat([phase_table, pd.DataFrame(file_rows)], ignore_index=True) if file_rows else phase_table
    phase_table = phase_table.set_index("phase").loc[list(phases)].reset_index()[PHASE_COLUMNS]
    excl = problems + excl
    if cfg_ingest.get("on_bad_series") == "error" and excl:
        e = excl[0]
        raise DicomError(e["reason"], patient=patient, phase=e["phase"] or None, file=e["file"] or None)
    return {"slices": slices, "series": series, "phases": phase_table,
            "exclusions": pd.DataFrame(excl, columns=["patient_id", "phase", "file", "stage", "reason"])}


def read_image_file(path: str | Path, patient: str, phase: str) -> tuple[sitk.Image, pd.DataFrame]:
    """A per-phase image volume as HU (int16 when integral) and its slice table (no DICOM UIDs)."""
    try:
        img = sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as e:
        raise DicomError(f"cannot read image ({str(e).strip().splitlines()[-1][:200]})", patient=patient, phase=phase,
                         file=str(path)) from None
    # axial slices in LPS order, whatever the file's axis order (KiTS stores the slice axis first)
    img = sitk.DICOMOrient(img, "LPS")
    arr = sitk.GetArrayFromImage(img)
    if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and arr.min() >= -32768 and arr.max() <= 32767:
        out = sitk.Cast(img, sitk.sitkInt16)
    else:
        out = img
    n = np.array(img.GetDirection()).reshape(3, 3)[:, 2]
    pos = [float(np.dot(img.TransformIndexToPhysicalPoint((0, 0, k)), n)) for k in range(img.GetSize()[2])]
    name = Path(path).name
    table = pd.DataFrame({"k": range(img.GetSize()[2]), "file": [f"{name}#{k}" for k in range(img.GetSize()[2])],
                          "sop_uid": "", "position_mm": pos})
    return out, table


def _native_pixels(path: Path, r) -> np.ndarray | None:
    """Pixels of an uncompressed little-endian single-frame slice read at the indexed offset (None: use pydicom)."""
    n = int(r.rows) * int(r.cols)
    if (r.transfer_syntax not in NATIVE_LE or int(r.samples_per_pixel) != 1 or int(r.bits_allocated) not in (8, 16, 32)
            or not np.isfinite(r.pixel_offset)
            or int(r.pixel_bytes_needed) - int(r.pixel_offset) != n * int(r.bits_allocated) // 8):
        return None
    dtype = np.dtype(f"<{'i' if int(r.pixel_representation) else 'u'}{int(r.bits_allocated) // 8}")
    with open(path, "rb") as fh:
        fh.seek(int(r.pixel_offset))
        buf = fh.read(n * dtype.itemsize)
    if len(buf) != n * dtype.itemsize:
        raise DicomError(f"pixel data ends after {len(buf)} of {n * dtype.itemsize} bytes", file=str(path))
    px = np.frombuffer(buf, dtype).reshape(int(r.rows), int(r.cols))
    stored = int(r.bits_stored)
    if int(r.pixel_representation) and 0 < stored < 8 * dtype.itemsize:  # sign-extend from BitsStored, as pydicom
        shift = 8 * dtype.itemsize - stored
        px = (px << shift) >> shift
    return px


def read_volume(folder: str | Path, slices: pd.DataFrame, patient: str, phase: str) -> tuple[sitk.Image, pd.DataFrame]:
    """Read one series' pixels into a HU SimpleITK image (sorted along the normal, rescale applied)."""
    folder = Path(folder)
    n = _normal(slices["iop"].iloc[0])
    sl = slices.assign(pos=slices[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float) @ n).sort_values("pos")
    sl = sl.reset_index(drop=True)
    first = sl.iloc[0]
    shape = (len(sl), int(first["rows"]), int(first["cols"]))
    raw: np.ndarray | None = None
    for k, r in enumerate(sl.itertuples()):
        try:
            px = _native_pixels(folder / r.file, r)
            if px is None:
                px = pydicom.dcmread(folder / r.file).pixel_array
        except Exception as e:  # noqa: BLE001 - any decoder failure is reported with its file
            raise DicomError(f"cannot decode pixel data ({type(e).__name__}: {e}); transfer syntax "
                             f"{r.transfer_syntax}", patient=patient, phase=phase, file=str(folder / r.file)) from e
        if px.shape != shape[1:]:
            raise GeometryError(f"slice shape {px.shape} differs from series shape {shape[1:]}",
                                patient=patient, phase=phase, file=str(folder / r.file))
        if raw is None:
            raw = np.empty(shape, px.dtype if px.dtype.kind in "iu" and px.dtype.itemsize <= 2 else np.float64)
        raw[k] = px
    # HU = slope x stored value + intercept (the modality LUT). MONOCHROME1 is not inverted: it says how to
    # display values after the VOI transform (PS3.3 C.7.6.3.1.2), not what they measure.
    slope, icpt = sl["slope"].to_numpy(float), sl["intercept"].to_numpy(float)
    integral = bool(np.all(slope == np.round(slope)) and np.all(icpt == np.round(icpt)))
    if integral and len(np.unique(slope)) == 1 and len(np.unique(icpt)) == 1:
        # the common case, vectorised: one rescale for the whole series, in exact integer arithmetic
        arr = raw.astype(np.int32) * int(slope[0]) + int(icpt[0])
    else:
        arr = raw.astype(np.float64) * slope[:, None, None] + icpt[:, None, None]
    if integral and arr.min() >= -32768 and arr.max() <= 32767:
        arr = arr.astype(np.int16)
    else:
        arr = arr.astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    iop = np.array([float(x) for x in first["iop"].split()])
    spacing_z = float(np.median(np.diff(sl["pos"]))) if len(sl) > 1 else float(first["slice_thickness"])
    img.SetSpacing((float(first["col_spacing"]), float(first["row_spacing"]), spacing_z))
    img.SetOrigin((float(first["ipp_x"]), float(first["ipp_y"]), float(first["ipp_z"])))
    r_, c_ = iop[:3], iop[3:]
    img.SetDirection(tuple(np.column_stack([r_, c_, n]).ravel()))
    table = pd.DataFrame({"k": range(len(sl)), "file": sl["file"], "sop_uid": sl["sop_uid"], "position_mm": sl["pos"]})
    return img, table


def convert_patient(folder: str | Path | None, patient: str, index_dir: str | Path, outdir: str | Path,
                    images: dict[str, str] | None = None) -> pd.DataFrame:
    """Write ``{phase}.nii.gz`` and ``{phase}.slices.tsv`` for every usable phase; return the phase table."""
    index_dir, outdir, images = Path(index_dir), Path(outdir), images or {}
    phases = pd.read_csv(index_dir / "phases.tsv", sep="\t", keep_default_na=False)
    slices = pd.read_csv(index_dir / "slices.tsv", sep="\t", keep_default_na=False, dtype={"iop": str})
    for col in ("pixel_offset", "pixel_bytes_needed"):  # empty for encapsulated (compressed) pixel data
        slices[col] = pd.to_numeric(slices[col], errors="coerce")
    outdir.mkdir(parents=True, exist_ok=True)
    for r in phases.itertuples():
        if r.status != "ok":
            continue
        if str(r.series_uid).startswith("file:"):
            if r.phase not in images:
                raise DicomError("the phase table names an image file but none was given to convert", patient=patient,
                                 phase=r.phase)
            img, table = read_image_file(images[r.phase], patient, r.phase)
        else:
            img, table = read_volume(folder, slices[slices["series_uid"] == r.series_uid], patient, r.phase)
        with atomic_path(outdir / f"{r.phase}.nii.gz") as tmp:
            sitk.WriteImage(img, str(tmp), True, 1)
        write_tsv(outdir / f"{r.phase}.slices.tsv", table)
    write_tsv(outdir / "phases.tsv", phases)
    return phases


def _images_arg(items: list[str] | None) -> dict[str, str]:
    out = {}
    for it in items or []:
        ph, _, path = it.partition("=")
        out[ph] = path
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="DICOM ingest stages for one patient.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a1 = sub.add_parser("index", help="header index, phase assignment and geometry checks")
    a1.add_argument("--patient", required=True)
    a1.add_argument("--dicom-dir", default=None)
    a1.add_argument("--images", nargs="*", default=[], help="phase=path of per-phase NIfTI/NRRD volumes")
    a1.add_argument("--ingest", required=True, help="JSON of the config's ingest section")
    a1.add_argument("--phases", required=True, help="comma-separated phase codes")
    a1.add_argument("--outdir", required=True)
    a2 = sub.add_parser("convert", help="HU volumes of the usable phases as NIfTI")
    a2.add_argument("--patient", required=True)
    a2.add_argument("--dicom-dir", default=None)
    a2.add_argument("--images", nargs="*", default=[], help="phase=path of per-phase NIfTI/NRRD volumes")
    a2.add_argument("--index-dir", required=True)
    a2.add_argument("--outdir", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "index":
        cfg = json.loads(a.ingest)
        mapping = None
        if cfg.get("phase_map"):
            mapping = pd.read_csv(cfg["phase_map"], sep="\t", dtype=str)
        res = index_patient(a.dicom_dir or None, a.patient, cfg, a.phases.split(","), mapping, _images_arg(a.images))
        out = Path(a.outdir)
        res["slices"]["file"] = res["slices"]["file"].astype(str)
        for name in ("slices", "series", "phases", "exclusions"):
            write_tsv(out / f"{name}.tsv", res[name])
        ok = (res["phases"]["status"] == "ok").sum()
        print(f"{a.patient}: {len(res['slices'])} files, {len(res['series'])} series, {ok}/{len(res['phases'])} phases usable")
        for e in res["exclusions"].to_dict("records"):
            print(f"EXCLUDED patient {e['patient_id']}, phase {e['phase'] or '-'}, file {e['file']}: {e['reason']}")
    else:
        ph = convert_patient(a.dicom_dir or None, a.patient, a.index_dir, a.outdir, _images_arg(a.images))
        print(f"{a.patient}: wrote {(ph['status'] == 'ok').sum()} volumes")


if __name__ == "__main__":
    main()
