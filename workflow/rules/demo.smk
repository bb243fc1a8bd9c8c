# The built-in synthetic cohort (real DICOM CT series + labelme, NIfTI and polygon annotations).
# Patient i depends only on the demo settings other than n_patients: growing the cohort adds patients. The
# external centre's patients (external.demo) are written under their own folder with its shifted settings.


rule demo_patient:
    output:
        dicom=directory("resources/{demo}/dicom/{pid}"),
        masks=expand("resources/{{demo}}/annotations/{{pid}}/{phase}/mask.nii.gz", phase=ccdemo.PHASES),
        polygons=expand("resources/{{demo}}/annotations/{{pid}}/{phase}/polygons.json", phase=ccdemo.PHASES),
        labelme=[
            directory(p) for p in expand("resources/{{demo}}/annotations/{{pid}}/{phase}/labelme", phase=ccdemo.PHASES)
        ],
    log:
        "results/logs/demo_patient/{demo}/{pid}.log",
    benchmark:
        "results/benchmarks/demo_patient/{demo}/{pid}.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        demo=demo_image_params,
        high_from=config["cohort"]["high_grade_from"],
        code=code("ingest.demo"),
    shell:
        "python -m ccgrade.ingest.demo --demo {params.demo:q} --high-from {params.high_from} --root resources/{wildcards.demo}"
        " --patient {wildcards.pid} > {log} 2>&1"


rule demo_cohort:
    output:
        sheet=f"{DEMO_ROOT}/cohort.tsv",
    log:
        "results/logs/demo_cohort.log",
    benchmark:
        "results/benchmarks/demo_cohort.tsv"
    conda:
        "../../envs/ccgrade.yaml"
    params:
        demo=as_json(config["demo"]),
        high_from=config["cohort"]["high_grade_from"],
        root=lambda wc, output: demo_root_of(output.sheet),
        code=code("ingest.demo"),
    shell:
        "python -m ccgrade.ingest.demo --demo {params.demo:q} --high-from {params.high_from} --root {params.root}"
        " --sheet {output.sheet} > {log} 2>&1"
