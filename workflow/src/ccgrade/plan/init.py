"""A starter config for a cohort sheet: ``python -m ccgrade.plan.init SHEET > my_study.yaml``.

It runs the pre-flight survey on the sheet (the DICOM header index finds each patient's phases; annotation
headers, RTSTRUCT ROI names and references are read), derives the study the cohort can feed, and writes a
commented YAML that sets only what the defaults cannot know: the sheet's path, an RTSTRUCT ROI pattern when
the default does not match the files' ROI names, and the sheet's clinical columns as baseline variables.
Everything else stays ``auto`` in config.yaml and is derived again at every run. The comments say what was
found and what the run will do (phases, annotations, linking, the studies and what is left out).

Use it as ``snakemake --cores 8 --resources gpu=1 --configfile my_study.yaml``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[4]


def _guess_type(values: pd.Series) -> str:
    """continuous for numbers (at least 80% of the values) with more than two distinct values, else categorical
    (text, yes/no, 0/1)."""
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().sum() >= 0.8 * values.notna().sum() and num.nunique() > 2:
        return "continuous"
    return "categorical"


def starter_config(sheet: str | Path, base: dict | None = None, workers: int = 1) -> str:
    """The commented YAML for ``sheet`` (see the module docstring)."""
    return starter(sheet, base, workers)[0]


def starter(sheet: str | Path, base: dict | None = None, workers: int = 1) -> tuple[str, list]:
    """The commented YAML for ``sheet`` and the pre-flight's errors for it."""
    from ccgrade.config.cohort import read_sheet
    from ccgrade.config.studyconfig import load_yaml
    from ccgrade.plan import preflight

    sheet = Path(sheet).resolve()
    cfg = base or load_yaml(REPO / "config.yaml")
    cfg = {**cfg, "cohort": {**cfg["cohort"], "source": "auto", "sheet": str(sheet)}}
    extra: dict = {"cohort": {"sheet": str(sheet)}}
    notes: list[str] = []
    # clinical columns: what the sheet has beyond the contract, as baseline variables (types guessed)
    try:
        raw = read_sheet(sheet)
    except Exception as e:  # noqa: BLE001 - the plan reports it with the fix
        raw = None
        notes.append(f"the sheet cannot be read: {e}")
    if raw is not None:
        from ccgrade.config.cohort import PATH_COLUMNS, SOURCE_COLUMN

        contract = {"patient_id", "grade", "centre", "center", *PATH_COLUMNS}
        clinical = [c for c in raw.columns if c not in contract and not SOURCE_COLUMN.match(c)
                    and not re.fullmatch(r"(image|mask|labelme|polygons|rtstruct)_.*", c)]
        if clinical:
            extra["baseline"] = {"variables": [{"name": c, "label": c, "type": _guess_type(raw[c])} for c in clinical]}
            cfg = {**cfg, "baseline": {**cfg["baseline"], "variables": extra["baseline"]["variables"]}}
    plan = preflight.plan(cfg, workers=workers)
    # an RTSTRUCT ROI pattern when the default matches none of the files' ROI names
    names = Counter(n for sv in plan.survey.values() for ph in (sv.get("roi_names") or {}).values() for n in ph)
    pattern = cfg.get("rtstruct_roi") or ""
    if names and not any(re.search(pattern, n, re.I) for n in names):
        top = names.most_common(1)[0][0]
        extra["rtstruct_roi"] = f"^{re.escape(top)}$"
        cfg["rtstruct_roi"] = extra["rtstruct_roi"]
        plan = preflight.plan(cfg, workers=workers)
    # k-fold schemes larger than the cohort: the largest k it can fill
    n = (plan.facts or {}).get("eligible")
    if n is not None:
        small = {name: sch for name, sch in plan.config["splits"]["schemes"].items()
                 if sch["kind"] == "kfold" and int(sch["k"]) > n >= 2}
        if small:
            extra.setdefault("splits", {})["schemes"] = {name: {"k": n} for name in small}
            cfg["splits"] = {**cfg["splits"], "schemes": {**cfg["splits"]["schemes"], **{
                name: {**cfg["splits"]["schemes"][name], "k": n} for name in small}}}
            notes.append(f"k-fold scheme(s) {', '.join(small)} cut to k = {n}: the cohort has {n} eligible patients")
            plan = preflight.plan(cfg, workers=workers)
    return _render(sheet, plan, extra, names, notes), list(plan.errors)


def _render(sheet: Path, plan, extra: dict, names: Counter, notes: list[str]) -> str:
    cfg, facts, cohort = plan.config, plan.facts or {}, plan.cohort
    lines = [f"# ccgrade study config for the cohort sheet {sheet.name}",
             "# Written by `python -m ccgrade.plan.init` from the sheet and the patients' headers. Run it with",
             "#   snakemake --cores 8 --resources gpu=1 --configfile THIS_FILE",
             "# Keys not set here come from config.yaml (documented key by key there); its `auto` values are derived",
             "# from the cohort at every run, so this file stays right when patients are added. To set training",
             "# studies or ROI settings whole instead of merging them into the defaults, list them under",
             "# `replace:` (e.g. replace: [training.studies]) and give them here.", "#"]
    if len(cohort) and "grade" in cohort:
        g = cohort["grade"].value_counts().sort_index()
        grp = cohort["grade_group"].value_counts() if "grade_group" in cohort else pd.Series(dtype=int)
        lines.append(f"# The cohort: {len(cohort)} patients; grades " + ", ".join(f"{int(k)}: {v}" for k, v in g.items() if k == k)
                     + f" (low {int(grp.get('low', 0))} / high {int(grp.get('high', 0))})")
    img = {p: n for p, n in (facts.get("imaged") or {}).items() if n}
    out = {p: n for p, n in (facts.get("outlined") or {}).items() if n}
    lines.append("# Phases with a usable image (patients): " + (", ".join(f"{p} {n}" for p, n in img.items()) or "none"))
    lines.append("# Tumour outlines (patients per phase): " + (", ".join(f"{p} {n}" for p, n in out.items()) or "none"))
    fm = facts.get("formats") or {}
    lines.append("# Annotation formats (patients): " + (", ".join(f"{k} {v}" for k, v in sorted(fm.items())) or "none"))
    if names:
        lines.append("# RTSTRUCT ROI names: " + ", ".join(f"{k} ({v})" for k, v in names.most_common(8)))
    if facts.get("links"):
        lines.append("# RTSTRUCT contours link by: " + ", ".join(f"{k} ({v} patients)" for k, v in facts["links"].items()))
    studies = cfg.get("training", {}).get("studies", {})
    from ccgrade.config.matrix import study_models

    for name, st in studies.items():
        lines.append(f"# Study {name}: " + "; ".join(f"{a} on {roi} {'/'.join(s)}" for a, roi, s in study_models(st)))
    levels = Counter(p.level for p in plan.problems)
    lines.append(f"# Pre-flight: {levels.get('error', 0)} error(s), {levels.get('warning', 0)} warning(s), "
                 f"{levels.get('skipped', 0)} part(s) left out:")
    order = {"error": 0, "warning": 1, "skipped": 2}
    for p in sorted(plan.problems, key=lambda x: order.get(x.level, 3)):
        for k, row in enumerate(str(p).splitlines()):
            lines.append(("#   " if k == 0 else "#     ") + row)
    for n in notes:
        lines.append(f"# NOTE: {n}")
    lines.append("#")
    body = yaml.safe_dump(extra, sort_keys=False, allow_unicode=True, width=110)
    if "baseline" in extra:
        body = body.replace("baseline:\n", "baseline:  # the sheet's clinical columns; types guessed from the values: "
                                           "check them, add label/unit\n", 1)
        body += ("# fusion:\n#   clinical: [...]   # name the pre-operative variables above for Sun's clinical "
                 "model (never pathology: it leaks the grade)\n")
    if "rtstruct_roi" in extra:
        body += "# (rtstruct_roi: the default pattern matched none of the ROI names above; check this one)\n"
    return "\n".join(lines) + "\n" + body


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a commented study config for a cohort sheet to standard output.")
    ap.add_argument("sheet", help="the cohort sheet (TSV or CSV; see docs/cohort.md)")
    ap.add_argument("--workers", type=int, default=1, help="processes for the header survey")
    a = ap.parse_args(argv)
    text, errors = starter(a.sheet, workers=a.workers)
    sys.stdout.write(text)
    if errors:  # the config is written all the same (its header lists them); a script must not take it as ready
        sys.stderr.write(f"ccgrade.plan.init: the pre-flight found {len(errors)} error(s), listed in the config's header; "
                         "fix them before the first run\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
