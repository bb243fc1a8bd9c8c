"""Whether a split design can say anything at this cohort's size (issue 29, item 9): the pre-flight's and
``ccgrade.plan.init``'s warning when a scheme's test patients hold too few of either grade group for a
sensitivity or specificity interval narrower than ``statistics.max_ci_width``, with the design that fits.

The expected width is the Wilson 95% interval's for a proportion of 0.8 among the test set's smaller grade
group (the group the sensitivity or specificity is estimated in), at the scheme's expected test size:
a holdout scheme's test fraction; a k-fold scheme's pooled out-of-fold predictions (every patient tested
once); leave-one-centre-out, each centre. A warning, not an error: a small pilot may be what the user wants."""

from __future__ import annotations

from ccgrade.config.studyconfig import model_schemes
from ccgrade.errors import Problem
from ccgrade.proportions import wilson

#: the proportion whose interval width is judged (a plausible sensitivity or specificity)
TYPICAL = 0.8


def wilson_width(events: float, level: float = 0.95, p: float = TYPICAL) -> float:
    """The width of the Wilson interval of a proportion ``p`` observed among ``events`` units (1.0 for none)."""
    if events < 1:
        return 1.0
    lo, hi = wilson(p * events, events, level)
    return hi - lo


def tested_groups(scheme: dict, n: int, n_high: int, centres: dict[str, tuple[int, int]]) -> list[tuple[str, float, float]]:
    """(what, expected high-grade, expected low-grade test patients) for one split scheme of ``n`` eligible
    patients of whom ``n_high`` are high grade; ``centres``: patients and high-grade patients per centre."""
    kind, low = scheme["kind"], n - n_high
    if kind == "holdout":
        fr = scheme.get("fractions", {})
        share = fr.get("test", 0) / max(sum(fr.values()), 1e-9)
        return [("its test set", n_high * share, low * share)] if share else []
    if kind == "kfold":
        return [(f"its {scheme['k']} folds pooled", float(n_high), float(low))]
    return [(f"centre {c}", float(h), float(t - h)) for c, (t, h) in sorted(centres.items())]


def design_problems(cfg: dict, n: int, n_high: int, centres: dict[str, tuple[int, int]]) -> list[Problem]:
    """A warning for each scheme the study trains, tests or fuses on whose test patients are too few (see the
    module's docstring), with the k-fold design that tests every patient once."""
    limit = float(cfg.get("statistics", {}).get("max_ci_width", 0.4))
    out = []
    for name in sorted(model_schemes(cfg)):
        sch = cfg["splits"]["schemes"].get(name)
        if sch is None or n < 2:
            continue
        for what, hi, lo in tested_groups(sch, n, n_high, centres):
            width = wilson_width(min(hi, lo))
            if width <= limit:
                continue
            pooled = wilson_width(min(n_high, n - n_high))
            out.append(Problem(
                "warning", f"split scheme {name}: {what} holds about {hi + lo:.0f} patients ({hi:.0f} high grade, "
                f"{lo:.0f} low): a sensitivity or specificity of 0.8 would have a 95% interval {width:.2f} wide "
                f"(statistics.max_ci_width {limit:g})", _better_design(name, sch, pooled, limit, len(centres)),
                scope="study"))
    return out + oof_problems(cfg, n, n_high)


def oof_problems(cfg: dict, n: int, n_high: int) -> list[Problem]:
    """An error when ``fusion.deep.oof_folds`` asks for more folds than the fusion's training patients of the
    smaller grade group can fill (each fold network needs both grades; ``fusion.oof.oof_split`` would refuse)."""
    import math

    fus = cfg.get("fusion", {})
    k = int((fus.get("deep") or {}).get("oof_folds", 0) or 0) if fus.get("enabled") else 0
    sch = cfg.get("splits", {}).get("schemes", {}).get(fus.get("scheme"), {})
    if k < 2 or sch.get("kind") != "holdout":
        return []
    fr = sch.get("fractions", {})
    share = 1 - fr.get("test", 0) / max(sum(fr.values()), 1e-9)
    fewest = math.floor(min(n_high, n - n_high) * share)
    if fewest >= k:
        return []
    fix = (f"set fusion.deep.oof_folds to {fewest} or fewer" if fewest >= 2 else "set fusion.deep.oof_folds: 0 (the "
           "embeddings' deep block, in sample)") + " or add patients"
    return [Problem("error", f"fusion.deep.oof_folds {k}: the fusion's training patients (split scheme "
                    f"{fus['scheme']}) hold about {fewest} of the smaller grade group, too few for {k} folds that "
                    "each hold out patients of both grades", fix, scope="study")]


def _better_design(name: str, scheme: dict, pooled: float, limit: float, n_centres: int) -> str:
    """The fix: the design that tests every patient once (when it is not the scheme already), and what it gives."""
    if pooled > limit:
        return (f"even with every patient tested once the interval would be {pooled:.2f} wide: add patients, or read "
                "the tables as a pilot's")
    fix = "" if scheme["kind"] == "kfold" else (
        f"test every patient once: splits.schemes.{name}: {{kind: kfold, k: 5}} (its pooled out-of-fold interval "
        f"would be {pooled:.2f} wide)")
    if n_centres >= 2:
        fix += ("; or " if fix else "") + "leave one centre out when each centre is large"
    return fix or "add patients"
