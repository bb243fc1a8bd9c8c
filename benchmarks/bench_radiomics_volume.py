"""Benchmark (prints figures; not a test): pyradiomics time against tumour volume on real CT, one core.

    OMP_NUM_THREADS=1 python benchmarks/bench_radiomics_volume.py [--volumes-ml 50 250 1000 2000]
        [--params config/radiomics.yaml config/radiomics_fast.yaml] [--json out.json]

The image is the real abdominal CT of ../shared/data/totalseg/example_ct.nii.gz (TotalSegmentator's test
file, 3 mm); each "tumour" is an ellipsoid label of the given volume centred in the abdomen (so the
texture is real tissue: kidney, liver, bowel, fat). For each parameter file it times
``ccgrade.fusion.radiomics.extract`` (the stage's own call) and counts the features. The budget (issue 26): a
2 L label in under 2 minutes on one core with the default settings, or a documented setting that trades
what for how much.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "src"))

from ccgrade.fusion import radiomics  # noqa: E402

CT = REPO.parent / "shared" / "data" / "totalseg" / "example_ct.nii.gz"


def ellipsoid(image: sitk.Image, ml: float) -> sitk.Image:
    """An ellipsoid label of ``ml`` millilitres (axes 1 : 0.8 : 0.7 in x, y, z) at the image's centre."""
    sp = np.array(image.GetSpacing())  # x, y, z (mm)
    size = np.array(image.GetSize())
    r = (ml * 1000 * 3 / (4 * np.pi * 0.8 * 0.7)) ** (1 / 3) * np.array([1.0, 0.8, 0.7])  # semi-axes (mm)
    zz, yy, xx = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(size[::-1], sp[::-1])],
                             indexing="ij")
    arr = ((xx / r[0]) ** 2 + (yy / r[1]) ** 2 + (zz / r[2]) ** 2 <= 1).astype(np.uint8)
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(image)
    return m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes-ml", type=float, nargs="+", default=[50, 250, 1000, 2000])
    ap.add_argument("--params", nargs="+", default=["config/radiomics.yaml", "config/radiomics_fast.yaml"])
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if not CT.exists():
        sys.exit(f"needs {CT} (../shared/data)")
    image = sitk.ReadImage(str(CT), sitk.sitkFloat32)
    vox = float(np.prod(image.GetSpacing())) / 1000
    print(f"CT {CT.name}: size {image.GetSize()}, spacing {tuple(round(s, 2) for s in image.GetSpacing())} mm")
    rows = []
    for params in a.params:
        for ml in a.volumes_ml:
            mask = ellipsoid(image, ml)
            real = float(sitk.GetArrayViewFromImage(mask).sum()) * vox
            t0, c0 = time.perf_counter(), time.process_time()
            feats = radiomics.extract(mask, REPO / params, patient="bench", image=image)
            row = {"params": params, "ml": round(real, 1), "wall_s": round(time.perf_counter() - t0, 1),
                   "cpu_s": round(time.process_time() - c0, 1), "features": len(feats)}
            rows.append(row)
            print(f"{params:<30} {row['ml']:>8.1f} mL  {row['wall_s']:>7.1f} s wall  {row['cpu_s']:>7.1f} s CPU  "
                  f"{row['features']} features", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
