"""Accuracy, calibration and decision statistics of predicted risks (beside ``stats``, which holds the
tests, intervals and calibration tests): the Brier score, a quantile calibration curve, and decision-curve
net benefit with its treat-all reference (Vickers & Elkin 2006)."""

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
