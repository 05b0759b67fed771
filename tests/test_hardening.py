"""Regression tests for what an audit of the public API found: crashes, hangs, silent NaN and
silently wrong results (issue #12), one test per finding."""
import threading

import numpy as np
import pytest
import torch

import metarisk_fast as mr
from metarisk_fast import features as F
from metarisk_fast import ops, reference
from metarisk_fast._types import EPS
from metarisk_fast.learners import ExternalMemory

from conftest import make_tasks


def test_topk_on_an_all_zero_memory_and_eps_checked():
    """A new ExternalMemory is all zeros: every similarity is 0, never 0/0, and eps = 0 is refused."""
    keys = torch.randn(16, 8)
    out = ops.memory_read(torch.zeros(16, 8), keys, topk=2)
    assert torch.isfinite(out.read).all() and (out.read == 0).all()
    assert ((out.indices >= 0) & (out.indices < 16)).all()
    assert (out.indices[:, 0] != out.indices[:, 1]).all()
    for eps in (0.0, -1e-6, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            ops.memory_read(torch.zeros(16, 8), keys, topk=2, eps=eps)
    read = ExternalMemory(slots=16, width=8).read(keys.unsqueeze(0))  # a new memory is all zeros
    assert all(torch.isfinite(t).all() for t in read if isinstance(t, torch.Tensor))


def test_an_overflowing_norm_is_a_clear_error_not_a_nan_similarity():
    """Finite entries whose norms overflow would give NaN similarities: the read and the top-k
    scan refuse them by name."""
    g = torch.Generator().manual_seed(0)
    mem = torch.randn(40, 8, generator=g)
    mem[3] = 3e38  # |M_3| overflows float32
    keys = torch.rand(5, 8, generator=g) + 0.5
    for topk in (None, 4):
        with pytest.raises(ValueError, match="memory slot 3 has a norm that overflows"):
            ops.memory_read(mem, keys, topk=topk)
    with pytest.raises(ValueError, match="key 2 has a norm that overflows"):
        ops.memory_read(torch.randn(40, 8), torch.cat([keys[:2], torch.full((1, 8), 3e38), keys[3:]]))
    # a norm that is finite in float32 but whose square is not (1e20 x sqrt(8)): the squares sum in
    # double, and the check still holds float32's range (a dot product could overflow otherwise)
    mem[3] = 1e20
    with pytest.raises(ValueError, match="memory slot 3 has a norm that overflows"):
        ops.memory_read(mem, keys)


def test_a_write_that_overflows_raises():
    mem = torch.full((10, 4), 3e38)
    usage = torch.rand(10)
    values = torch.full((2, 4), 3e38)
    prev = torch.softmax(torch.randn(2, 10), -1)
    with pytest.raises(FloatingPointError, match="overflowed"):
        ops.memory_write_lrua(mem, usage, prev, torch.full((2,), 5.0), values)


def test_beta_beyond_the_bound_is_refused():
    mem, keys = torch.randn(50, 8), torch.randn(4, 8)
    for topk in (None, 3):
        with pytest.raises(ValueError, match="beta"):
            ops.memory_read(mem, keys, torch.full((4,), 3e38), topk=topk)
    read, _ = ops.memory_read(mem, keys, torch.full((4,), 1e30))  # the bound itself works
    assert torch.isfinite(read).all()


def test_set_num_threads_during_a_shared_memory_backward():
    """Another thread changing the thread count mid-call neither corrupts memory nor changes the
    result (each call reads the count once; the backward's buffers do not depend on it)."""
    g = torch.Generator().manual_seed(1)
    mem = torch.randn(600, 16, generator=g, requires_grad=True)
    keys = torch.randn(300, 16, generator=g, requires_grad=True)

    def grads():
        r, w = ops.memory_read(mem, keys, 3.0)
        return torch.autograd.grad(r.sum() + (w ** 2).sum(), (mem, keys))

    want = grads()
    stop = threading.Event()

    def flip():
        n = 1
        while not stop.is_set():
            mr.set_num_threads(n)
            n = 3 - n

    before = mr.get_num_threads()
    t = threading.Thread(target=flip)
    t.start()
    try:
        for _ in range(30):
            got = grads()
            for a, b in zip(got, want):
                assert torch.equal(a, b)
    finally:
        stop.set()
        t.join()
        mr.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_read_backward_is_bitwise_reproducible_across_thread_counts(dtype):
    g = torch.Generator().manual_seed(2)
    mem = torch.randn(700, 32, generator=g, dtype=dtype, requires_grad=True)  # shared memory, many key blocks
    keys = torch.randn(200, 32, generator=g, dtype=dtype, requires_grad=True)
    beta = (torch.rand(200, generator=g, dtype=dtype) * 5).requires_grad_()

    def grads():
        r, w = ops.memory_read(mem, keys, beta)
        return torch.autograd.grad(r.sum() + (w ** 2).sum(), (mem, keys, beta))

    before = mr.get_num_threads()
    try:
        runs = []
        for n in (1, 2, 3, 1, 2):
            mr.set_num_threads(n)
            runs.append(grads())
    finally:
        mr.set_num_threads(before)
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert torch.equal(a, b)


def _sharp_key_draw(seed, N=1000, W=32, B=64):
    """A memory, keys near its first rows, beta = 500 (softmax weights on one or two slots) and a
    cotangent of the read, in float64."""
    g = torch.Generator().manual_seed(seed)
    mem = torch.randn(N, W, generator=g, dtype=torch.float64)
    keys = mem[:B] + 1.0 * torch.randn(B, W, generator=g, dtype=torch.float64)
    return mem, keys, torch.full((B,), 500.0, dtype=torch.float64), torch.randn(B, W, generator=g, dtype=torch.float64)


def _read_grads(fn, dtype, mem, keys, beta, d_read):
    ts = [t.to(dtype).clone().requires_grad_() for t in (mem, keys, beta)]
    read, _ = fn(*ts)
    return [x.double() for x in torch.autograd.grad((read * d_read.to(dtype)).sum(), ts)]


def test_float32_read_backward_at_a_sharp_key_is_as_accurate_as_eager():
    """At beta = 500 a float32 read's gradients are as far from the float64 result as eager
    float32's, within 2x, summed over 16 draws. One draw's error is set by the one or two keys whose
    best two slots nearly tie: there both paths are off by a few ulps of a cosine times beta, and
    one draw's ratio to eager ranges from 0.1 to 9 with the rounding luck of those keys, on every
    ISA module; summed over 1,024 keys it is 0.8-1.3 (bench/RESULTS.md)."""
    ours_sq, eager_sq = np.zeros(3), np.zeros(3)
    for seed in range(16):
        draw = _sharp_key_draw(seed)
        exact = _read_grads(reference.memory_read, torch.float64, *draw)
        ours = _read_grads(ops.memory_read, torch.float32, *draw)
        eager = _read_grads(reference.memory_read, torch.float32, *draw)
        ours_sq += [float(((o - x) ** 2).sum()) for o, x in zip(ours, exact)]
        eager_sq += [float(((e - x) ** 2).sum()) for e, x in zip(eager, exact)]
    assert np.all(np.sqrt(ours_sq / eager_sq) <= 2.0), np.sqrt(ours_sq / eager_sq)


def test_float32_read_backward_adds_little_to_its_weights_error():
    """Given the weights of the float64 read (rounded to float32), the float32 backward at a sharp
    key stays within a quarter of eager float32's error in the memory and key gradients: p (dp - sum
    p dp) cancels on the slot that holds nearly all the weight, and the kernel sums p dp in double for
    that reason. (beta's gradient is bounded by the float32 weights themselves.)"""
    from metarisk_fast._native import core

    mem, keys, beta, d_read = _sharp_key_draw(3)
    exact = _read_grads(reference.memory_read, torch.float64, mem, keys, beta, d_read)
    eager = _read_grads(reference.memory_read, torch.float32, mem, keys, beta, d_read)
    weights = reference.memory_read(mem, keys, beta).weights
    f32 = lambda t: t.to(torch.float32).numpy()  # noqa: E731
    d_keys, _, d_mem = core.memory_read_backward(f32(mem)[None], f32(keys), f32(beta), EPS, f32(weights),
                                                      f32(d_read), None)
    for o, e, x in zip((d_mem[0], d_keys), eager, exact):
        assert (torch.from_numpy(o).double() - x).norm() <= 0.25 * (e - x).norm()


def test_inner_steps_and_workspace_are_bounded():
    params = [p.detach() for p in mr.MLP(3, (8,), 1).parameters()]
    xs, ys, xq, yq = make_tasks(2, 4, 3, 3, dtype=torch.float32)
    for steps in (2 ** 62 - 1, 10_001):
        with pytest.raises(ValueError, match=r"inner_steps must be in \[0, 10000\]"):
            ops.mlp_adapt_predict(params, 0.1, xs, ys, xq, steps=steps)
    big = torch.zeros(1, 2_000_000, 3)  # 2 M support rows x 10,000 second-order steps: terabytes
    with pytest.raises(ValueError, match="workspace"):
        ops.mlp_meta_loss([p.clone().requires_grad_() for p in params], 0.1, big, torch.zeros(1, 2_000_000, 1),
                          xq[:1], yq[:1], steps=10_000)
    theta = np.concatenate([p.numpy().ravel() for p in params])
    with pytest.raises(ValueError, match=r"inner_steps must be in \[0, 10000\]"):
        ops.mlp_adapt_predict_numpy(theta, np.array([0.1], np.float32), [3, 8, 1], xs.numpy(), ys.numpy(),
                                    xq.numpy(), steps=2 ** 62 - 1)


def test_the_numpy_hot_path_names_a_bad_argument():
    params = [p.detach() for p in mr.MLP(3, (8,), 1).parameters()]
    xs, ys, xq, _ = (t.numpy() for t in make_tasks(2, 4, 3, 3, dtype=torch.float32))
    theta = np.concatenate([p.numpy().ravel() for p in params])
    lr = np.array([0.1], np.float32)
    cases = [
        (dict(xs=xs.tolist()), TypeError, "xs must be a numpy.ndarray"),
        (dict(sizes=[3, "x", 1]), TypeError, "sizes must be a sequence of ints"),
        (dict(activation="gelu"), ValueError, "activation must be one of"),
        (dict(steps=1.5), TypeError, "inner_steps must be an int"),
        (dict(xs=xs.astype(np.float64)), ValueError, "xs"),
    ]
    for change, exc, match in cases:
        kw = dict(theta=theta, lr=lr, sizes=[3, 8, 1], xs=xs, ys=ys, xq=xq, steps=2, activation="relu")
        kw.update(change)
        with pytest.raises(exc, match=match) as info:
            ops.mlp_adapt_predict_numpy(kw.pop("theta"), kw.pop("lr"), kw.pop("sizes"), kw.pop("xs"), kw.pop("ys"),
                                        kw.pop("xq"), **kw)
        assert "incompatible function arguments" not in str(info.value)


@pytest.mark.parametrize("steps", [0, 2])
def test_a_non_finite_parameter_of_one_task_is_named_by_its_place(steps):
    """Per-task parameters are checked task by task (in the kernel's parallel loop): the message
    still gives the flat index in the whole (B, P) array, and no prediction comes back."""
    params = [p.detach() for p in mr.MLP(3, (8,), 1).parameters()]
    xs, ys, xq, _ = (t.numpy() for t in make_tasks(4, 4, 3, 3, dtype=torch.float32))
    theta = np.tile(np.concatenate([p.numpy().ravel() for p in params]), (4, 1))
    theta[2, 5] = np.nan
    with pytest.raises(ValueError, match=rf"theta \(initial parameters\) contains a non-finite value \(nan\) at "
                                         rf"flat index {2 * theta.shape[1] + 5}\b"):
        ops.mlp_adapt_predict_numpy(theta, np.array([0.1], np.float32), [3, 8, 1], xs, ys, xq, steps=steps)


def test_divergence_raises_on_every_path():
    learner = mr.MAML(mr.MLP(3, (8,), 1), inner_lr=1e6, inner_steps=20)
    xs, ys, xq, yq = make_tasks(2, 4, 3, 3, dtype=torch.float32)
    with pytest.raises(FloatingPointError, match="diverged"):
        learner.meta_loss(xs, ys, xq, yq)
    with pytest.raises(FloatingPointError, match="diverged"):
        learner.adapt_predict(xs, ys, xq)
    with pytest.raises(FloatingPointError, match="diverged"):
        learner.adapt_predict(xs.numpy(), ys.numpy(), xq.numpy())
    with pytest.raises(FloatingPointError, match="diverged"):
        learner.adapt(xs, ys)


@pytest.mark.parametrize("update", ["fused_adam", "data_assignment", "data_copy"])
def test_numpy_path_sees_every_parameter_update(update):
    torch.manual_seed(0)
    learner = mr.MAML(mr.MLP(3, (8,), 1), inner_lr=0.05, inner_steps=2)
    xs, ys, xq, yq = make_tasks(4, 6, 5, 3, dtype=torch.float32)
    learner.adapt_predict(xs.numpy(), ys.numpy(), xq.numpy())  # fills any cache
    if update == "fused_adam":
        opt = torch.optim.Adam(learner.parameters(), lr=0.1, fused=True)
        learner.meta_loss(xs, ys, xq, yq).backward()
        opt.step()
    else:
        for p in learner.parameters():
            if update == "data_assignment":
                p.data = p.data + 0.3
            else:
                p.data.copy_(p.data - 0.3)
    np.testing.assert_allclose(learner.adapt_predict(xs.numpy(), ys.numpy(), xq.numpy()),
                               learner.adapt_predict(xs, ys, xq).numpy(), rtol=1e-5, atol=1e-6)


def test_a_rejected_bar_leaves_the_stream_untouched():
    p = mr.datasets.synthetic_ohlc(n_days=120, n_assets=3, seed=0)
    fs = F.FeatureSet(cc_windows=(5, 21), ewma_lambdas=(0.94,), range_window=10)
    clean, faulty = fs.stream(n_assets=3), fs.stream(n_assets=3)
    bars = [(p.close[t], p.open[t], p.high[t], p.low[t]) for t in range(120)]
    for t, bar in enumerate(bars):
        want = clean.update(*bar)
        if t in (30, 31, 60):
            bad_close = bar[0].copy()
            bad_close[1] = -5.0
            with pytest.raises(ValueError, match="non-positive or infinite price"):
                faulty.update(bad_close, *bar[1:])
            crossed = (bar[0], bar[1], bar[3], bar[2] * 1.5)
            with pytest.raises(ValueError, match="high < low"):
                faulty.update(*crossed)
        got = faulty.update(*bar)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("bad", [np.array([True, False, True]), np.array([1 + 1j, 2.0, 3.0])])
def test_the_stream_refuses_bool_and_complex_bars(bad):
    s = F.FeatureSet(range_features=()).stream(n_assets=3)
    with pytest.raises(TypeError, match="real numbers"):
        s.update(bad)
    with pytest.raises(TypeError, match="numbers"):
        F.close_to_close_vol(np.tile(bad, (30, 1)), 5)


@pytest.mark.parametrize("window", [2 ** 40, 2 ** 63 - 1, 100_001])
def test_huge_windows_are_refused_at_once(window):
    c = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, (50, 2)), axis=0))
    with pytest.raises(ValueError, match=r"window must be an int in \[2, 100000\]"):
        F.close_to_close_vol(c, window)
    with pytest.raises(ValueError, match=r"window must be an int in \[2, 100000\]"):
        F.FeatureSet(cc_windows=(5, window), range_features=()).stream(n_assets=2)


def test_an_overflowing_return_leaves_the_window_with_it():
    """Extreme but valid prices whose ratio overflows: the return is treated as missing, and the
    features are exact again once it has left the window."""
    rng = np.random.default_rng(1)
    c = np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    c[200] = 1e-300
    c[201] = 1e300  # ln(1e300 / 1e-300) overflows the ratio
    w = 21
    got = F.close_to_close_vol(c, w)
    want = reference.features.close_to_close_vol(np.where(np.arange(400) == 201, np.nan, c), w)
    after = np.arange(400) >= 202 + w
    np.testing.assert_allclose(got[after], want[after], rtol=1e-10)
    assert np.isfinite(got[after]).all()
    ewma = F.ewma_vol(c, 0.94)
    assert np.isfinite(ewma[210:]).all()


def test_parkinson_needs_only_high_and_low():
    p = mr.datasets.synthetic_ohlc(n_days=80, n_assets=2, seed=3)
    close = p.close.copy()
    close[40, 0] = np.nan
    fs = F.FeatureSet(cc_windows=(5,), ewma_lambdas=(), range_window=10)
    out = fs.compute(close, p.open, p.high, p.low)
    np.testing.assert_allclose(out["parkinson_vol_10"], reference.features.parkinson_vol(p.high, p.low, 10),
                               rtol=1e-10)
    assert np.isnan(out["garman_klass_vol_10"][40:50, 0]).all()  # it uses the close: NaN in that window
