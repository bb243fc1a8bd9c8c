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


if DEEP_OOF:  # honest stacking (fusion.deep.oof_folds): the cell's recipe on k folds of the training patients

    rule deep_oof_split:
        input:
            tsv=ccpaths.SPLIT_TSV.format(scheme=FUSION["scheme"]),
        output:
            ccpaths.DEEP_OOF_SPLIT,
        log:
            "results/logs/deep_oof/split.log",
        benchmark:
            "results/benchmarks/deep_oof/split.tsv"
        conda:
            "../../envs/ccgrade.yaml"
        params:
            k=DEEP_OOF,
            seed=config["seed"],
            parent=FUSION["scheme"],
            stratify=config["splits"]["schemes"][FUSION["scheme"]].get("stratify", ["grade_group", "centre"]),
            code=code("fusion.oof"),
        shell:
            "python -m ccgrade.fusion.oof split --split-tsv {input.tsv} --parent {params.parent} --k {params.k}"
            " --seed {params.seed} --stratify {params.stratify} --json {output} > {log} 2>&1"

    use rule train_model as deep_oof_train with:
        input:
            crops=train_crops,
            cohort=COHORT_SHEET,
            split=ccpaths.DEEP_OOF_SPLIT,
        output:
            meta=f"{ccpaths.DEEP_OOF_DIR}/meta.json",
            predictions=f"{ccpaths.DEEP_OOF_DIR}/predictions.tsv",
            epochs=f"{ccpaths.DEEP_OOF_DIR}/epochs.tsv",
            weights=f"{ccpaths.DEEP_OOF_DIR}/best.pt",
            curve=f"{ccpaths.DEEP_OOF_DIR}/curve.png",
            curve_pdf=f"{ccpaths.DEEP_OOF_DIR}/curve.pdf",
        log:
            f"results/logs/deep_oof/{{study}}/{{roi}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.log",
        benchmark:
            f"results/benchmarks/deep_oof/{{study}}/{{roi}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.tsv"

    rule deep_features:
        input:
            weights=f"{MODEL_DIR}/best.pt".format(**DEEP_CELL),
            folds=[f"{d}/best.pt" for d in DEEP_OOF_CELLS],
            split=ccpaths.DEEP_OOF_SPLIT,
            crops=cell_crops(DEEP_CELL["roi"], DEEP_CELL["phases"]),
        output:
            table="results/fusion/deep_features.tsv",
            sources=ccpaths.DEEP_OOF_SOURCES,
        log:
            "results/logs/deep_features.log",
        benchmark:
            "results/benchmarks/deep_features.tsv"
        conda:
            "../../envs/ccgrade.yaml"
        threads: 2
        params:
            cell=ccmatrix.cell_dir(DEEP_CELL),
            folds=DEEP_OOF_CELLS,
            hp=as_json(ccmatrix.hyper(config, DEEP_CELL["study"], DEEP_CELL["arch"], DEEP_CELL["variant"])),
            code=code("fusion.oof"),
        shell:
            "python -m ccgrade.fusion.oof scores --cell {params.cell} --folds {params.folds} --split {input.split}"
            " --hp {params.hp:q} --crops {input.crops} --out {output.table} --sources {output.sources} > {log} 2>&1"

else:

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
