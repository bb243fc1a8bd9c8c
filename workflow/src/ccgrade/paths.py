"""Where the front half's outputs live: each path template named once (issue 28), for the rules, the stages
and the checklist. Templates keep Snakemake's wildcards ({pid}, {scheme}, {group}); fill them with
``str.format`` outside a rule."""

from __future__ import annotations

#: one patient's ingest tables (``slices``, ``series``, ``phases``, ``exclusions``.tsv) and HU volumes
INGEST_DIR = "results/ingest/{pid}"
INGEST_TABLES = ("slices", "series", "phases", "exclusions")
VOLUMES = "results/volumes/{pid}"
#: the same for a cohort graded by frozen models (``predict/<name>``, ``external/<name>``)
GRADED_INGEST_DIR = "results/{group}/ingest/{pid}"
GRADED_VOLUMES = "results/{group}/volumes/{pid}"
#: the cohort's ingest review tables
SERIES_TABLE = "results/ingest/series.tsv"
PHASE_STATUS = "results/ingest/phase_status.tsv"
#: every crop file's row
CROP_MANIFEST = "results/crops/manifest.tsv"
#: a split scheme's patient sets (JSON, what the stages read) and its reviewable table
SPLIT_JSON = "results/splits/{scheme}.json"
SPLIT_TSV = "results/splits/{scheme}.tsv"
#: the analysis cohort and the sheet as the study reads it
COHORT_SHEET = "results/cohort/sheet.tsv"
COHORT_TABLE = "results/cohort/cohort.tsv"
