"""The early-warning scores per bar for 500 assets: the covariance scores (turbulence and
absorption ratio over a 250-bar window, top 100 eigenvectors), StressMonitor.update against
recomputing both from the window every bar with NumPy (a solve and a symmetric
eigendecomposition); and the whole combined score of a warning model (StressScore.update: every
single score incl. the novelty against 500 days of states, percentiles, logistic regression). The monitor's
absorption ratio reads a tracked basis (BLOCK rows advanced a bar): its largest distance to the
exact ratio over the measured bars is recorded beside its latency."""
import numpy as np
import pytest

from metarisk_fast.warning import StressMonitor, StressScore, WarningModel
from metarisk_fast.warning.evaluate import SCORES
from metarisk_fast.warning.signals import RIDGE

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
    fresh = StressMonitor(N, window=W)
    errors = []
    for t in range(W + BARS):
        turb, ar = fresh.update(returns[t])
        if t >= W and t % 10 == 0:
            ev = np.linalg.eigvalsh(np.cov(returns[t - W:t], rowvar=False))
            errors.append(abs(ar - ev[-N // 5:].sum() / ev.sum()))
    benchmark.extra_info["absorption_ratio_max_abs_error"] = float(f"{max(errors):.2g}")


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


def test_metarisk_fast_stress_score_bar(benchmark, returns):
    """The full combined score of every single score. Warmed up past the novelty's 252 + 500
    days, then timed bar by bar."""
    benchmark.group = f"early-warning combined score per bar, {N} assets"
    model = WarningModel(SCORES, 0.5, 60, 0.15, W, 500, "2000-01-01")
    rng = np.random.default_rng(1)
    extra = rng.normal(0, 0.01, (800, N))
    close = 100.0 * np.exp(np.cumsum(np.vstack([extra, returns]), axis=0))
    score = StressScore(model, N)
    for t in range(800):
        score.update(close[t])
    bars = iter(range(800, 10**9))
    benchmark.pedantic(lambda: score.update(close[next(bars)]), rounds=BARS - 20, warmup_rounds=10)
    data = np.asarray(benchmark.stats.stats.data)
    benchmark.extra_info["p50_us"] = round(float(np.median(data)) * 1e6, 1)
    benchmark.extra_info["p99_us"] = round(float(np.percentile(data, 99)) * 1e6, 1)
