"""Training, prediction and patient-level aggregation for one cell of the model matrix.

One job trains one (phase set x ROI x architecture x split/fold x seed) model:

- the crops of the fold's patients are loaded once into memory (float16 on disk -> float32 tensors);
- augmentation runs on the device, per batch: random rotation within +-``rotate_deg`` and flips
  (Cui: 30 degrees + flips; Li: rotations of 30/60/90/180 degrees via ``rotate_set``);
- class-weighted cross-entropy (``class_weight: balanced`` = n / (2 n_c), or explicit [w_low, w_high]);
- batch-norm running statistics are the average over each epoch's batches (``fresh_batch_norm_statistics``);
- SGD or Adam; AMP and channels-last on CUDA; CPU otherwise;
- the best epoch by validation AUC (patient level, mean probability; ties, frequent on small validation
  sets, go to the lower class-weighted validation loss) is kept; a split without a validation set (Li's
  7:3, k-fold) keeps the last epoch, since choosing on training or test patients would flatter the model;
  the best weights are held in memory and written once at the end; the resume state (with them) is saved
  at most once a minute (``checkpoint_s``) and when a run stops early, so an interrupted job resumes from
  it, replays the epochs since, and ends with the same model;
- a per-epoch log (loss, validation AUC) and metadata JSON (versions, hyperparameters, label meaning).
Deterministic on CPU for a fixed seed (same splits, same weights, same metrics on rerun).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from . import models
from .stats import delong

LABELS = {"low": 0, "high": 1}


@dataclass
class CropSet:
    """Samples of one ROI x phase set: images (N, C, ...) float32, labels (N,), patient IDs, slice indices, boxes."""
    images: np.ndarray
    labels: np.ndarray
    patients: np.ndarray
    slices: np.ndarray
    boxes: np.ndarray
    sources: np.ndarray | None = None  # which crop file (phase) each image came from

    def subset(self, patients: set[str]) -> "CropSet":
        keep = np.isin(self.patients, list(patients))
        src = None if self.sources is None else self.sources[keep]
        return CropSet(self.images[keep], self.labels[keep], self.patients[keep], self.slices[keep], self.boxes[keep], src)


def load_crops(files: dict[str, list[Path]], grade_group: dict[str, str]) -> CropSet:
    """Crops of each patient (one or several npz files, e.g. four phases pooled) with their grade labels.

    Excluded crops (status != ok or no images) contribute nothing; the caller's split decides who is used.
    """
    imgs, labels, pats, sls, bxs, srcs = [], [], [], [], [], []
    for pid, paths in files.items():
        for p in paths:
            z = np.load(p)
            if str(z["status"]) != "ok" or z["images"].shape[0] == 0:
                continue
            n = z["images"].shape[0]
            imgs.append(z["images"].astype(np.float32))
            labels.append(np.full(n, LABELS[grade_group[pid]], np.int64))
            pats.append(np.full(n, pid, dtype=object))
            sls.append(z["slice_index"].astype(int))
            bxs.append(box_columns(z["boxes"], n))
            srcs.append(np.full(n, Path(p).stem, dtype=object))
    if not imgs:
        raise ValueError("no usable crops for this model")
    shapes = {i.shape[1:] for i in imgs}
    if len(shapes) > 1:
        raise ValueError(f"crops of different shapes cannot be pooled: {sorted(shapes)}")
    return CropSet(np.concatenate(imgs), np.concatenate(labels), np.concatenate(pats).astype(str),
                   np.concatenate(sls), np.concatenate(bxs).astype(float), np.concatenate(srcs).astype(str))


def box_columns(boxes: np.ndarray, n: int) -> np.ndarray:
    """A crop file's boxes as (n, 6) columns x1, y1, x2, y2, z1, z2: a 2D crop's (x1, y1, x2, y2) in the slice's
    pixel coordinates with z NaN, a cube's 3D box (x1, y1, z1, x2, y2, z2, patient mm) completely."""
    out = np.full((n, 6), np.nan)
    if not boxes.size:
        return out
    b = np.asarray(boxes, float).reshape(n, -1)
    if b.shape[1] == 6:
        out[:] = b[:, [0, 1, 3, 4, 2, 5]]
    else:
        out[:, :4] = b[:, :4]
    return out


def class_weights(labels: np.ndarray, spec) -> torch.Tensor:
    """Cross-entropy class weights: 'balanced' (n / (2 n_c)), none, or explicit [w_low, w_high]."""
    if spec in (None, "none"):
        return torch.ones(2)
    if spec == "balanced":
        counts = np.bincount(labels, minlength=2).astype(float)
        return torch.tensor(len(labels) / (2 * np.maximum(counts, 1)), dtype=torch.float32)
    return torch.tensor([float(v) for v in spec], dtype=torch.float32)


def augment(x: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Random in-plane rotation and flips of a batch (N, C, H, W) or (N, C, D, H, W) on its device
    (a 3D sample turns as a whole about its depth axis: every axial plane by the same angle)."""
    n = x.shape[0]
    dev = x.device
    if x.dim() == 5 and (cfg.get("rotate_deg") or cfg.get("rotate_set")):
        shape = x.shape
        x = augment(x.reshape(n, -1, *shape[-2:]), {k: cfg.get(k) for k in ("rotate_deg", "rotate_set")}, gen)
        x = x.reshape(shape)
        cfg = {k: v for k, v in cfg.items() if k not in ("rotate_deg", "rotate_set")}
    if x.dim() == 4 and (cfg.get("rotate_deg") or cfg.get("rotate_set")):
        if cfg.get("rotate_set"):
            choices = torch.tensor([0.0] + [float(a) for a in cfg["rotate_set"]])
            ang = choices[torch.randint(len(choices), (n,), generator=gen)] * torch.where(
                torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        else:
            ang = (torch.rand(n, generator=gen) * 2 - 1) * float(cfg["rotate_deg"])
        t = ang * math.pi / 180
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = t.cos(), -t.sin(), t.sin(), t.cos()
        grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    spatial = list(range(2, x.dim()))
    for ax, key in ((spatial[-1], "hflip"), (spatial[-2], "vflip")):
        if cfg.get(key):
            m = (torch.rand(n, generator=gen) < 0.5).to(dev)
            x = torch.where(m.view(-1, *[1] * (x.dim() - 1)), x.flip(ax), x)
    return x


def predict(net: nn.Module, images: np.ndarray, device: str, batch: int = 64) -> np.ndarray:
    """P(high grade) per image."""
    net.eval()
    cuda = device.startswith("cuda")
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(images[s:s + batch]).to(device)
            if cuda and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", enabled=cuda):
                out.append(torch.softmax(net(x).float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def patient_mean(patients: np.ndarray, prob: np.ndarray) -> pd.Series:
    """Patient-level probability: the mean of the patient's image probabilities."""
    return pd.Series(prob).groupby(pd.Series(patients)).mean()


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(delong(y, p)[0][0])


def _device(spec: str) -> str:
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def train_model(data: CropSet, split: dict[str, list[str]], hp: dict, *, seed: int, outdir: Path,
                device: str = "auto", max_epochs: int | None = None, progress=print) -> dict:
    """Train on ``split['train']``, select the epoch by validation AUC (``split['val']``; without one,
    the last epoch), and write ``last.pt`` (each epoch), ``best.pt``, ``epochs.tsv`` and ``meta.json``.
    ``max_epochs`` stops early (as an interruption would); calling again resumes from ``last.pt``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    dev = _device(device)
    cuda = dev.startswith("cuda")  # AMP and channels-last on CUDA only
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    train = data.subset(set(split["train"]))
    has_val = bool(split.get("val"))  # without a validation set (Li 7:3, k-fold) the last epoch is kept
    val = data.subset(set(split["val"])) if has_val else None
    if len(np.unique(train.labels)) < 2:
        raise ValueError("the training set holds a single grade group")
    net = models.build_model(hp["arch"], in_channels=data.images.shape[1], pretrained=hp.get("pretrained", "none"),
                             weights_file=hp.get("weights_file"), freeze_stages=hp.get("freeze_stages", 0)).to(dev)
    if cuda and data.images.ndim == 4:
        net = net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    if hp["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=hp["lr"], momentum=hp.get("momentum", 0.9), weight_decay=hp.get("weight_decay", 0))
    else:
        opt = torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0),
                               betas=(hp.get("momentum", 0.9), 0.999))  # momentum: Adam's beta1 (Dai: 0.8)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(train.labels, hp.get("class_weight", "balanced")).to(dev))
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    gen = torch.Generator().manual_seed(seed)
    start, history, best, best_state = 0, [], {"epoch": -1, "val_auc": -1.0}, None
    last = outdir / "last.pt"
    st = _read_state(last, dev, progress) if last.exists() else None
    if st is not None:  # resume after an interruption
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        start, history, best, best_state = st["epoch"] + 1, st["history"], st["best"], st["best_model"]
        progress(f"resuming after epoch {st['epoch']}")
    x_all = torch.from_numpy(train.images)
    y_all = torch.from_numpy(train.labels)
    copies = int(hp.get("augment", {}).get("copies", 1))  # Cui: each image augmented x3 per epoch
    epochs = hp["epochs"] if max_epochs is None else min(hp["epochs"], max_epochs)
    saved_at = time.perf_counter()
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        net.train()
        fresh_batch_norm_statistics(net)
        idx = torch.cat([torch.randperm(len(y_all), generator=gen) for _ in range(copies)])
        total, seen = 0.0, 0
        for s in range(0, len(idx), hp["batch"]):
            bi = idx[s:s + hp["batch"]]
            if len(bi) < 2 and len(idx) > 1:  # batch norm needs two samples
                continue
            x = x_all[bi].to(dev, non_blocking=True)
            y = y_all[bi].to(dev)
            x = augment(x, hp.get("augment", {}), gen)
            if cuda and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=cuda):
                loss = loss_fn(net(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(bi)
            seen += len(bi)
        auc = vloss = float("nan")
        if has_val:
            pv = predict(net, val.images, dev)
            pm = patient_mean(val.patients, pv)
            yv = pd.Series(val.labels).groupby(pd.Series(val.patients)).first().loc[pm.index].to_numpy()
            auc = _auc(yv, pm.to_numpy())
            # validation loss (image level, same class weights): breaks ties of the AUC, frequent on small sets
            pc = np.clip(pv, 1e-7, 1 - 1e-7)
            w = loss_fn.weight.detach().cpu().numpy()[val.labels]
            vloss = float(-(w * np.where(val.labels == 1, np.log(pc), np.log(1 - pc))).sum() / w.sum())
        rec = {"epoch": epoch, "loss": total / max(seen, 1), "val_auc": auc, "val_loss": vloss,
               "seconds": time.perf_counter() - t0, "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)}
        history.append(rec)
        if has_val:
            key = (auc if auc == auc else -1.0, -vloss)
            if best["epoch"] < 0 or key > (best["val_auc"], -best.get("val_loss", np.inf)):
                best = {"epoch": epoch, "val_auc": key[0], "val_loss": vloss}
                best_state = _snapshot(net)
        elif epoch == epochs - 1:
            best = {"epoch": epoch, "val_auc": float("nan"), "val_loss": float("nan")}
            best_state = _snapshot(net)
        stopping_early = epoch == epochs - 1 and epochs < hp["epochs"]
        if time.perf_counter() - saved_at >= hp.get("checkpoint_s", 60) or stopping_early:
            # the resume state, at most once a minute: a resumed job replays the epochs since (same result)
            save_atomic({"model": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(), "epoch": epoch, "history": history, "best": best,
                        "best_model": best_state}, last)
            saved_at = time.perf_counter()
        progress(f"epoch {epoch + 1}/{hp['epochs']}: loss {rec['loss']:.4f}, val AUC {auc:.3f}, "
                 f"{rec['images_per_s']:.0f} images/s")
    if best_state is not None:
        save_atomic(best_state, outdir / "best.pt")
    from .outputs import write_text, write_tsv

    write_tsv(outdir / "epochs.tsv", pd.DataFrame(history))
    meta = {"hyperparameters": hp, "seed": seed, "device": dev, "best_epoch": best["epoch"],
            "selection": "best validation AUC (ties: lower validation loss)" if has_val else
            "last epoch (the split has no validation set)",
            "best_val_auc": best["val_auc"] if best["val_auc"] == best["val_auc"] else None, "epochs_done": len(history), "label_meaning": {"0": "low", "1": "high"},
            "input_shape": list(data.images.shape[1:]), "n_train_images": int(len(train.labels)),
            "n_train_patients": int(len(set(train.patients))),
            "versions": {"torch": torch.__version__, "numpy": np.__version__}}
    write_text(outdir / "meta.json", json.dumps(meta, indent=1, default=str))
    return meta


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temporary file renamed into place: a kill mid-write leaves the old file."""
    from .outputs import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _read_state(path: Path, device: str, progress) -> dict | None:
    """The resume state, or None (start afresh, saying why) when it cannot be read."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # e.g. a state from before atomic writes, cut short by a kill
        progress(f"resume state {path.name} unreadable ({type(e).__name__}): starting afresh")
        path.unlink(missing_ok=True)
        return None


def fresh_batch_norm_statistics(net: nn.Module) -> None:
    """Make every batch-norm layer's running statistics the plain average over the coming epoch's batches.

    The default exponential average (momentum 0.1) needs many batches to forget its initial 0/1 values:
    after a few epochs on a small cohort, evaluation-mode outputs were still dominated by them (a 3D
    network called every patient high grade with P = 1.0). Averaging the current epoch's batches
    (momentum None, reset each epoch) is as cheap and is settled after any number of batches.
    """
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None


def _snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the network's weights (kept in memory; written once, at the end)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def load_best(outdir: Path, hp: dict, in_channels: int, device: str = "cpu") -> nn.Module:
    """The best-epoch network of a trained cell."""
    net = models.build_model(hp["arch"], in_channels=in_channels, freeze_stages=hp.get("freeze_stages", 0))
    net.load_state_dict(torch.load(Path(outdir) / "best.pt", map_location=device, weights_only=True))
    return net.to(device)


def fingerprint(hp: dict, seed: int, files: list[str], split: dict) -> str:
    """What a resumable state belongs to: a changed recipe, seed, data or split starts afresh."""
    import hashlib

    doc = json.dumps({"hp": hp, "seed": seed, "files": sorted(files), "split": split}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def prediction_table(net: nn.Module, data: CropSet, split: dict[str, list[str]], device: str) -> pd.DataFrame:
    """Image-level P(high) for the training (unaugmented), validation and test patients (one row per image)."""
    rows = []
    for set_name in ("train", "val", "test"):
        ids = set(split.get(set_name) or [])
        if not ids:
            continue
        keep = np.isin(data.patients, list(ids))
        prob = predict(net, data.images[keep], device)
        b = data.boxes[keep]
        rows.append(pd.DataFrame({"patient_id": data.patients[keep], "set": set_name, "source": data.sources[keep],
                                  "slice_index": data.slices[keep], "x1": b[:, 0], "y1": b[:, 1], "x2": b[:, 2],
                                  "y2": b[:, 3], "z1": b[:, 4], "z2": b[:, 5],
                                  "box_space": np.where(np.isnan(b[:, 4]), "pixel", "mm"),
                                  "label": data.labels[keep], "prob_high": prob}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


PREDICTION_COLUMNS = ["patient_id", "set", "source", "slice_index", "x1", "y1", "x2", "y2", "z1", "z2", "box_space",
                      "label", "prob_high"]


def not_trained(out: Path, hp: dict, reason: str) -> None:
    """The outputs of a cell that cannot be trained (e.g. one grade group only), saying why."""
    from .outputs import pyplot, save_figure, write_text, write_tsv

    plt = pyplot()

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "meta.json", json.dumps({"status": "not trained", "reason": reason, "hyperparameters": hp},
                                             indent=1))
    write_tsv(out / "predictions.tsv", pd.DataFrame(columns=PREDICTION_COLUMNS))
    write_tsv(out / "epochs.tsv", pd.DataFrame(columns=["epoch", "loss", "val_auc", "val_loss", "seconds",
                                                         "images_per_s"]))
    save_atomic({}, out / "best.pt")
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"not trained: {reason}", ha="center", va="center", wrap=True)
    save_figure(fig, out / "curve")
    plt.close(fig)


def curve_figure(history: pd.DataFrame, stem: Path, title: str) -> None:
    """Training curve: loss and validation AUC per epoch (PNG + PDF)."""
    from .outputs import pyplot, save_figure

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(history["epoch"] + 1, history["loss"], "o-", color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(history["epoch"] + 1, history["val_auc"], "s--", color="tab:red", label="validation AUC")
    ax2.set_ylabel("validation AUC (patient level)", color="tab:red")
    ax2.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, stem)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from .outputs import read_table, write_text, write_tsv

    ap = argparse.ArgumentParser(description="Train one cell of the model matrix and predict its test patients.")
    ap.add_argument("--cohort", required=True, help="analysis cohort sheet (patient_id, grade_group)")
    ap.add_argument("--split", required=True, help="split JSON")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--crops", nargs="+", required=True, help="results/crops/<roi>/<pid>/<target>.npz files")
    ap.add_argument("--hp", required=True, help="JSON hyperparameters (preset + overrides + arch)")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    ap.add_argument("--outdir", required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    hp = json.loads(a.hp)
    cohort = read_table(a.cohort)
    groups = dict(zip(cohort["patient_id"], cohort["grade_group"]))
    fold = json.loads(Path(a.split).read_text())["folds"][a.fold]
    split = {k: v for k, v in fold.items() if k in ("train", "val", "test")}
    used = set().union(*split.values())
    files: dict[str, list[Path]] = {}
    for f in a.crops:
        pid = Path(f).parent.name
        if pid in used:
            files.setdefault(pid, []).append(Path(f))
    out = Path(a.outdir)
    try:
        data = load_crops(files, groups)
        if len(np.unique(data.subset(set(split["train"])).labels)) < 2:
            raise ValueError("the training set holds a single grade group")
    except ValueError as e:  # too small or one-sided a cohort: record why, write empty results, do not crash
        not_trained(out, hp, str(e))
        print(f"not trained: {e}")
        return
    fp = fingerprint(hp, a.seed, [str(p) for v in files.values() for p in v], split)
    stamp = out / "state.fingerprint"
    if (out / "last.pt").exists() and (not stamp.exists() or stamp.read_text() != fp):
        (out / "last.pt").unlink()  # a state from another recipe, seed, data or split: start afresh
    out.mkdir(parents=True, exist_ok=True)
    write_text(stamp, fp)
    meta = train_model(data, split, hp, seed=a.seed, outdir=out, device=a.device)
    dev = _device(a.device)
    net = load_best(out, hp, data.images.shape[1], dev)
    pred = prediction_table(net, data, split, dev)
    write_tsv(out / "predictions.tsv", pred)
    hist = pd.read_csv(out / "epochs.tsv", sep="\t")
    curve_figure(hist, out / "curve", f"{hp['arch']} {out.parent.name}: best epoch {meta['best_epoch'] + 1}")
    (out / "last.pt").unlink(missing_ok=True)  # finished: the resume state is no longer needed, nor its stamp
    stamp.unlink(missing_ok=True)
    print(json.dumps({k: meta[k] for k in ("best_epoch", "best_val_auc", "epochs_done", "device")}))


if __name__ == "__main__":
    main()
