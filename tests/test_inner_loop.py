"""Fused inner loops against the torch.func reference: forward, adapted parameters,
meta-gradients (theta and per-parameter rates), gradcheck, NumPy path, bad input."""
import numpy as np
import pytest
import torch

import metarisk_fast as mr
from metarisk_fast import ops, reference
from conftest import DEVICE_TOL, make_params, make_tasks

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=1e-5)}


def _grads(fn, params, lrs, B, seed=1):
    losses = fn()
    w = torch.randn(B, dtype=losses.dtype, generator=torch.Generator().manual_seed(seed))
    return losses, torch.autograd.grad((losses * w).sum(), params + lrs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("loss", ["mse", "gaussian_nll", "student_t_nll", "bce"])
@pytest.mark.parametrize("mode", ["second_order", "first_order", "reptile"])
def test_meta_loss_and_gradients_match_reference(dtype, activation, loss, mode):
    sizes, B = [5, 12, 9, 1], 4
    params = make_params(sizes, dtype, activation)
    xs, ys, xq, yq = make_tasks(B, 7, 6, 5, dtype=dtype, loss=loss)
    kw = dict(steps=3, activation=activation, loss=loss, mode=mode)
    got, g_got = _grads(lambda: ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, **kw), params, [], B)
    want, g_want = _grads(lambda: reference.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, **kw), params, [], B)
    torch.testing.assert_close(got, want, **TOL[dtype])
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["second_order", "first_order"])
def test_meta_sgd_learning_rate_gradients(dtype, mode):
    sizes, B = [3, 8, 2], 5
    params = make_params(sizes, dtype)
    lrs = [torch.rand_like(p).mul(0.1).requires_grad_() for p in params]
    xs, ys, xq, yq = make_tasks(B, 6, 4, 3, O=2, dtype=dtype)
    kw = dict(steps=4, mode=mode)
    got, g_got = _grads(lambda: ops.mlp_meta_loss(params, lrs, xs, ys, xq, yq, **kw), params, lrs, B)
    want, g_want = _grads(lambda: reference.mlp_meta_loss(params, lrs, xs, ys, xq, yq, **kw), params, lrs, B)
    torch.testing.assert_close(got, want, **TOL[dtype])
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_scalar_learning_rate_gradient():
    params = make_params([3, 6, 1])
    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    xs, ys, xq, yq = make_tasks(3, 5, 5, 3)
    g1 = torch.autograd.grad(ops.mlp_meta_loss(params, lr, xs, ys, xq, yq, steps=3).sum(), [lr])
    g2 = torch.autograd.grad(reference.mlp_meta_loss(params, lr, xs, ys, xq, yq, steps=3).sum(), [lr])
    torch.testing.assert_close(g1[0], g2[0], **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss", ["mse", "gaussian_nll"])
@pytest.mark.parametrize("mode", ["second_order", "first_order"])
def test_row_weighted_losses_match_reference(dtype, loss, mode):
    """Per-row weights (an advantage-weighted likelihood step): signed, on support and query
    rows; loss and meta-gradient against the torch.func twin."""
    sizes, B, K, Q = [4, 10, 1], 5, 7, 6
    params = make_params(sizes, dtype)
    xs, ys, xq, yq = make_tasks(B, K, Q, 4, dtype=dtype, loss=loss)
    g = torch.Generator().manual_seed(3)
    ws, wq = torch.randn(B, K, dtype=dtype, generator=g), torch.rand(B, Q, dtype=dtype, generator=g)
    kw = dict(steps=3, loss=loss, mode=mode, support_weights=ws, query_weights=wq)
    got, g_got = _grads(lambda: ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, **kw), params, [], B)
    want, g_want = _grads(lambda: reference.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, **kw), params, [], B)
    torch.testing.assert_close(got, want, **TOL[dtype])
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, **TOL[dtype])
    pred = ops.mlp_adapt_predict([p.detach() for p in params], 0.05, xs, ys, xq, steps=3, loss=loss, support_weights=ws)
    torch.testing.assert_close(pred, reference.mlp_adapt_predict([p.detach() for p in params], 0.05, xs, ys, xq,
                                                                 steps=3, loss=loss, support_weights=ws), **TOL[dtype])


def test_unit_row_weights_are_no_weights_and_bad_weights_are_named():
    params = make_params([3, 6, 1])
    xs, ys, xq, yq = make_tasks(4, 5, 3, 3)
    plain = ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=2)
    ones = ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=2, support_weights=torch.ones(4, 5, dtype=torch.float64),
                             query_weights=np.ones((4, 3)))
    torch.testing.assert_close(ones, plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"support_weights must have shape \(4, 5\)"):
        ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=2, support_weights=torch.ones(4, 4, dtype=torch.float64))
    bad = torch.ones(4, 3, dtype=torch.float64)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="query_weights hold a NaN"):
        ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=2, query_weights=bad)


def test_gradcheck_with_row_weights():
    params = make_params([2, 4, 1])
    xs, ys, xq, yq = make_tasks(2, 3, 3, 2)
    ws, wq = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.0, 1.5]], dtype=torch.float64), torch.rand(2, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda *p: ops.mlp_meta_loss(list(p), 0.1, xs, ys, xq, yq, steps=2, support_weights=ws, query_weights=wq),
        tuple(params), eps=1e-6, atol=1e-7)


def test_student_t_loss_is_the_t_density_with_that_variance():
    """The kernel's loss at zero steps is -log of scipy's t density (nu = STUDENT_T_NU) of y with
    scale chosen so its variance is exp(z); its minimum over z sits at the variance of y's t."""
    from scipy import stats
    from metarisk_fast._types import STUDENT_T_NU as nu

    params = make_params([3, 1])  # z = w x + b: set to chosen values below
    xs, ys, xq, yq = make_tasks(2, 4, 6, 3)
    with torch.no_grad():
        params[0].zero_()
        params[1].fill_(0.7)
    got = ops.mlp_meta_loss(params, 0.0, xs, ys, xq, yq, steps=0, loss="student_t_nll")
    scale = np.sqrt(np.exp(0.7) * (nu - 2) / nu)
    want = -stats.t.logpdf(yq.numpy(), nu, scale=scale).mean(axis=(1, 2))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)


def test_student_t_twin_stays_finite_where_the_ratio_overflows():
    """The torch twin's t loss has finite gradients at extreme z (y^2 e^-z overflowing or 0)."""
    from metarisk_fast._losses import elementwise_loss

    z = torch.tensor([-800.0, -100.0, 0.0, 800.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    (g,) = torch.autograd.grad(elementwise_loss(z, y, "student_t_nll").sum(), z)
    torch.testing.assert_close(g, torch.tensor([-2.5, -2.5, 0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("loss", ["gaussian_nll", "student_t_nll"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("mode", ["second_order", "first_order"])
def test_gradcheck(activation, mode, loss):
    params = make_params([2, 4, 3, 1], activation=activation)
    lrs = [torch.full_like(p, 0.1).requires_grad_() for p in params]
    xs, ys, xq, yq = make_tasks(2, 3, 3, 2)

    def f(*tensors):
        return ops.mlp_meta_loss(list(tensors[:6]), list(tensors[6:]), xs, ys, xq, yq, steps=2,
                                 activation=activation, loss=loss, mode=mode)

    if mode == "first_order":  # the first-order gradient is an approximation: check the lrs only
        torch.testing.assert_close(
            torch.autograd.grad(f(*params, *lrs).sum(), lrs),
            torch.autograd.grad(reference.mlp_meta_loss(params, lrs, xs, ys, xq, yq, steps=2,
                                activation=activation, loss=loss, mode=mode).sum(), lrs))
    else:
        assert torch.autograd.gradcheck(f, (*params, *lrs), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_adapt_and_predict_match_reference(dtype):
    sizes = [4, 16, 16, 2]
    params = make_params(sizes, dtype, "tanh", requires_grad=False)
    xs, ys, xq, _ = make_tasks(6, 10, 3, 4, O=2, dtype=dtype)
    got = ops.mlp_adapt(params, 0.03, xs, ys, steps=5, activation="tanh")
    want = reference.mlp_adapt(params, 0.03, xs, ys, steps=5, activation="tanh")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[dtype])
    torch.testing.assert_close(
        ops.mlp_adapt_predict(params, 0.03, xs, ys, xq, steps=5, activation="tanh"),
        reference.mlp_adapt_predict(params, 0.03, xs, ys, xq, steps=5, activation="tanh"), **TOL[dtype])


def test_zero_steps_is_the_initial_network():
    params = make_params([3, 5, 1], requires_grad=False)
    xs, ys, xq, _ = make_tasks(2, 4, 3, 3)
    pred = ops.mlp_adapt_predict(params, 0.1, xs, ys, xq, steps=0)
    torch.testing.assert_close(pred, reference.mlp_forward(params, xq))


def test_non_contiguous_inputs_give_the_contiguous_result():
    params = make_params([3, 8, 1])
    xs, ys, xq, yq = make_tasks(4, 10, 6, 3)
    base = ops.mlp_meta_loss(params, 0.05, xs[:, ::2], ys[:, ::2], xq, yq, steps=2)
    same = ops.mlp_meta_loss(params, 0.05, xs[:, ::2].contiguous(), ys[:, ::2].contiguous(), xq, yq, steps=2)
    torch.testing.assert_close(base, same)
    xt = xs.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    torch.testing.assert_close(ops.mlp_meta_loss(params, 0.05, xt, ys, xq, yq, steps=2),
                               ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=2))


def test_numpy_arrays_are_accepted_and_numpy_path_matches():
    net = mr.MLP(4, (8,), 1)
    learner = mr.MAML(net, inner_lr=0.02, inner_steps=3)
    xs, ys, xq, _ = make_tasks(3, 6, 2, 4, dtype=torch.float32)
    want = learner.adapt_predict(xs, ys, xq)
    got = learner.adapt_predict(xs.numpy(), ys.numpy(), xq.numpy())
    assert isinstance(got, np.ndarray) and got.shape == (3, 2, 1)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-7)
    single = learner.adapt_predict(xs[0].numpy(), ys[0].numpy(), xq[0].numpy())
    np.testing.assert_allclose(single, want[0].numpy(), rtol=1e-6, atol=1e-7)
    # the cached flat parameters follow an optimizer step
    opt = torch.optim.SGD(learner.parameters(), lr=0.1)
    learner.meta_loss(xs, ys, xq, torch.ones(3, 2, 1)).backward()
    opt.step()
    np.testing.assert_allclose(learner.adapt_predict(xs.numpy(), ys.numpy(), xq.numpy()),
                               learner.adapt_predict(xs, ys, xq).numpy(), rtol=1e-6, atol=1e-7)


def test_an_equivalent_dtype_descriptor_is_accepted():
    """An array whose float32 descriptor is numpy-equivalent but another object (as another library,
    Numba for one, may make) is the same input, not a dtype error."""
    net = mr.MLP(4, (8,), 1)
    learner = mr.MAML(net, inner_lr=0.02, inner_steps=3)
    xs, ys, xq, _ = make_tasks(3, 6, 2, 4, dtype=torch.float32)
    other = np.dtype(np.float32).newbyteorder("=")
    assert other is not np.dtype(np.float32) and other == np.float32
    arrays = [a.numpy().view(other) for a in (xs, ys, xq)]
    assert all(a.dtype is other for a in arrays)
    np.testing.assert_array_equal(learner.adapt_predict(*arrays), learner.adapt_predict(xs.numpy(), ys.numpy(),
                                                                                        xq.numpy()))
    weights = learner.adapt_predict_weights(xs.numpy(), ys.numpy(), xq.numpy())[1]
    np.testing.assert_array_equal(learner.predict_with_weights(weights.view(other), arrays[2]),
                                  learner.predict_with_weights(weights, xq.numpy()))


def test_thread_count_does_not_change_results():
    params = make_params([4, 16, 1])
    xs, ys, xq, yq = make_tasks(9, 8, 8, 4)
    mr.set_num_threads(1)
    try:
        one = torch.autograd.grad(ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=3).sum(), params)
    finally:
        mr.set_num_threads(2)
    two = torch.autograd.grad(ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=3).sum(), params)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_core_shares_torchs_openmp_runtime(tmp_path):
    """The core's parallel loops must run on the OpenMP runtime torch uses, not on a second copy
    (csrc/common/parallel.h): in a fresh interpreter, after `import metarisk_fast`, a torch op
    and a parallel kernel call, exactly one libgomp is mapped."""
    import ast
    import subprocess
    import sys

    code = (
        "import metarisk_fast, torch\n"
        "from metarisk_fast import ops\n"
        "torch.randn(512, 512) @ torch.randn(512, 512)\n"
        "ops.memory_read(torch.randn(64, 8), torch.randn(40, 8))\n"
        "maps = open('/proc/self/maps').read().splitlines()\n"
        "print(sorted({l.split()[-1] for l in maps if 'libgomp' in l}))\n"
    )
    # run outside the source tree, so that the installed package (with its built core) imports
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    gomps = ast.literal_eval(out)  # the mapped libgomp files
    assert len(gomps) == 1, gomps


# ---------------------------------------------------------------------------- bad input
def _valid():
    params = make_params([3, 4, 1])
    return params, make_tasks(2, 4, 3, 3)


@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (lambda a: a.update(xs=a["xs"][:, :, :2]), ValueError, "xs has 2 features"),
        (lambda a: a.update(ys=a["ys"][:, :3]), ValueError, "ys must have shape"),
        (lambda a: a.update(xq=a["xq"][:1]), ValueError, "xq must have shape"),
        (lambda a: a.update(yq=None), ValueError, "query targets yq are required"),
        (lambda a: a.update(xs=a["xs"][:0], ys=a["ys"][:0]), ValueError, "zero tasks"),
        (lambda a: a.update(xs=a["xs"].float()), TypeError, "dtype"),
        (lambda a: a.update(xs=a["xs"].to(torch.int64)), TypeError, "float32 or float64"),
        (lambda a: a.update(xs=a["xs"][0]), ValueError, "3-D"),
        (lambda a: a["xs"].__setitem__((1, 2, 0), float("nan")), ValueError, "xs .*non-finite.*index"),
        (lambda a: a["yq"].__setitem__((0, 0, 0), float("inf")), ValueError, "yq .*non-finite"),
        (lambda a: a.update(steps=-1), ValueError, r"inner_steps must be in \[0, 10000\]"),
        (lambda a: a.update(steps=2.5), TypeError, "inner_steps must be an int"),
        (lambda a: a.update(mode="third_order"), ValueError, "mode must be one of"),
        (lambda a: a.update(loss="hinge"), ValueError, "loss must be one of"),
        (lambda a: a.update(params=a["params"][:3]), ValueError, "pairs"),
        (lambda a: a.update(xs=[[1.0]]), TypeError, "torch.Tensor or numpy.ndarray"),
    ],
)
def test_bad_input_gets_a_clear_error(mutate, exc, match):
    params, (xs, ys, xq, yq) = _valid()
    args = dict(params=params, xs=xs, ys=ys, xq=xq, yq=yq, steps=2, mode="second_order", loss="mse")
    mutate(args)
    with pytest.raises(exc, match=match):
        ops.mlp_meta_loss(args["params"], 0.1, args["xs"], args["ys"], args["xq"], args["yq"],
                          steps=args["steps"], mode=args["mode"], loss=args["loss"])


def test_numpy_hot_path_rejects_bad_buffers():
    theta = np.zeros(3 * 4 + 4 + 4 + 1)
    lr = np.array([0.1])
    xs, ys, xq = np.zeros((1, 4, 3)), np.zeros((1, 4, 1)), np.zeros((1, 1, 3))
    with pytest.raises(ValueError, match="theta must have shape"):
        ops.mlp_adapt_predict_numpy(theta[:-1], lr, [3, 4, 1], xs, ys, xq, steps=1)
    with pytest.raises(ValueError, match="xs must have dtype"):
        ops.mlp_adapt_predict_numpy(theta, lr, [3, 4, 1], xs.astype(np.float32), ys, xq, steps=1)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.mlp_adapt_predict_numpy(theta, lr, [3, 4, 1], np.zeros((1, 3, 4)).transpose(0, 2, 1), ys, xq, steps=1)
    bad = xs.copy()
    bad[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="xs .*non-finite.*index 10"):
        ops.mlp_adapt_predict_numpy(theta, lr, [3, 4, 1], bad, ys, xq, steps=1)


def test_divergence_is_reported_not_returned_as_nan():
    params = make_params([3, 8, 1])
    xs, ys, xq, yq = make_tasks(2, 4, 3, 3)
    with pytest.raises(FloatingPointError, match="diverged"):
        ops.mlp_meta_loss(params, 1e6, xs, ys * 1e6, xq, yq, steps=5)


def test_learner_argument_errors():
    with pytest.raises(ValueError, match="inner_steps"):
        mr.MAML(mr.MLP(2, (3,), 1), inner_steps=-1)
    with pytest.raises(ValueError, match="inner_lr"):
        mr.MAML(mr.MLP(2, (3,), 1), inner_lr=0.0)
    with pytest.raises(TypeError, match="MLP"):
        mr.MAML(torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match="activation"):
        mr.MLP(2, (3,), 1, activation="gelu")


@pytest.mark.parametrize("mode", ["second_order", "first_order", "reptile"])
def test_per_task_starting_points_match_reference(mode):
    """task_offsets: each task starts from params + its offset; gradients reach both."""
    params = make_params([3, 8, 1])
    xs, ys, xq, yq = make_tasks(4, 6, 5, 3)
    g = torch.Generator().manual_seed(2)
    offs = [(0.1 * torch.randn((4, *p.shape), dtype=torch.float64, generator=g)).requires_grad_() for p in params]
    kw = dict(steps=3, mode=mode, task_offsets=offs)
    got = ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, **kw)
    want = reference.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, **kw)
    torch.testing.assert_close(got, want, **TOL[torch.float64])
    w = torch.randn(4, dtype=torch.float64, generator=g)
    for a, b in zip(torch.autograd.grad((got * w).sum(), params + offs),
                    torch.autograd.grad((want * w).sum(), params + offs)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    start = [(p + o[1]).detach() for p, o in zip(params, offs)]
    torch.testing.assert_close(ops.mlp_adapt_predict(params, 0.05, xs, ys, xq, steps=0, task_offsets=offs)[1],
                               reference.mlp_forward(start, xq[1]))
    with pytest.raises(ValueError, match="task_offsets"):
        ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=1, task_offsets=offs[:2])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("mode", ["second_order", "first_order", "reptile"])
def test_meta_gradients_match_reference_on_every_device(device, dtype, activation, mode):
    params = make_params([5, 16, 12, 1], dtype, activation)
    xs, ys, xq, yq = make_tasks(6, 9, 7, 5, dtype=dtype)
    kw = dict(steps=3, activation=activation, loss="gaussian_nll", mode=mode)
    dev_params = [p.detach().to(device).requires_grad_() for p in params]
    got = ops.mlp_meta_loss(dev_params, 0.05, xs.to(device), ys.to(device), xq.to(device), yq.to(device), **kw)
    want = reference.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, **kw)
    torch.testing.assert_close(got.cpu(), want, **DEVICE_TOL[dtype])
    g_got = torch.autograd.grad(got.sum(), dev_params)
    g_want = torch.autograd.grad(want.sum(), params)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a.cpu(), b, **DEVICE_TOL[dtype])


def test_meta_sgd_and_adapt_predict_on_every_device(device):
    params = make_params([3, 8, 2])
    lrs = [torch.full_like(p, 0.05).requires_grad_() for p in params]
    xs, ys, xq, yq = make_tasks(4, 6, 5, 3, O=2)
    c = [p.detach().to(device).requires_grad_() for p in params]
    cl = [r.detach().to(device).requires_grad_() for r in lrs]
    got = torch.autograd.grad(ops.mlp_meta_loss(c, cl, xs.to(device), ys.to(device), xq.to(device), yq.to(device), steps=4).sum(), cl)
    want = torch.autograd.grad(reference.mlp_meta_loss(params, lrs, xs, ys, xq, yq, steps=4).sum(), lrs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, **DEVICE_TOL[torch.float64])
    pred = ops.mlp_adapt_predict([p.detach() for p in c], 0.05, xs.to(device), ys.to(device), xq.to(device), steps=4)
    torch.testing.assert_close(pred.cpu(), reference.mlp_adapt_predict(params, 0.05, xs, ys, xq, steps=4),
                               **DEVICE_TOL[torch.float64])


def test_learner_on_every_device(device):
    learner = mr.MAML(mr.MLP(3, (8,), 1), inner_lr=0.05, inner_steps=2).to(device)
    xs, ys, xq, yq = make_tasks(4, 6, 5, 3, dtype=torch.float32)
    learner.meta_loss(xs.to(device), ys.to(device), xq.to(device), yq.to(device)).backward()
    assert all(p.grad is not None and p.grad.device.type == device for p in learner.parameters())
    if device != "cpu":
        with pytest.raises(ValueError, match="parameters are on cuda"):
            learner.meta_loss(xs, ys, xq, yq)


def test_per_task_starting_points_on_every_device(device):
    params = make_params([3, 8, 1])
    xs, ys, xq, yq = make_tasks(4, 6, 5, 3)
    offs = [0.1 * torch.randn((4, *p.shape), dtype=torch.float64) for p in params]
    cp = [p.detach().to(device).requires_grad_() for p in params]
    co = [o.to(device).requires_grad_() for o in offs]
    got = ops.mlp_meta_loss(cp, 0.05, xs.to(device), ys.to(device), xq.to(device), yq.to(device), steps=2, task_offsets=co)
    want = reference.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=2, task_offsets=offs)
    torch.testing.assert_close(got.cpu(), want, **DEVICE_TOL[torch.float64])
