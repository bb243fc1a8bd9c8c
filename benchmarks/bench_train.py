"""Benchmark (prints figures; not a test): our trainer vs a bare torchvision loop on the same tensors.

Usage: .venv/bin/python benchmarks/bench_train.py [--n 512] [--size 64] [--arch resnet34] [--epochs 2]
Both build and train the same network with the same optimizer, batch and images; ours adds
on-device augmentation, class-weighted loss, per-epoch validation and checkpointing (the overhead the
target bounds: under 10%). On CUDA both use AMP and channels-last. The device is printed, and batched
inference time per image (and on CUDA the peak memory) after it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "src"))

from ccgrade import models, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rng = np.random.default_rng(0)
    n_pat = a.n // 8
    imgs = rng.normal(size=(a.n, 1, a.size, a.size)).astype(np.float32)
    labels = (np.arange(a.n) // 8 % 3 == 0).astype(np.int64)
    pats = np.array([f"P{i // 8:04d}" for i in range(a.n)])
    data = train.CropSet(imgs, labels, pats, np.arange(a.n) % 8, np.tile([0.0, 0, a.size, a.size], (a.n, 1)))
    ids = sorted(set(pats))
    split = {"train": ids[: int(0.9 * n_pat)], "val": ids[int(0.9 * n_pat):]}
    n_train = int(np.isin(pats, split["train"]).sum())
    hp = {"arch": a.arch, "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "batch": a.batch, "epochs": a.epochs,
          "augment": {"rotate_deg": 30, "hflip": True, "vflip": True, "copies": 1}, "class_weight": "balanced"}

    def bare() -> float:
        t = time.perf_counter()
        torch.manual_seed(0)
        net = models.build_model(a.arch, 1).to(dev)
        if dev == "cuda":
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        x_all = torch.from_numpy(imgs[np.isin(pats, split["train"])])
        y_all = torch.from_numpy(labels[np.isin(pats, split["train"])])
        scaler = torch.amp.GradScaler("cuda", enabled=dev == "cuda")
        for _ in range(a.epochs):
            net.train()
            idx = torch.randperm(len(y_all))
            for s in range(0, len(idx), a.batch):
                bi = idx[s:s + a.batch]
                x, y = x_all[bi].to(dev), y_all[bi].to(dev)
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", enabled=dev == "cuda"):
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        if dev == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    def ours() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            train.train_model(data, split, hp, seed=0, outdir=Path(tmp), device=dev, progress=lambda s: None)
            return time.perf_counter() - t

    bare()  # warm-up (allocators, kernels)
    b = min(bare() for _ in range(2))
    o = min(ours() for _ in range(2))
    print(f"device: {torch.cuda.get_device_name() if dev == 'cuda' else 'CPU'} ({torch.get_num_threads()} threads)")
    print(f"{a.arch} at {a.size}^2, batch {a.batch}, {n_train} training images x {a.epochs} epochs")
    print(f"  bare torchvision loop: {n_train * a.epochs / b:.1f} images/s")
    print(f"  ccgrade trainer:       {n_train * a.epochs / o:.1f} images/s (incl. augmentation, validation, checkpoints)")
    print(f"  overhead {100 * (o / b - 1):.1f}% (target < 10%)")
    net = models.build_model(a.arch, 1).to(dev)
    train.predict(net, imgs[:64], dev)  # warm-up
    t = time.perf_counter()
    train.predict(net, imgs, dev, batch=64)
    if dev == "cuda":
        torch.cuda.synchronize()
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(f"  inference, batch 64: {1000 * (time.perf_counter() - t) / len(imgs):.2f} ms/image")


if __name__ == "__main__":
    main()
