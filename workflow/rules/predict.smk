# Grade new patients with a trained model (README "Use a trained model"): the new patients (predict.sheet, or
# the demo's new synthetic ones) are ingested as the cohort is, then each is cropped with exactly the
# preprocessing its model's bundles record and graded by them (an ensemble: the fold models averaged); one
# page per patient, then the table (and, with grades, the metrics). Nothing is retrained. Target: predict


rule graded_ingest:  # predict's new patients and the external centre's (README "External validation"), by {group}
    input:
        dicom=lambda wc: dicom_dir(wc, GRADED[wc.group][0]),
        images=lambda wc: list(phase_images(wc, GRADED[wc.group][1]).values()),
        phase_map=phase_map_input,
        secret=secret_input,
    output:
        slices=f"{ccpaths.GRADED_INGEST_DIR}/slices.tsv",
        series=f"{ccpaths.GRADED_INGEST_DIR}/series.tsv",
        phases=f"{ccpaths.GRADED_INGEST_DIR}/phases.tsv",
        exclusions=f"{ccpaths.GRADED_INGEST_DIR}/exclusions.tsv",
        private=f"{PRIVATE}/{{group}}/ingest/{{pid}}.tsv" if PSEUDONYMISE else [],
        volumes=directory(ccpaths.GRADED_VOLUMES),
    log:
        "results/logs/{group}/ingest/{pid}.log",
    benchmark:
        "results/benchmarks/{group}/ingest/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ingest=as_json(config["ingest"]),
        phases=",".join(PHASES),
        sources=lambda wc: ingest_args(wc, *GRADED[wc.group]),
        index_dir=lambda wc, output: os.path.dirname(output.slices),
        privacy=lambda wc, output: f"{SECRET_ARG} --private {output.private}" if PSEUDONYMISE else "",
        code=code("ingest"),
    shell:
        "python -m ccgrade.ingest patient --patient {wildcards.pid} {params.sources}"
        " --ingest {params.ingest:q} --phases {params.phases} --index-dir {params.index_dir}"
        " --volumes {output.volumes} {params.privacy} > {log} 2>&1"


rule predict_patient:
    input:
        volumes=f"{PRED_DIR}/volumes/{{pid}}",
        annotations=lambda wc: crop_annotations(pred_wc(wc), PRED_SOURCES),
        weights=pred_bundles("weights.pt"),
        preprocess=pred_bundles("preprocess.json"),
        metadata=pred_bundles("metadata.json"),
        secret=secret_input,
    output:
        images=f"{PRED_DIR}/patients/{{pid}}/images.tsv",
        summary=f"{PRED_DIR}/patients/{{pid}}/summary.json",
        page=f"{PRED_DIR}/patients/{{pid}}/page.png",
        page_pdf=f"{PRED_DIR}/patients/{{pid}}/page.pdf",
    log:
        f"results/logs/predict/{PREDICT['name']}/patient/{{pid}}.log",
    benchmark:
        f"results/benchmarks/predict/{PREDICT['name']}/patient/{{pid}}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        bundles=lambda wc, input: " ".join(os.path.dirname(f) for f in input.metadata),
        sources=lambda wc: as_json(crop_sources(pred_wc(wc), PRED_SOURCES)),
        grade=pred_grade,
        privacy=SECRET_ARG,
        outputs=outputs_json,
        code=code("predict"),
    shell:
        "python -m ccgrade.predict patient --patient {wildcards.pid} --bundles {params.bundles}"
        " --volumes {input.volumes} --sources {params.sources:q} --grade {params.grade:q} {params.privacy}"
        " --outputs {params.outputs:q} > {log} 2>&1"


rule predict_table:
    input:
        summaries=expand(f"{PRED_DIR}/patients/{{pid}}/summary.json", pid=PRED_PATIENTS),
        internal=[f"{ccmatrix.cell_dir(c)}/predictions.tsv" for c in PRED_CELLS],  # the model's own test patients
    output:
        predictions=f"{PRED_DIR}/predictions.csv",
        predictions_md=f"{PRED_DIR}/predictions.md",
        metrics=f"{PRED_DIR}/metrics.csv",
        metrics_md=f"{PRED_DIR}/metrics.md",
    log:
        f"results/logs/predict/{PREDICT['name']}/table.log",
    benchmark:
        f"results/benchmarks/predict/{PREDICT['name']}/table.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        sheet=pred_sheet_json(),
        model=predict_model_name(),
        stats=stats_json(),
        outputs=outputs_json,
        code=code("predict"),
    shell:
        "python -m ccgrade.predict table --summaries {input.summaries} --sheet {params.sheet:q}"
        " --model {params.model:q} --stats {params.stats:q} --internal {input.internal}"
        " --outputs {params.outputs:q} > {log} 2>&1"


rule predict_privacy_scan:  # the new patients' outputs searched for their identifying values (README "Privacy")
    input:
        files=predict_files(),
        ingest=expand(f"{PRED_DIR}/ingest/{{pid}}/{{t}}.tsv", pid=PRED_PATIENTS, t=INGEST_TABLES),
        sources=PRIVACY_SOURCES,
    output:
        hits=f"{PRED_DIR}/privacy_scan.tsv",
        summary=f"{PRED_DIR}/privacy_scan.json",
    log:
        f"results/logs/predict/{PREDICT['name']}/privacy_scan.log",
    benchmark:
        f"results/benchmarks/predict/{PREDICT['name']}/privacy_scan.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        config=lambda wc: as_json(PUBLIC),
        mode=config["privacy"]["mode"],
        private=f"{PRIVATE}/predict/{PREDICT['name']}/privacy_scan_values.tsv",
        code=code("phiscan"),
    shell:
        "python -m ccgrade.phiscan --results results --sources {input.sources} --config {params.config:q}"
        " --mode {params.mode} --out {output.hits} --summary {output.summary} --private-out {params.private}"
        " --only {input.files} {input.ingest} > {log} 2>&1"


rule predict:  # every new patient graded: the table, the metrics (with grades), one page per patient, the scan
    input:
        predict_files(),
        f"{PRED_DIR}/privacy_scan.tsv" if PRED_PATIENTS else [],
