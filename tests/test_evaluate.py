"""The papers' tables from prediction tables: numbers checked against scikit-learn and statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint

from ccgrade import stats
from ccgrade.proportions import clustered_wilson
from ccgrade.evaluate import cui, dai, heatmaps, li, sun, tables
from ccgrade.learn import models
from ccgrade.outputs import read_table, write_tsv
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
    out = li.li_tables(cells, registry_outputs("li", tmp_path / "paper", tmp_path / "figs"), opt={"mode": "paper"})
    t2 = out["table2"].set_index(["phases", "set"])
    best = max(skill, key=lambda ph: t2.loc[(ph, "test"), "auc"])
    assert (out["table2"]["reference_phase"] == best).all()
    assert "selected post hoc on the test set" in (tmp_path / "paper/li_table2.md").read_text()
    assert np.isnan(t2.loc[(best, "test"), "auc_p_vs_reference"])
    assert "DeLong's test of two correlated AUCs, as the papers" in (tmp_path / "paper/li_table2.md").read_text()
    preds = {ph: tables.read_predictions(c) for ph, c in zip(skill, cells)}
    test = {ph: preds[ph][preds[ph]["set"] == "test"].sort_values("patient_id") for ph in skill}
    others = [ph for ph in skill if ph != best]
    raw = [literal_delong_p(test[ph]["label"].to_numpy(), test[ph]["prob_high"].to_numpy(),
                            test[best]["prob_high"].to_numpy()) for ph in others]
    for ph, want in zip(others, raw):
        assert t2.loc[(ph, "test"), "auc_p_vs_reference"] == pytest.approx(want, abs=1e-12)
    lo, hi = sorted(raw)  # Holm by hand for two tests: 2 p_min, then max(that, p_max)
    holm = {min(raw): min(1, 2 * lo), max(raw): max(min(1, 2 * lo), hi)}
    for ph, want in zip(others, raw):
        assert t2.loc[(ph, "test"), "auc_p_vs_reference_holm"] == pytest.approx(holm[want], abs=1e-12)
    # honest default: the li split has no validation patients, so no phase is chosen; every pair is compared
    out = li.li_tables(cells, registry_outputs("li", tmp_path / "tables", tmp_path / "figs"))
    t2 = out["table2"].set_index(["phases", "set"])
    assert (out["table2"]["reference_phase"] == "").all() and out["table2"]["auc_p_vs_reference"].isna().all()
    comp = read_table(tmp_path / "tables/li_comparisons.csv")
    assert sorted(map(tuple, comp[["phase_a", "phase_b"]].to_numpy())) == [("cmp", "np"), ("up", "cmp"), ("up", "np")]
    # honest: the within-patient permutation test of ranks (one cube per patient), seeded, 10,000 patterns
    raw = [stats.paired_auc_test(test[a]["label"].to_numpy(), test[a]["prob_high"].to_numpy(),
                                 test[b]["prob_high"].to_numpy(), method="permutation", seed=0)["p_value"]
           for a, b in zip(comp["phase_a"], comp["phase_b"])]
    np.testing.assert_allclose(comp["p_value"], raw, atol=1e-12)
    assert set(comp["method"]) == {"within-patient permutation of ranks (10,000 random patterns)"}
    order = np.argsort(raw)
    holm = np.maximum.accumulate([min(1, (3 - i) * raw[j]) for i, j in enumerate(order)])
    np.testing.assert_allclose(comp["p_value_holm"].to_numpy()[order], holm, atol=1e-12)
    assert "li_comparisons" in (tmp_path / "tables/li_table2.md").read_text()
    assert "permutation test of the two models' ranks within patients" in (tmp_path / "tables/li_table2.md").read_text()
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
    assert (t3.loc["test", "li_sensitivity_ci_low"], t3.loc["test", "li_sensitivity_ci_high"]) == pytest.approx(
        proportion_confint(c[y == 1].sum(), (y == 1).sum(), method="wilson"), abs=1e-12)
    for ph in skill:  # Table 2: Wilson on the test patients' calls
        yy, call = test[ph]["label"].to_numpy(), (test[ph]["prob_high"] >= 0.5).to_numpy()
        assert (t2.loc[(ph, "test"), "specificity_ci_low"], t2.loc[(ph, "test"), "specificity_ci_high"]) == \
            pytest.approx(proportion_confint((~call[yy == 0]).sum(), (yy == 0).sum(), method="wilson"), abs=1e-12)
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
        assert (mc[f"{name}_weak_ci_low"], mc[f"{name}_weak_ci_high"]) == pytest.approx(
            proportion_confint(b.sum(), len(b), method="wilson"), abs=1e-12)
    weak = tables.read_predictions(cells[-1])  # the 2D model on cmp
    weak_mean = weak[weak["set"] == "test"].groupby("patient_id")["prob_high"].mean().loc[TEST].to_numpy()
    want = stats.paired_auc_test(y, strong["prob_high"].to_numpy(), weak_mean, method="permutation", seed=0)
    assert mc["auc_p"] == want["p_value"] and mc["auc_method"].startswith("within-patient permutation of ranks")
    assert "| AUC P |" in (tmp_path / "tables/li_mcnemar.md").read_text()
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
        out = li.li_tables(cells_with(flip), registry_outputs("li", tmp_path / f"t{len(flip)}", tmp_path / "figs"))
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
    t5 = dai.dai_tables(cells, registry_outputs("dai", tmp_path / "tables", tmp_path / "figs")).set_index(["variant", "level"])
    for var in ("b4", "b16"):
        parts = [tables.read_predictions(c) for c in cells if c["variant"] == var]
        test = pd.concat([p[p["set"] == "test"] for p in parts])
        assert t5.loc[(var, "image"), "auc"] == pytest.approx(roc_auc_score(test["label"], test["prob_high"]))
        pat = test.groupby("patient_id").agg(label=("label", "first"), prob=("prob_high", "mean"))
        assert t5.loc[(var, "patient"), "auc"] == pytest.approx(roc_auc_score(pat["label"], pat["prob"]))
        assert t5.loc[(var, "patient"), "n"] == len(patients)  # every patient predicted exactly once
        y, call = test["label"].to_numpy(), (test["prob_high"] >= 0.5).to_numpy(int)
        assert (t5.loc[(var, "image"), "accuracy_ci_low"], t5.loc[(var, "image"), "accuracy_ci_high"]) == \
            clustered_wilson(call == y, test["patient_id"].to_numpy())  # slices clustered in patients
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
    Table 4's AUC P values are Holm-adjusted within each level and seed (the same comparison at image and at
    patient level is one hypothesis, issue 29), and pinned phase sets are said."""
    cells = [write_cell(tmp_path / "c", a, ph, pred_rows(TEST, "test", sk, per=4, seed=i), seed=1)
             for i, (a, ph, sk) in enumerate([("resnet34", "np", 0.5), ("resnet34", "cmp", 0.3), ("se_resnet34", "np", 0.7)])]
    cui.cui_tables(cells, registry_outputs("cui", tmp_path / "t", tmp_path / "f"), pinned={"se_resnet34": ["np"]})
    t3 = read_table(tmp_path / "t/cui_table3.csv")
    pr = tables.read_predictions(cells[0])
    img = t3[(t3["phases"] == "np") & (t3["level"] == "image") & (t3["class"] == "high")].iloc[0]
    a, v = stats.clustered_auc(pr["label"], pr["prob_high"], pr["patient_id"])
    # shown: the score interval with the patient-clustered design effect (issue 29); kept: Obuchowski's Wald CI
    assert img["auc_clustered_ci_high"] == pytest.approx(min(1, a[0] + 1.959963984540054 * np.sqrt(v[0, 0])), abs=1e-12)
    assert (img["auc_ci_low"], img["auc_ci_high"]) == pytest.approx(
        stats.auc_interval_score(pr["label"], pr["prob_high"], pr["patient_id"])[1:], abs=1e-12)
    assert img["ci_method"] == "Newcombe score, patient-clustered" and img["n_patients"] == len(TEST) and img["n"] == 4 * sum(LABEL[p] for p in TEST)  # n: the class's images
    assert img["auc_naive_ci_high"] - img["auc_naive_ci_low"] < img["auc_ci_high"] - img["auc_ci_low"]
    t4 = read_table(tmp_path / "t/cui_table4.csv")
    tested = t4[t4["auc_p"].notna()]
    assert len(tested) == 2 and set(tested["level"]) == {"image", "patient"}  # once per level
    # one comparison per level and seed: each level's family holds one test, so nothing to adjust (pooling the
    # two levels, as before, doubled the smaller P value)
    assert tested["auc_p_holm"].tolist() == pytest.approx(tested["auc_p"].tolist(), abs=1e-12)
    assert "delong_p" not in t4
    assert set(tested["comparison"]) == {"within-patient permutation of ranks (10,000 random patterns)"}
    md = (tmp_path / "t/cui_table4.md").read_text()
    assert "this run did not select it" in md and "family is this table's" in md and "1 test in each level and seed" in md
    assert "| AUC P |" in md and "DeLong P" not in md and "chosen for its size at small samples" in md
    cui.cui_tables(cells, registry_outputs("cui", tmp_path / "paper", tmp_path / "f"), opt={"mode": "paper"})
    p3 = read_table(tmp_path / "paper/cui_table3.csv")
    pim = p3[(p3["phases"] == "np") & (p3["level"] == "image") & (p3["class"] == "high")].iloc[0]
    assert pim["auc_ci_low"] == img["auc_naive_ci_low"] and pim["ci_method"].startswith("DeLong (Wald), images as independent")
    assert "Paper mode" in (tmp_path / "paper/cui_table3.md").read_text()


def test_sun_tables_compare_the_roi_settings(tmp_path):
    """Sun's ROI settings: patient-level AUCs equal scikit-learn's on the mean P(high); with no validation
    patients every pair is compared, each P the within-patient permutation test's, Holm-adjusted as one family;
    with validation patients the reference is the best validation AUC and only it is tested against."""
    skill = {"box": 0.05, "tumor": 0.15, "box5mm": 0.3}
    cells = []
    for i, roi in enumerate(skill):
        rows = pred_rows(TEST, "test", skill[roi], per=3, seed=i) + pred_rows(TEST[:10], "train", 0.5, seed=9)
        c = write_cell(tmp_path / roi, "resnet50", "stack", rows)
        cells.append({**c, "roi": roi})
    out = sun.sun_tables(cells, registry_outputs("sun", tmp_path / "t", tmp_path / "f"))
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
        assert r["p_value"] == pytest.approx(stats.paired_auc_test(y, means[r["roi_a"]], means[r["roi_b"]],
                                                                   method="permutation", seed=0)["p_value"], abs=1e-12)
    ps = comp["p_value"].to_numpy()
    order = np.argsort(ps)
    holm = np.minimum(1, np.maximum.accumulate((3 - np.arange(3)) * ps[order]))
    np.testing.assert_allclose(comp["p_value_holm"].to_numpy()[order], holm, atol=1e-15)
    md = (tmp_path / "t/sun_rois.md").read_text()
    assert "Pairs compared: box vs tumor: P" in md and "Holm" in md and "Reference: no validation patients" in md
    assert "| AUC P vs reference |" in md and "permutation test of the two models' ranks" in md
    assert "auc_p_vs_reference" in t and not any(c.startswith("delong") for c in t)
    assert (tmp_path / "f/sun_roc.png").exists() and (tmp_path / "f/sun_roc.pdf").exists()
    # validation patients: the best validation setting is the reference (box wins there, box5mm on test)
    val = [f"W{i:02d}" for i in range(12)]
    LABEL.update({p: int(i % 3 == 0) for i, p in enumerate(val)})
    cells2 = []
    for i, roi in enumerate(skill):
        rows = (pred_rows(TEST, "test", skill[roi], per=3, seed=i) +
                pred_rows(val, "val", {"box": 0.9, "tumor": 0.3, "box5mm": 0.1}[roi], seed=20 + i))
        cells2.append({**write_cell(tmp_path / "v" / roi, "resnet50", "stack", rows), "roi": roi})
    comp2 = sun.sun_tables(cells2, registry_outputs("sun", tmp_path / "t2", tmp_path / "f2"))["comparisons"]
    assert set(comp2["reference"]) == {"box"} and set(comp2["roi_b"]) == {"box"} and len(comp2) == 2
    assert set(comp2["chosen_on"]) == {"best validation AUC"}


@pytest.mark.parametrize("n_patients, patterns", [(12, "exact, 2^12 patterns"), (24, "10,000 random patterns")])
def test_compare_is_the_permutation_test_and_delong_in_paper_mode(n_patients, patterns):
    """Issue 29, item 1: two models' AUCs on the same test units by the within-patient permutation test of ranks
    (a patient's images swapped together; exact over all 2^patients patterns up to 10,000), DeLong's in paper
    mode (images as independent, as the papers); the P values recomputed here from the prediction frames."""
    patients = TEST[:n_patients]
    pa = pd.DataFrame(pred_rows(patients, "test", 0.6, per=3, seed=1))
    pb = pd.DataFrame(pred_rows(patients, "test", 0.3, per=3, seed=2))
    y, a, b, pid = pa["label"].to_numpy(), pa["prob_high"].to_numpy(), pb["prob_high"].to_numpy(), pa["patient_id"]
    pat_a, pat_b = (f.groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean")) for f in (pa, pb))
    want = {"image": (y, a, b, pid.to_numpy()), "patient": (pat_a["y"].to_numpy(), pat_a["p"].to_numpy(),
                                                             pat_b["p"].to_numpy(), None)}
    honest, paper = tables.compare(pa, pb), tables.compare(pa, pb, {"mode": "paper"})
    for level, (yy, sa, sb, cl) in want.items():
        perm = stats.paired_auc_test(yy, sa, sb, clusters=cl, method="permutation", n_perm=10000, seed=0)
        h = honest[level]
        assert h["p_value"] == perm["p_value"] and (h["auc_a"], h["auc_b"]) == (perm["auc_a"], perm["auc_b"])
        assert h["n"] == len(yy) and h["method"] == f"within-patient permutation of ranks ({patterns})"
        assert paper[level]["p_value"] == stats.delong_test(yy, sa, sb)["p_value"]
        assert paper[level]["p_value"] == pytest.approx(literal_delong_p(yy, sa, sb), abs=1e-12)
        assert paper[level]["method"] == "DeLong" + (", images as independent" if level == "image" else "")
    # the image-level test swaps a patient's images together: not the test of images as independent units
    assert honest["image"]["p_value"] != stats.paired_auc_test(y, a, b, method="permutation", seed=0)["p_value"]
    assert "permutation test of the two models' ranks within patients" in tables.paired_test_note({})
    assert "all its images together" in tables.paired_test_note({})
    assert "all its" not in tables.paired_test_note({}, None)
    assert "DeLong's test" in tables.paired_test_note({"mode": "paper"}) and "anti-conservative" in \
        tables.paired_test_note({"mode": "paper"})


def test_summary_without_the_bootstrap_keeps_every_other_figure():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(20, int), np.ones(12, int)]
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, len(y)), 0, 1)
    full = tables.binary_summary(y, p)
    lean = tables.binary_summary(y, p, bootstrap=False)
    assert "auc_boot_low" in full and "auc_boot_low" not in lean
    assert lean == {k: v for k, v in full.items() if not k.startswith("auc_boot")}


def test_every_proportion_carries_its_interval_recomputed_from_the_predictions(tmp_path):
    """Cui Table 3: each metric's CI columns follow it; a patient row's sensitivity CI is Wilson's on the counts
    taken from the predictions by hand, an image row's the patient-clustered Wilson on the images, the low
    class's precision the NPV's, F1's the Jaccard–Wilson interval; the Markdown shows "0.800 (0.490–0.943)"."""
    from ccgrade import proportions

    cell = write_cell(tmp_path / "c", "resnet34", "np", pred_rows(TEST, "test", 0.4, per=3, seed=4))
    cui.cui_tables([cell], registry_outputs("cui", tmp_path / "t", tmp_path / "f"))
    t3 = read_table(tmp_path / "t/cui_table3.csv")
    cols = list(t3.columns)
    for c in ("accuracy", "precision", "sensitivity", "specificity", "f1"):
        assert cols[cols.index(c) + 1:cols.index(c) + 3] == [f"{c}_ci_low", f"{c}_ci_high"]
    pr = tables.read_predictions(cell)
    pr = pr[pr["set"] == "test"]
    pat = pr.groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
    row = t3.set_index(["level", "class"])
    hi_p, lo_p = row.loc[("patient", "high")], row.loc[("patient", "low")]
    k, n = int(((pat["p"] >= 0.5) & (pat["y"] == 1)).sum()), int((pat["y"] == 1).sum())
    assert (hi_p["sensitivity_ci_low"], hi_p["sensitivity_ci_high"]) == pytest.approx(
        proportion_confint(k, n, method="wilson"), abs=1e-12)
    tn, fn = int(((pat["p"] < 0.5) & (pat["y"] == 0)).sum()), int(((pat["p"] < 0.5) & (pat["y"] == 1)).sum())
    assert (lo_p["precision_ci_low"], lo_p["precision_ci_high"]) == pytest.approx(proportions.wilson(tn, tn + fn))
    y, call, pid = pr["label"].to_numpy(), (pr["prob_high"] >= 0.5).to_numpy(int), pr["patient_id"].to_numpy()
    img = row.loc[("image", "high")]
    assert (img["sensitivity_ci_low"], img["sensitivity_ci_high"]) == proportions.clustered_wilson(
        call[y == 1], pid[y == 1])
    flagged = (y == 1) | (call == 1)  # F1's default: Wilson's interval of J = TP / (TP + FP + FN) on J's
    j = ((y == 1) & (call == 1))[flagged]  # patient-clustered effective sample size, mapped to 2J / (1 + J)
    n_eff = len(j) / proportions.design_effect(j, pid[flagged])
    j_lo, j_hi = proportion_confint(j.mean() * n_eff, n_eff, method="wilson")
    assert (img["f1_ci_low"], img["f1_ci_high"]) == pytest.approx((2 * j_lo / (1 + j_lo), 2 * j_hi / (1 + j_hi)), abs=1e-12)
    assert img["proportion_ci_method"] == proportions.CLUSTERED and hi_p["proportion_ci_method"] == proportions.WILSON
    md = (tmp_path / "t/cui_table3.md").read_text()
    assert f"{hi_p['sensitivity']:.3f} ({hi_p['sensitivity_ci_low']:.3f}–{hi_p['sensitivity_ci_high']:.3f})" in md
    assert "Wilson score interval at patient level" in md and "effective sample size" in md and "F1: patient" in md


def test_seed_summaries_are_mean_sd_and_range_never_averaged_bounds_or_p_values(tmp_path):
    """Two seeds: the CSV's summary rows (mean, sd, min, max) hold the point estimates' statistics and leave
    every interval bound and P value empty; the Markdown gives one row, "mean ± SD (range min–max)"."""
    cells = [write_cell(tmp_path / f"s{sd}", a, "np", pred_rows(TEST, "test", sk, per=3, seed=sd * 10 + i), seed=sd)
             for sd in (1, 2) for i, (a, sk) in enumerate([("resnet34", 0.4), ("se_resnet34", 0.6)])]
    cui.cui_tables(cells, registry_outputs("cui", tmp_path / "t", tmp_path / "f"))
    t3 = read_table(tmp_path / "t/cui_table3.csv", dtype={"seed": str})
    sel = (t3["level"] == "patient") & (t3["class"] == "high")
    seeds, summ = t3[sel & t3["seed"].isin(["1", "2"])], t3[sel & ~t3["seed"].isin(["1", "2"])].set_index("seed")
    assert list(summ.index) == ["mean", "sd", "min", "max"]
    for c in ("auc", "sensitivity", "f1", "tp"):
        v = seeds[c].to_numpy(float)
        assert list(summ[c]) == pytest.approx([v.mean(), v.std(ddof=1), v.min(), v.max()])
    bounds = [c for c in t3 if c.endswith(("_low", "_high")) and not c.startswith(("auc_clustered", "auc_naive"))]
    assert len(bounds) == 14 and summ[bounds].isna().all().all() and seeds[bounds].notna().all().all()
    assert summ["ci_method"].isna().all()
    md = (tmp_path / "t/cui_table3.md").read_text()
    line = next(x for x in md.splitlines() if "| all 2 seeds | patient | high |" in x)
    a = summ["auc"]
    assert f"| {a['mean']:.3f} ± {a['sd']:.3f} (range {a['min']:.3f}–{a['max']:.3f}) |" in line
    assert line.count("(range") == 6 and "not averaged" in md
    # a P value column: never averaged (nor any bound), only the point estimates summarised
    t = pd.DataFrame({"model": ["a", "a", "b"], "seed": [1, 2, 1], "auc": [0.8, 0.9, 0.7],
                      "auc_ci_low": [0.6, 0.7, 0.5], "auc_boot_high": [0.9, 1.0, 0.8], "auc_p_vs_reference": [0.01, 0.2, np.nan],
                      "auc_p_vs_reference_holm": [0.02, 0.4, np.nan], "p_value": [0.3, 0.1, 0.2], "n": [10, 10, 9]})
    s = tables.seed_summary(t, ["model"])
    assert list(s["seed"]) == ["1", "2", "1", "mean", "sd", "min", "max"]  # model b, one seed: no summary
    assert s.iloc[3:][["auc_ci_low", "auc_boot_high", "auc_p_vs_reference", "auc_p_vs_reference_holm",
                       "p_value"]].isna().all().all()
    assert list(s.iloc[3:]["auc"]) == pytest.approx([0.85, np.std([0.8, 0.9], ddof=1), 0.8, 0.9])
    v = tables.seed_view(s, ["model"])
    r = v.iloc[-1]
    assert r["seed"] == "all 2 seeds" and tables.ci_text(r) == "0.850 ± 0.071 (range 0.800–0.900)"
    assert tables.count_text(r) == "10" and tables.fmt(r["auc_p_vs_reference"]) == ""
    assert len(v) == 4 and tables.seed_view(t[t["seed"] == 1], ["model"]) is not None


def test_a_family_is_adjusted_within_each_level_and_seed_and_the_footnote_says_so():
    """Issue 29, item 7: one declared family per table, the same in code and footnote."""
    t = pd.DataFrame({"seed": [1, 1, 1, 2, 2, 2], "level": ["patient"] * 6, "p": [0.01, 0.04, 0.03, 0.02, 0.5, 0.9]})
    tables.adjust_columns(t, ["p"], {"adjust": ["holm", "bh"]}, by=["level", "seed"])
    for sd in (1, 2):
        sub = t[t["seed"] == sd]
        np.testing.assert_allclose(sub["p_holm"], stats.adjust(sub["p"].to_numpy(), "holm"))
        np.testing.assert_allclose(sub["p_bh"], stats.adjust(sub["p"].to_numpy(), "bh"))
    note = tables.family_note(t, "p", "the phases' comparisons", {"adjust": ["holm"]}, by=["level", "seed"])
    assert "3 tests in each level and seed" in note and "not pooled" in note


def test_each_studys_decision_curves_pool_the_folds_and_take_the_first_seed(tmp_path):
    """Issue 29, item 8: a decision curve (and calibration) per study on its test patients, the net benefit
    recomputed here from the predictions."""
    from ccgrade.evaluate import curves, studies

    patients = TEST + TRAIN
    folds = [patients[i::3] for i in range(3)]
    cells = [write_cell(tmp_path, "resnet50", "cmp", pred_rows(test, "test", 0.6, per=2, seed=f), fold=f)
             for f, test in enumerate(folds)]
    cells.append(write_cell(tmp_path / "s2", "resnet50", "cmp", pred_rows(patients, "test", 0.1, seed=9), seed=2))
    out = registry_outputs("dai", tmp_path / "t", tmp_path / "f")
    t = studies.build("dai", cells, out)
    d = read_table(tmp_path / "t/dai_decision.csv")
    assert set(d["model"]) == {"resnet50 cmp"} and (d["n"] == len(patients)).all()  # the folds pooled, seed 1
    test = pd.concat([tables.read_predictions(c) for c in cells[:3]])
    pat = test.groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
    for r in d.itertuples():
        treat = pat["p"] >= r.threshold
        tp, fp = (treat & (pat["y"] == 1)).sum(), (treat & (pat["y"] == 0)).sum()
        assert r.net_benefit == pytest.approx(tp / len(pat) - fp / len(pat) * r.threshold / (1 - r.threshold))
        assert r.nb_low <= r.net_benefit <= r.nb_high
    assert (tmp_path / "f/dai_decision.png").exists() and len(t)
    assert "class-weighted loss is a score, not a risk" in (tmp_path / "t/dai_decision.md").read_text()
