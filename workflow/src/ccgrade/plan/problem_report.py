"""The pre-flight report's text: a summary line (patients, phases, studies, how RTSTRUCT contours link), then
every problem of a plan, errors first, each with its fix; the console shows the first ones and the full list is
written to ``FULL_REPORT`` (beside the survey cache, outside ``results/``: it names files).
"""

from __future__ import annotations

from pathlib import Path

from ccgrade.plan.survey import CACHE

#: where the full list of problems is written (the console shows the first ``limit``)
FULL_REPORT = CACHE.parent / "preflight.txt"


def report(p, limit: int = 60) -> str:
    """The pre-flight report of ``p`` (a ``preflight.Plan``): a summary line, then every problem (errors
    first), each with its fix."""
    cfg = p.config
    n = len(p.cohort)
    studies = ", ".join(cfg.get("training", {}).get("studies", {})) or "none"
    head = (f"ccgrade pre-flight: {n} patients ({cfg.get('cohort', {}).get('source', '?')}), phases "
            f"{cfg['phases'] if isinstance(cfg.get('phases'), list) else '?'}, studies: {studies}")
    order = {"error": 0, "warning": 1, "skipped": 2}
    probs = sorted(p.problems, key=lambda x: order.get(x.level, 3))
    counts = {lv: sum(x.level == lv for x in probs) for lv in order}
    lines = [head]
    links = p.facts.get("links") or {}
    if links:
        lines.append("  RTSTRUCTs: contours linked to slices by " + ", ".join(
            f"{'plane position' if k == 'position' else 'SOP UID' if k == 'uid' else k} ({v})"
            for k, v in sorted(links.items())) + " (rtstruct_link: " + str(cfg.get("rtstruct_link", "auto")) + ")")
    if probs:
        lines.append("  " + ", ".join(f"{v} {k}" + ("s" if v != 1 and k != "skipped" else "")
                                      for k, v in counts.items() if v))
    for x in probs[:limit]:
        lines.append("  " + str(x).replace("\n", "\n  "))
    if len(probs) > limit:
        lines.append(f"  ... and {len(probs) - limit} more (the full list: {FULL_REPORT})")
    if counts["error"]:
        lines.append(f"{counts['error']} error(s): nothing was run. Fix them and run again (what is already computed "
                     "is kept).")
    return "\n".join(lines)


def write_full(p, path: Path) -> None:
    """The report with every problem, written to ``path`` (a best effort: a folder that cannot be written to
    loses the file, not the run)."""
    try:
        from ccgrade.outputs import write_text

        write_text(path, report(p, limit=10**9) + "\n")
    except OSError:
        pass
