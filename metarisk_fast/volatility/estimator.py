"""RiskModel: the volatility forecaster as a Python estimator (fit / forecast / save / load, pandas
in and out), on the same functions as `metarisk train` and `metarisk forecast`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._checks import check_number
from .._files import check_output
from .._types import STUDENT_T_NU
from ..data import DataError, PricePanel
from ..datasets import load_panel
from ..evaluation import expected_shortfall, value_at_risk
from ..forecasting import load_model, save_model
from ..forecasting.model_files import OWN_KEYS, PRETRAINED, SHIPPED_MODELS
from .jobs import TrainOptions, check_training, fit, forecast_panel, model_nu


def _panel(prices, returns: bool) -> PricePanel:
    """Prices as a PricePanel: a wide DataFrame (dates x assets, closes), a Series (one asset), a
    long / OHLC frame or a file as the command takes, or a PricePanel. ``returns``: the frame holds
    daily log returns, turned into prices from 1 on the row before each asset's first return (a
    frame of ``np.log(closes).diff()`` gives the closes divided by the first; a first row that
    already holds a return loses it: it has no price before it)."""
    if isinstance(prices, pd.Series):
        prices = prices.to_frame(prices.name if prices.name is not None else "asset")
    if returns:
        if not isinstance(prices, pd.DataFrame):
            raise TypeError(f"returns=True takes a DataFrame or Series of log returns, got {type(prices).__name__}")
        r = prices.astype(np.float64)
        if np.isinf(r.to_numpy()).any():
            raise ValueError("returns hold an infinite value; log returns must be finite (NaN marks missing)")
        seen = r.notna()
        listed = (seen.cumsum() > 0) | seen.shift(-1, fill_value=False)  # the price before the first return
        prices = np.exp(r.fillna(0.0).cumsum()).where(listed)
        if isinstance(prices.index, pd.DatetimeIndex):
            prices.index.name = prices.index.name or "date"
    elif isinstance(prices, np.ndarray):
        raise TypeError("prices as a bare ndarray have no dates: give a DataFrame (a DatetimeIndex of dates, one "
                        "column of closes per asset)")
    elif isinstance(prices, pd.DataFrame) and _looks_like_returns(prices):
        raise DataError("the prices look like returns (small numbers around zero, some negative): pass "
                        "returns=True for a frame of daily log returns")
    return load_panel(prices)


def _looks_like_returns(frame: pd.DataFrame) -> bool:
    """A wide frame of numbers below 1 in size with negative ones among them: returns, not closes."""
    x = frame.select_dtypes("number").to_numpy(np.float64)
    x = x[np.isfinite(x)]
    return x.size > 0 and bool((x < 0).any()) and float(np.abs(x).max()) < 1.0


@dataclass(frozen=True)
class RiskForecast:
    """Forecasts of every (date, asset) of a panel, made at each date's close.

    ``var`` / ``es`` give one-day Value-at-Risk and Expected Shortfall of a log return (negative
    numbers) for any level, from the variance and the model's own distribution.

    Parameters
    ----------
    variance : pandas.DataFrame
        Dates x assets: the mean daily variance of log returns over the next ``horizon`` days
        (squared log-return units, not annualised); NaN where the asset has no forecast yet.
    horizon : int
        Days ahead the variance is the mean over.
    nu : float or None
        The Student t degrees of freedom of the model's training likelihood (None: a Gaussian one).
    """

    variance: pd.DataFrame
    horizon: int
    nu: float | None

    @property
    def vol(self) -> pd.DataFrame:
        """Dates x assets: the square root of ``variance`` (daily log-return units)."""
        return np.sqrt(self.variance)

    def _dist(self, dist):
        dist = dist or ("t" if self.nu else "normal")
        if dist not in ("t", "normal"):
            raise ValueError(f"dist must be 't' or 'normal', got {dist!r}")
        return dist, (self.nu or STUDENT_T_NU)

    def var(self, alpha: float = 0.01, dist: str | None = None) -> pd.DataFrame:
        """Value-at-Risk of the next day's log return at level ``alpha``.

        Parameters
        ----------
        alpha : float
            The left-tail probability, 0 < alpha < 0.5 (0.01: the 1 % VaR).
        dist : {'t', 'normal'} or None
            The return distribution: 't' (the default for a model trained with the t likelihood,
            with its degrees of freedom, scaled to the forecast variance) or 'normal'.

        Returns
        -------
        pandas.DataFrame
            Dates x assets, log-return units (negative numbers); NaN where there is no forecast.
        """
        dist, nu = self._dist(dist)
        return self._apply(lambda v: value_at_risk(v, _alpha(alpha), dist, nu))

    def es(self, alpha: float = 0.025, dist: str | None = None) -> pd.DataFrame:
        """Expected Shortfall of the next day's log return, E[r | r < VaR_alpha].

        Parameters
        ----------
        alpha : float
            The left-tail probability, 0 < alpha < 0.5 (0.025: the Basel ES level).
        dist : {'t', 'normal'} or None
            As in ``var``.

        Returns
        -------
        pandas.DataFrame
            Dates x assets, log-return units (negative numbers); NaN where there is no forecast.
        """
        dist, nu = self._dist(dist)
        return self._apply(lambda v: expected_shortfall(v, _alpha(alpha), dist, nu))

    def _apply(self, fn) -> pd.DataFrame:
        v = self.variance.to_numpy()
        out = np.full(v.shape, np.nan)
        ok = np.isfinite(v)
        out[ok] = fn(v[ok])
        return pd.DataFrame(out, index=self.variance.index, columns=self.variance.columns)

    def to_frame(self, dist: str = "normal", alphas=None) -> pd.DataFrame:
        """The forecasts as `metarisk forecast`'s long table, with its ``--dist`` and ``--alpha``.

        Parameters
        ----------
        dist : {'normal', 't'}
            The distribution of the VaR and ES columns ('t' needs a model trained with the t likelihood).
        alphas : sequence of float or None
            Tail levels in (0, 0.5); None: the 1 % and 5 % VaR and the 2.5 % ES.

        Returns
        -------
        pandas.DataFrame
            One row per (date, asset) with a forecast, sorted by date then asset: date, asset,
            forecast_variance, then var_1, var_5, es_2_5 (or var_<a> and es_<a> for each level).
        """
        from ..evaluation import risk_columns

        if dist == "t" and not self.nu:
            raise ValueError("dist 't': the model is trained with a Gaussian likelihood; use dist='normal'")
        long = self.variance.stack().rename("forecast_variance").reset_index()
        long.columns = ["date", "asset", "forecast_variance"]
        long["date"] = long["date"].to_numpy().astype("datetime64[D]")
        f = long["forecast_variance"].to_numpy()
        cols = risk_columns(f, dist, self.nu, None if alphas is None else [_alpha(a) for a in alphas])
        return long.assign(**cols).sort_values(["date", "asset"], kind="stable").reset_index(drop=True)


def _alpha(alpha) -> float:
    check_number("alpha", alpha)
    if not alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5) (a left-tail level such as 0.01), got {alpha}")
    return float(alpha)


class RiskModel:
    """A meta-learned variance forecaster, as a quant uses an estimator.

    ``RiskModel.pretrained()`` is the shipped model; ``RiskModel(...).fit(prices)`` trains one;
    ``save(path)`` / ``RiskModel.load(path)`` write and read a `metarisk` model directory (the same
    files the command reads and writes).

    Parameters
    ----------
    learner : str
        The learner to meta-train: 'maml', 'fomaml', 'reptile', 'metasgd', 'head', 'pooled' (no
        adaptation), 'memory' or 'memory_maml' (`metarisk train --learner`).
    horizon : int
        Days ahead: the forecast is the mean daily variance of log returns over the next ``horizon`` days.
    history : int
        At most this many of an asset's latest realised days form its support set.
    options : TrainOptions
        Meta-training settings (steps, batch, learning rates, inner steps, hidden sizes, seed).

    Examples
    --------
    >>> model = RiskModel.pretrained()                  # the shipped model, no training
    >>> fc = model.forecast(prices)                     # prices: DataFrame, dates x assets (closes)
    >>> fc.vol.iloc[-1], fc.var(0.01).iloc[-1]          # today's vol and 1 % t-VaR per asset
    """

    def __init__(self, learner: str = "maml", horizon: int = 1, history: int = 60,
                 options: TrainOptions = TrainOptions()):
        self.learner_kind, self.horizon, self.history, self.options = learner, horizon, history, options
        self._fitted = None  # (learner, TaskSpec, metadata)

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(cls, path) -> "RiskModel":
        """Read a model directory written by ``save`` or `metarisk train`.

        Parameters
        ----------
        path : str or os.PathLike
            The directory ('default': the shipped model).

        Returns
        -------
        RiskModel
            A fitted model.
        """
        learner, spec, meta = load_model(path)
        model = cls(meta["learner"], spec.horizon, meta["history"])
        model._fitted = (learner, spec, meta)
        return model

    @classmethod
    def pretrained(cls, name: str = PRETRAINED) -> "RiskModel":
        """A shipped model, h = 1: 'default' (MAML trained by `metarisk train --prices default`, seed
        0) or 'streaming' (the head learner trained the same way with `--learner head`: the
        streaming engine re-adapts it exactly on every bar).

        Parameters
        ----------
        name : {'default', 'streaming'}
            Which shipped model.

        Returns
        -------
        RiskModel
            A fitted model (the package's weights; no training, no download).
        """
        if name not in SHIPPED_MODELS:
            raise ValueError(f"no shipped model {name!r}; the shipped ones are {', '.join(map(repr, SHIPPED_MODELS))} "
                             "(RiskModel.load reads a model directory)")
        return cls.load(name)

    def fit(self, prices, train_end=None, *, returns: bool = False, steps: int | None = None,
            seed: int | None = None, log=None) -> "RiskModel":
        """Meta-train on 80 % of the panel's assets and validate on the rest, as `metarisk train` does.

        Parameters
        ----------
        prices : pandas.DataFrame, pandas.Series or PricePanel
            Closes: a wide frame (DatetimeIndex x assets), one asset's Series, or a long or OHLC
            frame as `metarisk` reads them.
        train_end : date-like or None
            The last date training may see (default: the last date).
        returns : bool
            ``prices`` holds daily log returns, not closes.
        steps : int or None
            Meta-training steps (None: the options', else the learner's default).
        seed : int or None
            Overrides the options' seed.
        log : callable or None
            Called with each progress line (None: silent).

        Returns
        -------
        RiskModel
            ``self``, fitted.
        """
        from dataclasses import replace

        opts = replace(self.options, **{k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None})
        panel = _panel(prices, returns)
        end = check_training(panel, self.learner_kind, self.horizon, self.history, train_end, opts)
        learner, spec, info = fit(panel, self.learner_kind, self.horizon, self.history, end, opts, log)
        self.options = opts
        self._fitted = (learner, spec, {"learner": self.learner_kind, "history": self.history,
                                        "hidden": list(opts.hidden_for(self.learner_kind)), **info})
        return self

    def save(self, path) -> Path:
        """Write the model directory (model.json, model.pt), as `metarisk train` writes it.

        Parameters
        ----------
        path : str or os.PathLike
            A directory that does not exist yet or is empty.

        Returns
        -------
        pathlib.Path
            The directory written.
        """
        learner, spec, meta = self._model("save")
        check_output(path, "dir")
        return save_model(path, meta["learner"], learner, spec, history=meta["history"], hidden=meta["hidden"],
                          info={k: v for k, v in meta.items() if k not in OWN_KEYS})

    # ---------------------------------------------------------------- use
    @property
    def info(self) -> dict:
        """The model's metadata: training assets, dates, validation losses, settings."""
        return dict(self._model("info")[2])

    def forecast(self, prices, start=None, *, returns: bool = False, history: int | None = None) -> RiskForecast:
        """Forecasts for every asset and date of ``prices``, each made at its date's close from data up to it.

        Parameters
        ----------
        prices : pandas.DataFrame, pandas.Series or PricePanel
            Closes, as ``fit`` takes them.
        start : date-like or None
            The first date to forecast (None: the first date).
        returns : bool
            ``prices`` holds daily log returns, not closes.
        history : int or None
            At most this many latest realised days per support set (None: the model's).

        Returns
        -------
        RiskForecast
            Dates (from ``start``) x assets; NaN where an asset has no forecast (before its second price).
        """
        learner, spec, meta = self._model("forecast")
        panel = _panel(prices, returns)
        long = forecast_panel(learner, spec, meta, panel, start=start, history=history)
        lo = 0 if start is None else panel.row_of(start)
        wide = long.pivot(index="date", columns="asset", values="forecast_variance")
        dates = pd.DatetimeIndex(panel.dates[lo:].astype("datetime64[ns]"), name="date")  # pandas' own unit
        wide = wide.reindex(index=dates, columns=list(panel.assets))
        wide.columns.name = "asset"
        return RiskForecast(variance=wide, horizon=spec.horizon, nu=model_nu(learner))

    def _model(self, what: str):
        if self._fitted is None:
            raise ValueError(f"{what}: the model is not fitted; call fit(prices) or use RiskModel.pretrained() / "
                             "RiskModel.load(path)")
        return self._fitted

    def __repr__(self) -> str:
        state = "fitted" if self._fitted is not None else "not fitted"
        return f"RiskModel(learner={self.learner_kind!r}, horizon={self.horizon}, history={self.history}; {state})"
