"""Young assets (tasks/young.py): inputs defined from the second price on with what the stretch
has, the youth input, a forecast (and VaR / ES) on every day from age 2, nothing read from before
a listing or a long gap, nothing from after t; odd young inputs get a forecast or a named refusal."""
import numpy as np
import pandas as pd
import pytest
import torch

from metarisk_fast import datasets
from metarisk_fast.data import PricePanel
from metarisk_fast.forecasting import MetaForecaster, make_learner
from metarisk_fast.forecasting.forecasters import every_pair
from metarisk_fast.tasks import AGE_SCALE, EpisodeBuilder, TaskSpec
from metarisk_fast.tasks.episodes import CLOSE_FEATURES


@pytest.fixture(scope="module")
def listed():
    """Four stocks, 2015-2017; the second lists on row 100, the third has a 30-day gap from row 300."""
    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "JPM", "KO", "XOM"], start="2015-01-01",
                                                           end="2017-12-31")
    close = p.close.copy()
    close[:100, 1] = np.nan
    close[300:330, 2] = np.nan
    return PricePanel(dates=p.dates, assets=p.assets, close=close, source="listed")


def reference_inputs(close: np.ndarray, first: int, t: int) -> tuple[np.ndarray, float]:
    """The young close-to-close volatilities at row t of a stretch whose first price is at row
    ``first`` (NumPy, from the definition) and the youth input."""
    r = np.diff(np.log(close[first:t + 1]))
    n = len(r)
    vols = np.array([np.sqrt(np.mean(r ** 2)) if n < w else np.std(r[-w:], ddof=1) for w in CLOSE_FEATURES.cc_windows])
    return vols, 1.0 - np.log(min(n, AGE_SCALE)) / np.log(AGE_SCALE)


def test_young_inputs_follow_their_definition(listed):
    b = EpisodeBuilder(listed, TaskSpec())
    cc = slice(1, 1 + len(CLOSE_FEATURES.cc_windows))
    for j, first in ((1, 100), (2, 330)):
        assert not np.isfinite(b.x[first, j]).all()  # the stretch's first price: no return yet
        for t in (first + 1, first + 2, first + 5, first + 30, first + 62, first + 63, first + 70, first + 300):
            vols, youth = reference_inputs(listed.close[:, j], first, t)
            np.testing.assert_allclose(np.exp(b.x[t, j, cc] / 2), vols, rtol=1e-9)
            assert b.x[t, j, -1] == pytest.approx(youth, abs=1e-15)
    assert (b.x[400:, 0, -1] == 0).all()  # a year of returns: mature
    assert TaskSpec().feature_names[-1] == "youth" and TaskSpec().n_scaled == TaskSpec().n_features - 1


def test_young_inputs_read_nothing_before_the_stretch_nor_after_t(listed):
    """Prices before a listing or a long gap do not reach the partial windows (the EWMAs carry
    across a gap by design: that past is the asset's own), and prices after t reach nothing at t."""
    b = EpisodeBuilder(listed, TaskSpec())
    moved = listed.close.copy()
    moved[:299, 2] *= np.exp(np.random.default_rng(0).normal(0, 0.05, 299)).cumprod()
    after = EpisodeBuilder(PricePanel(dates=listed.dates, assets=listed.assets, close=moved, source="m"), TaskSpec())
    cc = slice(1, 1 + len(CLOSE_FEATURES.cc_windows))
    np.testing.assert_array_equal(after.x[331:393, 2, cc], b.x[331:393, 2, cc])
    np.testing.assert_array_equal(after.x[331:, 2, -1], b.x[331:, 2, -1])
    t = 140
    later = listed.close.copy()
    later[t + 1:] *= 1.7
    cut = EpisodeBuilder(PricePanel(dates=listed.dates, assets=listed.assets, close=later, source="l"), TaskSpec())
    np.testing.assert_array_equal(cut.x[:t + 1], b.x[:t + 1])
    np.testing.assert_array_equal(cut.anchor[:t + 1], b.anchor[:t + 1])
    np.testing.assert_array_equal(cut.x_ok[:t + 1], b.x_ok[:t + 1])


@pytest.fixture(scope="module")
def forecaster():
    torch.manual_seed(0)
    learner = make_learner("maml", TaskSpec().n_features, (16, 16), 0.05, 3, loss="student_t_nll")
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return MetaForecaster(learner, 60)


def test_a_forecast_on_every_day_from_the_second_price(listed, forecaster):
    b = EpisodeBuilder(listed, TaskSpec())
    f = every_pair(forecaster.predict, b)
    assert np.isnan(f[:101, 1]).all() and np.isfinite(f[101:, 1]).all() and (f[101:, 1] > 0).all()
    assert np.isnan(f[300:331, 2]).all() and np.isfinite(f[331:, 2]).all()  # restarted after the gap
    assert np.isfinite(f[1:, 0]).all()
    # ages 2 and 3 are zero-shot (no realised support row yet); age 4 adapts on one row
    avail = b.available_history(np.array([1, 1, 1]), np.array([101, 102, 103]))
    assert list(avail) == [0, 0, 1]


def test_odd_young_inputs_get_a_forecast_or_a_named_refusal(forecaster):
    """An asset with one price, one listed on the file's last day, a year-long gap inside a file."""
    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "KO", "XOM"], start="2012-01-01",
                                                           end="2015-12-31")
    close = p.close.copy()
    close[:, 0] = np.nan
    close[500, 0] = 100.0  # one price
    close[:-1, 1] = np.nan  # listed on the last day
    close[200:460, 2] = np.nan  # a year without prices
    odd = PricePanel(dates=p.dates, assets=p.assets, close=close, source="odd")
    b = EpisodeBuilder(odd, TaskSpec())
    f = every_pair(forecaster.predict, b)
    assert np.isnan(f[:, 0]).all() and np.isnan(f[:, 1]).all()
    assert np.isfinite(f[461:, 2]).all() and np.isnan(f[200:461, 2]).all()
    # the first forecasts after the year's gap are not the move across it: within 5x the anchor,
    # and the anchor is the EWMA of the asset's own returns
    realised = np.mean(np.diff(np.log(close[460:560, 2])) ** 2)
    assert f[461:470, 2].max() < 50 * realised


def test_simulated_listings_hold_only_the_prices_from_the_listing_on():
    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "KO"], start="2010-01-01", end="2014-12-31")
    from metarisk_fast.tasks import simulated_listings

    listed = simulated_listings(p, ["KO"], "2013-12-31", every=100, length=250)
    first = p.row_of(listed.assets[1].split("@")[1])
    assert listed.assets[0] == f"KO@{p.dates[0]}" and first == 100
    np.testing.assert_array_equal(listed.close[:, 1], p.close[first:first + 250, 1])
    assert p.dates[first + 249] <= np.datetime64("2013-12-31")
    assert listed.n_assets == len(range(0, p.row_of("2013-12-31", "right") - 250 + 1, 100))
    b = EpisodeBuilder(listed, TaskSpec())
    assert (b.x[1, :, -1] == 1.0).all()  # row 1: the first return of every listing
    short = simulated_listings(p.select(end="2010-03-31"), ["KO"], "2010-03-31", length=250)
    assert short.n_assets == 1 and short.n_days == p.select(end="2010-03-31").n_days
    from metarisk_fast.data import DataError

    for kw, message in ((dict(every=0), "every must be an int >= 1"), (dict(length=1), "length must be an int >= 2"),
                        (dict(start="2014-06-01"), "no 250-day listing fits between 2014-06-01")):
        with pytest.raises((ValueError, DataError), match=message):
            simulated_listings(p, ["KO"], "2014-12-31", **{"length": 250, **kw})
    with pytest.raises(DataError, match="unknown assets"):
        simulated_listings(p, ["NOPE"], "2014-12-31")
    with pytest.raises(DataError, match="fewer than two days up to 2009-01-01"):
        simulated_listings(p, ["KO"], "2009-01-01")


def test_meta_training_draws_young_batches_from_zero_shot_on():
    """Every third meta-batch comes from the simulated listings, their support sizes from 0 up."""
    from metarisk_fast.forecasting import train_meta
    from metarisk_fast.forecasting.training import YOUNG_SUPPORTS, _meta_batch
    from metarisk_fast.tasks import simulated_listings

    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "KO", "XOM"], start="2008-01-01",
                                                           end="2012-12-31")
    spec = TaskSpec(support=60, query=5)
    builder = EpisodeBuilder(p, spec)
    young = EpisodeBuilder(simulated_listings(p, p.assets, "2012-12-31"), spec)
    ids = np.arange(8)
    assert _meta_batch(builder, p.assets, "2012-12-31", 0, ids, 0, (60,), young).xs.shape[1] == 60
    first_young = _meta_batch(builder, p.assets, "2012-12-31", 0, ids, 2, (60,), young)
    assert first_young.xs.shape[1] == YOUNG_SUPPORTS[0] == 0
    assert (first_young.query_rows[:, 0] == 1).all()  # the listing's first return is a query
    assert _meta_batch(builder, p.assets, "2012-12-31", 0, ids, 8, (60,), young).xs.shape[1] == YOUNG_SUPPORTS[1]
    torch.manual_seed(0)
    learner = make_learner("maml", spec.n_features, (8,), 0.05, 2, loss="student_t_nll")
    run = train_meta(learner, builder, p.assets, "2012-12-31", steps=9, batch=8, young=young)
    assert len(run["losses"]) == 9 and np.isfinite(run["losses"]).all() and run["skipped"] == 0


def test_the_young_anchor_is_the_stretchs_own_ewma_and_a_zero_first_return_waits():
    """While a stretch is young the anchor is the EWMA of its own returns with weights summing to
    one; an asset whose only return is zero has no scale and no forecast until it moves."""
    from metarisk_fast.tasks.episodes import ANCHOR_LAMBDA

    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "KO"], start="2016-01-01", end="2017-12-31")
    close = p.close.copy()
    close[:50, 1] = np.nan
    close[51, 1] = close[50, 1]  # listed on row 50, unchanged on row 51
    b = EpisodeBuilder(PricePanel(dates=p.dates, assets=p.assets, close=close, source="z"), TaskSpec())
    r = np.diff(np.log(close[50:, 1]))
    lam = ANCHOR_LAMBDA
    for n in (2, 3, 10, 100):
        w = (1 - lam) * lam ** np.arange(n - 1, -1, -1)
        np.testing.assert_allclose(b.anchor[50 + n, 1], (w @ r[:n] ** 2) / w.sum(), rtol=1e-12)
    assert not b.x_ok[51, 1] and b.x_ok[52, 1]
    np.testing.assert_array_equal(b.ewma_variance[310:, 1], b.anchor[310:, 1])  # mature: RiskMetrics itself


def test_a_young_anchor_starts_from_the_prior_variance():
    """With TaskSpec.young_prior v the young anchor is the stretch's EWMA started at v (v weighs
    lam^n); a zero first return then has a scale to forecast from; mature rows are RiskMetrics."""
    from metarisk_fast.tasks.episodes import ANCHOR_LAMBDA

    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "KO"], start="2016-01-01", end="2017-12-31")
    close = p.close.copy()
    close[:50, 1] = np.nan
    close[51, 1] = close[50, 1]  # listed on row 50, unchanged on row 51
    v, lam = 3e-4, ANCHOR_LAMBDA
    b = EpisodeBuilder(PricePanel(dates=p.dates, assets=p.assets, close=close, source="z"), TaskSpec(young_prior=v))
    r = np.diff(np.log(close[50:, 1]))
    for n in (1, 2, 3, 10, 100):
        w = (1 - lam) * lam ** np.arange(n - 1, -1, -1)
        np.testing.assert_allclose(b.anchor[50 + n, 1], lam ** n * v + w @ r[:n] ** 2, rtol=1e-12)
    assert b.x_ok[51, 1] and b.anchor[51, 1] == pytest.approx(lam * v, rel=1e-12)
    np.testing.assert_array_equal(b.ewma_variance[310:, 1], b.anchor[310:, 1])
    with pytest.raises(ValueError, match="young_prior must be a finite variance"):
        TaskSpec(young_prior=float("nan"))


def test_the_prior_is_the_median_variance_of_the_training_rows_alone():
    """EpisodeBuilder.with_young_prior: the median RiskMetrics variance of the training assets'
    rows with PRIOR_MIN_RETURNS returns up to the training end; later prices and other assets do
    not move it; too short a history is refused by name."""
    from metarisk_fast.data import DataError
    from metarisk_fast.tasks.young import PRIOR_MIN_RETURNS

    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "JPM", "KO"], start="2012-01-01",
                                                       end="2016-12-31")
    b = EpisodeBuilder(p, TaskSpec())
    end = 700
    with_prior = b.with_young_prior(["AAPL", "KO"], end)
    # every stretch starts on row 0: row t has t returns
    want = np.median(b.ewma_variance[PRIOR_MIN_RETURNS:end + 1][:, [0, 2]])
    assert with_prior.spec.young_prior == want > 0
    np.testing.assert_array_equal(with_prior.anchor[300:], b.anchor[300:])  # mature rows do not depend on it
    rng = np.random.default_rng(0)
    moved = p.close.copy()
    moved[end + 1:] *= np.exp(rng.normal(0, 0.2, (p.n_days - end - 1, 3))).cumprod(axis=0)  # after the end
    moved[:, 1] *= np.exp(rng.normal(0, 0.1, p.n_days)).cumprod()  # another asset
    other = EpisodeBuilder(PricePanel(dates=p.dates, assets=p.assets, close=moved, source="m"), TaskSpec())
    assert other.with_young_prior(["AAPL", "KO"], end).spec.young_prior == want
    with pytest.raises(DataError, match="too little history to train on: no training asset has 63 returns"):
        b.with_young_prior(["AAPL"], 40)
    with pytest.raises(DataError, match="NOPE"):
        b.with_young_prior(["AAPL", "NOPE"], end)
