"""The package's shape: stage subpackages in the order of ``ccgrade.STAGES``, no upward import, no cycle."""

from __future__ import annotations

import ast

import pytest

import ccgrade
from ccgrade import deps
from conftest import REPO

SRC = REPO / "workflow" / "src" / "ccgrade"


def modules() -> dict[str, ast.Module]:
    return {".".join(p.relative_to(SRC).with_suffix("").parts): ast.parse(p.read_text())
            for p in sorted(SRC.rglob("*.py")) if p.stem not in ("__init__", "__main__")}


def imports(tree: ast.Module, name: str) -> set[str]:
    """The package modules a module imports, anywhere in it (``deps``' reading, kept to real files)."""
    mods = set(modules_cache)
    return {m for m in deps.imported_modules(ast.unparse(tree), name) if m in mods} - {name}


modules_cache = modules()


def stage(module: str) -> int:
    """-1 for a foundation module, else the stage's rank in ``ccgrade.STAGES``."""
    return ccgrade.STAGES.index(module.split(".")[0]) if "." in module else -1


def test_every_subpackage_is_a_declared_stage_with_a_paragraph():
    found = {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert found == set(ccgrade.STAGES)
    for name in found:
        doc = ast.get_docstring(ast.parse((SRC / name / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 25, f"{name}/__init__.py: say what the stage takes and gives"
        assert (SRC / name / "__init__.py").read_text().count("import ") == 0, f"{name}/__init__.py imports"


@pytest.mark.parametrize("name", sorted(modules_cache))
def test_no_module_imports_a_higher_stage(name):
    upward = sorted(m for m in imports(modules_cache[name], name) if stage(m) > stage(name))
    assert not upward, f"{name} (stage {stage(name)}) imports higher stages: {upward}"


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> modules it imports), or [] when there is none."""
    state: dict[str, int] = {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (found := visit(m, path + [m])):
                return found
        state[n] = 2
        return []

    for n in sorted(graph):
        if n not in state and (found := visit(n, [n])):
            return found
    return []


def test_no_import_cycle():
    cycle = find_cycle({n: imports(t, n) for n, t in modules_cache.items()})
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_checks_can_fail():
    """A lower stage importing a higher one is seen as upward, and a planted cycle is found."""
    planted = ast.parse("def f():\n    from ccgrade.plan import preflight\n")
    assert imports(planted, "privacy.pseudonyms") == {"plan.preflight"}
    assert stage("plan.preflight") > stage("privacy.pseudonyms") > stage("errors")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


#: the longest function a reader can hold, and radon's rank F (cyclomatic complexity above 40)
MAX_LINES, MAX_COMPLEXITY = 80, 40


def long_or_complex(source: str) -> list[str]:
    """Every function or method of ``source`` over ``MAX_LINES`` lines or of rank F, as 'name (lines, CC)'."""
    from radon.complexity import cc_visit

    out = []
    for block in cc_visit(source):
        for f in [block] + list(getattr(block, "methods", [])):
            n = f.endline - f.lineno + 1
            is_function = not hasattr(f, "methods")  # a class is judged by its methods
            if is_function and (n > MAX_LINES or f.complexity > MAX_COMPLEXITY):
                out.append(f"{f.name} ({n} lines, complexity {f.complexity})")
    return out


def test_every_function_is_one_a_reader_can_hold():
    found = {name: bad for name in modules_cache
             if (bad := long_or_complex(SRC.joinpath(*name.split(".")).with_suffix(".py").read_text()))}
    assert not found, found


def test_the_size_check_can_fail():
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(41))
    assert long_or_complex(f"def f(x):\n{branches}") == ["f (83 lines, complexity 42)"]
    assert long_or_complex("class A:\n    def g(self):\n        return 1\n") == []
