"""The framework adapters against the real engine: a volatility-targeting strategy fed by the
RiskEngine inside nautilus_trader's BacktestEngine and inside backtrader's Cerebro takes the same
positions, bar for bar, as the library-only backtest."""
import numpy as np
import pandas as pd
import pytest
import torch

from metarisk_fast import datasets
from metarisk_fast.data import PricePanel
from metarisk_fast.forecasting import make_learner, save_model
from metarisk_fast.integrations.sizing import VolTargetSizer, library_backtest
from metarisk_fast.tasks import TaskSpec


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(2)
    learner = make_learner("maml", TaskSpec().n_features, (16, 16), 0.05, 3)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("model")
    save_model(out, "maml", learner, TaskSpec(), history=60, hidden=(16, 16), info={})
    return out


@pytest.fixture(scope="module")
def panel():
    p = datasets.load_sp500_20(warn_data=False)
    return p.select(assets=["AAPL", "BAC", "XOM"], start="2017-06-01", end="2019-06-28")


def test_nautilus_trader_positions_equal_the_library_backtest(model, panel):
    nautilus = pytest.importorskip("metarisk_fast.integrations.nautilus")
    from nautilus_trader.model.identifiers import InstrumentId

    want = library_backtest(model, panel)
    got, engine = nautilus.run_backtest(model, panel)
    pd.testing.assert_frame_equal(got, want)
    assert (want.shares > 0).sum() > 0.5 * len(want)  # the strategy trades for most of the run
    last = want[want.date == want.date.max()]
    held = [int(engine.portfolio.net_position(InstrumentId.from_str(f"{a}.XNAS"))) for a in last.asset]
    assert held == last.shares.tolist()  # market orders fill on the bar


def test_nautilus_actor_commits_a_bar_with_missing_assets(model, panel):
    """An asset without a bar on a day is missing (NaN) for the engine, as in the library run."""
    nautilus = pytest.importorskip("metarisk_fast.integrations.nautilus")
    close = panel.close.copy()
    close[[100, 101, 300], 1] = np.nan
    close[200, 0] = np.nan
    gappy = PricePanel(dates=panel.dates, assets=panel.assets, close=close)
    got, _ = nautilus.run_backtest(model, gappy)
    pd.testing.assert_frame_equal(got, library_backtest(model, gappy))


def test_backtrader_positions_equal_the_library_backtest(model, panel):
    backtrader = pytest.importorskip("metarisk_fast.integrations.backtrader")
    sizer = VolTargetSizer(capital=2e6, target_annual=0.15)
    want = library_backtest(model, panel, sizer)
    got, strategy = backtrader.run_backtest(model, panel, sizer)
    pd.testing.assert_frame_equal(got, want)
    # the indicator's lines are the engine's figures of each bar
    snap = strategy.hub.snapshot
    for j, line in enumerate(strategy.risk):
        assert line.var_1[0] == snap.var_1[j] and line.variance[0] == snap.variance[j]
    # orders fill at the next bar's open: the held sizes are the previous bar's targets
    prev = want[want.date == np.sort(want.date.unique())[-2]].shares.tolist()
    assert [int(strategy.getposition(d).size) for d in strategy.datas] == prev


def test_sizer_rejects_bad_settings():
    for kw in ({"capital": 0}, {"target_annual": float("nan")}, {"max_leverage": -1.0}):
        with pytest.raises(ValueError):
            VolTargetSizer(**kw)


def test_nautilus_actor_leaves_late_bars_out(model, panel):
    """A bar of a committed timestamp, or older than the open one, is left out (the engine takes
    bars in time order); a later timestamp's first bar commits the open one with its missing
    assets as NaN."""
    nautilus = pytest.importorskip("metarisk_fast.integrations.nautilus")
    bars = sorted(nautilus.panel_bars(panel.select(end=panel.dates[2])), key=lambda b: (b.ts_event, str(b.bar_type)))
    actor = nautilus.RiskActor(nautilus.RiskActorConfig(model=str(model),
                                                        bar_types=tuple(nautilus.bar_type(a) for a in panel.assets)))
    committed = []
    actor._commit = lambda: (committed.append((actor._ts, list(actor._row))),
                             setattr(actor, "_row", [np.nan] * 3), setattr(actor, "_reported", 0))
    day = [bars[3 * i:3 * i + 3] for i in range(3)]
    for bar in day[0]:
        actor.on_bar(bar)
    assert committed == [(day[0][0].ts_event, panel.close[0].tolist())]  # every asset reported
    actor.on_bar(day[0][1])  # the committed timestamp again: late
    actor.on_bar(day[1][0])
    actor.on_bar(day[0][2])  # older than the open timestamp: late
    assert len(committed) == 1 and actor._reported == 1
    actor.on_bar(day[2][0])  # a later timestamp: the open one is committed, its missing assets NaN
    assert committed[1][0] == day[1][0].ts_event
    np.testing.assert_array_equal(committed[1][1], [panel.close[1, 0], np.nan, np.nan])
