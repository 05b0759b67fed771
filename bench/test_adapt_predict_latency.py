"""Adapt-and-predict latency inside a backtest (W2 in bench/WORKLOADS.md). One task, K = 64 support
rows, D = 16, MLP 16-64-64-1, S = 5 steps, then predict one query row; median and p99 over
10,000 calls. Peers: torch.func and a plain PyTorch autograd loop."""
import numpy as np
import torch

import metarisk_fast as mr
from metarisk_fast import reference

K, D, S, LR, CALLS = 64, 16, 5, 0.01, 10_000


def _data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((K, D), dtype=np.float32), rng.standard_normal((K, 1), dtype=np.float32),
            rng.standard_normal((1, D), dtype=np.float32))


def _latency(benchmark, fn, rounds):
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=100 if rounds > 1000 else 5)
    data = np.asarray(benchmark.stats.stats.data)
    benchmark.extra_info["median_us"] = round(float(np.median(data)) * 1e6, 1)
    benchmark.extra_info["p99_us"] = round(float(np.percentile(data, 99)) * 1e6, 1)


def test_metarisk_fast_numpy_path(benchmark):
    benchmark.group = "adapt+predict"
    learner = mr.MAML(mr.MLP(D, (64, 64), 1), LR, S)
    xs, ys, xq = _data()
    _latency(benchmark, lambda: learner.adapt_predict(xs, ys, xq), CALLS)


def test_metarisk_fast_torch_path(benchmark):
    benchmark.group = "adapt+predict"
    learner = mr.MAML(mr.MLP(D, (64, 64), 1), LR, S)
    xs, ys, xq = (torch.from_numpy(a) for a in _data())
    _latency(benchmark, lambda: learner.adapt_predict(xs, ys, xq), CALLS)


def test_torch_func(benchmark):
    benchmark.group = "adapt+predict"
    params = [p.detach() for p in mr.MLP(D, (64, 64), 1).parameters()]
    xs, ys, xq = (torch.from_numpy(a)[None] for a in _data())
    _latency(benchmark, lambda: reference.mlp_adapt_predict(params, LR, xs, ys, xq, steps=S), 500)


def test_plain_pytorch_loop(benchmark):
    benchmark.group = "adapt+predict"
    params = [p.detach().requires_grad_() for p in mr.MLP(D, (64, 64), 1).parameters()]
    xs, ys, xq = (torch.from_numpy(a) for a in _data())

    def call():
        p = params
        for _ in range(S):
            loss = ((reference.mlp_forward(p, xs) - ys) ** 2).mean()
            g = torch.autograd.grad(loss, p)
            p = [pi.detach() - LR * gi for pi, gi in zip(p, g)]
            p = [pi.requires_grad_() for pi in p]
        with torch.no_grad():
            return reference.mlp_forward(p, xq)

    _latency(benchmark, call, 1000)
