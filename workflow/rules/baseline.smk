# Baseline characteristics: low vs high grade (Cui Table 2) and train vs test (Li Table 1).


rule baseline_grade:
    input:
        cohort=COHORT_TABLE,
        split=ccpaths.SPLIT_TSV.format(scheme=TT_SPLIT),
    output:
        csv=report(
            "results/tables/baseline_low_vs_high.csv",
            caption="../report/baseline_grade.rst",
            category="Cui et al.",
            labels={"table": "Cui Table 2"},
        ),
        md="results/tables/baseline_low_vs_high.md",
    log:
        "results/logs/baseline_grade.log",
    benchmark:
        "results/benchmarks/baseline_grade.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        config=baseline_params,
        code=code("evaluate.baseline"),
    shell:
        "python -m ccgrade.evaluate.baseline --cohort {input.cohort:q} --split {input.split} --config {params.config:q}"
        " --by grade --out {output.csv} --md {output.md} > {log} 2>&1"


rule baseline_split:
    input:
        cohort=COHORT_TABLE,
        split=ccpaths.SPLIT_TSV,
    output:
        csv=report(
            "results/tables/baseline_train_vs_test_{scheme}.csv",
            caption="../report/baseline_split.rst",
            category="Li et al.",
            labels={"table": "Li Table 1", "split": "{scheme}"},
        ),
        md="results/tables/baseline_train_vs_test_{scheme}.md",
    log:
        "results/logs/baseline_split/{scheme}.log",
    benchmark:
        "results/benchmarks/baseline_split/{scheme}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        config=baseline_params,
        code=code("evaluate.baseline"),
    shell:
        "python -m ccgrade.evaluate.baseline --cohort {input.cohort:q} --split {input.split} --config {params.config:q}"
        " --by split --out {output.csv} --md {output.md} > {log} 2>&1"
