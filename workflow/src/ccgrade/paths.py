"""Where the outputs live: each path template named once (issue 28), for the rules, the stages and the
checklist (a study's tables and figures are named by its kind in ``ccgrade.evaluate.studies``). Templates keep Snakemake's wildcards ({pid}, {scheme}, {group}); fill them with
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

TABLES, FIGURES = "results/tables", "results/figures"
#: the fusion job's files by role (Sun et al.; a table's Markdown under ``<role>_md``, a figure's PDF ``<role>_pdf``)
FUSION = {
    "predictions": "results/fusion/predictions.tsv",
    "left_out": "results/fusion/left_out.tsv",
    "selected": "results/fusion/selected_features.tsv",
    "table": f"{TABLES}/fusion_models.csv", "table_md": f"{TABLES}/fusion_models.md",
    "coef": f"{TABLES}/fusion_coefficients.csv", "coef_md": f"{TABLES}/fusion_coefficients.md",
    "roc": f"{FIGURES}/fusion_roc.png", "roc_pdf": f"{FIGURES}/fusion_roc.pdf",
    "dca": f"{FIGURES}/fusion_calibration_dca.png", "dca_pdf": f"{FIGURES}/fusion_calibration_dca.pdf",
}
#: the fusion's nested cross-validation (``fusion.nested_cv``)
FUSION_NESTED = {
    "nested": "results/fusion/nested_predictions.tsv",
    "nested_table": f"{TABLES}/fusion_nested_cv.csv", "nested_table_md": f"{TABLES}/fusion_nested_cv.md",
}

#: the fusion's out-of-fold deep block (``fusion.deep.oof_folds``, ``ccgrade.fusion.oof``): the folds of its training
#: patients, the fold cells (by the matrix cell's own wildcards) and which model scored each patient
DEEP_OOF_SPLIT = "results/fusion/deep_oof/split.json"
DEEP_OOF_DIR = "results/fusion/deep_oof/{study}/{roi}/{arch}/{phases}/{variant}/fold{fold}/seed{seed}"
DEEP_OOF_SOURCES = "results/fusion/deep_oof/scores.tsv"


def external_outputs(study: str) -> dict[str, str]:
    """A study's external-validation table and figure, by role."""
    return {"table": f"{TABLES}/{study}_external.csv", "table_md": f"{TABLES}/{study}_external.md",
            "figure": f"{FIGURES}/{study}_external.png", "figure_pdf": f"{FIGURES}/{study}_external.pdf"}
