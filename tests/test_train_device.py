"""The accelerator's code paths of the trainer, exercised on the CPU: where the images live, the epoch's
augmentation draws made up front, batch-norm averaging without a device counter, GPU slots, the ImageNet
weight check. (Their speed is measured on a GPU by benchmarks/bench_train.py.)"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from ccgrade.config import matrix
from ccgrade.learn import train, weights
from ccgrade.plan import preflight
from test_train import HP, synthetic

GIB = 2**30


def test_epoch_plan_draws_what_batch_by_batch_augmentation_draws():
    """The epoch's order and every batch's rotation and flips, drawn up front, are the draws (and the
    augmented images) of the batch-by-batch loop on the same generator state."""
    cfg = {"rotate_deg": 30, "hflip": True, "vflip": True}
    x_all = torch.randn(23, 1, 12, 12)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    order, spans, draws = train.epoch_plan(23, 5, 2, cfg, g1)
    ref_order = torch.cat([torch.randperm(23, generator=g2) for _ in range(2)])
    assert torch.equal(order, ref_order)
    # 46 images in batches of 5: nine full batches and a last one of one image, skipped
    assert spans == [(s, s + 5) for s in range(0, 45, 5)] and len(draws["angle"]) == 45
    seen = 0
    for s, e in spans:
        ref = train.augment(x_all[ref_order[s:e]], cfg, g2)
        got = train.apply_augment(x_all[order[s:e]], {k: v[seen:seen + e - s] for k, v in draws.items()})
        assert torch.equal(got, ref)
        seen += e - s
    # Li's set of angles: 0 or +-30/90 degrees, each batch's draws in the same order
    _, _, d = train.epoch_plan(10, 4, 1, {"rotate_set": [30, 90]}, torch.Generator().manual_seed(2))
    assert set(d["angle"].abs().tolist()) <= {0.0, 30.0, 90.0} and set(d) == {"angle"}


def test_placement_fits_the_cells_share_of_the_device():
    # 100 M values (200 MB as float16) on an 80 GiB device: on the device
    p = train.plan_placement(100_000_000, "cuda", free=70 * GIB, total=80 * GIB)
    assert (p.where, p.dtype, p.data_bytes) == ("device", "float16", 200_000_000) and p.budget_bytes == 35 * GIB
    # four cells share it: each plans for 20 GiB, half of which the images may take
    p4 = train.plan_placement(6 * GIB, "cuda", slots=4, free=70 * GIB, total=80 * GIB)
    assert p4.where == "pinned" and p4.budget_bytes == 10 * GIB and "exceed" in p4.reason
    assert train.plan_placement(4 * GIB, "cuda", slots=4, free=70 * GIB, total=80 * GIB).where == "device"
    # little free memory decides even when the share is large
    assert train.plan_placement(GIB, "cuda", free=GIB, total=80 * GIB).where == "pinned"
    assert train.plan_placement(GIB, "cuda", free=GIB, total=80 * GIB, force="device").where == "device"
    cpu = train.plan_placement(1000, "cpu")
    assert (cpu.where, cpu.dtype, cpu.data_bytes) == ("host", "float32", 4000)
    with pytest.raises(ValueError, match="placement must be"):
        train.plan_placement(1, "cuda", free=1, total=1, force="gpu")


def test_slots_apply_on_one_machine_not_in_a_slurm_job():
    assert train.slot_count(4, {}) == 4
    assert train.slot_count(4, {"SLURM_JOB_ID": "123"}) == 1
    assert train.slot_count(0, {}) == 1


def test_device_resident_images_train_exactly_as_host_ones(tmp_path):
    """The device path (float16 storage, batches indexed from it with the epoch's order) on the CPU:
    for float16-exact crops (as the crop files are) the weights equal those of host training."""
    data, split = synthetic(n_pat=9, per=3, size=24)
    data.images = data.images.astype(np.float16).astype(np.float32)
    q = lambda s: None  # noqa: E731
    hp = dict(HP, batch=5, epochs=2)
    m_host = train.train_model(data, split, hp, seed=2, outdir=tmp_path / "host", progress=q)
    m_dev = train.train_model(data, split, dict(hp, placement="device"), seed=2, outdir=tmp_path / "dev", progress=q)
    assert m_host["execution"]["placement"]["where"] == "host"
    assert m_dev["execution"]["placement"]["where"] == "device"
    assert m_host["execution"]["reproducible"].startswith("bit-reproducible on CPU")
    a, b = torch.load(tmp_path / "host/best.pt"), torch.load(tmp_path / "dev/best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ea, eb = (pd.read_csv(tmp_path / d / "epochs.tsv", sep="\t") for d in ("host", "dev"))
    np.testing.assert_array_equal(ea[["loss", "val_auc", "val_loss"]], eb[["loss", "val_auc", "val_loss"]])


def test_per_step_momentum_is_torchs_cumulative_batch_average():
    """Momentum 1/k at the k-th batch gives, bit for bit, the running statistics of torch's averaging mode
    (momentum None), which reads a device counter back to the host in every layer at every step."""
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(6, 3, 5, 5, generator=gen) * (i + 1) + i for i in range(5)]
    a, b = torch.nn.BatchNorm2d(3).train(), torch.nn.BatchNorm2d(3).train()
    a.momentum = None
    for k, x in enumerate(batches):
        b.momentum = 1.0 / (k + 1)
        a(x)
        b(x)
    assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)


def test_loss_summed_on_the_device_matches_the_per_step_sum(tmp_path):
    """The epoch loss, summed on the device and read once, is the image-weighted mean of the step losses
    (recomputed here from the same network state and batches)."""
    data, split = synthetic(n_pat=6, per=2, size=16)
    hp = dict(HP, batch=4, epochs=1, augment={}, optimizer="sgd", lr=0.0)  # lr 0: every step sees one network
    train.train_model(data, split, hp, seed=1, outdir=tmp_path, progress=lambda s: None)
    ep = pd.read_csv(tmp_path / "epochs.tsv", sep="\t")
    torch.manual_seed(1)
    from ccgrade.learn import models

    net = models.build_model("resnet18", 1)
    tr = data.subset(set(split["train"]))
    order, spans, _ = train.epoch_plan(len(tr.labels), 4, 1, {}, torch.Generator().manual_seed(1))
    loss_fn = torch.nn.CrossEntropyLoss(weight=train.class_weights(tr.labels, "balanced"))
    net.train()
    train.fresh_batch_norm_statistics(net)
    tot = n = 0
    for s, e in spans:
        bi = order[s:e]
        with torch.no_grad():
            tot += float(loss_fn(net(torch.from_numpy(tr.images)[bi]), torch.from_numpy(tr.labels)[bi])) * (e - s)
        n += e - s
    assert ep["loss"].iloc[0] == pytest.approx(tot / n, rel=1e-6)
    assert ep["images_per_s"].iloc[0] > 0


def test_fast_and_amp_are_recorded_and_leave_cpu_training_as_it_is(tmp_path):
    data, split = synthetic(n_pat=6, per=2, size=16)
    q = lambda s: None  # noqa: E731
    m = train.train_model(data, split, dict(HP, epochs=1, fast=True, amp=False), seed=4, outdir=tmp_path / "f", progress=q)
    train.train_model(data, split, dict(HP, epochs=1), seed=4, outdir=tmp_path / "d", progress=q)
    assert m["execution"]["fast"] is False and m["execution"]["amp"] is False  # CUDA only
    a, b = torch.load(tmp_path / "f/best.pt"), torch.load(tmp_path / "d/best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "f/meta.json").read_text())["execution"]["gpu_slots"] == 1


def test_training_fast_reaches_every_cells_recipe_only_when_set():
    cfg = {"training": {"presets": {"p": {"optimizer": "sgd", "lr": 0.1, "batch": 4, "epochs": 1}},
                        "studies": {"s": {"preset": "p", "scheme": "x", "seeds": [1], "models": {"resnet18": ["cmp"]}}}}}
    assert "fast" not in matrix.hyper(cfg, "s", "resnet18", "base")  # unchanged recipes: cached cells stay valid
    cfg["training"]["fast"] = True
    assert matrix.hyper(cfg, "s", "resnet18", "base")["fast"] is True


def test_gpu_slots_against_the_gpu_resource():
    assert preflight.gpu_slot_problems(1, 1) == [] and preflight.gpu_slot_problems(None, 4) == []
    (p,) = preflight.gpu_slot_problems(4, 1)
    assert p.level == "warning" and "gpu_slots: 4" in p.fix
    (p,) = preflight.gpu_slot_problems(1, 4)
    assert "--resources gpu=4" in p.fix
    assert preflight.gpu_slot_problems(8, 1, "slurm") == []  # a cluster gives each cell its own GPU
    assert preflight.resource_value(type("R", (), {"value": 3})()) == 3 and preflight.resource_value("x") is None


def test_imagenet_paths_are_torchvisions_and_missing_files_are_named_with_the_fetch_command(tmp_path):
    env = {"TORCH_HOME": str(tmp_path / "th")}
    for arch, enum in (("resnet18", "ResNet18_Weights"), ("resnet34", "ResNet34_Weights"),
                       ("resnet50", "ResNet50_Weights"), ("se_resnet34", "ResNet34_Weights")):
        assert weights.imagenet_urls()[arch] == getattr(torchvision.models, enum).IMAGENET1K_V1.url
    import os

    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = env["TORCH_HOME"]
    try:
        assert weights.hub_dir() == __import__("pathlib").Path(torch.hub.get_dir())
    finally:
        if old is None:
            del os.environ["TORCH_HOME"]
        else:
            os.environ["TORCH_HOME"] = old
    assert weights.hub_dir({"XDG_CACHE_HOME": "/x"}) == __import__("pathlib").Path("/x/torch/hub")
    cfg = {"training": {"presets": {"img": {"optimizer": "sgd", "lr": 0.1, "batch": 4, "epochs": 1, "pretrained": "imagenet"},
                                    "none": {"optimizer": "sgd", "lr": 0.1, "batch": 4, "epochs": 1}},
                        "studies": {"cui": {"preset": "img", "scheme": "x", "seeds": [1],
                                            "models": {"resnet34": ["np"], "se_resnet34": ["np"]}},
                                    "li": {"preset": "none", "scheme": "x", "seeds": [1], "models": {"resnet18": ["np"]}}}}}
    (p,) = weights.missing_weights(cfg, env)  # ResNet34's one file serves both Cui models
    path = tmp_path / "th/hub/checkpoints/resnet34-b627a593.pth"
    assert p.level == "error" and "cui/resnet34, cui/se_resnet34" in p.message and str(path) in p.message
    assert f"curl -L --create-dirs -o {path} {weights.imagenet_urls()['resnet34']}" in p.fix
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    assert weights.missing_weights(cfg, env) == []


@pytest.mark.parametrize("paper, archs", [("cui", ["resnet34"]), ("li", []), ("dai", ["resnet50"])])
def test_paper_scale_configs_plan_on_the_demo_with_only_their_weight_files_missing(paper, archs, tmp_path,
                                                                                    monkeypatch):
    """config/paper/*.yaml over config.yaml: valid, the papers' sizes and recipes, and before any job an
    error for each ImageNet file the machine lacks (none once the files are in the torch cache)."""
    import yaml
    from conftest import REPO, merged, repo_config

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = REPO / "config" / "paper" / f"{paper}.yaml"
    user = yaml.safe_load(path.read_text())
    cfg = merged(repo_config(), user)
    p = preflight.plan(cfg, configfiles=[str(path)], cache=None, write_cache=False, demo_root=str(tmp_path / "demo"))
    assert sorted(weights.imagenet_urls()[a].rsplit("/", 1)[1] for a in archs) == sorted(
        e.message.split(" which are not at ")[1].split(";")[0].rsplit("/", 1)[1] for e in p.errors)
    for a in archs:
        f = weights.imagenet_path(a)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"stand-in")
    p = preflight.plan(cfg, configfiles=[str(path)], cache=None, write_cache=False, demo_root=str(tmp_path / "demo"))
    assert not p.errors, [str(e) for e in p.errors]
    study = p.config["training"]["studies"][paper]
    hp = {v: matrix.hyper(p.config, paper, next(iter(study["models"])), v) for v in matrix.variants(study)}
    sizes = {name: r["size"] for name, r in p.config["rois"].items()}
    if paper == "cui":
        assert sizes["box"] == 224 and hp["base"]["epochs"] == 50 and hp["base"]["batch"] == 32
        assert hp["base"]["lr"] == 0.001 and hp["base"]["augment"]["copies"] == 3
    elif paper == "li":
        assert sizes["slice"] == 256 and sizes["cube"] == 32 and hp["base"]["epochs"] == 50
    else:
        assert sizes["centroid"] == 224 and p.config["rois"]["centroid"]["box_px"] == 128
        assert {v: h["batch"] for v, h in hp.items()} == {"b4": 4, "b16": 16, "b64": 64}
        assert hp["b4"]["freeze_stages"] == 3 and hp["b4"]["lr"] == 1e-5
