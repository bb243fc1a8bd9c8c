# Radiomics per patient (pyradiomics), deep features from a trained cell, and the fusion models with
# their tables and figures (Sun et al.): radiomics, deep and clinical models, the combined model,
# calibration and decision curves.


rule radiomics_patient:
    input:
        unpack(rad_inputs),
        params=RAD_PARAMS,
        secret=secret_input,
    output:
        "results/radiomics/patients/{pid}.tsv",
    log:
        "results/logs/radiomics/{pid}.log",
    benchmark:
        "results/benchmarks/radiomics/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        **RADIOMICS_PARAMS,
        args=rad_args,
    shell:
        RADIOMICS_SHELL


rule radiomics_table:
    input:
        rows=expand("results/radiomics/patients/{pid}.tsv", pid=RAD_PATIENTS),
    output:
        "results/radiomics/features.tsv",
    log:
        "results/logs/radiomics_table.log",
    benchmark:
        "results/benchmarks/radiomics_table.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        code=code("fusion.radiomics"),
    shell:
        "python -m ccgrade.fusion.radiomics table --rows {input.rows} --out {output} > {log} 2>&1"


rule deep_features:
    input:
        weights=(f"{MODEL_DIR}/best.pt".format(**DEEP_CELL)) if DEEP_CELL else [],
        crops=cell_crops(DEEP_CELL["roi"], DEEP_CELL["phases"]) if DEEP_CELL else [],
    output:
        "results/fusion/deep_features.tsv",
    log:
        "results/logs/deep_features.log",
    benchmark:
        "results/benchmarks/deep_features.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    threads: 2
    params:
        cell=lambda wc: ccmatrix.cell_dir(DEEP_CELL),
        hp=lambda wc: as_json(ccmatrix.hyper(config, DEEP_CELL["study"], DEEP_CELL["arch"], DEEP_CELL["variant"])),
        code=code("fusion.model"),
    shell:
        "python -m ccgrade.fusion deep --cell {params.cell} --hp {params.hp:q} --crops {input.crops}"
        " --out {output} > {log} 2>&1"


rule fusion:
    input:
        unpack(fusion_external_inputs),  # the external centre's blocks (docs/deploy.md)
        cohort=COHORT_TABLE,
        split=ccpaths.SPLIT_JSON.format(scheme=FUSION["scheme"]),
        radiomics="results/radiomics/features.tsv" if RAD_PATIENTS else [],
        deep="results/fusion/deep_features.tsv" if DEEP_CELL else [],
    output:
        **FUSION_OUTPUTS,
    log:
        "results/logs/fusion.log",
    benchmark:
        "results/benchmarks/fusion.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        prm=fusion_params,
        rad=lambda wc, input: f"--radiomics {input.radiomics}" if input.radiomics else "",
        deep=lambda wc, input: f"--deep {input.deep}" if input.deep else "",
        external=fusion_external_args,
        outputs=outputs_json,
        code=code("fusion.model"),
    shell:
        "python -m ccgrade.fusion fit --cohort {input.cohort} --split {input.split} {params.rad} {params.deep}"
        " {params.external} --params {params.prm:q} --outputs {params.outputs:q} > {log} 2>&1"
