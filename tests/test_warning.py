"""Early warning: the event labels, each score against a plain NumPy statement of it, no
look-ahead in any score or in the recursive combination, and `metarisk warn` end to end."""
import json

import numpy as np
import pandas as pd
import pytest

from metarisk_fast import datasets
from metarisk_fast.cli import main
from metarisk_fast.data import DataError, PricePanel
from metarisk_fast.warning.evaluate import (INGREDIENTS, SCORES, alarms, auroc_difference, block_bootstrap_auroc,
                                            choose_ingredients, combined_score)
from metarisk_fast.warning.jobs import warn, warning_scores
from metarisk_fast.warning.signals import (REFRESH, RIDGE, _monitor_panel, episodes, expanding_rank, index_level, novelty,
                                           principal_index, stress_labels, turbulence_and_absorption)
from metarisk_fast.warning.stream import StressMonitor


def synthetic(n_days=1700, n_assets=6, seed=3) -> PricePanel:
    p = datasets.synthetic_ohlc(n_days=n_days, n_assets=n_assets, seed=seed)
    return PricePanel(dates=p.dates, assets=p.assets, close=p.close, source="synthetic")


def test_labels_mark_the_days_before_a_drawdown():
    index = np.concatenate([np.full(100, 100.0), np.linspace(100, 80, 21), np.full(100, 80.0)])
    y = stress_labels(index, drawdown=0.15, horizon=30, vol_start=10**6)  # drawdown events only
    # day t is labelled iff the minimum of the next 30 days is <= 85 % of index[t]
    fut = np.array([index[t + 1:t + 31].min() if t + 30 < len(index) else np.nan for t in range(len(index))])
    want = np.where(np.isnan(fut), np.nan, (fut / index <= 0.85).astype(float))
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(stress_labels(index, drawdown=0.15, horizon=30, events="drawdown"), want)
    with pytest.raises(ValueError, match="events must be one of drawdown_or_vol, drawdown"):
        stress_labels(index, events="crash")
    assert episodes(y) == [(min(np.flatnonzero(want == 1)), max(np.flatnonzero(want == 1)))]
    assert episodes(np.array([1, 0, 0, 1, 0, 0, 0, 0, 1.0]), merge_gap=3) == [(0, 3), (8, 8)]


def test_turbulence_and_absorption_follow_their_definitions():
    p = synthetic(n_days=400, n_assets=5)
    _, r = index_level(p.close)
    w = 120
    turb, _ = turbulence_and_absorption(r, window=w)
    _, ar = _monitor_panel(r, w, 1)
    for t in (w, 300, 399):  # right after a recomputation, 180 incremental bars after one, and after the next
        past = r[t - w:t]
        mu, cov = past.mean(axis=0), np.cov(past, rowvar=False)
        d = r[t] - mu
        last = w - 1 + REFRESH * ((t - w) // REFRESH)  # the row after which the ridge was last recomputed
        ridge = RIDGE * np.trace(np.cov(r[last - w + 1:last + 1], rowvar=False)) / 5
        ridged = cov + ridge * np.eye(5)
        assert turb[t] == pytest.approx(d @ np.linalg.solve(ridged, d) / 5, rel=1e-8)
        ev = np.linalg.eigvalsh(cov)
        assert ar[t] == pytest.approx(ev[-1] / ev.sum(), abs=2e-3)
    assert np.isnan(turb[:w]).all() and np.isfinite(turb[w:]).all()
    ranks = expanding_rank(np.array([3.0, 1.0, 2.0, np.nan, 5.0]))
    np.testing.assert_array_equal(ranks, [np.nan, 0.0, 0.5, np.nan, 1.0])


def test_no_score_uses_a_price_after_its_day():
    """Prices after day `cut` changed: every single score, the combined score and its alarms at or
    before `cut` stay the same (an alarm's threshold reads labels known by its day: `horizon`
    days earlier)."""
    p = synthetic()
    cut = 1450
    close = p.close.copy()
    close[cut + 1:] *= np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.03, close[cut + 1:].shape), axis=0))
    a = warning_scores(p, horizon=60)
    b = warning_scores(PricePanel(dates=p.dates, assets=p.assets, close=close), horizon=60)
    cols = [*SCORES, "score", "alarm"]
    pd.testing.assert_frame_equal(a.loc[:cut, cols], b.loc[:cut, cols])
    pd.testing.assert_series_equal(a.label[:cut - 60 + 1], b.label[:cut - 60 + 1])  # a label is known 60 days later
    assert not a.loc[cut + 1:, "turbulence"].equals(b.loc[cut + 1:, "turbulence"])
    assert np.isfinite(a.score).sum() > 1000


def test_the_principal_index_follows_its_definition_without_look_ahead():
    """principal_index against a plain statement: each day's return is the assets' simple returns
    weighted by the clipped top eigenvector of the previous window's covariance, refreshed every
    `every` days; prices after a day move nothing up to it, and scored on it, no score either."""
    p = synthetic(n_days=1700, n_assets=5)
    window, every = 120, 21
    level = principal_index(p.close, window, every)
    _, r = index_level(p.close)
    weights, want = np.full(5, 0.2), [1.0]
    for t in range(1, p.n_days):
        if t > window and (t - window - 1) % every == 0:
            top = np.linalg.eigh(np.cov(r[t - window:t], rowvar=False))[1][:, -1]
            top = np.maximum(top * np.sign(top.sum()), 0.0)
            weights = top / top.sum()
        want.append(want[-1] * (1.0 + np.expm1(r[t]) @ weights))
    np.testing.assert_allclose(level, want, rtol=1e-12)
    cut = 1400
    close = p.close.copy()
    close[cut + 1:] *= np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.03, close[cut + 1:].shape), axis=0))
    moved = PricePanel(dates=p.dates, assets=p.assets, close=close)
    np.testing.assert_array_equal(principal_index(close, window, every)[:cut + 1], level[:cut + 1])
    a, b = (warning_scores(q, horizon=60, index="principal") for q in (p, moved))
    cols = [*SCORES, "score", "alarm"]
    pd.testing.assert_frame_equal(a.loc[:cut, cols], b.loc[:cut, cols])
    assert not np.array_equal(a["index"], warning_scores(p, horizon=60)["index"])
    with pytest.raises(ValueError, match="index must be one of equal, principal"):
        warning_scores(p, index="cap_weighted")


def test_the_combined_score_is_the_mean_of_own_past_percentiles():
    """combined_score against a plain statement (each value's share of its own earlier values
    below it, averaged over the columns); it reads no label, so no later label can move it."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (300, 2))
    x[5, 1] = np.nan
    want = np.full(300, np.nan)
    for t in range(300):
        ranks = []
        for c in range(2):
            past = x[:t, c][np.isfinite(x[:t, c])]
            ranks.append(np.nan if np.isnan(x[t, c]) or len(past) == 0 else np.mean(past < x[t, c]))
        want[t] = np.mean(ranks)
    np.testing.assert_allclose(combined_score(x), want, rtol=1e-12)


def test_the_ingredients_are_chosen_on_validation_rows_only():
    """A combination holding pure noise loses on validation to its informative ingredient alone,
    which is then chosen; labels outside the validation rows do not move the choice; two
    ingredients with independent errors stay combined."""
    rng = np.random.default_rng(2)
    T = 2000
    y = (rng.random(T) < 0.3).astype(float)
    singles = {"signal": y + rng.normal(0, 0.7, T), "noise": rng.normal(0, 1, T)}
    val = np.arange(50, 1000)
    chosen, found = choose_ingredients(singles, y, val)
    assert chosen == ("signal",) and found["signal"] > found["signal+noise"] > found["noise"]
    flipped = y.copy()
    flipped[1000:] = 1 - flipped[1000:]
    assert choose_ingredients(singles, flipped, val) == (chosen, found)
    pair = {"a": y + rng.normal(0, 1.0, T), "b": y + rng.normal(0, 1.0, T)}  # independent errors: the mean is better
    assert choose_ingredients(pair, y, val)[0] == ("a", "b")
    assert alarms(combined_score(np.column_stack(list(singles.values()))), y, 20).mean() < 0.5


def test_the_block_bootstrap_auroc_is_roc_auc_of_each_resample():
    """Each bootstrap AUROC equals scikit-learn's on the rows that sample drew (blocks of
    consecutive days, ties included), for every compared column; the interval of a real
    difference excludes zero."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    n, block = 700, 30
    y = (rng.random(n) < 0.25).astype(float)
    good, bad = np.round(y + rng.normal(0, 1, n), 1), rng.normal(0, 1, n)
    boot = block_bootstrap_auroc(np.column_stack([good, bad]), y, block, draws=4, seed=5)
    starts = np.random.default_rng(5).integers(0, n - block + 1, size=(4, -(-n // block)))
    for d in range(4):
        rows = (starts[d][:, None] + np.arange(block)).ravel()[:n]
        assert boot[d, 0] == pytest.approx(roc_auc_score(y[rows], good[rows]), abs=1e-12)
        assert boot[d, 1] == pytest.approx(roc_auc_score(y[rows], bad[rows]), abs=1e-12)
    diff = auroc_difference(good, bad, y, block, draws=300)
    assert diff["difference"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, bad))
    assert 0 < diff["low"] < diff["difference"] < diff["high"]


def test_warn_command_end_to_end(tmp_path):
    p = synthetic(n_days=2500)
    wide = pd.DataFrame(p.close, columns=list(p.assets))
    wide.insert(0, "Date", p.dates.astype(str))
    wide.to_csv(tmp_path / "p.csv", index=False)
    assert main(["warn", "--prices", str(tmp_path / "p.csv"), "--out", str(tmp_path / "w"), "--drawdown", "5",
                 "--horizon", "40", "--quiet"]) == 0
    scores = pd.read_csv(tmp_path / "w" / "scores.csv")
    assert list(scores.columns) == ["date", "score", "alarm"] and len(scores) == p.n_days
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    assert set(report["scores"]) == {"validation", "test"}
    assert set(report["scores"]["test"]) == {*SCORES, "score"}
    assert report["validation"][1] < report["test"][0]
    assert len(report["grid"]) == 24 and {g["events"] for g in report["grid"]} == {"drawdown", "drawdown_or_vol"}
    assert report["ingredients"]["given"] == list(INGREDIENTS)
    assert set(report["data_quality"]) == {"coarse_stretches", "calendar_gaps", "asset_gaps", "suspected_splits",
                                           "stale_runs", "empty_assets"}
    assert (tmp_path / "w" / "warning.png").stat().st_size > 0
    from metarisk_fast.warning import WarningModel

    live = WarningModel.load(tmp_path / "w")
    assert live.ingredients == tuple(report["ingredients"]["chosen"]) and 0 < live.threshold < 1
    assert report["live_model"]["fitted_through"] == live.fitted_through
    short = PricePanel(dates=p.dates[:500], assets=p.assets, close=p.close[:500])
    with pytest.raises(DataError, match="needs at least"):
        warning_scores(short)
    with pytest.raises(SystemExit):  # argparse refuses it, naming the option
        main(["warn", "--prices", str(tmp_path / "p.csv"), "--out", str(tmp_path / "w2"), "--drawdown", "0"])
    assert main(["warn", "--prices", str(tmp_path / "p.csv"), "--out", str(tmp_path / "w2"), "--drawdown", "150"]) == 2
    for option, value in (("--ingredients", "vol_level,volume"), ("--validation-end", "2020-13-01"),
                          ("--events", "crash")):
        with pytest.raises(SystemExit):  # argparse refuses each, naming the option
            main(["warn", "--prices", str(tmp_path / "p.csv"), "--out", str(tmp_path / "w2"), option, value])
    with pytest.raises(DataError, match="the validation period .* move --validation-end"):
        warn(str(tmp_path / "p.csv"), tmp_path / "w3", drawdown=5, horizon=40, validation_end=str(p.dates[100]))
    with pytest.raises(ValueError, match=r"--validation-end must be a date \(YYYY-MM-DD\), got 'soon'"):
        warn(str(tmp_path / "p.csv"), tmp_path / "w3", validation_end="soon")
    with pytest.raises(ValueError, match=r"ingredients \['forecast_jump'\] .* need --model"):
        warn(str(tmp_path / "p.csv"), tmp_path / "w3", ingredients=["forecast_jump"])
    assert not (tmp_path / "w3").exists()


def test_novelty_rises_when_the_cross_section_changes_shape():
    """One asset's volatility jumps: today's cross-section of volatility states is far from all of
    the last 400 days', unlike the calm days before."""
    r = np.random.default_rng(2).normal(0, 0.01, (900, 6))
    r[800:, 0] *= 6.0
    nov = novelty(r, memory=400)
    assert np.isnan(nov[:651]).all() and np.isfinite(nov[651:]).all()
    assert (nov[651:] >= 0).all()
    assert nov[815:830].min() > 2 * np.median(nov[700:790])


def test_the_stream_monitor_is_the_batch_step():
    p = synthetic(n_days=700, n_assets=30)
    _, r = index_level(p.close)
    want = _monitor_panel(r, 200, 6)
    monitor = StressMonitor(30, window=200)
    got = np.array([monitor.update(row) for row in r])
    np.testing.assert_array_equal(got[:, 0], want[0])
    np.testing.assert_array_equal(got[:, 1], want[1])
    for bad in (r[0][:5], np.full(30, np.inf), r[0].astype(str)):
        with pytest.raises(ValueError):
            monitor.update(bad)


def test_a_variance_model_adds_its_forecast_jump(tmp_path):
    """With a model, the jump of its forecasts across assets is a score, and no price after day t
    moves it at or before t."""
    from metarisk_fast.warning.signals import forecast_jump

    _saved_model(tmp_path / "m", "maml", (8,), 2)
    p = synthetic(n_days=1500, n_assets=4)
    cut = 1300
    close = p.close.copy()
    close[cut + 1:] *= 1.5
    a = warning_scores(p, model=tmp_path / "m")
    b = warning_scores(PricePanel(dates=p.dates, assets=p.assets, close=close), model=tmp_path / "m")
    assert "forecast_jump" in a.columns and np.isfinite(a.forecast_jump).sum() > 1000
    pd.testing.assert_series_equal(a.forecast_jump[:cut + 1], b.forecast_jump[:cut + 1])
    f = np.exp(np.random.default_rng(0).normal(-9, 1, (30, 3)))
    f[7, 1] = np.nan
    jump = forecast_jump(f, lag=5)
    assert jump[10] == pytest.approx(np.mean(np.log(f[10] / f[5])))
    assert jump[12] == pytest.approx(np.mean(np.log(f[12, [0, 2]] / f[7, [0, 2]])))


def _saved_model(out, kind: str, hidden, inner_steps: int, perturb: bool = True):
    """A small model directory (60 days of history), its weights moved off the zero-output start
    (``perturb``) so that its outputs depend on its inputs; returns the learner."""
    import torch

    from metarisk_fast.forecasting import make_learner, save_model
    from metarisk_fast.tasks import TaskSpec

    torch.manual_seed(0)
    learner = make_learner(kind, TaskSpec().n_features, hidden, 0.05, inner_steps)
    if perturb:
        with torch.no_grad():
            for q in learner.parameters():
                q.add_(0.1 * torch.randn_like(q))
    save_model(out, kind, learner, TaskSpec(), history=60, hidden=hidden, info={})
    return learner


def _memory_model(tmp_path):
    return _saved_model(tmp_path / "mem", "memory", (16,), 0), tmp_path / "mem"


def test_the_stress_score_streams_the_batch_scores():
    """StressScore bar by bar gives warning_scores' single scores (to rounding; the covariance
    scores exactly) on prices with missing closes, and the fitted model's combined score of
    their percentiles; its alarms sit above the threshold."""
    from metarisk_fast.warning import StressScore, WarningModel

    p = synthetic(n_days=1500, n_assets=6)
    close = p.close.copy()
    close[500, 2] = np.nan
    close[900:903, 4] = np.nan
    p = PricePanel(dates=p.dates, assets=p.assets, close=close, source="gappy")
    frame = warning_scores(p, horizon=20, memory=300)
    names = list(SCORES)
    model = WarningModel.fit(frame, names, horizon=20, drawdown=0.15, window=250, memory=300)
    live = StressScore(model, 6)
    reads = [live.update(row) for row in close]
    for name in names:
        got, want = np.array([r.singles[name] for r in reads]), frame[name].to_numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)
    np.testing.assert_array_equal([r.singles["turbulence"] for r in reads], frame.turbulence)
    score = np.array([r.score for r in reads])
    np.testing.assert_allclose(score, combined_score(frame[names].to_numpy()), rtol=1e-9)
    assert np.isfinite(score).sum() > 400
    np.testing.assert_array_equal([r.alarm for r in reads], np.nan_to_num(score, nan=-1) > model.threshold)
    before = live.state_dict()
    for bad in (close[0][:5], np.where(np.arange(6) == 3, -1.0, close[0]), np.full(6, np.inf)):
        with pytest.raises(ValueError, match="close"):
            live.update(bad)
    assert all(np.array_equal(before[k], v, equal_nan=True) for k, v in live.state_dict().items())


def test_the_warning_model_saves_and_refuses_a_damaged_file(tmp_path):
    from metarisk_fast.warning import WarningModel

    frame = warning_scores(synthetic(n_days=1600), horizon=20, events="drawdown")
    model = WarningModel.fit(frame, ["turbulence", "vol_level"], horizon=20, drawdown=0.1, window=250, memory=500,
                             events="drawdown")
    model.save(tmp_path / "warning.json")
    assert WarningModel.load(tmp_path) == model
    text = (tmp_path / "warning.json").read_text()
    older = json.loads(text) | {"format": 1}
    for damaged, match in ((text[:40], "not a warning model"), (text.replace('"vol_level"', '"volume"'), "not understood"),
                           (text.replace('"events": "drawdown"', '"events": "crash"'), "events 'crash'"), (json.dumps(older), "format 1"),
                           ("[1, 2]", "format None")):
        (tmp_path / "bad.json").write_text(damaged)
        with pytest.raises(ValueError, match=match):
            WarningModel.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="cannot read"):
        WarningModel.load(tmp_path / "absent.json")


def test_a_memory_learner_scores_its_novelty_without_look_ahead(tmp_path):
    """A memory learner's novelty: larger for query rows far outside the support it wrote, and
    the day's cross-asset mean moves for no price after the day."""
    learner, mem_dir = _memory_model(tmp_path)
    rng = np.random.default_rng(0)
    xs = rng.normal(0, 1, (64, 40, learner.in_features)).astype(np.float32)
    ys = rng.normal(0, 1, (64, 40, 1)).astype(np.float32)
    inside, outside = xs[:, :1] + 0.01, xs[:, :1] + 8.0
    near, far = learner.novelty(xs, ys, inside), learner.novelty(xs, ys, outside)
    assert near.shape == (64, 1) and ((near >= 0) & (near <= 2)).all()
    assert far.mean() > near.mean()
    p = synthetic(n_days=1600, n_assets=4)
    cut = 1200
    close = p.close.copy()
    close[cut + 1:] *= 1.4
    a = warning_scores(p, horizon=20, model=mem_dir)
    b = warning_scores(PricePanel(dates=p.dates, assets=p.assets, close=close), horizon=20, model=mem_dir)
    assert np.isfinite(a.memory_novelty).sum() > 1000
    pd.testing.assert_series_equal(a.memory_novelty[:cut + 1], b.memory_novelty[:cut + 1])
    assert not a.memory_novelty[cut + 1:].equals(b.memory_novelty[cut + 1:])


def test_the_engine_carries_the_stress_score(tmp_path):
    """RiskEngine(monitor=StressScore): each bar's snapshot holds the score of the batch scores
    (forecast jump and memory novelty from the engine's own forecasts and memories); the state
    saves and restores with it; the asset set is then fixed."""
    from metarisk_fast import RiskEngine
    from metarisk_fast.warning import StressScore, WarningModel

    _, mem_dir = _memory_model(tmp_path)
    full = datasets.load_sp500_20(warn_data=False)
    p = full.select(assets=list(full.assets[:5]), start="2009-01-01", end="2014-12-31")
    frame = warning_scores(p, horizon=20, memory=300, model=mem_dir)
    names = [*SCORES, "forecast_jump", "memory_novelty"]
    model = WarningModel.fit(frame, names, horizon=20, drawdown=0.1, window=250, memory=300)
    engine = RiskEngine.from_model(mem_dir, list(p.assets), monitor=StressScore(model, 5))
    start = 1200
    engine.warm_up(p.select(end=str(p.dates[start - 1])))
    reads = [engine.update(p.close[t], date=p.dates[t]).stress for t in range(start, start + 60)]
    for name in names:
        np.testing.assert_allclose([r.singles[name] for r in reads], frame[name][start:start + 60], rtol=1e-5, atol=1e-6)
    assert np.isfinite([r.score for r in reads]).all()
    engine.save(tmp_path / "state.npz")
    again = RiskEngine.load(tmp_path / "state.npz", mem_dir, monitor=StressScore(model, 5))
    t = start + 60
    one, two = engine.update(p.close[t], date=p.dates[t]), again.update(p.close[t], date=p.dates[t])
    assert one.stress == two.stress and np.isfinite(one.stress.score)
    with pytest.raises(ValueError, match="fixed set of assets"):
        engine.add_asset("NEW")
    with pytest.raises(ValueError, match="memory learner's novelty"):
        RiskEngine.from_model(_memory_model_as_maml(tmp_path), list(p.assets), monitor=StressScore(model, 5))
    with pytest.raises(ValueError, match="monitor covers 5 assets"):
        RiskEngine.from_model(mem_dir, list(p.assets[:4]), monitor=StressScore(model, 5))
    with pytest.raises(ValueError, match="saved engine state has monitor"):
        RiskEngine.load(tmp_path / "state.npz", mem_dir)


def _memory_model_as_maml(tmp_path):
    _saved_model(tmp_path / "maml", "maml", (8,), 1, perturb=False)
    return tmp_path / "maml"


def test_stream_command_carries_the_warning(tmp_path, monkeypatch, capsys):
    """`metarisk stream --warning DIR` adds each bar's stress score and alarm to its rows: the
    replay's equal StressScore's run over the same closes; the live feed's header names them."""
    import io

    from metarisk_fast.warning import StressScore, WarningModel

    _saved_model(tmp_path / "m", "maml", (8,), 1, perturb=False)
    p = synthetic(n_days=1800, n_assets=4)
    wide = pd.DataFrame(p.close, columns=list(p.assets))
    wide.insert(0, "Date", p.dates.astype(str))
    wide.to_csv(tmp_path / "p.csv", index=False)
    assert main(["warn", "--prices", str(tmp_path / "p.csv"), "--out", str(tmp_path / "w"), "--horizon", "20",
                 "--drawdown", "5", "--quiet"]) == 0
    assert main(["stream", "--model", str(tmp_path / "m"), "--prices", str(tmp_path / "p.csv"), "--out",
                 str(tmp_path / "s.csv"), "--warning", str(tmp_path / "w"), "--quiet"]) == 0
    got = pd.read_csv(tmp_path / "s.csv").groupby("date")[["stress_score", "stress_alarm"]].first()
    live = StressScore(WarningModel.load(tmp_path / "w"), 4)
    reads = {str(d): live.update(c) for d, c in zip(p.dates, p.close)}
    want = np.array([reads[d].score for d in got.index])
    np.testing.assert_allclose(got.stress_score, want, rtol=1e-12)
    np.testing.assert_array_equal(got.stress_alarm, [int(reads[d].alarm) for d in got.index])
    assert np.isfinite(got.stress_score).sum() > 100
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("date," + ",".join(p.assets) + "\n"))
    assert main(["stream", "--model", str(tmp_path / "m"), "--warning", str(tmp_path / "w")]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(",stress_score,stress_alarm")
    assert main(["stream", "--model", str(tmp_path / "m"), "--prices", str(tmp_path / "p.csv"), "--out",
                 str(tmp_path / "s2.csv"), "--warning", str(tmp_path / "absent")]) == 2


def test_degenerate_bars_give_nan_scores_not_errors():
    """Found by the fuzz harness: a flat window (no move at all) and a price that underflows its
    ratio to the last one gave a ZeroDivisionError mid-step, leaving the state half-written."""
    from metarisk_fast.warning import StressMonitor, StressScore, WarningModel

    monitor = StressMonitor(3, window=5)
    out = np.array([monitor.update(np.zeros(3)) for _ in range(12)])
    assert np.isnan(out[:5]).all() and np.isfinite(monitor.arrays()[2]).all()
    assert np.isnan(out[5:, 1]).all()  # the absorption ratio of a flat window is undefined
    with pytest.raises(ValueError, match="log returns within"):
        monitor.update(np.array([0.0, 1e300, 0.0]))
    model = WarningModel(("turbulence",), 0.5, 20, 0.1, 5, 22, "x")
    score = StressScore(model, 2)
    for close in ([100.0, 50.0], [5e-324, 50.0], [100.0, 50.0], [101.0, 49.0]):
        reading = score.update(np.array(close))
        assert np.isnan(reading.score) or 0 <= reading.score <= 1
    assert all(np.isfinite(v).all() for k, v in score.state_dict().items() if k in ("ring", "binv", "r2"))


def test_a_warning_model_refuses_other_assets_and_another_variance_model(tmp_path):
    """warning.json records the assets and the variance model (its weights' SHA-256) it was fitted
    with; an engine over other assets or with another model is refused by name."""
    from metarisk_fast import RiskEngine
    from metarisk_fast.forecasting import load_model
    from metarisk_fast.warning import StressScore, WarningModel

    _saved_model(tmp_path / "a", "maml", (8,), 1)
    _saved_model(tmp_path / "b", "maml", (8,), 1, perturb=False)
    p = synthetic(n_days=1600)
    frame = warning_scores(p, horizon=20, model=tmp_path / "a")
    sha = load_model(tmp_path / "a")[2]["weights_sha256"]
    WarningModel.fit(frame, ["turbulence", "forecast_jump"], horizon=20, drawdown=0.1, window=250, memory=500,
                     assets=p.assets, model_sha256=sha).save(tmp_path / "warning.json")
    model = WarningModel.load(tmp_path)
    assert model.assets == tuple(p.assets) and model.model_sha256 == sha
    RiskEngine.from_model(tmp_path / "a", list(p.assets)[::-1], monitor=StressScore(model, p.n_assets))
    with pytest.raises(ValueError, match="combines the scores of another variance model"):
        RiskEngine.from_model(tmp_path / "b", list(p.assets), monitor=StressScore(model, p.n_assets))
    with pytest.raises(ValueError, match=r"fitted on \d+ other assets \(not fitted: \['ZZZ'\]"):
        RiskEngine.from_model(tmp_path / "a", [*p.assets[:-1], "ZZZ"], monitor=StressScore(model, p.n_assets))


def test_model_scores_leave_out_the_models_training_period(tmp_path):
    """A variance model's scores over the days it trained on (up to its training end and the
    horizon after it) are left out, as `evaluate` flags them: no in-sample score enters the
    evaluation or the combination."""
    import torch

    from metarisk_fast.forecasting import make_learner, save_model
    from metarisk_fast.tasks import TaskSpec

    p = synthetic(n_days=1600)
    torch.manual_seed(0)
    learner = make_learner("maml", TaskSpec().n_features, (8,), 0.05, 1)
    with torch.no_grad():
        for q in learner.parameters():
            q.add_(0.1 * torch.randn_like(q))
    save_model(tmp_path / "m", "maml", learner, TaskSpec(), history=60, hidden=(8,),
               info={"train_end": str(p.dates[700])})
    frame = warning_scores(p, horizon=20, model=tmp_path / "m")
    jump = frame["forecast_jump"].to_numpy()
    assert np.isnan(jump[:702]).all() and np.isfinite(jump[702:]).mean() > 0.9
