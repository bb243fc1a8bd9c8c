# External validation (README "External validation"): every model of every study, trained on the main cohort,
# evaluated unchanged on another centre's patients (external.sheet, or the demo's shifted centre). They are
# ingested as predict's new patients are (rules graded_index, graded_volumes: results/external/<name>/); each
# is graded by every bundle of a study, then the study's external table and figure. Part of the default target.


rule external_patient:
    input:
        volumes=f"{EXT_DIR}/volumes/{{pid}}",
        annotations=ext_annotations,
        weights=lambda wc: ext_bundles(wc.study, "weights.pt"),
        preprocess=lambda wc: ext_bundles(wc.study, "preprocess.json"),
        metadata=lambda wc: ext_bundles(wc.study, "metadata.json"),
        secret=secret_input,
        code=code("external"),
    output:
        f"{EXT_DIR}/{{study}}/patients/{{pid}}.tsv",
    log:
        f"results/logs/external/{EXT_NAME}/{{study}}/{{pid}}.log",
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=3000,
        runtime=15,
    params:
        bundles=lambda wc, input: " ".join(os.path.dirname(f) for f in input.metadata),
        sources=lambda wc: as_json(ext_sources(wc)),
        privacy=SECRET_ARG,
    shell:
        "python -m ccgrade.external patient --patient {wildcards.pid} --bundles {params.bundles}"
        " --volumes {input.volumes} --sources {params.sources:q} {params.privacy} --out {output} > {log} 2>&1"


for _study in STUDY_KINDS if EXT_PATIENTS else []:

    rule:
        name:
            f"{_study}_external"
        input:
            images=expand(f"{EXT_DIR}/{_study}/patients/{{pid}}.tsv", pid=EXT_PATIENTS),
            predictions=cell_files(_study, "predictions.tsv"),  # the models' own test patients
            code=code("external"),
        output:
            **{
                role: (
                    reported(
                        path,
                        "external.rst",
                        "External validation",
                        f"External validation ({_study})",
                        "figure" if "figure" in role else "table",
                    )
                    if role in ("table", "figure")
                    else path
                )
                for role, path in external_outputs(_study).items()
            },
        log:
            f"results/logs/{_study}_external.log",
        conda:
            "../../envs/ccgrade.yaml"
        params:
            sheet=pred_sheet_json(EXT_RECORDS),
            models=study_models_json(_study),
            study=_study,
            centre=EXT_NAME,
            stats=stats_json(),
            outputs=outputs_json,
        shell:
            "python -m ccgrade.external table --images {input.images} --sheet {params.sheet:q}"
            " --models {params.models:q} --study {params.study} --centre {params.centre} --stats {params.stats:q}"
            " --outputs {params.outputs:q} > {log} 2>&1"
