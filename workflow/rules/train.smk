# The model matrix: one cached job per (study, architecture, phase set, variant, fold, seed), each asking
# for gpu=1, then each study's performance tables and figures from its cells' predictions.

from ccgrade import matrix as ccmatrix  # noqa: E402

STUDIES = config.get("training", {}).get("studies", {}) if IMAGED else {}
MODEL_DIR = ccmatrix.CELL_DIR
PAPER_TABLES = {  # the studies whose paper tables are built, and their outputs
    "cui": ["results/tables/cui_table3.csv", "results/tables/cui_table4.csv", "results/figures/cui_roc.png"],
    "li": ["results/tables/li_table2.csv", "results/tables/li_comparisons.csv", "results/tables/li_table3.csv",
           "results/tables/li_mcnemar.csv",
           "results/figures/li_roc.png", "results/figures/li_heatmaps.png"],
    "dai": ["results/tables/dai_table5.csv", "results/figures/dai_roc.png"],
}


wildcard_constraints:
    study="|".join(STUDIES) or "none",
    arch="resnet18|resnet34|resnet50|se_resnet34|resnet3d18",
    phases="[a-z0-9_]+",
    variant="[a-z0-9_]+",
    fold=r"\d+",
    seed=r"\d+",


def study_cells(study):
    return ccmatrix.cells({**config, "training": {**config["training"], "studies": STUDIES}}, study)


def cell_files(study, name):
    return [f"{MODEL_DIR}/{name}".format(**c) for c in study_cells(study)]


def cell_crops(study, arch, phases):
    roi = ccmatrix.model_roi(STUDIES[study], arch)
    return expand("results/crops/{roi}/{pid}/{t}.npz", roi=roi, pid=IMAGED, t=ccmatrix.crop_targets(phases, PHASES))


def train_crops(wildcards):
    return cell_crops(wildcards.study, wildcards.arch, wildcards.phases)


def train_hp(wildcards):
    """The cell's hyperparameters: preset, its architecture's overrides, its variant's (only)."""
    return as_json(ccmatrix.hyper(config, wildcards.study, wildcards.arch, wildcards.variant))


def study_models_json(study):
    return as_json([{**c, "dir": ccmatrix.cell_dir(c), "hp": ccmatrix.hyper(config, study, c["arch"], c["variant"])}
                    for c in study_cells(study)])


def stats_json():
    """The statistics settings every paper table is built with (a param: changing them reruns the tables)."""
    return as_json(config.get("statistics", {}))


def pinned_json(study):
    """The phase sets a study's config fixes per architecture (Cui Table 4 says they were not selected)."""
    return as_json({a: list(v) if isinstance(v, list) else [v.get("phases")] if isinstance(v, dict) else v
                    for a, v in STUDIES.get(study, {}).get("models", {}).items()})


def study_targets():
    return [f for s in STUDIES if s in PAPER_TABLES for f in PAPER_TABLES[s]]


rule train_model:
    input:
        crops=train_crops,
        cohort=COHORT_SHEET,
        split=lambda wc: f"results/splits/{STUDIES[wc.study]['scheme']}.json",
        code=code("train"),
    output:
        meta=f"{MODEL_DIR}/meta.json",
        predictions=f"{MODEL_DIR}/predictions.tsv",
        epochs=f"{MODEL_DIR}/epochs.tsv",
        weights=f"{MODEL_DIR}/best.pt",
        curve=f"{MODEL_DIR}/curve.png",
    params:
        hp=train_hp,
        device=config.get("training", {}).get("device", "auto"),
        outdir=MODEL_DIR,
    threads: 2
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=240,
    log:
        f"results/logs/train/{{study}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.log",
    benchmark:
        f"results/benchmarks/train/{{study}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.tsv"
    shell:
        "python -m ccgrade.train --cohort {input.cohort} --split {input.split} --fold {wildcards.fold}"
        " --crops {input.crops} --hp {params.hp:q} --seed {wildcards.seed} --device {params.device}"
        " --threads {threads} --outdir {params.outdir} > {log} 2>&1"


rule cui_tables:
    input:
        predictions=lambda wc: cell_files("cui", "predictions.tsv"),
        code=code("evaluate"),
    output:
        t3=report("results/tables/cui_table3.csv", caption="../report/cui_tables.rst", category="Cui et al.",
                  labels={"table": "Cui Table 3"}),
        t3md="results/tables/cui_table3.md",
        t4=report("results/tables/cui_table4.csv", caption="../report/cui_tables.rst", category="Cui et al.",
                  labels={"table": "Cui Table 4"}),
        t4md="results/tables/cui_table4.md",
        roc=report("results/figures/cui_roc.png", caption="../report/cui_roc.rst", category="Cui et al.",
                   labels={"figure": "Cui Figures 2-4"}),
        confusion=report("results/figures/cui_confusion.png", caption="../report/cui_roc.rst", category="Cui et al.",
                         labels={"figure": "Cui Figures 2-4 (confusion matrices)"}),
    params:
        models=lambda wc: study_models_json("cui"),
        stats=stats_json(),
        pinned=pinned_json("cui"),
    log:
        "results/logs/cui_tables.log",
    shell:
        "python -m ccgrade.evaluate --study cui --models {params.models:q} --tables results/tables"
        " --figures results/figures --stats {params.stats:q} --pinned {params.pinned:q} > {log} 2>&1"


rule li_tables:
    input:
        predictions=lambda wc: cell_files("li", "predictions.tsv"),
        code=code("evaluate"),
    output:
        t2=report("results/tables/li_table2.csv", caption="../report/li_tables.rst", category="Li et al.",
                  labels={"table": "Li Table 2"}),
        t2md="results/tables/li_table2.md",
        comparisons=report("results/tables/li_comparisons.csv", caption="../report/li_tables.rst", category="Li et al.",
                           labels={"table": "Li Table 2 tests"}),
        comparisonsmd="results/tables/li_comparisons.md",
        t3=report("results/tables/li_table3.csv", caption="../report/li_tables.rst", category="Li et al.",
                  labels={"table": "Li Table 3"}),
        t3md="results/tables/li_table3.md",
        mc=report("results/tables/li_mcnemar.csv", caption="../report/li_tables.rst", category="Li et al.",
                  labels={"table": "Li strong vs weak"}),
        mcmd="results/tables/li_mcnemar.md",
        roc=report("results/figures/li_roc.png", caption="../report/li_roc.rst", category="Li et al.",
                   labels={"figure": "Li Figures 4-5"}),
        confusion=report("results/figures/li_confusion.png", caption="../report/li_roc.rst", category="Li et al.",
                         labels={"figure": "Li Figures A1-A2"}),
    params:
        models=lambda wc: study_models_json("li"),
        stats=stats_json(),
    log:
        "results/logs/li_tables.log",
    shell:
        "python -m ccgrade.evaluate --study li --models {params.models:q} --tables results/tables"
        " --figures results/figures --stats {params.stats:q} > {log} 2>&1"


rule li_heatmaps:
    input:
        weights=lambda wc: cell_files("li", "best.pt"),
        predictions=lambda wc: cell_files("li", "predictions.tsv"),
        crops=lambda wc: sorted({f for c in study_cells("li") for f in cell_crops("li", c["arch"], c["phases"])}),
        code=code("heatmaps"),
    output:
        png=report("results/figures/li_heatmaps.png", caption="../report/li_heatmaps.rst", category="Li et al.",
                   labels={"figure": "Li Figure 6"}),
        pdf="results/figures/li_heatmaps.pdf",
    params:
        models=lambda wc: study_models_json("li"),
        n=config["figures"].get("heatmap_patients", 2),
    log:
        "results/logs/li_heatmaps.log",
    shell:
        "python -m ccgrade.heatmaps --models {params.models:q} --crops {input.crops} --patients {params.n}"
        " --out results/figures/li_heatmaps > {log} 2>&1"


rule dai_tables:
    input:
        predictions=lambda wc: cell_files("dai", "predictions.tsv"),
        code=code("evaluate"),
    output:
        t5=report("results/tables/dai_table5.csv", caption="../report/dai_tables.rst", category="Dai",
                  labels={"table": "Dai Table 5"}),
        t5md="results/tables/dai_table5.md",
        roc=report("results/figures/dai_roc.png", caption="../report/dai_tables.rst", category="Dai",
                   labels={"figure": "Dai Figures 9-10"}),
        confusion=report("results/figures/dai_confusion.png", caption="../report/dai_tables.rst", category="Dai",
                         labels={"figure": "Dai Figure 10 (confusion matrices)"}),
    params:
        models=lambda wc: study_models_json("dai"),
        stats=stats_json(),
    log:
        "results/logs/dai_tables.log",
    shell:
        "python -m ccgrade.evaluate --study dai --models {params.models:q} --tables results/tables"
        " --figures results/figures --stats {params.stats:q} > {log} 2>&1"
