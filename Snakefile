# ccgrade: from raw DICOM through crops, splits and the model matrix to the papers' tables, statistics and figures.
# Run: snakemake --cores 8 --resources gpu=1     (see README.md)

import os

from snakemake.utils import min_version

min_version("9.0")


# the study's config.yaml in the working directory, else the repository's documented defaults (the demo);
# --configfile my_study.yaml is merged over it (keys it lists under `replace:` are taken whole)
configfile: "config.yaml" if os.path.exists("config.yaml") else os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/crops.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/fusion.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/privacy.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/external.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        "results/privacy_scan.tsv",


rule paper:  # every table and figure of the reproduced studies (the same as the default target)
    input:
        all_targets(),
        "results/privacy_scan.tsv",


rule ingest:  # the front half, no splits or studies needed: every patient's series, phases and volumes
    input:
        ccpaths.SERIES_TABLE,
        ccpaths.PHASE_STATUS,
        expand(ccpaths.VOLUMES, pid=IMAGED),


rule crops:  # ... and every ROI setting's crops, with the manifest (needs annotations; no splits)
    input:
        rules.ingest.input,
        ccpaths.CROP_MANIFEST,


onstart:
    unthrottle_local_scheduler()


onerror:
    # the console names each failed job's error (from its log), not only where the log is
    for line in ccpre.job_errors(log):
        print(f"ccgrade: failed job {line}", file=sys.stderr)
