"""Configuration and cohort-sheet validation: schemas first, then the checks a schema cannot express."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

from .errors import CohortError, ConfigError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4}


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
    df = pd.read_csv(path, sep=sep, dtype={"patient_id": str}, keep_default_na=True)
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
    if base is not None:
        for col in ("dicom_dir", "annotation_dir"):
            if col in df:
                df[col] = [str(Path(v) if Path(v).is_absolute() else (base / v)) if isinstance(v, str) else v
                           for v in df[col]]
    if check_paths:
        for rec in df.to_dict("records"):
            d = rec.get("dicom_dir")
            if not isinstance(d, str) or not Path(d).is_dir():
                raise CohortError(f"no images: dicom_dir {d!r} is not a folder", patient=rec["patient_id"],
                                  file=file)
    return df
