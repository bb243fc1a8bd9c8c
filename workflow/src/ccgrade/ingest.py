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
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, pixel_array

from .errors import DicomError, GeometryError
from .outputs import atomic_path, write_tsv
from .privacy import Keyer, run_scrubbed, scrub_frame

PIXEL_DATA = 0x7FE00010
SLICE_COLUMNS = ["patient_id", "file", "series_uid", "sop_uid", "sop_class", "study_uid", "frame_uid", "modality",
                 "image_type", "series_number", "instance_number", "series_description", "contrast_agent",
                 "acq_s", "bolus_s", "ipp_x", "ipp_y", "ipp_z", "iop", "row_spacing", "col_spacing",
                 "slice_thickness", "gantry_tilt", "kernel", "rows", "cols", "slope", "intercept", "photometric", "bits_stored",
                 "pixel_representation", "bits_allocated", "samples_per_pixel", "transfer_syntax", "file_bytes",
                 "pixel_offset", "pixel_bytes_needed", "truncated"]
#: one row per patient x configured phase: usable or excluded, and why
PHASE_COLUMNS = ["patient_id", "phase", "status", "series_uid", "n_slices", "spacing", "reason"]
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
    if PIXEL_DATA not in ds and modality in ("CT", "MR", "PT", "OT", ""):
        why = oversized_element(path)
        raise ValueError(why or f"image without PixelData ({size} bytes; truncated?)")
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
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")
    series_number = _number(v, 0x00200011, np.nan)
    instance = _number(v, 0x00200013, np.nan)
    desc = _text(v, 0x0008103E)
    series_uid = _text(v, 0x0020000E)
    return {
        "patient_id": patient, "file": str(path.relative_to(folder)),
        # anonymised exports may blank the series UID: fall back to folder + series number + description
        "series_uid": series_uid or f"nouid:{path.parent.relative_to(folder)}:{_int_text(series_number)}:{desc}",
        "sop_uid": _text(v, 0x00080018) or path.name, "sop_class": _text(v, 0x00080016),
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


def _int_text(v: float) -> str:
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
    """Header index of every DICOM file under ``folder``; unreadable files are returned as problems
    (with the series UID when the readable part of the header gives it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(f"DICOM folder {str(folder)!r} does not exist", patient=patient)
    recs, problems = [], []
    for p in find_dicom_files(folder):
        try:
            recs.append(read_header(p, folder, patient))
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            problems.append({"patient_id": patient, "phase": "", "file": str(p.relative_to(folder)),
                             "stage": "index", "reason": f"unreadable DICOM header ({type(e).__name__}: {e})",
                             "series_uid": _salvage_series_uid(p)})
    df = pd.DataFrame(recs, columns=SLICE_COLUMNS)
    df["dropped"] = ""
    return df, problems


def _normal(iop: str) -> np.ndarray:
    v = np.array([float(x) for x in iop.split()])
    return np.cross(v[:3], v[3:])


def codec_problem(transfer_syntax: str) -> str:
    """Why pixels of this transfer syntax cannot be decoded here ('' when they can): the codec and the
    package that would decode it (pydicom's pixel-data plugins: pylibjpeg-*, pyjpegls, Pillow)."""
    if not transfer_syntax or transfer_syntax in NATIVE:
        return ""
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


def _odd_values(sl: pd.DataFrame, col: str) -> tuple[str, str]:
    """For a column that is not constant within a series: a description of its values (the majority first,
    the odd files named) and the first odd file."""
    vals = sl[col].astype(str)
    counts = vals.value_counts()
    major = counts.index[0]
    odd = sl.loc[vals != major, "file"].sort_values()
    named = ", ".join(odd.iloc[:3]) + (f" and {len(odd) - 3} more" if len(odd) > 3 else "")
    return f"{major} in {int(counts.iloc[0])} files, other values in {named}", str(odd.iloc[0])


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
            desc, facts["problem_file"] = _odd_values(sl, col)
            facts["problem"] = f"mixed series: {sl[col].nunique(dropna=False)} different {what} values ({desc})"
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
    tilt = pd.to_numeric(sl["gantry_tilt"], errors="coerce").fillna(0.0).abs()
    if (tilt > 0.01).any():
        facts["problem_file"] = str(sl.loc[tilt.idxmax(), "file"])
        facts["problem"] = (f"GantryDetectorTilt is {float(tilt.max()):.1f} degrees but the slice positions are not "
                            "sheared: the header contradicts itself, so the volume's geometry cannot be trusted; "
                            "resample to an orthogonal grid (e.g. dcm2niix's tilt correction) or correct the header")
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


def assign_phases(series: pd.DataFrame, cfg_ingest: dict, mapping: pd.DataFrame | None = None,
                  key=None) -> pd.DataFrame:
    """Give every candidate series a phase by mapping file, description, contrast agent or bolus timing.

    A phase given to a series by the phase map is that series' alone: other series that the heuristics
    would give the same phase are set aside (method ``superseded``), so mapping the wanted series suffices.
    The map may name a series by its UID or by its pseudonym (results/ingest/series.tsv under ``key``).
    """
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
        hit = mapped.get(s["series_uid"]) or (mapped.get(key.uid(s["series_uid"])) if key is not None else None)
        if hit:
            series.loc[i, ["phase", "method", "evidence"]] = [hit, "mapping", "phase map file"]
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
    # a mapped phase belongs to the mapped series only
    by_map = series[series["method"] == "mapping"]
    for ph, uids in by_map.groupby("phase")["series_number"]:
        other = (series["phase"] == ph) & (series["method"] != "mapping")
        nums = ", ".join(f"#{_int_text(float(n)) if n == n else '?'}" for n in uids)
        series.loc[other, "evidence"] = series.loc[other, "evidence"] + f"; phase {ph} given to series {nums} by the phase map"
        series.loc[other, ["phase", "method"]] = ["", "superseded"]
    # fallback: enhanced series still without a phase, ordered by acquisition time, fill the free phases
    free = [p for p in ("cmp", "np", "ep") if p in cfg_ingest["bolus_delay_s"] and p not in set(series["phase"])]
    todo = series[(series["method"] == "unassigned") & (series["contrast_agent"] != "")].sort_values("acq_s")
    if len(todo) and len(todo) <= len(free):
        for (i, _), p in zip(todo.iterrows(), free):
            series.loc[i, ["phase", "method"]] = [p, "acquisition-order"]
            series.loc[i, "evidence"] += f"; enhanced series ordered by acquisition time -> {p}"
    return series


#: SOP classes of screen captures (dose reports, exam summaries): never a CT volume
SECONDARY_CAPTURE = ("1.2.840.10008.5.1.4.1.1.7",)
#: series descriptions of derived, non-volume images
NON_VOLUME = re.compile(r"\b(dose|exam summary|patient protocol|screen ?save|report)\b", re.I)


def image_role(image_type: str, sop_class: str, description: str) -> str:
    """What a slice is: ``image`` (part of a volume), ``localizer`` (scout/topogram) or ``derived`` (a dose
    report, exam summary or other screen capture)."""
    it = image_type.upper()
    if "LOCALIZER" in it:
        return "localizer"
    if sop_class.startswith(SECONDARY_CAPTURE) or "SCREEN SAVE" in it or "DOSE" in it.split("\\") \
            or NON_VOLUME.search(description):
        return "derived"
    return "image"


def _unreadable_in(sl: pd.DataFrame, uid: str, unreadable: list[dict]) -> list[dict]:
    """The unreadable files that belong to this series: by their series UID when it could be read, else
    by sharing a folder with the series' files (they might be its first or last slices)."""
    folders = {str(Path(f).parent) for f in sl["file"]}
    return [u for u in unreadable if u.get("series_uid") == uid or
            (not u.get("series_uid") and str(Path(u["file"]).parent) in folders)]


def summarise_series(slices: pd.DataFrame, tolerance: float, unreadable: list[dict] | None = None) -> pd.DataFrame:
    """One row per series: description, counts, geometry facts, and whether it is a candidate volume.

    Localizer and derived images inside a series are dropped from it (``slices['dropped']`` says why, the
    series' ``notes`` name them) and the rest is checked as a volume; a series that holds nothing else is
    ignored. An unreadable file that belongs to a series makes it bad: its slice would be missing.
    """
    rows = []
    if "dropped" not in slices:
        slices["dropped"] = ""
    for uid, sl in slices.groupby("series_uid", sort=False):
        first = sl.sort_values("ipp_z").iloc[0]
        row = {k: first[k] for k in ("patient_id", "series_uid", "series_number", "series_description",
                                     "modality", "contrast_agent", "acq_s", "bolus_s", "transfer_syntax", "kernel")}
        roles = pd.Series([image_role(str(t), str(c), str(d)) for t, c, d in
                           zip(sl["image_type"], sl["sop_class"], sl["series_description"])], index=sl.index)
        for role in ("localizer", "derived"):
            slices.loc[roles[roles == role].index, "dropped"] = f"{role} image"
        used = sl[roles == "image"]
        row["n_files"] = len(used)
        row["slice_thickness"] = float(pd.to_numeric(used["slice_thickness"], errors="coerce").median()) if len(used) else np.nan
        notes = []
        if len(used) < len(sl) and len(used):
            gone = sl.loc[roles != "image"].sort_values("file")
            notes.append(f"dropped {len(gone)} {'/'.join(sorted(set(roles[roles != 'image'])))} image(s) from the "
                         f"series: {', '.join(gone['file'].iloc[:3])}" + (" ..." if len(gone) > 3 else ""))
        status, reason = "candidate", ""
        if first["modality"] != "CT":
            status, reason = "ignored", f"modality {first['modality']!r} is not CT"
        elif not len(used):
            status, reason = "ignored", ("localizer/scout images" if (roles == "localizer").any()
                                         else "derived images (dose report, screen capture or summary), not a volume")
        bad_files = _unreadable_in(sl, str(uid), unreadable or []) if status == "candidate" else []
        geo = series_geometry(used, tolerance) if status == "candidate" else {"problem": ""}
        if bad_files:
            named = ", ".join(u["file"] for u in bad_files[:3]) + (" ..." if len(bad_files) > 3 else "")
            status, reason = "bad", (f"unreadable file(s) {named} in this series or its folder: a slice would be "
                                     "missing from the volume; repair or remove the file(s)")
            geo["problem_file"] = bad_files[0]["file"]
        elif geo.get("problem"):
            status, reason = "bad", geo["problem"]
        row.update(status=status, reason=reason, first_file=min(sl["file"]), notes="; ".join(notes),
                   problem_file=geo.get("problem_file", ""), spacing=geo.get("spacing", np.nan),
                   z_min=geo.get("z_min", np.nan), z_max=geo.get("z_max", np.nan))
        rows.append(row)
    return pd.DataFrame(rows)


def _avoided_kernel(kernel: str, description: str, avoid: list[str]) -> str:
    """The first avoided kernel word found in a series' ConvolutionKernel or description ('' if none)."""
    for word in avoid:
        w = word.lower()
        if w in kernel.lower() or _tokens(w) in _tokens(description):
            return word
    return ""


def choose_reconstruction(good: pd.DataFrame, pref: dict) -> tuple[int | None, dict[int, str]]:
    """Of several series of one phase, the one the preference picks (index into ``good``, None when it
    cannot decide) and a reason per series: avoided kernels lose first, then the slice thickness furthest
    from ``thickness_mm``."""
    avoid = list(pref.get("avoid_kernels") or [])
    target = pref.get("thickness_mm")
    keys, facts = {}, {}
    for i, s in good.iterrows():
        thick = s["slice_thickness"] if np.isfinite(s["slice_thickness"]) else s["spacing"]
        bad = _avoided_kernel(str(s["kernel"]), str(s["series_description"]), avoid)
        dist = abs(float(thick) - float(target)) if target is not None and np.isfinite(thick) else 0.0
        keys[i] = (bool(bad), round(dist, 3))
        facts[i] = (f"{thick:.1f} mm" if np.isfinite(thick) else "thickness unknown") + \
                   (f", kernel {s['kernel']!r}" if s["kernel"] else "") + (f" (avoided: {bad})" if bad else "")
    best = min(keys.values())
    winners = [i for i, k in keys.items() if k == best]
    if len(winners) != 1:
        return None, facts
    return winners[0], facts


def choose_phases(series: pd.DataFrame, phases: list[str], patient: str,
                  pref: dict | None = None) -> tuple[pd.DataFrame, list[dict], pd.DataFrame]:
    """One row per configured phase (ok or excluded, with the reason), the exclusion records, and the series
    table with ``choice`` (chosen / alternative) and its reason where a phase had several reconstructions."""
    rows, excl = [], []
    series = series.copy()
    series["choice"], series["choice_reason"] = "", ""
    for ph in phases:
        cand = series[series["phase"] == ph] if len(series) else series
        good, bad = cand[cand["status"] == "candidate"], cand[cand["status"] == "bad"]
        pick = good.index[0] if len(good) == 1 else None
        if len(good) > 1:
            pick, facts = choose_reconstruction(good, pref or {})
            if pick is not None:
                pref_txt = ", ".join(f"{k} {v}" for k, v in (pref or {}).items())
                series.loc[pick, ["choice", "choice_reason"]] = ["chosen", f"{facts[pick]}; by ingest.reconstruction ({pref_txt})"]
                for i in good.index.drop(pick):
                    series.loc[i, ["choice", "choice_reason"]] = [
                        "alternative", f"{facts[i]}; series #{_int_text(float(series.loc[pick, 'series_number']))} "
                                       f"{series.loc[pick, 'series_description']!r} preferred ({facts[pick]})"]
        if pick is not None:
            s = series.loc[pick]
            rows.append({"patient_id": patient, "phase": ph, "status": "ok", "series_uid": s["series_uid"],
                         "n_slices": int(s["n_files"]), "spacing": s["spacing"], "reason": ""})
            continue
        if len(good) > 1:
            reason = (f"ambiguous: {len(good)} series look like this phase and ingest.reconstruction cannot tell them "
                      "apart (" + ", ".join(f"#{s.series_number} {s.series_description!r}: {facts[s.Index]}"
                                            for s in good.itertuples())
                      + "); map the wanted series in ingest.phase_map")
            uid, file = ";".join(good["series_uid"]), ";".join(good["first_file"])
        elif len(bad):
            reason, uid, file = "; ".join(bad["reason"]), ";".join(bad["series_uid"]), ";".join(bad["problem_file"])
        else:
            reason, uid, file = "missing phase: no series was assigned to it", "", ""
        rows.append({"patient_id": patient, "phase": ph, "status": "excluded", "series_uid": uid,
                     "n_slices": 0, "spacing": np.nan, "reason": reason})
        excl.append({"patient_id": patient, "phase": ph, "file": file, "stage": "ingest", "reason": reason})
    return pd.DataFrame(rows, columns=PHASE_COLUMNS), excl, series


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
                  mapping: pd.DataFrame | None = None, images: dict[str, str] | None = None,
                  key=None) -> dict[str, pd.DataFrame]:
    """Index one patient: the DICOM folder's slice index and series table with phases, plus any per-phase
    image volumes (which take precedence for their phase); a phase table and the exclusions."""
    images = images or {}
    if folder is not None:
        slices, problems = index_folder(folder, patient)
    else:
        slices, problems = pd.DataFrame(columns=SLICE_COLUMNS + ["dropped"]), []
    if slices.empty:
        series = pd.DataFrame(columns=["patient_id", "series_uid", "status", "phase"])
        if folder is not None:
            problems.append({"patient_id": patient, "phase": "", "file": str(folder), "stage": "index",
                             "reason": "no readable DICOM files in the patient's folder"})
    else:
        series = assign_phases(summarise_series(slices, cfg_ingest["spacing_tolerance"], problems), cfg_ingest, mapping,
                               key)
    phase_table, excl, series = choose_phases(series, [p for p in phases if p not in images], patient,
                                              cfg_ingest.get("reconstruction"))
    problems = [{k: v for k, v in p.items() if k != "series_uid"} for p in problems]
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
                          "sop_uid": "", "position_mm": pos, "frame_uid": ""})
    return out, table


#: the slice-index columns that describe a slice's pixel data (what ``read_pixels`` needs)
PIXEL_COLUMNS = ["file", "transfer_syntax", "pixel_offset", "pixel_bytes_needed", "rows", "cols", "bits_allocated",
                 "bits_stored", "pixel_representation", "photometric", "samples_per_pixel"]


def read_pixels(path: Path, r) -> np.ndarray:
    """One slice's stored values, decoded by pydicom. Uncompressed single-frame data: the bytes at the
    indexed offset through pydicom's native decoder with the indexed pixel description (masking to
    BitsStored, sign extension and byte order are pydicom's), so the header is not parsed a second time;
    anything else (compressed, several frames) through ``pydicom.pixels.pixel_array`` on the file."""
    ts = str(r.transfer_syntax)
    if ts in NATIVE and np.isfinite(r.pixel_offset) and int(r.samples_per_pixel) == 1:
        n = int(r.pixel_bytes_needed) - int(r.pixel_offset)
        frame = int(r.rows) * int(r.cols) * int(r.bits_allocated) // 8
        if frame and n in (frame, frame + 1):  # one frame (plus the even-length pad byte)
            with open(path, "rb") as fh:
                fh.seek(int(r.pixel_offset))
                buf = fh.read(n)
            if len(buf) != n:
                raise DicomError(f"pixel data ends after {len(buf)} of {n} bytes", file=str(path))
            arr, _ = get_decoder(ts).as_array(
                buf, rows=int(r.rows), columns=int(r.cols), bits_allocated=int(r.bits_allocated),
                bits_stored=int(r.bits_stored), pixel_representation=int(r.pixel_representation),
                photometric_interpretation=str(r.photometric) or "MONOCHROME2", samples_per_pixel=1,
                number_of_frames=1, pixel_keyword="PixelData")
            return arr
    return pixel_array(str(path))


def read_volume(folder: str | Path, slices: pd.DataFrame, patient: str, phase: str) -> tuple[sitk.Image, pd.DataFrame]:
    """Read one series' pixels into a HU SimpleITK image (sorted along the normal, rescale applied)."""
    folder = Path(folder)
    n = _normal(slices["iop"].iloc[0])
    cols = list(dict.fromkeys(PIXEL_COLUMNS + ["sop_uid", "frame_uid", "iop", "ipp_x", "ipp_y", "ipp_z", "row_spacing", "col_spacing",
                                               "slice_thickness", "slope", "intercept"]))
    sl = slices[cols].assign(pos=slices[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(float) @ n).sort_values("pos")
    sl = sl.reset_index(drop=True)
    first = sl.iloc[0]
    shape = (len(sl), int(first["rows"]), int(first["cols"]))
    raw: np.ndarray | None = None
    for k, r in enumerate(sl[PIXEL_COLUMNS].itertuples()):
        try:
            px = read_pixels(folder / r.file, r)
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
    uniform = integral and len(np.unique(slope)) == 1 and len(np.unique(icpt)) == 1
    lo, hi = int(raw.min()), int(raw.max())
    if uniform and slope[0] == 1 and -32768 <= lo + icpt[0] and hi + icpt[0] <= 32767 and -32768 <= lo and hi <= 32767:
        # the usual CT case (slope 1, e.g. intercept -1024): exact, in place, in int16
        arr = raw.astype(np.int16)
        arr += np.int16(icpt[0])
    else:
        if uniform:  # one rescale for the whole series, in exact integer arithmetic
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
    table = pd.DataFrame({"k": range(len(sl)), "file": sl["file"], "sop_uid": sl["sop_uid"], "position_mm": sl["pos"],
                          "frame_uid": sl["frame_uid"]})
    return img, table


def convert_patient(folder: str | Path | None, patient: str, index_dir: str | Path, outdir: str | Path,
                    images: dict[str, str] | None = None, key=None) -> pd.DataFrame:
    """Write ``{phase}.nii.gz`` and ``{phase}.slices.tsv`` for every usable phase; return the phase table.

    A pseudonymised index (see ``pseudonymise_index``) names files by label: each is found again by the
    keyed hash of its path (``file_key``), and the volume's slice table keeps the label and the name key."""
    index_dir, outdir, images = Path(index_dir), Path(outdir), images or {}
    phases = pd.read_csv(index_dir / "phases.tsv", sep="\t", keep_default_na=False)
    slices = pd.read_csv(index_dir / "slices.tsv", sep="\t", keep_default_na=False,
                         dtype={"iop": str, "file": str, "sop_uid": str, "series_uid": str, "patient_id": str})
    for col in ("pixel_offset", "pixel_bytes_needed"):  # empty for encapsulated (compressed) pixel data
        slices[col] = pd.to_numeric(slices[col], errors="coerce")
    labels: dict[str, str] = {}
    if "file_key" in slices and folder is not None:
        here = {key.key("file", str(p.relative_to(folder))): str(p.relative_to(folder))
                for p in find_dicom_files(folder)}
        lost = sorted(set(slices["file_key"]) - set(here))
        if lost:
            raise DicomError(f"{len(lost)} indexed file(s) are no longer in the DICOM folder (or the privacy key "
                             "changed): the folder changed after it was indexed; rerun the index job", patient=patient)
        labels = dict(zip((here[k] for k in slices["file_key"]), slices["file"]))
        slices["file"] = [here[k] for k in slices["file_key"]]
    outdir.mkdir(parents=True, exist_ok=True)
    for r in phases.itertuples():
        if r.status != "ok":
            continue
        if str(r.series_uid).startswith("file:"):
            if r.phase not in images:
                raise DicomError("the phase table names an image file but none was given to convert", patient=patient,
                                 phase=r.phase)
            img, table = read_image_file(images[r.phase], patient, r.phase)
            if key is not None and key.active:
                table["file"] = [f"the {r.phase} image#{k}" for k in table["k"]]
        else:
            used = (slices["series_uid"] == r.series_uid) & (slices["dropped"] == "")
            img, table = read_volume(folder, slices[used], patient, r.phase)
            if labels:
                table["name_key"] = [key.key("name", Path(f).stem) for f in table["file"]]
                table["file"] = [labels[f] for f in table["file"]]
        with atomic_path(outdir / f"{r.phase}.nii.gz") as tmp:
            sitk.WriteImage(img, str(tmp), True, 1)
        write_tsv(outdir / f"{r.phase}.slices.tsv", table)
    write_tsv(outdir / "phases.tsv", phases)
    return phases


def file_labels(folder: str | Path | None, images: dict[str, str] | None = None) -> dict[str, str]:
    """Role-and-index names of a patient's input files (``file 12``: the twelfth DICOM file of the patient's
    folder in path order; ``the cmp image``), keyed by every spelling of the original a message may hold
    (its path inside the folder, its full path, the folder itself)."""
    out: dict[str, str] = {}
    if folder is not None and Path(folder).is_dir():
        folder = Path(folder)
        for i, p in enumerate(find_dicom_files(folder), 1):
            out[str(p)] = out[str(p.relative_to(folder))] = f"file {i}"
        out[str(folder)] = "the patient's DICOM folder"
    for ph, path in (images or {}).items():
        out[str(path)] = out[Path(path).name] = f"the {ph} image"
    return out


def pseudonymise_index(res: dict[str, pd.DataFrame], key, labels: dict[str, str], patient: str,
                       images: dict[str, str] | None = None) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The index tables as results/ may hold them (``privacy.mode: pseudonymise``) and the private lookup
    rows (pseudonym -> original).

    UIDs become keyed ``2.25.`` pseudonyms (``key.uid``); a file becomes ``file 12 (series 3, instance 7)``
    (its index in the patient's folder, and the SeriesNumber/InstanceNumber a viewer shows), with keyed
    hashes of its path (``file_key``, how convert finds it again) and of its name (``name_key``, how labelme
    files that name it still link); acquisition and bolus times become seconds after the patient's first
    acquisition (the bolus delay is unchanged); every message naming a file names its label."""
    images = images or {}
    look: list[dict] = []
    out = {k: v.copy() for k, v in res.items()}
    sl = out["slices"]
    uid_cols = ("series_uid", "sop_uid", "study_uid", "frame_uid")
    image_series = {f"file:{Path(p).name}": f"file:the {ph} image" for ph, p in images.items()}
    t0 = pd.to_numeric(sl["acq_s"], errors="coerce").min()  # the patient's first acquisition

    def series_key(v: object) -> str:
        v = str(v)
        return image_series.get(v, key.uid(v)) if v not in ("", "nan") else v

    def offsets(t: pd.DataFrame) -> None:
        if t0 == t0 and len(t):
            for c in ("acq_s", "bolus_s"):
                t[c] = pd.to_numeric(t[c], errors="coerce") - t0

    file_label = {}
    for r in sl.itertuples():
        base = labels.get(str(r.file), f"file {r.Index + 1}")
        sn = "" if r.series_number is None or r.series_number != r.series_number else f"series {int(r.series_number)}"
        inst = "" if r.instance_number is None or r.instance_number != r.instance_number else \
            f"instance {int(r.instance_number)}"
        file_label[str(r.file)] = base + (f" ({', '.join(x for x in (sn, inst) if x)})" if sn or inst else "")
    if len(sl):
        offsets(sl)
        sl["file_key"] = [key.key("file", f) for f in sl["file"].astype(str)]
        sl["name_key"] = [key.key("name", Path(f).stem) for f in sl["file"].astype(str)]
        for c in uid_cols:
            originals = sl[c].astype(str)
            sl[c] = [series_key(v) if c == "series_uid" else key.uid(v) for v in originals]
            look += [{"patient_id": patient, "kind": c, "pseudonym": pz, "original": o}
                     for o, pz in dict(zip(originals, sl[c])).items() if o not in ("", "nan")]
        look += [{"patient_id": patient, "kind": "file", "pseudonym": lab, "original": f} for f, lab in file_label.items()]
        sl["file"] = [file_label[str(f)] for f in sl["file"]]
    look += [{"patient_id": patient, "kind": "image", "pseudonym": f"the {ph} image", "original": str(p)}
             for ph, p in images.items()]
    repl = {**labels, **file_label}
    for name in ("series", "phases"):
        t = out[name]
        if "series_uid" in t:
            t["series_uid"] = [series_key(v) for v in t["series_uid"]]
        if name == "series":
            offsets(t)
        out[name] = scrub_frame(t, repl, skip=("series_uid",))
    out["exclusions"] = scrub_frame(out["exclusions"], repl)
    out["slices"] = scrub_frame(sl, repl, skip=("file", "file_key", "name_key") + uid_cols)
    return out, pd.DataFrame(look, columns=["patient_id", "kind", "pseudonym", "original"]).drop_duplicates()


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
    a1.add_argument("--secret", default=None, help="the study's privacy key file (privacy.mode: pseudonymise)")
    a1.add_argument("--private", default=None, help="where the pseudonym lookup rows go (outside results/)")
    a2 = sub.add_parser("convert", help="HU volumes of the usable phases as NIfTI")
    a2.add_argument("--patient", required=True)
    a2.add_argument("--dicom-dir", default=None)
    a2.add_argument("--images", nargs="*", default=[], help="phase=path of per-phase NIfTI/NRRD volumes")
    a2.add_argument("--index-dir", required=True)
    a2.add_argument("--outdir", required=True)
    a2.add_argument("--secret", default=None, help="the study's privacy key file (privacy.mode: pseudonymise)")
    a = ap.parse_args(argv)
    if a.cmd == "index":
        cfg = json.loads(a.ingest)
        mapping = None
        if cfg.get("phase_map"):
            mapping = pd.read_csv(cfg["phase_map"], sep="\t", dtype=str, keep_default_na=False)
        images = _images_arg(a.images)
        key = Keyer.from_file(a.secret)
        labels = file_labels(a.dicom_dir or None, images) if key.active else None
        res = run_scrubbed(lambda: index_patient(a.dicom_dir or None, a.patient, cfg, a.phases.split(","),
                                                 mapping, images, key), labels)
        out = Path(a.outdir)
        res["slices"]["file"] = res["slices"]["file"].astype(str)
        if key.active:
            res, private = pseudonymise_index(res, key, labels, a.patient, images)
            write_tsv(a.private, private)
        for name in ("slices", "series", "phases", "exclusions"):
            write_tsv(out / f"{name}.tsv", res[name])
        ok = (res["phases"]["status"] == "ok").sum()
        print(f"{a.patient}: {len(res['slices'])} files, {len(res['series'])} series, {ok}/{len(res['phases'])} phases usable")
        for e in res["exclusions"].to_dict("records"):
            print(f"EXCLUDED patient {e['patient_id']}, phase {e['phase'] or '-'}, file {e['file']}: {e['reason']}")
    else:
        images = _images_arg(a.images)
        key = Keyer.from_file(a.secret)
        labels = file_labels(a.dicom_dir or None, images) if key.active else None
        ph = run_scrubbed(lambda: convert_patient(a.dicom_dir or None, a.patient, a.index_dir, a.outdir, images,
                                                  key=key), labels)
        print(f"{a.patient}: wrote {(ph['status'] == 'ok').sum()} volumes")


if __name__ == "__main__":
    main()
