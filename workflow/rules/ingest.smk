# DICOM ingest: header index + phase assignment (reviewable), then HU volumes as NIfTI, in one job a patient
# (each file's header bytes are read by the index, its pixel bytes by the conversion, from the indexed offset).


rule ingest_patient:  # one job a patient: the header index (reviewable tables), then the chosen series' pixels
    input:
        dicom=dicom_dir,
        images=lambda wc: list(phase_images(wc).values()),
        phase_map=phase_map_input,
        secret=secret_input,
    output:
        **ingest_outputs(ccpaths.INGEST_DIR, f"{PRIVATE}/ingest/{{pid}}.tsv", ccpaths.VOLUMES),
    log:
        "results/logs/ingest_patient/{pid}.log",
    benchmark:
        "results/benchmarks/ingest_patient/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **INGEST_PARAMS,
        sources=ingest_args,
    shell:
        INGEST_SHELL


rule series_table:
    input:
        series=expand(f"{ccpaths.INGEST_DIR}/series.tsv", pid=IMAGED),
        phases=expand(f"{ccpaths.INGEST_DIR}/phases.tsv", pid=IMAGED),
    output:
        series=report(ccpaths.SERIES_TABLE, caption="../report/series.rst", category="Ingest"),
        phases=ccpaths.PHASE_STATUS,
    log:
        "results/logs/series_table.log",
    benchmark:
        "results/benchmarks/series_table.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        code=code("preprocess.collect"),
    shell:
        "python -m ccgrade.preprocess.collect series --series {input.series} --phases {input.phases}"
        " --out-series {output.series} --out-phases {output.phases} > {log} 2>&1"


rule privacy_lookup:  # pseudonym -> original, for quality control: outside results/ (docs/privacy.md)
    input:
        parts=expand(f"{PRIVATE}/ingest/{{pid}}.tsv", pid=IMAGED),
    output:
        f"{PRIVATE}/lookup.tsv",
    log:
        f"{PRIVATE}/logs/privacy_lookup.log",
    conda:
        "../../envs/ccgrade.yaml"
    params:
        code=code("privacy.pseudonyms"),
    shell:
        "python -m ccgrade.privacy lookup --parts {input.parts} --out {output} > {log} 2>&1"
