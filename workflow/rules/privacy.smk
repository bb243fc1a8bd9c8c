# The privacy scan (docs/privacy.md): every file under results/ searched, containers opened, for every
# identifying value of the cohort's DICOM headers and every component of the user's input paths. Under
# privacy.mode pseudonymise a hit fails the run (the hits are listed; the values themselves never are).


rule privacy_scan:
    input:
        targets=all_targets(),
        sources=PRIVACY_SOURCES_INPUT,
    output:
        hits=report("results/privacy_scan.tsv", caption="../report/privacy.rst", category="Provenance"),
        summary="results/privacy_scan.json",
    log:
        "results/logs/privacy_scan.log",
    benchmark:
        "results/benchmarks/privacy_scan.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        **PHISCAN_PARAMS,
        private=f"{PRIVATE}/privacy_scan_values.tsv",  # the hits with their values (kept if the run fails)
    shell:
        PHISCAN_SHELL


rule privacy_report:  # after `snakemake --report results/report.html`: the report page scanned too
    input:
        report="results/report.html",
        sources=PRIVACY_SOURCES_INPUT,
    output:
        hits="results/privacy_scan_report.tsv",
        summary="results/privacy_scan_report.json",
    log:
        "results/logs/privacy_report.log",
    benchmark:
        "results/benchmarks/privacy_report.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        **PHISCAN_PARAMS,
        private=f"{PRIVATE}/privacy_scan_report_values.tsv",
    shell:
        PHISCAN_SHELL
