# Shared set-up: validate config and cohort sheet before any job runs, wildcard constraints,
# named input/param functions and the final target list. Parse-time work stays light: no DICOM is read.

import json
import os
import sys
from pathlib import Path

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO / "workflow" / "src"))
# jobs call `python -m ccgrade...`: make that the interpreter running Snakemake (e.g. .venv/bin/python)
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

from ccgrade import demo as ccdemo  # noqa: E402
from ccgrade.cohort import load_cohort_sheet, validate_config, validate_cohort  # noqa: E402
from ccgrade.crops import annotation_path  # noqa: E402

validate_config(config)

SRC = REPO / "workflow" / "src" / "ccgrade"
DEMO_ROOT = "resources/demo_cohort"
IS_DEMO = config["cohort"]["source"] == "demo"
if IS_DEMO:
    COHORT = validate_cohort(
        ccdemo.draw_cohort(config["demo"], config["cohort"]["high_grade_from"], DEMO_ROOT),
        config,
        file="demo cohort",
        check_paths=False,
    )
    SHEET = f"{DEMO_ROOT}/cohort.tsv"
else:
    SHEET = config["cohort"]["sheet"]
    COHORT = load_cohort_sheet(SHEET, config)
PATIENTS = sorted(COHORT["patient_id"])
PATIENT = COHORT.set_index("patient_id")
PHASES = list(config["phases"])
CROP_TARGETS = PHASES + ["stack"]
ROIS = list(config["rois"])
SCHEMES = list(config["splits"]["schemes"])
TT_SPLIT = config["baseline"]["train_test_split"]
MONTAGE_PATIENTS = PATIENTS[: config["figures"]["montage_patients"]]


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
    return PATIENT.loc[wildcards.pid, "dicom_dir"]


def annotation_dir(wildcards):
    return PATIENT.loc[wildcards.pid, "annotation_dir"]


def crop_annotations(wildcards):
    """The annotation files an ROI setting reads for one patient (per phase and the stack's reference)."""
    roi = config["rois"][wildcards.roi]
    base = Path(annotation_dir(wildcards))
    out = []
    for phase in dict.fromkeys(PHASES + config["stack"]["phases"][:1]):
        p = annotation_path(base, phase, roi["kind"], roi)
        if IS_DEMO:
            out.append(str(p))
        elif p.is_dir():  # user labelme folders: every JSON is an input, so editing one reruns the crops
            out += sorted(str(f) for f in p.glob("*.json"))
        elif p.exists():  # a missing annotation becomes an exclusion row, not a missing-input error
            out.append(str(p))
    return out


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
    """Every final table and figure of the stages built so far."""
    return [
        "results/ingest/series.tsv",
        "results/ingest/phase_status.tsv",
        "results/crops/manifest.tsv",
        "results/tables/exclusions.csv",
        *expand("results/splits/{scheme}.json", scheme=SCHEMES),
        "results/tables/baseline_low_vs_high.csv",
        f"results/tables/baseline_train_vs_test_{TT_SPLIT}.csv",
        *expand("results/figures/roi_montage/{pid}.png", pid=MONTAGE_PATIENTS),
    ]
