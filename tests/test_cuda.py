"""The CUDA inner loop against the torch.func reference; skips without a CUDA device or a CUDA
build of the core (this project's CI machine has nvcc but no GPU: .ci/run checks the build)."""
import pytest
import torch

import metarisk_fast as mr
from metarisk_fast import ops, reference
from conftest import make_params, make_tasks

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and mr.build_info()["cuda_compiled"]),
    reason="needs a CUDA device and a CUDA build of metarisk_fast._core")

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=1e-5)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("mode", ["second_order", "first_order", "reptile"])
def test_cuda_meta_gradients_match_reference(dtype, activation, mode):
    params = make_params([5, 16, 12, 1], dtype, activation)
    xs, ys, xq, yq = make_tasks(6, 9, 7, 5, dtype=dtype)
    kw = dict(steps=3, activation=activation, loss="gaussian_nll", mode=mode)
    cuda_params = [p.detach().cuda().requires_grad_() for p in params]
    got = ops.mlp_meta_loss(cuda_params, 0.05, xs.cuda(), ys.cuda(), xq.cuda(), yq.cuda(), **kw)
    want = reference.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, **kw)
    torch.testing.assert_close(got.cpu(), want, **TOL[dtype])
    g_got = torch.autograd.grad(got.sum(), cuda_params)
    g_want = torch.autograd.grad(want.sum(), params)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a.cpu(), b, **TOL[dtype])


def test_cuda_meta_sgd_and_adapt_predict():
    params = make_params([3, 8, 2])
    lrs = [torch.full_like(p, 0.05).requires_grad_() for p in params]
    xs, ys, xq, yq = make_tasks(4, 6, 5, 3, O=2)
    c = [p.detach().cuda().requires_grad_() for p in params]
    cl = [r.detach().cuda().requires_grad_() for r in lrs]
    got = torch.autograd.grad(ops.mlp_meta_loss(c, cl, xs.cuda(), ys.cuda(), xq.cuda(), yq.cuda(), steps=4).sum(), cl)
    want = torch.autograd.grad(reference.mlp_meta_loss(params, lrs, xs, ys, xq, yq, steps=4).sum(), lrs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, **TOL[torch.float64])
    pred = ops.mlp_adapt_predict([p.detach() for p in c], 0.05, xs.cuda(), ys.cuda(), xq.cuda(), steps=4)
    torch.testing.assert_close(pred.cpu(), reference.mlp_adapt_predict(params, 0.05, xs, ys, xq, steps=4),
                               **TOL[torch.float64])


def test_cuda_learner_and_device_mismatch():
    learner = mr.MAML(mr.MLP(3, (8,), 1), inner_lr=0.05, inner_steps=2).cuda()
    xs, ys, xq, yq = make_tasks(4, 6, 5, 3, dtype=torch.float32)
    learner.meta_loss(xs.cuda(), ys.cuda(), xq.cuda(), yq.cuda()).backward()
    assert all(p.grad is not None and p.grad.is_cuda for p in learner.parameters())
    with pytest.raises(ValueError, match="parameters are on cuda"):
        learner.meta_loss(xs, ys, xq, yq)


def test_cuda_per_task_starting_points():
    params = make_params([3, 8, 1])
    xs, ys, xq, yq = make_tasks(4, 6, 5, 3)
    offs = [0.1 * torch.randn((4, *p.shape), dtype=torch.float64) for p in params]
    cp = [p.detach().cuda().requires_grad_() for p in params]
    co = [o.cuda().requires_grad_() for o in offs]
    got = ops.mlp_meta_loss(cp, 0.05, xs.cuda(), ys.cuda(), xq.cuda(), yq.cuda(), steps=2, task_offsets=co)
    want = reference.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=2, task_offsets=offs)
    torch.testing.assert_close(got.cpu(), want, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared", [True, False])
def test_cuda_memory_read_and_write_match_twins(dtype, shared):
    g = torch.Generator().manual_seed(0)
    N, W, B, H = 37, 8, 5, 3
    mem = torch.randn(*(() if shared else (B,)), N, W, dtype=dtype, generator=g)
    keys = torch.randn(B, H, W, dtype=dtype, generator=g)
    beta = torch.rand(B, H, dtype=dtype, generator=g) * 3
    cpu = [t.clone().requires_grad_() for t in (mem, keys, beta)]
    gpu = [t.cuda().requires_grad_() for t in (mem, keys, beta)]
    r1, w1 = ops.memory_read(*gpu)
    r2, w2 = reference.memory_read(*cpu)
    torch.testing.assert_close(r1.cpu(), r2, **TOL[dtype])
    ga = torch.autograd.grad(r1.sum() + (w1 ** 2).sum(), gpu)
    gb = torch.autograd.grad(r2.sum() + (w2 ** 2).sum(), cpu)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a.cpu(), b, **TOL[dtype])
    usage = torch.rand(mem.shape[:-1], dtype=dtype, generator=g)
    P = 3
    vals = torch.randn(*((P, W) if shared else (B, P, W)), dtype=dtype, generator=g)
    prev = torch.softmax(torch.randn(*vals.shape[:-1], N, dtype=dtype, generator=g), -1)
    alpha = torch.randn(vals.shape[:-1], dtype=dtype, generator=g)
    cpu = [t.clone().requires_grad_() for t in (mem, usage, prev, alpha, vals)]
    gpu = [t.cuda().requires_grad_() for t in (mem, usage, prev, alpha, vals)]
    o1, o2 = ops.memory_write_lrua(*gpu), reference.memory_write_lrua(*cpu)
    for a, b in zip(o1[:3], o2[:3]):
        torch.testing.assert_close(a.cpu(), b, **TOL[dtype])
    torch.testing.assert_close(o1[3].cpu(), o2[3])
    ga = torch.autograd.grad(sum(t.sum() for t in o1[:3]), gpu)
    gb = torch.autograd.grad(sum(t.sum() for t in o2[:3]), cpu)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a.cpu(), b, **TOL[dtype])
