# Shared set-up: the pre-flight check before any job runs (config, cohort sheet and a cached survey of the
# patients' headers; every problem listed at once) and the config derived from the cohort, wildcard
# constraints, named input/param functions and the final target list. No pixel data is read at parse time.

import functools
import json
import os
import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.settings.types import DeploymentMethod

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO / "workflow" / "src"))
# Every job's shell: jobs import this checkout's package (not whichever copy an environment was installed
# from) and, unless --sdm conda gives them the conda env's, call `python` as the interpreter running
# Snakemake (e.g. .venv/bin/python). Set per job, not in Snakemake's own environment.
# SimpleITK (ITK) threads follow the job's threads too: Snakemake sets OMP_NUM_THREADS and the BLAS variables, but
# ITK starts one thread per core unless told (a one-thread crop job resampled on every core).
_SHELL = [
    "set -euo pipefail;",
    f"export PYTHONPATH={shlex.quote(str(REPO / 'workflow' / 'src'))}${{{{PYTHONPATH:+:$PYTHONPATH}}}};",
    'export ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="${{OMP_NUM_THREADS:-1}}";',
]
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    _SHELL.append(f'export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH";')
shell.prefix(" ".join(_SHELL) + " ")

from ccgrade import deps as ccdeps, paths as ccpaths  # noqa: E402
from ccgrade.config import architectures as ccarch, matrix as ccmatrix  # noqa: E402
from ccgrade.config.cohort import has_images, patient_sources, pick_source  # noqa: E402
from ccgrade.config.studyconfig import used_columns  # noqa: E402
from ccgrade.errors import ConfigError  # noqa: E402
from ccgrade.evaluate import failures as ccfailures, studies as ccstudies  # noqa: E402
from ccgrade.ingest import demo as ccdemo, kits as cckits  # noqa: E402
from ccgrade.learn import machine as ccmachine  # noqa: E402
from ccgrade.plan import invocation as ccinvocation, preflight as ccpre  # noqa: E402
from ccgrade.privacy import pseudonyms as ccprivacy  # noqa: E402
from ccgrade.report import provenance as ccprov  # noqa: E402

EXECUTOR = getattr(workflow.executor_plugin, "name", "local")
LOCAL = EXECUTOR in ("local", "dryrun", "touch", "")
try:
    _CORES = int(workflow.cores)
except Exception:  # noqa: BLE001 - a dry run without --cores
    _CORES = 1
# never oversubscribe: locally, --cores above the CPUs this process may use is lowered to them, so that
# `--cores 8` on a 2-core machine keeps two compute threads busy, not eight (each job's torch/BLAS threads
# are the threads Snakemake gives it: OMP_NUM_THREADS and the like)
_USABLE = ccmachine.usable_cpus()
if LOCAL and workflow.is_main_process and _CORES > _USABLE:
    print(
        f"ccgrade: --cores {_CORES} on a machine with {_USABLE} usable CPUs: at most {_USABLE} threads run at once",
        file=sys.stderr,
    )
    _CORES = _USABLE
    workflow.resource_settings.cores = _CORES
    workflow.global_resources["_cores"] = _CORES


def unthrottle_local_scheduler():
    """Locally, no job-submission rate limit (called on start, once Snakemake's scheduler exists): its default
    (100 jobs per second, --max-jobs-per-timespan) re-evaluates the ready jobs every second while they wait for
    cores, each time stat-ing every input of every ready job (the 25 training cells' 4,000 crop files: half a
    core all through training); without it, jobs are re-evaluated as others end. A rate the user set is kept."""
    rate = getattr(workflow.scheduling_settings, "max_jobs_per_timespan", None)
    scheduler = getattr(workflow, "scheduler", None)
    if LOCAL and rate is not None and (rate.max_jobs, rate.timespan) == (100, 1) and scheduler is not None:
        scheduler.job_rate_limiter = None


# what the command line asks for: its targets, and whether jobs run (-n, --lint, --list, --report write nothing)
INVOCATION = ccinvocation.read()
# the pre-flight check: config, cohort and a cached header survey; the config derived from the cohort
PLAN = ccpre.plan(
    config, configfiles=workflow.overwrite_configfiles, workers=_CORES, write_cache=workflow.is_main_process
)
if workflow.is_main_process:
    if not PLAN.errors:  # the config is validated (and its defaults filled): compare its GPU slots
        PLAN.problems += ccpre.gpu_slot_problems(
            ccpre.resource_value(workflow.global_resources.get("gpu")),
            PLAN.config["training"]["gpu_slots"],
            EXECUTOR if ccmachine.local_gpu(PLAN.config["training"]["device"]) else "no-gpu",
        )
        PLAN.problems += ccpre.key_problems(PLAN.config["privacy"])
    if any(p.level == "error" and p.scope for p in PLAN.problems):  # (only then: the parser costs ~0.3 s)
        PLAN = ccpre.for_targets(PLAN, INVOCATION.targets)  # front-half targets: what only the study needs is a warning
    ccpre.check(PLAN)  # prints every problem at once; raises on errors before any job
else:  # a job's own process (SLURM): the main one judged the errors that depend on the targets (scoped ones)
    _UNSCOPED = next((e for e in PLAN.errors if not e.scope), None)
    if _UNSCOPED is not None:
        raise ConfigError(_UNSCOPED.message)
INPUT_CONFIG = json.loads(json.dumps(config))  # as the config files give it (provenance records both)
config.clear()
config.update(PLAN.config)

SRC = REPO / "workflow" / "src" / "ccgrade"
REPORT_DIR = REPO / "workflow" / "report"  # captions by absolute path: report() outside a rule is not relative to it
# privacy (docs/privacy.md): pseudonymise UIDs and file names in results/ under a study key kept outside it
PSEUDONYMISE = config["privacy"]["mode"] == "pseudonymise"
PRIVATE = config["privacy"]["dir"]
SECRET = f"{PRIVATE}/{ccprivacy.SECRET_NAME}" if PSEUDONYMISE else ""
if PSEUDONYMISE and workflow.is_main_process and INVOCATION.runs_jobs:
    ccprivacy.ensure_secret(SECRET)  # made by the first real run: a dry run or --lint writes nothing
# the key as every pseudonymising job's input, so that a new key remakes what the old made (a dry run before
# the first real run has none yet)
SECRET_INPUT = [SECRET] if SECRET and Path(SECRET).is_file() else []
SECRET_ARG = f"--secret {shlex.quote(SECRET)}" if SECRET else ""
# what jobs are told of the config when their parameters may reach the report: no user path
PUBLIC = ccprivacy.public_config(config) if PSEUDONYMISE else config
DEMO_ROOT = "resources/demo_cohort"
SOURCE = config["cohort"]["source"]
IS_DEMO = SOURCE == "demo"
PHASES = list(config["phases"])
COHORT = PLAN.cohort
SHEET = PLAN.sheet
KITS = config["cohort"]["kits"] if SOURCE == "kits" else None  # the KiTS adapter's settings
KITS_LEFT_OUT = ["results/cohort/kits_left_out.tsv"] if SOURCE == "kits" else []
KITS_JSON = str(cckits.find_json(config["cohort"]["kits"]["root"])) if SOURCE == "kits" else ""
PATIENTS = sorted(COHORT["patient_id"])
RECORDS = {r["patient_id"]: r for r in COHORT.to_dict("records")}
# per patient and phase: the image and annotation files (explicit sheet columns, else annotation_dir layout)
SOURCES = {p: patient_sources(RECORDS[p], PHASES, assume_layout=IS_DEMO) for p in PATIENTS}
# patients with images run ingest and crops; mask-only patients (e.g. KiTS without imaging) do not
IMAGED = [p for p in PATIENTS if IS_DEMO or has_images(RECORDS[p])]
GEOMETRY_PHASE = config["geometry"]["phase"]
OUTLINES = ("mask", "rtstruct", "polygons")  # tumour outlines geometry reads (a mask alone, or others on the CT)


def geometry_phase(pid):
    """The phase a patient's tumour is measured on: geometry.phase, or (geometry.fallback) the first phase in
    PHASES on which the patient has a usable outline when it has none there (shape does not depend on phase)."""
    order = [GEOMETRY_PHASE] + ([p for p in PHASES if p != GEOMETRY_PHASE] if config["geometry"]["fallback"] else [])
    for ph in order:
        src = SOURCES[pid].get(ph, {})
        if any(k in src and (k == "mask" or pid in IMAGED) for k in OUTLINES):
            return ph
    return GEOMETRY_PHASE


def geometry_sources(pid):
    """The tumour outline files of a patient's geometry phase (a mask works alone; RTSTRUCT/polygons need the CT)."""
    src = SOURCES[pid].get(geometry_phase(pid), {})
    return {k: src[k] for k in OUTLINES if k in src and (k == "mask" or pid in IMAGED)}


MEASURED = [p for p in PATIENTS if config["geometry"]["enabled"] and geometry_sources(p)]
# the new patients `predict` grades (docs/deploy.md): a cohort of their own, ingested and cropped
# with the bundles' recorded preprocessing under results/predict/<name>/
PREDICT = config["predict"]
PRED_DIR = f"results/predict/{PREDICT['name']}"
PRED_RECORDS = {r["patient_id"]: r for r in PLAN.predict.to_dict("records")}
PRED_PATIENTS = sorted(PRED_RECORDS)
PRED_SOURCES = {p: patient_sources(PRED_RECORDS[p], PHASES, assume_layout=IS_DEMO) for p in PRED_PATIENTS}
PRED_CELLS = PLAN.predict_cells
# the external centre (docs/deploy.md): every trained cell, unchanged, on another centre's cohort
# (external.sheet, or the demo's shifted centre), ingested as predict's new patients are, under results/external/<name>/
EXTERNAL = config["external"]
EXT_NAME = EXTERNAL["name"]
EXT_DIR = f"results/external/{EXT_NAME}"
EXT_RECORDS = {r["patient_id"]: r for r in PLAN.external.to_dict("records")}
EXT_PATIENTS = sorted(EXT_RECORDS)
EXT_SOURCES = {p: patient_sources(EXT_RECORDS[p], PHASES, assume_layout=IS_DEMO) for p in EXT_PATIENTS}
EXT_DEMO_ROOT = ccpre.external_demo_root(EXT_NAME)
# the cohorts graded by frozen models, each ingested under results/<group>/: their records and sources
GRADED = {
    f"predict/{PREDICT['name']}": (PRED_RECORDS, PRED_SOURCES),
    f"external/{EXT_NAME}": (EXT_RECORDS, EXT_SOURCES),
}
CROP_TARGETS = PHASES + ["stack"]
INGEST_TABLES = list(ccpaths.INGEST_TABLES)  # what an ingest job writes per patient
ROIS = list(config["rois"])
SCHEMES = list(config["splits"]["schemes"])
TT_SPLIT = config["baseline"]["train_test_split"]
MONTAGE_PATIENTS = IMAGED[: config["figures"]["montage_patients"]]
COHORT_COLUMNS = used_columns(config)  # the sheet columns that reach results/cohort/ (besides ID, grade, centre)
COHORT_SHEET = ccpaths.COHORT_SHEET
COHORT_TABLE = ccpaths.COHORT_TABLE


wildcard_constraints:
    pid=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    group="|".join(re.escape(g) for g in GRADED),
    demo="|".join(re.escape(r.removeprefix("resources/")) for r in (DEMO_ROOT, EXT_DEMO_ROOT)),
    roi="|".join(ROIS),
    scheme="|".join(SCHEMES),


def code(*modules):
    """A digest of the stage's modules and every ccgrade module they import (ccgrade.deps): a param, so that a
    change of the logic a stage runs, wherever it lives in the package, reruns that stage (Snakemake's params
    trigger), without a dozen module files per job for the scheduler to stat at every step."""
    return ccdeps.code_digest(SRC, *modules)


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def dicom_dir(wildcards, records=None):
    d = (RECORDS if records is None else records)[wildcards.pid].get("dicom_dir")
    return [d] if isinstance(d, str) else []


def phase_images(wildcards, sources=None):
    """Per-phase image volumes (NIfTI/NRRD) named in the sheet for this patient."""
    return {
        ph: s["image"] for ph, s in (SOURCES if sources is None else sources)[wildcards.pid].items() if "image" in s
    }


def ingest_args(wildcards, records=None, sources=None):
    """Command-line arguments naming the patient's DICOM folder and per-phase volumes (of the cohort, or of
    the cohort ``records``/``sources`` given: predict's new patients)."""
    d, imgs = dicom_dir(wildcards, records), phase_images(wildcards, sources)
    out = [f"--dicom-dir {shlex.quote(d[0])}"] if d else []
    if imgs:
        out.append("--images " + " ".join(shlex.quote(f"{ph}={p}") for ph, p in imgs.items()))
    return " ".join(out)


def crop_sources(wildcards, sources=None):
    """The annotation files (by format) of the phases an ROI setting reads for one patient."""
    roi = config["rois"][wildcards.roi]
    out = {}
    for ph, s in (SOURCES if sources is None else sources)[wildcards.pid].items():
        fmt, path = pick_source(roi, s)
        if path:
            out[ph] = {fmt: path}
    return out


def crop_annotations(wildcards, sources=None):
    """The annotation files an ROI setting reads for one patient: inputs, so that editing one reruns its crops."""
    out, sources = [], crop_sources(wildcards, sources)
    for ph in dict.fromkeys(PHASES + config["stack"]["phases"][:1]):
        for path in sources.get(ph, {}).values():
            if IS_DEMO:
                out.append(path)
            elif Path(path).is_dir():  # user labelme folders: every JSON is an input
                out += sorted(str(f) for f in Path(path).glob("*.json"))
            elif Path(path).exists():  # a missing annotation becomes an exclusion row, not a missing-input error
                out.append(path)
    return out


def geometry_inputs(wildcards):
    """The outline files and, for imaged patients, the ingested volumes (RTSTRUCT/polygons, side from the CT)."""
    out = {"outlines": list(geometry_sources(wildcards.pid).values())}
    if wildcards.pid in IMAGED:
        out["volumes"] = ccpaths.VOLUMES.format(pid=wildcards.pid)
    return out


def geometry_args(wildcards):
    src = geometry_sources(wildcards.pid)
    out = f"--sources {shlex.quote(as_json(src))}"
    return out + (f" --volumes {ccpaths.VOLUMES.format(pid=wildcards.pid)}" if wildcards.pid in IMAGED else "")


def roi_params(wildcards):
    return as_json(config["rois"][wildcards.roi])


def roi_window(wildcards):
    return as_json(config["windows"][config["rois"][wildcards.roi]["window"]])


def split_params(wildcards):
    return as_json(
        {
            "seed": config["seed"],
            "cohort": PUBLIC["cohort"],
            "splits": {
                "require_phases": config["splits"]["require_phases"],
                "schemes": {wildcards.scheme: config["splits"]["schemes"][wildcards.scheme]},
            },
        }
    )


def baseline_params(wildcards):
    return as_json(
        {
            "seed": config["seed"],
            "cohort": PUBLIC["cohort"],
            "baseline": {**config["baseline"], "adjust": config["statistics"]["adjust"]},
        }
    )


def secret_input(wildcards):
    """The privacy key: an input of every job that pseudonymises, so that a new key remakes what the old made."""
    return SECRET_INPUT


def privacy_sources():
    """The user's input paths per patient (what the privacy scan searches results/ for), kept outside
    results/ in the private folder and rewritten only when they change."""
    root = DEMO_ROOT if IS_DEMO else config["cohort"]["kits"]["root"] if SOURCE == "kits" else str(Path(SHEET).parent)
    pats = {}
    # the cohort's patients, then those frozen models grade, predict's and the external centre's (their values
    # are searched for too; an ID the cohort has is keyed apart), each below its own cohort's root: the folders
    # above it are the study's, not the patient's
    ext_root = EXT_DEMO_ROOT if IS_DEMO and not EXTERNAL["sheet"] else str(Path(EXTERNAL["sheet"] or ".").parent)
    roots = {f"external/{EXT_NAME}": ext_root}
    for group, (records, sources) in {"cohort": (RECORDS, SOURCES), **GRADED}.items():
        for p in sorted(records):
            d = records[p].get("dicom_dir")
            files = sorted({path for s in sources[p].values() for path in s.values() if isinstance(path, str)})
            pats[p if p not in pats else f"{p}.{group.split('/')[0]}"] = {
                "dicom_dir": d if isinstance(d, str) else "",
                "files": files,
                "root": roots.get(group, root),
            }
    paths = [SHEET if SOURCE == "sheet" else "", config["ingest"]["phase_map"], PREDICT["sheet"], EXTERNAL["sheet"]]
    paths = [x for x in paths if x]
    return {"patients": pats, "root": root, "paths": paths, "own": [str(Path.cwd().resolve()), str(REPO.resolve())]}


PRIVACY_SOURCES = f"{PRIVATE}/sources.json"
if workflow.is_main_process and INVOCATION.runs_jobs:
    ccprivacy.write_sources(PRIVACY_SOURCES, privacy_sources())
# the scans' input (absent only in a dry run before the first real run)
PRIVACY_SOURCES_INPUT = [PRIVACY_SOURCES] if Path(PRIVACY_SOURCES).is_file() else []
# the cohort job reads the user's sheet through a private copy (the report lists each job's input paths, and
# the sheet's own path, its folders, may identify); same bytes and time, so nothing reruns for it
SHEET_INPUT = SHEET
if PSEUDONYMISE and SOURCE == "sheet" and SHEET:
    _MIRROR = f"{PRIVATE}/cohort_sheet{Path(SHEET).suffix.lower() or '.tsv'}"
    if workflow.is_main_process and INVOCATION.runs_jobs:
        ccprivacy.mirror(SHEET, _MIRROR)
    # a dry run reads the sheet itself until a real run made (or refreshed) the copy: its plan is the real one's
    SHEET_INPUT = _MIRROR if ccprivacy.mirrors(SHEET, _MIRROR) else SHEET


# ---------------------------------------------------------------- demo, ingest, privacy scan, provenance

DEMO_IMAGE_KEYS = [k for k in config["demo"] if k != "n_patients"]


def demo_root_of(path):
    """The demo cohort's folder, from one of the files a demo job writes in it (its dicom/, annotations/ or sheet)."""
    parts = Path(path).parts
    return str(Path(*parts[: min(i for i, x in enumerate(parts) if x in ("dicom", "annotations", "cohort.tsv"))]))


def demo_image_params(wildcards):
    """The image settings of a demo patient's cohort: the training cohort's (and predict's new patients'), or
    the external centre's shifted ones."""
    if f"resources/{wildcards.demo}" == EXT_DEMO_ROOT:
        demo = ccdemo.external_settings(config["demo"], EXTERNAL["demo"], EXT_NAME)
        return as_json({k: v for k, v in demo.items() if k != "n_patients"})
    return as_json({k: config["demo"][k] for k in DEMO_IMAGE_KEYS})


def phase_map_input(wildcards):
    return [config["ingest"]["phase_map"]] if config["ingest"]["phase_map"] else []


GIT = ccprov.git_commit(REPO)


# ------------------------------------------------------------------------------------- the model matrix
# one cached job per (study, ROI setting, architecture, phase set, variant, fold, seed), then each study's tables

STUDIES = config["training"]["studies"] if IMAGED else {}
# a cell takes the `gpu` resource only where it trains on a GPU: on a machine without one, cells share the
# cores like any other job (a cluster profile gives each cell its GPU: set-resources train_model: gpu: 1)
TRAIN_GPU = int(ccmachine.local_gpu(config["training"]["device"]))
TRAIN_THREADS = ccmachine.train_threads(bool(TRAIN_GPU))
MODEL_DIR = ccmatrix.CELL_DIR
BUNDLE_DIR = ccmatrix.BUNDLE_DIR
# the studies that build tables, by kind (ccgrade.evaluate.studies: the registry of builders, files and captions)
STUDY_KINDS = ccstudies.study_kinds(STUDIES)
# the config the matrix is read from: the studies the cohort can feed
MATRIX_CONFIG = {**config, "training": {**config["training"], "studies": STUDIES}}


wildcard_constraints:
    study="|".join(STUDIES) or "none",
    arch=ccarch.wildcard(),
    phases="[a-z0-9_]+",
    variant="[a-z0-9_]+",
    fold=r"\d+",
    seed=r"\d+",


def study_cells(study):
    return ccmatrix.cells(MATRIX_CONFIG, study)


def cell_files(study, name):
    return [f"{MODEL_DIR}/{name}".format(**c) for c in study_cells(study)]


def cell_crops(roi, phases):
    return expand("results/crops/{roi}/{pid}/{t}.npz", roi=roi, pid=IMAGED, t=ccmatrix.crop_targets(phases, PHASES))


@functools.cache
def roi_targets(roi):
    """The crop files (phases, stack) of an ROI setting that some configured model or figure reads: the only
    ones its crop jobs make (a param: a model that reads another phase recrops)."""
    want = {
        t
        for s in STUDIES
        for c in study_cells(s)
        if c["roi"] == roi
        for t in ccmatrix.crop_targets(c["phases"], PHASES)
    }
    if roi == config["figures"]["montage_roi"] and MONTAGE_PATIENTS:
        want |= set(PHASES)
    return ",".join(t for t in CROP_TARGETS if t in want)


def train_crops(wildcards):
    return cell_crops(wildcards.roi, wildcards.phases)


def train_hp(wildcards):
    """The cell's hyperparameters: preset, its architecture's overrides, its variant's (only)."""
    return as_json(ccmatrix.hyper(config, wildcards.study, wildcards.arch, wildcards.variant))


def bundle_config(wildcards):
    """The config a cell's bundle records: its own ROI setting and window (so that editing another's
    re-exports only the bundles that use it), the phases, the stack, the annotation settings and the statistics
    mode (whose AUC interval its evaluation records)."""
    roi = config["rois"][wildcards.roi]
    keep = ("phases", "stack", "mask_label", "rtstruct_roi", "rtstruct_link")
    return as_json(
        {
            "rois": {wildcards.roi: roi},
            "windows": {roi["window"]: config["windows"][roi["window"]]},
            **{k: config[k] for k in keep},
            "statistics": {"mode": config["statistics"]["mode"]},
        }
    )


def study_models_json(study, cells=None):
    return as_json(
        [
            {**c, "dir": ccmatrix.cell_dir(c), "hp": ccmatrix.hyper(config, study, c["arch"], c["variant"])}
            for c in (study_cells(study) if cells is None else cells)
        ]
    )


def failure_cells(study):
    """The cells a study's failure analysis reads: its first model, every fold (ccgrade.evaluate.failures)."""
    return ccfailures.analysed_cells(study_cells(study))


def failure_outputs(study):
    return registry_outputs(study, ccstudies.failure_outputs(study))


def reported(path, caption, category, label, kind="table"):
    return report(path, caption=str(REPORT_DIR / caption), category=category, labels={kind: label})


# ------------------------------------------------------------------ what several rules share (one place each)
def ingest_outputs(folder, private, volumes):
    """A per-patient ingest job's outputs: the index tables under ``folder``, the private pseudonym part and the
    volumes (the cohort's job and the graded cohorts' write the same files in their own folders)."""
    tables = {t: f"{folder}/{t}.tsv" for t in INGEST_TABLES}
    return {**tables, "private": private if PSEUDONYMISE else [], "volumes": directory(volumes)}


def ingest_index_dir(wildcards, output):
    return os.path.dirname(output.slices)


def ingest_privacy(wildcards, output):
    return f"{SECRET_ARG} --private {output.private}" if PSEUDONYMISE else ""


#: the per-patient ingest job's parameters (besides its sources) and command
INGEST_PARAMS = dict(
    ingest=as_json(config["ingest"]),
    phases=",".join(PHASES),
    index_dir=ingest_index_dir,
    privacy=ingest_privacy,
    code=code("ingest.patient"),
)
INGEST_SHELL = (
    "python -m ccgrade.ingest patient --patient {wildcards.pid} {params.sources}"
    " --ingest {params.ingest:q} --phases {params.phases} --index-dir {params.index_dir}"
    " --volumes {output.volumes} {params.privacy} > {log} 2>&1"
)


def public_config_json(wildcards):
    return as_json(PUBLIC)


def phiscan_only(wildcards, input):
    """What a partial privacy scan searches: the rule's ``files``, ``ingest`` and ``report`` inputs (the report
    page, quarantined on a hit); nothing for the whole scan, whose inputs are the run's ``targets``."""
    names = [k for k in ("files", "ingest", "report") if k in input.keys()]
    if not names:
        return ""
    files = [f for k in names for f in ([input[k]] if isinstance(input[k], str) else input[k])]
    quarantine = f" --quarantine {shlex.quote(os.path.join(PRIVATE, 'quarantine'))}" if "report" in names else ""
    return "--only " + " ".join(shlex.quote(f) for f in files) + quarantine


#: a privacy scan's parameters (besides where it keeps the hits' values) and command
PHISCAN_PARAMS = dict(
    config=public_config_json, mode=config["privacy"]["mode"], only=phiscan_only, code=code("report.phiscan")
)
PHISCAN_SHELL = (
    "python -m ccgrade.report.phiscan --results results --sources {input.sources} --config {params.config:q}"
    " --mode {params.mode} --out {output.hits} --summary {output.summary} --private-out {params.private}"
    " {params.only} > {log} 2>&1"
)


def outputs_json(wildcards, output):
    """The job's declared files by role (its rule's output names): stages write exactly these (``--outputs``)."""
    return as_json(dict(output.items()))


def study_outputs(study):
    """A study's tables job's outputs, from the registry; the HTML report's items wrapped as such."""
    return registry_outputs(study, ccstudies.outputs(STUDY_KINDS[study], study))


def heatmap_outputs(study):
    """The Grad-CAM figure of a study whose kind has one (Li Figure 6), from the registry."""
    return registry_outputs(study, ccstudies.REGISTRY[STUDY_KINDS[study]].heatmaps.paths(study))


def registry_outputs(study, paths):
    """``paths`` (role -> file) with the report's items (ccgrade.evaluate.studies.report_items) wrapped for the report."""
    items = ccstudies.report_items(STUDY_KINDS[study], study)
    return {
        role: (
            reported(path, items[role]["caption"], items[role]["category"], *items[role]["label"])
            if role in items
            else path
        )
        for role, path in paths.items()
    }


def stats_json():
    """The statistics settings every paper table is built with (a param: changing them reruns the tables)."""
    return as_json(config["statistics"])


def pinned_json(study):
    """The phase sets a study's config fixes per architecture (Cui Table 4 says they were not selected)."""
    return as_json(
        {
            a: list(v) if isinstance(v, list) else [v.get("phases")] if isinstance(v, dict) else v
            for a, v in STUDIES[study]["models"].items()
        }
    )


def study_targets():
    return [f for s, k in STUDY_KINDS.items() for f in ccstudies.targets(k, s)]


# ----------------------------------------------------------------------- radiomics, deep block, fusion

RAD = config["radiomics"]
FUSION = config["fusion"]
RAD_PHASE = RAD["phase"]
# the pyradiomics settings: a path relative to the working directory, else to the repository (its default)
RAD_PARAMS = RAD["params"]
if not Path(RAD_PARAMS).is_absolute() and not Path(RAD_PARAMS).exists():
    RAD_PARAMS = str(REPO / RAD_PARAMS)
# patients with images: full features on the phase's volume; mask-only patients: shape features
RAD_PATIENTS = [p for p in PATIENTS if p in IMAGED or "mask" in SOURCES[p].get(RAD_PHASE, {})] if RAD["enabled"] else []
DEEP_CELL = ccmatrix.deep_cell(MATRIX_CONFIG)
# fusion.deep.oof_folds: the deep block stacked out of fold (ccgrade.fusion.oof), its k fold cells
DEEP_OOF = int(MATRIX_CONFIG["fusion"]["deep"].get("oof_folds", 0)) if DEEP_CELL else 0
DEEP_OOF_CELLS = [ccpaths.DEEP_OOF_DIR.format(**{**DEEP_CELL, "fold": f}) for f in range(DEEP_OOF)]


def rad_sources(wildcards):
    return crop_sources(SimpleNamespace(roi=RAD["roi"], pid=wildcards.pid)).get(RAD_PHASE, {})


def rad_inputs(wildcards):
    if wildcards.pid in IMAGED:
        return {
            "volumes": ccpaths.VOLUMES.format(pid=wildcards.pid),
            "annotations": list(rad_sources(wildcards).values()),
        }
    return {"mask": SOURCES[wildcards.pid][RAD_PHASE]["mask"]}


def rad_args(wildcards):
    if wildcards.pid in IMAGED:
        return (
            f"--volumes {ccpaths.VOLUMES.format(pid=wildcards.pid)} --roi {shlex.quote(as_json(config['rois'][RAD['roi']]))}"
            f" --sources {shlex.quote(as_json(rad_sources(wildcards)))}"
        )
    return f"--mask {shlex.quote(SOURCES[wildcards.pid][RAD_PHASE]['mask'])}"


#: a radiomics job's parameters (besides ``args``, what it reads: the cohort's or the external centre's patient)
#: and command, shared by the cohort's rule and the external centre's
RADIOMICS_PARAMS = dict(
    phase=RAD_PHASE,
    mask_label=config["mask_label"],
    rtstruct_roi=config["rtstruct_roi"],
    rtstruct_link=config["rtstruct_link"],
    shape="--shape-only" if RAD["shape_only"] else "",
    privacy=SECRET_ARG,
    code=code("fusion.radiomics"),
)
RADIOMICS_SHELL = (
    "python -m ccgrade.fusion.radiomics patient --patient {wildcards.pid} --phase {params.phase} --params {input.params}"
    " {params.args} --mask-label {params.mask_label} --rtstruct-roi {params.rtstruct_roi:q}"
    " --rtstruct-link {params.rtstruct_link} {params.shape} --out {output} {params.privacy} > {log} 2>&1"
)


NESTED_CV = int(FUSION["nested_cv"])


# the fusion job's files by role (ccgrade.paths; the job writes exactly these), the reported ones with their captions;
# the nested CV's only when asked for
FUSION_REPORTED = {
    "table": ("fusion.rst", "Sun: fused models", "table"),
    "coef": ("fusion_coefficients.rst", "Sun: coefficients (nomogram)", "table"),
    "roc": ("fusion.rst", "Sun: ROC curves (training, test)", "figure"),
    "dca": ("fusion.rst", "Sun: calibration and decision curves", "figure"),
    "nested_table": ("fusion_nested.rst", "Sun: nested cross-validation", "table"),
}
FUSION_OUTPUTS = {
    role: (
        reported(path, FUSION_REPORTED[role][0], "Sun et al.", *FUSION_REPORTED[role][1:])
        if role in FUSION_REPORTED
        else path
    )
    for role, path in {**ccpaths.FUSION, **(ccpaths.FUSION_NESTED if NESTED_CV else {})}.items()
}


def fusion_params(wildcards):
    types = {v["name"]: v["type"] for v in config["baseline"]["variables"]}
    n_boot = int(FUSION["optimism_boot"])  # Harrell's optimism bootstrap: passed only when asked
    return as_json(
        {
            "clinical": [{"name": n, "type": types.get(n, "continuous")} for n in FUSION["clinical"]],
            "seed": config["seed"],
            "cv": FUSION["cv"],
            "max_corr": FUSION["max_corr"],
            "thresholds": FUSION["thresholds"],
            "nested_cv": NESTED_CV,
            "statistics": config["statistics"],
            **({"deep_oof": True} if DEEP_OOF else {}),
            **({"optimism_boot": n_boot} if n_boot else {}),
        }
    )


def fusion_targets():
    if not FUSION["enabled"] or not (RAD_PATIENTS or DEEP_CELL):
        return []
    return list(FUSION_OUTPUTS.values())


def checklist_inputs(wildcards):
    """The run's files the reporting checklist reads (ccgrade.report.checklist), by role."""
    out = {
        "provenance": "results/provenance.json",
        "cohort": COHORT_TABLE,
        "exclusions": "results/tables/exclusions.csv",
        "splits": expand(ccpaths.SPLIT_JSON, scheme=SCHEMES),
        "meta": [f"{ccmatrix.cell_dir(c)}/meta.json" for s in STUDY_KINDS for c in study_cells(s)],
        "predictions": [f"{ccmatrix.cell_dir(c)}/predictions.tsv" for s in STUDY_KINDS for c in failure_cells(s)],
        "error_rates": [ccstudies.failure_outputs(s)["error_rates"] for s in STUDY_KINDS],
    }
    if IMAGED:
        out.update(phase_status=ccpaths.PHASE_STATUS, manifest=ccpaths.CROP_MANIFEST)
        out["series"] = ccpaths.SERIES_TABLE
    if fusion_targets():
        out["fusion"] = FUSION_OUTPUTS["table"]
    if external_targets():
        out["external"] = [ccpaths.external_outputs(s)["table"] for s in STUDY_KINDS]
    return out


def checklist_files(input):
    """The checklist's files as its job reads them (error rates by study), and the tables it only names."""
    files = {
        k: (list(v) if k == "splits" else str(v))
        for k, v in input.items()
        if k not in ("code", "meta", "predictions", "error_rates", "external")
    }
    if "external" in input.keys():
        files["external"] = dict(zip(STUDY_KINDS, input.external))
    files["error_rates"] = dict(zip(STUDY_KINDS, input.error_rates))
    files["baseline"] = [
        "results/tables/baseline_low_vs_high.csv",
        f"results/tables/baseline_train_vs_test_{TT_SPLIT}.csv",
    ]
    files["tables"] = [
        p for s, k in STUDY_KINDS.items() for p in ccstudies.outputs(k, s).values() if p.endswith(".csv")
    ]
    return files


def checklist_studies():
    return {s: {"kind": k, "cells": json.loads(study_models_json(s))} for s, k in STUDY_KINDS.items()}


def all_targets():
    """Every final table and figure of the stages built so far (only those the cohort's data allow)."""
    out = [
        COHORT_TABLE,
        "results/tables/exclusions.csv",
        *expand(ccpaths.SPLIT_JSON, scheme=SCHEMES),
        "results/tables/baseline_low_vs_high.csv",
        f"results/tables/baseline_train_vs_test_{TT_SPLIT}.csv",
    ]
    if IMAGED:
        out += [ccpaths.SERIES_TABLE, ccpaths.PHASE_STATUS, ccpaths.CROP_MANIFEST]
        out += expand("results/figures/roi_montage/{pid}.png", pid=MONTAGE_PATIENTS)
    if MEASURED:
        out.append("results/tables/tumour_geometry.csv")
    out += study_targets() + fusion_targets() + external_targets()
    out += ["results/provenance.json", "results/checklist.csv"]
    if PSEUDONYMISE and IMAGED:
        out.append(f"{PRIVATE}/lookup.tsv")
    return out


# ------------------------------------------------------------------------ predict: new patients graded

PRED_ROI = PRED_CELLS[0]["roi"] if PRED_CELLS else None


def pred_wc(wildcards):
    """A new patient's wildcards with the ensemble's ROI setting (what its crop sources are chosen by)."""
    return SimpleNamespace(pid=wildcards.pid, roi=PRED_ROI)


def pred_bundles(name):
    return [f"{BUNDLE_DIR}/{name}".format(**c) for c in PRED_CELLS]


def pred_grade(wildcards):
    g = PRED_RECORDS[wildcards.pid].get("grade_group")
    return g if isinstance(g, str) else ""


def pred_sheet_json(records=None):
    """The new patients' grades (when the sheet gives them; or of ``records``: the external centre's): the
    metrics' labels."""
    out = []
    for p, r in (PRED_RECORDS if records is None else records).items():
        g = r.get("grade")
        out.append(
            {
                "patient_id": p,
                "grade": int(g) if g is not None and g == g else None,
                "grade_group": r.get("grade_group") or "",
            }
        )
    return as_json(out)


def predict_model_name():
    from ccgrade.deploy.predict import model_name

    return model_name(PRED_CELLS) if PRED_CELLS else ""


def predict_files():
    if not PRED_PATIENTS:
        return []
    per = ("images.tsv", "summary.json", "page.png", "page.pdf")
    return [f"{PRED_DIR}/{n}" for n in ("predictions.csv", "predictions.md", "metrics.csv", "metrics.md")] + [
        f"{PRED_DIR}/patients/{p}/{n}" for p in PRED_PATIENTS for n in per
    ]


# ------------------------------------------------------------------ the external centre: every model, unchanged


def ext_rois(study):
    return list(dict.fromkeys(c["roi"] for c in study_cells(study)))


def ext_bundles(study, name):
    return [f"{BUNDLE_DIR}/{name}".format(**c) for c in study_cells(study)]


def ext_sources(wildcards):
    """An external patient's annotation files per ROI setting the study's models read."""
    return {
        roi: crop_sources(SimpleNamespace(pid=wildcards.pid, roi=roi), EXT_SOURCES) for roi in ext_rois(wildcards.study)
    }


def ext_annotations(wildcards):
    return sorted(
        {
            f
            for pid in EXT_PATIENTS
            for roi in ext_rois(wildcards.study)
            for f in crop_annotations(SimpleNamespace(pid=pid, roi=roi), EXT_SOURCES)
        }
    )


def ext_patient_args(wildcards):
    """The external patients a study's grading job reads: one quoted JSON argument each (volumes, and the
    annotation files per ROI setting its models read)."""
    return " ".join(
        shlex.quote(
            as_json(
                {
                    "patient_id": p,
                    "volumes": f"{EXT_DIR}/volumes/{p}",
                    "sources": ext_sources(SimpleNamespace(pid=p, study=wildcards.study)),
                }
            )
        )
        for p in EXT_PATIENTS
    )


def bundle_files():
    """Every trained cell's bundle: its text files (what the bundles' privacy scan reads)."""
    cells = [c for s in STUDIES for c in study_cells(s)]
    return [f"{BUNDLE_DIR}/{n}".format(**c) for c in cells for n in ("metadata.json", "preprocess.json", "README.md")]


def external_targets():
    if not EXT_PATIENTS:
        return []
    return [f for s in STUDY_KINDS for f in ccpaths.external_outputs(s).values()]


# the fusion on the external centre: its radiomics (the cohort's settings) and deep block (the frozen cell)
EXT_FUSION = bool(EXT_PATIENTS) and bool(fusion_targets())
EXT_RAD_PATIENTS = EXT_PATIENTS if EXT_FUSION and RAD["enabled"] else []


def ext_rad_sources(wildcards):
    return crop_sources(SimpleNamespace(roi=RAD["roi"], pid=wildcards.pid), EXT_SOURCES).get(RAD_PHASE, {})


def ext_rad_args(wildcards, input):
    return (
        f"--volumes {input.volumes} --roi {shlex.quote(as_json(config['rois'][RAD['roi']]))}"
        f" --sources {shlex.quote(as_json(ext_rad_sources(wildcards)))}"
    )


def ext_deep_patients():
    return as_json(
        {
            p: {
                "volumes": f"{EXT_DIR}/volumes/{p}",
                "sources": crop_sources(SimpleNamespace(roi=DEEP_CELL["roi"], pid=p), EXT_SOURCES),
            }
            for p in EXT_PATIENTS
        }
    )


def ext_deep_annotations(wildcards):
    return sorted(
        {f for p in EXT_PATIENTS for f in crop_annotations(SimpleNamespace(roi=DEEP_CELL["roi"], pid=p), EXT_SOURCES)}
    )


def fusion_external_inputs(wildcards):
    if not EXT_FUSION:
        return {}
    out = {}
    if EXT_RAD_PATIENTS:
        out["ext_radiomics"] = f"{EXT_DIR}/radiomics/features.tsv"
    if DEEP_CELL:
        out["ext_deep"] = f"{EXT_DIR}/fusion/deep_features.tsv"
    return out


def fusion_external_args(wildcards, input):
    """The fusion job's external centre: its clinical variables and grades (the named columns only), and its
    radiomics and deep features."""
    if not EXT_FUSION:
        return ""
    keep = ["patient_id", "grade_group"] + list(FUSION["clinical"])
    rows = [{k: EXT_RECORDS[p].get(k) for k in keep if k in EXT_RECORDS[p]} for p in EXT_PATIENTS]
    args = f"--external {shlex.quote(as_json({'name': EXT_NAME, 'cohort': rows}))}"
    if "ext_radiomics" in input.keys():
        args += f" --external-radiomics {input.ext_radiomics}"
    if "ext_deep" in input.keys():
        args += f" --external-deep {input.ext_deep}"
    return args
