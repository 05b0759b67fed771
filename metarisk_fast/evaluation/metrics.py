"""Forecast losses and comparison tests for variance forecasts.

s: the realised variance proxy, h: the variance forecast, both in variance units.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


def _pair(s, h):
    s, h = np.asarray(s, dtype=np.float64), np.asarray(h, dtype=np.float64)
    if s.shape != h.shape:
        raise ValueError(f"proxy and forecast shapes differ: {s.shape} vs {h.shape}")
    if np.any(h <= 0):
        raise ValueError("variance forecasts must be > 0")
    if np.any(s < 0):
        raise ValueError("the variance proxy must be >= 0")
    return s, h


def mean_interval(x, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): the mean of the values x and its Student-t interval (NaN bounds for
    fewer than two values)."""
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def qlike(s, h):
    """QLIKE = s/h - ln(s/h) - 1 (Patton 2011), 0 at a perfect forecast; needs s > 0.

    Parameters
    ----------
    s : array_like
        Realised variance proxies (squared log-return units).
    h : array_like
        Forecast variances, shaped like ``s``, positive.

    Returns
    -------
    numpy.ndarray
        The loss of each forecast, shaped like ``s``.
    """
    s, h = _pair(s, h)
    if np.any(s == 0):
        raise ValueError("QLIKE in the s/h - ln(s/h) - 1 form needs s > 0; use qlike_log where the proxy can be 0")
    x = s / h
    return x - np.log(x) - 1.0


def qlike_log(s, h):
    """QLIKE in the form ln h + s/h: same ranking as qlike, defined for a zero proxy.

    Parameters
    ----------
    s : array_like
        Realised variance proxies (squared log-return units).
    h : array_like
        Forecast variances, shaped like ``s``, positive.

    Returns
    -------
    numpy.ndarray
        The loss of each forecast, shaped like ``s``.
    """
    s, h = _pair(s, h)
    return np.log(h) + s / h


def squared_error(s, h):
    """Elementwise (s - h)^2 of realised variances s and forecasts h (MSE's terms)."""
    s, h = _pair(s, h)
    return (s - h) ** 2


@dataclass(frozen=True)
class TestResult:
    statistic: float
    pvalue: float

    def as_dict(self):
        """{'statistic', 'pvalue'} as plain floats (for JSON)."""
        return {"statistic": float(self.statistic), "pvalue": float(self.pvalue)}


def diebold_mariano(loss_a, loss_b, horizon: int = 1) -> TestResult:
    """Diebold-Mariano test of equal expected loss with the Harvey-Leybourne-Newbold (1997)
    small-sample correction; statistic < 0 means model a has the lower loss. Two-sided p-value
    from Student t with T - 1 degrees of freedom.

    Parameters
    ----------
    loss_a, loss_b : array_like
        (T,) the two models' losses on the same forecasts (non-finite pairs left out).
    horizon : int
        Days ahead of the forecasts (the autocovariances counted: horizon - 1).

    Returns
    -------
    TestResult
        The statistic (< 0: model a has the lower loss) and its two-sided p-value.
    """
    d = np.asarray(loss_a, np.float64) - np.asarray(loss_b, np.float64)
    d = d[np.isfinite(d)]
    T = d.size
    if T < 3:
        raise ValueError(f"Diebold-Mariano needs at least 3 loss differentials, got {T}")
    dc = d - d.mean()
    lrv = dc @ dc / T
    for k in range(1, horizon):
        lrv += 2 * (dc[k:] @ dc[:-k]) / T
    if lrv <= 0:
        return TestResult(0.0 if d.mean() == 0 else np.sign(d.mean()) * np.inf, 1.0 if d.mean() == 0 else 0.0)
    dm = d.mean() / np.sqrt(lrv / T)
    hln = np.sqrt((T + 1 - 2 * horizon + horizon * (horizon - 1) / T) / T)
    stat = hln * dm
    return TestResult(stat, 2 * stats.t.sf(abs(stat), df=T - 1))


def mincer_zarnowitz(s, h, lags: int | None = None) -> dict:
    """Regress s on a + b h with Newey-West (HAC) errors; Wald test of a = 0, b = 1.

    Parameters
    ----------
    s : array_like
        Realised variance proxies (squared log-return units).
    h : array_like
        Forecast variances, shaped like ``s``, positive.
    lags : int, optional
        HAC lags (default: floor(4 (T / 100)^(2/9))).

    Returns
    -------
    dict
        alpha, beta, their standard errors alpha_se and beta_se, r2, wald (the statistic),
        pvalue, hac_lags.
    """
    import statsmodels.api as sm

    s, h = _pair(s, h)
    lags = int(lags if lags is not None else np.floor(4 * (len(s) / 100) ** (2 / 9)))
    res = sm.OLS(s, sm.add_constant(h)).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    wald = res.wald_test((np.eye(2), np.array([0.0, 1.0])), scalar=True)
    return {"alpha": float(res.params[0]), "beta": float(res.params[1]),
            "alpha_se": float(res.bse[0]), "beta_se": float(res.bse[1]), "r2": float(res.rsquared),
            "wald": float(wald.statistic), "pvalue": float(wald.pvalue), "hac_lags": lags}


def model_confidence_set(losses: pd.DataFrame, size: float = 0.10, reps: int = 1000, seed: int = 0,
                         block_size: int | None = None) -> pd.Series:
    """The Hansen-Lunde-Nason Model Confidence Set (arch's implementation).

    Parameters
    ----------
    losses : pandas.DataFrame
        (T, models) losses; rows with a NaN are left out.
    size : float
        The test size: models with a p-value above it are in the set.
    reps : int
        Bootstrap replications.
    seed : int
        The bootstrap's seed.
    block_size : int, optional
        The block bootstrap's block length (default: T^(1/3), at least 2).

    Returns
    -------
    pandas.Series
        The MCS p-value of each model (index: the columns of ``losses``).
    """
    from arch.bootstrap import MCS

    losses = losses.dropna()
    mcs = MCS(losses, size=size, reps=reps, block_size=block_size or max(2, int(len(losses) ** (1 / 3))),
              seed=seed)
    mcs.compute()
    return mcs.pvalues["Pvalue"].reindex(losses.columns)
