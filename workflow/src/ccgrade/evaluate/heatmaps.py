"""Class-activation heatmaps overlaid on the CT crops (Li et al. Figure 6).

Grad-CAM (Selvaraju et al., ICCV 2017) on the last residual stage: the stage's activations weighted by
the spatial mean of the high-grade logit's gradient, summed over channels, rectified, upsampled to the
input and scaled to [0, 1] per image. For a ResNet (global average pooling, then one linear layer) it is
the rectified class activation map of Zhou et al. (CVPR 2016), which Li et al. drew. 2D networks show
the patient's middle tumour slice; the 3D network shows the middle axial plane of the cube.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ccgrade.outputs import Outputs, pyplot, read_table, save_figure


def grad_cam(net: torch.nn.Module, x: torch.Tensor, target: int = 1) -> np.ndarray:
    """Grad-CAM maps (N, *spatial) in [0, 1] of class ``target`` at the input's resolution."""
    store: dict[str, torch.Tensor] = {}

    def keep(_m, _i, out):
        store["a"] = out
        out.register_hook(lambda g: store.__setitem__("g", g))

    handle = net.layer4.register_forward_hook(keep)
    net.eval()
    try:
        with torch.enable_grad():
            xr = x.detach().clone().requires_grad_(True)  # gradients flow even through frozen stages
            logits = net(xr)
            net.zero_grad(set_to_none=True)
            logits[:, target].sum().backward()
    finally:
        handle.remove()
    a, g = store["a"].detach(), store["g"].detach()
    spatial = tuple(range(2, a.dim()))
    cam = F.relu((g.mean(dim=spatial, keepdim=True) * a).sum(dim=1, keepdim=True))
    mode = "trilinear" if a.dim() == 5 else "bilinear"
    cam = F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)[:, 0]
    flat = cam.reshape(len(cam), -1)
    top = flat.max(dim=1).values.clamp_min(1e-12)
    return (flat / top[:, None]).reshape(cam.shape).numpy()


def draw_cam(ax, net: torch.nn.Module, img: np.ndarray, alpha: float = 0.4) -> float:
    """Draw one crop (C, H, W: its first channel) or cube (C, D, H, W: its middle axial plane) in grey with
    its Grad-CAM (jet) on top; return the network's P(high) for it."""
    x = torch.from_numpy(img[None])
    cam = grad_cam(net, x)[0]
    with torch.no_grad():
        prob = float(torch.softmax(net(x), 1)[0, 1])
    show, heat = (img[0], cam) if img.ndim == 3 else (img[0, img.shape[1] // 2], cam[cam.shape[0] // 2])
    ax.imshow(show, cmap="gray")
    ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0, vmax=1)
    return prob


def spread(n: int, k: int = 4) -> np.ndarray:
    """Up to ``k`` of ``n`` image indices, evenly spaced from the first to the last."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def pick_patients(pred: pd.DataFrame, per_grade: int) -> list[str]:
    """The first ``per_grade`` test patients of each grade group (sorted IDs: deterministic)."""
    t = pred[pred["set"] == "test"].groupby("patient_id")["label"].first()
    return [pid for lab in (0, 1) for pid in sorted(t[t == lab].index)[:per_grade]]


def patient_image(crop_file: Path) -> tuple[np.ndarray, int] | None:
    """The image shown for a patient: the middle tumour slice (2D) or the cube; None if excluded."""
    z = np.load(crop_file)
    if str(z["status"]) != "ok" or z["images"].shape[0] == 0:
        return None
    imgs = z["images"].astype(np.float32)
    i = len(imgs) // 2 if imgs.ndim == 4 else 0
    return imgs[i], int(z["slice_index"][i])


def heatmap_figure(cells: list[dict], crops: list[str], per_grade: int, png: Path, pdf: Path | None = None
                   ) -> pd.DataFrame:
    """One row per model, one column per chosen test patient: CT (grey) with the Grad-CAM (jet) on top."""
    from ccgrade.learn import train

    plt = pyplot()
    by_key = {(Path(f).parent.parent.name, Path(f).parent.name, Path(f).stem): Path(f) for f in crops}
    preds = {i: read_table(Path(c["dir"]) / "predictions.tsv")
             for i, c in enumerate(cells)}
    first = next((p for p in preds.values() if not p.empty), pd.DataFrame(columns=["set", "patient_id", "label"]))
    patients = pick_patients(first, per_grade)
    ncol = max(len(patients), 1)
    fig, axes = plt.subplots(len(cells), ncol, figsize=(2.1 * ncol, 2.2 * len(cells)), squeeze=False)
    rows = []
    for r, c in enumerate(cells):
        targets = [c["phases"]] if c["phases"] != "all" else []
        net = None
        for k, pid in enumerate(patients):
            ax = axes[r, k]
            ax.axis("off")
            f = next((by_key.get((c["roi"], pid, t)) for t in targets), None)
            got = patient_image(f) if f is not None else None
            if preds[r].empty or got is None:
                ax.set_title(f"{pid}: no model or crop", fontsize=6)
                continue
            img, sl = got
            if net is None:
                net = train.load_best(Path(c["dir"]), c["hp"], in_channels=img.shape[0])
            prob = draw_cam(ax, net, img)
            grade = "high" if int(first.loc[first["patient_id"] == pid, "label"].iloc[0]) else "low"
            ax.set_title(f"{pid} ({grade})\nP(high) {prob:.2f}", fontsize=6)
            rows.append({"arch": c["arch"], "phases": c["phases"], "seed": c["seed"], "patient_id": pid,
                         "slice_index": sl, "grade_group": grade, "prob_high": prob})
        axes[r, 0].text(-0.08, 0.5, f"{c['arch']}\n{c['phases'].upper()}", transform=axes[r, 0].transAxes,
                        ha="right", va="center", fontsize=7)
    fig.suptitle("Grad-CAM of the high-grade class (red: strongest evidence), test patients", fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, pdf=pdf)
    plt.close(fig)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Grad-CAM heatmaps of a study's models on test patients.")
    ap.add_argument("--models", required=True, help="JSON list of cells {arch, phases, seed, roi, dir, hp}")
    ap.add_argument("--crops", nargs="+", required=True)
    ap.add_argument("--patients", type=int, default=2, help="test patients per grade group")
    ap.add_argument("--outputs", required=True, help="JSON {heatmaps: PNG, heatmaps_pdf: PDF}: the rule's files")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    out = Outputs.from_json(a.outputs)
    shown = heatmap_figure(json.loads(a.models), a.crops, a.patients, out["heatmaps"], pdf=out["heatmaps_pdf"])
    print(shown.to_string(index=False))


if __name__ == "__main__":
    main()
