"""External validation (ccgrade.deploy.external, preflight.external_cohort, the demo's shifted centre): each member's
probabilities are its bundle's own, a member that cannot grade a patient is a status row, and the table's
numbers agree with scikit-learn and the statistics module computed independently. (The DAG's external jobs
run on the tiny demo, test_workflow.)"""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ccgrade import stats
from ccgrade.config.cohort import patient_sources
from ccgrade.deploy import bundle, external
from ccgrade.ingest import demo
from ccgrade.learn import models
from ccgrade.outputs import Outputs, write_tsv
from ccgrade.plan import preflight
from conftest import PHASES, ingest_to, tiny_config
from test_bundle import fake_cell
from test_predict import derived


def test_the_external_centre_is_drawn_apart_with_its_shift_and_the_cohorts_draws_do_not_move():
    cfg = tiny_config()
    ext = demo.external_settings(cfg["demo"], cfg["external"]["demo"], "C")
    a = demo.draw_patient(ext["seed"], 0, ext)
    assert a["clinical"]["patient_id"] == "EXT001" and a["clinical"]["centre"] == "C"
    assert a["phantom"]["style"] == demo.STYLE_NAMES["vendor"]
    assert ext["noise_hu"] == 25 and ext["slice_thickness_mm"] == 3.0 and ext["n_slices"] == 23
    # a fixed series style changes the names only: every other draw of the patient stays
    base = demo.draw_patient(3, 4, cfg["demo"])
    fixed = demo.draw_patient(3, 4, {**cfg["demo"], "series_style": "numbered"})
    assert fixed["clinical"] == base["clinical"]
    assert {k: v for k, v in fixed["phantom"].items() if k != "style"} == \
        {k: v for k, v in base["phantom"].items() if k != "style"}
    assert fixed["phantom"]["style"] == 2 and base["clinical"]["patient_id"] == "DEMO005"


def test_preflight_plans_the_demos_external_centre_and_none_when_asked_for_none():
    cfg = derived()
    cohort, cells, probs = preflight.external_cohort(cfg, cache=None)
    assert not probs and list(cohort["patient_id"]) == ["EXT001", "EXT002", "EXT003"]
    assert cohort["dicom_dir"].iloc[0].endswith("resources/demo_external/C/dicom/EXT001")
    assert set(cohort["grade_group"]) <= {"low", "high"} and (cohort["centre"] == "C").all()
    assert {c["study"] for c in cells} == set(cfg["training"]["studies"])
    cfg["external"]["demo"]["n_patients"] = 0
    assert preflight.external_cohort(cfg, cache=None)[0].empty
    cfg["cohort"]["source"] = "sheet"  # a user's cohort without external.sheet: no external validation
    cfg["external"]["demo"]["n_patients"] = 5
    assert preflight.external_cohort(cfg, cache=None)[0].empty


def test_an_external_patient_a_model_cannot_read_is_a_warning_naming_patient_and_phase(tmp_path, monkeypatch):
    cfg = derived()
    cfg["training"]["studies"] = {"cui": cfg["training"]["studies"]["cui"]}
    cfg["external"]["sheet"] = "ext.tsv"
    (tmp_path / "a" / "cmp").mkdir(parents=True)
    (tmp_path / "a" / "cmp" / "mask.nii.gz").write_bytes(b"")
    sheet = pd.DataFrame([{"patient_id": "007", "annotation_dir": str(tmp_path / "a"), "grade": 3,
                           "grade_group": "high"}])
    surveys = {"007": {"images": {"cmp": {"status": "ok"}}}}
    seen = {}

    def fake(path, c, key, **kw):
        seen.update(path=path, key=key, **kw)
        return sheet, surveys, []
    monkeypatch.setattr(preflight, "sheet_cohort", fake)
    cohort, cells, probs = preflight.external_cohort(cfg, cache=None)
    assert seen["path"] == "ext.tsv" and seen["key"] == "external.sheet" and not seen.get("grade_optional")
    assert list(cohort["patient_id"]) == ["007"] and len(probs) == 1 and probs[0].level == "warning"
    msg = probs[0].message  # one line for the patient, whichever models share a need
    assert msg.startswith("external.sheet: patient 007, file ext.tsv: 5 of 6 models cannot grade this patient")
    assert "cui resnet34 on up (box)" in msg and "on cmp" not in msg and "cui se_resnet34 on np (box)" in msg
    assert "phase(s) up, np, ep not among its images (usable: cmp)" in msg and "no annotation box reads on up, np, ep" in msg
    assert "ingest.phase_map" in probs[0].fix


def test_every_member_grades_an_external_patient_and_one_that_cannot_says_why(demo_root, tmp_path, monkeypatch):
    cfg = derived()
    cfg["rois"]["box"]["size"] = 32
    paths = []
    for k, (phases, trained) in enumerate((("cmp", True), ("cmp", True), ("ep", True), ("cmp", False))):
        d, _, _ = fake_cell(tmp_path / f"c{k}", trained=trained)
        torch.manual_seed(k + 5)
        torch.save(models.build_model("resnet18", in_channels=1).state_dict(), d / "best.pt")
        cell = {"study": "cui", "roi": "box", "arch": "resnet18", "phases": phases, "variant": "base", "fold": k,
                "seed": 1}
        bundle.export(d, tmp_path / f"b{k}", config=cfg, cell=cell, study="cui")
        paths.append(str(tmp_path / f"b{k}"))
    _, vol = ingest_to(demo_root / "dicom" / "DEMO001", "DEMO001", tmp_path / "ing")
    shutil.copytree(vol, tmp_path / "vol")
    (tmp_path / "vol" / "ep.nii.gz").unlink()  # this centre has no excretory phase: as ingest records it
    st = pd.read_csv(tmp_path / "vol" / "phases.tsv", sep="\t", keep_default_na=False)
    st.loc[st["phase"] == "ep", ["status", "reason"]] = ["missing", "no series"]
    write_tsv(tmp_path / "vol" / "phases.tsv", st)
    src = patient_sources({"annotation_dir": str(demo_root / "annotations" / "DEMO001")}, PHASES)
    src = {ph: {"labelme": s["labelme"]} for ph, s in src.items()}
    rows = external.grade_patient(paths, tmp_path / "vol", {"box": src}, "DEMO001")
    assert list(rows.columns) == external.COLUMNS and (rows["patient_id"] == "DEMO001").all()
    for k in (0, 1):
        own = bundle.load(paths[k]).predict(tmp_path / "vol", src, patient="DEMO001")
        mine = rows[rows["fold"] == k]
        assert (mine["status"] == "ok").all()
        np.testing.assert_allclose(mine["prob_high"], own["prob_high"], atol=1e-6)
        assert list(mine["slice_index"]) == list(own["slice_index"])
    ep = rows[rows["fold"] == 2]
    assert len(ep) == 1 and ep["prob_high"].isna().all() and "needs phase(s) ['ep']" in ep["status"].iloc[0]
    untrained = rows[rows["fold"] == 3]
    assert len(untrained) == 1 and untrained["status"].iloc[0] == "not trained: one grade group"
    assert (rows["threshold"] == 0.5).all()
    # the study's grading job: every patient, each trained bundle loaded once, one file per patient, the same rows
    loads, real = [], bundle.Bundle.__init__
    monkeypatch.setattr(bundle.Bundle, "__init__", lambda self, path, *a: (loads.append(path), real(self, path, *a))[1])
    pats = [{"patient_id": pid, "volumes": str(tmp_path / "vol"), "sources": {"box": src}} for pid in ("DEMO001", "X2")]
    got = external.grade_patients(paths, pats, tmp_path / "graded")
    assert sorted(loads) == sorted(paths[:3])  # the untrained fourth has no network to load
    pd.testing.assert_frame_equal(got["DEMO001"], rows)
    x2 = pd.read_csv(tmp_path / "graded" / "X2.tsv", sep="\t", dtype={"patient_id": str})
    assert (x2["patient_id"] == "X2").all()
    np.testing.assert_allclose(x2["prob_high"], rows["prob_high"], atol=1e-7)
    assert (tmp_path / "graded" / "DEMO001.tsv").exists()


def _cell_dir(tmp_path, name, fold, rng, n=10, shift=0.4):
    d = tmp_path / "models" / name / f"fold{fold}"
    d.mkdir(parents=True)
    rows = [{"patient_id": f"I{name}{fold}{i:02d}", "set": "test", "label": int(i % 2), "source": "cmp",
             "slice_index": j, "prob_high": float(np.clip(0.3 + shift * (i % 2) + rng.normal(0, 0.15), 0, 1))}
            for i in range(n) for j in range(2)]
    write_tsv(d / "predictions.tsv", pd.DataFrame(rows))
    return str(d)


def test_the_external_table_agrees_with_an_independent_computation(tmp_path, monkeypatch):
    """Two models (one with two fold members): the external AUC of the members' average, the internal AUC of
    the pooled out-of-fold patients, their intervals (honest mode: Newcombe's score interval, DeLong's Wald kept
    beside), their difference and its test, calibration, the Holm adjustment over the rows, the not-graded
    count, the figure's axis naming the interval, and the files."""
    labels = []
    save = Outputs.figure

    def figure(self, role, fig, **kw):
        labels.append(fig.axes[0].get_xlabel())
        return save(self, role, fig, **kw)

    monkeypatch.setattr(Outputs, "figure", figure)
    rng = np.random.default_rng(4)
    a = [{"study": "dai", "roi": "centroid", "arch": "resnet50", "phases": "cmp", "variant": "b8", "fold": f, "seed": 1,
          "dir": _cell_dir(tmp_path, "a", f, rng)} for f in (0, 1)]
    b = [{"study": "dai", "roi": "centroid", "arch": "resnet50", "phases": "cmp", "variant": "b16", "fold": 0,
          "seed": 1, "dir": _cell_dir(tmp_path, "b", 0, rng, shift=0.2)}]
    ext = [f"E{i:02d}" for i in range(20)]
    y = np.array([int(i % 3 == 0) for i in range(20)])
    sheet = pd.DataFrame({"patient_id": ext, "grade": np.where(y, 4, 2), "grade_group": np.where(y, "high", "low")})
    files = []
    for pid, yi in zip(ext, y):
        rows = []
        for c in a + b:
            if c["variant"] == "b16" and pid == "E19":  # this model could not grade one patient
                rows.append({"patient_id": pid, **{k: c[k] for k in external.MEMBER_KEYS}, "status": "no usable crop"})
                continue
            for j in range(3):
                rows.append({"patient_id": pid, **{k: c[k] for k in external.MEMBER_KEYS}, "source": "cmp",
                             "slice_index": j, "prob_high": float(np.clip(0.4 + 0.15 * yi + rng.normal(0, 0.2),
                                                                          0.01, 0.99)), "threshold": 0.5,
                             "status": "ok"})
        f = tmp_path / "ext" / f"{pid}.tsv"
        f.parent.mkdir(exist_ok=True)
        write_tsv(f, pd.DataFrame(rows).reindex(columns=external.COLUMNS).assign(threshold=0.5))
        files.append(str(f))
    roles = {"table": "t.csv", "table_md": "t.md", "figure": "f.png", "figure_pdf": "f.pdf"}
    out = Outputs({k: tmp_path / v for k, v in roles.items()})
    opt = {"n_boot": 200, "adjust": ["holm"]}
    t = external.write_table(files, sheet, a + b, "dai", "C", out, opt)
    assert list(t["variant"]) == ["b8", "b16"] and list(t["n_members"]) == [2, 1]
    imgs = pd.concat(pd.read_csv(f, sep="\t", dtype={"patient_id": str}) for f in files)
    imgs = imgs[imgs["status"] == "ok"]
    per = imgs.groupby(["variant", "fold", "patient_id"])["prob_high"].mean().groupby(["variant", "patient_id"]).mean()
    ps = []
    for r, v, cells in ((t.iloc[0], "b8", a), (t.iloc[1], "b16", b)):
        p = per.loc[v]
        yy = sheet.set_index("patient_id").loc[p.index, "grade_group"].eq("high").to_numpy(int)
        assert r["auc"] == pytest.approx(roc_auc_score(yy, p.to_numpy()), abs=1e-12)
        call = p.to_numpy() >= 0.5
        assert r["sensitivity"] == pytest.approx(call[yy == 1].mean()) and r["specificity"] == pytest.approx(
            1 - call[yy == 0].mean())
        pred = pd.concat(pd.read_csv(f"{c['dir']}/predictions.tsv", sep="\t") for c in cells)
        ip = pred.groupby("patient_id").agg(y=("label", "first"), p=("prob_high", "mean"))
        assert r["internal_n"] == len(ip) == 10 * len(cells)
        assert r["internal_auc"] == pytest.approx(roc_auc_score(ip["y"], ip["p"]), abs=1e-12)
        assert (r["auc_ci_low"], r["auc_ci_high"]) == pytest.approx(
            stats.auc_interval(yy, p.to_numpy(), method="score")[1:], abs=1e-12)
        assert (r["auc_wald_ci_low"], r["auc_wald_ci_high"]) == pytest.approx(stats.auc_ci(yy, p.to_numpy())[1:],
                                                                              abs=1e-12)
        assert (r["internal_auc_ci_low"], r["internal_auc_ci_high"]) == pytest.approx(
            stats.auc_interval(ip["y"].to_numpy(), ip["p"].to_numpy(), method="score")[1:], abs=1e-12)
        assert r["ci_method"] == "Newcombe score"
        want = stats.unpaired_auc_test(yy, p.to_numpy(), ip["y"].to_numpy(), ip["p"].to_numpy(), n_boot=200)
        assert r["auc_difference"] == pytest.approx(want["difference"]) and r["auc_difference_p"] == pytest.approx(
            want["p_value"])
        assert r["cal_slope"] == pytest.approx(stats.calibration_slope_intercept(yy, p.to_numpy())["cal_slope"])
        ps.append(want["p_value"])
    assert list(t["n_not_graded"]) == [0, 1] and list(t["n_graded"]) == [20, 19]
    np.testing.assert_allclose(t["auc_difference_p_holm"], stats.adjust(ps, "holm"))
    md = (tmp_path / "t.md").read_text()
    assert "external validation on centre C" in md and "Holm" in md and "n_not_graded" in md
    assert (tmp_path / "f.png").stat().st_size > 10_000 and (tmp_path / "f.pdf").stat().st_size > 5_000
    assert len(pd.read_csv(tmp_path / "t.csv")) == 2
    assert labels == ["AUC (95% CI, Newcombe score)"] and "Newcombe's score interval" in md
    assert external.auc_axis_label({"mode": "paper"}) == "AUC (95% CI, DeLong Wald)"


def test_the_fusions_deep_block_on_an_external_patient_is_the_frozen_cells_embedding(demo_root, tmp_path):
    from ccgrade.deploy import external_deep

    cfg = derived()
    cfg["rois"]["box"]["size"] = 32
    d, net, _ = fake_cell(tmp_path / "c")
    cell = {"study": "sun", "roi": "box", "arch": "resnet18", "phases": "cmp", "variant": "base", "fold": 0, "seed": 1}
    bundle.export(d, tmp_path / "b", config=cfg, cell=cell, study="sun")
    _, vol = ingest_to(demo_root / "dicom" / "DEMO002", "DEMO002", tmp_path / "ing")
    src = patient_sources({"annotation_dir": str(demo_root / "annotations" / "DEMO002")}, PHASES)
    src = {ph: {"labelme": s["labelme"]} for ph, s in src.items()}
    hp = {"arch": "resnet18"}
    t = external_deep.deep_features(tmp_path / "b", d, hp, {"DEMO002": {"volumes": str(vol), "sources": src},
                                                            "GONE": {"volumes": str(tmp_path / "none"), "sources": {}}})
    assert list(t["patient_id"]) == ["DEMO002"] and t.shape[1] == 1 + 512  # the uncroppable patient has no row
    x = torch.from_numpy(bundle.load(tmp_path / "b").crops(vol, src, "DEMO002")["cmp"]["images"].astype(np.float32))
    net.eval()
    with torch.no_grad():
        want = models.embed(net, x).mean(dim=0).numpy()
    np.testing.assert_allclose(t.iloc[0, 1:].to_numpy(float), want, rtol=1e-5, atol=1e-5)
    untrained, _, _ = fake_cell(tmp_path / "u", trained=False)
    bundle.export(untrained, tmp_path / "ub", config=cfg, cell=cell, study="sun")
    assert external_deep.deep_features(tmp_path / "ub", untrained, hp, {}).empty
