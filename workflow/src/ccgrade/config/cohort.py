"""Configuration and cohort-sheet validation: schemas first, then the checks a schema cannot express."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ccgrade import PHASE_NAMES
from ccgrade.config.studyconfig import load_yaml, roi_formats, SCHEMA_DIR, used_columns, validate_against
from ccgrade.errors import CohortError, Problem, problem, raise_errors
from ccgrade.outputs import NA_MARKERS

PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4}
#: per-phase source columns of the cohort contract: ``{kind}_{phase}``
SOURCE_KINDS = ("image", "mask", "labelme", "polygons", "rtstruct")
#: the conventional layout below ``annotation_dir/<phase>/`` (first existing name wins)
LAYOUT = {"mask": ("mask.nii.gz", "mask.nii", "mask.nrrd", "mask.nhdr", "mask.mha"), "labelme": ("labelme",),
          "polygons": ("polygons.json",), "rtstruct": ("rtstruct.dcm",)}
SOURCE_COLUMN = re.compile(r"^(image|mask|labelme|polygons|rtstruct)_(up|cmp|np|ep)$")
PATH_COLUMNS = ("dicom_dir", "annotation_dir")


def parse_grade(value: Any, patient: str, file: str | None = None) -> int:
    """Parse a WHO/ISUP or Fuhrman grade written as 1-4, '3', '3.0', 'G3', 'grade 3' or 'III' into an int."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if value == value and float(value).is_integer() and 1 <= int(value) <= 4:
            return int(value)
    elif isinstance(value, str):
        s = re.sub(r"^(who/isup|isup|fuhrman|grade|g)\s*", "", value.strip(), flags=re.I).strip()
        m = re.fullmatch(r"(\d+)(\.0*)?", s)  # '2' and '2.0' (a spreadsheet's numbers as text) alike
        if m and 1 <= int(m.group(1)) <= 4:
            return int(m.group(1))
        if s.upper() in _ROMAN:
            return _ROMAN[s.upper()]
    raise CohortError(f"unknown grade value {value!r} (expected 1-4, 'G1'-'G4' or I-IV)",
                      patient=patient, file=file)


def grade_group(grade: int, high_from: int) -> str:
    """Binary grade group used by all four studies: 'low' (below ``high_from``) or 'high'."""
    return "high" if grade >= high_from else "low"


def cohort_label(cfg: dict) -> str:
    """What the cohort's tumours are called in titles: ``cohort.label``, else ccRCC for the demo and KiTS (clear
    cell by construction) and ``tumours`` for a sheet, whose histology this pipeline cannot know."""
    c = cfg.get("cohort", {})
    return c.get("label") or ("ccRCC" if c.get("source") in ("demo", "kits") else "tumours")


def read_sheet(path: str | Path) -> pd.DataFrame:
    """Read a cohort sheet (TSV, or CSV by suffix) as written: patient IDs are strings (``007``, ``NA``), the
    text must be UTF-8 (a byte-order mark is dropped); an empty or header-only sheet is an error."""
    path = Path(path)
    if not path.exists():
        raise CohortError("cohort sheet not found", file=str(path))
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark (spreadsheet programs) is dropped
    except UnicodeDecodeError as e:  # e.g. a sheet saved by a spreadsheet program as Latin-1 / Windows-1252
        line = raw[: e.start].count(b"\n") + 1
        raise CohortError(f"not UTF-8 text: line {line} has the byte(s) {raw[e.start:e.end]!r} "
                          f"({e.reason}); save the sheet as UTF-8", file=str(path)) from None
    if not text.strip():
        raise CohortError("the cohort sheet is empty: it needs a header line (patient_id, grade, ...) and one row "
                          "per patient", file=str(path))
    try:
        header = pd.read_csv(io.StringIO(text), sep=sep, nrows=0).columns
    except pd.errors.ParserError as e:
        raise CohortError(f"not a {'comma' if sep == ',' else 'tab'}-separated table ({e})", file=str(path)) from None
    ids = [c for c in header if str(c).strip() == "patient_id"]
    df = pd.read_csv(io.StringIO(text), sep=sep, dtype={c: str for c in ids}, keep_default_na=False,
                     na_values={c: NA_MARKERS for c in header if c not in ids})
    if df.empty:
        raise CohortError(f"the cohort sheet has a header ({', '.join(map(str, header))}) but no patient rows",
                          file=str(path))
    return df


def load_cohort_sheet(path: str | Path, cfg: dict, schema_path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate a cohort sheet (TSV or CSV); resolve paths relative to the sheet's folder. Every
    problem of the sheet is raised at once (one CohortError listing them)."""
    path = Path(path)
    return validate_cohort(read_sheet(path), cfg, file=str(path), base=path.parent, schema_path=schema_path)


def validate_cohort(df: pd.DataFrame, cfg: dict, *, file: str = "<cohort sheet>", base: Path | None = None,
                    schema_path: str | Path | None = None, check_paths: bool = True) -> pd.DataFrame:
    """Schema-validate a cohort table, parse grades, and check IDs and image folders; raise every error at once."""
    out, problems = cohort_problems(df, cfg, file=file, base=base, schema_path=schema_path, check_paths=check_paths)
    raise_errors(problems, CohortError, f"cohort sheet {file}")
    return out


#: phase words people write in column names, and the phase code they mean
PHASE_ALIASES = {"plain": "up", "nc": "up", "pre": "up", "native": "up", "unenhanced": "up", "art": "cmp",
                 "arterial": "cmp", "ap": "cmp", "cm": "cmp", "cortical": "cmp", "pv": "np", "pvp": "np", "venous": "np",
                 "portal": "np", "nephro": "np", "nephrographic": "np", "parenchymal": "np", "del": "ep",
                 "delayed": "ep", "exc": "ep", "excretory": "ep", "uro": "ep"}


def column_problems(columns: list[str], cfg: dict, file: str) -> list[Problem]:
    """Misspelt source columns (an error: the files they name would be ignored) and columns the study does not
    use (a warning: they are left out of results/)."""
    import difflib

    contract = ["patient_id", "grade", "centre", "dicom_dir", "annotation_dir"] + [
        f"{k}_{ph}" for k in SOURCE_KINDS for ph in PHASE_NAMES]
    known = set(contract) | set(used_columns(cfg)) | {"grade_group", "side_source"} | set(GEOMETRY_TO_COHORT.values())
    out = []
    for col in columns:
        if col in known or SOURCE_COLUMN.match(col):
            continue
        m = re.fullmatch(r"(image|mask|labelme|polygons|rtstruct)_(.+)", col)
        close = difflib.get_close_matches(col, contract, n=1, cutoff=0.75)
        if m:
            ph = PHASE_ALIASES.get(m.group(2).lower())
            want = f"{m.group(1)}_{ph}" if ph else f"{m.group(1)}_<phase>"
            out.append(problem("error", f"column {col}: {m.group(2)!r} is not a phase code (up plain, cmp "
                                        "corticomedullary, np parenchymal, ep excretory); its files would be ignored",
                               f"rename the column to {want}", file=file))
        elif close:
            out.append(problem("error", f"column {col!r} looks like a misspelt {close[0]!r}; its values would be "
                                        "ignored", f"rename the column to {close[0]}", file=file))
        else:
            out.append(problem("warning", f"column {col!r} is not part of the cohort contract and not named in "
                                          "baseline.variables or fusion.clinical: it is ignored and never written to "
                                          "results/", "name it in baseline.variables to use it, or leave it",
                               file=file))
    return out


#: the longest patient ID: it names folders and files (with suffixes) on every file system, and wildcards
MAX_ID_LENGTH = 64


def id_problems(raw: list[str], file: str) -> list[Problem]:
    """The sheet's patient IDs as written: duplicates, IDs that are not safe names (characters, length), IDs
    that differ only in case (one folder on macOS and Windows file systems); spaces around an ID are a
    noted correction (the ID is read without them), not silently dropped."""
    probs, ids = [], [v.strip() for v in raw]
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique().tolist()
    if dup:
        probs.append(problem("error", f"duplicate patient IDs {dup}: each patient must appear once",
                             "merge or rename the duplicated rows", file=file))
    for v, pid in zip(raw, ids):
        if v != pid and pid:
            probs.append(problem("warning", f"patient ID {v!r} has spaces around it: it is read as {pid!r}",
                                 "remove the spaces in the sheet to silence this", patient=pid, file=file))
        if not PATIENT_ID.match(pid):
            probs.append(problem("error", f"patient ID {pid!r} must be letters, digits, '_', '-' or '.' and start with "
                                          "a letter or digit (it becomes a folder name)",
                                 "rename it in the sheet (e.g. replace '/' or spaces with '_')", patient=pid or None,
                                 file=file))
        elif len(pid) > MAX_ID_LENGTH:
            probs.append(problem("error", f"patient ID {pid[:20]!r}... is {len(pid)} characters long (at most "
                                          f"{MAX_ID_LENGTH}: it names folders and files)",
                                 "give the patient a shorter pseudonymous ID", patient=pid[:20] + "...", file=file))
    folded: dict[str, list[str]] = {}
    for pid in dict.fromkeys(ids):
        folded.setdefault(pid.casefold(), []).append(pid)
    for same in (v for v in folded.values() if len(v) > 1):
        probs.append(problem("error", f"patient IDs {same} differ only in case: on macOS and Windows file systems "
                                      "they would share one folder", "rename one of them", file=file))
    return probs


def _normalised_columns(df: pd.DataFrame, grade_optional: bool) -> pd.DataFrame:
    """A copy of the sheet with stripped column names, ``center`` read as ``centre`` and, when
    ``grade_optional``, an empty grade column where the sheet has none."""
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    if "center" in df.columns and "centre" not in df.columns:  # American spelling of the site column
        df = df.rename(columns={"center": "centre"})
    if grade_optional and "grade" not in df.columns:
        df["grade"] = np.nan
    return df


def _is_blank_grade(v: Any) -> bool:
    """Whether a grade cell is empty (None, NaN or only spaces)."""
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


def _parsed_grades(df: pd.DataFrame, file: str, grade_optional: bool) -> tuple[list, list[Problem]]:
    """Each row's grade parsed to an int (NaN where blank and optional, or unreadable) and the problems."""
    grades, probs = [], []
    for v, pid in zip(df["grade"], df["patient_id"]):
        if grade_optional and _is_blank_grade(v):
            grades.append(np.nan)
            continue
        try:
            grades.append(parse_grade(v, pid, file))
        except CohortError as e:
            probs.append(Problem("error", str(e), "write the grade as 1-4, G1-G4 or I-IV"))
            grades.append(np.nan)
    return grades, probs


def _schema_problems(df: pd.DataFrame, schema: dict, file: str) -> list[Problem]:
    """The schema violations of every row that has a grade (empty cells left out)."""
    probs = []
    for rec in df.to_dict("records"):
        clean = {k: v for k, v in rec.items() if not (isinstance(v, float) and v != v)}
        if clean.get("grade") is None:
            continue
        try:
            validate_against(clean, schema, f"cohort row of patient {rec['patient_id']}", CohortError)
        except CohortError as e:
            probs.append(problem("error", str(e).replace("\n", " "), "correct the value", file=file))
    return probs


def _resolve_paths(df: pd.DataFrame, base: Path | None) -> None:
    """Strip the path columns in place (blank cells become None) and make relative paths relative to ``base``."""
    path_cols = [c for c in df.columns if c in PATH_COLUMNS or SOURCE_COLUMN.match(c)]
    for col in path_cols:
        df[col] = [v.strip() if isinstance(v, str) and v.strip() else None for v in df[col]]
        if base is not None:
            df[col] = [str(Path(v) if Path(v).is_absolute() else (base / v)) if isinstance(v, str) else v
                       for v in df[col]]


def cohort_problems(df: pd.DataFrame, cfg: dict, *, file: str = "<cohort sheet>", base: Path | None = None,
                    schema_path: str | Path | None = None,
                    check_paths: bool = True, grade_optional: bool = False) -> tuple[pd.DataFrame, list[Problem]]:
    """Every problem of a cohort table at once (IDs, grades, values, columns, paths) and the table with
    parsed grades, grade groups and resolved paths. ``grade_optional`` (new patients to be graded by a
    model, ``predict.sheet``): the grade column may be absent or empty; a grade given is still checked."""
    schema = load_yaml(schema_path or SCHEMA_DIR / "cohort.schema.yaml")
    df = _normalised_columns(df, grade_optional)
    missing = [c for c in schema.get("required", []) if c not in df.columns]
    if missing:
        return df, [problem("error", f"cohort sheet lacks required column(s) {missing}",
                            "add them: patient_id (your pseudonymous ID) and grade (1-4)", file=file)]
    probs = column_problems(list(df.columns), cfg, file) if check_paths else []  # the user's sheet, not a derived table
    raw = [str(v) if v == v and v is not None else "" for v in df["patient_id"]]
    df["patient_id"] = [v.strip() for v in raw]
    probs += id_problems(raw, file)
    df["grade"], grade_probs = _parsed_grades(df, file, grade_optional)
    probs += grade_probs
    probs += _schema_problems(df, schema, file)
    high_from = cfg["cohort"]["high_grade_from"]
    df["grade_group"] = [grade_group(g, high_from) if g == g else "" for g in df["grade"]]
    _resolve_paths(df, base)
    if check_paths:
        for rec in df.to_dict("records"):
            probs += source_problems(rec, file)
    if not any(p.level == "error" for p in probs) and not df["grade"].isna().any():
        df["grade"] = df["grade"].astype(int)
    return df, probs


def source_problems(rec: dict, file: str) -> list[Problem]:
    """What is wrong with one patient's paths: folders and files that do not exist or are of the wrong kind,
    and a patient with neither images nor a mask."""
    pid, out = rec["patient_id"], []

    def err(msg: str, fix: str) -> None:
        out.append(problem("error", msg, fix, patient=pid, file=file))

    d = rec.get("dicom_dir")
    if isinstance(d, str) and not Path(d).is_dir():
        err(f"no images: dicom_dir {d!r} is not a folder", "correct the path (absolute, or relative to the sheet)")
    for col, v in rec.items():
        m = SOURCE_COLUMN.match(col)
        if not m or not isinstance(v, str):
            continue
        p = Path(v)
        if not p.exists():
            err(f"column {col}: {v!r} does not exist", "correct the path (absolute, or relative to the sheet)")
        elif m.group(1) == "image" and p.is_dir():
            err(f"column {col}: {v!r} is a folder; give DICOM as dicom_dir (phases are found by "
                "ingest) and use image_<phase> for NIfTI/NRRD volumes", "move the folder to the dicom_dir column")
        elif m.group(1) == "labelme" and not p.is_dir():
            err(f"column {col}: {v!r} must be a folder of labelme JSON files", "give the folder that holds the JSONs")
    a = rec.get("annotation_dir")
    if isinstance(a, str) and not Path(a).is_dir():
        err(f"annotation_dir {a!r} is not a folder", "correct the path, or name the files in per-phase columns")
    if not has_images(rec) and not any(isinstance(rec.get(f"mask_{ph}"), str) for ph in PHASE_NAMES):
        err("no images: the patient has neither dicom_dir, an image_<phase> volume nor a mask_<phase>",
            "add the patient's DICOM folder (dicom_dir) or remove the row")
    return out


def has_images(rec: dict) -> bool:
    """Whether a cohort row names any image (a DICOM folder or a per-phase volume)."""
    return isinstance(rec.get("dicom_dir"), str) or any(
        isinstance(v, str) and k.startswith("image_") for k, v in rec.items())


def patient_sources(rec: dict, phases: list[str], *, assume_layout: bool = False) -> dict[str, dict[str, str]]:
    """Per phase, the annotation and image sources of one patient: explicit ``{kind}_{phase}`` columns win,
    else the conventional ``annotation_dir/<phase>/`` layout (files that exist; all of them when
    ``assume_layout``, for cohorts whose files a job writes later, like the demo)."""
    out: dict[str, dict[str, str]] = {}
    adir = rec.get("annotation_dir")
    for ph in phases:
        src = {}
        for kind in SOURCE_KINDS:
            v = rec.get(f"{kind}_{ph}")
            if isinstance(v, str) and v:
                src[kind] = v
            elif kind in LAYOUT and isinstance(adir, str):
                for name in LAYOUT[kind]:
                    p = Path(adir) / ph / name
                    if (assume_layout and name == LAYOUT[kind][0] and kind != "rtstruct") or p.exists():
                        src[kind] = str(p)
                        break
        out[ph] = src
    return out


#: columns that the geometry stage adds to the analysis cohort (prefixed ``mask_``)
GEOMETRY_TO_COHORT = {"volume_ml": "mask_volume_ml", "max_diameter_3d_mm": "mask_max_diameter_3d_mm",
                      "max_axial_diameter_mm": "mask_max_axial_diameter_mm", "side": "mask_side"}


#: the sheet columns every analysis cohort keeps
COHORT_COLUMNS = ["patient_id", "grade", "grade_group", "centre"]


def analysis_cohort(sheet: pd.DataFrame, geometry: pd.DataFrame | None, columns: list[str] | None = None) -> pd.DataFrame:
    """The cohort table every later stage reads: the validated sheet's ID, grade, centre and the ``columns``
    the study uses (never a file path, never a column nobody named), plus the mask geometry; ``side`` is
    filled from the mask where the sheet has none (``side_source`` says which)."""
    want = COHORT_COLUMNS + list(columns or [])
    keep = [c for c in dict.fromkeys(want) if c in sheet.columns and c not in PATH_COLUMNS and not SOURCE_COLUMN.match(c)]
    out = sheet[keep].copy()
    if geometry is not None and "status" in geometry:
        geometry = geometry[geometry["status"].astype(str) == "ok"]
    if geometry is not None and len(geometry):
        g = geometry.astype({"patient_id": str}).set_index("patient_id")
        for src, dst in GEOMETRY_TO_COHORT.items():
            out[dst] = out["patient_id"].map(g[src])
        side = out["side"].astype(object) if "side" in out else pd.Series(None, index=out.index, dtype=object)
        have = side.notna() & (side.astype(str).str.strip() != "")
        known = out["mask_side"].isin(["left", "right", "bilateral"])  # 'unknown' fills nothing
        out["side_source"] = np.where(have, "sheet", np.where(known, "mask geometry", ""))
        out["side"] = side.where(have, out["mask_side"].where(known).astype(object))
    return out


def roi_sources(roi: dict) -> list[str]:
    """The annotation formats an ROI setting accepts, in order of preference (config ``source``: one
    format, a list, e.g. ``[mask, rtstruct]`` for cohorts that mix NIfTI masks and RTSTRUCTs, or ``auto``:
    whichever each patient has, in the kind's stated order)."""
    return roi_formats(roi)


def pick_source(roi: dict, available: dict[str, str]) -> tuple[str, str | None]:
    """The first accepted format this phase has (and its file), else the first accepted format and None."""
    for fmt in roi_sources(roi):
        if fmt in available:
            return fmt, available[fmt]
    return roi_sources(roi)[0], None
