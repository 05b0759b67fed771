"""The early-warning covariance scores per bar for 500 assets (turbulence and absorption ratio
over a 250-bar window, top 100 eigenvectors): StressMonitor.update against recomputing both
from the window every bar with NumPy (a solve and a symmetric eigendecomposition)."""
import numpy as np
import pytest

from metarisk_fast.warning.signals import RIDGE
from metarisk_fast.warning.stream import StressMonitor

N, W, BARS = 500, 250, 400


@pytest.fixture(scope="module")
def returns():
    rng = np.random.default_rng(0)
    factor = rng.normal(0, 0.01, (W + BARS, 1))
    return factor * rng.uniform(0.5, 1.5, N) + rng.normal(0, 0.01, (W + BARS, N))


def _latency(benchmark, step, rounds):
    bars = iter(range(W, 10**9))
    benchmark.pedantic(lambda: step(next(bars)), rounds=rounds, warmup_rounds=10)
    data = np.asarray(benchmark.stats.stats.data)
    benchmark.extra_info["p50_us"] = round(float(np.median(data)) * 1e6, 1)
    benchmark.extra_info["p99_us"] = round(float(np.percentile(data, 99)) * 1e6, 1)


def test_metarisk_fast_stress_monitor_bar(benchmark, returns):
    benchmark.group = f"early-warning scores per bar, {N} assets"
    monitor = StressMonitor(N, window=W)
    for t in range(W):
        monitor.update(returns[t])
    _latency(benchmark, lambda t: monitor.update(returns[t]), BARS - 20)


def test_numpy_recomputed_each_bar(benchmark, returns):
    benchmark.group = f"early-warning scores per bar, {N} assets"

    def bar(t):
        past = returns[t - W:t]
        mu, cov = past.mean(axis=0), np.cov(past, rowvar=False)
        cov += RIDGE * np.trace(cov) / N * np.eye(N)
        d = returns[t] - mu
        ev = np.linalg.eigvalsh(cov)
        return d @ np.linalg.solve(cov, d) / N, ev[-N // 5:].sum() / ev.sum()

    _latency(benchmark, bar, 40)
