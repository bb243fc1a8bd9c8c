"""Issue 29 item 3, honest stacking: the fusion's deep block out of fold (``fusion.deep.oof_folds``).

Each training patient's deep score comes from a fold network trained without it: flipping one training patient's
label leaves its own score and the fold model that held it out bit-identical and changes the fold models that saw
it. The scores are the networks' log-odds of high grade averaged over a patient's images, recomputed here by hand; with them the
deep block joins the likelihood-ratio tests."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from ccgrade.errors import SplitError
from ccgrade.fusion import oof
from ccgrade.learn import train
from test_train import HP, synthetic


class Tiny(nn.Module):
    """A network small enough to train four times in a test (``build_model`` swaps in a 64-channel conv1)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3)
        self.body = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(64, 2)

    def forward(self, x):
        return self.fc(self.body(self.conv1(x)))


@pytest.fixture
def tiny():
    from ccgrade.config import architectures
    from ccgrade.config.architectures import Architecture
    from ccgrade.learn import models

    models.register(Architecture("oof_tiny", 2, "", "a test's toy"), Tiny)
    yield dict(HP, arch="oof_tiny", epochs=2)
    architectures.REGISTRY.pop("oof_tiny")
    models.BUILDERS.pop("oof_tiny")


def split_rows(ids: list[str], labels: dict[str, int], test: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"patient_id": p, "fold": 0, "set": "test" if p in test else "train",
                          "grade_group": "high" if labels[p] else "low", "centre": "A"} for p in ids])


def test_the_folds_hold_out_every_training_patient_once_and_no_test_patient():
    ids = [f"P{i:02d}" for i in range(20)]
    labels = {p: int(i % 3 == 0) for i, p in enumerate(ids)}
    rows = split_rows(ids, labels, test=ids[14:])
    doc = oof.oof_split(rows, k=3, seed=5, stratify=["grade_group", "centre"], parent="li")
    held = [p for f in doc["folds"] for p in f["test"]]
    assert sorted(held) == ids[:14] and len(held) == len(set(held))
    for f in doc["folds"]:
        assert set(f["train"]) == set(ids[:14]) - set(f["test"])
        highs = sum(labels[p] for p in f["test"])
        assert highs in (1, 2)  # 5 high training patients dealt over 3 folds: within one of 5/3
    assert doc == oof.oof_split(rows, k=3, seed=5, stratify=["grade_group", "centre"], parent="li")
    with pytest.raises(SplitError, match="oof_folds"):  # 5 high-grade training patients cannot fill 6 folds
        oof.oof_split(rows, k=6, seed=5, stratify=["grade_group"], parent="li")


def write_crops(data: train.CropSet, root) -> list[str]:
    files = []
    for p in sorted(set(data.patients)):
        f = root / p / "cmp.npz"
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, status="ok", images=data.images[data.patients == p])
        files.append(str(f))
    return files


def flipped(data: train.CropSet, pid: str) -> train.CropSet:
    return train.CropSet(data.images, np.where(data.patients == pid, 1 - data.labels, data.labels), data.patients,
                         data.slices, data.boxes)


def by_hand(cell, hp: dict, images: np.ndarray) -> float:
    net = train.load_best(cell, hp, in_channels=images.shape[1]).eval()
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(images)).double(), dim=1).numpy()
    return float(np.mean(np.log(p[:, 1] / p[:, 0])))  # the log-odds by way of the probabilities


def test_flipping_a_training_label_changes_only_the_fold_models_that_saw_it(tmp_path, tiny):
    data, _ = synthetic(n_pat=12)
    ids = sorted(set(data.patients))
    labels = dict(zip(data.patients, data.labels))
    doc = oof.oof_split(split_rows(ids, labels, test=ids[8:]), k=2, seed=1, stratify=["grade_group"], parent="li")
    pid = doc["folds"][0]["test"][0]  # held out by fold 0, seen by fold 1
    crops = write_crops(data, tmp_path / "crops")
    cells = {}
    for name, d in (("as_is", data), ("flipped", flipped(data, pid))):
        for i, fold in enumerate(doc["folds"]):
            cells[name, i] = tmp_path / name / f"fold{i}"
            train.train_model(d, {"train": fold["train"]}, tiny, seed=3, outdir=cells[name, i], progress=lambda s: None)
    weights = {k: torch.load(v / "best.pt") for k, v in cells.items()}
    assert all(torch.equal(weights["as_is", 0][k], weights["flipped", 0][k]) for k in weights["as_is", 0])
    assert not all(torch.equal(weights["as_is", 1][k], weights["flipped", 1][k]) for k in weights["as_is", 1])
    scores = {}
    for name in ("as_is", "flipped"):  # fold 1's network stands in for the main cell (the test patients' scorer)
        t, src = oof.oof_scores(str(cells[name, 1]), [str(cells[name, 0]), str(cells[name, 1])], doc, tiny, crops)
        scores[name] = t.set_index("patient_id")[oof.SCORE]
        assert list(t["patient_id"]) == ids and list(src["patient_id"]) == ids
        fold_of = {p: i for i, f in enumerate(doc["folds"]) for p in f["test"]}
        assert list(src["fold"]) == [fold_of.get(p, -1) for p in ids]
        for p in (pid, doc["folds"][1]["test"][0], ids[-1]):
            cell = cells[name, 0 if fold_of.get(p) == 0 else 1]
            assert scores[name][p] == pytest.approx(by_hand(cell, tiny, data.images[data.patients == p]), abs=1e-5)
    assert scores["as_is"][pid] == scores["flipped"][pid]  # its own score never saw its label
    others = doc["folds"][1]["test"]  # scored by fold 1, which was trained on pid's label
    assert not np.allclose(scores["as_is"][others], scores["flipped"][others])


def test_an_out_of_fold_deep_block_joins_the_lr_tests_and_says_so():
    from ccgrade.fusion import model
    from ccgrade.fusion.report import deep_note

    rng = np.random.default_rng(0)
    n = 60
    y = (rng.random(n) < 0.4).astype(int)
    ids = [f"P{i:02d}" for i in range(n)]
    cohort = pd.DataFrame({"patient_id": ids, "grade_group": np.where(y == 1, "high", "low"),
                           "age": rng.normal(60, 8, n)})
    deep = pd.DataFrame({"patient_id": ids, oof.SCORE: y * 1.0 + rng.normal(0, 1, n)})
    split = (ids[:42], ids[42:])
    kw = dict(radiomics=None, deep=deep, clinical=[{"name": "age", "type": "continuous"}], seed=0, cv=3)
    _, honest, _ = model.run_fusion(cohort, split, deep_oof=True, **kw)
    _, default, _ = model.run_fusion(cohort, split, **kw)
    assert honest["deep_oof"] and honest["lr_left_out"] == [] and set(honest["lr"]) == {"deep", "clinical"}
    assert default["lr_left_out"] == ["deep"] and "deep" not in default["lr"]
    assert "Out-of-fold deep block" in deep_note(True) and "In-sample deep block" in deep_note(False)


def test_the_command_line_writes_the_split(tmp_path):
    ids = [f"P{i:02d}" for i in range(12)]
    rows = split_rows(ids, {p: int(i % 2) for i, p in enumerate(ids)}, test=ids[9:])
    rows.to_csv(tmp_path / "li.tsv", sep="\t", index=False)
    oof.main(["split", "--split-tsv", str(tmp_path / "li.tsv"), "--parent", "li", "--k", "3", "--seed", "2",
              "--json", str(tmp_path / "oof.json")])
    doc = json.loads((tmp_path / "oof.json").read_text())
    assert doc["parent"] == "li" and len(doc["folds"]) == 3 and sorted(p for f in doc["folds"] for p in f["test"]) == ids[:9]
