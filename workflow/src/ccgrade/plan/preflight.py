"""The pre-flight check and the study plan: everything that can be known before a job runs, checked at once.

``plan`` is what the Snakefile calls at parse time. It reads the config (keys a user config ``replace``\\s
taken whole), the cohort (demo, KiTS or sheet), and, for a sheet, surveys every patient with cheap header
reads (``survey``: the phases each patient's series give, image and mask geometry, RTSTRUCT, labelme and
polygon files; cached). From these facts it derives the concrete config (``studyconfig.derive_config``) and
checks it, and plans the new patients ``predict`` grades and the external cohort. Every problem is reported in
one list (``problem_report``), each naming the key, patient, phase and file and saying what to do; errors stop
the run before any job, warnings and skipped parts are shown and the run goes on.

Also here, for the Snakefile: the checks of the invocation (``--resources gpu`` against
``training.gpu_slots``, the privacy key, the front-half targets that need less of the plan) and the failed
jobs' messages (``job_errors``).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ccgrade import paths
from ccgrade.errors import CcgradeError, CohortError, ConfigError, Problem, problem
from ccgrade.plan import problem_report, survey


@dataclass
class Plan:
    """What the Snakefile builds its DAG from."""

    config: dict
    cohort: pd.DataFrame
    sheet: str
    problems: list[Problem] = field(default_factory=list)
    survey: dict[str, dict] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    #: the new patients ``predict`` grades (none unless predict.sheet is set or the cohort is the demo's) and
    #: the cells whose bundles grade them
    predict: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient_id", "grade", "grade_group"]))
    predict_cells: list[dict] = field(default_factory=list)
    #: the external cohort (``external``: another centre's sheet, or the demo's shifted centre) on which every
    #: trained cell is evaluated unchanged, and those cells
    external: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient_id", "grade", "grade_group"]))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]


# ------------------------------------------------------------------------------------------ the plan

def user_configs(paths: list) -> list[dict]:
    from ccgrade.config.studyconfig import load_yaml

    out = []
    for p in paths or []:
        try:
            out.append(load_yaml(p) or {})
        except (OSError, ValueError):
            out.append({})
    return out


def cohort_facts(cohort: pd.DataFrame, surveys: dict[str, dict], cfg: dict, source: str) -> dict:
    """Counts the derived config is made from: patients with an image / a tumour outline per phase, patients
    per annotation format, the cohort's columns (with those the geometry stage adds)."""
    from ccgrade.config.cohort import GEOMETRY_TO_COHORT, patient_sources

    imaged = {p: 0 for p in survey.ALL_PHASES}
    outlined = {p: 0 for p in survey.ALL_PHASES}
    formats: dict[str, int] = {}
    any_images = False
    common: set[str] | None = None  # the phases every imaged patient has
    for rec in cohort.to_dict("records"):
        pid = rec["patient_id"]
        src = patient_sources(rec, survey.ALL_PHASES, assume_layout=source == "demo")
        if source == "demo":
            ok = set(survey.ALL_PHASES)
        elif pid in surveys:
            ok = {ph for ph, i in surveys[pid]["images"].items() if i["status"] == "ok"}
        else:  # KiTS: a volume file per phase, when the case folder has one
            ok = {ph for ph, s in src.items() if "image" in s}
        any_images |= bool(ok)
        if ok:
            common = set(ok) if common is None else common & ok
        seen = set()
        for ph in survey.ALL_PHASES:
            imaged[ph] += ph in ok
            fm = set(src.get(ph, {})) - {"image"}
            outlined[ph] += bool(fm & {"mask", "rtstruct", "polygons"})
            seen |= fm
        for f in seen:
            formats[f] = formats.get(f, 0) + 1
    cols = set(cohort.columns)
    if cfg.get("geometry", {}).get("enabled"):
        cols |= set(GEOMETRY_TO_COHORT.values()) | {"side"}
    return {"imaged": imaged, "outlined": outlined, "formats": formats, "columns": sorted(cols),
            "any_images": any_images, "common": sorted(common or [])}


def _design_problems(cfg: dict, eligible: pd.DataFrame) -> list[Problem]:
    """``design.design_problems`` for the eligible patients (graded ones: their grade groups and centres)."""
    from ccgrade.plan import design

    if "grade_group" not in eligible:
        return []
    graded = eligible[eligible["grade_group"].isin(["low", "high"])]
    high = graded["grade_group"] == "high"
    centre = graded["centre"].astype(str) if "centre" in graded else pd.Series("1", index=graded.index)
    centres = {c: (int((centre == c).sum()), int((high & (centre == c)).sum())) for c in sorted(set(centre))}
    return design.design_problems(cfg, len(graded), int(high.sum()), centres)


def resolve_source(cfg: dict) -> str:
    c = cfg["cohort"]
    if c.get("source", "auto") != "auto":
        return c["source"]
    return "sheet" if c.get("sheet") else "kits" if c.get("kits") else "demo"


def plan(config: dict, *, configfiles: list | None = None, workers: int = 1,
         cache: Path | None = survey.CACHE, write_cache: bool = True, demo_root: str = "resources/demo_cohort") -> Plan:
    """The study's plan: config problems, the cohort and its survey, the derived config, and every problem."""
    from ccgrade.config.cohort import cohort_problems
    from ccgrade.config.studyconfig import apply_replace, config_problems, derive_config, schema_problems, split_size_problems
    from ccgrade.ingest import demo as ccdemo, kits as cckits
    from ccgrade.learn.weights import missing_weights
    from ccgrade.privacy.pseudonyms import settings as privacy_settings

    cfg = json.loads(json.dumps(config))  # a plain copy
    probs = apply_replace(cfg, user_configs(configfiles or []))
    cfg["privacy"] = privacy_settings(cfg.get("privacy"))
    probs += schema_problems(cfg)
    if [p for p in probs if p.level == "error"]:
        return Plan(cfg, pd.DataFrame(columns=["patient_id"]), "", probs)
    source = resolve_source(cfg)
    cfg["cohort"]["source"] = source
    surveys: dict[str, dict] = {}
    if source == "demo":
        cohort = ccdemo.draw_cohort(cfg["demo"], cfg["cohort"]["high_grade_from"], demo_root)
        cohort, p = cohort_problems(cohort, cfg, file="demo cohort", check_paths=False)
        sheet = f"{demo_root}/cohort.tsv"
    elif source == "kits":
        kits = cfg["cohort"].get("kits") or {}
        try:
            kjson = str(cckits.find_json(kits["root"]))
            table, _ = cckits.load_kits(kits["root"], kits.get("histology", "clear_cell_rcc"))
            cohort, p = cohort_problems(cckits.kits_sources(table, kits.get("phase", "cmp")), cfg, file=kjson)
        except (CcgradeError, KeyError) as e:
            return Plan(cfg, pd.DataFrame(columns=["patient_id"]), "", probs + [
                Problem("error", str(e), "check config key cohort.kits.root")])
        sheet = "results/cohort/kits_sheet.tsv"
    else:
        sheet = cfg["cohort"].get("sheet") or ""
        cohort, surveys, p = sheet_cohort(sheet, cfg, "cohort.sheet", cache=cache, workers=workers,
                                          write_cache=write_cache)
        if cohort is None:
            return Plan(cfg, pd.DataFrame(columns=["patient_id"]), sheet, probs + p)
    probs += p
    facts = cohort_facts(cohort, surveys, cfg, source) if "patient_id" in cohort else {}
    if [x for x in probs if x.level == "error"]:
        return Plan(cfg, cohort, sheet, probs, surveys, facts)
    links: dict[str, int] = {}
    for sv in surveys.values():
        for how in (sv.get("links") or {}).values():
            if how:
                links[how] = links.get(how, 0) + 1
    facts["links"] = links
    derived, notes = derive_config(cfg, facts)
    probs += notes
    if not [x for x in notes if x.level == "error"]:
        probs += config_problems(derived)
        probs += missing_weights(derived)
        need = set(derived["splits"]["require_phases"])
        ok = cohort["patient_id"].map(lambda pid: source != "sheet" or need <= {
            ph for ph, i in surveys.get(pid, {}).get("images", {}).items() if i["status"] == "ok"})
        eligible = int(ok.sum())
        facts["eligible"] = eligible
        probs += split_size_problems(derived, eligible)
        probs += _design_problems(derived, cohort[ok.astype(bool)])
        pred, members, pp = predict_cohort(derived, cache=cache, workers=workers, write_cache=write_cache,
                                           demo_root=demo_root)
        probs += pp
        ext, _cells, pe = external_cohort(derived, cache=cache, workers=workers, write_cache=write_cache)
        probs += pe
        return Plan(derived, cohort, sheet, probs, surveys, facts, pred, members, ext)
    return Plan(derived, cohort, sheet, probs, surveys, facts)


def predict_cohort(cfg: dict, *, cache: Path | None = survey.CACHE, workers: int = 1, write_cache: bool = True,
                   demo_root: str = "resources/demo_cohort") -> tuple[pd.DataFrame, list[dict], list[Problem]]:
    """The new patients of ``predict`` (predict.sheet, surveyed like the cohort and checked against what the
    model reads; with the demo and no sheet, ``predict.demo_patients`` synthetic patients drawn after the
    cohort's), the ensemble's cells, and every problem."""
    from ccgrade.deploy.predict import model_cells, sheet_problems
    from ccgrade.ingest import demo as ccdemo

    pc = cfg["predict"]
    empty = pd.DataFrame(columns=["patient_id", "grade", "grade_group"])
    source = cfg["cohort"]["source"]
    if not pc["sheet"] and source != "demo":
        return empty, [], []
    members, probs = model_cells(cfg)
    if not pc["sheet"] and probs:  # the demo's new patients are an extra, not asked for: said, not an error
        return empty, [], [Problem("skipped", f"predict: the demo's new patients are not drawn, as {x.message}",
                                   x.fix + " to grade them (snakemake predict)") for x in probs]
    if not pc["sheet"]:
        n = cfg["demo"]["n_patients"]
        demo = {**cfg["demo"], "n_patients": n + pc["demo_patients"]}
        return ccdemo.draw_cohort(demo, cfg["cohort"]["high_grade_from"], demo_root, start=n), members, probs
    sheet = pc["sheet"]
    # said to be of the new patients (their IDs may be the cohort's too), with their own survey cache
    cohort, surveys, p = sheet_cohort(sheet, cfg, "predict.sheet", cache=cache.with_name("survey_predict.json")
                                      if cache else None, workers=workers, write_cache=write_cache,
                                      grade_optional=True, prefix="predict.sheet: ")
    probs += p
    if cohort is None or [x for x in p if x.level == "error"] or "patient_id" not in cohort:
        return empty if cohort is None else cohort, members, probs
    return cohort, members, probs + sheet_problems(cohort, surveys, cfg, members, sheet)


def external_cohort(cfg: dict, *, cache: Path | None = survey.CACHE, workers: int = 1, write_cache: bool = True,
                    ) -> tuple[pd.DataFrame, list[dict], list[Problem]]:
    """The external cohort (config ``external``): its sheet, surveyed like the cohort's (grades required), or
    with the demo and no sheet the demo's shifted centre; every trained cell (each is evaluated on it
    unchanged) and every problem. A patient lacking what a model reads is a warning: that model is evaluated
    without the patient, and the table says how many it had."""
    from ccgrade.config.matrix import cells
    from ccgrade.deploy.predict import sheet_problems
    from ccgrade.ingest import demo as ccdemo

    ec = cfg["external"]
    empty = pd.DataFrame(columns=["patient_id", "grade", "grade_group"])
    members = cells(cfg)
    demo = not ec["sheet"] and cfg["cohort"]["source"] == "demo" and ec["demo"]["n_patients"] > 0
    if not (ec["sheet"] or demo) or not members:
        return empty, [], []
    if demo:
        settings = ccdemo.external_settings(cfg["demo"], ec["demo"], ec["name"])
        return ccdemo.draw_cohort(settings, cfg["cohort"]["high_grade_from"], external_demo_root(ec["name"])), \
            members, []
    sheet = ec["sheet"]
    cohort, surveys, probs = sheet_cohort(sheet, cfg, "external.sheet", cache=cache.with_name("survey_external.json")
                                          if cache else None, workers=workers, write_cache=write_cache,
                                          prefix="external.sheet: ")
    if cohort is None or [x for x in probs if x.level == "error"] or "patient_id" not in cohort:
        return empty if cohort is None else cohort, members, probs
    return cohort, members, probs + external_problems(cohort, surveys, cfg, members, sheet)


def external_problems(cohort: pd.DataFrame, surveys: dict[str, dict], cfg: dict, members: list[dict], sheet: str
                      ) -> list[Problem]:
    """One warning per external patient that some models cannot grade (a phase they read not among its
    images, no annotation their ROI setting reads where they place the crop): how many models, which, and
    what is missing. Those models are evaluated without the patient; the others grade it."""
    from ccgrade.config.cohort import patient_sources, pick_source
    from ccgrade.deploy.predict import needs

    models = {(c["study"], c["roi"], c["arch"], c["phases"], c["variant"]): c for c in members}
    out = []
    for rec in cohort.to_dict("records"):
        pid = rec["patient_id"]
        images = (surveys.get(pid) or {}).get("images", {})
        usable = sorted(p for p, i in images.items() if i.get("status") == "ok")
        src = patient_sources(rec, list(cfg["phases"]))
        lost, no_image, no_outline = [], set(), set()
        for cell in models.values():
            need = needs(cfg, cell)
            roi = cfg["rois"][need["roi"]]
            mi = {ph for ph in need["images"] if images.get(ph, {}).get("status") != "ok"}
            ma = {(need["roi"], ph) for ph in need["outlines"] if pick_source(roi, src.get(ph, {}))[1] is None}
            if mi or ma:
                lost.append(f"{cell['study']} {cell['arch']} on {cell['phases']} ({cell['roi']}"
                            + (f", {cell['variant']})" if cell["variant"] != "base" else ")"))
                no_image |= mi
                no_outline |= ma
        if not lost:
            continue
        what = []
        if no_image:
            what.append(f"phase(s) {', '.join(p for p in cfg['phases'] if p in no_image)} not among its images "
                        f"(usable: {', '.join(usable) or 'none'})")
        if no_outline:
            rois = sorted({r for r, _ in no_outline})
            what.append("no annotation " + "; ".join(
                f"{r} reads on {', '.join(p for p in cfg['phases'] if (r, p) in no_outline)}" for r in rois))
        shown = ", ".join(dict.fromkeys(lost))
        x = problem("warning", f"{len(lost)} of {len(models)} models cannot grade this patient "
                                      f"and are evaluated without it ({shown}): {'; '.join(what)}",
                           "add the series (or map it with ingest.phase_map) and the annotations (sheet columns or "
                           "annotation_dir) if the centre has them; otherwise the tables count the patient as not "
                           "graded by those models", patient=pid, file=sheet)
        out.append(Problem(x.level, f"external.sheet: {x.message}", x.fix))
    return out


def external_demo_root(name: str) -> str:
    """Where the demo's external centre is written (apart from the cohort's patients)."""
    return f"resources/demo_external/{name}"


def sheet_cohort(sheet: str, cfg: dict, key: str, *, cache: Path | None, workers: int = 1, write_cache: bool = True,
                 grade_optional: bool = False, prefix: str = "") -> tuple[pd.DataFrame | None, dict, list[Problem]]:
    """A cohort sheet read and checked, and every patient's headers surveyed whatever else is wrong (all
    problems in one run): (cohort, surveys, problems), the cohort None when the sheet cannot be read (config
    key ``key`` names it). ``prefix`` starts the survey's messages (another sheet than the cohort's)."""
    from ccgrade.config.cohort import cohort_problems, read_sheet

    try:
        raw = read_sheet(sheet)
    except CohortError as e:
        return None, {}, [Problem("error", f"{prefix}{e}", f"check config key {key}")]
    cohort, probs = cohort_problems(raw, cfg, file=sheet, base=Path(sheet).parent, grade_optional=grade_optional)
    surveys: dict[str, dict] = {}
    if "patient_id" in cohort:
        recs = list({r["patient_id"]: r for r in cohort.to_dict("records")}.values())
        surveys = survey.survey_cohort(recs, cfg, cache, workers, write_cache)
        for pid in surveys:
            probs += [Problem(x["level"], prefix + x["message"], x["fix"]) for x in surveys[pid]["problems"]]
        probs += [Problem(x.level, prefix + x.message, x.fix) for x in survey.cross_patient_problems(surveys)]
    return cohort, surveys, probs


# ------------------------------------------------------------------------------------------ the invocation

def resource_value(r) -> int | None:
    """A global resource as Snakemake holds it (a number, or an object with ``.value``), as an int."""
    try:
        return None if r is None else int(getattr(r, "value", r))
    except (TypeError, ValueError):
        return None


def key_problems(privacy: dict) -> list[Problem]:
    """The study's privacy key, when it exists and is too weak to keep pseudonyms secret (``privacy.key_problem``)."""
    from ccgrade.privacy.pseudonyms import key_fix, key_problem, SECRET_NAME

    path = Path(privacy["dir"]) / SECRET_NAME
    if privacy["mode"] != "pseudonymise" or not path.is_file():
        return []
    weak = key_problem(path.read_text())
    return [problem("error", f"the privacy key {weak}", key_fix(path), file=str(path))] if weak else []


def gpu_slot_problems(gpu: int | None, slots: int, executor: str = "local") -> list[Problem]:
    """``--resources gpu=N`` against ``training.gpu_slots`` on one machine: N cells train at once on the
    one GPU (Snakemake hands out no device numbers), each planning for 1/gpu_slots of its memory. A
    cluster executor gives each cell a GPU of its own (SLURM: --gpus=1), so there the two are unrelated."""
    if gpu is None or executor not in ("local", "dryrun", "touch", ""):
        return []
    if gpu > slots:
        return [Problem("warning", f"--resources gpu={gpu} runs {gpu} training cells at once on this machine's "
                        f"GPU, but training.gpu_slots is {slots}: each plans for 1/{slots} of its memory, so "
                        "together they can run out of it",
                        f"set training.gpu_slots: {gpu} (cells sharing one GPU), or run with --resources gpu={slots}")]
    if slots > gpu:
        return [Problem("warning", f"training.gpu_slots is {slots} but --resources gpu={gpu}: at most {gpu} cell(s) "
                        f"train at once, each within 1/{slots} of the GPU's memory",
                        f"run with --resources gpu={slots}")]
    return []


#: the front half's target rules and the files below them: what each needs of the plan (``Problem.scope``)
FRONT_TARGETS = {"ingest": (paths.SERIES_TABLE.rsplit("/", 1)[0] + "/", paths.VOLUMES.split("{")[0], "resources/"),
                 "crops": (paths.CROP_MANIFEST.rsplit("/", 1)[0] + "/", "results/geometry/")}


def front_scopes(targets: set[str] | frozenset[str]) -> set[str]:
    """The problem scopes the asked-for targets do not need: none for the default target (or anything past
    the front half); "crops" and "study" when only ingest is asked for; "study" when only crops."""
    def part(t: str) -> str | None:
        return next((name for name, heads in FRONT_TARGETS.items() if t == name or t.startswith(heads)), None)

    parts = [part(str(t)) for t in targets]
    if not parts or None in parts:
        return set()
    return {"crops", "study"} if set(parts) == {"ingest"} else {"study"}


def for_targets(p: Plan, targets: set[str] | frozenset[str]) -> Plan:
    """``p`` with the errors the asked-for targets do not need (``front_scopes``) as warnings that say so:
    one patient, or a cohort without annotations, can still be ingested (and with annotations, cropped)."""
    scopes = front_scopes(targets)
    if scopes:
        p.problems = [Problem("warning", f"{x.message} (not needed for {', '.join(sorted(targets))})", x.fix, x.scope)
                      if x.level == "error" and x.scope in scopes else x for x in p.problems]
    return p


def check(p: Plan, out=sys.stderr, full_report: Path | None = problem_report.FULL_REPORT) -> None:
    """Print the report; raise ConfigError (listing the errors) when there are any."""
    print(problem_report.report(p), file=out)
    if full_report is not None:
        problem_report.write_full(p, full_report)
    if p.errors:
        raise ConfigError(f"the pre-flight check found {len(p.errors)} error(s), listed above; no job was run")


# ------------------------------------------------------------------------------------------ failed jobs

def job_errors(snakemake_log: str | Path | list, limit: int = 20) -> list[str]:
    """For a Snakemake run's log (a path, or the list Snakemake's ``onerror`` passes): each failed job's rule
    and the ccgrade error message in its own log (or the last line of a traceback), so that the console shows
    why, not only where the log is."""
    paths = [snakemake_log] if isinstance(snakemake_log, (str, Path)) else list(snakemake_log or [])
    text = "\n\n".join(Path(p).read_text(errors="replace") for p in paths if p and Path(p).exists())
    out = []
    for m in re.finditer(r"Error in rule (\w+):(.*?)(?=\n\n|\Z)", text, re.S):
        rule, block = m.group(1), m.group(2)
        log = re.search(r"log: (\S+)", block)
        msg = ""
        if log:
            path = Path(log.group(1).rstrip(","))
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()
                hits = [ln for ln in lines if re.match(r"^ccgrade\.errors\.\w+: ", ln)]
                msg = hits[-1].split(": ", 1)[1] if hits else next(
                    (ln for ln in reversed(lines) if re.match(r"^\w+(\.\w+)*(Error|Exception)\b", ln)), "")
        out.append(f"rule {rule}: {msg or 'see ' + (log.group(1) if log else 'the log')}")
        if len(out) >= limit:
            break
    return out
