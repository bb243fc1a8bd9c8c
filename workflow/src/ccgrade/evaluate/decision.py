"""Accuracy, calibration and decision statistics of predicted risks (beside ``stats``, which holds the
tests, intervals and calibration tests): the Brier score, a quantile calibration curve, the smoothed
calibration curve with its bootstrap band and error summaries as ``rms::val.prob`` reports them (ICI = Eavg,
E50, E90, Emax: Austin & Steyerberg, Stat Med 2019), and decision-curve net benefit with its treat-all
reference (Vickers & Elkin 2006), bootstrap intervals and net interventions avoided (Vickers et al. 2008)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 5) -> pd.DataFrame:
    """Observed fraction of high grade against mean predicted risk, in quantile bins."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    rows = [{"bin": i, "n": len(idx), "mean_predicted": float(p[idx].mean()), "observed": float(y[idx].mean())}
            for i, idx in enumerate(np.array_split(order, min(bins, len(y)))) if len(idx)]
    return pd.DataFrame(rows)


def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Decision-curve net benefit (Vickers & Elkin 2006): TP/n - FP/n * t / (1 - t), treating p >= t."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    n = len(y)
    out = []
    for t in thresholds:
        treat = p >= t
        tp, fp = int((treat & (y == 1)).sum()), int((treat & (y == 0)).sum())
        out.append(tp / n - fp / n * t / (1 - t))
    return np.array(out)


def treat_all(y: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    prev = float(np.mean(y))
    return prev - (1 - prev) * thresholds / (1 - thresholds)


def smoothed_calibration(y: np.ndarray, p: np.ndarray, at: np.ndarray | None = None, frac: float = 2 / 3
                         ) -> np.ndarray:
    """The observed risk as a smooth function of the predicted one, at ``at`` (default: ``p``): lowess of the
    outcomes on the predictions without robustness iterations, R's ``lowess(p, y, iter = 0)`` as
    ``rms::val.prob`` draws it (span 2/3; every point fitted, without R's ``delta`` interpolation shortcut)."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    y, p = np.asarray(y, float), np.asarray(p, float)
    xs = p if at is None else np.asarray(at, float)
    return np.clip(lowess(y, p, frac=frac, it=0, xvals=xs), 0.0, 1.0)


def calibration_errors(y: np.ndarray, p: np.ndarray) -> dict:
    """The absolute differences between predicted and smoothed observed risks over the patients: their mean
    (ICI, rms's Eavg), median (E50), 90th percentile (E90) and maximum (Emax)."""
    p = np.asarray(p, float)
    d = np.abs(p - smoothed_calibration(y, p))
    return {"ici": float(d.mean()), "e50": float(np.median(d)), "e90": float(np.quantile(d, 0.9)),
            "emax": float(d.max())}


def _resamples(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_units, size=(n_boot, n_units))


def calibration_band(y: np.ndarray, p: np.ndarray, grid: np.ndarray, n_boot: int = 500, seed: int = 0,
                     level: float = 0.95) -> pd.DataFrame:
    """The smoothed calibration curve on ``grid`` with its percentile bootstrap band (patients resampled,
    seeded); grid points outside a resample's range of predictions are left out of that resample."""
    y, p, grid = np.asarray(y, float), np.asarray(p, float), np.asarray(grid, float)
    draws = np.full((n_boot, len(grid)), np.nan)
    for b, idx in enumerate(_resamples(len(y), n_boot, seed)):
        if 0 < y[idx].sum() < len(idx):
            inside = (grid >= p[idx].min()) & (grid <= p[idx].max())
            draws[b, inside] = smoothed_calibration(y[idx], p[idx], grid[inside])
    a = (1 - level) / 2
    with np.errstate(all="ignore"):
        lo, hi = np.nanquantile(draws, a, axis=0), np.nanquantile(draws, 1 - a, axis=0)
    return pd.DataFrame({"predicted": grid, "observed": smoothed_calibration(y, p, grid), "low": lo, "high": hi})


def net_benefit_ci(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray, n_boot: int = 500, seed: int = 0,
                   level: float = 0.95) -> pd.DataFrame:
    """Net benefit at each threshold with its percentile bootstrap interval (patients resampled, seeded), and
    the net interventions avoided per 100 patients against treating all: (NB - NB_all) (1 - t) / t x 100."""
    y, p, t = np.asarray(y, int), np.asarray(p, float), np.asarray(thresholds, float)
    draws = np.array([net_benefit(y[i], p[i], t) for i in _resamples(len(y), n_boot, seed)])
    a = (1 - level) / 2
    nb, all_ = net_benefit(y, p, t), treat_all(y, t)
    return pd.DataFrame({"threshold": t, "net_benefit": nb, "nb_low": np.quantile(draws, a, axis=0),
                         "nb_high": np.quantile(draws, 1 - a, axis=0), "treat_all": all_,
                         "interventions_avoided_per_100": (nb - all_) * (1 - t) / t * 100})
