"""The trainer as hook methods (issue 28): a subclass that changes nothing trains bit for bit as
``train_model``, one that overrides a hook changes what that hook does and nothing else, the hooks run in
their documented order, and the CUDA trainer is chosen for CUDA devices only."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import torch

from ccgrade.learn import train
from test_train import HP, synthetic

Q = lambda s: None  # noqa: E731
HOOKS = ["setup_device", "build_data", "build_model", "compile_model", "build_optimizer", "build_loss", "resume",
         "place_data", "run_epoch", "evaluate", "select", "checkpoint", "finish"]


def tiny():
    """12 patients of 2 crops of 16 x 16, 4 of them (one high grade) for validation."""
    return synthetic(n_pat=12, per=2, size=16)


def records(out) -> dict:
    """Everything a run saved but its timings: the tensors of best.pt and last.pt, epochs.tsv, meta.json."""
    last = torch.load(out / "last.pt", weights_only=True)
    ep = pd.read_csv(out / "epochs.tsv", sep="\t").drop(columns=["seconds", "images_per_s"])
    return {"best": torch.load(out / "best.pt", weights_only=True), "model": last["model"],
            "best_model": last["best_model"], "optimizer": last["optimizer"]["state"],
            "rng": [last["generator"], last["torch_rng"]], "epochs": ep.to_dict("list"),
            "meta": json.loads((out / "meta.json").read_text())}


def same_tensors(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_tensors(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b or (a != a and b != b)


def recording(base: type[train.Trainer], calls: list) -> type[train.Trainer]:
    """A subclass of ``base`` whose every hook notes its name and defers to ``base``."""
    def wrap(name):
        def hook(self, *args, **kwargs):
            calls.append(name)
            return getattr(base, name)(self, *args, **kwargs)
        return hook
    return type("Recording", (base,), {n: wrap(n) for n in HOOKS})


def test_a_subclass_that_changes_nothing_trains_bit_for_bit_as_train_model(tmp_path):
    """Overriding nothing, or wrapping every hook, leaves every saved tensor, record and metadata as they were;
    the hooks run in fit's documented order (each epoch: steps, evaluation, selection, resume state)."""
    data, split = tiny()
    hp = dict(HP, batch=5, epochs=2, checkpoint_s=0, augment=dict(HP["augment"], copies=2))

    class Plain(train.Trainer):
        pass

    calls = []
    ref = train.train_model(data, split, hp, seed=4, outdir=tmp_path / "ref", progress=Q)
    assert train.train_model(data, split, hp, seed=4, outdir=tmp_path / "plain", progress=Q, trainer=Plain) == ref
    t = train.make_trainer(data, split, hp, seed=4, outdir=tmp_path / "rec", progress=Q,
                           trainer=recording(train.Trainer, calls))
    assert t.fit() == ref
    want = records(tmp_path / "ref")
    for d in ("plain", "rec"):
        got = records(tmp_path / d)
        for k in want:
            assert same_tensors(got[k], want[k]), (d, k)
    per_epoch = ["run_epoch", "evaluate", "select", "checkpoint"]
    assert calls == HOOKS[:8] + per_epoch * 2 + ["finish"]


def test_overriding_build_optimizer_changes_the_optimizer_and_nothing_else(tmp_path):
    """A variant with Adam in place of the recipe's SGD trains exactly as the recipe with ``optimizer: adam``
    (same weights, records and optimiser state); only the recorded hyperparameters differ."""
    data, split = tiny()
    hp = dict(HP, lr=1e-3, batch=6, epochs=2, checkpoint_s=0)

    class AdamInstead(train.Trainer):
        def build_optimizer(self):
            return torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad], lr=self.hp["lr"])

    train.train_model(data, split, hp, seed=2, outdir=tmp_path / "var", progress=Q, trainer=AdamInstead)
    train.train_model(data, split, dict(hp, optimizer="adam"), seed=2, outdir=tmp_path / "adam", progress=Q)
    var, adam = records(tmp_path / "var"), records(tmp_path / "adam")
    for k in ("best", "model", "best_model", "optimizer", "rng", "epochs"):
        assert same_tensors(var[k], adam[k]), k
    assert "exp_avg" in next(iter(var["optimizer"].values()))  # Adam's state, not SGD's momentum buffer
    assert var["meta"]["hyperparameters"]["optimizer"] == "sgd"
    assert {k: v for k, v in var["meta"].items() if k != "hyperparameters"} == {
        k: v for k, v in adam["meta"].items() if k != "hyperparameters"}


def test_overriding_select_changes_the_chosen_epoch_only(tmp_path):
    """A variant keeping the last epoch even with a validation set: best.pt is the last epoch's weights,
    the training itself (every epoch's record, the last weights) is the default trainer's."""
    data, split = tiny()
    hp = dict(HP, batch=6, epochs=3, checkpoint_s=0)

    class LastEpoch(train.Trainer):
        def select(self, epoch, rec):
            if epoch == self.epochs - 1:
                self.best = {"epoch": epoch, "val_auc": rec["val_auc"], "val_loss": rec["val_loss"]}
                self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    meta = train.train_model(data, split, hp, seed=6, outdir=tmp_path / "var", progress=Q, trainer=LastEpoch)
    train.train_model(data, split, hp, seed=6, outdir=tmp_path / "ref", progress=Q)
    var, ref = records(tmp_path / "var"), records(tmp_path / "ref")
    assert meta["best_epoch"] == 2 and same_tensors(var["best"], var["model"])
    assert same_tensors(var["model"], ref["model"]) and same_tensors(var["epochs"], ref["epochs"])


def test_the_factory_picks_the_cuda_trainer_only_for_a_cuda_device(tmp_path):
    """Building a trainer touches no device (so this runs without a GPU); ``fast`` and ``amp`` are CUDA only."""
    data, split = tiny()

    def make(device, **kw):
        return train.make_trainer(data, split, dict(HP, **kw), seed=1, outdir=tmp_path, device=device)

    assert type(make("cpu")) is train.Trainer and type(make("cpu", fast=True)) is train.Trainer
    assert type(make("cuda")) is train.CudaTrainer and type(make("cuda:1")) is train.CudaTrainer
    assert type(make("cuda", fast=True)) is train.FastCudaTrainer
    assert issubclass(train.FastCudaTrainer, train.CudaTrainer) and issubclass(train.CudaTrainer, train.Trainer)
    auto = make("auto")
    assert isinstance(auto, train.CudaTrainer) == torch.cuda.is_available()
    assert auto.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (make("cpu").amp, make("cuda").amp, make("cuda", amp=False).amp) == (False, True, False)
    assert (make("cpu", fast=True).fast, make("cuda").fast, make("cuda", fast=True).fast) == (False, False, True)

    class Variant(train.Trainer):
        pass

    assert type(train.make_trainer(data, split, HP, seed=1, outdir=tmp_path, device="cuda", trainer=Variant)) is Variant
    assert train.trainer_class("cpu", {"fast": True}) is train.Trainer


def test_the_cuda_trainers_hooks_run_on_the_cpu(tmp_path, monkeypatch):
    """The CUDA trainer's own code (channels-last, a fused optimiser, the AMP step with its scaler) runs
    end to end on the CPU, where autocast and the scaler switch themselves off; the fast trainer keeps
    torch's exponential batch-norm average (momentum 0.1) and compiles the training steps only."""
    for flag in ("benchmark", "deterministic"):  # set by setup_device: put back afterwards
        monkeypatch.setattr(torch.backends.cudnn, flag, getattr(torch.backends.cudnn, flag))
    data, split = tiny()

    class OnCpu(train.CudaTrainer):
        def device_memory(self):
            return None, None

    t = train.make_trainer(data, split, dict(HP, batch=6, epochs=1), seed=1, outdir=tmp_path, device="cpu",
                           progress=Q, trainer=OnCpu)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available ... disabling"
        meta = t.fit()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert meta["execution"]["amp"] is True and meta["execution"]["reproducible"].startswith("deterministic cuDNN")
    assert all(g["fused"] for g in t.opt.param_groups)
    assert t.prepare_batch(torch.zeros(2, 1, 4, 4)).is_contiguous(memory_format=torch.channels_last)
    assert np.isfinite(pd.read_csv(tmp_path / "epochs.tsv", sep="\t")["loss"]).all()

    fast = train.make_trainer(data, split, dict(HP, fast=True), seed=1, outdir=tmp_path, device="cuda")
    fast.net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    fast.bns = [fast.net[1]]
    fast.start_epoch(0)
    fast.batch_norm_step(3)
    assert fast.net.training and fast.net[1].momentum == 0.1
    assert fast.compile_model(fast.net) is not fast.net and train.Trainer.compile_model(t, t.net) is t.net
    assert fast.reproducible.startswith("not bit-reproducible")


def test_no_hook_is_long():
    """The point of the split: each method reads at a glance (at most 40 lines, docstring included)."""
    import inspect

    for cls in (train.Trainer, train.CudaTrainer, train.FastCudaTrainer):
        for name, f in vars(cls).items():
            if inspect.isfunction(f):
                assert len(inspect.getsource(f).splitlines()) <= 40, (cls.__name__, name)
