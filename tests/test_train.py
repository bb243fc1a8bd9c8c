"""The trainer on synthetic crops: it learns, it is deterministic, it resumes exactly; Li's aggregation rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ccgrade.evaluate import li
from ccgrade.learn import train

HP = {"arch": "resnet18", "optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "batch": 8, "epochs": 3,
      "augment": {"rotate_deg": 30, "hflip": True, "vflip": True, "copies": 1}, "class_weight": "balanced"}


def synthetic(n_pat=12, per=4, size=32, seed=0) -> tuple[train.CropSet, dict]:
    """High-grade patients' crops hold a brighter, larger blob (easy, so a few epochs learn it)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    imgs, labels, pats = [], [], []
    for p in range(n_pat):
        high = p % 3 == 0
        for _ in range(per):
            r = (9 if high else 5) + rng.normal(0, 1)
            img = (xx ** 2 + yy ** 2 < r ** 2) * (0.9 if high else 0.5) + rng.normal(0, 0.1, (size, size))
            imgs.append(img[None].astype(np.float32))
            labels.append(int(high))
            pats.append(f"P{p:02d}")
    data = train.CropSet(np.stack(imgs), np.array(labels), np.array(pats), np.tile(np.arange(per), n_pat),
                         np.tile([0.0, 0, size, size], (n_pat * per, 1)))
    ids = sorted(set(pats))
    return data, {"train": ids[:8], "val": ids[8:], "test": ids[8:]}


def test_trainer_learns_and_writes_its_records(tmp_path):
    data, split = synthetic()
    hp = dict(HP, optimizer="adam", lr=1e-3, epochs=5)
    meta = train.train_model(data, split, hp, seed=1, outdir=tmp_path, progress=lambda s: None)
    ep = pd.read_csv(tmp_path / "epochs.tsv", sep="\t")
    assert len(ep) == 5 and ep["loss"].iloc[-2:].mean() < ep["loss"].iloc[0]
    assert meta["best_val_auc"] == ep["val_auc"].max() and meta["label_meaning"] == {"0": "low", "1": "high"}
    # the best epoch has the highest validation AUC and, among ties, the lowest validation loss
    top = ep[ep["val_auc"] == ep["val_auc"].max()]
    assert meta["best_epoch"] == int(top.loc[top["val_loss"].idxmin(), "epoch"])
    net = train.load_best(tmp_path, HP, 1)
    test = data.subset(set(split["test"]))
    prob = train.predict(net, test.images, "cpu")
    pm = train.patient_mean(test.patients, prob)
    y = pd.Series(test.labels).groupby(pd.Series(test.patients)).first()
    assert pm.loc[y[y == 1].index].min() > pm.loc[y[y == 0].index].max()  # the easy task is separated


def test_no_test_label_reaches_the_epoch_selection(tmp_path):
    """The best epoch is chosen on the validation patients: flipping every test patient's label changes
    neither the epochs' records nor the chosen epoch nor its weights."""
    data, split = synthetic(n_pat=15)
    ids = sorted(set(data.patients))
    split = {"train": ids[:9], "val": ids[9:12], "test": ids[12:]}
    flipped = train.CropSet(data.images, np.where(np.isin(data.patients, split["test"]), 1 - data.labels, data.labels),
                            data.patients, data.slices, data.boxes)
    q = lambda s: None  # noqa: E731
    m1 = train.train_model(data, split, HP, seed=3, outdir=tmp_path / "a", progress=q)
    m2 = train.train_model(flipped, split, HP, seed=3, outdir=tmp_path / "b", progress=q)
    assert m1["best_epoch"] == m2["best_epoch"] and m1["best_val_auc"] == m2["best_val_auc"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a/epochs.tsv", sep="\t")[["epoch", "loss", "val_auc", "val_loss"]],
                                  pd.read_csv(tmp_path / "b/epochs.tsv", sep="\t")[["epoch", "loss", "val_auc", "val_loss"]])
    a, b = torch.load(tmp_path / "a/best.pt"), torch.load(tmp_path / "b/best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_model_and_resume_is_exact(tmp_path):
    data, split = synthetic()
    q = lambda s: None  # noqa: E731
    train.train_model(data, split, HP, seed=7, outdir=tmp_path / "a", progress=q)
    train.train_model(data, split, HP, seed=7, outdir=tmp_path / "b", progress=q)
    train.train_model(data, split, HP, seed=7, outdir=tmp_path / "c", max_epochs=1, progress=q)  # "interrupted"
    msgs = []
    train.train_model(data, split, HP, seed=7, outdir=tmp_path / "c", progress=msgs.append)
    assert msgs[0] == "resuming after epoch 0"
    ref = pd.read_csv(tmp_path / "a" / "epochs.tsv", sep="\t")
    for d in ("b", "c"):
        other = pd.read_csv(tmp_path / d / "epochs.tsv", sep="\t")
        np.testing.assert_array_equal(other[["loss", "val_auc", "val_loss"]].to_numpy(),
                                      ref[["loss", "val_auc", "val_loss"]].to_numpy())
        a, b = torch.load(tmp_path / "a" / "best.pt"), torch.load(tmp_path / d / "best.pt")
        assert all(torch.equal(a[k], b[k]) for k in a)
    # the same bytes, not only the same tensors (torch names a file's records after the file it writes)
    assert (tmp_path / "a" / "best.pt").read_bytes() == (tmp_path / "b" / "best.pt").read_bytes()
    train.train_model(data, split, HP, seed=8, outdir=tmp_path / "d", progress=q)
    assert not np.array_equal(pd.read_csv(tmp_path / "d" / "epochs.tsv", sep="\t")["loss"], ref["loss"])


def test_class_weights_and_augmentation():
    w = train.class_weights(np.array([0] * 30 + [1] * 10), "balanced")
    torch.testing.assert_close(w, torch.tensor([40 / 60, 40 / 20]))
    torch.testing.assert_close(train.class_weights(np.array([0, 1]), [1.0, 2.5]), torch.tensor([1.0, 2.5]))
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 0, 0] = 1.0  # a corner marker
    flipped = train.augment(x, {"hflip": True}, g)
    moved = (flipped[:, 0, 0, 8] == 1).float().mean()
    assert 0.3 < moved < 0.7 and torch.equal(flipped.sum((1, 2, 3)), x.sum((1, 2, 3)))
    rot = train.augment(torch.ones(4, 1, 16, 16), {"rotate_set": [90]}, torch.Generator().manual_seed(1))
    assert rot.shape == (4, 1, 16, 16)
    cube = train.augment(torch.randn(3, 1, 8, 8, 8), {"rotate_deg": 30, "hflip": True}, g)
    assert cube.shape == (3, 1, 8, 8, 8)


@pytest.mark.parametrize("calls, want", [
    ([1, 1, 1, 1, 0, 0], (1, "4 consecutive high-grade slices")),
    ([0, 0, 0, 0, 1, 1, 1], (0, "4 consecutive low-grade slices")),
    ([1, 0, 1, 0, 1, 0], (None, "no run of more than three slices: mean probability")),
    ([0, 0, 0, 0, 1, 1, 1, 1], (1, "4 consecutive high-grade slices")),
])
def test_li_rule(calls, want):
    n = len(calls)
    boxes = np.tile([10.0, 10, 20, 20], (n, 1))
    prob = np.where(np.array(calls) == 1, 0.7, 0.4)
    call, basis = li.li_patient_call(np.arange(n), boxes, np.array(calls), prob)
    assert basis == want[1]
    assert call == (want[0] if want[0] is not None else int(prob.mean() >= 0.5))


def test_li_rule_needs_adjacent_overlapping_slices():
    calls = np.array([1, 1, 1, 1])
    far = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40], [30, 30, 40, 40]], float)  # IoU 0 in the middle
    assert li.li_patient_call(np.arange(4), far, calls, np.full(4, 0.4))[0] == 0  # falls back to mean prob 0.4
    gap = np.array([0, 1, 3, 4])  # slice 2 missing
    assert li.li_patient_call(gap, np.tile([0, 0, 10, 10.0], (4, 1)), calls, np.full(4, 0.4))[0] == 0
    assert li.box_iou(np.array([0, 0, 10, 10.0]), np.array([5, 0, 15, 10.0])) == pytest.approx(1 / 3)


def test_3d_rotation_turns_every_axial_plane_alike():
    x = torch.arange(6 * 3 * 5 * 5, dtype=torch.float32).reshape(6, 1, 3, 5, 5)
    gen = torch.Generator().manual_seed(4)
    out = train.augment(x, {"rotate_set": [90]}, gen)  # 0 or +-90 degrees per sample, no flips
    seen = set()
    for i in range(6):
        got = [k for k in (0, 1, -1) if torch.allclose(out[i], torch.rot90(x[i], k, dims=(-2, -1)), atol=1e-3)]
        assert len(got) == 1, f"sample {i} is not a whole-cube quarter turn"
        seen.add(got[0])
    assert len(seen) > 1  # the angle differs between samples


def test_without_a_validation_set_the_last_epoch_is_kept(tmp_path):
    data, split = synthetic()
    split = {"train": split["train"], "test": split["test"]}  # Li's 7:3 or a k-fold fold: no validation set
    meta = train.train_model(data, split, dict(HP, epochs=2), seed=3, outdir=tmp_path, progress=lambda s: None)
    assert meta["best_epoch"] == 1 and meta["best_val_auc"] is None and meta["selection"].startswith("last epoch")
    ep = pd.read_csv(tmp_path / "epochs.tsv", sep="\t")
    assert ep["val_auc"].isna().all()
    # the weights after the second epoch, from the resume state of a run of the same seed stopped there
    train.train_model(data, split, dict(HP, epochs=3), seed=3, outdir=tmp_path / "stopped", max_epochs=2,
                      progress=lambda s: None)
    last = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["model"]
    best = torch.load(tmp_path / "best.pt")
    assert all(torch.equal(best[k], last[k]) for k in best)


def test_an_unreadable_resume_state_starts_afresh(tmp_path):
    data, split = synthetic()
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 cut short by a kill")
    msgs = []
    train.train_model(data, split, dict(HP, epochs=1), seed=7, outdir=tmp_path, progress=msgs.append)
    assert msgs[0].startswith("resume state last.pt unreadable") and msgs[1].startswith("epoch 1/1")
    train.train_model(data, split, dict(HP, epochs=1), seed=7, outdir=tmp_path / "ref", progress=lambda s: None)
    a, b = torch.load(tmp_path / "best.pt"), torch.load(tmp_path / "ref" / "best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary files left behind


class _Payload:
    """Unpickling this calls open(marker, "w"): what a planted pickle could run instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_planted_resume_state_runs_nothing_and_is_not_resumed(tmp_path):
    """A last.pt with a pickled payload and a matching fingerprint stamp (issue 27): nothing runs, the cell
    starts afresh and ends with the weights of an untouched run; so does a well-formed state of other keys."""
    data, split = synthetic()
    marker = tmp_path / "payload_ran"
    for k, planted in enumerate(({"model": _Payload(marker), "epoch": 0}, {"epoch": 0, "weights": torch.zeros(3)})):
        out = tmp_path / f"cell{k}"
        out.mkdir()
        torch.save(planted, out / "last.pt")
        msgs = []
        train.train_model(data, split, dict(HP, epochs=1), seed=7, outdir=out, progress=msgs.append)
        assert not marker.exists() and msgs[0].startswith("resume state last.pt unreadable"), msgs[:2]
    train.train_model(data, split, dict(HP, epochs=1), seed=7, outdir=tmp_path / "ref", progress=lambda s: None)
    for k in range(2):
        a, b = torch.load(tmp_path / f"cell{k}" / "best.pt"), torch.load(tmp_path / "ref" / "best.pt")
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_batch_norm_statistics_are_the_epochs_batch_average():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.BatchNorm2d(3)).train()
    net[1].running_mean.fill_(5.0)  # stale statistics from before
    train.fresh_batch_norm_statistics(net)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 1, 5, 5, generator=gen) * (i + 1) + i for i in range(3)]
    feats = []
    with torch.no_grad():
        for b in batches:
            net(b)
            feats.append(net[0](b))
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats])
    vars_ = torch.stack([f.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True) for f in feats])
    torch.testing.assert_close(net[1].running_mean, means.mean(0))
    torch.testing.assert_close(net[1].running_var, vars_.mean(0))


def test_cube_crops_keep_their_whole_3d_box_in_the_predictions(tmp_path):
    """A cube's box is (x1, y1, z1, x2, y2, z2) in mm: all six reach predictions.tsv; 2D boxes keep z empty."""
    from ccgrade.learn import models
    from ccgrade.outputs import write_npz

    cube = np.array([[-12.5, 30.0, -80.0, 20.5, 61.0, -40.0]])
    write_npz(tmp_path / "P1.npz", images=np.zeros((1, 1, 8, 8, 8), np.float16), slice_index=np.array([-1]),
              boxes=cube, status="ok", reason="")
    write_npz(tmp_path / "P2.npz", images=np.zeros((2, 1, 8, 8), np.float16), slice_index=np.array([3, 4]),
              boxes=np.array([[1.0, 2.0, 5.0, 6.0], [1.5, 2.5, 5.5, 6.5]]), status="ok", reason="")
    data = train.load_crops({"P1": [tmp_path / "P1.npz"]}, {"P1": "high"})
    net = models.build_model("resnet3d18", in_channels=1)
    t = train.prediction_table(net, data, {"test": ["P1"]}, "cpu")
    assert t[["x1", "y1", "z1", "x2", "y2", "z2"]].to_numpy().tolist() == cube.tolist()
    assert t["box_space"].tolist() == ["mm"]
    flat = train.load_crops({"P2": [tmp_path / "P2.npz"]}, {"P2": "low"})
    assert np.isnan(flat.boxes[:, 4:]).all() and flat.boxes[:, :4].tolist() == [[1, 2, 5, 6], [1.5, 2.5, 5.5, 6.5]]
