"""KiTS19/21/23 adapter: the challenge's clinical JSON and masks as a ccgrade cohort.

Layout accepted below ``root`` (any of): ``kits*.json`` (or ``dataset/kits*.json``) and, per case,
``case_XXXXX/segmentation.nii.gz`` (+ optional ``case_XXXXX/imaging.nii.gz``) or
``masks/case_XXXXX.nii.gz``. Clear-cell cases with an ISUP grade are kept; every other case is listed
with the reason. The images are corticomedullary-phase CT, so masks and images are given the phase
configured as ``cohort.kits.phase`` (default ``cmp``). KiTS labels: 1 kidney, 2 tumour, 3 cyst.
Tumour side is not in the table; the geometry stage derives it from the masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ccgrade.errors import CohortError

SMOKING = {"never_smoked": "never", "previous_smoker": "former", "current_smoker": "current"}
KITS_COLUMNS = ["patient_id", "grade", "age", "sex", "bmi", "diabetes", "ckd", "smoking", "tumor_size_cm",
                "pathologic_size_cm", "t_stage", "t_stage_group", "necrosis", "image", "mask"]


def find_json(root: str | Path) -> Path:
    """The clinical JSON of a KiTS folder (``kits*.json`` at the root or in ``dataset/``)."""
    root = Path(root)
    for d in (root, root / "dataset"):
        hits = sorted(d.glob("kits*.json"))
        if hits:
            return hits[-1]
    raise CohortError("no kits*.json clinical table found (looked in the folder and its dataset/)", file=str(root))


def case_files(root: Path, case: str) -> tuple[Path | None, Path | None]:
    """(image, mask) paths of one case where they exist."""
    for d in (root, root / "dataset"):
        seg = d / case / "segmentation.nii.gz"
        if seg.exists():
            img = d / case / "imaging.nii.gz"
            return (img if img.exists() else None), seg
    m = root / "masks" / f"{case}.nii.gz"
    return None, (m if m.exists() else None)


def _yes_no(v) -> str | float:
    if v is None:
        return np.nan
    return "yes" if bool(v) else "no"


def _t_stage(v) -> tuple[str | float, str | float]:
    if v in (None, "", "x", "X"):
        return np.nan, np.nan
    s = str(v).lower().lstrip("pt")
    return f"T{s}", f"T{s[0]}"


def load_kits(root: str | Path, histology: str = "clear_cell_rcc") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The graded cases of ``histology`` as a cohort table, and the left-out cases with reasons."""
    root = Path(root)
    path = find_json(root)
    try:
        cases = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CohortError(f"not valid JSON ({e})", file=str(path)) from None
    if not isinstance(cases, list):
        raise CohortError("expected a JSON list of cases", file=str(path))
    rows, left = [], []
    for c in cases:
        cid = str(c.get("case_id", ""))
        if not cid:
            raise CohortError("a case has no case_id", file=str(path))
        if c.get("tumor_histologic_subtype") != histology:
            left.append({"patient_id": cid, "reason": f"histology {c.get('tumor_histologic_subtype')!r}"})
            continue
        g = c.get("tumor_isup_grade")
        if g in (None, ""):
            left.append({"patient_id": cid, "reason": "no ISUP grade"})
            continue
        try:
            grade = int(str(g).strip())
        except ValueError:
            raise CohortError(f"unknown tumor_isup_grade {g!r}", patient=cid, file=str(path)) from None
        como = c.get("comorbidities") or {}
        diab = [como.get("uncomplicated_diabetes_mellitus"), como.get("diabetes_mellitus_with_end_organ_damage")]
        img, mask = case_files(root, cid)
        t, tg = _t_stage(c.get("pathology_t_stage"))
        sex = {"male": "M", "female": "F"}.get(str(c.get("gender", "")).lower(), np.nan)
        rows.append({
            "patient_id": cid, "grade": grade, "age": c.get("age_at_nephrectomy"), "sex": sex, "bmi": c.get("bmi"),
            "diabetes": np.nan if all(v is None for v in diab) else _yes_no(any(bool(v) for v in diab)),
            "ckd": _yes_no(como.get("chronic_kidney_disease")),
            "smoking": SMOKING.get(c.get("smoking_history"), np.nan),
            "tumor_size_cm": c.get("radiographic_size"), "pathologic_size_cm": c.get("pathologic_size"),
            "t_stage": t, "t_stage_group": tg, "necrosis": _yes_no(c.get("tumor_necrosis")),
            "image": str(img) if img else np.nan, "mask": str(mask) if mask else np.nan,
        })
    df = pd.DataFrame(rows, columns=KITS_COLUMNS)
    for col in ("age", "bmi", "tumor_size_cm", "pathologic_size_cm"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df, pd.DataFrame(left, columns=["patient_id", "reason"])


def kits_sources(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    """Rename the adapter's image/mask columns to the cohort contract's per-phase columns."""
    return df.rename(columns={"image": f"image_{phase}", "mask": f"mask_{phase}"})


def main(argv: list[str] | None = None) -> None:
    import argparse

    from ccgrade.outputs import write_tsv

    ap = argparse.ArgumentParser(description="KiTS clinical JSON -> ccgrade cohort sheet (no file paths).")
    ap.add_argument("--root", required=True)
    ap.add_argument("--histology", default="clear_cell_rcc")
    ap.add_argument("--sheet", required=True)
    ap.add_argument("--left-out", required=True)
    a = ap.parse_args(argv)
    df, left = load_kits(a.root, a.histology)
    write_tsv(a.sheet, df.drop(columns=["image", "mask"]))
    write_tsv(a.left_out, left.assign(stage="cohort", phase="", file=find_json(a.root).name))
    g = (df["grade"] >= 3).sum()
    print(f"{len(df)} graded {a.histology} cases ({len(df) - g} grade 1-2, {g} grade 3-4); {len(left)} left out")


if __name__ == "__main__":
    main()
