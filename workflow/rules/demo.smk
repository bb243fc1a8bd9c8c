# The built-in synthetic cohort (real DICOM CT series + labelme, NIfTI and polygon annotations).
# Patient i depends only on the demo settings other than n_patients: growing the cohort adds patients.

DEMO_IMAGE_KEYS = [k for k in config["demo"] if k != "n_patients"]


def demo_image_params(wildcards):
    return as_json({k: config["demo"][k] for k in DEMO_IMAGE_KEYS})


rule demo_patient:
    input:
        code=code("demo"),
    output:
        dicom=directory(f"{DEMO_ROOT}/dicom/{{pid}}"),
        masks=expand(f"{DEMO_ROOT}/annotations/{{{{pid}}}}/{{phase}}/mask.nii.gz", phase=ccdemo.PHASES),
        polygons=expand(f"{DEMO_ROOT}/annotations/{{{{pid}}}}/{{phase}}/polygons.json", phase=ccdemo.PHASES),
        labelme=[
            directory(p)
            for p in expand(f"{DEMO_ROOT}/annotations/{{{{pid}}}}/{{phase}}/labelme", phase=ccdemo.PHASES)
        ],
    params:
        demo=demo_image_params,
        high_from=config["cohort"]["high_grade_from"],
    log:
        "results/logs/demo_patient/{pid}.log",
    benchmark:
        "results/benchmarks/demo_patient/{pid}.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python -m ccgrade.demo --demo {params.demo:q} --high-from {params.high_from} --root {DEMO_ROOT}"
        " --patient {wildcards.pid} > {log} 2>&1"


rule demo_cohort:
    input:
        code=code("demo"),
    output:
        sheet=f"{DEMO_ROOT}/cohort.tsv",
    params:
        demo=as_json(config["demo"]),
        high_from=config["cohort"]["high_grade_from"],
    log:
        "results/logs/demo_cohort.log",
    shell:
        "python -m ccgrade.demo --demo {params.demo:q} --high-from {params.high_from} --root {DEMO_ROOT}"
        " --sheet {output.sheet} > {log} 2>&1"
