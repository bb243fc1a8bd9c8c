# The model matrix: one cached job per (study, architecture, phase set, seed), each asking for gpu=1,
# then the studies' performance tables and figures from the cells' test-set predictions.

STUDIES = config.get("training", {}).get("studies", {}) if IMAGED else {}
MODEL_DIR = "results/models/{study}/{arch}/{phases}/s{seed}"


wildcard_constraints:
    study="|".join(STUDIES) or "none",
    arch="resnet18|resnet34|resnet50|se_resnet34|resnet3d18",
    phases="up|cmp|np|ep|all|stack",
    seed=r"\d+",


def model_cells(study):
    st = STUDIES[study]
    return [
        {"study": study, "arch": arch, "phases": ph, "seed": seed}
        for arch, sets in st["models"].items()
        for ph in sets
        for seed in st["seeds"]
    ]


def train_crops(wildcards):
    st = STUDIES[wildcards.study]
    targets = PHASES if wildcards.phases == "all" else [wildcards.phases]
    return expand("results/crops/{roi}/{pid}/{t}.npz", roi=st["roi"], pid=IMAGED, t=targets)


def train_hp(wildcards):
    """The cell's hyperparameters: its study's preset plus that architecture's overrides (only)."""
    st = STUDIES[wildcards.study]
    hp = dict(config["training"]["presets"][st["preset"]])
    hp.update(st.get("overrides", {}).get(wildcards.arch, {}))
    hp["arch"] = wildcards.arch
    return as_json(hp)


rule train_model:
    input:
        crops=train_crops,
        cohort=COHORT_SHEET,
        split=lambda wc: f"results/splits/{STUDIES[wc.study]['scheme']}.json",
        code=[code("train"), code("models")],
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
        f"results/logs/train/{{study}}/{{arch}}/{{phases}}/s{{seed}}.log",
    benchmark:
        f"results/benchmarks/train/{{study}}/{{arch}}/{{phases}}/s{{seed}}.tsv"
    shell:
        "python -m ccgrade.train --cohort {input.cohort} --split {input.split} --fold 0 --crops {input.crops}"
        " --hp {params.hp:q} --seed {wildcards.seed} --device {params.device} --threads {threads}"
        " --outdir {params.outdir} > {log} 2>&1"


rule cui_tables:
    input:
        predictions=lambda wc: [f"{MODEL_DIR}/predictions.tsv".format(**c) for c in model_cells("cui")],
        code=[code("evaluate"), code("stats")],
    output:
        t3=report("results/tables/cui_table3.csv", caption="../report/cui_tables.rst", category="Models",
                  labels={"table": "Cui Table 3"}),
        t3md="results/tables/cui_table3.md",
        t4=report("results/tables/cui_table4.csv", caption="../report/cui_tables.rst", category="Models",
                  labels={"table": "Cui Table 4"}),
        t4md="results/tables/cui_table4.md",
        roc=report("results/figures/cui_roc.png", caption="../report/cui_roc.rst", category="Models",
                   labels={"figure": "Cui Figures 2-4"}),
        confusion="results/figures/cui_confusion.png",
    params:
        models=lambda wc: as_json(
            [{**c, "predictions": f"{MODEL_DIR}/predictions.tsv".format(**c)} for c in model_cells("cui")]
        ),
    log:
        "results/logs/cui_tables.log",
    shell:
        "python -m ccgrade.evaluate --study cui --models {params.models:q} --tables results/tables"
        " --figures results/figures > {log} 2>&1"
