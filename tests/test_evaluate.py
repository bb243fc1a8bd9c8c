"""The papers' tables from prediction tables: numbers checked against scikit-learn and statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from ccgrade import evaluate, heatmaps, models, stats
from ccgrade.outputs import write_tsv

RNG = np.random.default_rng(3)
TEST = [f"T{i:02d}" for i in range(24)]
TRAIN = [f"R{i:02d}" for i in range(30)]
LABEL = {p: int(i % 3 == 0) for i, p in enumerate(TEST + TRAIN)}


def pred_rows(patients, set_name, skill, per=1, seed=0, runs=None):
    """One row per image; P(high) drifts towards the truth with ``skill``; boxes overlap slice to slice."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in patients:
        y = LABEL[p]
        for k in range(per):
            prob = float(np.clip(0.5 + skill * (y - 0.5) + rng.normal(0, 0.25), 0.01, 0.99))
            if runs is not None:  # force a patient-level pattern: `runs[p]` calls in slice order
                prob = 0.8 if runs[p][k] else 0.2
            rows.append({"patient_id": p, "set": set_name, "source": "np", "slice_index": 10 + k, "x1": 5, "y1": 5,
                         "x2": 20, "y2": 20, "label": y, "prob_high": prob})
    return rows


def write_cell(tmp_path, arch, phases, rows, variant="base", fold=0, seed=1):
    d = tmp_path / arch / phases / variant / f"fold{fold}"
    d.mkdir(parents=True)
    write_tsv(d / "predictions.tsv", pd.DataFrame(rows))
    return {"arch": arch, "phases": phases, "variant": variant, "fold": fold, "seed": seed, "dir": str(d),
            "hp": {"arch": arch, "batch": 4 if variant == "b4" else 16}}


def test_li_tables(tmp_path):
    cells = []
    skill = {"up": 0.2, "cmp": 0.6, "np": 0.4}
    for i, ph in enumerate(skill):
        cells.append(write_cell(tmp_path, "resnet3d18", ph, pred_rows(TEST, "test", skill[ph], seed=i) +
                                pred_rows(TRAIN, "train", skill[ph], seed=10 + i)))
    # the 2D model on cmp: 6 slices each; Li's rule on forced runs for the test patients
    runs = {p: ([1] * 5 + [0] if LABEL[p] else [0] * 4 + [1, 1]) for p in TEST}
    runs["T01"] = [1, 1, 1, 1, 0, 0]  # a low-grade patient with four consecutive high calls: called high
    runs["T03"] = [1, 0, 1, 0, 1, 0]  # a high-grade patient without a run: the mean (0.5) decides: high
    runs["T06"] = [0, 0, 0, 0, 1, 1]  # a high-grade patient with four low calls: called low
    cells.append(write_cell(tmp_path, "resnet18", "cmp", pred_rows(TEST, "test", 0, per=6, runs=runs) +
                            pred_rows(TRAIN, "train", 0.5, per=6, seed=5)))
    out = evaluate.li_tables(cells, tmp_path / "tables", tmp_path / "figs")
    t2 = out["table2"].set_index(["phases", "set"])
    preds = {ph: evaluate.read_predictions(c) for ph, c in zip(skill, cells)}
    for ph in skill:
        for s in ("train", "test"):
            t = preds[ph][preds[ph]["set"] == s]
            assert t2.loc[(ph, s), "auc"] == pytest.approx(roc_auc_score(t["label"], t["prob_high"]), abs=1e-12)
            call = t["prob_high"] >= 0.5
            assert t2.loc[(ph, s), "sensitivity"] == pytest.approx(call[t["label"] == 1].mean())
    best = max(skill, key=lambda ph: t2.loc[(ph, "test"), "auc"])
    assert (out["table2"]["best_phase"][out["table2"]["set"] == "test"] == best).all()
    assert np.isnan(t2.loc[(best, "test"), "delong_p_vs_best"])
    other = next(ph for ph in skill if ph != best)
    tb, to = (preds[p][preds[p]["set"] == "test"].sort_values("patient_id") for p in (best, other))
    want = stats.delong_test(to["label"].to_numpy(), to["prob_high"].to_numpy(), tb["prob_high"].to_numpy())
    assert t2.loc[(other, "test"), "delong_p_vs_best"] == pytest.approx(want["p_value"], abs=1e-12)
    # Table 3: Li's rule by hand
    t3 = out["table3"].set_index("set")
    li_call = {p: int(LABEL[p]) for p in TEST}
    li_call.update(T01=1, T03=1, T06=0)
    y = np.array([LABEL[p] for p in TEST])
    c = np.array([li_call[p] for p in TEST])
    assert t3.loc["test", "li_accuracy"] == pytest.approx((c == y).mean())
    assert t3.loc["test", "li_sensitivity"] == pytest.approx(c[y == 1].mean())
    assert t3.loc["test", "li_specificity"] == pytest.approx(1 - c[y == 0].mean())
    assert t3.loc["test", "slice_n"] == 6 * len(TEST) and t3.loc["test", "li_n"] == len(TEST)
    # strong (3D cmp) vs weak (2D cmp, Li's rule): McNemar as statsmodels computes it
    mc = out["mcnemar"].iloc[0]
    strong = preds["cmp"][preds["cmp"]["set"] == "test"].set_index("patient_id").loc[TEST]
    s_call = (strong["prob_high"] >= 0.5).astype(int).to_numpy()
    for name, cls in (("sensitivity", 1), ("specificity", 0)):
        a, b = s_call[y == cls] == cls, c[y == cls] == cls
        table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
        assert mc[f"{name}_p_exact"] == pytest.approx(sm_mcnemar(table, exact=True).pvalue, abs=1e-12)
        assert mc[f"{name}_p_chi2_cc"] == pytest.approx(sm_mcnemar(table, exact=False, correction=True).pvalue,
                                                        abs=1e-12)
        assert mc[f"{name}_strong"] == pytest.approx(a.mean()) and mc[f"{name}_weak"] == pytest.approx(b.mean())
    for stem in ("li_table2", "li_table3", "li_mcnemar"):
        assert (tmp_path / "tables" / f"{stem}.csv").exists() and (tmp_path / "tables" / f"{stem}.md").exists()
    for stem in ("li_roc", "li_confusion"):
        assert (tmp_path / "figs" / f"{stem}.png").exists() and (tmp_path / "figs" / f"{stem}.pdf").exists()


def test_dai_table5_pools_the_folds(tmp_path):
    patients = TEST + TRAIN
    folds = [patients[i::4] for i in range(4)]  # both grades in every fold
    cells = []
    for var, skill in (("b4", 0.3), ("b16", 0.6)):
        for f, test in enumerate(folds):
            train_ids = [p for p in patients if p not in test]
            cells.append(write_cell(tmp_path, "resnet50", "cmp", pred_rows(test, "test", skill, per=3, seed=f) +
                                    pred_rows(train_ids, "train", skill, seed=f), variant=var, fold=f))
    t5 = evaluate.dai_tables(cells, tmp_path / "tables", tmp_path / "figs").set_index(["variant", "level"])
    for var in ("b4", "b16"):
        parts = [evaluate.read_predictions(c) for c in cells if c["variant"] == var]
        test = pd.concat([p[p["set"] == "test"] for p in parts])
        assert t5.loc[(var, "image"), "auc"] == pytest.approx(roc_auc_score(test["label"], test["prob_high"]))
        pat = test.groupby("patient_id").agg(label=("label", "first"), prob=("prob_high", "mean"))
        assert t5.loc[(var, "patient"), "auc"] == pytest.approx(roc_auc_score(pat["label"], pat["prob"]))
        assert t5.loc[(var, "patient"), "n"] == len(patients)  # every patient predicted exactly once
        fold_aucs = [roc_auc_score(p[p["set"] == "test"]["label"], p[p["set"] == "test"]["prob_high"]) for p in parts]
        assert t5.loc[(var, "image"), "fold_auc_mean"] == pytest.approx(np.mean(fold_aucs))
        assert t5.loc[(var, "image"), "fold_auc_sd"] == pytest.approx(np.std(fold_aucs, ddof=1))
    assert t5.loc[("b4", "image"), "batch"] == 4 and t5.loc[("b16", "image"), "batch"] == 16
    assert (tmp_path / "tables/dai_table5.md").exists() and (tmp_path / "figs/dai_roc.pdf").exists()


@pytest.mark.parametrize("arch, shape", [("resnet18", (4, 1, 96, 96)), ("resnet3d18", (2, 1, 24, 32, 32))])
def test_grad_cam_is_the_rectified_class_activation_map(arch, shape):
    torch.manual_seed(0)
    net = models.build_model(arch, 1).eval()
    with torch.no_grad():  # mixed-sign classifier weights, mostly positive: the rectification matters, maps are not empty
        net.fc.weight[1] = net.fc.weight[1].abs() * 10 - 0.05
    x = torch.randn(*shape)
    got = heatmaps.grad_cam(net, x, target=1)
    # CAM (Zhou et al.): the last stage's maps weighted by the classifier's high-grade weights
    feats = {}
    h = net.layer4.register_forward_hook(lambda m, i, o: feats.__setitem__("a", o))
    with torch.no_grad():
        net(x)
    h.remove()
    a = feats["a"]
    cam = torch.relu(torch.einsum("nc...,c->n...", a, net.fc.weight[1])).unsqueeze(1)
    mode = "trilinear" if a.dim() == 5 else "bilinear"
    cam = torch.nn.functional.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)[:, 0]
    top = cam.reshape(len(cam), -1).max(1).values
    assert (top > 0).any()  # not a vacuous comparison of empty maps
    cam = cam / top.clamp_min(1e-12).reshape(-1, *[1] * (cam.dim() - 1))
    assert got.shape == tuple(x.shape[:1]) + tuple(x.shape[2:])
    np.testing.assert_allclose(got, cam.detach().numpy(), atol=1e-5)
    assert got.min() >= 0 and got.max() == pytest.approx(1.0)
