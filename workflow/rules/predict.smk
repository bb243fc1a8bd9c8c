# Grade new patients with a trained model (docs/deploy.md): the new patients (predict.sheet, or
# the demo's new synthetic ones) are ingested as the cohort is, then each is cropped with exactly the
# preprocessing its model's bundles record and graded by them (an ensemble: the fold models averaged); one
# page per patient, then the table (and, with grades, the metrics). Nothing is retrained. Target: predict


rule graded_ingest:  # predict's new patients and the external centre's (docs/deploy.md), by {group}
    input:
        dicom=lambda wc: dicom_dir(wc, GRADED[wc.group][0]),
        images=lambda wc: list(phase_images(wc, GRADED[wc.group][1]).values()),
        phase_map=phase_map_input,
        secret=secret_input,
    output:
        **ingest_outputs(ccpaths.GRADED_INGEST_DIR, f"{PRIVATE}/{{group}}/ingest/{{pid}}.tsv", ccpaths.GRADED_VOLUMES),
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
        **INGEST_PARAMS,
        sources=lambda wc: ingest_args(wc, *GRADED[wc.group]),
    shell:
        INGEST_SHELL


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
        code=code("deploy.predict"),
    shell:
        "python -m ccgrade.deploy.predict patient --patient {wildcards.pid} --bundles {params.bundles}"
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
        code=code("deploy.predict"),
    shell:
        "python -m ccgrade.deploy.predict table --summaries {input.summaries} --sheet {params.sheet:q}"
        " --model {params.model:q} --stats {params.stats:q} --internal {input.internal}"
        " --outputs {params.outputs:q} > {log} 2>&1"


rule predict_privacy_scan:  # the new patients' outputs searched for their identifying values (docs/privacy.md)
    input:
        files=predict_files(),
        ingest=expand(f"{PRED_DIR}/ingest/{{pid}}/{{t}}.tsv", pid=PRED_PATIENTS, t=INGEST_TABLES),
        sources=PRIVACY_SOURCES_INPUT,
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
        **PHISCAN_PARAMS,
        private=f"{PRIVATE}/predict/{PREDICT['name']}/privacy_scan_values.tsv",
    shell:
        PHISCAN_SHELL


rule predict:  # every new patient graded: the table, the metrics (with grades), one page per patient, the scan
    input:
        predict_files(),
        f"{PRED_DIR}/privacy_scan.tsv" if PRED_PATIENTS else [],
