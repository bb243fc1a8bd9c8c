# The run's provenance beside its results: package versions, the config's hash, the code's git commit.
# Its params are the config hash and the commit, so a changed config or a new commit rewrites it (and
# nothing else reruns because of it).

from ccgrade import provenance as ccprov  # noqa: E402

CONFIG_SHA256 = ccprov.config_hash(config)
GIT = ccprov.git_commit(REPO)


rule provenance:
    input:
        code=code("provenance"),
    output:
        report("results/provenance.json", caption="../report/provenance.rst", category="Provenance"),
    params:
        config=lambda wc: as_json(config),
        config_sha256=CONFIG_SHA256,
        git=as_json(GIT),
        repo=str(REPO),
    log:
        "results/logs/provenance.log",
    shell:
        "python -m ccgrade.provenance --config {params.config:q} --git {params.git:q} --repo {params.repo:q}"
        " --out {output} > {log} 2>&1"
