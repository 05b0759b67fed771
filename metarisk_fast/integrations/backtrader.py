"""backtrader adapter: ``RiskIndicator`` gives one data feed's lines of the RiskEngine's risk
(variance, vol, var_1, var_5, es_2_5); the feeds of one strategy share a ``RiskHub``, which commits
every feed's bar to one engine once per bar. ``VolTargetStrategy`` sizes positions from it
(integrations.sizing); ``run_backtest`` runs it in a Cerebro over a price panel.

    hub = RiskHub(RiskEngine.from_model("my_model", [d._name for d in self.datas]), self.datas)
    risk = RiskIndicator(self.data0, hub=hub)   # risk.var_1[0]: today's 1 % VaR of data0
"""
from __future__ import annotations

import numpy as np
import pandas as pd

try:
    import backtrader as bt
except ImportError as exc:  # an optional extra
    raise ImportError(f"metarisk_fast.integrations.backtrader needs backtrader ({exc}); "
                      'install it with `pip install "metarisk_fast[backtrader]"`') from None

from ..data import PricePanel
from ..streaming import RiskEngine, RiskSnapshot
from .sizing import VolTargetSizer, positions_frame

RISK_LINES = ("variance", "vol", "var_1", "var_5", "es_2_5")


class RiskHub:
    """One RiskEngine for a strategy's feeds (``engine.assets`` are the feeds' names, in order):
    ``at(bar)`` commits the feeds' current closes as one engine bar the first time a bar is asked
    for, and returns that bar's snapshot every time.

    Parameters
    ----------
    engine : RiskEngine
        An engine over the feeds' names, in order.
    datas : sequence of backtrader feeds
        The strategy's feeds.
    """

    def __init__(self, engine: RiskEngine, datas):
        names = [d._name for d in datas]
        if engine.assets != names:
            raise ValueError(f"the engine's assets {engine.assets} are not the feeds' names {names}")
        self.engine, self.datas = engine, list(datas)
        self._bar, self.snapshot, self.close = -1, None, None

    def at(self, bar: int) -> RiskSnapshot:
        """The engine's snapshot of a backtrader bar (the feeds' closes committed once).

        Parameters
        ----------
        bar : int
            The bar's number (``len(data)``).

        Returns
        -------
        RiskSnapshot
            The risk after that bar.
        """
        if bar != self._bar:
            self.close = np.array([d.close[0] if len(d) else np.nan for d in self.datas], dtype=np.float64)
            date = bt.num2date(self.datas[0].datetime[0]).date()
            self.snapshot = self.engine.update(self.close, date=date)
            self._bar = bar
        return self.snapshot


class RiskIndicator(bt.Indicator):
    """The RiskEngine's forecasts for this indicator's feed, one value per bar (NaN before the
    engine has enough history). Lines: variance, vol, var_1, var_5, es_2_5.

    Parameters
    ----------
    *args
        The feed, as backtrader passes it.
    **kwargs
        ``hub``: the strategy's RiskHub (backtrader's params).
    """

    lines = RISK_LINES
    params = (("hub", None),)

    def __init__(self):
        if self.p.hub is None:
            raise ValueError("RiskIndicator needs hub=RiskHub(engine, datas)")
        self._column = self.p.hub.engine.assets.index(self.data._name)

    def next(self):
        snap = self.p.hub.at(len(self.data))
        for name in RISK_LINES:
            getattr(self.lines, name)[0] = float(getattr(snap, name)[self._column])


class VolTargetStrategy(bt.Strategy):
    """Each bar, orders every feed to its volatility-targeted size (``order_target_size``);
    ``targets`` keeps one row of target shares per bar.

    Parameters
    ----------
    *args
        As backtrader passes them.
    **kwargs
        ``engine``: a RiskEngine over the feeds' names; ``sizer``: a VolTargetSizer (backtrader's params).
    """

    params = (("engine", None), ("sizer", VolTargetSizer()))

    def __init__(self):
        self.hub = RiskHub(self.p.engine, self.datas)
        self.risk = [RiskIndicator(d, hub=self.hub) for d in self.datas]
        self.targets: list[tuple[object, np.ndarray]] = []

    def next(self):
        snap = self.hub.at(len(self.data0))
        shares = self.p.sizer.shares(snap, self.hub.close)
        self.targets.append((bt.num2date(self.data0.datetime[0]).date(), shares))
        for d, target in zip(self.datas, shares):
            self.order_target_size(data=d, target=int(target))


def run_backtest(model, panel: PricePanel, sizer: VolTargetSizer = VolTargetSizer(), *, cash: float = 1e10):
    """A Cerebro over ``panel`` (one PandasData feed per asset, every date of the panel) with
    VolTargetStrategy. Returns (the target positions as integrations.sizing.positions_frame, the
    strategy).

    Parameters
    ----------
    model : str or os.PathLike
        A model directory.
    panel : PricePanel
        The daily prices.
    sizer : VolTargetSizer
        The strategy's sizing.
    cash : float
        The broker's starting cash.

    Returns
    -------
    tuple
        (target positions, a DataFrame of dates x assets in shares; the strategy).
    """
    cerebro = bt.Cerebro(runonce=False, stdstats=False)
    index = pd.DatetimeIndex(panel.dates.astype("datetime64[ns]"))
    fields = {"open": panel.open, "high": panel.high, "low": panel.low}
    for j, asset in enumerate(panel.assets):
        frame = pd.DataFrame({k: (panel.close if v is None else v)[:, j] for k, v in fields.items()}, index=index)
        frame["close"], frame["volume"] = panel.close[:, j], 1e6
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=asset)
    cerebro.broker.setcash(cash)
    cerebro.addstrategy(VolTargetStrategy, engine=RiskEngine.from_model(model, list(panel.assets)), sizer=sizer)
    strategy = cerebro.run()[0]
    return positions_frame([d for d, _ in strategy.targets], panel.assets,
                           np.array([s for _, s in strategy.targets])), strategy


__all__ = ["RISK_LINES", "RiskHub", "RiskIndicator", "VolTargetStrategy", "run_backtest"]
