"""Targets, episodes and splits: the leak test for every horizon and split."""
import numpy as np
import pytest
from dataclasses import replace

from metarisk_fast import datasets
from metarisk_fast.data import DataError
from metarisk_fast.tasks import EpisodeBuilder, TaskSpec, asset_split, realized_variance, time_split


@pytest.fixture(scope="module")
def panel():
    return datasets.synthetic_ohlc(n_days=700, n_assets=6, seed=2)


def test_realized_variance_is_the_mean_of_future_squared_returns(panel):
    c = panel.close
    for h in (1, 5, 22):
        rv = realized_variance(c, h)
        r = np.log(c[1:] / c[:-1])
        t = 100
        np.testing.assert_allclose(rv[t], (r[t:t + h] ** 2).mean(0), rtol=1e-12)
        assert np.isnan(rv[-h:]).all() and np.isfinite(rv[: len(c) - h]).all()


@pytest.mark.parametrize("h", [1, 5, 22])
def test_episode_layout_and_no_leak(panel, h):
    spec = TaskSpec(horizon=h, support=40, query=10)
    eb = EpisodeBuilder(panel, spec)
    batch = eb.episodes(n=32, seed=1)
    assert batch.xs.shape == (32, 40, spec.n_features) and batch.yq.shape == (32, 10, 1)
    assert len(spec.feature_names) == spec.n_features
    np.testing.assert_array_equal(batch.query_dates, panel.dates[batch.query_rows])
    assert np.all(batch.support_dates[:, -1] < batch.query_dates[:, 0])
    q0 = batch.query_rows[:, 0]
    # every support target is realised strictly before the first query day
    assert np.all(batch.support_rows[:, -1] + h < q0)
    # alter every price from each episode's first query day on: the support set must not change
    for b in range(0, 32, 8):
        altered = replace(panel, close=panel.close.copy(), open=panel.open.copy(),
                          high=panel.high.copy(), low=panel.low.copy())
        rng = np.random.default_rng(b)
        for a in (altered.close, altered.open, altered.high, altered.low):
            a[q0[b]:] *= np.exp(rng.normal(0, 0.05, a[q0[b]:].shape))
        altered.high[q0[b]:] = np.maximum.reduce([altered.high[q0[b]:], altered.open[q0[b]:], altered.close[q0[b]:]])
        altered.low[q0[b]:] = np.minimum.reduce([altered.low[q0[b]:], altered.open[q0[b]:], altered.close[q0[b]:]])
        eb2 = EpisodeBuilder(altered, spec)
        again = eb2._gather(batch.asset[b:b + 1], batch.support_rows[b:b + 1], batch.query_rows[b:b + 1])
        np.testing.assert_array_equal(again.xs, batch.xs[b:b + 1])
        np.testing.assert_array_equal(again.ys, batch.ys[b:b + 1])
        assert not np.array_equal(again.yq, batch.yq[b:b + 1])  # the query did change


@pytest.mark.parametrize("h", [1, 5, 22])
def test_time_and_asset_splits_with_embargo(panel, h):
    spec = TaskSpec(horizon=h, support=30, query=10)
    eb = EpisodeBuilder(panel, spec)
    train_end, test_start = time_split(panel, panel.dates[400], h)
    assert test_start - train_end >= h + 1
    train_assets, test_assets = asset_split(panel.assets, 2, seed=0)
    assert set(train_assets).isdisjoint(test_assets) and len(test_assets) == 2
    tr = eb.episodes(train_assets, end=panel.dates[train_end], n=50, seed=0)
    # every training target (query and support) is realised by train_end
    assert tr.query_rows.max() + h <= train_end
    assert set(tr.asset_names) <= set(train_assets)
    te = eb.episodes(test_assets, start=panel.dates[test_start], stride=5)
    assert te.support_rows.min() >= test_start and set(te.asset_names) <= set(test_assets)
    assert asset_split(panel.assets, 2, seed=0) == (train_assets, test_assets)


def test_deterministic_under_seed(panel):
    eb = EpisodeBuilder(panel, TaskSpec(support=20, query=5))
    a, b = eb.episodes(n=10, seed=3), eb.episodes(n=10, seed=3)
    np.testing.assert_array_equal(a.xs, b.xs)
    assert not np.array_equal(a.xs, eb.episodes(n=10, seed=4).xs)


def test_normalisation_by_support_scale_and_anchor(panel):
    eb = EpisodeBuilder(panel, TaskSpec(support=50, query=5))
    b = eb.episodes(n=8)
    rv = eb.y[b.support_rows, b.asset[:, None]]
    np.testing.assert_allclose(b.ys[..., 0] ** 2, np.clip(rv / eb.anchor[b.support_rows, b.asset[:, None]], 0.05 ** 2, 400),
                               rtol=1e-5)
    # log-variance features are relative to the support's mean realised variance
    np.testing.assert_allclose(b.xs[..., 2], np.clip(eb.x[b.support_rows, b.asset[:, None], 2]
                                                     - np.log(rv.mean(1))[:, None], -8, 8), rtol=1e-5, atol=1e-5)


def test_forecast_tasks_use_only_the_past(panel):
    eb = EpisodeBuilder(panel, TaskSpec(horizon=5, support=30, query=1))
    rows = np.arange(600, 690)
    batch, ok = eb.forecast_tasks(np.full(len(rows), 2), rows, history=40)
    assert ok.all() and batch.xs.shape == (90, 40, eb.spec.n_features)
    assert np.all(batch.support_rows[:, -1] + 5 < batch.query_rows[:, 0])
    early, ok_early = eb.forecast_tasks(np.array([0, 0]), np.array([10, 300]), history=40)
    assert ok_early.tolist() == [False, True] and len(early) == 1


def test_available_history_counts_usable_rows(panel):
    eb = EpisodeBuilder(panel, TaskSpec(horizon=5, support=30, query=1))
    first_ok = int(np.argmax((eb.x_ok & eb.y_ok)[:, 1]))
    rows = np.array([first_ok + 5, first_ok + 5 + 10, 600])
    got = eb.available_history(np.full(3, 1), rows)
    assert got[0] == 0 and got[1] == 10 and got[2] == 600 - 5 - first_ok


def test_errors(panel):
    with pytest.raises(ValueError, match="horizon must be an int >= 1"):
        TaskSpec(horizon=0)
    with pytest.raises(DataError, match="too little history"):
        EpisodeBuilder(panel, TaskSpec(support=600, query=200)).episodes(n=1)
    with pytest.raises(DataError, match="cannot hold out"):
        asset_split(panel.assets, 6)
    with pytest.raises(DataError, match="no training or no test period"):
        time_split(panel, panel.dates[-1], 5)
    close_only = datasets.load_sp500_20(warn_data=False)
    from metarisk_fast.features import FeatureSet
    with pytest.raises(DataError, match="needs OHLC"):
        EpisodeBuilder(close_only, TaskSpec(features=FeatureSet()))


@pytest.mark.parametrize("h", [1, 5])
def test_range_variance_is_the_mean_daily_garman_klass_ahead(panel, h):
    """RV proxy with OHLC: the mean over t+1..t+h of each day's Garman-Klass variance."""
    from metarisk_fast.reference import features as ref
    from metarisk_fast.tasks import range_variance

    daily = ref.garman_klass_vol(panel.open, panel.high, panel.low, panel.close, 1) ** 2
    got = range_variance(panel, h)
    T = panel.n_days
    want = np.full(daily.shape, np.nan)
    want[: T - h] = np.mean([daily[1 + i: T - h + 1 + i] for i in range(h)], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.isnan(got[T - h:]).all()


def test_normalise_task_matches_the_numpy_formula():
    """The compiled normalisation against the plain NumPy statement of it: c = max(mean of the
    support's realised variances, 1e-12); log return / sqrt(c), log-variances - log(c); clipped."""
    from metarisk_fast.tasks import normalise_query, normalise_task

    rng = np.random.default_rng(3)
    R, D, B, K, Q = 400, 5, 32, 60, 2
    x = np.concatenate([rng.normal(0, 0.02, (R, 1)), rng.normal(-9, 3, (R, D - 1))], 1)
    y = rng.lognormal(-9, 1.5, R)
    y[:5] = 0.0  # a flat stretch: the floor
    s_idx, q_idx = rng.integers(0, R, (B, K)), rng.integers(0, R, (B, Q))
    s_idx[0] = np.arange(5).repeat(12)
    xs, xq, c = normalise_task(x, y, s_idx, x, q_idx)
    c_ref = np.maximum(y[s_idx].mean(axis=1), 1e-12)

    def ref(rows):
        out = rows.copy()
        out[..., 0] = rows[..., 0] / np.sqrt(c_ref)[:, None]
        out[..., 1:] = rows[..., 1:] - np.log(c_ref)[:, None, None]
        return np.clip(out, -8.0, 8.0).astype(np.float32)

    np.testing.assert_allclose(c, c_ref, rtol=1e-13)
    np.testing.assert_allclose(xs, ref(x[s_idx]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xq, ref(x[q_idx]), rtol=1e-6, atol=1e-6)
    assert xs.dtype == xq.dtype == np.float32 and (np.abs(xs) <= 8).all()
    np.testing.assert_array_equal(normalise_query(x, q_idx, c), xq)  # the same rows, the same scale


def test_forecasts_stay_within_five_times_the_anchor():
    """The decoded forecast is the anchor times e^z with z clipped to [-ln 5, ln 5]: an inner
    loop gone astray cannot forecast 100x below RiskMetrics; inside the bound nothing changes."""
    from metarisk_fast.tasks import TARGET

    anchor = np.array([1e-4, 1e-4, 1e-4, 2e-4, 3e-4])
    z = np.array([-6.0, 6.0, 0.0, 0.5, -1.5])
    np.testing.assert_allclose(TARGET.decode(z, anchor), [2e-5, 5e-4, 1e-4, 2e-4 * np.exp(0.5), 3e-4 * np.exp(-1.5)],
                               rtol=1e-14)


def test_targets_are_floored_and_capped():
    """sqrt(RV / anchor) lies in [0.05, 20]: an unchanged close gives 0.05, not 0 (where the
    likelihood would reward an ever lower forecast); an unrealised target stays NaN."""
    from metarisk_fast.tasks import TARGET

    y = TARGET.encode(np.array([0.0, 1e-4, 1e-2, 1.0, np.nan]), np.full(5, 1e-4))[:, 0]
    np.testing.assert_allclose(y[:4], [0.05, 1.0, 10.0, 20.0], rtol=1e-6)
    assert np.isnan(y[4]) and y.dtype == np.float32


def test_a_calendar_gap_changes_nothing_before_it_and_nothing_after_t_reaches_t(panel):
    """Calendar breaks come from each date and the one before it: a gap changes no row before it,
    and prices and dates after t (another gap among them) change no input or anchor at or before t."""
    def with_dates(p, shift_from, days, close=None):
        dates = np.busday_offset(p.dates, np.where(np.arange(p.n_days) >= shift_from, days, 0), roll="forward")
        return replace(p, dates=dates, close=p.close if close is None else close)

    plain = EpisodeBuilder(panel)
    holed = EpisodeBuilder(with_dates(panel, 300, 200))
    np.testing.assert_array_equal(holed.x[:300], plain.x[:300])
    assert np.isnan(holed.close[300]).all() and not np.isnan(plain.close[300]).any()
    t = 450
    close = panel.close.copy()
    close[t + 1:] *= np.exp(np.random.default_rng(0).normal(0, 0.2, close[t + 1:].shape))
    later = with_dates(replace(panel, close=close), 300, 200)
    later = replace(later, dates=np.busday_offset(later.dates, np.where(np.arange(panel.n_days) > t + 20, 50, 0),
                                                  roll="forward"))
    perturbed = EpisodeBuilder(later)
    np.testing.assert_array_equal(perturbed.x[:t + 1], holed.x[:t + 1])
    np.testing.assert_array_equal(perturbed.anchor[:t + 1], holed.anchor[:t + 1])
