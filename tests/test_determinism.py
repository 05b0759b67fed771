"""Every kernel, forward and backward, gives bitwise-identical results across runs and across
thread counts (the core's and Numba's)."""
import numba
import numpy as np
import pytest
import torch

import metarisk_fast as mr
from metarisk_fast import features as F
from metarisk_fast import ops

from conftest import make_params, make_tasks

THREADS = (1, 2, 3, 2)


def across_threads(fn):
    """fn() under each thread count; every result (a tuple of arrays or tensors) bitwise equal."""
    before, before_numba = mr.get_num_threads(), numba.get_num_threads()
    results = []
    try:
        for n in THREADS:
            mr.set_num_threads(n)
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            results.append([np.asarray(x.detach() if isinstance(x, torch.Tensor) else x) for x in fn()])
    finally:
        mr.set_num_threads(before)
        numba.set_num_threads(before_numba)
    for run in results[1:]:
        for a, b in zip(run, results[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["second_order", "first_order", "reptile"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inner_loop_forward_and_backward(mode, dtype):
    params = make_params([5, 16, 1], dtype)
    lrs = [torch.full_like(p, 0.05).requires_grad_() for p in params]
    xs, ys, xq, yq = make_tasks(37, 9, 7, 5, dtype=dtype)

    def run():
        lr = lrs if mode != "reptile" else 0.05
        loss = ops.mlp_meta_loss(params, lr, xs, ys, xq, yq, steps=3, mode=mode)
        grads = torch.autograd.grad(loss.sum(), params + (lrs if mode != "reptile" else []))
        pred = ops.mlp_adapt_predict([p.detach() for p in params], 0.05, xs, ys, xq, steps=3)
        adapted = ops.mlp_adapt([p.detach() for p in params], 0.05, xs, ys, steps=3)
        return (loss, pred, *grads, *adapted)

    across_threads(run)


def test_numpy_hot_path():
    learner = mr.MAML(mr.MLP(4, (16,), 1), inner_lr=0.05, inner_steps=3)
    xs, ys, xq, _ = (t.numpy() for t in make_tasks(40, 8, 3, 4, dtype=torch.float32))
    across_threads(lambda: (learner.adapt_predict(xs, ys, xq),))


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_memory_read_write_and_topk(shared, dtype):
    g = torch.Generator().manual_seed(0)
    E, N, W, G = 4, 700, 16, 70
    mem = torch.randn(*(() if shared else (E,)), N, W, dtype=dtype, generator=g).requires_grad_()
    keys = torch.randn(E, G, W, dtype=dtype, generator=g).requires_grad_()
    beta = (torch.rand(E, G, dtype=dtype, generator=g) * 5).requires_grad_()
    usage = torch.rand(*mem.shape[:-1], dtype=dtype, generator=g).requires_grad_()
    P = 3
    vals = torch.randn(*((P, W) if shared else (E, P, W)), dtype=dtype, generator=g).requires_grad_()
    prev = torch.softmax(torch.randn(*vals.shape[:-1], N, dtype=dtype, generator=g), -1).requires_grad_()
    alpha = torch.randn(vals.shape[:-1], dtype=dtype, generator=g).requires_grad_()

    def run():
        read, w = ops.memory_read(mem, keys, beta)
        g_read = torch.autograd.grad(read.sum() + (w ** 2).sum(), (mem, keys, beta))
        top = ops.memory_read(mem, keys, beta, topk=5)
        g_top = torch.autograd.grad(top.read.sum(), (mem, keys, beta))
        out = ops.memory_write_lrua(mem, usage, prev, alpha, vals)
        g_write = torch.autograd.grad(sum(t.sum() for t in out[:3]), (mem, usage, prev, alpha, vals))
        return (read, w, *g_read, top.read, top.indices, *g_top, *out, *g_write)

    across_threads(run)


def test_features_batch_and_stream():
    p = mr.datasets.synthetic_ohlc(n_days=400, n_assets=37, seed=5)
    close = p.close.copy()
    close[100:103, 4] = np.nan
    fs = F.FeatureSet(cc_windows=(5, 21), ewma_lambdas=(0.94,), range_window=10)

    def run():
        batch = fs.compute_array(close, p.open, p.high, p.low)
        stream = fs.stream(n_assets=37)
        rows = [stream.update(close[t], p.open[t], p.high[t], p.low[t]) for t in range(0, 400, 1)][-1]
        return (batch, *rows.values())

    across_threads(run)
