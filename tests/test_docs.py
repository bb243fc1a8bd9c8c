"""The documentation in its place (issue 28): a short README that keeps its two commands, docs/ pages whose
relative links and anchors resolve, a configuration reference that is what the schema generates, and no
runaway lines. Fast, no network."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS, REPO / "benchmarks" / "README.md"]
MAX_README_LINES = 250
MAX_LINE = 400

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: inline links reduced to their text, lower case, every character
    but letters, digits, spaces, '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in " -_").replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 ... for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside code blocks and code spans."""
    out = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        out += LINK.findall(CODE_SPAN.sub("", line))
    return out


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move a topic into docs/"


def test_readme_keeps_its_two_commands():
    """benchmarks/bench_command1.py runs the line after '# 1.'; .ci/run runs the line after '# 2.'."""
    lines = README.read_text(encoding="utf-8").splitlines()
    i1 = next(i for i, line in enumerate(lines) if line.startswith("# 1."))
    i2 = next(i for i, line in enumerate(lines) if line.startswith("# 2."))
    assert lines[i1 - 1] == "```bash" and lines[i2 + 2] == "```"
    assert lines[i1 + 1].startswith("bash envs/setup.sh && .venv/bin/snakemake --cores 8 --resources gpu=1 && ")
    assert lines[i1 + 1].endswith(".venv/bin/snakemake --report results/report.html && "
                                  ".venv/bin/snakemake --cores 1 privacy_report")
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert lines[i2 + 1] == ci == "bash envs/setup.sh --test && .venv/bin/python -m pytest"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    bad = []
    for target in links(page):
        if re.match(r"^(https?:|mailto:)", target, re.I):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not bad, f"{page.relative_to(REPO)}:\n" + "\n".join(bad)


def test_every_docs_page_is_in_the_index():
    index = {Path(t.partition("#")[0]).name for t in links(REPO / "docs" / "README.md")}
    missing = [p.name for p in DOCS if p.name != "README.md" and p.name not in index]
    assert not missing, f"docs/README.md does not link {missing}"


def test_config_reference_is_current():
    ns = runpy.run_path(str(REPO / "workflow" / "scripts" / "config_reference.py"))
    problem = ns["check"]()
    assert not problem, problem


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_line_is_runaway(page):
    long = [(i, len(line)) for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            if len(line) > MAX_LINE]
    assert not long, f"{page.relative_to(REPO)}: lines over {MAX_LINE} characters (line, length): {long}"


def test_slug_is_githubs():
    assert slug("The cohort sheet (input contract)") == "the-cohort-sheet-input-contract"
    assert slug("README command 1 (`bench_command1.py`)") == "readme-command-1-bench_command1py"
    assert slug("Grade new patients: the `predict` target") == "grade-new-patients-the-predict-target"
    assert slug("`hyper_partial`") == "hyper_partial"
