"""The privacy scan: proof that results/ holds nothing that identifies a patient (docs/privacy.md).

:func:`scan` walks every file under ``results/``, opens what it can (gzip; zip members, hence ``.npz``
arrays and torch checkpoints; base64 runs in text, hence the report's embedded files; PNG text chunks; PDF
streams and hex strings; NIfTI headers) and searches each view for every identifying value read from the
cohort's DICOM headers and every component of the user's input paths (:func:`collect_needles`),
case-insensitively, in UTF-8, UTF-16 and UTF-32 (both byte orders). Numeric payloads (an ``.npy`` array of
numbers, a torch tensor storage, voxel data after a NIfTI header, PNG pixel data) hold no text and are
counted, not read. A hit names the file, the place in it and the kind of value, never the value.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade.errors import PrivacyError
from ccgrade.ingest.index import find_dicom_files
from ccgrade.outputs import write_json, write_tsv
from ccgrade.privacy.pseudonyms import DESCRIPTION_WORDS, MODES, text_needles

#: DICOM attributes whose values identify a patient, a visit or a place (PS3.15 Table E.1-1 excerpts);
#: dates are searched in their DICOM (YYYYMMDD) and ISO/European spellings
IDENTIFYING = {
    0x00100010: "PatientName", 0x00100020: "PatientID", 0x00100030: "PatientBirthDate",
    0x00101000: "OtherPatientIDs", 0x00101001: "OtherPatientNames", 0x00101040: "PatientAddress",
    0x00102154: "PatientTelephoneNumbers", 0x00080050: "AccessionNumber", 0x00080080: "InstitutionName",
    0x00080081: "InstitutionAddress", 0x00081040: "InstitutionalDepartmentName", 0x00080090: "ReferringPhysicianName",
    0x00081050: "PerformingPhysicianName", 0x00081070: "OperatorsName", 0x00081060: "NameOfPhysiciansReadingStudy",
    0x00081010: "StationName", 0x00200010: "StudyID", 0x00181000: "DeviceSerialNumber",
    0x00080020: "StudyDate", 0x00080021: "SeriesDate", 0x00080022: "AcquisitionDate", 0x00080023: "ContentDate",
    0x00080012: "InstanceCreationDate",
}
#: free-text attributes (PS3.15 Table E.1-1: descriptions, comments, labels) a technologist may type a name
#: or an MRN into; searched as ``privacy.text_needles`` gives them (the words that are not imaging vocabulary)
FREE_TEXT = {
    0x0008103E: "SeriesDescription", 0x00081030: "StudyDescription", 0x00181030: "ProtocolName",
    0x00204000: "ImageComments", 0x00104000: "PatientComments", 0x001021B0: "AdditionalPatientHistory",
    0x00321060: "RequestedProcedureDescription", 0x00400254: "PerformedProcedureStepDescription",
    0x00082111: "DerivationDescription", 0x00180010: "ContrastBolusAgent", 0x30060002: "StructureSetLabel",
    0x30060004: "StructureSetName", 0x30060026: "ROIName", 0x30060085: "ROIObservationLabel",
}
UID_TAGS = {0x00080018: "SOPInstanceUID", 0x0020000D: "StudyInstanceUID", 0x0020000E: "SeriesInstanceUID",
            0x00200052: "FrameOfReferenceUID", 0x00080014: "InstanceCreatorUID"}
DATE_TAGS = {t for t, k in IDENTIFYING.items() if k.endswith("Date")}
ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
MIN_LENGTH = 6  # shorter values match ordinary words and numbers; names are also searched joined




# ---------------------------------------------------------------------------------------------- needles
@dataclass(frozen=True)
class Needle:
    kind: str        # what it is: the DICOM attribute or "path component"
    patient: str     # whose (the cohort's own ID, which results/ may hold)
    value: str


def _dates(v: str) -> list[str]:
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", v.strip())
    if not m:
        return [v]
    y, mo, d = m.groups()
    return [v, f"{y}-{mo}-{d}", f"{d}.{mo}.{y}", f"{d}/{mo}/{y}", f"{mo}/{d}/{y}"]


def _names(v: str) -> list[str]:
    parts = [p.strip() for p in re.split(r"[\^=]", v) if p.strip()]
    out = [v]
    if len(parts) >= 2:
        fam, given = parts[0], parts[1]
        out += [f"{fam}{s}{given}" for s in (" ", "_", ", ", ",", "-", "")]
        out += [f"{given}{s}{fam}" for s in (" ", "_", "-", "")]
    return out + parts


def header_needles(path: Path, patient: str) -> list[Needle]:
    """The identifying values of one DICOM file's header (names in several spellings, dates, UIDs)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                         specific_tags=list(IDENTIFYING) + list(UID_TAGS) + list(FREE_TEXT))
    out = []
    for tag, kw in FREE_TEXT.items():
        el = ds.get(tag)
        if el is not None and isinstance(el.value, str) and el.value.strip():
            out.append(Needle(f"free text {kw}", patient, el.value.strip()))
    for tag, kw in {**IDENTIFYING, **UID_TAGS}.items():
        el = ds.get(tag)
        if el is None or el.value in (None, ""):
            continue
        vals = el.value if isinstance(el.value, (list, pydicom.multival.MultiValue)) else [el.value]
        for val in vals:
            v = str(val).strip()
            forms = _dates(v) if tag in DATE_TAGS else _names(v) if kw.endswith("Name") or kw.endswith("Names") else [v]
            out += [Needle(kw, patient, f) for f in forms]
    return out


def _refs(path: Path, patient: str) -> list[Needle]:
    """UIDs an RTSTRUCT references (the original series and slices)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - not DICOM: nothing referenced
        return []
    out: list[Needle] = []

    def walk(d):
        for el in d:
            if el.VR == "SQ":
                for item in el.value:
                    walk(item)
            elif el.VR == "UI" and el.value and not str(el.value).startswith("1.2.840.10008."):
                out.append(Needle(el.keyword or "referenced UID", patient, str(el.value)))
            elif int(el.tag) in FREE_TEXT and isinstance(el.value, str) and el.value.strip():
                out.append(Needle(f"free text {FREE_TEXT[int(el.tag)]}", patient, el.value.strip()))
    walk(ds)
    return out


def path_components(path: str | Path, root: str | Path | None = None) -> list[str]:
    """The components of ``path`` (below ``root`` when given and it lies there), file names with and
    without their extensions."""
    p = Path(path)
    if root is not None:
        try:
            p = p.resolve().relative_to(Path(root).resolve())
        except ValueError:
            pass
    out = []
    for part in p.parts:
        if part in ("/", "", ".", ".."):
            continue
        out.append(part)
        stem = part.split(".")[0]
        if stem and stem != part:
            out.append(stem)
    return out


def _component_needles(path: str | Path, root: str | Path | None, pid: str) -> list[Needle]:
    """One "path component" needle per component of ``path`` below ``root`` (see :func:`path_components`)."""
    return [Needle("path component", pid, part) for part in path_components(path, root)]


def _dicom_folder_needles(pid: str, folder: str, root: str | Path | None) -> list[Needle]:
    """A patient's DICOM folder: its path components, every file's below it, and the header values (UIDs and
    free text from every file, the other values from the first file of each series)."""
    needles = _component_needles(folder, root, pid)
    seen_series = set()
    for f in find_dicom_files(folder):
        needles += _component_needles(f, folder, pid)
        try:
            hn = header_needles(f, pid)
        except Exception:  # noqa: BLE001 - an unreadable file has no values to search for
            continue
        # non-UID values repeat in every file of a series: keep the first file's
        key = tuple(n.value for n in hn if n.kind == "SeriesInstanceUID")
        needles += [n for n in hn if n.kind in UID_TAGS.values() or n.kind.startswith("free text")
                    or key not in seen_series]
        seen_series.add(key)
    return needles


def _input_file_needles(pid: str, f: str, root: str | Path | None) -> list[Needle]:
    """One other input file (or folder) of a patient: its path components, its files' names and, for files
    that may be DICOM, their header values and the UIDs they reference."""
    needles = _component_needles(f, root, pid)
    fp = Path(f)
    files = sorted(fp.glob("*")) if fp.is_dir() else [fp] if fp.is_file() else []
    for g in files:
        needles += _component_needles(g, fp.parent, pid)
        if g.suffix.lower() in (".dcm", "") or g.name.lower().startswith("rs"):
            try:
                needles += header_needles(g, pid) + _refs(g, pid)
            except Exception:  # noqa: BLE001 - not DICOM
                pass
    return needles


def _patient_needles(pid: str, src: dict, default_root: str | Path | None) -> list[Needle]:
    """Every raw needle of one patient: its DICOM folder's, then its other input files'."""
    root = src.get("root", default_root)  # the patient's cohort's root (an external centre has its own)
    folder = src.get("dicom_dir")
    needles = _dicom_folder_needles(pid, folder, root) if folder and Path(folder).is_dir() else []
    for f in src.get("files", []):
        needles += _input_file_needles(pid, f, root)
    return needles


def _input_path_needles(sources: dict) -> list[Needle]:
    """The sheet's and the phase map's paths and their folders, in full."""
    return [Needle("input path", "", str(p)) for f in sources.get("paths", [])
            for p in (Path(f).resolve(), Path(f).resolve().parent)]


def _not_searched_words(sources: dict, vocabulary: set[str] | None) -> set[str]:
    """The lower-cased words never searched: ``vocabulary`` and the components of the study's and the
    repository's own folders (their absolute paths appear in the report)."""
    vocab = {v.lower() for v in (vocabulary or set())}
    vocab |= {part.lower() for own in sources.get("own", []) for part in Path(own).parts}
    return vocab


def _split_free_text(needles: list[Needle], words: frozenset) -> list[Needle]:
    """The needles with each free-text value replaced by its searchable words (``privacy.text_needles``)."""
    return [m for n in needles for m in ([Needle(n.kind, n.patient, v) for v in text_needles(n.value, words)]
                                         if n.kind.startswith("free text") else [n])]


def _kept_needles(needles: list[Needle], ids: set[str], vocab: set[str]) -> list[Needle]:
    """The needles worth searching, stripped and first of each (kind, value): none shorter than
    ``MIN_LENGTH``, equal to a patient ID or a vocabulary word, nor a short bare number as a path component."""
    out, seen = [], set()
    for n in needles:
        v = n.value.strip()
        low = v.lower()
        if len(v) < MIN_LENGTH or low in ids or low in vocab or (n.kind, low) in seen:
            continue
        if n.kind == "path component" and re.fullmatch(r"[\d._-]+", v) and len(v) < 8:
            continue  # IM0001-like counters are kept; bare numbers (001, 2.5) are not names
        seen.add((n.kind, low))
        out.append(Needle(n.kind, n.patient, v))
    return out


def collect_needles(sources: dict, vocabulary: set[str] | None = None) -> list[Needle]:
    """Every value the scan looks for, from ``sources`` (see ``privacy.write_sources``): per patient its DICOM
    folder (every header: identifying attributes and UIDs; every folder and file name below it) and its
    other input files (headers when DICOM; their names and the folders the sheet names).

    Values equal to a cohort patient ID, shorter than ``MIN_LENGTH``, in ``vocabulary`` (words the pipeline
    itself writes: config keys and values, phase codes) or folder names of the study's and the repository's
    own paths (``sources['own']``) are not searched."""
    needles: list[Needle] = []
    ids = {str(p).lower() for p in sources["patients"]}
    for pid, src in sources["patients"].items():
        needles += _patient_needles(pid, src, sources.get("root"))
    needles += _input_path_needles(sources)
    vocab = _not_searched_words(sources, vocabulary)
    needles = _split_free_text(needles, frozenset(DESCRIPTION_WORDS | vocab))
    return _kept_needles(needles, ids, vocab)


def vocabulary(cfg: dict) -> set[str]:
    """Words the pipeline writes of its own accord: every key and string value of the config (its phase
    names, ROI and study names, keywords), split into tokens too, and the names of its own files."""
    from ccgrade.config.cohort import LAYOUT

    words: set[str] = {"results", "resources", "private", "labelme", "polygons", "rtstruct", "annotations",
                       "manifest", "slices", "series", "phases", "volumes", "crops", "images", "dicom", "report",
                       "demo_cohort", "cohort.tsv"}
    words |= {n for names in LAYOUT.values() for n in names}  # the annotation folder's conventional names

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                words.add(str(k))
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, str) and not re.search(r"[/\\]", o):  # a path (the sheet's) is not vocabulary
            words.add(o)
            words.update(re.split(r"[\s_.|()?:,-]+", o))
    walk(cfg)
    return {w for w in words if w}


# ------------------------------------------------------------------------------------------------- scan
@dataclass
class _Index:
    """The needles by encoding, indexed by their first bytes (a numpy prefix filter, then exact checks)."""
    width: int
    prefixes: np.ndarray
    by_prefix: dict[int, list[tuple[bytes, Needle, bool]]] = field(default_factory=dict)


def _index(needles: list[Needle]) -> dict[str, _Index]:
    out = {}
    for enc in ENCODINGS:
        width = 6 if enc == "utf-8" else 8
        idx = _Index(width, np.zeros(0, np.uint64))
        for n in needles:
            b = n.value.lower().encode(enc)
            if len(b) < width:
                continue
            key = int.from_bytes(b[:width], "little")
            idx.by_prefix.setdefault(key, []).append((b, n, bool(re.fullmatch(r"\d+", n.value))))
        idx.prefixes = np.array(sorted(idx.by_prefix), dtype=np.uint64)
        out[enc] = idx
    return out


_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32


def _search(data: bytes, index: dict[str, _Index], chunk: int = 1 << 22) -> list[tuple[Needle, str, int]]:
    """(needle, encoding, offset) of every needle found in ``data`` (ASCII case folded)."""
    if not data:
        return []
    low = _LOWER[np.frombuffer(data, np.uint8)]
    lowb = low.tobytes()
    hits = []
    for enc, idx in index.items():
        if not len(idx.prefixes) or len(low) < idx.width:
            continue
        n = len(low) - idx.width + 1
        step = 2 if "16" in enc else 4 if "32" in enc else 1
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            keys = np.zeros(stop - start, np.uint64)
            for i in range(idx.width):
                keys |= low[start + i: stop + i].astype(np.uint64) << np.uint64(8 * i)
            cand = np.flatnonzero(np.isin(keys, idx.prefixes, assume_unique=False))
            for off in cand:
                pos = start + int(off)
                for b, needle, digits in idx.by_prefix[int(keys[off])]:
                    if lowb.startswith(b, pos):
                        if digits:  # a date or number: a whole token, not digits inside a longer number
                            before = lowb[max(0, pos - step): pos].decode(enc, "ignore")
                            after = lowb[pos + len(b): pos + len(b) + step].decode(enc, "ignore")
                            if (before and (before.isdigit() or before == ".")) or (after and after.isdigit()):
                                continue
                        hits.append((needle, enc, pos))
    return hits


B64 = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")
PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
PDF_HEX = re.compile(rb"<([0-9A-Fa-f\s]{8,})>")
PDF_TJ = re.compile(rb"\[(.*?)\]\s*TJ|(\(.*?\))\s*Tj", re.S)
PDF_PIECE = re.compile(rb"\(((?:\\.|[^\\)])*)\)")


def _png_text(data: bytes) -> tuple[list[tuple[str, bytes]], int]:
    """PNG text chunks (tEXt, zTXt, iTXt; inflated) and the byte count of the pixel data (IDAT)."""
    views, pixels, pos = [], 0, 8
    while pos + 8 <= len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8: pos + 8 + n]
        if typ == b"IDAT":
            pixels += n
        elif typ == b"tEXt":
            views.append(("PNG tEXt", body))
        elif typ == b"zTXt":
            key, _, rest = body.partition(b"\0")
            views.append(("PNG zTXt", key + b" " + _inflate(rest[1:])))
        elif typ == b"iTXt":
            key, _, rest = body.partition(b"\0")
            flag, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _tkey, _, text = rest.partition(b"\0")
            views.append(("PNG iTXt", key + b" " + (_inflate(text) if flag else text)))
        pos += 12 + n
    return views, pixels


def _inflate(b: bytes) -> bytes:
    try:
        return zlib.decompress(b)
    except zlib.error:
        try:
            return zlib.decompressobj(-15).decompress(b)
        except zlib.error:
            return b""


def _npy_views(name: str, data: bytes) -> tuple[list[tuple[str, bytes]], int]:
    """An .npy array: its header, and its values when they are text or objects (numbers are counted)."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError:  # an object array: pickled, its strings are in the raw bytes
        return [(f"{name} (object array)", data)], 0
    except Exception:  # noqa: BLE001 - not an array after all
        return [(name, data)], 0
    head = data[: len(data) - arr.nbytes]
    if arr.dtype.kind in "USV":
        return [(f"{name} header", head), (f"{name} ({arr.dtype} array)", data[len(head):])], 0
    return [(f"{name} header", head)], arr.nbytes


def _views(name: str, data: bytes, depth: int = 0) -> tuple[list[tuple[str, bytes]], int]:
    """Every view of a file's bytes the scan searches, and the numeric payload it counts instead."""
    views: list[tuple[str, bytes]] = []
    skipped = 0
    if depth > 4:
        return [(name, data)], 0
    if data[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return [(name, data)], 0
        v, s = _views(f"{name} (gzip)", inner, depth + 1)
        return v, s
    if data[:4] == b"PK\x03\x04":
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            return [(name, data)], 0
        views.append((f"{name} (zip directory)", "\n".join(zf.namelist()).encode()))
        for m in zf.infolist():
            body = zf.read(m)
            mname = f"{name}:{m.filename}"
            if re.search(r"(^|/)data/\d+$", m.filename):  # a torch tensor storage: numbers
                skipped += len(body)
                continue
            v, s = _views(mname, body, depth + 1)
            views += v
            skipped += s
        return views, skipped
    if data[:6] == b"\x93NUMPY":
        return _npy_views(name, data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        v, pixels = _png_text(data)
        return [(name + " " + k, b) for k, b in v], pixels
    if data[:5] == b"%PDF-":
        views.append((name, data))
        for m in PDF_STREAM.finditer(data):
            inner = _inflate(m.group(1))
            if inner:
                views.append((f"{name} (PDF stream)", inner))
                # text shown with kerning is split into pieces: [(Q) 12 (zxwv)] TJ; join the pieces
                text = b"\n".join(b"".join(PDF_PIECE.findall(t.group(1) or t.group(2))) for t in PDF_TJ.finditer(inner))
                if text:
                    views.append((f"{name} (PDF text)", text))
        for m in PDF_HEX.finditer(data):
            try:
                views.append((f"{name} (PDF hex string)", bytes.fromhex(m.group(1).decode())))
            except ValueError:
                pass
        return views, 0
    if len(data) >= 352 and struct.unpack("<i", data[:4])[0] == 348:  # NIfTI-1: header and extensions
        vox = int(struct.unpack("<f", data[108:112])[0])
        vox = vox if 352 <= vox <= len(data) else 352
        return [(f"{name} (NIfTI header)", data[:vox])], len(data) - vox
    views.append((name, data))
    # base64 runs (the report's embedded files, data: URIs): decoded and searched as files of their own
    if depth < 3 and (name.endswith((".html", ".json", ".txt", ".md", ".log", ".svg", ".js", ".css"))
                      or "(base64" in name or "zip" in name):
        for m in B64.finditer(data):
            run = m.group(0)
            try:
                inner = base64.b64decode(run + b"=" * (-len(run) % 4), validate=False)
            except ValueError:
                continue
            v, s = _views(f"{name} (base64 at {m.start()})", inner, depth + 1)
            views += v
            skipped += s
    return views, skipped


SCAN_COLUMNS = ["file", "where", "what", "patient_id", "encoding", "offset"]


def scan(root: str | Path, needles: list[Needle], exclude: tuple[str, ...] = (),
         values: bool = False, only: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict]:
    """Search every file under ``root`` (except paths in ``exclude``) for ``needles``.

    Returns the hits (``file`` relative to root, ``where`` the view inside it, ``what`` the kind of value,
    never the value itself unless ``values``, for a table kept outside results/), ``patient_id``, ``encoding``,
    ``offset``) and a summary (files, bytes searched, numeric bytes counted and not searched, needles)."""
    root = Path(root)
    index = _index(needles)
    rows, n_files, searched, skipped = [], 0, 0, 0
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel in exclude or (only and rel not in only):
            continue
        n_files += 1
        views, skip = _views(rel, f.read_bytes())
        skipped += skip
        for where, data in views:
            searched += len(data)
            # one row per kind of value, patient and view: text in UTF-16-LE also reads as UTF-16-BE one byte on, so the hit
            # aligned to its code units (then the simpler encoding) is the one reported
            best: dict[tuple[str, str], tuple] = {}
            for needle, enc, off in _search(data, index):
                unit = 4 if "32" in enc else 2 if "16" in enc else 1
                rank = (off % unit != 0, ENCODINGS.index(enc))
                k = (needle.kind, needle.patient)
                if k not in best or rank < best[k][0]:
                    best[k] = (rank, enc, off, needle.patient, needle.value)
            for (kind, _p), (_r, enc, off, pid, value) in best.items():
                rows.append({"file": rel, "where": where, "what": kind, "patient_id": pid, "encoding": enc,
                             "offset": off, **({"value": value} if values else {})})
    summary = {"files": n_files, "bytes_searched": searched, "numeric_bytes_counted": skipped,
               "needles": len(needles), "hits": len(rows)}
    return pd.DataFrame(rows, columns=SCAN_COLUMNS + (["value"] if values else [])), summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Scan results/ for the cohort's identifying values.")
    ap.add_argument("--results", default="results")
    ap.add_argument("--sources", required=True, help="the private sources JSON (privacy.write_sources)")
    ap.add_argument("--config", default="{}", help="JSON of the derived config (its words are not searched)")
    ap.add_argument("--mode", default=MODES[0], choices=MODES)
    ap.add_argument("--out", required=True)
    ap.add_argument("--summary", default=None)
    ap.add_argument("--private-out", default=None, help="the hits with their values, outside results/")
    ap.add_argument("--only", nargs="*", default=[], help="scan only these files (paths under --results)")
    ap.add_argument("--quarantine", default=None, help="a folder outside results/ that a file with a hit is moved "
                                                       "to (pseudonymise mode; for files no rule makes: the report)")
    a = ap.parse_args(argv)
    sources = json.loads(Path(a.sources).read_text())
    needles = collect_needles(sources, vocabulary(json.loads(a.config)))
    out = Path(a.out)
    exclude = tuple(p for p in (os.path.relpath(out, a.results), os.path.relpath(a.summary, a.results)
                                if a.summary else "") if p)
    only = tuple(os.path.relpath(p, a.results) for p in a.only)
    hits, summary = scan(a.results, needles, exclude=exclude, values=bool(a.private_out), only=only)
    summary["mode"] = a.mode
    if a.private_out:  # which value leaked, for the user: beside the key, never in results/
        write_tsv(a.private_out, hits)
        hits = hits.drop(columns=["value"])
    write_tsv(out, hits)
    if a.summary:
        write_json(a.summary, summary)
    print(f"privacy scan: {summary['files']} files, {summary['bytes_searched']:,} bytes searched "
          f"({summary['numeric_bytes_counted']:,} numeric bytes counted), {summary['needles']} values, "
          f"{summary['hits']} hit(s)")
    for r in hits.itertuples():
        print(f"HIT {r.file} [{r.where}]: {r.what} of patient {r.patient_id or '-'} ({r.encoding})")
    if len(hits) and a.mode == "pseudonymise":
        moved = quarantine(a.results, sorted(set(hits["file"])), a.quarantine) if a.quarantine else []
        raise PrivacyError(f"privacy scan: {len(hits)} identifying value(s) in results/ (listed above and in {out}; "
                           "the values themselves are not printed); privacy.mode is pseudonymise, so the run fails"
                           + (f"; moved out of results/ to {a.quarantine}: {', '.join(moved)}" if moved else ""))


def quarantine(results: str | Path, files: list[str], folder: str | Path) -> list[str]:
    """Move ``files`` (paths under ``results``) into ``folder`` (outside results/, owner-only), keeping their
    relative paths; the moved paths."""
    from ccgrade.privacy.pseudonyms import secure_private

    moved = []
    for rel in files:
        src, dst = Path(results) / rel, Path(folder) / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            moved.append(rel)
    if moved:
        secure_private(folder)
    return moved



if __name__ == "__main__":
    main()
