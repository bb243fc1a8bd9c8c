"""Which ``ccgrade`` modules a stage's code depends on: its own module and, transitively, every module of
the package it imports (at the top or inside a function), read with ``ast`` rather than imported.

The rules list these files as inputs (``code("crops")``), so that editing ``rtstruct.py`` reruns every
stage that reads RTSTRUCTs through it, not only those whose own module changed. The package's
``__init__`` is not counted (it holds the version string only)."""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "ccgrade"


def imported_modules(source: str) -> set[str]:
    """The package modules one module's source imports: ``from . import a``, ``from .a import x``,
    ``from ccgrade import a``, ``from ccgrade.a import x`` and ``import ccgrade.a``, anywhere in it."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            inside = node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == PACKAGE)
            if not inside:
                continue
            parts = (node.module or "").split(".")
            if node.level == 0:
                parts = parts[1:]  # drop "ccgrade"
            if parts and parts[0]:
                out.add(parts[0])
            else:  # from . import a, b / from ccgrade import a, b
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith(PACKAGE + "."))
    return out


@lru_cache(maxsize=None)
def closure(src_dir: str, modules: tuple[str, ...]) -> tuple[str, ...]:
    """``modules`` and every package module they import, transitively (sorted names; cycles are fine;
    names that are not modules of ``src_dir``, such as a function imported from the package, are left out)."""
    src = Path(src_dir)
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        f = src / f"{m}.py"
        if m in seen or m == "__init__" or not f.is_file():
            continue
        seen.add(m)
        todo.extend(imported_modules(f.read_text(encoding="utf-8")) - seen)
    missing = [m for m in modules if m not in seen]
    if missing:
        raise ValueError(f"no module {', '.join(missing)} in {src}")
    return tuple(sorted(seen))


def code_files(src_dir: str | Path, *modules: str) -> list[str]:
    """The source files of ``modules`` and their import closure: a rule's ``code`` input."""
    return [str(Path(src_dir) / f"{m}.py") for m in closure(str(src_dir), tuple(modules))]


@lru_cache(maxsize=None)
def code_digest(src_dir: str | Path, *modules: str) -> str:
    """A digest of the source of ``modules`` and their import closure: a rule's ``code`` param. A changed
    param reruns the job as a changed input would (Snakemake's ``params`` rerun trigger), at the cost of one
    value per job rather than a dozen input files the scheduler stats at every step. Cached: a Snakefile parse
    hashes each stage's files once, however many rules name it."""
    h = hashlib.sha256()
    for f in code_files(src_dir, *modules):
        h.update(Path(f).name.encode() + b"\0" + Path(f).read_bytes() + b"\0")
    return h.hexdigest()[:16]
