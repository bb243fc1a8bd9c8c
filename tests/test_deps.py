"""A stage's code inputs: its module and the package modules it imports, transitively (ccgrade.deps)."""

from __future__ import annotations

import ast
import re

import pytest

from ccgrade import deps
from conftest import REPO

SRC = REPO / "workflow" / "src" / "ccgrade"


def test_every_kind_of_import_is_followed(tmp_path):
    (tmp_path / "__init__.py").write_text("__version__ = '1'\n")
    (tmp_path / "a.py").write_text("from . import b\nfrom .c import thing\n\n\ndef f():\n    import ccgrade.d\n")
    (tmp_path / "b.py").write_text("from ccgrade import e as ee, thing_not_a_module\nimport numpy\n")
    (tmp_path / "c.py").write_text("from ccgrade.a import f  # a cycle\nthing = 1\n")
    (tmp_path / "d.py").write_text("")
    (tmp_path / "e.py").write_text("from os import path\n")
    (tmp_path / "lonely.py").write_text("")
    assert deps.closure(str(tmp_path), ("a",)) == ("a", "b", "c", "d", "e")
    assert deps.closure(str(tmp_path), ("e",)) == ("e",)
    assert deps.code_files(tmp_path, "d") == [str(tmp_path / "d.py")]
    with pytest.raises(ValueError, match="no module nothere"):
        deps.closure(str(tmp_path), ("nothere",))


def module_names() -> set[str]:
    return {".".join(p.relative_to(SRC).with_suffix("").parts) for p in SRC.rglob("*.py")
            if p.stem not in ("__init__", "__main__")}


def literal_closure(module: str) -> set[str]:
    """An independent reading: every import line of the package's files, by regular expression (the package
    imports itself absolutely: ``from ccgrade.a.b import x``, ``from ccgrade.a import b``, names in parentheses
    over several lines too)."""
    pat = re.compile(r"^\s*(?:from ccgrade((?:\.\w+)*) import (?:\(([^)]*)\)|([\w, ]+))|import ccgrade\.([\w.]+))",
                     re.M)
    mods = module_names()
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for base, in_parens, names, plain in pat.findall(SRC.joinpath(*m.split(".")).with_suffix(".py").read_text()):
            base, names = base.lstrip("."), in_parens or names
            cands = [plain] if plain else [base] + [".".join(filter(None, [base, n.split(" as ")[0].strip()]))
                                                    for n in names.split(",")]
            todo += [c for c in cands if c in mods]
    return seen


@pytest.mark.parametrize("module", ["preprocess.crops", "preprocess.geometry", "fusion.radiomics", "evaluate.tables",
                                    "evaluate.li", "evaluate.studies",
                                    "fusion.model", "learn.train", "evaluate.baseline", "ingest.patient",
                                    "report.phiscan", "preprocess.collect", "plan.preflight",
                                    "plan.survey"])
def test_the_packages_closures_match_a_plain_reading_of_its_imports(module):
    assert set(deps.closure(str(SRC), (module,))) == literal_closure(module)


def test_subpackage_modules_and_relative_imports_are_followed(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "__init__.py").write_text('"""a stage"""\n')
    (tmp_path / "p" / "a.py").write_text("from ..q import b\nfrom . import c\n")
    (tmp_path / "p" / "c.py").write_text("from ccgrade.q.b import thing\n")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "b.py").write_text("thing = 1\n")
    assert deps.closure(str(tmp_path), ("p.a",)) == ("p.a", "p.c", "q.b")
    assert deps.code_files(tmp_path, "q.b") == [str(tmp_path / "q" / "b.py")]


def test_stages_that_read_rtstructs_depend_on_the_reader():
    for m in ("preprocess.crops", "preprocess.geometry", "fusion.radiomics"):
        closure = deps.closure(str(SRC), (m,))
        assert "annotations.rtstruct" in closure and "annotations.readers" in closure
    assert "annotations.rtstruct" not in deps.closure(str(SRC), ("ingest.patient",))
    assert "stats" in deps.closure(str(SRC), ("evaluate.baseline",))


def test_rules_name_only_modules_that_exist():
    for f in (REPO / "workflow/rules").glob("*.smk"):
        for call in re.findall(r'(?<!def )code\(([^)]*)\)', f.read_text()):
            for name in ast.literal_eval(f"[{call}]"):
                assert name in module_names(), (f.name, name)
