# ROI crops per patient x ROI setting (the phases and the stacked multi-channel variant some model or figure
# reads; the others are empty placeholders), the manifest,
# the exclusions table and the annotation/crop montage.


rule crop_roi:
    input:
        volumes=ccpaths.VOLUMES,
        annotations=crop_annotations,
        secret=secret_input,
    output:
        npz=expand("results/crops/{{roi}}/{{pid}}/{target}.npz", target=CROP_TARGETS),
        manifest="results/crops/{roi}/{pid}/manifest.tsv",
    log:
        "results/logs/crop_roi/{roi}/{pid}.log",
    benchmark:
        "results/benchmarks/crop_roi/{roi}/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        roi=roi_params,
        window=roi_window,
        outdir=lambda wc, output: os.path.dirname(output.manifest),
        phases=",".join(PHASES),
        stack=",".join(config["stack"]["phases"]),
        sources=lambda wc: as_json(crop_sources(wc)),
        mask_label=config["mask_label"],
        rtstruct_roi=config["rtstruct_roi"],
        rtstruct_link=config["rtstruct_link"],
        privacy=SECRET_ARG,
        targets=lambda wc: roi_targets(wc.roi),
        code=code("preprocess.crops"),
    shell:
        "python -m ccgrade.preprocess.crops --patient {wildcards.pid} --roi-name {wildcards.roi} --roi {params.roi:q}"
        " --window {params.window:q} --phases {params.phases} --stack {params.stack}"
        " --volumes {input.volumes} --sources {params.sources:q} --mask-label {params.mask_label}"
        " --rtstruct-roi {params.rtstruct_roi:q} --rtstruct-link {params.rtstruct_link}"
        " --targets '{params.targets}' --outdir {params.outdir} {params.privacy} > {log} 2>&1"


rule crop_manifest:
    input:
        manifests=expand("results/crops/{roi}/{pid}/manifest.tsv", roi=ROIS, pid=IMAGED),
    output:
        report(ccpaths.CROP_MANIFEST, caption="../report/manifest.rst", category="Crops"),
    log:
        "results/logs/crop_manifest.log",
    benchmark:
        "results/benchmarks/crop_manifest.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        code=code("preprocess.collect"),
    shell:
        "python -m ccgrade.preprocess.collect manifest --manifests {input.manifests} --out {output} > {log} 2>&1"


rule exclusions:
    input:
        ingest=expand(f"{ccpaths.INGEST_DIR}/exclusions.tsv", pid=IMAGED),
        manifests=expand("results/crops/{roi}/{pid}/manifest.tsv", roi=ROIS, pid=IMAGED),
        splits=expand(ccpaths.SPLIT_JSON, scheme=SCHEMES),
        cohort=KITS_LEFT_OUT,
    output:
        csv=report("results/tables/exclusions.csv", caption="../report/exclusions.rst", category="Cohort"),
        md="results/tables/exclusions.md",
    log:
        "results/logs/exclusions.log",
    benchmark:
        "results/benchmarks/exclusions.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        code=code("preprocess.collect"),
    shell:
        "python -m ccgrade.preprocess.collect exclusions --ingest {input.ingest} --manifests {input.manifests}"
        " --splits {input.splits} --cohort {input.cohort} --out {output.csv} --md {output.md} > {log} 2>&1"


rule roi_montage:
    input:
        volumes=ccpaths.VOLUMES,
        crops=expand("results/crops/{roi}/{{pid}}/{target}.npz", roi=config["figures"]["montage_roi"], target=PHASES),
    output:
        png=report(
            "results/figures/roi_montage/{pid}.png",
            caption="../report/roi_montage.rst",
            category="Cui et al.",
            labels={"figure": "Cui Figure 1", "patient": "{pid}"},
        ),
        pdf="results/figures/roi_montage/{pid}.pdf",
    log:
        "results/logs/roi_montage/{pid}.log",
    benchmark:
        "results/benchmarks/roi_montage/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        phases=",".join(PHASES),
        roi=config["figures"]["montage_roi"],
        crops=lambda wc, input: os.path.dirname(input.crops[0]),
        window=lambda wc: as_json(config["windows"][config["rois"][config["figures"]["montage_roi"]]["window"]]),
        code=code("preprocess.figures"),
    shell:
        "python -m ccgrade.preprocess.figures --patient {wildcards.pid} --phases {params.phases} --volumes {input.volumes}"
        " --crops {params.crops} --window {params.window:q} --roi {params.roi}"
        " --out {output.png} --pdf {output.pdf} > {log} 2>&1"
