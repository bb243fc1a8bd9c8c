# The privacy scan (README "Privacy"): every file under results/ searched, containers opened, for every
# identifying value of the cohort's DICOM headers and every component of the user's input paths. Under
# privacy.mode pseudonymise a hit fails the run (the hits are listed; the values themselves never are).


rule privacy_scan:
    input:
        targets=all_targets(),
        sources=PRIVACY_SOURCES,
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
        config=lambda wc: as_json(PUBLIC),
        mode=config["privacy"]["mode"],
        private=f"{PRIVATE}/privacy_scan_values.tsv",  # the hits with their values (kept if the run fails)
        code=code("phiscan"),
    shell:
        "python -m ccgrade.phiscan --results results --sources {input.sources} --config {params.config:q}"
        " --mode {params.mode} --out {output.hits} --summary {output.summary} --private-out {params.private}"
        " > {log} 2>&1"


rule privacy_report:  # after `snakemake --report results/report.html`: the report page scanned too
    input:
        report="results/report.html",
        sources=PRIVACY_SOURCES,
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
        config=lambda wc: as_json(PUBLIC),
        mode=config["privacy"]["mode"],
        private=f"{PRIVATE}/privacy_scan_report_values.tsv",
        quarantine=f"{PRIVATE}/quarantine",  # a page with a hit leaves results/ (README "Privacy")
        code=code("phiscan"),
    shell:
        "python -m ccgrade.phiscan --results results --sources {input.sources} --config {params.config:q}"
        " --mode {params.mode} --out {output.hits} --summary {output.summary} --private-out {params.private}"
        " --only {input.report} --quarantine {params.quarantine} > {log} 2>&1"
