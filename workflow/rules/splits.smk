# Patient-level splits (no patient crosses sets; asserted in ccgrade.preprocess.splits).


rule split:
    input:
        cohort=COHORT_SHEET,
        phases=expand(f"{ccpaths.INGEST_DIR}/phases.tsv", pid=IMAGED),
    output:
        json=ccpaths.SPLIT_JSON,
        tsv=report(ccpaths.SPLIT_TSV, caption="../report/splits.rst", category="Splits"),
    log:
        "results/logs/split/{scheme}.log",
    benchmark:
        "results/benchmarks/split/{scheme}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        config=split_params,
        code=code("preprocess.splits"),
    shell:
        "python -m ccgrade.preprocess.splits --cohort {input.cohort:q} --config {params.config:q} --scheme {wildcards.scheme}"
        " --phase-tables {input.phases} --json {output.json} --tsv {output.tsv} > {log} 2>&1"
