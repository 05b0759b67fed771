"""The forecasters and the evaluation on real-world hazards: no look-ahead in any baseline or in
the evaluation's fitted quantities, gaps in the prices, fresh builders, per-asset Basel zones."""
import gc

import numpy as np
import pytest

from metarisk_fast import datasets
from metarisk_fast import features as F
from metarisk_fast.data import PricePanel
from metarisk_fast.evaluation import evaluate
from metarisk_fast.forecasting import EWMAForecaster, GARCHForecaster, HARForecaster, MetaForecaster
from metarisk_fast.forecasting import make_learner
from metarisk_fast.tasks import EpisodeBuilder, TaskSpec, bridge_gaps


def close_panel(n_days=900, n_assets=3, seed=0) -> PricePanel:
    p = datasets.synthetic_ohlc(n_days=n_days, n_assets=n_assets, seed=seed)
    return PricePanel(dates=p.dates, assets=p.assets, close=p.close.copy(), source="synthetic")


def altered_after(panel: PricePanel, cut: int, factor: float = 3.0) -> PricePanel:
    """The same panel with every log return after row ``cut`` scaled by ``factor``."""
    r = np.diff(np.log(panel.close), axis=0)
    r[cut:] *= factor
    close = panel.close.copy()
    close[1:] = panel.close[0] * np.exp(np.cumsum(r, axis=0))
    close[: cut + 1] = panel.close[: cut + 1]
    return PricePanel(dates=panel.dates, assets=panel.assets, close=close, source="altered")


def grid(panel, lo, hi):
    cols = np.arange(panel.n_assets)
    rows = np.arange(lo, hi)
    return np.repeat(cols, len(rows)), np.tile(rows, len(cols))


@pytest.mark.parametrize("forecaster", [EWMAForecaster(), HARForecaster(), HARForecaster(log=True),
                                        GARCHForecaster(refit=63, window=500),
                                        GARCHForecaster(gjr=True, refit=63, window=500)],
                         ids=["ewma", "har", "log_har", "garch_t", "gjr_garch_t"])
def test_baselines_use_only_the_past(forecaster):
    """Changing every return after T moves no forecast dated at or before T."""
    panel = close_panel(n_days=800, n_assets=2)
    cut = 640
    A, R = grid(panel, 600, 760)
    spec = TaskSpec(horizon=1)
    a = forecaster.predict(EpisodeBuilder(panel, spec), A, R)
    b = forecaster.predict(EpisodeBuilder(altered_after(panel, cut), spec), A, R)
    before = R <= cut
    assert np.isfinite(a[before]).mean() > 0.95  # a linear HAR may go negative (no forecast) on a day or two
    np.testing.assert_array_equal(a[before], b[before])
    assert not np.allclose(a[~before], b[~before])  # the test can fail: later forecasts do move


def test_garch_forecasts_do_not_depend_on_a_later_missing_price():
    """A missing close after T inside a refit block leaves every forecast dated before T in place."""
    panel = close_panel(n_days=800, n_assets=1)
    A, R = grid(panel, 600, 790)
    gap = panel.close.copy()
    gap[650, 0] = np.nan
    holed = PricePanel(dates=panel.dates, assets=panel.assets, close=gap, source="gap")
    g = GARCHForecaster(refit=63, window=500)
    a = g.predict(EpisodeBuilder(panel), A, R)
    b = g.predict(EpisodeBuilder(holed), A, R)
    before = R < 650
    np.testing.assert_array_equal(a[before], b[before])
    assert np.isfinite(b).all()  # after the gap too: the series skips the missing return


def test_ewma_forecaster_follows_each_new_builder():
    """A forecaster reused over builders of different panels (whose ids the allocator recycles)
    forecasts each panel's own EWMA."""
    ewma = EWMAForecaster()
    panels = [close_panel(n_days=300, n_assets=2, seed=seed) for seed in range(6)]
    for panel in panels:  # CPython usually hands a freed builder's address to the next one
        builder = EpisodeBuilder(panel)
        A, R = grid(panel, 100, 300)
        np.testing.assert_allclose(ewma.predict(builder, A, R), F.ewma_vol(panel.close, 0.94)[R, A] ** 2, rtol=1e-12)
        del builder
        gc.collect()


def test_one_missing_close_costs_at_most_the_days_it_touches():
    """A single missing close bridges: the asset keeps its forecasts except on the missing day
    (and the model's is exact elsewhere up to the gap)."""
    panel = close_panel(n_days=700, n_assets=2)
    m = 500
    gap = panel.close.copy()
    gap[m, 0] = np.nan
    holed = PricePanel(dates=panel.dates, assets=panel.assets, close=gap, source="gap")
    A, R = grid(panel, 400, 699)
    model = MetaForecaster(make_learner("maml", TaskSpec().n_features), history=60)
    full = model.predict(EpisodeBuilder(panel), A, R)
    holey = model.predict(EpisodeBuilder(holed), A, R)
    lost = np.isfinite(full) & ~np.isfinite(holey)
    assert lost.sum() == 1 and R[lost][0] == m and A[lost][0] == 0
    before = R < m
    np.testing.assert_array_equal(full[before], holey[before])
    np.testing.assert_array_equal(full[A == 1], holey[A == 1])


def test_meta_forecasts_in_blocks_of_tasks_are_the_same_bits():
    """Bounded memory: the forecast tasks built a few at a time (blocks that split a history
    length's pairs, a young asset's shorter histories among them) give the forecasts of one block
    holding them all, bit for bit."""
    panel = close_panel(n_days=400, n_assets=3)
    A, R = grid(panel, 0, 399)
    learner = make_learner("maml", TaskSpec().n_features)
    whole = MetaForecaster(learner, history=60).predict(EpisodeBuilder(panel), A, R)
    blocks = MetaForecaster(learner, history=60, block=7, chunk=5).predict(EpisodeBuilder(panel), A, R)
    np.testing.assert_array_equal(whole, blocks)
    assert np.isfinite(whole).sum() > 1000
    for bad in (dict(block=0), dict(chunk=-1), dict(history=0)):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be an int >= 1"):
            MetaForecaster(learner, **bad)


def test_bridge_gaps_is_causal_and_bounded():
    c = np.array([[np.nan], [1.0], [np.nan], [np.nan], [2.0]] + [[np.nan]] * 7 + [[3.0]])
    b = bridge_gaps(c, max_gap=5)[:, 0]
    assert np.isnan(b[0]) and b[2] == b[3] == 1.0 and b[4] == 2.0
    assert (b[5:10] == 2.0).all() and np.isnan(b[10:12]).all() and b[12] == 3.0


@pytest.fixture(scope="module")
def evaluated():
    panel = close_panel(n_days=900, n_assets=3, seed=2)
    builder = EpisodeBuilder(panel)
    A, R = grid(panel, 500, 899 - 1)
    fc = {"ewma": EWMAForecaster().predict(builder, A, R), "har": HARForecaster().predict(builder, A, R)}
    return panel, builder, A, R, fc


def test_student_t_shape_is_fitted_before_the_evaluation(evaluated):
    panel, builder, A, R, fc = evaluated
    ev = evaluate(builder, A, R, fc)
    assert ev.meta["student_t_nu_fit"]["returns_through"] == str(panel.dates[R.min()])
    altered = altered_after(panel, 600, factor=2.0)
    b2 = EpisodeBuilder(altered)
    ev2 = evaluate(b2, A, R, {"ewma": EWMAForecaster().predict(b2, A, R), "har": HARForecaster().predict(b2, A, R)})
    assert ev2.meta["student_t_nu"] == ev.meta["student_t_nu"]


def test_basel_zones_are_per_asset_over_its_last_250_days(evaluated):
    panel, builder, A, R, fc = evaluated
    ev = evaluate(builder, A, R, fc)
    b = ev.details["ewma"]["basel_1pct_normal"]
    assert set(b["per_asset"]) == set(panel.assets)
    assert all(v["n"] == 250 for v in b["per_asset"].values())
    assert b["pooled"]["n"] == 750 and sum(b["zone_counts"].values()) == 3
    f = ev.forecasts[ev.forecasts["model"] == "ewma"]
    for asset, v in b["per_asset"].items():
        last = f[f["asset"] == asset].sort_values("date").tail(250)
        assert v["exceedances"] == int((last["next_return"] < last["var_1"]).sum())


def test_an_empty_asset_and_a_gap_are_reported(evaluated):
    panel = close_panel(n_days=900, n_assets=3, seed=2)
    close = panel.close.copy()
    close[:, 2] = np.nan
    close[700, 1] = np.nan
    holed = PricePanel(dates=panel.dates, assets=panel.assets, close=close, source="holes")
    builder = EpisodeBuilder(holed)
    A, R = grid(holed, 500, 898)
    ev = evaluate(builder, A, R, {"ewma": EWMAForecaster().predict(builder, A, R),
                                  "har": HARForecaster().predict(builder, A, R)})
    cov = ev.meta["coverage"]
    assert cov[panel.assets[2]]["evaluable"] == 0 and cov[panel.assets[2]]["asked"] == 398
    assert cov[panel.assets[1]]["evaluable"] == 398 - 2  # the missing day and the day before it
    assert panel.assets[2] not in ev.meta["assets"]
    from metarisk_fast.report import render_markdown
    assert f"- {panel.assets[2]}: no day with a realised target" in render_markdown([ev], "t")


@pytest.mark.parametrize("kind", ["maml", "head"])
def test_meta_forecasts_with_gaps_use_only_the_past(kind):
    """With missing closes before and after T, changing every price after T (and adding gaps
    there) moves no forecast dated at or before T (the head learner's rows normalised each by its
    own anchor included)."""
    panel = close_panel(n_days=800, n_assets=2, seed=5)
    close = panel.close.copy()
    close[450, 0] = close[451, 0] = np.nan
    before = PricePanel(dates=panel.dates, assets=panel.assets, close=close, source="gaps")
    cut = 600
    later = altered_after(before, cut).close.copy()
    later[650:653, 1] = np.nan
    after = PricePanel(dates=panel.dates, assets=panel.assets, close=later, source="gaps, altered")
    A, R = grid(panel, 400, 800)
    model = MetaForecaster(make_learner(kind, TaskSpec().n_features), history=60)
    a = model.predict(EpisodeBuilder(before), A, R)
    b = model.predict(EpisodeBuilder(after), A, R)
    early = R <= cut
    np.testing.assert_array_equal(a[early], b[early])
    assert np.isfinite(a[early]).mean() > 0.95 and not np.allclose(a[~early], b[~early], equal_nan=True)


def test_bad_arguments_of_the_new_entry_points():
    builder = EpisodeBuilder(close_panel(n_days=300, n_assets=2))
    for ids in (np.array([-1, 2]), np.array([[1, 2]]), np.array([0.5, 1.5])):
        with pytest.raises(ValueError, match="task_ids must be a 1-D array of ints >= 0"):
            builder.episodes(seed=0, task_ids=ids)
    with pytest.raises(ValueError, match="max_gap must be an int >= 0"):
        bridge_gaps(np.ones((3, 1)), max_gap=-1)
    A, R = grid(builder.panel, 100, 200)
    with pytest.raises(ValueError, match="expected"):
        evaluate(builder, A, R, {"ewma": np.ones(5)})
    with pytest.raises(ValueError, match="in_sample"):
        evaluate(builder, A, R, {"ewma": EWMAForecaster().predict(builder, A, R)}, in_sample=np.ones(3, bool))
