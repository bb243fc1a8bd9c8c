"""Model bundles (ccgrade.deploy.bundle): what they record, and that they load without the repository's config.
(That a bundle reproduces a cell's test predictions from the volumes is tested on the tiny demo DAG.)"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ccgrade.deploy import bundle
from ccgrade.learn import models
from ccgrade.outputs import write_tsv
from conftest import repo_config


def fake_cell(tmp_path, trained=True):
    torch.manual_seed(0)
    net = models.build_model("resnet18", in_channels=1)
    d = tmp_path / "cell"
    d.mkdir(parents=True)
    torch.save(net.state_dict(), d / "best.pt")
    hp = {"arch": "resnet18", "lr": 0.001, "batch": 8, "epochs": 1, "optimizer": "sgd", "weights_file": "/home/x/w.pth"}
    meta = {"hyperparameters": hp, "input_shape": [1, 32, 32], "best_epoch": 0, "n_train_images": 40,
            "selection": "last epoch", "label_meaning": {"0": "low", "1": "high"}}
    if not trained:
        meta = {"status": "not trained", "reason": "one grade group", "hyperparameters": hp}
    (d / "meta.json").write_text(json.dumps(meta))
    rng = np.random.default_rng(1)
    rows = []
    for i in range(20):
        y = int(i % 3 == 0)
        for k in range(3):
            rows.append({"patient_id": f"P{i:02d}", "set": "test" if i < 12 else "train", "source": "cmp",
                         "slice_index": k, "label": y, "prob_high": float(np.clip(0.4 + 0.3 * y + rng.normal(0, 0.2), 0, 1))})
    write_tsv(d / "predictions.tsv", pd.DataFrame(rows))
    return d, net, pd.DataFrame(rows)


#: the cell the tests export: Cui's ResNet on the corticomedullary box crops
CELL = {"study": "cui", "roi": "box", "arch": "resnet18", "phases": "cmp", "variant": "base", "fold": 0, "seed": 1}


def four_phase_config() -> dict:
    cfg = repo_config()
    cfg["phases"] = ["up", "cmp", "np", "ep"]
    cfg["stack"]["phases"] = ["cmp", "np", "ep"]
    return cfg


def test_export_records_preprocessing_and_evaluation_and_loads_without_config(tmp_path):
    from ccgrade import stats

    d, net, pred = fake_cell(tmp_path)
    cfg, cell = four_phase_config(), CELL
    md = bundle.export(d, tmp_path / "b", config=cfg, cell=cell, study="cui")
    pre = json.loads((tmp_path / "b/preprocess.json").read_text())
    assert pre["roi"] == cfg["rois"]["box"] and pre["window"] == cfg["windows"]["cui"] and pre["targets"] == ["cmp"]
    assert pre["input_shape"] == [1, 32, 32] and pre["threshold"] == 0.5
    test = pred[pred["set"] == "test"].groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
    ev = md["evaluation"]["test"]
    assert ev["auc"] == pytest.approx(roc_auc_score(test["y"], test["p"]), abs=1e-12)
    y, p = test["y"].to_numpy(int), test["p"].to_numpy(float)
    _, lo, hi = stats.auc_interval(y, p, method="score")  # honest mode's (the bundle job gets no statistics)
    assert ev["auc_ci_95"] == pytest.approx([lo, hi], abs=1e-12) and ev["n_patients"] == 12
    assert ev["ci_method"] == "Newcombe score, patient level"
    _, wlo, whi = stats.auc_ci(y, p)  # DeLong's Wald bounds kept beside it
    assert ev["auc_wald_ci_95"] == pytest.approx([wlo, whi], abs=1e-12) and [wlo, whi] != pytest.approx([lo, hi])
    readme = (tmp_path / "b/README.md").read_text()
    assert f"95% CI {lo:.3f}-{hi:.3f}, Newcombe score, patient level" in readme
    assert md["training_data"]["n_patients"] == 8 and "weights_file" not in md["training_data"]["hyperparameters"]
    assert "/home/x" not in (tmp_path / "b/metadata.json").read_text()
    b = bundle.load(tmp_path / "b")  # from its own files only
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(b.net(x), net.eval()(x))
    # a cell that was not trained: a bundle that says so, and refuses to load as a network
    d2, _, _ = fake_cell(tmp_path / "n", trained=False)
    md2 = bundle.export(d2, tmp_path / "b2", config=cfg, cell=cell, study="cui")
    assert md2["trained"] is False and md2["reason"] == "one grade group"
    with pytest.raises(ValueError, match="holds no network: one grade group"):
        bundle.load(tmp_path / "b2")


def test_a_bundle_follows_the_statistics_mode_when_its_config_gives_one(tmp_path):
    """Given ``statistics.mode: paper`` the bundle records the paper tables' interval (DeLong's Wald), as
    ``tables.auc_cis`` shows it; honest (or none given) Newcombe's score interval."""
    from ccgrade import stats

    d, _, pred = fake_cell(tmp_path)
    test = pred[pred["set"] == "test"].groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
    y, p = test["y"].to_numpy(int), test["p"].to_numpy(float)
    paper = bundle.export(d, tmp_path / "paper", config={**four_phase_config(), "statistics": {"mode": "paper"}},
                          cell=CELL, study="cui")["evaluation"]["test"]
    assert paper["auc_ci_95"] == pytest.approx(list(stats.auc_ci(y, p)[1:]), abs=1e-12)
    assert paper["ci_method"] == "DeLong (Wald), patient level" and paper["auc_wald_ci_95"] == paper["auc_ci_95"]
    honest = bundle.export(d, tmp_path / "honest", config={**four_phase_config(), "statistics": {"mode": "honest"}},
                           cell=CELL, study="cui")["evaluation"]["test"]
    assert honest["auc_ci_95"] == pytest.approx(list(stats.auc_interval(y, p, method="score")[1:]), abs=1e-12)
    assert honest["ci_method"] == "Newcombe score, patient level"


def exported(tmp_path):
    d, _, _ = fake_cell(tmp_path)
    bundle.export(d, tmp_path / "b", config=four_phase_config(), cell=CELL, study="cui")
    return tmp_path / "b"


@pytest.mark.parametrize("key, value, says", [
    ("phases", ["np", "../../../../outside/x"], "preprocess.json key 'phases.1'"),
    ("targets", ["../x"], "preprocess.json key 'targets.0'"),
    ("stack_phases", ["cmp", "/etc/passwd"], "preprocess.json key 'stack_phases.1'"),
    ("roi_name", "../box", "preprocess.json key 'roi_name'"),
    ("arch", "resnet18; rm -rf /", "arch 'resnet18; rm -rf /' is not one of"),
    ("input_shape", [1, 32, -32], "preprocess.json key 'input_shape.2'"),
    ("rtstruct_roi", "(unclosed", "rtstruct_roi is not a regular expression"),
    ("window", {"level": 40, "width": 400, "script": "x"}, "preprocess.json key 'window'"),
    ("extra", "anything", "preprocess.json key '<top level>'"),
    ("targets", ["ep"], "targets ['ep'] are not among its phases"),
])
def test_a_bundle_that_says_what_this_pipeline_never_writes_is_refused_before_use(tmp_path, key, value, says):
    """Every field of preprocess.json is checked (issue 27): a phase, target or name with a path in it, an
    unknown network, a bad shape or pattern, or an unknown key stops the load with the file and key named,
    before anything is cropped or written; a valid bundle still loads."""
    b = exported(tmp_path)
    bundle.load(b)
    pre = json.loads((b / "preprocess.json").read_text())
    if key == "targets" and value == ["ep"]:
        pre["phases"] = ["cmp", "np"]
        pre["stack_phases"] = ["cmp", "np"]
    pre[key] = value
    (b / "preprocess.json").write_text(json.dumps(pre))
    with pytest.raises(bundle.BundleError) as e:
        bundle.load(b)
    assert says in str(e.value) and str(b / "preprocess.json") in str(e.value)
    assert not (tmp_path / "outside").exists() and not list(tmp_path.parent.glob("outside*"))


def test_a_bundle_whose_metadata_names_a_path_is_refused(tmp_path):
    b = exported(tmp_path)
    md = json.loads((b / "metadata.json").read_text())
    md["cell"]["study"] = "../../elsewhere"
    (b / "metadata.json").write_text(json.dumps(md))
    with pytest.raises(bundle.BundleError, match=r"metadata.json key 'cell.study'"):
        bundle.load(b)


def test_crops_refuse_a_target_that_is_not_a_plain_name(tmp_path):
    """The last line of defence, whatever called it: crop files are outdir/<target>.npz."""
    from ccgrade.preprocess import crops

    cfg = repo_config()
    with pytest.raises(ValueError, match=r"not plain names"):
        crops.crop_patient("P1", "box", cfg["rois"]["box"], cfg["windows"]["cui"], ["np", "../../x"], [], tmp_path,
                           {}, 1, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x.npz").exists()
