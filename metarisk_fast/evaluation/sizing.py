"""Volatility-targeted positions from variance forecasts, and the backtest of how close they keep
each asset to its target: the portfolio sizing the report, the trading baselines and the
backtest adapters share."""
from __future__ import annotations

import numpy as np

from .risk import ANNUAL


def vol_target_weights(variance, target_annual=0.10, max_leverage=10.0) -> np.ndarray:
    """Weights that scale each asset to ``target_annual`` volatility: target daily vol / forecast
    vol, capped at ``max_leverage`` (NaN where the variance is NaN)."""
    return np.minimum(target_annual / np.sqrt(ANNUAL) / np.sqrt(variance), max_leverage)


def vol_target_backtest(returns_next, variance, asset, target_annual=0.10, max_leverage=10.0) -> dict:
    """Scale each asset to ``target_annual`` volatility with the forecasts: weight_t =
    target_daily / forecast vol, position return weight_t * r_{t+1}. Realised volatility is
    averaged over assets.

    Parameters
    ----------
    returns_next : numpy.ndarray
        (M,) the next day's log return of each forecast.
    variance : numpy.ndarray
        (M,) the forecast variances.
    asset : numpy.ndarray
        (M,) each forecast's asset.
    target_annual : float
        The target annualised volatility.
    max_leverage : float
        The cap on the weight.

    Returns
    -------
    dict
        target, realised_vol (annualised, averaged over assets), gap, abs_gap (the mean per-asset
        absolute gap), turnover (the mean absolute weight change a day).
    """
    w = vol_target_weights(variance, target_annual, max_leverage)
    vols, turns = [], []
    for j in np.unique(asset):
        sel = asset == j
        pnl = w[sel] * returns_next[sel]
        vols.append(np.std(pnl, ddof=1) * np.sqrt(ANNUAL))
        turns.append(np.mean(np.abs(np.diff(w[sel]))) if sel.sum() > 1 else 0.0)
    vol = float(np.mean(vols))
    return {"target": target_annual, "realised_vol": vol, "gap": vol - target_annual,
            "abs_gap": float(np.mean(np.abs(np.array(vols) - target_annual))), "turnover": float(np.mean(turns))}
