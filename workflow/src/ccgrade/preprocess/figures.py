"""Figures of the front half of the study: the annotation-and-crop montage (Cui et al., Figure 1)."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ccgrade import PHASE_NAMES  # noqa: E402
from ccgrade.outputs import save_figure  # noqa: E402
from ccgrade.preprocess.crops import apply_window  # noqa: E402


def roi_montage(patient: str, phases: list[str], volumes: Path, crops: Path, window: dict, roi: str):
    """Rows = phases; columns = (A) CT slice, (B) with the annotated box, (C) the crop fed to the model."""
    fig, axes = plt.subplots(len(phases), 3, figsize=(7.5, 2.5 * len(phases)), squeeze=False)
    for r, ph in enumerate(phases):
        d = np.load(crops / f"{ph}.npz")
        row = axes[r]
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(PHASE_NAMES.get(ph, ph), fontsize=8)
        if str(d["status"]) != "ok" or len(d["images"]) == 0:
            row[1].text(0.5, 0.5, f"excluded:\n{str(d['reason'])[:80]}", ha="center", va="center", fontsize=7, wrap=True)
            continue
        mid = len(d["slice_index"]) // 2
        k, (x1, y1, x2, y2) = int(d["slice_index"][mid]), d["boxes"][mid]
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(volumes / f"{ph}.nii.gz")))[k]
        shown = apply_window(np.asarray(img), window)
        for c in (0, 1):
            row[c].imshow(shown, cmap="gray", vmin=0, vmax=1, extent=(0, shown.shape[1], shown.shape[0], 0))
        row[1].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="yellow", lw=1))
        crop = d["images"][mid, 0].astype(np.float32)
        row[2].imshow(crop, cmap="gray", vmin=0, vmax=1)
        row[2].set_title(f"slice {k}, {crop.shape[0]}²", fontsize=7)
    for c, t in enumerate(("A  CT", "B  annotation", f"C  crop ({roi})")):
        axes[0, c].set_title(t + ("\n" + axes[0, c].get_title() if axes[0, c].get_title() else ""), fontsize=8)
    fig.suptitle(f"Patient {patient}: annotation and cropping per phase", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    import json

    ap = argparse.ArgumentParser(description="Annotation and crop montage for one patient.")
    ap.add_argument("--patient", required=True)
    ap.add_argument("--phases", required=True)
    ap.add_argument("--volumes", required=True)
    ap.add_argument("--crops", required=True)
    ap.add_argument("--window", required=True)
    ap.add_argument("--roi", required=True)
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--pdf", help="the PDF to write (default: beside the PNG)")
    a = ap.parse_args(argv)
    fig = roi_montage(a.patient, a.phases.split(","), Path(a.volumes), Path(a.crops), json.loads(a.window), a.roi)
    png, pdf = save_figure(fig, a.out, pdf=a.pdf)
    print(f"wrote {png} and {pdf}")


if __name__ == "__main__":
    main()
