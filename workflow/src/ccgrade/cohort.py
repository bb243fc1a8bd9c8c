"""Configuration and cohort-sheet validation: schemas first, then the checks a schema cannot express."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import yaml

from . import PHASE_NAMES
from .errors import CohortError, ConfigError
from .matrix import check_training

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4}
#: per-phase source columns of the cohort contract: ``{kind}_{phase}``
SOURCE_KINDS = ("image", "mask", "labelme", "polygons", "rtstruct")
ANNOTATION_KINDS = SOURCE_KINDS[1:]
#: the conventional layout below ``annotation_dir/<phase>/`` (first existing name wins)
LAYOUT = {"mask": ("mask.nii.gz", "mask.nii", "mask.nrrd", "mask.nhdr", "mask.mha"), "labelme": ("labelme",),
          "polygons": ("polygons.json",), "rtstruct": ("rtstruct.dcm",)}
SOURCE_COLUMN = re.compile(r"^(image|mask|labelme|polygons|rtstruct)_(up|cmp|np|ep)$")
PATH_COLUMNS = ("dicom_dir", "annotation_dir")
#: annotation format an ROI kind reads when its config names no ``source``
DEFAULT_SOURCE = {"box": "labelme", "tumor": "mask", "centroid": "polygons", "cube": "mask", "slice": "mask"}


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate_against(instance: Any, schema: dict, what: str, exc: type = ConfigError) -> None:
    """Validate ``instance`` against a JSON schema; raise ``exc`` naming every bad key."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  - {what} key '{_key(e.absolute_path)}': {e.message}" for e in errors]
        raise exc(f"{what} is invalid:\n" + "\n".join(lines))


def validate_config(cfg: dict, schema_path: str | Path | None = None) -> dict:
    """Validate the study configuration (schema plus cross-key checks); return it unchanged."""
    schema = load_yaml(schema_path or SCHEMA_DIR / "config.schema.yaml")
    validate_against(cfg, schema, "config")
    phases = cfg["phases"]
    for name, roi in cfg["rois"].items():
        if roi["window"] not in cfg["windows"]:
            raise ConfigError(f"config key 'rois.{name}.window': unknown window preset '{roi['window']}'"
                              f" (defined: {', '.join(cfg['windows'])})")
    for key, lst in (("stack.phases", cfg["stack"]["phases"]),
                     ("splits.require_phases", cfg["splits"]["require_phases"])):
        bad = [p for p in lst if p not in phases]
        if bad:
            raise ConfigError(f"config key '{key}': phases {bad} are not in 'phases' ({phases})")
    for name, sp in cfg["splits"]["schemes"].items():
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ConfigError(f"config key 'splits.schemes.{name}': scheme names must match [a-z0-9_]+")
    tt = cfg["baseline"]["train_test_split"]
    if tt not in cfg["splits"]["schemes"]:
        raise ConfigError(f"config key 'baseline.train_test_split': no split scheme named '{tt}'")
    if cfg["cohort"]["source"] == "sheet" and not cfg["cohort"].get("sheet"):
        raise ConfigError("config key 'cohort.sheet': required when cohort.source is 'sheet'")
    if cfg["cohort"]["source"] == "kits" and not cfg["cohort"].get("kits"):
        raise ConfigError("config key 'cohort.kits': required when cohort.source is 'kits' (give kits.root)")
    if cfg["geometry"]["enabled"] and cfg["geometry"]["phase"] not in phases:
        raise ConfigError(f"config key 'geometry.phase': {cfg['geometry']['phase']!r} is not in 'phases' ({phases})")
    check_training(cfg)
    if cfg.get("rtstruct_roi"):
        try:
            re.compile(cfg["rtstruct_roi"])
        except re.error as e:
            raise ConfigError(f"config key 'rtstruct_roi': not a regular expression ({e})") from None
    return cfg


def parse_grade(value: Any, patient: str, file: str | None = None) -> int:
    """Parse a WHO/ISUP or Fuhrman grade written as 1-4, '3', 'G3', 'grade 3' or 'III' into an int."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == value and float(value).is_integer() and 1 <= int(value) <= 4:
            return int(value)
    elif isinstance(value, str):
        s = re.sub(r"^(who/isup|isup|fuhrman|grade|g)\s*", "", value.strip(), flags=re.I).strip()
        if s.isdigit() and 1 <= int(s) <= 4:
            return int(s)
        if s.upper() in _ROMAN:
            return _ROMAN[s.upper()]
    raise CohortError(f"unknown grade value {value!r} (expected 1-4, 'G1'-'G4' or I-IV)",
                      patient=patient, file=file)


def grade_group(grade: int, high_from: int) -> str:
    """Binary grade group used by all four studies: 'low' (below ``high_from``) or 'high'."""
    return "high" if grade >= high_from else "low"


def load_cohort_sheet(path: str | Path, cfg: dict, schema_path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate a cohort sheet (TSV or CSV); resolve paths relative to the sheet's folder."""
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
    df = pd.read_csv(io.StringIO(text), sep=sep, dtype={"patient_id": str}, keep_default_na=True)
    return validate_cohort(df, cfg, file=str(path), base=path.parent, schema_path=schema_path)


def validate_cohort(df: pd.DataFrame, cfg: dict, *, file: str = "<cohort sheet>", base: Path | None = None,
                    schema_path: str | Path | None = None, check_paths: bool = True) -> pd.DataFrame:
    """Schema-validate a cohort table, parse grades, and check IDs and image folders."""
    schema = load_yaml(schema_path or SCHEMA_DIR / "cohort.schema.yaml")
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in schema.get("required", []) if c not in df.columns]
    if missing:
        raise CohortError(f"cohort sheet lacks required column(s) {missing}", file=file)
    df["patient_id"] = df["patient_id"].astype(str).str.strip()
    dup = df["patient_id"][df["patient_id"].duplicated()].unique().tolist()
    if dup:
        raise CohortError(f"duplicate patient IDs {dup}: each patient must appear once", file=file)
    for pid in df["patient_id"]:
        if not PATIENT_ID.match(pid):
            raise CohortError("patient ID must be letters, digits, '_', '-' or '.' (it becomes a path)",
                              patient=pid, file=file)
    df["grade"] = [parse_grade(v, p, file) for v, p in zip(df["grade"], df["patient_id"])]
    for rec in df.to_dict("records"):
        clean = {k: v for k, v in rec.items() if not (isinstance(v, float) and v != v)}
        try:
            validate_against(clean, schema, f"cohort row of patient {rec['patient_id']}", CohortError)
        except CohortError as e:
            raise CohortError(str(e), file=file) from None
    high_from = cfg["cohort"]["high_grade_from"]
    df["grade_group"] = [grade_group(g, high_from) for g in df["grade"]]
    path_cols = [c for c in df.columns if c in PATH_COLUMNS or SOURCE_COLUMN.match(c)]
    for col in path_cols:
        df[col] = [v.strip() if isinstance(v, str) and v.strip() else None for v in df[col]]
        if base is not None:
            df[col] = [str(Path(v) if Path(v).is_absolute() else (base / v)) if isinstance(v, str) else v
                       for v in df[col]]
    if check_paths:
        for rec in df.to_dict("records"):
            check_sources(rec, file)
    return df


def check_sources(rec: dict, file: str) -> None:
    """A patient needs an image (DICOM folder or volume) or at least a mask; every named path must exist."""
    pid = rec["patient_id"]
    d = rec.get("dicom_dir")
    if isinstance(d, str) and not Path(d).is_dir():
        raise CohortError(f"no images: dicom_dir {d!r} is not a folder", patient=pid, file=file)
    for col, v in rec.items():
        m = SOURCE_COLUMN.match(col)
        if not m or not isinstance(v, str):
            continue
        p = Path(v)
        if not p.exists():
            raise CohortError(f"column {col}: {v!r} does not exist", patient=pid, file=file)
        if m.group(1) == "image" and p.is_dir():
            raise CohortError(f"column {col}: {v!r} is a folder; give DICOM as dicom_dir (phases are found by "
                              "ingest) and use image_<phase> for NIfTI/NRRD volumes", patient=pid, file=file)
        if m.group(1) == "labelme" and not p.is_dir():
            raise CohortError(f"column {col}: {v!r} must be a folder of labelme JSON files", patient=pid, file=file)
    a = rec.get("annotation_dir")
    if isinstance(a, str) and not Path(a).is_dir():
        raise CohortError(f"annotation_dir {a!r} is not a folder", patient=pid, file=file)
    if not has_images(rec) and not any(isinstance(rec.get(f"mask_{ph}"), str) for ph in PHASE_NAMES):
        raise CohortError("no images: the patient has neither dicom_dir, an image_<phase> volume nor a mask_<phase>",
                          patient=pid, file=file)


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


def analysis_cohort(sheet: pd.DataFrame, geometry: pd.DataFrame | None) -> pd.DataFrame:
    """The cohort table every later stage reads: the validated sheet without any file paths, plus the
    mask geometry; ``side`` is filled from the mask where the sheet has none (``side_source`` says which)."""
    keep = [c for c in sheet.columns if c not in PATH_COLUMNS and not SOURCE_COLUMN.match(c)]
    out = sheet[keep].copy()
    if geometry is not None and len(geometry):
        g = geometry.astype({"patient_id": str}).set_index("patient_id")
        for src, dst in GEOMETRY_TO_COHORT.items():
            out[dst] = out["patient_id"].map(g[src])
        side = out["side"].astype(object) if "side" in out else pd.Series(None, index=out.index, dtype=object)
        have = side.notna() & (side.astype(str).str.strip() != "")
        out["side_source"] = np.where(have, "sheet", np.where(out["mask_side"].notna(), "mask geometry", ""))
        out["side"] = side.where(have, out["mask_side"].astype(object))
    return out


def roi_sources(roi: dict) -> list[str]:
    """The annotation formats an ROI setting accepts, in order of preference (config ``source``: one
    format or a list, e.g. ``[mask, rtstruct]`` for cohorts that mix NIfTI masks and RTSTRUCTs)."""
    src = roi.get("source") or DEFAULT_SOURCE[roi["kind"]]
    return [src] if isinstance(src, str) else list(src)


def pick_source(roi: dict, available: dict[str, str]) -> tuple[str, str | None]:
    """The first accepted format this phase has (and its file), else the first accepted format and None."""
    for fmt in roi_sources(roi):
        if fmt in available:
            return fmt, available[fmt]
    return roi_sources(roi)[0], None
