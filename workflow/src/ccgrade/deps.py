"""Which ``ccgrade`` modules a stage's code depends on: its own module and, transitively, every module of
the package it imports (at the top or inside a function), read with ``ast`` rather than imported.

Modules are named by their dotted path below the package (``preprocess.crops``). The rules list these
files' digest as a param (``code("preprocess.crops")``), so that editing ``annotations/rtstruct.py`` reruns
every stage that reads RTSTRUCTs through it, not only those whose own module changed. Package
``__init__`` files are not counted (they hold a docstring, the version and the phase names only)."""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "ccgrade"


def _absolute(node: ast.ImportFrom, module: str) -> str | None:
    """The dotted name below the package that an import-from names, or None when it is outside it."""
    if node.level:
        base = module.split(".")[: -node.level] if module else []
        return ".".join(base + ([node.module] if node.module else []))
    parts = (node.module or "").split(".")
    return ".".join(parts[1:]) if parts[0] == PACKAGE else None


def imported_modules(source: str, module: str = "") -> set[str]:
    """Candidate package modules one module's source imports (``module`` is its own dotted name, for
    relative imports): for ``from ccgrade.a import x`` both ``a`` and ``a.x`` (``x`` may be a module or a
    function; ``closure`` keeps the names that are files), for ``import ccgrade.a.b`` the name ``a.b``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            if base is None:
                continue
            if base:
                out.add(base)
            out.update(f"{base}.{a.name}" if base else a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith(PACKAGE + "."))
    return out


def _file(src: Path, module: str) -> Path:
    return src.joinpath(*module.split(".")).with_suffix(".py")


@lru_cache(maxsize=None)
def closure(src_dir: str, modules: tuple[str, ...]) -> tuple[str, ...]:
    """``modules`` and every package module they import, transitively (sorted dotted names; cycles are
    fine; names that are not module files of ``src_dir``, such as a function imported from the package or
    a subpackage's ``__init__``, are left out)."""
    src = Path(src_dir)
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        f = _file(src, m)
        if m in seen or m.split(".")[-1] == "__init__" or not f.is_file():
            continue
        seen.add(m)
        todo.extend(imported_modules(f.read_text(encoding="utf-8"), m) - seen)
    missing = [m for m in modules if m not in seen]
    if missing:
        raise ValueError(f"no module {', '.join(missing)} in {src}")
    return tuple(sorted(seen))


def code_files(src_dir: str | Path, *modules: str) -> list[str]:
    """The source files of ``modules`` and their import closure: a rule's ``code`` input."""
    return [str(_file(Path(src_dir), m)) for m in closure(str(src_dir), tuple(modules))]


@lru_cache(maxsize=None)
def code_digest(src_dir: str | Path, *modules: str) -> str:
    """A digest of the source of ``modules`` and their import closure: a rule's ``code`` param. A changed
    param reruns the job as a changed input would (Snakemake's ``params`` rerun trigger), at the cost of one
    value per job rather than a dozen input files the scheduler stats at every step. Cached: a Snakefile parse
    hashes each stage's files once, however many rules name it."""
    h = hashlib.sha256()
    for m, f in zip(closure(str(src_dir), modules), code_files(src_dir, *modules)):
        h.update(m.encode() + b"\0" + Path(f).read_bytes() + b"\0")
    return h.hexdigest()[:16]
