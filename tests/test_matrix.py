"""The model matrix a config expands to: cells, hyperparameter precedence, crop targets."""

from __future__ import annotations

import copy

from conftest import repo_config

from ccgrade.config import matrix


def test_cells_of_the_demo_config():
    cfg = repo_config()
    cells = matrix.cells(cfg)
    by = {s: [c for c in cells if c["study"] == s] for s in ("cui", "li", "dai")}
    assert len(by["cui"]) == 6 and {c["roi"] for c in by["cui"]} == {"box"}
    assert {(c["arch"], c["roi"]) for c in by["li"]} == {("resnet3d18", "cube"), ("resnet18", "slice")}
    assert len(by["li"]) == 6 and {c["fold"] for c in by["li"]} == {0}
    # Dai: one model x 2 variants x 5 folds of the k-fold scheme
    k = cfg["splits"]["schemes"]["dai"]["k"]
    assert len(by["dai"]) == 2 * k
    assert sorted({c["fold"] for c in by["dai"]}) == list(range(k))
    assert {c["variant"] for c in by["dai"]} == {"b16", "b32"}
    assert {c["variant"] for c in by["cui"]} == {matrix.BASE_VARIANT}
    dirs = [matrix.cell_dir(c) for c in cells]
    assert len(set(dirs)) == len(dirs)  # every cell its own folder
    assert matrix.cell_dir(by["dai"][0]) == "results/models/dai/centroid/resnet50/cmp/b16/fold0/seed1"


def test_hyperparameters_preset_then_override_then_variant():
    cfg = copy.deepcopy(repo_config())
    st = cfg["training"]["studies"]["dai"]
    st["overrides"] = {"resnet50": {"lr": 0.01, "batch": 2}}
    hp = matrix.hyper(cfg, "dai", "resnet50", "b32")
    preset = cfg["training"]["presets"][st["preset"]]
    assert hp["lr"] == 0.01 and hp["batch"] == 32 and hp["epochs"] == preset["epochs"] and hp["arch"] == "resnet50"
    assert cfg["training"]["presets"][st["preset"]] == preset  # the preset itself is untouched
    assert matrix.hyper(cfg, "cui", "resnet34", matrix.BASE_VARIANT)["batch"] == cfg["training"]["presets"]["demo"]["batch"]


def test_crop_targets():
    assert matrix.crop_targets("all", ["up", "cmp"]) == ["up", "cmp"]
    assert matrix.crop_targets("stack", ["up", "cmp"]) == ["stack"]
    assert matrix.crop_targets("np", ["up", "np"]) == ["np"]
