import pandas as pd
import yaml
import pytest

from ccgrade.config.cohort import analysis_cohort, has_images, load_cohort_sheet, parse_grade, patient_sources, validate_cohort
from ccgrade.config.studyconfig import validate_config
from ccgrade.errors import CohortError, ConfigError
from ccgrade.ingest import demo
from conftest import REPO, merged, repo_config


def test_repository_config_is_valid():
    validate_config(repo_config())


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["rois"]["box"].__setitem__("size", "big"), "rois.box.size"),
    (lambda c: c["demo"].__setitem__("n_patients", 1), "demo.n_patients"),
    (lambda c: c.__setitem__("typo_key", 1), "typo_key"),
    (lambda c: c["splits"]["schemes"]["cui"].__setitem__("kind", "random"), "splits.schemes.cui.kind"),
])
def test_config_errors_name_the_bad_key(mutate, key):
    cfg = repo_config()
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    assert key in str(e.value)


def test_cross_key_checks_name_the_key():
    cfg = repo_config()
    cfg["rois"]["box"]["window"] = "lung"
    with pytest.raises(ConfigError, match=r"rois\.box\.window.*lung"):
        validate_config(cfg)
    cfg = repo_config()
    cfg["stack"]["phases"] = ["cmp", "xp"]
    with pytest.raises(ConfigError, match=r"stack\.phases"):
        validate_config(cfg)


@pytest.mark.parametrize("raw, grade", [(1, 1), ("3", 3), ("G4", 4), ("g2", 2), ("III", 3), ("iv", 4),
                                        ("Grade 2", 2), ("ISUP 3", 3), (2.0, 2)])
def test_grade_spellings(raw, grade):
    assert parse_grade(raw, "P1") == grade


@pytest.mark.parametrize("raw", ["5", "X", 0, 2.5, "", None, "G5"])
def test_unknown_grade_names_patient_and_value(raw):
    with pytest.raises(CohortError) as e:
        parse_grade(raw, "P7", "sheet.tsv")
    assert "patient P7" in str(e.value) and "sheet.tsv" in str(e.value) and repr(raw) in str(e.value)


def _sheet(tmp_path, rows):
    p = tmp_path / "cohort.tsv"
    pd.DataFrame(rows).to_csv(p, sep="\t", index=False)
    return p


def test_duplicate_ids_rejected(tmp_path, cfg):
    (tmp_path / "a").mkdir()
    p = _sheet(tmp_path, [{"patient_id": "P1", "grade": 1, "dicom_dir": "a"}, {"patient_id": "P1", "grade": 3, "dicom_dir": "a"}])
    with pytest.raises(CohortError, match=r"cohort\.tsv: duplicate patient IDs \['P1'\]"):
        load_cohort_sheet(p, cfg)


def test_patient_without_images_named(tmp_path, cfg):
    (tmp_path / "a").mkdir()
    p = _sheet(tmp_path, [{"patient_id": "P1", "grade": 1, "dicom_dir": "a"}, {"patient_id": "P2", "grade": 4, "dicom_dir": "missing"}])
    with pytest.raises(CohortError) as e:
        load_cohort_sheet(p, cfg)
    assert "patient P2" in str(e.value) and "no images" in str(e.value)


def test_sheet_paths_resolved_and_groups(tmp_path, cfg):
    (tmp_path / "a").mkdir()
    p = _sheet(tmp_path, [{"patient_id": "P1", "grade": "G3", "dicom_dir": "a", "age": 60},
                          {"patient_id": "P2", "grade": "II", "dicom_dir": str(tmp_path / "a"), "age": 50}])
    df = load_cohort_sheet(p, cfg)
    assert df["grade"].tolist() == [3, 2] and df["grade_group"].tolist() == ["high", "low"]
    assert df["dicom_dir"].tolist() == [str(tmp_path / "a")] * 2


def test_bad_clinical_value_names_patient(cfg):
    df = pd.DataFrame([{"patient_id": "P9", "grade": 2, "dicom_dir": "x", "age": 300}])
    with pytest.raises(CohortError, match=r"P9.*age"):
        validate_cohort(df, cfg, check_paths=False)


def test_demo_draws_are_deterministic_and_plausible():
    d = dict(repo_config()["demo"], n_patients=400)
    a, b = demo.draw_cohort(d), demo.draw_cohort(d)
    pd.testing.assert_frame_equal(a, b)
    assert demo.draw_cohort(dict(d, n_patients=10)).equals(a.head(10))  # growing the cohort keeps patients
    high = a[a.grade >= 3]
    low = a[a.grade < 3]
    assert 0.3 < len(high) / len(a) < 0.5
    assert high.tumor_size_cm.mean() > low.tumor_size_cm.mean() + 0.7  # Cui: larger high-grade tumours
    assert set(a.centre) == {"A", "B"} and set(a.side) == {"left", "right"}


def test_contract_per_phase_sources_and_layout(tmp_path, cfg):
    ann = tmp_path / "ann" / "cmp"
    (ann / "labelme").mkdir(parents=True)
    (ann / "mask.nrrd").write_bytes(b"x")
    (tmp_path / "ct_np.nii.gz").write_bytes(b"x")
    (tmp_path / "rt.dcm").write_bytes(b"x")
    p = _sheet(tmp_path, [{"patient_id": "P1", "grade": "III", "annotation_dir": "ann", "image_np": "ct_np.nii.gz",
                           "rtstruct_np": "rt.dcm"}])
    df = load_cohort_sheet(p, cfg)
    src = patient_sources(df.iloc[0].to_dict(), ["cmp", "np"])
    assert src["cmp"] == {"mask": str(ann / "mask.nrrd"), "labelme": str(ann / "labelme")}
    assert src["np"] == {"image": str(tmp_path / "ct_np.nii.gz"), "rtstruct": str(tmp_path / "rt.dcm")}
    assert has_images(df.iloc[0].to_dict())


@pytest.mark.parametrize("row, message", [
    ({"image_cmp": "nope.nii.gz"}, r"patient P1, file .*cohort\.tsv: column image_cmp: '.*nope\.nii\.gz' does not exist"),
    ({"image_cmp": "."}, r"column image_cmp: .* is a folder; give DICOM as dicom_dir"),
    ({"labelme_cmp": "f.json", "mask_cmp": "f.json"}, r"column labelme_cmp: .* must be a folder"),
    ({"annotation_dir": "f.json", "mask_cmp": "f.json"}, r"annotation_dir .* is not a folder"),
    ({}, r"patient P1, .*no images: the patient has neither dicom_dir, an image_<phase> volume nor a mask_<phase>"),
])
def test_contract_errors_name_patient_and_file(tmp_path, cfg, row, message):
    (tmp_path / "f.json").write_text("{}")
    p = _sheet(tmp_path, [{"patient_id": "P1", "grade": 2, **row}])
    with pytest.raises(CohortError, match=message):
        load_cohort_sheet(p, cfg)


def test_mask_only_patient_is_valid(tmp_path, cfg):
    (tmp_path / "m.nii.gz").write_bytes(b"x")
    df = load_cohort_sheet(_sheet(tmp_path, [{"patient_id": "P1", "grade": 4, "mask_cmp": "m.nii.gz"}]), cfg)
    assert not has_images(df.iloc[0].to_dict())


def test_analysis_cohort_drops_paths_and_fills_side(cfg):
    sheet = validate_cohort(pd.DataFrame([
        {"patient_id": "P1", "grade": 2, "dicom_dir": "/secret/Smith_John", "side": "left"},
        {"patient_id": "P2", "grade": 4, "mask_cmp": "/secret/Doe_Jane/m.nii.gz"}]), cfg, check_paths=False)
    geo = pd.DataFrame({"patient_id": ["P1", "P2"], "volume_ml": [10.0, 20.0], "max_diameter_3d_mm": [30.0, 40.0],
                        "max_axial_diameter_mm": [28.0, 35.0], "side": ["right", "right"]})
    out = analysis_cohort(sheet, geo, ["side"])
    assert "dicom_dir" not in out and "mask_cmp" not in out
    assert not out.astype(str).apply(lambda c: c.str.contains("secret")).any().any()
    assert out["side"].tolist() == ["left", "right"] and out["side_source"].tolist() == ["sheet", "mask geometry"]
    assert out["mask_volume_ml"].tolist() == [10.0, 20.0]


def test_kits_config_validates_and_loco_is_not_applicable():
    from ccgrade.preprocess import splits

    cfg = merged(repo_config(), yaml.safe_load((REPO / "config" / "kits23.yaml").read_text()))
    validate_config(cfg)
    c = pd.DataFrame({"patient_id": [f"P{i}" for i in range(6)], "grade_group": ["low", "high"] * 3})
    assert splits.make_split(c, {"kind": "leave_one_centre_out"}, 1) == []


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["studies"]["cui"].update(preset="paper"), r"training.studies.cui.preset': no preset named 'paper'"),
    (lambda t: t["studies"]["cui"].update(roi="nope"), r"training.studies.cui.roi': no ROI setting named 'nope'"),
    (lambda t: t["studies"]["cui"].update(scheme="loco"), r"training.studies.cui.scheme': models train on holdout or"),
    (lambda t: t["studies"]["cui"].update(scheme="nope"), r"training.studies.cui.scheme': no split scheme named"),
    (lambda t: t["studies"]["li"]["models"].update(resnet18={"roi": "cube", "phases": ["np"]}),
     r"li.models.resnet18': resnet18 is 2D: 3D architectures go with the 'cube' ROI kind"),
    (lambda t: t["studies"]["li"]["models"].update(resnet50={"phases": ["np"]}),
     r"li.models.resnet50': no ROI setting"),
    (lambda t: t["studies"]["dai"].update(variants={"B-4": {"batch": 4}}), r"training.studies.dai.variants"),
    (lambda t: t["studies"]["dai"].update(variants={"b4": {"batch": 1}}), r"training.studies.dai.variants.b4.batch"),
    (lambda t: t["studies"]["cui"]["models"].update(resnet3d18=["cmp"]), r"resnet3d18 is 3D: 3D architectures go with the 'cube'"),
    (lambda t: t["studies"]["cui"].update(overrides={"resnet50": {"lr": 0.1}}), r"the study has no resnet50 model"),
    (lambda t: t["presets"]["demo"].update(lr=-1), r"training.presets.demo.lr"),
])
def test_training_config_errors_name_the_key(edit, message):
    cfg = repo_config()
    edit(cfg["training"])
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_columns_nobody_named_never_reach_the_analysis_cohort(cfg):
    sheet = validate_cohort(pd.DataFrame([
        {"patient_id": "P1", "grade": 2, "dicom_dir": "/x", "age": 61, "referring_doctor": "Dr Who", "mrn": "12345"}]),
        cfg, check_paths=False)
    out = analysis_cohort(sheet, None, ["age", "sex"])
    assert list(out.columns) == ["patient_id", "grade", "grade_group", "age"]


@pytest.mark.parametrize("column, message, fix", [
    ("mask_pv", r"column mask_pv: 'pv' is not a phase code", "rename the column to mask_np"),
    ("rtstruct_art", r"'art' is not a phase code", "rename the column to rtstruct_cmp"),
    ("msk_cmp", r"column 'msk_cmp' looks like a misspelt 'mask_cmp'", "rename the column to mask_cmp"),
    ("dicom_folder", r"column 'dicom_folder' looks like a misspelt 'dicom_dir'", "rename the column to dicom_dir"),
])
def test_misspelt_source_columns_are_errors_with_the_fix(tmp_path, cfg, column, message, fix):
    (tmp_path / "a").mkdir()
    p = _sheet(tmp_path, [{"patient_id": "P1", "grade": 2, "dicom_dir": "a", column: "x"}])
    with pytest.raises(CohortError, match=message) as e:
        load_cohort_sheet(p, cfg)
    assert fix in str(e.value)


def test_unknown_columns_warn_and_grades_as_text_or_numbers_read_alike(tmp_path, cfg):
    from ccgrade.config.cohort import cohort_problems, read_sheet

    (tmp_path / "a").mkdir()
    (tmp_path / "s.tsv").write_text("patient_id\tgrade\tdicom_dir\tward\n007\t2.0\ta\t3B\nNA\t3\ta\t4\n")
    (tmp_path / "s.csv").write_text('patient_id,grade,dicom_dir,center\n007,"2.0",a,X\nNA,"3.0",a,Y\n')
    a, b = load_cohort_sheet(tmp_path / "s.tsv", cfg), load_cohort_sheet(tmp_path / "s.csv", cfg)
    assert b["centre"].tolist() == ["X", "Y"]  # the American spelling of the site column
    assert a["patient_id"].tolist() == b["patient_id"].tolist() == ["007", "NA"]
    assert a["grade"].tolist() == b["grade"].tolist() == [2, 3]
    _, probs = cohort_problems(read_sheet(tmp_path / "s.tsv"), cfg, file="s.tsv", base=tmp_path)
    assert [p.level for p in probs] == ["warning"] and "column 'ward' is not part of the cohort contract" in probs[0].message


@pytest.mark.parametrize("body, message", [(b"", "the cohort sheet is empty"),
                                            (b"patient_id\tgrade\tdicom_dir\n", "the cohort sheet has a header .* but no patient rows")])
def test_empty_or_header_only_sheet_is_an_error_naming_the_file(tmp_path, cfg, body, message):
    (tmp_path / "cohort.tsv").write_bytes(body)
    with pytest.raises(CohortError, match=rf"file .*cohort\.tsv: {message}"):
        load_cohort_sheet(tmp_path / "cohort.tsv", cfg)


def test_every_sheet_error_is_listed_at_once(tmp_path, cfg):
    (tmp_path / "a").mkdir()
    p = _sheet(tmp_path, [{"patient_id": "P1", "grade": 7, "dicom_dir": "a"},
                          {"patient_id": "P 2", "grade": 2, "dicom_dir": "a"},
                          {"patient_id": "P3", "grade": 2, "dicom_dir": "nowhere"},
                          {"patient_id": "P4", "grade": 2, "dicom_dir": "a", "age": 300}])
    with pytest.raises(CohortError) as e:
        load_cohort_sheet(p, cfg)
    text = str(e.value)
    assert "4 problem(s)" in text
    for want in ("patient P1", "unknown grade value 7", "patient ID 'P 2'", "patient P3", "nowhere' is not a folder", "P4", "age"):
        assert want in text, want


def test_ids_too_long_differing_only_in_case_or_with_spaces_around_are_named(tmp_path, cfg):
    """A 300-character ID (it crashed at job time: 'File name too long'), IDs that share one folder on a
    case-insensitive file system, and an ID written ' 012 ' (read as '012', said so): one line each."""
    from ccgrade.config.cohort import cohort_problems, read_sheet

    (tmp_path / "a").mkdir()
    long_id = "L" * 300
    p = _sheet(tmp_path, [{"patient_id": long_id, "grade": 1, "dicom_dir": "a"},
                          {"patient_id": "A_1", "grade": 2, "dicom_dir": "a"},
                          {"patient_id": "a_1", "grade": 3, "dicom_dir": "a"},
                          {"patient_id": " 012 ", "grade": 4, "dicom_dir": "a"},
                          {"patient_id": "L" * 64, "grade": 4, "dicom_dir": "a"}])
    df, probs = cohort_problems(read_sheet(p), cfg, file=str(p), base=tmp_path)
    errors = [str(q) for q in probs if q.level == "error"]
    warnings = [str(q) for q in probs if q.level == "warning"]
    assert len(errors) == 2, errors
    assert any("is 300 characters long (at most 64" in e for e in errors)
    assert any("patient IDs ['A_1', 'a_1'] differ only in case" in e for e in errors)
    assert any("patient ID ' 012 ' has spaces around it: it is read as '012'" in w for w in warnings), warnings
    assert "012" in set(df["patient_id"])


def test_table_titles_name_the_cohorts_tumours_as_the_config_says():
    """Issue 27: the baseline title said 'ccRCC' for any cohort (a sarcoma cohort's too)."""
    from ccgrade.config.cohort import cohort_label

    assert cohort_label({"cohort": {"source": "demo", "label": None}}) == "ccRCC"
    assert cohort_label({"cohort": {"source": "kits"}}) == "ccRCC"
    assert cohort_label({"cohort": {"source": "sheet", "label": None}}) == "tumours"
    assert cohort_label({"cohort": {"source": "sheet", "label": "soft-tissue sarcomas"}}) == "soft-tissue sarcomas"
    from ccgrade.config.studyconfig import validate_config

    cfg = repo_config()
    cfg["cohort"]["label"] = "soft-tissue sarcomas"
    assert validate_config(cfg)["cohort"]["label"] == "soft-tissue sarcomas"
    cfg["cohort"]["label"] = "x" * 61
    with pytest.raises(ConfigError, match="cohort.label"):
        validate_config(cfg)
