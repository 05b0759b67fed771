"""The baselines a practitioner would otherwise use: RiskMetrics EWMA, HAR and log-HAR by rolling
least squares, GARCH(1,1)-t and GJR-GARCH(1,1)-t through ``arch``. Each forecast at t uses data up
to t only (tests/test_forecasters.py perturbs the data after t)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .forecasters import Forecaster


@dataclass
class EWMAForecaster(Forecaster):
    """RiskMetrics: s_t = lam s_{t-1} + (1 - lam) r_t^2, the forecast for every day ahead.

    Parameters
    ----------
    lam : float
        The decay in (0, 1).
    name : str
        The forecaster's name in reports.
    """

    lam: float = 0.94
    name: str = "ewma"

    def predict(self, builder, asset, rows):
        return builder.ewma(self.lam)[rows, asset]


def _har_design(r2: np.ndarray) -> np.ndarray:
    """HAR regressors at each row: [1, RV_d, RV_w (5 days), RV_m (22 days)] from squared returns."""
    T = r2.shape[0]
    c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(r2))])
    X = np.full((T, 4), np.nan)
    X[:, 0] = 1.0
    X[:, 1] = r2
    for k, w in ((2, 5), (3, 22)):
        X[w - 1:, k] = (c[w:] - c[:-w]) / w
    X[:22] = np.nan
    return X


@dataclass
class HARForecaster(Forecaster):
    """HAR (Corsi 2009) by rolling least squares: RV_{t+1..t+h} on daily, weekly and monthly
    realised variance; refit every ``refit`` days on the last ``window`` days whose targets are
    realised. ``log=True`` fits log-HAR (variances floored at 1 % of the median positive squared
    return up to the refit date, so zero returns do not dominate) and corrects the
    retransformation bias with Duan's smearing factor mean(exp(residual)).

    Parameters
    ----------
    log : bool
        Fit log-HAR instead of HAR.
    window : int
        Days of each fit.
    refit : int
        Days between fits.
    name : str
        The forecaster's name in reports.
    """

    log: bool = False
    window: int = 1000
    refit: int = 21
    name: str = "har"

    def predict(self, builder, asset, rows):
        h = builder.spec.horizon
        out = np.full(len(asset), np.nan)
        for j in np.unique(asset):
            sel = np.flatnonzero(asset == j)
            r2 = builder.returns[:, j] ** 2
            X_raw = _har_design(r2)
            y_raw = builder.y[:, j]  # the evaluated proxy
            t_sel = rows[sel]
            positive = np.where(r2 > 0, r2, np.nan)
            for t0 in range(t_sel.min(), t_sel.max() + 1, self.refit):  # one fit per refit block
                lo = max(0, t0 - h - self.window)
                fit_rows = np.arange(lo, t0 - h)  # targets realised by t0 - 1
                block = sel[(t_sel >= t0) & (t_sel < t0 + self.refit)]
                X_fit, y_fit, X_new = X_raw[fit_rows], y_raw[fit_rows], X_raw[rows[block]]
                if self.log:
                    past = positive[: t0 + 1]
                    if not np.isfinite(past).any():
                        continue
                    floor = 0.01 * np.nanmedian(past)  # from returns up to the refit date only
                    X_fit, X_new = (np.column_stack([X[:, :1], np.log(np.maximum(X[:, 1:], floor))])
                                    for X in (X_fit, X_new))
                    y_fit = np.log(np.maximum(y_fit, floor))
                ok = np.isfinite(X_fit).all(1) & np.isfinite(y_fit)
                if ok.sum() < 50:
                    continue
                A, b = X_fit[ok], y_fit[ok]
                beta, *_ = np.linalg.lstsq(A, b, rcond=None)
                pred = X_new @ beta
                if self.log:
                    pred = np.exp(pred) * np.mean(np.exp(b - A @ beta))
                out[block] = pred
        return np.where(out > 0, out, np.nan)  # a linear HAR can go negative: no forecast there


@dataclass
class GARCHForecaster(Forecaster):
    """GARCH(1,1) or GJR-GARCH(1,1) with Student-t errors through ``arch``: refit every
    ``refit`` days on the last ``window`` observed returns up to the refit date (warm-started from
    the previous fit), filter forward with fixed parameters in between. Missing returns (NaN in the
    bridged series: before listing, inside a long gap) are left out of the series, so whether a
    forecast at t exists depends on returns up to t only. Convergence failures are counted.

    Parameters
    ----------
    gjr : bool
        GJR-GARCH (an asymmetric term for negative returns) instead of GARCH.
    window : int
        Returns of each fit.
    refit : int
        Days between fits.
    min_fit : int
        Returns an asset needs before its first fit (no forecast before).
    name : str
        The forecaster's name in reports.
    progress : bool
        Show a progress bar over the assets.
    failures : int
        Fits that did not converge so far (counted by ``predict``).
    fits : int
        Fits so far (counted by ``predict``).
    """

    gjr: bool = False
    window: int = 2000
    refit: int = 63
    min_fit: int = 250
    name: str = "garch"
    progress: bool = False
    failures: int = 0
    fits: int = 0

    def predict(self, builder, asset, rows):
        from arch import arch_model

        h = builder.spec.horizon
        out = np.full(len(asset), np.nan)
        jobs = []
        for j in np.unique(asset):
            sel = np.flatnonzero(asset == j)
            t_sel = rows[sel]
            jobs += [(j, sel, t_sel, t0) for t0 in range(t_sel.min(), t_sel.max() + 1, self.refit)]
        prev = {}
        for j, sel, t_sel, t0 in tqdm(jobs, desc=self.name, disable=not self.progress, leave=False):
            t1 = min(t0 + self.refit, t_sel.max() + 1)
            lo = max(1, t0 - self.window)
            r_rows = lo + np.flatnonzero(np.isfinite(builder.returns[lo:t1, j]))  # observed returns' rows
            n_fit = int(np.searchsorted(r_rows, t0, "right"))  # returns at rows <= t0
            if n_fit < self.min_fit:
                continue
            r = 100.0 * builder.returns[r_rows, j]
            model = arch_model(r, mean="Constant", vol="GARCH", p=1, o=int(self.gjr), q=1, dist="t",
                               rescale=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = model.fit(last_obs=n_fit, disp="off", starting_values=prev.get(j),
                                options={"maxiter": 200})
            self.fits += 1
            if res.convergence_flag != 0:
                self.failures += 1
                continue
            prev[j] = res.params
            fc = res.forecast(horizon=h, start=n_fit - 1, reindex=False)
            var = fc.variance.to_numpy().mean(axis=1) / 1e4  # made after returns n_fit-1.., mean over 1..h
            block = sel[(t_sel >= t0) & (t_sel < t1)]
            last_return = np.searchsorted(r_rows, rows[block], "right") - 1  # latest return <= t
            out[block] = var[last_return - (n_fit - 1)]
        return out
