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
from conftest import registry_outputs

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
    # paper mode: the best phase picked on the test set (Li et al.'s procedure), and the footnote says so
    out = evaluate.li_tables(cells, registry_outputs("li", tmp_path / "paper", tmp_path / "figs"), opt={"mode": "paper"})
    t2 = out["table2"].set_index(["phases", "set"])
    best = max(skill, key=lambda ph: t2.loc[(ph, "test"), "auc"])
    assert (out["table2"]["reference_phase"] == best).all()
    assert "selected post hoc on the test set" in (tmp_path / "paper/li_table2.md").read_text()
    assert np.isnan(t2.loc[(best, "test"), "delong_p_vs_reference"])
    preds = {ph: evaluate.read_predictions(c) for ph, c in zip(skill, cells)}
    test = {ph: preds[ph][preds[ph]["set"] == "test"].sort_values("patient_id") for ph in skill}
    others = [ph for ph in skill if ph != best]
    raw = [literal_delong_p(test[ph]["label"].to_numpy(), test[ph]["prob_high"].to_numpy(),
                            test[best]["prob_high"].to_numpy()) for ph in others]
    for ph, want in zip(others, raw):
        assert t2.loc[(ph, "test"), "delong_p_vs_reference"] == pytest.approx(want, abs=1e-12)
    lo, hi = sorted(raw)  # Holm by hand for two tests: 2 p_min, then max(that, p_max)
    holm = {min(raw): min(1, 2 * lo), max(raw): max(min(1, 2 * lo), hi)}
    for ph, want in zip(others, raw):
        assert t2.loc[(ph, "test"), "delong_p_vs_reference_holm"] == pytest.approx(holm[want], abs=1e-12)
    # honest default: the li split has no validation patients, so no phase is chosen; every pair is compared
    out = evaluate.li_tables(cells, registry_outputs("li", tmp_path / "tables", tmp_path / "figs"))
    t2 = out["table2"].set_index(["phases", "set"])
    assert (out["table2"]["reference_phase"] == "").all() and out["table2"]["delong_p_vs_reference"].isna().all()
    comp = evaluate.read_table(tmp_path / "tables/li_comparisons.csv")
    assert sorted(map(tuple, comp[["phase_a", "phase_b"]].to_numpy())) == [("cmp", "np"), ("up", "cmp"), ("up", "np")]
    raw = [literal_delong_p(test[a]["label"].to_numpy(), test[a]["prob_high"].to_numpy(), test[b]["prob_high"].to_numpy())
           for a, b in zip(comp["phase_a"], comp["phase_b"])]
    np.testing.assert_allclose(comp["p_value"], raw, atol=1e-12)
    order = np.argsort(raw)
    holm = np.maximum.accumulate([min(1, (3 - i) * raw[j]) for i, j in enumerate(order)])
    np.testing.assert_allclose(comp["p_value_holm"].to_numpy()[order], holm, atol=1e-12)
    assert "li_comparisons" in (tmp_path / "tables/li_table2.md").read_text()
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


def literal_delong_p(y, a, b):
    """DeLong et al. (1988) by its definition, O(mn): psi over every positive-negative pair, the structural
    components V10 and V01, their sample covariances, and the two-sided normal P of AUC_a - AUC_b."""
    y = np.asarray(y)
    comps = []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        psi = np.array([[1.0 if x > z else 0.5 if x == z else 0.0 for z in neg] for x in pos])
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = (y == 1).sum(), (y == 0).sum()
    s10 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    s01 = np.cov(np.vstack([comps[0][2], comps[1][2]]))
    cov = s10 / m + s01 / n
    z = (comps[0][0] - comps[1][0]) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    from scipy.stats import norm
    return float(2 * norm.sf(abs(z)))


def test_li_reference_is_chosen_on_validation_patients_and_no_test_label_moves_it(tmp_path):
    """With validation patients the reference phase is the best validation AUC, even where another phase wins
    on the test set; flipping test patients' labels changes no selection."""
    val = [f"V{i:02d}" for i in range(12)]
    LABEL.update({p: int(i % 3 == 0) for i, p in enumerate(val)})
    skill_val = {"up": 0.9, "cmp": 0.1, "np": 0.3}  # up best on validation
    skill_test = {"up": 0.1, "cmp": 0.9, "np": 0.3}  # cmp best on test

    def cells_with(flip):
        cells = []
        for i, ph in enumerate(skill_val):
            rows = pred_rows(TEST, "test", skill_test[ph], seed=i) + pred_rows(val, "val", skill_val[ph], seed=20 + i) \
                + pred_rows(TRAIN, "train", 0.5, seed=10 + i)
            for r in rows:
                if r["patient_id"] in flip:
                    r["label"] = 1 - r["label"]
            cells.append(write_cell(tmp_path / ("flip" if flip else "orig"), "resnet3d18", ph, rows))
        return cells

    refs = []
    for flip in ((), ("T00", "T01", "T02")):
        out = evaluate.li_tables(cells_with(flip), registry_outputs("li", tmp_path / f"t{len(flip)}", tmp_path / "figs"))
        t2 = out["table2"]
        assert set(t2["set"]) == {"train", "val", "test"}
        refs.append(set(t2["reference_phase"]))
        assert (t2["chosen_on"] == "best validation AUC").all()
    assert refs == [{"up"}, {"up"}]


def test_dai_table5_pools_the_folds(tmp_path):
    patients = TEST + TRAIN
    folds = [patients[i::4] for i in range(4)]  # both grades in every fold
    cells = []
    for var, skill in (("b4", 0.3), ("b16", 0.6)):
        for f, test in enumerate(folds):
            train_ids = [p for p in patients if p not in test]
            cells.append(write_cell(tmp_path, "resnet50", "cmp", pred_rows(test, "test", skill, per=3, seed=f) +
                                    pred_rows(train_ids, "train", skill, seed=f), variant=var, fold=f))
    t5 = evaluate.dai_tables(cells, registry_outputs("dai", tmp_path / "tables", tmp_path / "figs")).set_index(["variant", "level"])
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


def test_cui_tables_cluster_image_level_intervals_and_adjust_table4(tmp_path):
    """Image-level rows carry the patient-clustered CI (the naive one only in paper mode, footnoted);
    Table 4's DeLong P values per level are Holm-adjusted across the table, and pinned phase sets are said."""
    cells = [write_cell(tmp_path / "c", a, ph, pred_rows(TEST, "test", sk, per=4, seed=i), seed=1)
             for i, (a, ph, sk) in enumerate([("resnet34", "np", 0.5), ("resnet34", "cmp", 0.3), ("se_resnet34", "np", 0.7)])]
    evaluate.cui_tables(cells, registry_outputs("cui", tmp_path / "t", tmp_path / "f"), pinned={"se_resnet34": ["np"]})
    t3 = evaluate.read_table(tmp_path / "t/cui_table3.csv")
    pr = evaluate.read_predictions(cells[0])
    img = t3[(t3["phases"] == "np") & (t3["level"] == "image") & (t3["class"] == "high")].iloc[0]
    a, v = stats.clustered_auc(pr["label"], pr["prob_high"], pr["patient_id"])
    assert img["auc_ci_high"] == pytest.approx(min(1, a[0] + 1.959963984540054 * np.sqrt(v[0, 0])), abs=1e-12)
    assert img["ci_method"].startswith("Obuchowski") and img["n_patients"] == len(TEST) and img["n"] == 4 * sum(LABEL[p] for p in TEST)  # n: the class's images
    assert img["auc_naive_ci_high"] - img["auc_naive_ci_low"] < img["auc_ci_high"] - img["auc_ci_low"]
    t4 = evaluate.read_table(tmp_path / "t/cui_table4.csv")
    tested = t4[t4["delong_p"].notna()]
    assert len(tested) == 2 and set(tested["level"]) == {"image", "patient"}  # once per level
    lo, hi = sorted(tested["delong_p"])
    want = {lo: min(1, 2 * lo), hi: max(min(1, 2 * lo), hi)}
    assert [want[p] for p in tested["delong_p"]] == pytest.approx(tested["delong_p_holm"].tolist(), abs=1e-12)
    md = (tmp_path / "t/cui_table4.md").read_text()
    assert "this run did not select it" in md and "family is this table's" in md
    evaluate.cui_tables(cells, registry_outputs("cui", tmp_path / "paper", tmp_path / "f"), opt={"mode": "paper"})
    p3 = evaluate.read_table(tmp_path / "paper/cui_table3.csv")
    pim = p3[(p3["phases"] == "np") & (p3["level"] == "image") & (p3["class"] == "high")].iloc[0]
    assert pim["auc_ci_low"] == img["auc_naive_ci_low"] and pim["ci_method"].startswith("DeLong, images as independent")
    assert "Paper mode" in (tmp_path / "paper/cui_table3.md").read_text()


def test_sun_tables_compare_the_roi_settings(tmp_path):
    """Sun's ROI settings: patient-level AUCs equal scikit-learn's on the mean P(high); with no validation
    patients every pair is compared, each P equal to a literal O(mn) DeLong, Holm-adjusted as one family;
    with validation patients the reference is the best validation AUC and only it is tested against."""
    skill = {"box": 0.05, "tumor": 0.15, "box5mm": 0.3}
    cells = []
    for i, roi in enumerate(skill):
        rows = pred_rows(TEST, "test", skill[roi], per=3, seed=i) + pred_rows(TEST[:10], "train", 0.5, seed=9)
        c = write_cell(tmp_path / roi, "resnet50", "stack", rows)
        cells.append({**c, "roi": roi})
    out = evaluate.sun_tables(cells, registry_outputs("sun", tmp_path / "t", tmp_path / "f"))
    t, comp = out["rois"], out["comparisons"]
    y = np.array([LABEL[p] for p in TEST])
    means = {}
    for c in cells:
        pr = pd.read_csv(f"{c['dir']}/predictions.tsv", sep="\t")
        te = pr[pr["set"] == "test"].groupby("patient_id")["prob_high"].mean().loc[TEST].to_numpy()
        means[c["roi"]] = te
        row = t[(t["roi"] == c["roi"]) & (t["set"] == "test")].iloc[0]
        assert row["auc"] == pytest.approx(roc_auc_score(y, te), abs=1e-12)
    assert len(comp) == 3 and set(comp["reference"]) == {""}  # the li split has no validation patients
    for _, r in comp.iterrows():
        assert r["p_value"] == pytest.approx(literal_delong_p(y, means[r["roi_a"]], means[r["roi_b"]]), abs=1e-12)
    ps = comp["p_value"].to_numpy()
    order = np.argsort(ps)
    holm = np.minimum(1, np.maximum.accumulate((3 - np.arange(3)) * ps[order]))
    np.testing.assert_allclose(comp["p_value_holm"].to_numpy()[order], holm, atol=1e-15)
    md = (tmp_path / "t/sun_rois.md").read_text()
    assert "Pairs compared: box vs tumor: P" in md and "Holm" in md and "Reference: no validation patients" in md
    assert (tmp_path / "f/sun_roc.png").exists() and (tmp_path / "f/sun_roc.pdf").exists()
    # validation patients: the best validation setting is the reference (box wins there, box5mm on test)
    val = [f"W{i:02d}" for i in range(12)]
    LABEL.update({p: int(i % 3 == 0) for i, p in enumerate(val)})
    cells2 = []
    for i, roi in enumerate(skill):
        rows = (pred_rows(TEST, "test", skill[roi], per=3, seed=i) +
                pred_rows(val, "val", {"box": 0.9, "tumor": 0.3, "box5mm": 0.1}[roi], seed=20 + i))
        cells2.append({**write_cell(tmp_path / "v" / roi, "resnet50", "stack", rows), "roi": roi})
    comp2 = evaluate.sun_tables(cells2, registry_outputs("sun", tmp_path / "t2", tmp_path / "f2"))["comparisons"]
    assert set(comp2["reference"]) == {"box"} and set(comp2["roi_b"]) == {"box"} and len(comp2) == 2
    assert set(comp2["chosen_on"]) == {"best validation AUC"}


def test_summary_without_the_bootstrap_keeps_every_other_figure():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(20, int), np.ones(12, int)]
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, len(y)), 0, 1)
    full = evaluate.binary_summary(y, p)
    lean = evaluate.binary_summary(y, p, bootstrap=False)
    assert "auc_boot_low" in full and "auc_boot_low" not in lean
    assert lean == {k: v for k, v in full.items() if not k.startswith("auc_boot")}
