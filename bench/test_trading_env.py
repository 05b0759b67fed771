"""Trading environment throughput: rewards of a batch of episodes (4096 episodes x 252 bars,
net of a 5 bp cost and a risk penalty) through the compiled kernel against the same formula in
vectorised NumPy; steps per second in extra_info (the issue's floor: 1e6 per second)."""
import numpy as np
import pytest

from metarisk_fast.trading import episode_rewards

B, T = 4096, 252


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (B, T)), rng.normal(0, 0.01, (B, T)), rng.uniform(1e-5, 1e-3, (B, T))


def _steps_per_second(benchmark):
    benchmark.extra_info["steps_per_s"] = round(B * T / benchmark.stats.stats.median)


def test_metarisk_fast_episode_rewards(benchmark, batch):
    benchmark.group = f"trading rewards, {B} episodes x {T} bars"
    p, r, v = batch
    benchmark(episode_rewards, p, r, v, cost=5e-4, risk_penalty=1.0)
    _steps_per_second(benchmark)


def test_numpy_rewards(benchmark, batch):
    benchmark.group = f"trading rewards, {B} episodes x {T} bars"
    p, r, v = batch

    def rewards():
        previous = np.concatenate([np.zeros((B, 1)), p[:, :-1]], axis=1)
        return p * r - 5e-4 * np.abs(p - previous) - 1.0 * p * p * v

    benchmark(rewards)
    _steps_per_second(benchmark)
