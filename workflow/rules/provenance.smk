# The run's provenance beside its results: package versions, the config's hash, the code's git commit.
# Its params are the config and the commit, so a changed config or a new commit rewrites it (and
# nothing else reruns because of it).


rule provenance:
    output:
        report("results/provenance.json", caption="../report/provenance.rst", category="Provenance"),
    log:
        "results/logs/provenance.log",
    benchmark:
        "results/benchmarks/provenance.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        # the configs' hashes are taken here; the job sees the derived config without the user's paths
        hashes=lambda wc: as_json(
            {"config_sha256": ccprov.config_hash(INPUT_CONFIG), "derived_config_sha256": ccprov.config_hash(config)}
        ),
        derived=lambda wc: as_json(PUBLIC),
        git=as_json(GIT),
        code=code("report.provenance"),
    shell:
        "python -m ccgrade.report.provenance --hashes {params.hashes:q} --derived {params.derived:q} --git {params.git:q}"
        " --out {output} > {log} 2>&1"


# The reporting checklist (docs/checklist.md): CLAIM and TRIPOD+AI, each item answered from the
# run's own files or marked for the authors; the Markdown goes into a manuscript's supplement.


rule checklist:
    input:
        unpack(checklist_inputs),
    output:
        csv=report("results/checklist.csv", caption="../report/checklist.rst", category="Reporting checklist"),
        md="results/checklist.md",
    log:
        "results/logs/checklist.log",
    benchmark:
        "results/benchmarks/checklist.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=lambda wc: as_json(PUBLIC),
        files=lambda wc, input: as_json(checklist_files(input)),
        studies=lambda wc: as_json(checklist_studies()),
        code=code("report.checklist"),
    shell:
        "python -m ccgrade.report.checklist --config {params.config:q} --files {params.files:q}"
        " --studies {params.studies:q} --csv {output.csv} --md {output.md} > {log} 2>&1"
