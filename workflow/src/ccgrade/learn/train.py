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
- a per-epoch log (loss, validation AUC) and metadata JSON (versions, hyperparameters, label meaning);
- the work is a ``Trainer``'s hook methods (``CudaTrainer`` on CUDA), which a variant overrides in a subclass.
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

from ccgrade.learn import models
from ccgrade.stats import delong

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


def draw_augment(n: int, cfg: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The random draws of one batch's augmentation (on the host generator, in a fixed order: rotation,
    horizontal flip, vertical flip): ``angle`` in degrees, ``hflip`` and ``vflip`` masks."""
    p: dict[str, torch.Tensor] = {}
    if cfg.get("rotate_set"):  # Li: 0 or +-one of the listed angles
        choices = torch.tensor([0.0] + [float(a) for a in cfg["rotate_set"]])
        p["angle"] = choices[torch.randint(len(choices), (n,), generator=gen)] * torch.where(
            torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    elif cfg.get("rotate_deg"):  # Cui: uniform within +-rotate_deg
        p["angle"] = (torch.rand(n, generator=gen) * 2 - 1) * float(cfg["rotate_deg"])
    for key in ("hflip", "vflip"):
        if cfg.get(key):
            p[key] = torch.rand(n, generator=gen) < 0.5
    return p


def apply_augment(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rotate and flip a batch (N, C, H, W) or (N, C, D, H, W) by the draws ``p`` (on the batch's device;
    a 3D sample turns as a whole about its depth axis: every axial plane by the same angle)."""
    n = x.shape[0]
    if "angle" in p:
        shape = x.shape
        x2 = x.reshape(n, -1, *shape[-2:]) if x.dim() == 5 else x
        t = p["angle"] * math.pi / 180
        theta = torch.zeros(n, 2, 3, dtype=t.dtype, device=t.device)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = t.cos(), -t.sin(), t.sin(), t.cos()
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x2.shape), align_corners=False)
        x = F.grid_sample(x2, grid, mode="bilinear", padding_mode="zeros", align_corners=False).reshape(shape)
    spatial = list(range(2, x.dim()))
    for ax, key in ((spatial[-1], "hflip"), (spatial[-2], "vflip")):
        if key in p:
            x = torch.where(p[key].to(x.device).view(-1, *[1] * (x.dim() - 1)), x.flip(ax), x)
    return x


def augment(x: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Random in-plane rotation and flips of a batch (``draw_augment`` then ``apply_augment``)."""
    return apply_augment(x, draw_augment(x.shape[0], cfg, gen))


def epoch_plan(n: int, batch: int, copies: int, cfg: dict, gen: torch.Generator
               ) -> tuple[torch.Tensor, list[tuple[int, int]], dict[str, torch.Tensor]]:
    """One epoch's random order (``copies`` permutations of the ``n`` training images), its batches as
    (start, end) spans of that order, and every batch's augmentation draws concatenated in batch order:
    drawn up front on the host generator (the same draws, in the same order, as batch by batch), so that
    they reach the device in one copy per epoch. A last batch of one image is skipped (batch norm needs two)."""
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(copies)])
    spans, draws = [], []
    for s in range(0, len(order), batch):
        e = min(s + batch, len(order))
        if e - s < 2 and len(order) > 1:
            continue
        spans.append((s, e))
        draws.append(draw_augment(e - s, cfg, gen))
    params = {k: torch.cat([d[k] for d in draws]) for k in (draws[0] if draws else {})}
    return order, spans, params


@dataclass
class Placement:
    """Where a cell's training and validation images live while it trains."""
    where: str         # device: on the accelerator for the whole cell; pinned: page-locked host memory,
                       # copied per batch without blocking; host: CPU training (the images as loaded)
    dtype: str         # storage type (float16 on an accelerator: the crops are float16 on disk, so lossless)
    data_bytes: int    # what the images take in that type
    budget_bytes: int  # what the cell may give them on the device (0 on CPU)
    reason: str

    def as_dict(self) -> dict:
        return {"where": self.where, "dtype": self.dtype, "data_gib": round(self.data_bytes / 2**30, 3),
                "budget_gib": round(self.budget_bytes / 2**30, 3), "reason": self.reason}


DATA_SHARE = 0.5  # of the cell's share of device memory: the rest is the network's, its activations' and workspace


def plan_placement(n_values: int, device: str, *, slots: int = 1, free: int | None = None,
                   total: int | None = None, force: str = "auto") -> Placement:
    """Keep the images on the accelerator when they fit in half of this cell's share of its memory (the
    free memory, and 1/``slots`` of the whole when cells share the GPU), else in pinned host memory.
    ``n_values``: image values (training + validation); ``free``/``total``: the device's memory in bytes."""
    if force not in ("auto", "device", "pinned"):
        raise ValueError(f"placement must be auto, device or pinned, not {force!r}")
    need = 2 * n_values  # float16
    if not str(device).startswith("cuda"):
        if force == "device":  # the accelerator's code path on the CPU (float16 storage, indexed batches): tests
            return Placement("device", "float16", need, 0, "asked for")
        return Placement("host", "float32", 4 * n_values, 0, "CPU training: the images stay where they are loaded")
    share = min(int(free), int(total) // max(int(slots), 1))
    budget = int(DATA_SHARE * share)
    if force == "device" or (force == "auto" and need <= budget):
        why = "asked for" if force == "device" else (
            f"{need / 2**30:.2f} GiB fit in half of this cell's {share / 2**30:.1f} GiB share")
        return Placement("device", "float16", need, budget, why)
    why = "asked for" if force == "pinned" else (
        f"{need / 2**30:.2f} GiB exceed half of this cell's {share / 2**30:.1f} GiB share")
    return Placement("pinned", "float16", need, budget, why)


def slot_count(slots: int, environ: dict | None = None) -> int:
    """Cells sharing this job's GPU: ``training.gpu_slots`` on one machine; 1 in a SLURM job, which has
    its GPU to itself (each cell is one ``--gpus=1`` job)."""
    import os

    env = os.environ if environ is None else environ
    return 1 if env.get("SLURM_JOB_ID") else max(int(slots), 1)


class Images:
    """A set of images placed as ``Placement`` says, handing out batches on the training device as float32:
    on the device, indexed there; in pinned memory, gathered into page-locked buffers and copied without
    blocking, the next batch gathered while the device computes the current one; on the host, as they are."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: str, placement: Placement):
        self.device, self.where = device, placement.where
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        if self.where == "device":
            self.x, self.y = x.to(device, torch.float16), y.to(device)
        elif self.where == "pinned":
            self.x, self.y = x.to(torch.float16).pin_memory(), y.pin_memory()
        else:
            self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, order: torch.Tensor, spans: list[tuple[int, int]]):
        """(x, y) per span of ``order`` (a host index tensor), on the device."""
        if self.where == "device":
            order = order.to(self.device, non_blocking=True)  # one copy per epoch
            for s, e in spans:
                bi = order[s:e]
                yield self.x[bi].float(), self.y[bi]
        elif self.where == "pinned":
            nxt = self._gather(order[spans[0][0]:spans[0][1]]) if spans else None
            for k in range(len(spans)):
                cur = nxt
                if k + 1 < len(spans):  # gathered on the host while the device works on the current batch
                    nxt = self._gather(order[spans[k + 1][0]:spans[k + 1][1]])
                yield cur[0].float(), cur[1]
        else:
            for s, e in spans:
                bi = order[s:e]
                yield self.x[bi].to(self.device), self.y[bi].to(self.device)

    def _gather(self, bi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # page-locked buffers from torch's caching host allocator, which reuses one only after its copy is done
        xb = torch.empty((len(bi), *self.x.shape[1:]), dtype=self.x.dtype, pin_memory=True)
        yb = torch.empty(len(bi), dtype=self.y.dtype, pin_memory=True)
        torch.index_select(self.x, 0, bi, out=xb)
        torch.index_select(self.y, 0, bi, out=yb)
        return xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def all(self) -> torch.Tensor | np.ndarray:
        """Every image, for evaluation (a device tensor when they live there)."""
        return self.x if self.where == "device" else self.x.numpy() if self.where == "host" else self.x


def predict(net: nn.Module, images: np.ndarray | torch.Tensor, device: str, batch: int | None = None,
            amp: bool = True) -> np.ndarray:
    """P(high grade) per image, in batches of ``batch`` (default 64 on CPU, 256 on an accelerator); the
    images may be a device tensor (``Images.all``). One copy back to the host at the end."""
    net.eval()
    cuda = str(device).startswith("cuda")
    batch = batch or (256 if cuda else 64)
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = images[s:s + batch]
            x = (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(device, non_blocking=True).float()
            if cuda and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", enabled=cuda and amp):
                out.append(torch.softmax(net(x).float(), dim=1)[:, 1])
    return torch.cat(out).cpu().numpy() if out else np.zeros(0)


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


class Trainer:
    """One cell's training run as hook methods, in the manner of nnU-Net's ``nnUNetTrainer``: a variant
    overrides a hook or two in a small subclass (passed as ``train_model(..., trainer=MyTrainer)``) instead
    of adding branches to one long loop. ``fit`` calls, in this order:

    ``setup_device`` (seeds), ``build_data`` (training and validation crops), ``build_model``,
    ``compile_model``, ``build_optimizer``, ``build_loss``, ``resume`` (an interrupted run's state),
    ``place_data`` (where the images live); then each epoch ``run_epoch`` (the training steps, through
    ``start_epoch``, ``prepare_batch``, ``batch_norm_step`` and ``train_step``), ``evaluate`` (validation
    AUC and loss), ``select`` (the best-epoch rule) and ``checkpoint`` (the resume state); last ``finish``
    (``best.pt``, ``epochs.tsv``, ``meta.json``). The hooks keep what they build on the trainer (``net``,
    ``opt``, ``loss_fn``, ``gen``, ``history``, ``best``, ``best_state``, ...).

    This class trains on the CPU (or any non-CUDA device), bit-reproducibly for a fixed seed: the hooks
    draw from the seeded generators in a fixed order (torch's global one: the initial weights; ``gen``:
    each epoch's order and augmentation), so an override that draws nothing else leaves every weight as
    it was. ``CudaTrainer`` adds what only an accelerator has; ``trainer_class`` picks by the device.
    """

    #: what ``meta.json`` says of the run's reproducibility
    reproducible = "bit-reproducible on CPU for a fixed seed"
    amp = False   # mixed precision: CUDA only
    fast = False  # cuDNN autotuning and torch.compile: CUDA only

    def __init__(self, data: CropSet, split: dict[str, list[str]], hp: dict, *, seed: int, outdir: Path,
                 device: str = "cpu", max_epochs: int | None = None, slots: int = 1, progress=print):
        self.data, self.split, self.hp, self.seed, self.progress = data, split, hp, seed, progress
        self.outdir, self.device = Path(outdir), _device(device)
        self.epochs = hp["epochs"] if max_epochs is None else min(hp["epochs"], max_epochs)
        self.slots = slot_count(slots)  # cells sharing this GPU (each keeps to its share of the memory)
        self.copies = int(hp.get("augment", {}).get("copies", 1))  # Cui: each image augmented x3 per epoch
        self.last = self.outdir / "last.pt"
        # a fresh start; ``resume`` replaces these by an interrupted run's
        self.start, self.history, self.best, self.best_state = 0, [], {"epoch": -1, "val_auc": -1.0}, None

    def fit(self) -> dict:
        """Train, select the epoch, write the records; the metadata (``meta.json``)."""
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.setup_device()
        self.train_set, self.val_set = self.build_data()
        self.net = self.build_model()
        self.step_fn = self.compile_model(self.net)
        self.bns = [m for m in self.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.opt = self.build_optimizer()
        self.loss_fn = self.build_loss()
        self.gen = torch.Generator().manual_seed(self.seed)  # each epoch's order and augmentation draws
        self.resume()
        self.placement, self.x_train, self.x_val = self.place_data()
        self.saved_at = time.perf_counter()
        for epoch in range(self.start, self.epochs):
            t0 = time.perf_counter()
            loss, seen = self.run_epoch(epoch)
            auc, vloss = self.evaluate(epoch)
            rec = {"epoch": epoch, "loss": loss, "val_auc": auc, "val_loss": vloss, "seconds": time.perf_counter() - t0,
                   "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)}
            self.history.append(rec)
            self.select(epoch, rec)
            self.checkpoint(epoch)
            self.progress(f"epoch {epoch + 1}/{self.hp['epochs']}: loss {rec['loss']:.4f}, val AUC {auc:.3f}, "
                          f"{rec['images_per_s']:.0f} images/s")
        return self.finish()

    # ---- setting up

    def setup_device(self) -> None:
        """Seed torch's global generator (the initial weights) and numpy's."""
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)

    def build_data(self) -> tuple[CropSet, CropSet | None]:
        """The training patients' crops and the validation patients' (None without a validation set, as in
        Li's 7:3 and k-fold splits: then the last epoch is kept)."""
        train = self.data.subset(set(self.split["train"]))
        val = self.data.subset(set(self.split["val"])) if self.split.get("val") else None
        if len(np.unique(train.labels)) < 2:
            raise ValueError("the training set holds a single grade group")
        return train, val

    def build_model(self) -> nn.Module:
        """The network of ``hp['arch']`` on the device; Dai's frozen early stages (``freeze_stages``) are the
        model builder's, their parameters without gradients."""
        hp = self.hp
        return models.build_model(hp["arch"], in_channels=self.data.images.shape[1],
                                  pretrained=hp.get("pretrained", "none"), weights_file=hp.get("weights_file"),
                                  freeze_stages=hp.get("freeze_stages", 0)).to(self.device)

    def compile_model(self, net: nn.Module) -> nn.Module:
        """What the training steps call (``step_fn``): the network itself; evaluation always calls ``net``."""
        return net

    def build_optimizer(self) -> torch.optim.Optimizer:
        """SGD or Adam over the trainable parameters (frozen stages have none); ``momentum`` is SGD's
        momentum or Adam's beta1 (Dai: 0.8); plus ``optimizer_options``."""
        hp, extra = self.hp, self.optimizer_options()
        params = [p for p in self.net.parameters() if p.requires_grad]
        if hp["optimizer"] == "sgd":
            return torch.optim.SGD(params, lr=hp["lr"], momentum=hp.get("momentum", 0.9),
                                   weight_decay=hp.get("weight_decay", 0), **extra)
        return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0),
                                betas=(hp.get("momentum", 0.9), 0.999), **extra)

    def optimizer_options(self) -> dict:
        """Further keyword arguments of the optimiser (none here; ``CudaTrainer``: fused)."""
        return {}

    def build_loss(self) -> nn.Module:
        """Cross-entropy with the training set's class weights (``class_weights``; default balanced)."""
        w = class_weights(self.train_set.labels, self.hp.get("class_weight", "balanced"))
        return nn.CrossEntropyLoss(weight=w.to(self.device))

    def resume(self) -> None:
        """Continue an interrupted run from ``last.pt``: weights, optimiser, both generators, the epochs'
        records and the best epoch so far (a state that cannot be read: start afresh, saying why)."""
        st = _read_state(self.last, self.device, self.progress) if self.last.exists() else None
        if st is None:
            return
        self.net.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        self.start, self.history, self.best, self.best_state = (st["epoch"] + 1, st["history"], st["best"],
                                                                st["best_model"])
        self.progress(f"resuming after epoch {st['epoch']}")

    def place_data(self) -> tuple[Placement, Images, torch.Tensor | np.ndarray | None]:
        """Where the images live while the cell trains (``plan_placement``, once the network is on the
        device, so that the free memory counts it): the placement, the training ``Images`` and every
        validation image (None without a validation set)."""
        free, total = self.device_memory()
        train, val, dev = self.train_set, self.val_set, self.device
        n_values = int(train.images.size + (val.images.size if val is not None else 0))
        place = plan_placement(n_values, dev, slots=self.slots, free=free, total=total,
                               force=self.hp.get("placement", "auto"))
        x_val = Images(val.images, val.labels, dev, place).all() if val is not None else None
        return place, Images(train.images, train.labels, dev, place), x_val

    def device_memory(self) -> tuple[int | None, int | None]:
        """The device's free and total memory in bytes (unknown off CUDA)."""
        return None, None

    # ---- each epoch

    def run_epoch(self, epoch: int) -> tuple[float, int]:
        """One epoch's training steps: the mean loss per image and the number of images seen. The epoch's
        order and augmentation draws are made up front (``epoch_plan``) and reach the device in one copy;
        the loss is summed there and read once, at the epoch's end."""
        self.start_epoch(epoch)
        order, spans, draws = epoch_plan(len(self.x_train), self.hp["batch"], self.copies,
                                         self.hp.get("augment", {}), self.gen)
        draws = {k: v.to(self.device, non_blocking=True) for k, v in draws.items()}
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        for k, ((s, e), (x, y)) in enumerate(zip(spans, self.x_train.batches(order, spans))):
            x = self.prepare_batch(apply_augment(x, {key: v[seen:seen + e - s] for key, v in draws.items()}))
            self.batch_norm_step(k)
            loss = self.train_step(x, y)
            total += loss.detach().double() * (e - s)
            seen += e - s
        return float(total) / max(seen, 1), seen  # the epoch's one wait for the device

    def start_epoch(self, epoch: int) -> None:
        """Training mode; batch norm's running statistics start afresh as the plain average of the coming
        epoch's batches (``fresh_batch_norm_statistics``), kept by ``batch_norm_step``."""
        self.net.train()
        fresh_batch_norm_statistics(self.net)

    def batch_norm_step(self, k: int) -> None:
        """Before the k-th batch (from 0) batch norm's momentum is 1/(k+1): the running statistics are the
        average of the epoch's batches (as in torch's averaging mode, which reads a device counter back
        to the host in every layer at every step)."""
        for m in self.bns:
            m.momentum = 1.0 / (k + 1)

    def prepare_batch(self, x: torch.Tensor) -> torch.Tensor:
        """An augmented batch as the network takes it (as it is here; ``CudaTrainer``: channels-last)."""
        return x

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimisation step on a batch; its loss (a device tensor, not read here)."""
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.step_fn(x), y)
        loss.backward()
        self.opt.step()
        return loss

    def evaluate(self, epoch: int) -> tuple[float, float]:
        """Validation AUC (patient level, mean probability) and validation loss (image level, with the
        same class weights), which breaks the AUC's ties, frequent on small sets; NaN without a set."""
        if self.val_set is None:
            return float("nan"), float("nan")
        val = self.val_set
        pv = predict(self.net, self.x_val, self.device, batch=self.hp.get("eval_batch"), amp=self.amp)
        pm = patient_mean(val.patients, pv)
        yv = pd.Series(val.labels).groupby(pd.Series(val.patients)).first().loc[pm.index].to_numpy()
        pc = np.clip(pv, 1e-7, 1 - 1e-7)
        w = self.loss_fn.weight.detach().cpu().numpy()[val.labels]
        vloss = float(-(w * np.where(val.labels == 1, np.log(pc), np.log(1 - pc))).sum() / w.sum())
        return _auc(yv, pm.to_numpy()), vloss

    def select(self, epoch: int, rec: dict) -> None:
        """The best-epoch rule: the highest validation AUC, ties to the lower validation loss; without a
        validation set the last epoch (choosing on training or test patients would flatter the model).
        The chosen weights are held in memory (``best_state``) and written once, by ``finish``."""
        if self.val_set is not None:
            auc, vloss = rec["val_auc"], rec["val_loss"]
            key = (auc if auc == auc else -1.0, -vloss)
            if self.best["epoch"] < 0 or key > (self.best["val_auc"], -self.best.get("val_loss", np.inf)):
                self.best = {"epoch": epoch, "val_auc": key[0], "val_loss": vloss}
                self.best_state = _snapshot(self.net)
        elif epoch == self.epochs - 1:
            self.best = {"epoch": epoch, "val_auc": float("nan"), "val_loss": float("nan")}
            self.best_state = _snapshot(self.net)

    def checkpoint(self, epoch: int) -> None:
        """The resume state (``state``), at most once every ``checkpoint_s`` seconds (default a minute) and
        when the run stops early (``max_epochs``): a resumed job replays the epochs since (same result)."""
        stopping_early = epoch == self.epochs - 1 and self.epochs < self.hp["epochs"]
        if time.perf_counter() - self.saved_at >= self.hp.get("checkpoint_s", 60) or stopping_early:
            save_atomic(self.state(epoch), self.last)
            self.saved_at = time.perf_counter()

    def state(self, epoch: int) -> dict:
        """What ``resume`` reads back (``STATE_KEYS``), the best epoch's weights with it."""
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "generator": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch, "history": self.history, "best": self.best,
                "best_model": self.best_state}

    # ---- the end

    def finish(self) -> dict:
        """Write ``best.pt`` (the selected epoch's weights), ``epochs.tsv`` and ``meta.json``; the metadata."""
        from ccgrade.outputs import write_text, write_tsv

        if self.best_state is not None:
            save_atomic(self.best_state, self.outdir / "best.pt")
        write_tsv(self.outdir / "epochs.tsv", pd.DataFrame(self.history))
        meta = self.metadata()
        write_text(self.outdir / "meta.json", json.dumps(meta, indent=1, default=str))
        return meta

    def metadata(self) -> dict:
        """Versions, hyperparameters, the chosen epoch, the label meaning and how the cell ran."""
        best, train = self.best, self.train_set
        return {"hyperparameters": self.hp, "seed": self.seed, "device": self.device, "best_epoch": best["epoch"],
                "selection": "best validation AUC (ties: lower validation loss)" if self.val_set is not None else
                "last epoch (the split has no validation set)",
                "best_val_auc": best["val_auc"] if best["val_auc"] == best["val_auc"] else None,
                "epochs_done": len(self.history), "label_meaning": {"0": "low", "1": "high"},
                "input_shape": list(self.data.images.shape[1:]), "n_train_images": int(len(train.labels)),
                "n_train_patients": int(len(set(train.patients))), "execution": self.execution(),
                "versions": {"torch": torch.__version__, "numpy": np.__version__}}

    def execution(self) -> dict:
        """How the cell ran: where its images lived, mixed precision, GPU slots, fast mode, reproducibility."""
        return {"placement": self.placement.as_dict(), "amp": self.amp, "gpu_slots": self.slots, "fast": self.fast,
                "reproducible": self.reproducible}


class CudaTrainer(Trainer):
    """The trainer on a CUDA device: deterministic cuDNN kernels; the network and 2D batches channels-last;
    a fused optimiser, which takes AMP's inf check on the device (no per-step wait for the host); mixed
    precision (``hp['amp']``, default on) with a gradient scaler; the device's memory, of which cells
    sharing it (``slots``) each keep to their share, for ``plan_placement``."""

    reproducible = "deterministic cuDNN kernels; GPU results may differ from CPU ones"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.amp = bool(self.hp.get("amp", True))

    def setup_device(self) -> None:
        torch.backends.cudnn.benchmark = self.fast  # autotuning picks kernels by timing: not reproducible
        torch.backends.cudnn.deterministic = not self.fast
        super().setup_device()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def build_model(self) -> nn.Module:
        net = super().build_model()
        return net.to(memory_format=torch.channels_last) if self.data.images.ndim == 4 else net

    def optimizer_options(self) -> dict:
        return {"fused": True}

    def device_memory(self) -> tuple[int, int]:
        index = torch.device(self.device).index
        index = torch.cuda.current_device() if index is None else index
        if self.slots > 1:  # cells sharing the GPU each keep to their share (beyond it this cell runs out, not another)
            torch.cuda.set_per_process_memory_fraction(1 / self.slots, index)
        return torch.cuda.mem_get_info(index)

    def prepare_batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", enabled=self.amp):
            loss = self.loss_fn(self.step_fn(x), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss


class FastCudaTrainer(CudaTrainer):
    """``hp['fast']`` on CUDA: cuDNN autotuning and ``torch.compile`` of the training steps (not
    bit-reproducible). torch.compile would recompile for each per-step batch-norm momentum, so here the
    running statistics are torch's usual exponential average (momentum 0.1)."""

    reproducible = "not bit-reproducible (fast: cuDNN autotuning and torch.compile)"
    fast = True

    def compile_model(self, net: nn.Module) -> nn.Module:
        return torch.compile(net)

    def start_epoch(self, epoch: int) -> None:
        self.net.train()
        for m in self.bns:
            m.momentum = 0.1

    def batch_norm_step(self, k: int) -> None:
        pass


def trainer_class(device: str, hp: dict) -> type[Trainer]:
    """The trainer for a device: ``CudaTrainer`` on CUDA (``FastCudaTrainer`` with ``hp['fast']``), else
    ``Trainer`` (``fast`` and ``amp`` are CUDA only: elsewhere they change nothing)."""
    if not str(_device(device)).startswith("cuda"):
        return Trainer
    return FastCudaTrainer if hp.get("fast", False) else CudaTrainer


def make_trainer(data: CropSet, split: dict[str, list[str]], hp: dict, *, seed: int, outdir: Path,
                 device: str = "auto", max_epochs: int | None = None, slots: int = 1, progress=print,
                 trainer: type[Trainer] | None = None) -> Trainer:
    """A trainer for one cell (``train_model``'s arguments): of class ``trainer`` when given (a variant;
    one that should keep the accelerator's path on CUDA subclasses ``CudaTrainer``), else the device's."""
    dev = _device(device)
    cls = trainer_class(dev, hp) if trainer is None else trainer
    return cls(data, split, hp, seed=seed, outdir=outdir, device=dev, max_epochs=max_epochs, slots=slots,
               progress=progress)


def train_model(data: CropSet, split: dict[str, list[str]], hp: dict, *, seed: int, outdir: Path,
                device: str = "auto", max_epochs: int | None = None, slots: int = 1, progress=print,
                trainer: type[Trainer] | None = None) -> dict:
    """Train on ``split['train']``, select the epoch by validation AUC (``split['val']``; without one,
    the last epoch), and write ``last.pt`` (each epoch), ``best.pt``, ``epochs.tsv`` and ``meta.json``.
    ``max_epochs`` stops early (as an interruption would); calling again resumes from ``last.pt``.
    ``slots``: cells sharing this GPU (``training.gpu_slots``; each keeps to its share of the memory).
    ``trainer``: a ``Trainer`` subclass to train with instead of the device's (``trainer_class``).

    On an accelerator the images live on the device (``plan_placement``), the epoch's order and
    augmentation draws reach it in one copy, the loss is summed there and read once per epoch, and the
    optimiser is fused (no per-step wait for the device). ``hp['fast']`` adds cuDNN autotuning and
    ``torch.compile`` (CUDA only; not bit-reproducible); ``hp['amp']`` (default on) mixed precision.
    The work is ``Trainer.fit``'s (its hooks, in order, are listed there)."""
    return make_trainer(data, split, hp, seed=seed, outdir=outdir, device=device, max_epochs=max_epochs, slots=slots,
                        progress=progress, trainer=trainer).fit()


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temporary file renamed into place: a kill mid-write leaves the old file. Saved to
    memory first: torch names a file's records after the file, so a randomly named temporary file would give
    the same tensors different bytes on every run."""
    import io

    from ccgrade.outputs import atomic_path

    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())


#: what a resume state holds (``train_model`` writes it); anything else is not ours
STATE_KEYS = {"model", "optimizer", "generator", "torch_rng", "epoch", "history", "best", "best_model"}


def _read_state(path: Path, device: str, progress) -> dict | None:
    """The resume state, or None (start afresh, saying why) when it cannot be read. Read with
    ``weights_only``: tensors and plain containers only, so a planted file cannot run code (issue 27)."""
    try:
        st = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(st, dict) or set(st) != STATE_KEYS or not isinstance(st["epoch"], int):
            raise ValueError("not a resume state of this trainer")
        return st
    except Exception as e:  # e.g. a state from before atomic writes, cut short by a kill; or a planted pickle
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
    from ccgrade.outputs import pyplot, save_figure, write_text, write_tsv

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
    from ccgrade.outputs import pyplot, save_figure

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

    from ccgrade.outputs import read_table, write_text, write_tsv

    ap = argparse.ArgumentParser(description="Train one cell of the model matrix and predict its test patients.")
    ap.add_argument("--cohort", required=True, help="analysis cohort sheet (patient_id, grade_group)")
    ap.add_argument("--split", required=True, help="split JSON")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--crops", nargs="+", required=True, help="results/crops/<roi>/<pid>/<target>.npz files")
    ap.add_argument("--hp", required=True, help="JSON hyperparameters (preset + overrides + arch)")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    ap.add_argument("--slots", type=int, default=1, help="cells sharing one GPU (training.gpu_slots; 1 in SLURM jobs)")
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
    meta = train_model(data, split, hp, seed=a.seed, outdir=out, device=a.device, slots=a.slots)
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
