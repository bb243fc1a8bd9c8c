# Shared set-up: validate config and cohort sheet before any job runs, wildcard constraints,
# named input/param functions and the final target list. Parse-time work stays light: no DICOM is read.

import json
import os
import shlex
import sys
from pathlib import Path

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO / "workflow" / "src"))
# jobs call `python -m ccgrade...`: make that the interpreter running Snakemake (e.g. .venv/bin/python)
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# ... and make them import this checkout's package, not whichever copy the environment was installed from
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "workflow" / "src"), os.environ.get("PYTHONPATH")]))

from ccgrade import demo as ccdemo  # noqa: E402
from ccgrade import kits as cckits  # noqa: E402
from ccgrade.cohort import (  # noqa: E402
    has_images,
    load_cohort_sheet,
    patient_sources,
    pick_source,
    used_columns,
    validate_cohort,
    validate_config,
)

validate_config(config)

SRC = REPO / "workflow" / "src" / "ccgrade"
DEMO_ROOT = "resources/demo_cohort"
SOURCE = config["cohort"]["source"]
IS_DEMO = SOURCE == "demo"
PHASES = list(config["phases"])
KITS_LEFT_OUT = []
if IS_DEMO:
    COHORT = validate_cohort(
        ccdemo.draw_cohort(config["demo"], config["cohort"]["high_grade_from"], DEMO_ROOT),
        config,
        file="demo cohort",
        check_paths=False,
    )
    SHEET = f"{DEMO_ROOT}/cohort.tsv"
elif SOURCE == "kits":
    KITS = config["cohort"]["kits"]
    KITS_JSON = str(cckits.find_json(KITS["root"]))
    _kits, _ = cckits.load_kits(KITS["root"], KITS.get("histology", "clear_cell_rcc"))
    COHORT = validate_cohort(cckits.kits_sources(_kits, KITS.get("phase", "cmp")), config, file=KITS_JSON)
    SHEET = "results/cohort/kits_sheet.tsv"
    KITS_LEFT_OUT = ["results/cohort/kits_left_out.tsv"]
else:
    SHEET = config["cohort"]["sheet"]
    COHORT = load_cohort_sheet(SHEET, config)
PATIENTS = sorted(COHORT["patient_id"])
RECORDS = {r["patient_id"]: r for r in COHORT.to_dict("records")}
# per patient and phase: the image and annotation files (explicit sheet columns, else annotation_dir layout)
SOURCES = {p: patient_sources(RECORDS[p], PHASES, assume_layout=IS_DEMO) for p in PATIENTS}
# patients with images run ingest and crops; mask-only patients (e.g. KiTS without imaging) do not
IMAGED = [p for p in PATIENTS if IS_DEMO or has_images(RECORDS[p])]
GEOMETRY_PHASE = config["geometry"]["phase"]
MEASURED = [p for p in PATIENTS if config["geometry"]["enabled"] and "mask" in SOURCES[p].get(GEOMETRY_PHASE, {})]
CROP_TARGETS = PHASES + ["stack"]
ROIS = list(config["rois"])
SCHEMES = list(config["splits"]["schemes"])
TT_SPLIT = config["baseline"]["train_test_split"]
MONTAGE_PATIENTS = IMAGED[: config["figures"]["montage_patients"]]
COHORT_COLUMNS = used_columns(config)  # the sheet columns that reach results/cohort/ (besides ID, grade, centre)
COHORT_SHEET = "results/cohort/sheet.tsv"
COHORT_TABLE = "results/cohort/cohort.tsv"


wildcard_constraints:
    pid=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    roi="|".join(ROIS),
    scheme="|".join(SCHEMES),


def code(module):
    """The stage's own module: an input, so that a change of its logic reruns that stage."""
    return str(SRC / f"{module}.py")


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def dicom_dir(wildcards):
    d = RECORDS[wildcards.pid].get("dicom_dir")
    return [d] if isinstance(d, str) else []


def phase_images(wildcards):
    """Per-phase image volumes (NIfTI/NRRD) named in the sheet for this patient."""
    return {ph: s["image"] for ph, s in SOURCES[wildcards.pid].items() if "image" in s}


def ingest_args(wildcards):
    """Command-line arguments naming the patient's DICOM folder and per-phase volumes."""
    d, imgs = dicom_dir(wildcards), phase_images(wildcards)
    out = [f"--dicom-dir {shlex.quote(d[0])}"] if d else []
    if imgs:
        out.append("--images " + " ".join(shlex.quote(f"{ph}={p}") for ph, p in imgs.items()))
    return " ".join(out)


def crop_sources(wildcards):
    """The annotation files (by format) of the phases an ROI setting reads for one patient."""
    roi = config["rois"][wildcards.roi]
    out = {}
    for ph, s in SOURCES[wildcards.pid].items():
        fmt, path = pick_source(roi, s)
        if path:
            out[ph] = {fmt: path}
    return out


def crop_annotations(wildcards):
    """The annotation files an ROI setting reads for one patient: inputs, so that editing one reruns its crops."""
    out, sources = [], crop_sources(wildcards)
    for ph in dict.fromkeys(PHASES + config["stack"]["phases"][:1]):
        for path in sources.get(ph, {}).values():
            if IS_DEMO:
                out.append(path)
            elif Path(path).is_dir():  # user labelme folders: every JSON is an input
                out += sorted(str(f) for f in Path(path).glob("*.json"))
            elif Path(path).exists():  # a missing annotation becomes an exclusion row, not a missing-input error
                out.append(path)
    return out


def geometry_mask(wildcards):
    return SOURCES[wildcards.pid][GEOMETRY_PHASE]["mask"]


def roi_params(wildcards):
    return as_json(config["rois"][wildcards.roi])


def roi_window(wildcards):
    return as_json(config["windows"][config["rois"][wildcards.roi]["window"]])


def split_params(wildcards):
    return as_json(
        {
            "seed": config["seed"],
            "cohort": config["cohort"],
            "splits": {
                "require_phases": config["splits"]["require_phases"],
                "schemes": {wildcards.scheme: config["splits"]["schemes"][wildcards.scheme]},
            },
        }
    )


def baseline_params(wildcards):
    return as_json({"seed": config["seed"], "cohort": config["cohort"], "baseline": config["baseline"]})


def all_targets():
    """Every final table and figure of the stages built so far (only those the cohort's data allow)."""
    out = [
        COHORT_TABLE,
        "results/tables/exclusions.csv",
        *expand("results/splits/{scheme}.json", scheme=SCHEMES),
        "results/tables/baseline_low_vs_high.csv",
        f"results/tables/baseline_train_vs_test_{TT_SPLIT}.csv",
    ]
    if IMAGED:
        out += ["results/ingest/series.tsv", "results/ingest/phase_status.tsv", "results/crops/manifest.tsv"]
        out += expand("results/figures/roi_montage/{pid}.png", pid=MONTAGE_PATIENTS)
    if MEASURED:
        out.append("results/tables/tumour_geometry.csv")
    return out + study_targets() + fusion_targets() + ["results/provenance.json"]
