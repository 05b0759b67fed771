"""nautilus_trader adapter: ``RiskActor`` feeds the RiskEngine with the bars it subscribes to and
publishes every asset's risk on the message bus once each timestamp's bars are in;
``VolTargetStrategy`` sizes positions from it (integrations.sizing). ``run_backtest`` runs both in
a ``BacktestEngine`` over a price panel (daily bars, one equity per asset on a simulated venue).

    actor = RiskActor(RiskActorConfig(model="my_model", bar_types=("AAPL.XNAS-1-DAY-LAST-EXTERNAL",)))
    # in a strategy: self.msgbus.subscribe(RISK_TOPIC, handler); handler(update: RiskUpdate)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

try:
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.config import ActorConfig, LoggingConfig, StrategyConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, TraderId, Venue
    from nautilus_trader.model.instruments import Equity
    from nautilus_trader.model.objects import Money, Price, Quantity
    from nautilus_trader.trading.strategy import Strategy
except ImportError as exc:  # an optional extra
    raise ImportError(f"metarisk_fast.integrations.nautilus needs nautilus_trader ({exc}); "
                      'install it with `pip install "metarisk_fast[nautilus]"`') from None

from ..data import PricePanel
from ..streaming import RiskEngine, RiskSnapshot
from .sizing import VolTargetSizer, positions_frame

RISK_TOPIC = "metarisk.risk"
VENUE = "XNAS"
NS_PER_DAY = 86_400 * 10**9
PRICE_DECIMALS = 3  # the embedded panel's prices have at most 3 decimals: bars carry them exactly


@dataclass(frozen=True)
class RiskUpdate:
    """What RiskActor publishes: the engine's snapshot after the bars of one timestamp, and those
    bars' closes in the engine's asset order (NaN for an asset without a bar).

    Parameters
    ----------
    ts_event : int
        The bars' timestamp, UNIX nanoseconds.
    snapshot : RiskSnapshot
        The engine's risk after them.
    close : numpy.ndarray
        (n_assets,) their closes.
    """

    ts_event: int
    snapshot: RiskSnapshot
    close: np.ndarray


class RiskActorConfig(ActorConfig, frozen=True):
    """RiskActor's settings.

    Parameters
    ----------
    model : str
        A model directory, or a shipped model ('streaming': the head learner; 'default': MAML).
    bar_types : tuple of str
        One bar type per asset (the asset is the instrument's symbol; ``bar_type(symbol)``).
    topic : str
        The message-bus topic the risk is published on.
    readapt_every : int
        As in ``RiskEngine``.
    component_id, log_events, log_commands
        As in nautilus_trader's ActorConfig.
    """

    model: str
    bar_types: tuple[str, ...]
    topic: str = RISK_TOPIC
    readapt_every: int = 1


class RiskActor(Actor):
    """Collects each timestamp's bars (one per asset) and commits them to the RiskEngine as one
    bar: when every asset has reported, or when a later timestamp shows the missing ones have no
    bar (NaN).

    Parameters
    ----------
    config : RiskActorConfig
        The model, the bar types and the topic.
    engine : RiskEngine, optional
        An engine over the same assets (for example one already warmed up); default: a new one
        from ``config.model``.
    """

    def __init__(self, config: RiskActorConfig, engine: RiskEngine | None = None):
        super().__init__(config)
        self._bar_types = [BarType.from_str(b) for b in config.bar_types]
        self.assets = [b.instrument_id.symbol.value for b in self._bar_types]
        self.engine = engine or RiskEngine.from_model(config.model, self.assets,
                                                      readapt_every=config.readapt_every)
        if self.engine.assets != self.assets:
            raise ValueError(f"the engine's assets {self.engine.assets} are not the bar types' {self.assets}")
        # symbol -> column (the engine refuses a symbol named twice): a str hashes once and for all,
        # a BarType key's hash and equality cost ~0.8 us a bar
        self._column = {a: j for j, a in enumerate(self.assets)}
        # the open timestamp's closes (a list: a float's write is ~5x numpy's; NaN: not reported yet)
        # and how many assets reported; with none reported, _ts is the last committed timestamp
        self._row, self._reported, self._ts = [math.nan] * len(self.assets), 0, -1
        self.latest: RiskUpdate | None = None

    def on_start(self) -> None:
        """Subscribe to every asset's bars."""
        for bar_type in self._bar_types:
            self.subscribe_bars(bar_type)

    def handle_bar(self, bar: Bar) -> None:
        """nautilus_trader's entry for a subscribed bar: straight to on_bar while the actor runs
        (Actor.handle_bar first looks up indicators by the bar's type, ~0.3 us a bar, for an actor
        that registers none).

        Parameters
        ----------
        bar : nautilus_trader.model.data.Bar
            A bar of one of the configured bar types.
        """
        if self.is_running:
            self.on_bar(bar)

    def on_bar(self, bar: Bar) -> None:
        """Collect one asset's bar; commit its timestamp once every asset has reported, or when a
        later timestamp's first bar shows the missing ones have no bar. A bar older than the open
        timestamp, or of one already committed, is late: logged and left out (the engine takes
        bars in time order).

        Parameters
        ----------
        bar : nautilus_trader.model.data.Bar
            A bar of one of the configured bar types.
        """
        ts = bar.ts_event
        if ts != self._ts or not self._reported:
            if ts <= self._ts:
                self.log.warning(f"late bar {bar.bar_type} at {ts} ns left out: the bars of {self._ts} ns are "
                                 "already in the engine or open")
                return
            if self._reported:
                self._commit()
            self._ts = ts
        row, j = self._row, self._column[bar.bar_type.instrument_id.symbol.value]
        if row[j] != row[j]:  # NaN: this asset's first bar of the timestamp (a repeat overwrites)
            self._reported += 1
        row[j] = bar.close.as_double()
        if self._reported == len(row):
            self._commit()

    def on_stop(self) -> None:
        """Commit the open timestamp's bars, if any."""
        if self._reported:
            self._commit()

    def _commit(self) -> None:
        close = np.array(self._row)
        self._row, self._reported = [math.nan] * len(self.assets), 0
        snapshot = self.engine.update(close, date=np.datetime64(self._ts // NS_PER_DAY, "D"))
        self.latest = RiskUpdate(self._ts, snapshot, close)
        self.msgbus.publish(self.config.topic, self.latest)


class VolTargetStrategyConfig(StrategyConfig, frozen=True):
    """VolTargetStrategy's settings: the instruments it trades, the message-bus topic of the risk
    updates it reads and its sizing."""

    instrument_ids: tuple[str, ...]
    topic: str = RISK_TOPIC
    capital: float = 1_000_000.0
    target_annual: float = 0.10
    max_leverage: float = 2.0


class VolTargetStrategy(Strategy):
    """On each RiskUpdate, trades every instrument to its volatility-targeted size (market orders);
    ``targets`` keeps one row of target shares per update.

    Parameters
    ----------
    config : VolTargetStrategyConfig
        The instruments, the risk topic and the sizing.
    """

    def __init__(self, config: VolTargetStrategyConfig):
        super().__init__(config)
        self.sizer = VolTargetSizer(config.capital, config.target_annual, config.max_leverage)
        self._ids = [InstrumentId.from_str(i) for i in config.instrument_ids]
        self.targets: list[tuple[int, np.ndarray]] = []

    def on_start(self) -> None:
        """Subscribe to the risk updates."""
        self.msgbus.subscribe(self.config.topic, self._on_risk)

    def _on_risk(self, update: RiskUpdate) -> None:
        shares = self.sizer.shares(update.snapshot, update.close)
        self.targets.append((update.ts_event, shares))
        for instrument_id, target in zip(self._ids, shares):
            delta = int(target) - int(self.portfolio.net_position(instrument_id))
            if delta:
                self.submit_order(self.order_factory.market(
                    instrument_id=instrument_id, order_side=OrderSide.BUY if delta > 0 else OrderSide.SELL,
                    quantity=Quantity.from_int(abs(delta))))


def _equity(symbol: str) -> Equity:
    return Equity(instrument_id=InstrumentId(Symbol(symbol), Venue(VENUE)), raw_symbol=Symbol(symbol), currency=USD,
                  price_precision=PRICE_DECIMALS, price_increment=Price(10.0 ** -PRICE_DECIMALS, PRICE_DECIMALS),
                  lot_size=Quantity.from_int(1), ts_event=0, ts_init=0)


def bar_type(symbol: str) -> str:
    """The daily external bar type of ``symbol`` on the adapter's venue, as nautilus_trader spells it."""
    return f"{symbol}.{VENUE}-1-DAY-LAST-EXTERNAL"


def panel_bars(panel: PricePanel, close_hour: int = 21) -> list[Bar]:
    """Daily bars of every asset with a close (open = high = low = close on a close-only panel),
    stamped at ``close_hour`` UTC."""
    bars = []
    ts = (panel.dates.astype("datetime64[ns]") + np.timedelta64(close_hour, "h")).astype(np.int64)
    fields = [panel.close if f is None else f for f in (panel.open, panel.high, panel.low)] + [panel.close]
    for j, asset in enumerate(panel.assets):
        bt = BarType.from_str(bar_type(asset))
        for i in np.flatnonzero(np.isfinite(panel.close[:, j])):
            o, h, lo, c = (Price(float(f[i, j]), PRICE_DECIMALS) for f in fields)
            bars.append(Bar(bt, o, h, lo, c, Quantity.from_int(1_000_000), int(ts[i]), int(ts[i])))
    return bars


def run_backtest(model, panel: PricePanel, sizer: VolTargetSizer = VolTargetSizer(), *, actor: bool = True,
                 strategy: bool = True, balance: float = 1e10, risk_engine: RiskEngine | None = None):
    """A BacktestEngine over ``panel``'s daily bars with RiskActor and VolTargetStrategy. Returns
    (the strategy's target positions as integrations.sizing.positions_frame, the engine). Without
    ``strategy`` (positions: None) only the actor runs; without ``actor`` either, the bars alone:
    the framework's own per-bar cost.

    Parameters
    ----------
    model : str or os.PathLike
        A model directory.
    panel : PricePanel
        The daily prices (bars at each close).
    sizer : VolTargetSizer
        The strategy's sizing.
    actor : bool
        Run RiskActor.
    strategy : bool
        Run VolTargetStrategy (needs ``actor``).
    balance : float
        The account's starting cash, USD.
    risk_engine : RiskEngine, optional
        The actor's engine over ``panel``'s assets (for example one already warmed up, or built
        before a timed run); default: a new one from ``model``.

    Returns
    -------
    tuple
        (target positions, a DataFrame of dates x assets in shares, or None; the BacktestEngine).
    """
    engine = BacktestEngine(config=BacktestEngineConfig(trader_id=TraderId("METARISK-001"),
                                                        logging=LoggingConfig(bypass_logging=True)))
    engine.add_venue(venue=Venue(VENUE), oms_type=OmsType.NETTING, account_type=AccountType.CASH,
                     base_currency=USD, starting_balances=[Money(balance, USD)])
    for asset in panel.assets:
        engine.add_instrument(_equity(asset))
    engine.add_data(panel_bars(panel))
    ids = tuple(f"{a}.{VENUE}" for a in panel.assets)
    if actor:
        engine.add_actor(RiskActor(RiskActorConfig(model=str(model), bar_types=tuple(bar_type(a) for a in panel.assets)),
                                   risk_engine))
    trader = None
    if actor and strategy:
        trader = VolTargetStrategy(VolTargetStrategyConfig(instrument_ids=ids, capital=sizer.capital,
                                                           target_annual=sizer.target_annual,
                                                           max_leverage=sizer.max_leverage))
        engine.add_strategy(trader)
    engine.run()
    if trader is None:
        return None, engine
    dates = [pd.Timestamp(ts, unit="ns").date() for ts, _ in trader.targets]
    return positions_frame(dates, panel.assets, np.array([s for _, s in trader.targets])), engine


__all__ = ["RISK_TOPIC", "RiskUpdate", "RiskActor", "RiskActorConfig", "VolTargetStrategy", "VolTargetStrategyConfig",
           "bar_type", "panel_bars", "run_backtest"]
