# DICOM ingest: header index + phase assignment (reviewable), then HU volumes as NIfTI.


rule index_series:
    input:
        dicom=dicom_dir,
        images=lambda wc: list(phase_images(wc).values()),
        phase_map=phase_map_input,
        secret=secret_input,
    output:
        slices="results/ingest/{pid}/slices.tsv",
        series="results/ingest/{pid}/series.tsv",
        phases="results/ingest/{pid}/phases.tsv",
        exclusions="results/ingest/{pid}/exclusions.tsv",
        private=f"{PRIVATE}/ingest/{{pid}}.tsv" if PSEUDONYMISE else [],
    log:
        "results/logs/index_series/{pid}.log",
    benchmark:
        "results/benchmarks/index_series/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    params:
        ingest=as_json(config["ingest"]),
        phases=",".join(PHASES),
        sources=ingest_args,
        outdir=lambda wc, output: os.path.dirname(output.slices),
        privacy=lambda wc, output: f"{SECRET_ARG} --private {output.private}" if PSEUDONYMISE else "",
        code=code("ingest"),
    shell:
        "python -m ccgrade.ingest index --patient {wildcards.pid} {params.sources}"
        " --ingest {params.ingest:q} --phases {params.phases} --outdir {params.outdir}"
        " {params.privacy} > {log} 2>&1"


rule convert_volumes:
    input:
        dicom=dicom_dir,
        images=lambda wc: list(phase_images(wc).values()),
        slices="results/ingest/{pid}/slices.tsv",
        phases="results/ingest/{pid}/phases.tsv",
        secret=secret_input,
    output:
        directory("results/volumes/{pid}"),
    log:
        "results/logs/convert_volumes/{pid}.log",
    benchmark:
        "results/benchmarks/convert_volumes/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        sources=ingest_args,
        privacy=SECRET_ARG,
        index_dir=lambda wc, input: os.path.dirname(input.slices),
        code=code("ingest"),
    shell:
        "python -m ccgrade.ingest convert --patient {wildcards.pid} {params.sources}"
        " --index-dir {params.index_dir} --outdir {output} {params.privacy} > {log} 2>&1"


rule series_table:
    input:
        series=expand("results/ingest/{pid}/series.tsv", pid=IMAGED),
        phases=expand("results/ingest/{pid}/phases.tsv", pid=IMAGED),
    output:
        series=report("results/ingest/series.tsv", caption="../report/series.rst", category="Ingest"),
        phases="results/ingest/phase_status.tsv",
    log:
        "results/logs/series_table.log",
    benchmark:
        "results/benchmarks/series_table.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        code=code("collect"),
    shell:
        "python -m ccgrade.collect series --series {input.series} --phases {input.phases}"
        " --out-series {output.series} --out-phases {output.phases} > {log} 2>&1"


rule privacy_lookup:  # pseudonym -> original, for quality control: outside results/ (README "Privacy")
    input:
        parts=expand(f"{PRIVATE}/ingest/{{pid}}.tsv", pid=IMAGED),
    output:
        f"{PRIVATE}/lookup.tsv",
    log:
        f"{PRIVATE}/logs/privacy_lookup.log",
    conda:
        "../../envs/ccgrade.yaml"
    params:
        code=code("privacy"),
    shell:
        "python -m ccgrade.privacy lookup --parts {input.parts} --out {output} > {log} 2>&1"
