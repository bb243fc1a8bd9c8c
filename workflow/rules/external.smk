# External validation (docs/deploy.md): every model of every study, trained on the main cohort,
# evaluated unchanged on another centre's patients (external.sheet, or the demo's shifted centre). They are
# ingested as predict's new patients are (rule graded_ingest: results/external/<name>/); they
# are graded by every bundle of a study (one job per study), then the study's external table and figure. Part
# of the default target.


rule external_grade:  # one job per study: each bundle loaded once, every external patient graded
    input:
        volumes=expand(f"{EXT_DIR}/volumes/{{pid}}", pid=EXT_PATIENTS),
        annotations=ext_annotations,
        weights=lambda wc: ext_bundles(wc.study, "weights.pt"),
        preprocess=lambda wc: ext_bundles(wc.study, "preprocess.json"),
        metadata=lambda wc: ext_bundles(wc.study, "metadata.json"),
        secret=secret_input,
    output:
        expand(f"{EXT_DIR}/{{{{study}}}}/patients/{{pid}}.tsv", pid=EXT_PATIENTS),
    log:
        f"results/logs/external/{EXT_NAME}/{{study}}.log",
    benchmark:
        f"results/benchmarks/external/{EXT_NAME}/{{study}}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        bundles=lambda wc, input: " ".join(os.path.dirname(f) for f in input.metadata),
        patients=ext_patient_args,
        out_dir=lambda wc, output: os.path.dirname(output[0]),
        privacy=SECRET_ARG,
        code=code("deploy.external"),
    shell:
        "python -m ccgrade.deploy.external grade --patient {params.patients} --bundles {params.bundles}"
        " --out-dir {params.out_dir} {params.privacy} > {log} 2>&1"


for _study in STUDY_KINDS if EXT_PATIENTS else []:

    rule:
        name:
            f"{_study}_external"
        input:
            images=expand(f"{EXT_DIR}/{_study}/patients/{{pid}}.tsv", pid=EXT_PATIENTS),
            predictions=cell_files(_study, "predictions.tsv"),  # the models' own test patients
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
                for role, path in ccpaths.external_outputs(_study).items()
            },
        log:
            f"results/logs/{_study}_external.log",
        benchmark:
            f"results/benchmarks/{_study}_external.tsv"
        conda:
            "../../envs/ccgrade.yaml"
        params:
            sheet=pred_sheet_json(EXT_RECORDS),
            models=study_models_json(_study),
            study=_study,
            centre=EXT_NAME,
            stats=stats_json(),
            outputs=outputs_json,
            code=code("deploy.external"),
        shell:
            "python -m ccgrade.deploy.external table --images {input.images} --sheet {params.sheet:q}"
            " --models {params.models:q} --study {params.study} --centre {params.centre} --stats {params.stats:q}"
            " --outputs {params.outputs:q} > {log} 2>&1"


# the fusion (Sun) on the external centre: its radiomics with the cohort's settings, its deep block by the
# frozen cell; the fusion job scores them with the models it fits (rule fusion)


if EXT_RAD_PATIENTS:

    rule external_radiomics:
        input:
            volumes=f"{EXT_DIR}/volumes/{{pid}}",
            annotations=lambda wc: list(ext_rad_sources(wc).values()),
            params=RAD_PARAMS,
            secret=secret_input,
        output:
            f"{EXT_DIR}/radiomics/patients/{{pid}}.tsv",
        log:
            f"results/logs/external/{EXT_NAME}/radiomics/{{pid}}.log",
        benchmark:
            f"results/benchmarks/external/{EXT_NAME}/radiomics/{{pid}}.tsv"
        conda:
            "../../envs/ccgrade.yaml"
        resources:
            mem_mb=3000,
            runtime=20,
        params:
            **RADIOMICS_PARAMS,
            args=ext_rad_args,
        shell:
            RADIOMICS_SHELL

    rule external_radiomics_table:
        input:
            rows=expand(f"{EXT_DIR}/radiomics/patients/{{pid}}.tsv", pid=EXT_RAD_PATIENTS),
        output:
            f"{EXT_DIR}/radiomics/features.tsv",
        log:
            f"results/logs/external/{EXT_NAME}/radiomics_table.log",
        benchmark:
            f"results/benchmarks/external/{EXT_NAME}/radiomics_table.tsv"
        conda:
            "../../envs/ccgrade.yaml"
        params:
            code=code("fusion.radiomics"),
        shell:
            "python -m ccgrade.fusion.radiomics table --rows {input.rows} --out {output} > {log} 2>&1"


if EXT_FUSION and DEEP_CELL:

    rule external_deep_features:
        input:
            volumes=expand(f"{EXT_DIR}/volumes/{{pid}}", pid=EXT_PATIENTS),
            annotations=ext_deep_annotations(None),
            weights=f"{BUNDLE_DIR}/weights.pt".format(**DEEP_CELL),
            metadata=f"{BUNDLE_DIR}/metadata.json".format(**DEEP_CELL),
            best=f"{MODEL_DIR}/best.pt".format(**DEEP_CELL),
            secret=secret_input,
        output:
            f"{EXT_DIR}/fusion/deep_features.tsv",
        log:
            f"results/logs/external/{EXT_NAME}/deep_features.log",
        benchmark:
            f"results/benchmarks/external/{EXT_NAME}/deep_features.tsv"
        conda:
            "../../envs/ccgrade.yaml"
        threads: 2
        params:
            bundle=lambda wc, input: os.path.dirname(input.metadata),
            cell=lambda wc, input: os.path.dirname(input.best),
            hp=as_json(ccmatrix.hyper(config, DEEP_CELL["study"], DEEP_CELL["arch"], DEEP_CELL["variant"])),
            patients=ext_deep_patients(),
            privacy=SECRET_ARG,
            code=code("deploy.external_deep"),
        shell:
            "python -m ccgrade.deploy.external_deep --bundle {params.bundle} --cell {params.cell} --hp {params.hp:q}"
            " --patients {params.patients:q} {params.privacy} --out {output}"
            + (" --score" if DEEP_OOF else "")  # the out-of-fold deep block's one feature, the CNN's score
            + " > {log} 2>&1"
