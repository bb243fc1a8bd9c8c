"""The study registry (ccgrade.evaluate.studies): each kind's files, captions and builder in one entry, from which
the rules declare the tables jobs; a study of an existing kind is one config block."""

from __future__ import annotations

import subprocess
import sys
from importlib import import_module
from pathlib import Path

import yaml

from ccgrade.config.studyconfig import load_yaml, SCHEMA_DIR
from ccgrade.evaluate import studies
from conftest import REPO, repo_config


def test_every_kind_names_its_files_once_with_existing_captions():
    for name, kind in studies.REGISTRY.items():
        roles = [i.role for i in kind.items] + ([kind.heatmaps.role] if kind.heatmaps else [])
        assert len(roles) == len(set(roles)), name
        out = studies.outputs(name, name)
        assert len(set(out.values())) == len(out)  # no file twice
        for item in kind.items:
            assert (REPO / "workflow" / "report" / item.caption).is_file(), item.caption
            first, second = item.paths(name).values()
            assert first.endswith(".csv" if item.kind == "table" else ".png")
            assert second == first.rsplit(".", 1)[0] + (".md" if item.kind == "table" else ".pdf")
        module, function = kind.builder.split(".")  # the builder: a function of a module of ccgrade.evaluate
        assert studies.builder(name) is getattr(import_module(f"ccgrade.evaluate.{module}"), function)
    # the schema's enum of kinds is the registry's
    schema = load_yaml(SCHEMA_DIR / "config.schema.yaml")
    enum = schema["properties"]["training"]["properties"]["studies"]["additionalProperties"]["properties"]["kind"]["enum"]
    assert sorted(enum) == sorted(studies.REGISTRY)


def test_a_study_is_of_its_kind_or_named_after_one():
    got = studies.study_kinds({"cui": {}, "li": {}, "cui_ext": {"kind": "cui"}, "embeddings": {}, "sun": {}})
    assert got == {"cui": "cui", "li": "li", "cui_ext": "cui", "sun": "sun"}
    out = studies.outputs("cui", "cui_ext")
    assert out["t3"] == "results/tables/cui_ext_table3.csv" and out["t3_md"] == "results/tables/cui_ext_table3.md"
    assert studies.outputs("cui", "cui")["roc_pdf"] == "results/figures/cui_roc.pdf"  # the papers' names kept
    assert studies.report_items("cui", "cui_ext")["t3"]["label"] == ("Cui Table 3 (cui_ext)", "table")
    t = studies.targets("li", "li")
    assert t[-8:-6] == ["results/figures/li_heatmaps.png", "results/figures/li_heatmaps.pdf"]
    assert t[-6:] == ["results/tables/li_failures.csv", "results/tables/li_failures.md", "results/tables/li_error_rates.csv",
                      "results/tables/li_error_rates.md", "results/figures/li_failures.png", "results/figures/li_failures.pdf"]
    assert studies.report_items("li", "li")["error_rates"]["label"] == ("Failure analysis: error rates by subgroup (li)", "table")


def test_a_second_study_of_a_kind_is_one_config_block(tmp_path):
    """A fifth study (a Cui-kind study on the Dai window's centroid crops) needs only its config block: the
    dry run plans its cells and its tables job, writing the registry's files under its own name."""
    cfg = {"training": {"studies": {"cui_centroid": {"kind": "cui", "preset": "demo", "roi": "centroid",
                                                     "scheme": "cui", "seeds": [1],
                                                     "models": {"resnet34": ["cmp"]}}}}}
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).with_name("snakemake")
    r = subprocess.run([str(snakemake), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(REPO / "config.yaml"), str(tmp_path / "extra.yaml"), "-n",
                        "--cores", "1", "results/tables/cui_centroid_table3.csv"],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "rule cui_centroid_tables:" in out
    assert "results/models/cui_centroid/centroid/resnet34/cmp/base/fold0/seed1/predictions.tsv" in out
    assert "results/figures/cui_centroid_confusion.pdf" in out


def test_the_demo_config_trains_sun_on_each_roi_setting():
    from ccgrade.config import matrix

    cfg = repo_config()
    cells = matrix.cells(cfg, "sun")
    assert sorted(c["roi"] for c in cells) == ["box", "box5mm", "tumor"]
    assert {matrix.cell_dir(c) for c in cells} == {
        f"results/models/sun/{r}/resnet50/stack/base/fold0/seed1" for r in ("box", "tumor", "box5mm")}
    cfg["fusion"]["deep"].update(variant="base", seed=1)
    assert matrix.deep_cell(cfg)["roi"] == "box5mm"
    del cfg["fusion"]["deep"]["roi"]
    assert matrix.deep_cell(cfg)["roi"] == "box"  # the first setting the study trains the architecture on
