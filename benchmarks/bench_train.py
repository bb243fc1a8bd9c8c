"""Benchmark (prints figures; not a test): the trainer's speed, on the CPU and on an accelerator.

Usage:
  .venv/bin/python benchmarks/bench_train.py                  # CPU: ours vs a bare torchvision loop (overhead)
  python3 benchmarks/bench_train.py --suite gpu --json $OUT/bench_train.json   # on a GPU: everything below
  .venv/bin/python benchmarks/bench_train.py --suite gpu --tiny --device cpu   # the GPU suite's flow, in seconds

Suites (``--suite``, comma-separated; ``gpu`` = throughput,slots,cui):
- ``overhead``: our trainer (on-device augmentation, class-weighted loss, per-epoch validation, checkpoints)
  vs a bare loop on the same tensors, ResNet34 at 64 px (the CPU target: under 10%).
- ``throughput``: images/s and peak device memory of ResNet34, SE-ResNet34, ResNet50 at 224 px and the 3D
  ResNet-18 at 32^3, batch 32 and 128, AMP on and off, each with the old loop (host indexing, pageable
  copies, a host sync at every step: the loss read, GradScaler's inf check, batch norm's counter) beside
  the trainer's loop (images on the device, draws made up front, loss read once per epoch, fused optimiser);
  plus ResNet34 with the images in pinned host memory and with ``fast`` (torch.compile).
- ``slots``: a demo-sized matrix (8 cells, 64-px crops, each cell a ``python -m ccgrade.learn.train`` process as
  Snakemake runs it) with 1, 2 and 4 cells at once on the GPU (``training.gpu_slots``).
- ``cui``: Cui's four-phase cell at paper scale (15,000 images of 224 px per epoch, x3 augmentation, SGD,
  batch 32): measured epochs, and 50 epochs extrapolated.
Each figure is printed as it is measured; ``--json`` writes them all, after each suite (a run stopped by
a time limit keeps what it had). On an H100/H200 the whole GPU suite should take 6-8 minutes; where one
command may run for less, split it: ``--suite throughput``, then ``--suite slots,cui``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "src"))

from ccgrade.learn import models, train  # noqa: E402

RESULTS: dict = {}
AUG = {"rotate_deg": 30, "hflip": True, "vflip": True, "copies": 1}


def say(msg: str) -> None:
    print(msg, flush=True)


def crops(n: int, shape: tuple, seed: int = 0) -> train.CropSet:
    """n random images of ``shape`` (C, ...) from n // 8 patients, a third of them high grade; float16-exact."""
    rng = np.random.default_rng(seed)
    imgs = rng.standard_normal(size=(n, *shape), dtype=np.float32).astype(np.float16).astype(np.float32)
    labels = (np.arange(n) // 8 % 3 == 0).astype(np.int64)
    pats = np.array([f"P{i // 8:05d}" for i in range(n)])
    return train.CropSet(imgs, labels, pats, np.arange(n) % 8, np.tile([0.0, 0, 1, 1], (n, 1)))


def sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def peak_reset(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(dev: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if dev.startswith("cuda") else float("nan")


# ------------------------------------------------------------------------------------------ the old loop

def old_loop(data: train.CropSet, hp: dict, dev: str, epochs: int) -> list[float]:
    """The trainer's loop before issue 18, step for step: the images in pageable host memory indexed on the
    host and copied per batch, augmentation drawn per batch on the host (small blocking copies), torch's
    averaging batch norm (a device counter read in every layer), an unfused optimiser (GradScaler's inf
    check read back) and the loss read at every step. Images/s per epoch."""
    cuda = dev.startswith("cuda")
    amp = cuda and hp.get("amp", True)
    torch.manual_seed(0)
    net = models.build_model(hp["arch"], data.images.shape[1]).to(dev)
    if cuda and data.images.ndim == 4:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=hp["lr"], momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss(weight=train.class_weights(data.labels, "balanced").to(dev))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    gen = torch.Generator().manual_seed(0)
    x_all, y_all = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    rates = []
    for _ in range(epochs):
        sync(dev)
        t0 = time.perf_counter()
        net.train()
        train.fresh_batch_norm_statistics(net)
        idx = torch.randperm(len(y_all), generator=gen)
        total, seen = 0.0, 0
        for s in range(0, len(idx), hp["batch"]):
            bi = idx[s:s + hp["batch"]]
            x = x_all[bi].to(dev, non_blocking=True)
            y = y_all[bi].to(dev)
            x = train.augment(x, hp["augment"], gen)
            if cuda and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=amp):
                loss = loss_fn(net(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(bi)
            seen += len(bi)
        sync(dev)
        rates.append(seen / (time.perf_counter() - t0))
    return rates


def new_loop(data: train.CropSet, hp: dict, dev: str, epochs: int) -> tuple[list[float], dict]:
    """The trainer itself (``train.train_model``, no validation set): images/s per epoch, its execution record."""
    ids = sorted(set(data.patients))
    with tempfile.TemporaryDirectory() as tmp:
        meta = train.train_model(data, {"train": ids}, dict(hp, epochs=epochs, checkpoint_s=1e9), seed=0,
                                 outdir=Path(tmp), device=dev, progress=lambda s: None)
        import pandas as pd

        rates = pd.read_csv(Path(tmp) / "epochs.tsv", sep="\t")["images_per_s"].tolist()
    return rates, meta["execution"]


# ------------------------------------------------------------------------------------------ suites

def overhead(a, dev: str) -> None:
    """Ours vs a bare torchvision loop, same tensors (the CPU overhead figure)."""
    data = crops(a.n, (1, a.size, a.size))
    ids = sorted(set(data.patients))
    split = {"train": ids[: int(0.9 * len(ids))], "val": ids[int(0.9 * len(ids)):]}
    keep = np.isin(data.patients, split["train"])
    n_train = int(keep.sum())
    hp = {"arch": a.arch, "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "batch": a.batch, "epochs": a.epochs,
          "augment": AUG, "class_weight": "balanced"}

    def bare() -> float:
        t = time.perf_counter()
        torch.manual_seed(0)
        net = models.build_model(a.arch, 1).to(dev)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        x_all, y_all = torch.from_numpy(data.images[keep]), torch.from_numpy(data.labels[keep])
        for _ in range(a.epochs):
            net.train()
            idx = torch.randperm(len(y_all))
            for s in range(0, len(idx), a.batch):
                bi = idx[s:s + a.batch]
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(net(x_all[bi].to(dev)), y_all[bi].to(dev))
                loss.backward()
                opt.step()
        sync(dev)
        return time.perf_counter() - t

    def ours() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            train.train_model(data, split, hp, seed=0, outdir=Path(tmp), device=dev, progress=lambda s: None)
            return time.perf_counter() - t

    bare()  # warm-up (allocators, kernels)
    b, o = [], []
    for _ in range(a.rounds):  # interleaved rounds: the machine's speed drifts
        b.append(bare())
        o.append(ours())
    b, o = min(b), min(o)
    say(f"overhead: {a.arch} at {a.size}^2, batch {a.batch}, {n_train} training images x {a.epochs} epochs")
    say(f"  bare torchvision loop: {n_train * a.epochs / b:.1f} images/s")
    say(f"  ccgrade trainer:       {n_train * a.epochs / o:.1f} images/s (incl. augmentation, validation, checkpoints)")
    say(f"  overhead {100 * (o / b - 1):.1f}% (target < 10%)")
    net = models.build_model(a.arch, 1).to(dev)
    train.predict(net, data.images[:64], dev)  # warm-up
    t = time.perf_counter()
    train.predict(net, data.images, dev, batch=64)
    sync(dev)
    ms = 1000 * (time.perf_counter() - t) / len(data.images)
    say(f"  inference, batch 64: {ms:.2f} ms/image")
    RESULTS["overhead"] = {"arch": a.arch, "size": a.size, "bare_images_per_s": n_train * a.epochs / b,
                           "ours_images_per_s": n_train * a.epochs / o, "overhead_pct": 100 * (o / b - 1),
                           "inference_ms_per_image": ms}


def throughput(a, dev: str) -> None:
    size2d, size3d = (32, 8) if a.tiny else (224, 32)
    steps = 3 if a.tiny else a.steps
    grid = [("resnet34", (1, size2d, size2d)), ("se_resnet34", (1, size2d, size2d)),
            ("resnet50", (1, size2d, size2d)), ("resnet3d18", (1, size3d, size3d, size3d))]
    rows = RESULTS.setdefault("throughput", [])
    say(f"throughput ({steps} steps an epoch, best of epochs 2-{a.epochs_tp}; peak = max allocated):")
    say(f"  {'arch':<12}{'input':>12}{'batch':>6}{'amp':>5}  {'old img/s':>10}{'new img/s':>10}{'new/old':>8}"
        f"{'old GiB':>8}{'new GiB':>8}  placement")
    for arch, shape in grid:
        for batch in (32, 128):
            data = crops(batch * steps, shape)
            for amp in (True, False):
                hp = {"arch": arch, "optimizer": "sgd", "lr": 1e-3, "batch": batch, "augment": AUG,
                      "class_weight": "balanced", "amp": amp}
                peak_reset(dev)
                old = max(old_loop(data, hp, dev, a.epochs_tp)[1:])
                old_peak = peak_gib(dev)
                peak_reset(dev)
                rates, ex = new_loop(data, hp, dev, a.epochs_tp)
                new, new_peak = max(rates[1:]), peak_gib(dev)
                row = {"arch": arch, "input": "x".join(map(str, shape[1:])), "batch": batch, "amp": amp,
                       "old_images_per_s": old, "new_images_per_s": new, "old_peak_gib": old_peak,
                       "new_peak_gib": new_peak, "placement": ex["placement"]["where"],
                       "data_gib": ex["placement"]["data_gib"]}
                rows.append(row)
                say(f"  {arch:<12}{row['input']:>12}{batch:>6}{'on' if amp else 'off':>5}  {old:>10.0f}{new:>10.0f}"
                    f"{new / old:>8.2f}{old_peak:>8.2f}{new_peak:>8.2f}  {row['placement']} ({row['data_gib']} GiB)")
    if dev.startswith("cuda"):  # the same cell with its images in pinned host memory, and with torch.compile
        data = crops(128 * steps, (1, size2d, size2d))
        for label, extra in (("pinned", {"placement": "pinned"}), ("fast", {"fast": True})):
            hp = {"arch": "resnet34", "optimizer": "sgd", "lr": 1e-3, "batch": 128, "augment": AUG,
                  "class_weight": "balanced", **extra}
            peak_reset(dev)
            t = time.perf_counter()
            rates, ex = new_loop(data, hp, dev, a.epochs_tp)
            row = {"arch": "resnet34", "variant": label, "batch": 128, "amp": True, "new_images_per_s": max(rates[1:]),
                   "first_epoch_images_per_s": rates[0], "new_peak_gib": peak_gib(dev), "wall_s": time.perf_counter() - t}
            rows.append(row)
            say(f"  resnet34 {label}: {row['new_images_per_s']:.0f} images/s (first epoch {rates[0]:.0f}, "
                f"compile included), peak {row['new_peak_gib']:.2f} GiB")


def write_cells(root: Path, n_pat: int, per: int, size: int) -> tuple[Path, Path, list[str]]:
    """A demo-sized cohort as the matrix reads it: cohort sheet, split JSON, one crop file per patient."""
    from ccgrade.outputs import write_npz

    rng = np.random.default_rng(1)
    ids = [f"P{i:03d}" for i in range(n_pat)]
    groups = ["high" if i % 3 == 0 else "low" for i in range(n_pat)]
    (root / "cohort.tsv").write_text("patient_id\tgrade_group\n" + "".join(f"{p}\t{g}\n" for p, g in zip(ids, groups)))
    split = {"folds": [{"train": ids[: int(0.8 * n_pat)], "val": ids[int(0.8 * n_pat): int(0.9 * n_pat)],
                        "test": ids[int(0.9 * n_pat):]}]}
    (root / "split.json").write_text(json.dumps(split))
    files = []
    for p in ids:
        f = root / "crops" / p / "cmp.npz"
        f.parent.mkdir(parents=True)
        write_npz(f, images=rng.normal(size=(per, 1, size, size)).astype(np.float16),
                  slice_index=np.arange(per), boxes=np.tile([0.0, 0, size, size], (per, 1)), status="ok", reason="")
        files.append(str(f))
    return root / "cohort.tsv", root / "split.json", files


def slots(a, dev: str) -> None:
    """The wall time of a demo-sized matrix with 1, 2, 4 cells at once (each a train job as Snakemake runs it)."""
    archs = ["resnet34", "resnet34", "resnet34", "resnet34", "se_resnet34", "resnet50", "resnet18", "resnet18"]
    n_pat, per, size, epochs = (12, 2, 16, 1) if a.tiny else (40, 10, 64, 4)
    hp = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "batch": 32, "epochs": epochs, "augment": AUG,
          "class_weight": "balanced", "pretrained": "none"}
    out = RESULTS.setdefault("slots", [])
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow" / "src"))
    with tempfile.TemporaryDirectory() as tmp:
        cohort, split, files = write_cells(Path(tmp), n_pat, per, size)

        def cell(args) -> float:
            k, s = args
            t = time.perf_counter()
            cmd = [sys.executable, "-m", "ccgrade.learn.train", "--cohort", str(cohort), "--split", str(split),
                   "--crops", *files, "--hp", json.dumps(dict(hp, arch=archs[k])), "--seed", str(k + 1),
                   "--device", dev, "--threads", "2", "--slots", str(s), "--outdir", f"{tmp}/m{s}/{k}"]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"cell {k} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
            return time.perf_counter() - t

        say(f"matrix of {len(archs)} demo-sized cells ({n_pat} patients x {per} crops of {size} px, {epochs} epochs):")
        for s in a.slot_counts:
            t = time.perf_counter()
            with ThreadPoolExecutor(s) as pool:
                per_cell = list(pool.map(cell, [(k, s) for k in range(len(archs))]))
            wall = time.perf_counter() - t
            out.append({"slots": s, "wall_s": wall, "mean_cell_s": float(np.mean(per_cell))})
            say(f"  {s} slot(s): {wall:.1f} s for the matrix (a cell {np.mean(per_cell):.1f} s on average)")


def cui(a, dev: str) -> None:
    """Cui's four-phase cell at paper scale: 15,000 images of 224 px an epoch, x3, SGD lr 1e-3, batch 32."""
    n, size, epochs = (240, 32, 2) if a.tiny else (15000, 224, a.cui_epochs)
    data = crops(n, (1, size, size), seed=3)
    ids = sorted(set(data.patients))
    split = {"train": ids[: int(0.9 * len(ids))], "val": ids[int(0.9 * len(ids)):]}
    hp = {"arch": "resnet34", "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "batch": 32,
          "epochs": epochs, "augment": {"rotate_deg": 30, "hflip": True, "vflip": True, "copies": 3},
          "class_weight": "balanced", "checkpoint_s": 1e9}
    peak_reset(dev)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        train.train_model(data, split, hp, seed=1, outdir=Path(tmp), device=dev, progress=lambda s: None)
        wall = time.perf_counter() - t
        import pandas as pd

        ep = pd.read_csv(Path(tmp) / "epochs.tsv", sep="\t")
    per_epoch = float(ep["seconds"].iloc[1:].mean() if len(ep) > 1 else ep["seconds"].iloc[0])
    RESULTS["cui"] = {"images_per_epoch": 3 * int(np.isin(data.patients, split["train"]).sum()),
                      "epochs_measured": epochs, "wall_s": wall, "epoch_s": per_epoch,
                      "images_per_s": float(ep["images_per_s"].iloc[1:].mean() if len(ep) > 1 else ep["images_per_s"].iloc[0]),
                      "fifty_epochs_min_extrapolated": (wall - per_epoch * epochs + 50 * per_epoch) / 60,
                      "peak_gib": peak_gib(dev)}
    r = RESULTS["cui"]
    say(f"Cui four-phase cell at paper scale ({n} images of {size} px, x3 per epoch, batch 32, validation each epoch):")
    say(f"  {epochs} epochs in {wall:.1f} s ({per_epoch:.1f} s an epoch after the first, {r['images_per_s']:.0f} "
        f"images/s); 50 epochs: {r['fifty_epochs_min_extrapolated']:.1f} min (extrapolated); peak {r['peak_gib']:.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default=None, help="overhead, throughput, slots, cui, gpu (all three) [CPU: overhead; "
                                                  "CUDA: gpu]")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: the suites' flow in seconds (checks the script)")
    ap.add_argument("--json", default=None, help="write every figure to this file")
    ap.add_argument("--n", type=int, default=512, help="overhead: images")
    ap.add_argument("--size", type=int, default=64, help="overhead: pixels a side")
    ap.add_argument("--arch", default="resnet34", help="overhead: architecture")
    ap.add_argument("--epochs", type=int, default=2, help="overhead: epochs")
    ap.add_argument("--batch", type=int, default=32, help="overhead: batch")
    ap.add_argument("--rounds", type=int, default=2, help="overhead: interleaved rounds (best of)")
    ap.add_argument("--steps", type=int, default=30, help="throughput: steps an epoch")
    ap.add_argument("--epochs-tp", type=int, default=3, help="throughput: epochs (the first is the warm-up)")
    ap.add_argument("--slot-counts", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4],
                    help="slots: cells at once, comma-separated")
    ap.add_argument("--cui-epochs", type=int, default=3, help="cui: epochs measured (50 extrapolated)")
    a = ap.parse_args()
    dev = train._device(a.device)
    suites = (a.suite or ("gpu" if dev.startswith("cuda") else "overhead")).replace("gpu", "throughput,slots,cui")
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    say(f"device: {name}; torch {torch.__version__}")
    RESULTS["device"], RESULTS["torch"] = name, torch.__version__
    t0 = time.perf_counter()
    for suite in suites.split(","):
        {"overhead": overhead, "throughput": throughput, "slots": slots, "cui": cui}[suite](a, dev)
        say(f"[{suite} done at {time.perf_counter() - t0:.0f} s]")
        if a.json:
            Path(a.json).write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
