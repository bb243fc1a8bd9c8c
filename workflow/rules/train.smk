# The model matrix: one cached job per (study, ROI setting, architecture, phase set, variant, fold, seed),
# each asking for gpu=1; then, per study of a registered kind (ccgrade.evaluate.studies), its tables and figures
# from its cells' predictions (and Li's Grad-CAM figure from their weights). The files each job writes
# are the registry's, declared here and passed to the job by role.


rule train_model:
    input:
        crops=train_crops,
        cohort=COHORT_SHEET,
        split=lambda wc: ccpaths.SPLIT_JSON.format(scheme=STUDIES[wc.study]["scheme"]),
    output:
        meta=f"{MODEL_DIR}/meta.json",
        predictions=f"{MODEL_DIR}/predictions.tsv",
        epochs=f"{MODEL_DIR}/epochs.tsv",
        weights=f"{MODEL_DIR}/best.pt",
        curve=f"{MODEL_DIR}/curve.png",
        curve_pdf=f"{MODEL_DIR}/curve.pdf",
    log:
        f"results/logs/train/{{study}}/{{roi}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.log",
    benchmark:
        f"results/benchmarks/train/{{study}}/{{roi}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.tsv"
    priority: 10  # the longest jobs: started as soon as their crops exist, before short jobs still queued
    conda:
        "../../envs/ccgrade.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=TRAIN_GPU,
        gpu_slots=config["training"]["gpu_slots"],  # a resource, not a param: changing it retrains nothing
        mem_mb=6000,
        runtime=240,
    params:
        hp=train_hp,
        device=config["training"]["device"],
        outdir=lambda wc, output: os.path.dirname(output.meta),
        code=code("learn.train"),
    shell:
        "python -m ccgrade.learn.train --cohort {input.cohort} --split {input.split} --fold {wildcards.fold}"
        " --crops {input.crops} --hp {params.hp:q} --seed {wildcards.seed} --device {params.device}"
        " --threads {threads} --slots {resources.gpu_slots} --outdir {params.outdir} > {log} 2>&1"


rule export_bundle:  # a trained cell as a model bundle (docs/deploy.md); target: bundles
    input:
        meta=f"{MODEL_DIR}/meta.json",
        predictions=f"{MODEL_DIR}/predictions.tsv",
        weights=f"{MODEL_DIR}/best.pt",
    output:
        weights=f"{BUNDLE_DIR}/weights.pt",
        preprocess=f"{BUNDLE_DIR}/preprocess.json",
        metadata=f"{BUNDLE_DIR}/metadata.json",
        readme=f"{BUNDLE_DIR}/README.md",
    log:
        f"results/logs/bundle/{{study}}/{{roi}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.log",
    benchmark:
        f"results/benchmarks/bundle/{{study}}/{{roi}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        cell=lambda wc: as_json({**dict(wc.items()), "fold": int(wc.fold), "seed": int(wc.seed)}),
        config=bundle_config,
        cell_dir=lambda wc, input: os.path.dirname(input.meta),
        out_dir=lambda wc, output: os.path.dirname(output.metadata),
        code=code("deploy.bundle"),
    shell:
        "python -m ccgrade.deploy.bundle --cell-dir {params.cell_dir} --cell {params.cell:q} --config {params.config:q}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule bundles:  # every trained cell of every study exported, and the bundles searched for identifying values
    input:
        bundle_files(),
        "results/bundles/privacy_scan.tsv",


rule bundles_privacy_scan:  # a bundle is made to leave the study: its text files searched before it does
    input:
        files=bundle_files(),
        sources=PRIVACY_SOURCES_INPUT,
    output:
        hits="results/bundles/privacy_scan.tsv",
        summary="results/bundles/privacy_scan.json",
    log:
        "results/logs/bundles_privacy_scan.log",
    benchmark:
        "results/benchmarks/bundles_privacy_scan.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        **PHISCAN_PARAMS,
        private=f"{PRIVATE}/bundles_privacy_scan_values.tsv",
    shell:
        PHISCAN_SHELL


for _study, _kind in STUDY_KINDS.items():

    rule:
        name:
            f"{_study}_tables"
        input:
            predictions=cell_files(_study, "predictions.tsv"),
        output:
            **study_outputs(_study),
        log:
            f"results/logs/{_study}_tables.log",
        benchmark:
            f"results/benchmarks/{_study}_tables.tsv"
        conda:
            "../../envs/ccgrade.yaml"
        params:
            kind=_kind,
            models=study_models_json(_study),
            stats=stats_json(),
            pinned=pinned_json(_study),
            outputs=outputs_json,
            code=code("evaluate.studies"),
        shell:
            "python -m ccgrade.evaluate.studies --kind {params.kind} --models {params.models:q} --stats {params.stats:q}"
            " --pinned {params.pinned:q} --outputs {params.outputs:q} > {log} 2>&1"

    if ccstudies.REGISTRY[_kind].heatmaps:

        rule:
            name:
                f"{_study}_heatmaps"
            input:
                weights=cell_files(_study, "best.pt"),
                predictions=cell_files(_study, "predictions.tsv"),
                crops=sorted({f for c in study_cells(_study) for f in cell_crops(c["roi"], c["phases"])}),
            output:
                **heatmap_outputs(_study),
            log:
                f"results/logs/{_study}_heatmaps.log",
            benchmark:
                f"results/benchmarks/{_study}_heatmaps.tsv"
            conda:
                "../../envs/ccgrade.yaml"
            params:
                models=study_models_json(_study),
                n=config["figures"]["heatmap_patients"],
                outputs=outputs_json,
                code=code("evaluate.heatmaps"),
            shell:
                "python -m ccgrade.evaluate.heatmaps --models {params.models:q} --crops {input.crops} --patients {params.n}"
                " --outputs {params.outputs:q} > {log} 2>&1"

    rule:
        name:
            f"{_study}_failures"
        input:
            weights=[f"{ccmatrix.cell_dir(c)}/best.pt" for c in failure_cells(_study)],
            predictions=[f"{ccmatrix.cell_dir(c)}/predictions.tsv" for c in failure_cells(_study)],
            crops=sorted({f for c in failure_cells(_study) for f in cell_crops(c["roi"], c["phases"])}),
            cohort=COHORT_TABLE,
            phases=ccpaths.PHASE_STATUS,
        output:
            **failure_outputs(_study),
        log:
            f"results/logs/{_study}_failures.log",
        benchmark:
            f"results/benchmarks/{_study}_failures.tsv"
        conda:
            "../../envs/ccgrade.yaml"
        params:
            models=study_models_json(_study, failure_cells(_study)),
            n=config["figures"]["failure_patients"],
            outputs=outputs_json,
            code=code("evaluate.failures"),
        shell:
            "python -m ccgrade.evaluate.failures --models {params.models:q} --crops {input.crops} --cohort {input.cohort}"
            " --phases {input.phases} --n {params.n} --outputs {params.outputs:q} > {log} 2>&1"
