"""The streaming RiskEngine: bar-by-bar replay equals the batch forecast (bit for bit for the
gradient-based learners), with gaps, late listings and assets added mid-stream; saved, restored,
copied and peeked streams continue exactly; rejected bars change nothing."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from metarisk_fast import RiskEngine, datasets
from metarisk_fast.volatility import jobs
from metarisk_fast.data import DataError, PricePanel
from metarisk_fast.evaluation import risk_columns
from metarisk_fast.features import FeatureSet
from metarisk_fast.forecasting import make_learner, save_model
from metarisk_fast.forecasting.registry import HEAD_WINDOW
from metarisk_fast.streaming.engine import STATE_FORMAT
from metarisk_fast.tasks import TaskSpec


def _model(tmp_path_factory, kind: str, spec: TaskSpec = TaskSpec()):
    """A small model whose outputs depend on its inputs (perturbed from the zero-output start)."""
    torch.manual_seed(1)
    learner = make_learner(kind, spec.n_features, (16, 16), 0.05, 3)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = tmp_path_factory.mktemp(kind)
    save_model(out, kind, learner, spec, history=60, hidden=(16, 16), info={})
    return out


@pytest.fixture(scope="module")
def maml_dir(tmp_path_factory):
    return _model(tmp_path_factory, "maml")


@pytest.fixture(scope="module", params=["maml", "head"])
def exact_dir(request, tmp_path_factory):
    """The two exact engine paths: a gradient learner re-adapted on every bar, and the head
    learner's running statistics (learners/head.py); young anchors start from a prior variance."""
    kind = request.param
    return _model(tmp_path_factory, kind, TaskSpec(scale="row" if kind == "head" else "support", young_prior=3e-4))


@pytest.fixture(scope="module")
def panel():
    p = datasets.load_sp500_20(warn_data=False)
    return p.select(assets=list(p.assets[:5]), start="2018-06-01", end="2020-12-31")


def gappy(panel: PricePanel) -> PricePanel:
    """Missing closes of every kind: single days, a bridged 4-day gap, a 9-day gap (too long to
    bridge: the stretch restarts), a late listing."""
    close = panel.close.copy()
    close[100, 0] = np.nan
    close[300:304, 1] = np.nan
    close[200:209, 2] = np.nan
    close[:180, 3] = np.nan
    close[400, :] = np.nan
    return PricePanel(dates=panel.dates, assets=panel.assets, close=close, source="gappy")


def replay(engine: RiskEngine, panel: PricePanel, start: int = 0) -> pd.DataFrame:
    frames = [engine.update(panel.close[i], date=panel.dates[i]).to_frame() for i in range(start, panel.n_days)]
    return pd.concat(frames).sort_values(["date", "asset"], kind="stable").reset_index(drop=True)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


def batch(model, panel: PricePanel) -> pd.DataFrame:
    return jobs.forecast(model, panel).reset_index(drop=True)


@pytest.mark.parametrize("data", ["clean", "gappy"])
def test_replay_is_the_batch_forecast_bit_for_bit(exact_dir, panel, data):
    p = panel if data == "clean" else gappy(panel)
    engine = RiskEngine.from_model(exact_dir, list(p.assets))
    got, want = replay(engine, p), batch(exact_dir, p)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
    # the head learner's engine runs on its running statistics, never re-adapting from the store
    assert (engine.state_dict()["state.head_stats"].any()) == (exact_dir.name.startswith("head"))
    # and keeps the rows its head adapts on (its window) of the model's 60 (the batch path gives it 60)
    assert engine.history == (HEAD_WINDOW if exact_dir.name.startswith("head") else 60)


def test_a_minimum_history_beyond_the_head_window_streams_as_the_batch_path(tmp_path_factory, panel):
    """A head learner with a window caps the history of both paths (learners.support_rows): an
    asset asked for more support rows than the window forecasts once it has the window's, in the
    engine and in the batch forecaster alike."""
    from metarisk_fast.forecasting import MetaForecaster, load_model
    from metarisk_fast.tasks import EpisodeBuilder
    from metarisk_fast.volatility.jobs import grid

    learner, spec, _ = load_model(_model(tmp_path_factory, "head", TaskSpec(scale="row")))
    p = gappy(panel)
    engine = RiskEngine(learner, spec, list(p.assets), history=60, min_history=3 * HEAD_WINDOW)
    assert engine.history == HEAD_WINDOW and engine.bars_needed == 1 + HEAD_WINDOW + spec.horizon + 1
    got = np.stack([engine.update(p.close[i], date=p.dates[i]).variance for i in range(p.n_days)])
    A, R = grid(p, p.assets, 0, p.n_days - 1)
    want = np.full((p.n_days, p.n_assets), np.nan)
    want[R, A] = MetaForecaster(learner, 60, min_history=3 * HEAD_WINDOW).predict(EpisodeBuilder(p, spec), A, R)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got[HEAD_WINDOW + 3, [0, 1, 2, 4]]).all()  # ready with the window's rows (3 lists late)


def test_head_bar_parts_cover_the_assets_in_whole_blocks():
    """head_bar's parts (part_bounds): one part below PARTS_ASSETS assets or on one thread; else one
    a thread, covering 0..n in order in whole blocks of the head statistics, part 0 (which also
    observes the bar) with fewer assets than any other."""
    from metarisk_fast.learners._head_kernels import HEAD_BLOCK
    from metarisk_fast.streaming._kernels import PARTS_ASSETS, part_bounds

    assert part_bounds(PARTS_ASSETS - 1, 2).tolist() == [0, PARTS_ASSETS - 1]
    assert part_bounds(5000, 1).tolist() == [0, 5000]
    for n, threads in ((PARTS_ASSETS, 2), (500, 2), (5000, 2), (500, 3), (1000, 4), (4999, 2)):
        bounds = part_bounds(n, threads)
        sizes = np.diff(bounds)
        assert len(bounds) == threads + 1 and bounds[0] == 0 and bounds[-1] == n and (sizes >= 0).all()
        assert (bounds[:-1] % HEAD_BLOCK == 0).all()
        assert sizes[0] <= sizes[1:].min()
    assert np.diff(part_bounds(5000, 2))[0] > 0  # observing costs less than pushing: part 0 takes some


@pytest.mark.parametrize("parts, observe_cost", [(2, None), (3, None), (2, 0.2)])
def test_a_wide_head_bar_in_parts_is_the_batch_forecast_bit_for_bit(tmp_path_factory, monkeypatch, parts,
                                                                    observe_cost):
    """From PARTS_ASSETS assets the head learner's bar runs in parts side by side (part 0 the bar's
    own rows through the body, then like the others the stores and solves of whole blocks of
    assets, none at this width unless observing is cheap: ``observe_cost``): the replay of a gappy
    panel is still the batch forecast bit for bit, and the snapshot's columns that the bar computes
    itself (vol, ready, the risk columns) are risk_columns' of its variance. The engine is told how
    many parts whatever Numba's pool holds, so the parts' kernel runs on every machine (on one
    thread its parts in turn)."""
    import numba
    from metarisk_fast.streaming import _kernels
    from metarisk_fast.streaming._kernels import PARTS_ASSETS

    if observe_cost is not None:
        monkeypatch.setattr(_kernels, "OBSERVE_COST", observe_cost)
        assert _kernels.part_bounds(PARTS_ASSETS + 12, parts)[1] > 0

    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    model = _model(tmp_path_factory, "head", TaskSpec(scale="row"))
    p = datasets.synthetic_ohlc(n_days=320, n_assets=PARTS_ASSETS + 12, seed=3)
    close = p.close.copy()
    close[100, :40] = np.nan  # a missing day, bridged
    close[150:160, 40:60] = np.nan  # a gap too long to bridge: those stretches restart
    close[:200, 60:70] = np.nan  # late listings
    p = PricePanel(dates=p.dates, assets=p.assets, close=close, source="wide")
    try:
        engine = RiskEngine.from_model(model, list(p.assets))
        engine._bar_threads = parts
        got, want = replay(engine, p), batch(model, p)
        snap = engine.peek(p.close[-1], date=p.dates[-1] + np.timedelta64(1, "D"))
    finally:
        numba.set_num_threads(before)
    assert len(want) > 100 * p.n_assets
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
    np.testing.assert_array_equal(snap.vol, np.sqrt(snap.variance))
    np.testing.assert_array_equal(snap.ready, ~np.isnan(snap.variance))
    assert snap.ready.sum() > 100
    for name, col in risk_columns(snap.variance).items():
        np.testing.assert_array_equal(getattr(snap, name), col)


def with_calendar_gap() -> PricePanel:
    """Five stocks, 2016-2020, with 300 dates cut out after the 250th (a file with a hole of more
    than a year): the rows stay consecutive, the calendar jumps."""
    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "JPM", "KO", "XOM", "PG"],
                                                                 start="2016-01-01", end="2020-12-31")
    keep = np.r_[0:250, 550:p.n_days]
    return PricePanel(dates=p.dates[keep], assets=p.assets, close=p.close[keep], source="holed")


def test_a_calendar_gap_restarts_every_asset_in_batch_and_stream_alike(exact_dir):
    """After a gap of more than 5 business days between consecutive dates nothing crosses the gap:
    no forecast until each asset has its history again (the return across the gap would be a year
    and a half's move), and none after it is far above the variance realised after it; the replay
    is the batch forecast bit for bit, and warns on the bar after the gap."""
    from metarisk_fast.data import CalendarGapWarning, calendar_gaps, load_prices

    p = with_calendar_gap()
    missing = int(np.busday_count(p.dates[249] + np.timedelta64(1, "D"), p.dates[250]))
    assert calendar_gaps(p) == [(p.dates[249], p.dates[250], missing)] and missing > 300
    frame = pd.DataFrame(p.close, index=pd.Index(p.dates, name="Date"), columns=list(p.assets))
    with pytest.warns(CalendarGapWarning, match=rf"no prices from {p.dates[249]} to {p.dates[250]}"):
        load_prices(frame)
    want = batch(exact_dir, p)
    engine = RiskEngine.from_model(exact_dir, list(p.assets))
    with pytest.warns(CalendarGapWarning, match=f"bar {p.dates[250]}: {missing} business days after"):
        got = replay(engine, p)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
    assert want[want.date >= p.dates[250]].date.min() >= p.dates[250 + engine.bars_needed]
    # the first 60 days of forecasts after the gap against the variance realised after it
    lo, hi = 250 + engine.bars_needed, 250 + engine.bars_needed + 60
    realised = np.mean(np.diff(np.log(p.close[251:hi + 1]), axis=0) ** 2, axis=0)
    first = want[want.date.between(p.dates[lo], p.dates[hi])].groupby("asset").forecast_variance.max()
    assert (first.to_numpy() <= 5 * realised[[p.assets.index(a) for a in first.index]]).all()
    # the same rows on a calendar without the hole: the move across it enters the features, and
    # the forecasts right after it are several times what the days after it realise
    joined = PricePanel(dates=np.busday_offset(p.dates[0], np.arange(p.n_days), roll="forward"), assets=p.assets,
                        close=p.close, source="joined")
    spliced = batch(exact_dir, joined)
    early = spliced[spliced.date.between(joined.dates[251], joined.dates[hi])].groupby("asset").forecast_variance.max()
    assert (early.to_numpy() > 5 * realised[[p.assets.index(a) for a in early.index]]).any()


@pytest.mark.parametrize("kind", ["metasgd", "memory", "memory_maml"])
def test_every_learner_streams_its_batch_forecast(tmp_path_factory, panel, kind):
    """Gradient learners (the fused kernel, per-task deterministic) agree exactly; the memory
    learners' torch matrix products round by batch size, so to float32 rounding."""
    model = _model(tmp_path_factory, kind)
    p = gappy(panel)
    got, want = replay(RiskEngine.from_model(model, list(p.assets)), p), batch(model, p)
    assert (got[["date", "asset"]].values == want[["date", "asset"]].values).all()
    rtol = 0 if kind == "metasgd" else 3e-7
    np.testing.assert_allclose(got.forecast_variance, want.forecast_variance, rtol=rtol, atol=0)


@pytest.mark.parametrize("proxy", ["squared_returns", "garman_klass"])
def test_an_ohlc_model_streams_its_batch_forecast_bit_for_bit(tmp_path_factory, proxy):
    """Range features (from open, high and low) and the Garman-Klass target: each bar's four
    prices go through the batch forecast's steps, a missing bar and a bridged gap included."""
    spec = TaskSpec(features=FeatureSet(cc_windows=(5, 21), ewma_lambdas=(0.94,), range_window=10), proxy=proxy)
    model = _model(tmp_path_factory, "maml", spec)
    p = datasets.synthetic_ohlc(n_days=400, n_assets=3, seed=3)
    for field in (p.open, p.high, p.low, p.close):
        field[150, 0] = np.nan  # one missing bar
        field[200:203, 1] = np.nan  # a gap of three bars, bridged
    engine = RiskEngine.from_model(model, list(p.assets))
    frames = [engine.update(p.close[i], open=p.open[i], high=p.high[i], low=p.low[i], date=p.dates[i]).to_frame()
              for i in range(p.n_days)]
    got = pd.concat(frames).sort_values(["date", "asset"], kind="stable").reset_index(drop=True)
    want = batch(model, p)
    assert len(want) > 1000
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)


def test_warm_up_then_update_equals_updates_alone(exact_dir, panel):
    p = gappy(panel)
    cut = 350
    whole = replay(RiskEngine.from_model(exact_dir, list(p.assets)), p)
    engine = RiskEngine.from_model(exact_dir, list(p.assets))
    first = engine.warm_up(p.select(end=p.dates[cut - 1]))
    assert first.date == p.dates[cut - 1]
    rest = replay(engine, p, start=cut)
    pd.testing.assert_frame_equal(rest, whole[whole.date >= p.dates[cut]].reset_index(drop=True), check_exact=True)
    last = whole[whole.date == p.dates[cut - 1]]
    np.testing.assert_array_equal(first.variance[first.ready], last.forecast_variance.values)


def test_save_restore_copy_and_peek_continue_exactly(exact_dir, panel, tmp_path):
    p = gappy(panel)
    engine = RiskEngine.from_model(exact_dir, list(p.assets))
    engine.warm_up(p.select(end=p.dates[299]))
    engine.save(tmp_path / "state.npz")
    twin = engine.copy()
    before = engine.state_dict()
    peeked = engine.peek(p.close[300], date=p.dates[300])
    assert same_state(before, engine.state_dict())
    restored = RiskEngine.load(tmp_path / "state.npz", exact_dir)
    outs = [replay(e, p, start=300) for e in (engine, twin, restored)]
    for o in outs[1:]:
        pd.testing.assert_frame_equal(o, outs[0], check_exact=True)
    day = outs[0][outs[0].date == p.dates[300]]
    np.testing.assert_array_equal(peeked.variance[peeked.ready], day.forecast_variance.values)


def test_a_state_from_another_model_is_refused(maml_dir, tmp_path_factory, panel, tmp_path):
    engine = RiskEngine.from_model(maml_dir, list(panel.assets))
    engine.warm_up(panel.select(end=panel.dates[150]))
    engine.save(tmp_path / "state.npz")
    other = _model(tmp_path_factory, "metasgd")
    with pytest.raises(ValueError, match="weights"):
        RiskEngine.load(tmp_path / "state.npz", other)
    (tmp_path / "junk.npz").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="not a saved RiskEngine state"):
        RiskEngine.load(tmp_path / "junk.npz", maml_dir)
    older = engine.state_dict()  # a state an earlier version wrote: its stored slopes may differ in the last bits
    older["meta"] = np.array(json.dumps(json.loads(str(older["meta"])) | {"format": STATE_FORMAT - 1}))
    with pytest.raises(ValueError, match="format"):
        RiskEngine.from_model(maml_dir, list(panel.assets)).load_state_dict(older)


def test_rejected_bars_change_nothing(exact_dir, panel):
    engine = RiskEngine.from_model(exact_dir, list(panel.assets))
    engine.warm_up(panel.select(end=panel.dates[200]))
    before = engine.state_dict()
    good = panel.close[201]
    bad_bars = [
        (dict(bar=np.r_[good[:-1], -1.0]), "non-positive"),
        (dict(bar=good[:3]), "expected 5 assets"),
        (dict(bar={"NOPE": 1.0}), "not in the engine"),
        (dict(bar=good.astype(str)), "real numbers"),
        (dict(bar=good, date=panel.dates[200]), "increasing date order"),
        (dict(bar=good, date="not a date"), "not a date"),
    ]
    for kw, msg in bad_bars:
        bar = kw.pop("bar")
        with pytest.raises((ValueError, TypeError), match=msg):
            engine.update(bar, **kw)
    assert same_state(before, engine.state_dict())


def test_a_mapping_bar_is_a_bar_in_asset_order(maml_dir, panel):
    a, b = (RiskEngine.from_model(maml_dir, list(panel.assets)) for _ in range(2))
    hist = panel.select(end=panel.dates[200])
    a.warm_up(hist), b.warm_up(hist)
    row = panel.close[201]
    got = b.update({name: row[j] for j, name in enumerate(panel.assets) if j != 2}, date=panel.dates[201])
    want = a.update(np.where(np.arange(len(row)) == 2, np.nan, row), date=panel.dates[201])
    np.testing.assert_array_equal(got.variance, want.variance)


def test_assets_added_and_removed_mid_stream(exact_dir, panel):
    """An asset added at bar s forecasts like one whose prices start at s in the batch path; the
    others are unaffected by additions and removals."""
    s = 150
    names = list(panel.assets)
    engine = RiskEngine.from_model(exact_dir, names[:-1])
    for i in range(s):
        engine.update(panel.close[i, :-1], date=panel.dates[i])
    engine.add_asset(names[-1])
    engine.remove_asset(names[0])
    got = replay(engine, PricePanel(dates=panel.dates, assets=tuple(names[1:]), close=panel.close[:, 1:]), start=s)
    late = panel.close.copy()
    late[:s, -1] = np.nan
    want = batch(exact_dir, PricePanel(dates=panel.dates, assets=panel.assets, close=late))
    want = want[(want.date >= panel.dates[s]) & (want.asset != names[0])].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    with pytest.raises(ValueError, match="already"):
        engine.add_asset(names[1])
    with pytest.raises(ValueError, match="not in the engine"):
        engine.remove_asset("NOPE")


def test_warm_up_says_how_many_bars_it_needs(maml_dir, panel):
    engine = RiskEngine.from_model(maml_dir, list(panel.assets))
    n = engine.bars_needed
    with pytest.raises(DataError, match=f"needs at least {n}"):
        engine.warm_up(panel.select(end=panel.dates[n - 2]))
    snap = RiskEngine.from_model(maml_dir, list(panel.assets)).warm_up(panel.select(end=panel.dates[n - 1]))
    moved = panel.close[n - 1] != panel.close[n - 2]  # an asset whose one return is zero has no scale yet
    assert not moved.all() and moved.any()
    np.testing.assert_array_equal(snap.ready, moved)  # the first bar with a forecast is exactly the n-th
    early = RiskEngine.from_model(maml_dir, list(panel.assets))
    assert not any(early.update(panel.close[i]).ready.any() for i in range(n - 1))
    with pytest.raises(DataError, match="no prices for the engine's assets"):
        RiskEngine.from_model(maml_dir, ["NOPE"]).warm_up(panel)


def test_readapt_every_k_approximates_the_exact_stream(maml_dir, panel):
    exact = RiskEngine.from_model(maml_dir, list(panel.assets))
    approx = RiskEngine.from_model(maml_dir, list(panel.assets), readapt_every=5)
    hist = panel.select(end=panel.dates[300])
    exact.warm_up(hist), approx.warm_up(hist)
    e = np.array([exact.update(panel.close[i]).variance for i in range(301, 400)])
    a = np.array([approx.update(panel.close[i]).variance for i in range(301, 400)])
    rel = np.abs(a / e - 1)
    assert 0 < np.median(rel) < 0.1 and rel.max() < 0.5
    with pytest.raises(ValueError, match="gradient-based learner"):
        RiskEngine(make_learner("memory", TaskSpec().n_features, (8,)), TaskSpec(), ["A"], readapt_every=5)


def test_bad_construction_is_named(maml_dir):
    for assets, msg in (([], "one or more"), (["A", "A"], "duplicate"), ([""], "non-empty")):
        with pytest.raises(ValueError, match=msg):
            RiskEngine.from_model(maml_dir, assets)
    with pytest.raises(ValueError, match="readapt_every"):
        RiskEngine.from_model(maml_dir, ["A"], readapt_every=0)


def _wide_csv(panel: PricePanel, path):
    pd.DataFrame(panel.close, index=pd.Index(panel.dates, name="Date"), columns=panel.assets).to_csv(path)
    return path


def test_stream_command_replays_the_forecast_file_byte_for_byte(maml_dir, panel, tmp_path):
    from metarisk_fast.cli import main

    prices = _wide_csv(gappy(panel), tmp_path / "prices.csv")
    args = ["--model", str(maml_dir), "--prices", str(prices), "--start", "2019-06-03", "--quiet"]
    assert main(["stream", *args, "--out", str(tmp_path / "s.csv")]) == 0
    assert main(["forecast", *args, "--out", str(tmp_path / "f.csv")]) == 0
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "f.csv").read_bytes()


def test_the_stream_command_defaults_to_the_shipped_streaming_model(panel, tmp_path):
    """`metarisk stream` without --model replays with the shipped head model (window of
    HEAD_WINDOW rows), `metarisk forecast --model streaming`'s file byte for byte."""
    from metarisk_fast.cli import main
    from metarisk_fast.forecasting import load_model
    from metarisk_fast.volatility.command import STREAMING

    learner, _, meta = load_model(STREAMING)
    assert meta["learner"] == "head" and learner.window == HEAD_WINDOW
    prices = _wide_csv(gappy(panel), tmp_path / "prices.csv")
    args = ["--prices", str(prices), "--start", "2020-06-01", "--quiet"]
    assert main(["stream", *args, "--out", str(tmp_path / "s.csv")]) == 0
    assert main(["forecast", "--model", STREAMING, *args, "--out", str(tmp_path / "f.csv")]) == 0
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "f.csv").read_bytes()


def test_stream_command_serves_a_feed_and_resumes_from_its_state(maml_dir, panel, tmp_path, monkeypatch, capsys):
    """Bars on stdin: one line per asset per bar; a feed split in two runs through --state gives
    the lines of one uninterrupted run; a bad line is reported and skipped."""
    import io

    from metarisk_fast.cli import main

    warm = _wide_csv(panel.select(end=panel.dates[299]), tmp_path / "warm.csv")
    header = "date," + ",".join(panel.assets) + "\n"
    bars = [f"{panel.dates[i]}," + ",".join(repr(float(x)) for x in panel.close[i]) + "\n" for i in range(300, 320)]

    def run(lines, *extra, status=0):
        monkeypatch.setattr("sys.stdin", io.StringIO(header + "".join(lines)))
        assert main(["stream", "--model", str(maml_dir), *extra]) == status
        out, err = capsys.readouterr()
        return out.splitlines(), err

    whole, _ = run(bars, "--warm-up", str(warm))
    first, _ = run(bars[:8], "--warm-up", str(warm), "--state", str(tmp_path / "st.npz"))
    second, err = run(bars[8:9] + ["2030-01-01,1,2\n", "2030-01-02,-1,2,3,4,5\n"] + bars[9:],
                      "--state", str(tmp_path / "st.npz"), status=3)
    assert whole[0] == "date,asset,forecast_variance,var_1,var_5,es_2_5" and len(whole) == 1 + 20 * 5
    assert first + second[1:] == whole
    assert "line 3: 3 fields, the header has 6 (bar skipped)" in err
    assert f"line 4: non-positive or infinite price at the bar of 2030-01-02, asset '{panel.assets[0]}'" in err
    assert "12 bars taken, 2 bad lines skipped (exit status 3)" in err
    want = batch(maml_dir, panel.select(end=panel.dates[319]))
    want = want[want.date >= panel.dates[300]]
    got = pd.read_csv(io.StringIO("\n".join(whole)), float_precision="round_trip")
    np.testing.assert_array_equal(got.forecast_variance.values, want.forecast_variance.values)


def _switch_panel(seed: int = 1, n_assets: int = 8, before: int = 1200, after: int = 100):
    """The seeded synthetic generator's panel, then a volatility regime switch: every asset's
    returns jump to 3x their last year's volatility."""
    a = datasets.synthetic_ohlc(n_days=before, n_assets=n_assets, seed=seed)
    vol = np.std(np.diff(np.log(a.close[-250:]), axis=0), axis=0)
    shocks = np.random.default_rng(seed + 100).standard_normal((after, n_assets)) * 3.0 * vol
    close = np.vstack([a.close, a.close[-1] * np.exp(np.cumsum(shocks, 0))])
    dates = np.busday_offset(a.dates[0], np.arange(before + after), roll="forward")
    return PricePanel(dates=dates, assets=a.assets, close=close, source="switch"), a


def test_online_meta_learning_recovers_faster_after_a_regime_switch():
    """QLIKE over the 60 days after the switch: the engine that keeps meta-learning from the tasks
    each bar realises beats the frozen model; the caller's learner is left as trained."""
    from metarisk_fast.forecasting import train_meta
    from metarisk_fast.tasks import EpisodeBuilder

    panel, before = _switch_panel()
    spec, switch = TaskSpec(), before.n_days
    torch.manual_seed(1)
    learner = make_learner("maml", spec.n_features, (32, 32), 0.05, 5)
    train_meta(learner, EpisodeBuilder(before, spec), list(before.assets), before.dates[-1], steps=150, batch=32,
               lr=3e-3, seed=1, supports=(60,))
    trained = {k: v.clone() for k, v in learner.state_dict().items()}
    r2 = np.diff(np.log(panel.close), axis=0)[switch:switch + 60] ** 2
    qlike = {}
    for lr in (0.0, 0.1):
        engine = RiskEngine(learner, spec, list(panel.assets), online_lr=lr)
        engine.warm_up(panel.select(end=panel.dates[switch - 1]))
        f = np.array([engine.update(panel.close[i]).variance for i in range(switch, switch + 60)])
        qlike[lr] = float(np.mean(r2 / f - np.log(r2 / f) - 1))
    assert qlike[0.1] < 0.99 * qlike[0.0], qlike
    assert all(torch.equal(v, learner.state_dict()[k]) for k, v in trained.items())


def test_an_online_engine_saves_its_learned_weights(maml_dir, panel, tmp_path):
    engine = RiskEngine.from_model(maml_dir, list(panel.assets), online_lr=0.05)
    engine.warm_up(panel.select(end=panel.dates[299]))
    for i in range(300, 320):
        engine.update(panel.close[i])
    engine.save(tmp_path / "state.npz")
    restored = RiskEngine.load(tmp_path / "state.npz", maml_dir)
    twin = engine.copy()
    outs = [np.array([e.update(panel.close[i]).variance for i in range(320, 360)]) for e in (engine, restored, twin)]
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[2], outs[0])
    frozen = RiskEngine.from_model(maml_dir, list(panel.assets))
    frozen.warm_up(panel.select(end=panel.dates[319]))
    assert not np.array_equal(np.array([frozen.update(panel.close[i]).variance for i in range(320, 360)]), outs[0])
    with pytest.raises(ValueError, match="online_lr"):
        RiskEngine.from_model(maml_dir, ["A"], online_lr=-1.0)


def test_an_online_engine_forecasts_nothing_from_later_bars(maml_dir, panel):
    """Bars after t (prices and the online steps they cause) move no forecast at or before t."""
    cut = 330
    later = panel.close.copy()
    later[cut + 1:] *= np.exp(np.random.default_rng(0).normal(0, 0.05, later[cut + 1:].shape))
    outs = []
    for close in (panel.close, later):
        engine = RiskEngine.from_model(maml_dir, list(panel.assets), online_lr=0.05)
        engine.warm_up(panel.select(end=panel.dates[299]))
        outs.append(np.array([engine.update(close[i]).variance for i in range(300, 360)]))
    np.testing.assert_array_equal(outs[0][: cut - 300 + 1], outs[1][: cut - 300 + 1])
    assert not np.array_equal(outs[0][cut - 300 + 1:], outs[1][cut - 300 + 1:])
