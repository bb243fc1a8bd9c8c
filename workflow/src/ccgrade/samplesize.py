"""The minimum sample size to develop a prediction model of a binary outcome (TRIPOD+AI item 7): the three
criteria of Riley et al. (BMJ 2020;368:m441), as R's ``pmsampsize`` computes them for ``type = "b"``.

With ``p`` candidate predictor parameters, outcome proportion ``phi`` and an anticipated Cox-Snell R² ``r2``:

1. expected uniform shrinkage of the predictor effects at least ``S`` (0.9):
   n = p / ((S - 1) ln(1 - r2 / S));
2. a small difference (``delta`` 0.05) between the apparent and adjusted Nagelkerke R²:
   S = r2 / (r2 + delta max_r2), then the same formula, where max_r2 = 1 - exp(2 (phi ln phi + (1 - phi) ln(1 - phi)));
3. the overall risk estimated within ``margin`` (0.05): n = (1.96 / margin)² phi (1 - phi).

The sample size is the largest, rounded up. Without an anticipated R², Riley et al. suggest a conservative 15%
of max_r2 (what this module assumes, and says so)."""

from __future__ import annotations

import math

#: the share of the largest possible Cox-Snell R² assumed when none is anticipated (Riley et al. 2020)
CONSERVATIVE_SHARE = 0.15


def max_r2_cs(phi: float) -> float:
    """The largest Cox-Snell R² a binary outcome with proportion ``phi`` allows."""
    return 1 - math.exp(2 * (phi * math.log(phi) + (1 - phi) * math.log(1 - phi)))


def _shrinkage_n(p: int, r2: float, s: float) -> float:
    return p / ((s - 1) * math.log(1 - r2 / s))


def riley_binary(phi: float, parameters: int, r2_cs: float | None = None, shrinkage: float = 0.9,
                 delta: float = 0.05, margin: float = 0.05) -> dict:
    """Riley et al.'s three criteria and the sample size they require (see the module's docstring): the
    criteria's sizes, ``n`` (the largest, rounded up), its events and events per parameter, the R² used and
    whether it was assumed (15% of the largest possible)."""
    if not 0 < phi < 1 or parameters < 1:
        raise ValueError("the outcome proportion must lie in (0, 1) and the parameters be 1 or more")
    mx = max_r2_cs(phi)
    assumed = r2_cs is None
    r2 = CONSERVATIVE_SHARE * mx if assumed else float(r2_cs)
    s_small_optimism = r2 / (r2 + delta * mx)
    crit = {"shrinkage": _shrinkage_n(parameters, r2, shrinkage),
            "optimism": _shrinkage_n(parameters, r2, s_small_optimism),
            "overall_risk": (1.96 / margin) ** 2 * phi * (1 - phi)}  # (1.96: as pmsampsize)
    sizes = {k: math.ceil(v - 1e-9) for k, v in crit.items()}
    n = max(sizes.values())
    events = n * phi
    return {"criteria": sizes, "n": n, "events": math.ceil(events - 1e-9), "epp": events / parameters, "r2_cs": r2,
            "max_r2_cs": mx, "assumed_r2": assumed, "shrinkage": max(shrinkage, s_small_optimism)}
