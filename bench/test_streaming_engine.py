"""The streaming RiskEngine per bar (W5 in bench/WORKLOADS.md): daily bars of 1, 100 and 500
assets, the default model's shape (MLP 5-64-64-1, K = 60 support rows, S = 5 inner steps);
latency p50 / p99 of one ``update`` after a 500-bar warm-up, for the features alone, an exact bar
(every asset re-adapted), re-adaptation every 5 and 20 bars, and a bar without re-adaptation
(every asset predicts with the weights of its last adaptation), and the head learner's exact bar
(learners/head.py: every asset's head re-solved from running statistics; body 32, width 8) for
up to 5,000 assets. Peers in the same run: the features
bar with talipp's incremental indicators, recomputing the forecast through the batch API every bar
(a trailing 250-bar window), and arch's one-step GARCH(1,1) forecast with fixed parameters updated
per bar; and, for the bar without re-adaptation, one NumPy pass over the adapted weights it must
read (its floor). An exact bar's GFLOP/s is printed against the same run's matrix-product rate: its
compute floor is the 500 inner loops' FLOPs at that rate."""
import time

import numpy as np
import pytest
import torch

from metarisk_fast import RiskEngine, datasets
from metarisk_fast.data import PricePanel
from metarisk_fast.forecasting import MetaForecaster, make_learner
from metarisk_fast.tasks import EpisodeBuilder, TaskSpec

WARM, HIDDEN, K, S = 500, (64, 64), 60, 5
SPEC = TaskSpec()
SIZES = [SPEC.n_features, *HIDDEN, 1]
ROUNDS = {1: 400, 100: 60, 500: 20, 5000: 20}
HEAD_ROUNDS = {1: 400, 100: 400, 500: 200, 5000: 60}
FEATURE_ROUNDS = 1600
NEVER = 100_000  # readapt_every: after the warm-up's adaptation, bars without re-adaptation


def flops_per_asset() -> int:
    """One asset's exact bar: S inner steps over K rows (forward 2P, backward 4P - 2 d0 d1 per
    row, as W1 counts them) and one predicted row."""
    P = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    return S * K * (6 * P - 2 * SIZES[0] * SIZES[1]) + 2 * P


def _learner():
    torch.manual_seed(0)
    learner = make_learner("maml", SPEC.n_features, HIDDEN, 0.05, S)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return learner


def _panel(n_assets: int) -> PricePanel:
    p = datasets.synthetic_ohlc(n_days=WARM + FEATURE_ROUNDS + 500, n_assets=n_assets, seed=0)
    return PricePanel(dates=p.dates, assets=p.assets, close=p.close, source="synthetic")


def _latency(benchmark, step, rounds):
    """``step(i)`` on bars WARM, WARM + 1, ...: one bar per round."""
    bars = iter(range(WARM, 10**9))
    benchmark.pedantic(lambda: step(next(bars)), rounds=rounds, warmup_rounds=min(rounds // 4, 20))
    data = np.asarray(benchmark.stats.stats.data)
    benchmark.extra_info["p50_us"] = round(float(np.median(data)) * 1e6, 1)
    benchmark.extra_info["p99_us"] = round(float(np.percentile(data, 99)) * 1e6, 1)


def _engine(panel, readapt_every=1):
    engine = RiskEngine(_learner(), SPEC, list(panel.assets), history=K, readapt_every=readapt_every)
    engine.warm_up(panel.select(end=panel.dates[WARM - 1]))
    return engine


@pytest.mark.parametrize("n_assets", [1, 100, 500, 5000])
def test_metarisk_fast_features_bar(benchmark, n_assets):
    benchmark.group = f"stream features, {n_assets} assets"
    panel = _panel(n_assets)
    stream = SPEC.features.stream(n_assets)
    for i in range(WARM):
        stream.update_array(panel.close[i])
    _latency(benchmark, lambda i: stream.update_array(panel.close[i]), FEATURE_ROUNDS)


@pytest.mark.parametrize("n_assets", [1, 100, 500])
def test_talipp_features_bar(benchmark, n_assets):
    """talipp's incremental StdDev over 5 / 21 / 63 log returns and an EMA of squared returns
    (period 32: alpha 2/33 ~ RiskMetrics' 0.06), one object per asset and feature."""
    talipp = pytest.importorskip("talipp.indicators")
    benchmark.group = f"stream features, {n_assets} assets"
    panel = _panel(n_assets)
    r = np.diff(np.log(panel.close), axis=0)
    inds = [[talipp.StdDev(w) for w in SPEC.features.cc_windows] + [talipp.EMA(32)] for _ in range(n_assets)]

    def bar(i):
        for j, row in enumerate(inds):
            x = float(r[i - 1, j])
            for ind in row[:-1]:
                ind.add(x)
            row[-1].add(x * x)

    for i in range(1, WARM):
        bar(i)
    _latency(benchmark, bar, ROUNDS[n_assets])


@pytest.mark.parametrize("readapt_every", [1, 5, 20, NEVER])
@pytest.mark.parametrize("n_assets", [1, 100, 500])
def test_metarisk_fast_engine_bar(benchmark, n_assets, readapt_every):
    benchmark.group = f"stream risk bar, {n_assets} assets"
    panel = _panel(n_assets)
    engine = _engine(panel, readapt_every)
    _latency(benchmark, lambda i: engine.update(panel.close[i]), ROUNDS[n_assets])
    if readapt_every == 1:
        benchmark.extra_info["GFLOP_s"] = round(n_assets * flops_per_asset() / benchmark.stats.stats.median / 1e9, 1)


@pytest.mark.parametrize("n_assets", [100, 500])
def test_read_the_adapted_weights_once(benchmark, n_assets):
    """The floor of a bar that never re-adapts: one NumPy pass (a sum, one thread) over every
    asset's adapted weights, which such a bar must read once to predict."""
    benchmark.group = f"stream risk bar, {n_assets} assets"
    weights = _engine(_panel(n_assets), NEVER)._state["adapted"]
    _latency(benchmark, lambda i: weights.sum(), ROUNDS[n_assets])
    benchmark.extra_info["MB"] = round(weights.nbytes / 1e6, 1)


@pytest.mark.parametrize("n_assets", [1, 100, 500, 5000])
def test_head_engine_bar(benchmark, n_assets):
    """The head learner's exact bar: every asset's support statistics updated (one row in, one
    out) and its head solved, the forecasts equal to the batch path's bit for bit."""
    benchmark.group = f"stream risk bar, {n_assets} assets"
    panel = _panel(n_assets)
    engine = RiskEngine(_head_learner(), TaskSpec(scale="row"), list(panel.assets), history=K)
    engine.warm_up(panel.select(end=panel.dates[WARM - 1]))
    _latency(benchmark, lambda i: engine.update(panel.close[i]), HEAD_ROUNDS[n_assets])


@pytest.mark.parametrize("n_assets", [1, 100, 500])
def test_batch_api_recomputed_each_bar(benchmark, n_assets):
    """The same forecasts without the engine: features and tasks rebuilt on the trailing 250 bars
    and the batch forecaster run for the last one, every bar."""
    benchmark.group = f"stream risk bar, {n_assets} assets"
    panel = _panel(n_assets)
    forecaster = MetaForecaster(_learner(), K)
    cols = np.arange(n_assets)

    def bar(i):
        window = PricePanel(dates=panel.dates[i - 249:i + 1], assets=panel.assets, close=panel.close[i - 249:i + 1])
        return forecaster.predict(EpisodeBuilder(window, SPEC), cols, np.full(n_assets, 249))

    _latency(benchmark, bar, max(ROUNDS[n_assets] // 2, 10))


@pytest.mark.parametrize("n_assets", [1, 100])
def test_arch_garch_one_step_per_bar(benchmark, n_assets):
    """arch's GARCH(1,1) one-step forecast with fixed parameters over each asset's returns so
    far, every bar (arch recomputes the variance recursion from the start)."""
    arch = pytest.importorskip("arch")
    benchmark.group = f"stream risk bar, {n_assets} assets"
    panel = _panel(n_assets)
    r = 100 * np.diff(np.log(panel.close), axis=0)
    params = np.array([0.0, 0.02, 0.08, 0.9])

    def bar(i):
        return [arch.arch_model(r[:i, j], p=1, q=1).fix(params).forecast(horizon=1, reindex=False).variance
                for j in range(n_assets)]

    _latency(benchmark, bar, max(ROUNDS[n_assets] // 4, 10))


def _head_learner():
    torch.manual_seed(0)
    learner = make_learner("head", SPEC.n_features, (32,))
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return learner


@pytest.fixture(scope="module", params=["maml", "head"])
def model_dir(request, tmp_path_factory):
    from metarisk_fast.forecasting import save_model

    out = tmp_path_factory.mktemp(request.param)
    if request.param == "head":
        save_model(out, "head", _head_learner(), TaskSpec(scale="row"), history=K, hidden=(32,), info={})
    else:
        save_model(out, "maml", _learner(), SPEC, history=K, hidden=HIDDEN, info={})
    return out


@pytest.mark.parametrize("attached", ["bars only", "risk actor", "risk actor + strategy"])
def test_metarisk_fast_in_nautilus_backtest(benchmark, model_dir, attached):
    """nautilus_trader's BacktestEngine over 20 embedded stocks x 500 days: the bars alone (the
    framework's own cost per bar), with the RiskActor (the engine's cost inside it), and with the
    volatility-targeting strategy trading on it; the engine over the MAML model (exact: every
    asset re-adapted each bar) and over the head learner's. The RiskEngine is built before each
    timed run (a one-off, not a bar's cost). With the actor alone, each timed run follows a run of
    the bars alone (timed too, untimed by the benchmark) and the engine's ``update`` is timed inside
    it: the actor's own share of a day is what it adds to the run before it less the engine's
    updates (the median over rounds; pairs, as this shared host's speed drifts from run to run)."""
    nautilus = pytest.importorskip("metarisk_fast.integrations.nautilus")
    benchmark.group = f"nautilus_trader backtest, 20 assets x 500 days, {model_dir.name.rstrip('0123456789')}"
    panel = datasets.load_sp500_20(warn_data=False).select(start="2020-01-01", end="2021-12-31")
    actor, strategy = attached != "bars only", attached.endswith("strategy")
    paired = actor and not strategy
    bars_only, in_update = [], []  # per round: seconds of the bars-only run before it, seconds inside update

    def setup():
        kw = {"actor": actor, "strategy": strategy}
        if paired:
            start = time.perf_counter()
            nautilus.run_backtest(model_dir, panel, actor=False, strategy=False)
            bars_only.append(time.perf_counter() - start)
        if actor:
            engine = RiskEngine.from_model(model_dir, list(panel.assets))
            update = engine.update
            in_update.append(0.0)

            def timed_update(*args, **kwargs):
                start = time.perf_counter()
                snapshot = update(*args, **kwargs)
                in_update[-1] += time.perf_counter() - start
                return snapshot

            engine.update, kw["risk_engine"] = timed_update, engine
        return (model_dir, panel), kw

    benchmark.pedantic(nautilus.run_backtest, setup=setup, rounds=9 if paired else 3)
    per_day = 1e6 / panel.n_days  # 20 bars a day
    benchmark.extra_info["us_per_day"] = round(benchmark.stats.stats.median * per_day, 1)
    if paired:
        with_actor, bars_only, in_update = np.asarray(benchmark.stats.stats.data), np.array(bars_only), np.array(in_update)
        benchmark.extra_info["engine_us_per_day"] = round(float(np.median(in_update)) * per_day, 1)
        benchmark.extra_info["added_us_per_day"] = round(float(np.median(with_actor - bars_only)) * per_day, 1)
        benchmark.extra_info["actor_own_us_per_day"] = round(float(np.median(with_actor - bars_only - in_update))
                                                             * per_day, 1)
