"""Benchmark (prints figures; not a test): the KiTS geometry stage vs bare SimpleITK reads of the same masks.

Usage: .venv/bin/python benchmarks/bench_kits_geometry.py [--n 12] [--kits ../shared/data/kits23]
Picks the largest real masks (600 x 512 x 512 class), reads each once to warm the page cache, then times
bare ``SimpleITK.ReadImage`` and our stage (read + ``geometry.tumour_geometry``) on the same files, in
the same run, best of three passes. Target: the stage costs at most 2x the bare read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "src"))

from ccgrade.annotations import readers as annotations  # noqa: E402
from ccgrade.preprocess import geometry  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--kits", default=str(REPO.parent / "shared" / "data" / "kits23"))
    a = ap.parse_args()
    masks = Path(a.kits) / "masks"
    if not masks.is_dir():
        print(f"skipped: {masks} not found (../shared/data is absent)")
        return
    files = sorted(masks.glob("*.nii.gz"), key=lambda p: p.stat().st_size, reverse=True)[: a.n]
    sizes = []
    for f in files:  # warm the cache; record the sizes
        rd = sitk.ImageFileReader()
        rd.SetFileName(str(f))
        rd.ReadImageInformation()
        sizes.append(rd.GetSize())
        f.read_bytes()

    def bare() -> float:
        t = time.perf_counter()
        for f in files:
            sitk.ReadImage(str(f))
        return time.perf_counter() - t

    def ours() -> float:
        t = time.perf_counter()
        for f in files:
            geometry.tumour_geometry(annotations.read_label_image(f, patient=f.name), 2, patient=f.name, file=str(f))
        return time.perf_counter() - t

    b = min(bare() for _ in range(3))
    o = min(ours() for _ in range(3))
    vox = sum(s[0] * s[1] * s[2] for s in sizes) / len(sizes)
    print(f"KiTS geometry stage: {len(files)} real masks (mean {vox / 1e6:.0f} M voxels, e.g. {'x'.join(map(str, sizes[0]))})")
    print(f"  bare SimpleITK.ReadImage: {len(files) / b:.2f} masks/s")
    print(f"  read + tumour geometry:   {len(files) / o:.2f} masks/s")
    print(f"  ratio {o / b:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
