# The analysis cohort: the sheet (or an adapter's table) without file paths (results/cohort/sheet.tsv,
# read by the splits), plus tumour geometry measured on the masks (volume, diameters, ROI extents,
# side): results/cohort/cohort.tsv, read by the baseline tables. A mask edit thus never reshuffles splits.


rule kits_sheet:
    input:
        json=KITS_JSON if SOURCE == "kits" else [],
    output:
        sheet="results/cohort/kits_sheet.tsv",
        left_out="results/cohort/kits_left_out.tsv",
    log:
        "results/logs/kits_sheet.log",
    benchmark:
        "results/benchmarks/kits_sheet.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        root=KITS["root"] if KITS else "",
        histology=KITS["histology"] if KITS else "",
        code=code("ingest.kits"),
    shell:
        "python -m ccgrade.ingest.kits --root {params.root:q} --histology {params.histology}"
        " --sheet {output.sheet} --left-out {output.left_out} > {log} 2>&1"


rule tumour_geometry:
    input:
        unpack(geometry_inputs),
        secret=secret_input,
    output:
        "results/geometry/{pid}.tsv",
    log:
        "results/logs/tumour_geometry/{pid}.log",
    benchmark:
        "results/benchmarks/tumour_geometry/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=3000,
        runtime=5,
    params:
        geometry=as_json(
            {
                **config["geometry"],
                "tumour_label": config["mask_label"],
                "rtstruct_roi": config["rtstruct_roi"],
                "rtstruct_link": config["rtstruct_link"],
            }
        ),
        phase=lambda wc: geometry_phase(wc.pid),
        args=geometry_args,
        privacy=SECRET_ARG,
        code=code("preprocess.geometry"),
    shell:
        "python -m ccgrade.preprocess.geometry --patient {wildcards.pid} --phase {params.phase} {params.args}"
        " --params {params.geometry:q} --out {output} {params.privacy} > {log} 2>&1"


rule geometry_table:
    input:
        tables=expand("results/geometry/{pid}.tsv", pid=MEASURED),
    output:
        csv=report("results/tables/tumour_geometry.csv", caption="../report/geometry.rst", category="Cohort"),
        md="results/tables/tumour_geometry.md",
    log:
        "results/logs/geometry_table.log",
    benchmark:
        "results/benchmarks/geometry_table.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        code=code("preprocess.collect"),
    shell:
        "python -m ccgrade.preprocess.collect geometry --tables {input.tables} --out {output.csv} --md {output.md} > {log} 2>&1"


rule cohort_sheet:
    input:
        sheet=SHEET_INPUT,
    output:
        COHORT_SHEET,
    log:
        "results/logs/cohort_sheet.log",
    benchmark:
        "results/benchmarks/cohort_sheet.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        config=as_json({"cohort": PUBLIC["cohort"], "columns": COHORT_COLUMNS}),
        code=code("config.cohort", "preprocess.collect"),
    shell:
        "python -m ccgrade.preprocess.collect cohort --sheet {input.sheet:q} --config {params.config:q} --out {output} > {log} 2>&1"


rule cohort_table:
    input:
        sheet=COHORT_SHEET,
        geometry=expand("results/geometry/{pid}.tsv", pid=MEASURED),
    output:
        report(COHORT_TABLE, caption="../report/cohort.rst", category="Cohort"),
    log:
        "results/logs/cohort_table.log",
    benchmark:
        "results/benchmarks/cohort_table.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        config=as_json({"cohort": PUBLIC["cohort"], "columns": COHORT_COLUMNS}),
        code=code("config.cohort", "preprocess.collect"),
    shell:
        "python -m ccgrade.preprocess.collect cohort --sheet {input.sheet:q} --config {params.config:q}"
        " --geometry {input.geometry} --out {output} > {log} 2>&1"
