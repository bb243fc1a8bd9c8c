# The model matrix: one cached job per (study, architecture, phase set, variant, fold, seed), each asking
# for gpu=1, then each study's performance tables and figures from its cells' predictions.


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
    log:
        f"results/logs/train/{{study}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.log",
    benchmark:
        f"results/benchmarks/train/{{study}}/{{arch}}/{{phases}}/{{variant}}/fold{{fold}}/seed{{seed}}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=240,
    params:
        hp=train_hp,
        device=config["training"]["device"],
        outdir=MODEL_DIR,
    shell:
        "python -m ccgrade.train --cohort {input.cohort} --split {input.split} --fold {wildcards.fold}"
        " --crops {input.crops} --hp {params.hp:q} --seed {wildcards.seed} --device {params.device}"
        " --threads {threads} --outdir {params.outdir} > {log} 2>&1"


rule cui_tables:
    input:
        predictions=lambda wc: cell_files("cui", "predictions.tsv"),
        code=code("evaluate"),
    output:
        t3=report(
            "results/tables/cui_table3.csv",
            caption="../report/cui_tables.rst",
            category="Cui et al.",
            labels={"table": "Cui Table 3"},
        ),
        t3md="results/tables/cui_table3.md",
        t4=report(
            "results/tables/cui_table4.csv",
            caption="../report/cui_tables.rst",
            category="Cui et al.",
            labels={"table": "Cui Table 4"},
        ),
        t4md="results/tables/cui_table4.md",
        roc=report(
            "results/figures/cui_roc.png",
            caption="../report/cui_roc.rst",
            category="Cui et al.",
            labels={"figure": "Cui Figures 2-4"},
        ),
        confusion=report(
            "results/figures/cui_confusion.png",
            caption="../report/cui_roc.rst",
            category="Cui et al.",
            labels={"figure": "Cui Figures 2-4 (confusion matrices)"},
        ),
    log:
        "results/logs/cui_tables.log",
    conda:
        "../../envs/ccgrade.yaml"
    params:
        models=lambda wc: study_models_json("cui"),
        stats=stats_json(),
        pinned=pinned_json("cui"),
    shell:
        "python -m ccgrade.evaluate --study cui --models {params.models:q} --tables results/tables"
        " --figures results/figures --stats {params.stats:q} --pinned {params.pinned:q} > {log} 2>&1"


rule li_tables:
    input:
        predictions=lambda wc: cell_files("li", "predictions.tsv"),
        code=code("evaluate"),
    output:
        t2=report(
            "results/tables/li_table2.csv",
            caption="../report/li_tables.rst",
            category="Li et al.",
            labels={"table": "Li Table 2"},
        ),
        t2md="results/tables/li_table2.md",
        comparisons=report(
            "results/tables/li_comparisons.csv",
            caption="../report/li_tables.rst",
            category="Li et al.",
            labels={"table": "Li Table 2 tests"},
        ),
        comparisonsmd="results/tables/li_comparisons.md",
        t3=report(
            "results/tables/li_table3.csv",
            caption="../report/li_tables.rst",
            category="Li et al.",
            labels={"table": "Li Table 3"},
        ),
        t3md="results/tables/li_table3.md",
        mc=report(
            "results/tables/li_mcnemar.csv",
            caption="../report/li_tables.rst",
            category="Li et al.",
            labels={"table": "Li strong vs weak"},
        ),
        mcmd="results/tables/li_mcnemar.md",
        roc=report(
            "results/figures/li_roc.png",
            caption="../report/li_roc.rst",
            category="Li et al.",
            labels={"figure": "Li Figures 4-5"},
        ),
        confusion=report(
            "results/figures/li_confusion.png",
            caption="../report/li_roc.rst",
            category="Li et al.",
            labels={"figure": "Li Figures A1-A2"},
        ),
    log:
        "results/logs/li_tables.log",
    conda:
        "../../envs/ccgrade.yaml"
    params:
        models=lambda wc: study_models_json("li"),
        stats=stats_json(),
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
        png=report(
            "results/figures/li_heatmaps.png",
            caption="../report/li_heatmaps.rst",
            category="Li et al.",
            labels={"figure": "Li Figure 6"},
        ),
        pdf="results/figures/li_heatmaps.pdf",
    log:
        "results/logs/li_heatmaps.log",
    conda:
        "../../envs/ccgrade.yaml"
    params:
        models=lambda wc: study_models_json("li"),
        n=config["figures"]["heatmap_patients"],
    shell:
        "python -m ccgrade.heatmaps --models {params.models:q} --crops {input.crops} --patients {params.n}"
        " --out results/figures/li_heatmaps > {log} 2>&1"


rule dai_tables:
    input:
        predictions=lambda wc: cell_files("dai", "predictions.tsv"),
        code=code("evaluate"),
    output:
        t5=report(
            "results/tables/dai_table5.csv",
            caption="../report/dai_tables.rst",
            category="Dai",
            labels={"table": "Dai Table 5"},
        ),
        t5md="results/tables/dai_table5.md",
        roc=report(
            "results/figures/dai_roc.png",
            caption="../report/dai_tables.rst",
            category="Dai",
            labels={"figure": "Dai Figures 9-10"},
        ),
        confusion=report(
            "results/figures/dai_confusion.png",
            caption="../report/dai_tables.rst",
            category="Dai",
            labels={"figure": "Dai Figure 10 (confusion matrices)"},
        ),
    log:
        "results/logs/dai_tables.log",
    conda:
        "../../envs/ccgrade.yaml"
    params:
        models=lambda wc: study_models_json("dai"),
        stats=stats_json(),
    shell:
        "python -m ccgrade.evaluate --study dai --models {params.models:q} --tables results/tables"
        " --figures results/figures --stats {params.stats:q} > {log} 2>&1"
