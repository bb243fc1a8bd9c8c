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


def literal_closure(module: str) -> set[str]:
    """An independent reading: every import line of the package's files, by regular expression."""
    pat = re.compile(r"^\s*(?:from \.(\w*) import ([\w, ]+)|from ccgrade(?:\.(\w+))? import ([\w, ]+)|import ccgrade\.(\w+))",
                     re.M)
    mods = {p.stem for p in SRC.glob("*.py")} - {"__init__"}
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for g in pat.findall((SRC / f"{m}.py").read_text()):
            rel_mod, rel_names, abs_mod, abs_names, plain = g
            names = [rel_mod or abs_mod or plain] if (rel_mod or abs_mod or plain) else \
                [n.split(" as ")[0].strip() for n in (rel_names or abs_names).split(",")]
            todo += [n for n in names if n in mods]
    return seen


@pytest.mark.parametrize("module", ["crops", "geometry", "radiomics", "evaluate", "fusion", "train", "baseline",
                                    "ingest", "phiscan", "collect"])
def test_the_packages_closures_match_a_plain_reading_of_its_imports(module):
    assert set(deps.closure(str(SRC), (module,))) == literal_closure(module)


def test_stages_that_read_rtstructs_depend_on_the_reader():
    for m in ("crops", "geometry", "radiomics"):
        assert "rtstruct" in deps.closure(str(SRC), (m,)) and "annotations" in deps.closure(str(SRC), (m,))
    assert "rtstruct" not in deps.closure(str(SRC), ("ingest",)) and "stats" in deps.closure(str(SRC), ("baseline",))


def test_rules_name_only_modules_that_exist():
    for f in (REPO / "workflow/rules").glob("*.smk"):
        for call in re.findall(r'(?<!def )code\(([^)]*)\)', f.read_text()):
            for name in ast.literal_eval(f"[{call}]"):
                assert (SRC / f"{name}.py").is_file(), (f.name, name)
