# Radiomics per patient (pyradiomics), deep features from a trained cell, and the fusion models with
# their tables and figures (Sun et al.): radiomics, deep and clinical models, the combined model,
# calibration and decision curves.

from types import SimpleNamespace

RAD = config.get("radiomics", {})
FUSION = config.get("fusion", {})
RAD_PHASE = RAD.get("phase", "cmp")
# the pyradiomics settings: a path relative to the working directory, else to the repository (its default)
RAD_PARAMS = RAD.get("params", "config/radiomics.yaml")
if not Path(RAD_PARAMS).is_absolute() and not Path(RAD_PARAMS).exists():
    RAD_PARAMS = str(REPO / RAD_PARAMS)
# patients with images: full features on the phase's volume; mask-only patients: shape features
RAD_PATIENTS = [p for p in PATIENTS if p in IMAGED or "mask" in SOURCES[p].get(RAD_PHASE, {})] if RAD.get("enabled") else []
DEEP = FUSION.get("deep") or None
DEEP_CELL = None
if DEEP and IMAGED and DEEP["study"] in STUDIES:
    DEEP_CELL = {"study": DEEP["study"], "arch": DEEP["arch"], "phases": DEEP["phases"],
                 "variant": DEEP.get("variant", ccmatrix.BASE_VARIANT), "fold": 0, "seed": DEEP.get("seed", 1)}


def rad_sources(wildcards):
    return crop_sources(SimpleNamespace(roi=RAD["roi"], pid=wildcards.pid)).get(RAD_PHASE, {})


def rad_inputs(wildcards):
    if wildcards.pid in IMAGED:
        return {"volumes": f"results/volumes/{wildcards.pid}", "annotations": list(rad_sources(wildcards).values())}
    return {"mask": SOURCES[wildcards.pid][RAD_PHASE]["mask"]}


def rad_args(wildcards):
    if wildcards.pid in IMAGED:
        return (f"--volumes results/volumes/{wildcards.pid} --roi {shlex.quote(as_json(config['rois'][RAD['roi']]))}"
                f" --sources {shlex.quote(as_json(rad_sources(wildcards)))}")
    return f"--mask {shlex.quote(SOURCES[wildcards.pid][RAD_PHASE]['mask'])}"


rule radiomics_patient:
    input:
        unpack(rad_inputs),
        params=RAD_PARAMS,
        secret=secret_input,
        code=code("radiomics"),
    output:
        "results/radiomics/patients/{pid}.tsv",
    params:
        args=rad_args,
        phase=RAD_PHASE,
        mask_label=config["mask_label"],
        rtstruct_roi=config["rtstruct_roi"],
        rtstruct_link=config["rtstruct_link"],
        shape="--shape-only" if RAD.get("shape_only") else "",
        privacy=SECRET_ARG,
    log:
        "results/logs/radiomics/{pid}.log",
    benchmark:
        "results/benchmarks/radiomics/{pid}.tsv"
    resources:
        mem_mb=3000,
        runtime=20,
    shell:
        "python -m ccgrade.radiomics patient --patient {wildcards.pid} --phase {params.phase} --params {input.params}"
        " {params.args} --mask-label {params.mask_label} --rtstruct-roi {params.rtstruct_roi:q}"
        " --rtstruct-link {params.rtstruct_link} {params.shape} --out {output} {params.privacy} > {log} 2>&1"


rule radiomics_table:
    input:
        rows=expand("results/radiomics/patients/{pid}.tsv", pid=RAD_PATIENTS),
        code=code("radiomics"),
    output:
        "results/radiomics/features.tsv",
    log:
        "results/logs/radiomics_table.log",
    shell:
        "python -m ccgrade.radiomics table --rows {input.rows} --out {output} > {log} 2>&1"


rule deep_features:
    input:
        weights=(f"{MODEL_DIR}/best.pt".format(**DEEP_CELL)) if DEEP_CELL else [],
        crops=cell_crops(DEEP_CELL["study"], DEEP_CELL["arch"], DEEP_CELL["phases"]) if DEEP_CELL else [],
        code=code("fusion"),
    output:
        "results/fusion/deep_features.tsv",
    params:
        cell=lambda wc: ccmatrix.cell_dir(DEEP_CELL),
        hp=lambda wc: as_json(ccmatrix.hyper(config, DEEP_CELL["study"], DEEP_CELL["arch"], DEEP_CELL["variant"])),
    threads: 2
    log:
        "results/logs/deep_features.log",
    shell:
        "python -m ccgrade.fusion deep --cell {params.cell} --hp {params.hp:q} --crops {input.crops}"
        " --out {output} > {log} 2>&1"


NESTED_CV = int(FUSION.get("nested_cv", 0))
# nested cross-validation of the whole pipeline (radiomics + clinical): its outputs only when asked for
NESTED_CAPTION = str(REPO / "workflow/report/fusion_nested.rst")  # outside a rule: not relative to this file
NESTED_OUTPUTS = {
    "nested": "results/fusion/nested_predictions.tsv",
    "nested_table": report("results/tables/fusion_nested_cv.csv", caption=NESTED_CAPTION, category="Sun et al.",
                           labels={"table": "Sun: nested cross-validation"}),
    "nested_md": "results/tables/fusion_nested_cv.md",
} if NESTED_CV else {}


def fusion_params(wildcards):
    types = {v["name"]: v["type"] for v in config["baseline"]["variables"]}
    return as_json({"clinical": [{"name": n, "type": types.get(n, "continuous")} for n in FUSION.get("clinical", [])],
                    "seed": config["seed"], "cv": FUSION.get("cv", 5), "max_corr": FUSION.get("max_corr", 0.9),
                    "thresholds": FUSION.get("thresholds", [0.01, 0.99, 0.01]), "nested_cv": NESTED_CV,
                    "statistics": config.get("statistics", {})})


rule fusion:
    input:
        cohort=COHORT_TABLE,
        split=f"results/splits/{FUSION.get('scheme', 'li')}.json",
        radiomics="results/radiomics/features.tsv" if RAD_PATIENTS else [],
        deep="results/fusion/deep_features.tsv" if DEEP_CELL else [],
        code=code("fusion"),
    output:
        predictions="results/fusion/predictions.tsv",
        table=report("results/tables/fusion_models.csv", caption="../report/fusion.rst", category="Sun et al.",
                     labels={"table": "Sun: fused models"}),
        md="results/tables/fusion_models.md",
        coef=report("results/tables/fusion_coefficients.csv", caption="../report/fusion_coefficients.rst",
                    category="Sun et al.", labels={"table": "Sun: coefficients (nomogram)"}),
        roc=report("results/figures/fusion_roc.png", caption="../report/fusion.rst", category="Sun et al.",
                   labels={"figure": "Sun: ROC curves (training, test)"}),
        dca=report("results/figures/fusion_calibration_dca.png", caption="../report/fusion.rst", category="Sun et al.",
                   labels={"figure": "Sun: calibration and decision curves"}),
        **NESTED_OUTPUTS,
    params:
        prm=fusion_params,
        rad=lambda wc, input: f"--radiomics {input.radiomics}" if input.radiomics else "",
        deep=lambda wc, input: f"--deep {input.deep}" if input.deep else "",
    log:
        "results/logs/fusion.log",
    shell:
        "python -m ccgrade.fusion fit --cohort {input.cohort} --split {input.split} {params.rad} {params.deep}"
        " --params {params.prm:q} --outdir results/fusion --tables results/tables --figures results/figures > {log} 2>&1"


def fusion_targets():
    if not FUSION.get("enabled") or not (RAD_PATIENTS or DEEP_CELL):
        return []
    return ["results/tables/fusion_models.csv", "results/figures/fusion_calibration_dca.png", *NESTED_OUTPUTS.values()]
