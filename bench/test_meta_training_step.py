"""One meta-training step (W1 in bench/WORKLOADS.md): B = 64 tasks, K = Q = 32, MLP 16-64-64-1, MSE,
S = 5 inner steps at lr 0.01: inner loops + query loss + gradient w.r.t. the initial parameters
(the optimizer step excluded). Metric: tasks per second. Peers: a per-task loop in plain
PyTorch, torch.func (vmap over tasks of a grad-based inner loop), and higher where installed."""
import pytest
import torch

import metarisk_fast as mr
from conftest import mlp_flops
from metarisk_fast import reference

B, K, Q, D, S, LR = 64, 32, 32, 16, 5, 0.01
SIZES = [D, 64, 64, 1]
VARIANTS = ["maml2", "fomaml", "reptile", "metasgd"]


def flops_per_task(variant):
    """Analytic FLOPs (bench/RESULTS.md): per row forward 2P, backward 4P - 2 d0 d1; an HVP
    costs forward + backward twice (R-forward and R-backward)."""
    forward, fb = mlp_flops(SIZES)
    inner = S * K * fb
    query = Q * fb if variant != "reptile" else forward * Q
    hvp = S * K * 2 * fb if variant in ("maml2", "metasgd") else 0
    return inner + query + hvp


def workload(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(*s, generator=g, dtype=dtype) for s in
                 [(B, K, D), (B, K, 1), (B, Q, D), (B, Q, 1)])


def learner_for(variant):
    net = mr.MLP(D, SIZES[1:-1], 1)
    return {"maml2": lambda: mr.MAML(net, LR, S), "fomaml": lambda: mr.MAML(net, LR, S, first_order=True),
            "reptile": lambda: mr.Reptile(net, LR, S), "metasgd": lambda: mr.MetaSGD(net, LR, S)}[variant]()


def _record(benchmark, variant):
    benchmark.extra_info["flops_per_task"] = flops_per_task(variant)


def _tasks_per_s(benchmark):
    benchmark.extra_info["tasks_per_s"] = round(B / benchmark.stats.stats.median)
    benchmark.extra_info["gflops"] = round(benchmark.extra_info["flops_per_task"] * B
                                           / benchmark.stats.stats.median / 1e9, 1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_metarisk_fast(benchmark, variant):
    benchmark.group = f"meta-step {variant}"
    learner = learner_for(variant)
    data = workload()

    def step():
        learner.zero_grad(set_to_none=True)
        learner.meta_loss(*data).backward()

    _record(benchmark, variant)
    benchmark.pedantic(step, rounds=30, warmup_rounds=3)
    _tasks_per_s(benchmark)


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_func_vmap(benchmark, variant):
    benchmark.group = f"meta-step {variant}"
    learner = learner_for(variant)
    params = list(learner.net.parameters())
    lr = list(learner.inner_lrs) if variant == "metasgd" else LR
    mode = learner.mode
    data = workload()

    def step():
        for p in learner.parameters():
            p.grad = None
        reference.mlp_meta_loss(params, lr, *data, steps=S, mode=mode).mean().backward()

    _record(benchmark, variant)
    benchmark.pedantic(step, rounds=10, warmup_rounds=2)
    _tasks_per_s(benchmark)


def _plain_loop_step(params, lrs, data, variant):
    """learn2learn style: per task, clone the parameters, adapt with autograd.grad, backprop."""
    xs, ys, xq, yq = data
    second = variant in ("maml2", "metasgd")
    total = 0.0
    for b in range(B):
        p = list(params)
        for _ in range(S):
            loss = ((reference.mlp_forward(p, xs[b]) - ys[b]) ** 2).mean()
            g = torch.autograd.grad(loss, p, create_graph=second)
            p = [pi - ri * gi for pi, ri, gi in zip(p, lrs, g)]
        if variant == "reptile":
            for t, a in zip(params, p):
                t.grad = (t.grad if t.grad is not None else 0) + (t.detach() - a.detach()) / B
            continue
        q = ((reference.mlp_forward(p, xq[b]) - yq[b]) ** 2).mean() / B
        q.backward()
        total += q.item()
    return total


@pytest.mark.parametrize("variant", VARIANTS)
def test_plain_pytorch_loop(benchmark, variant):
    benchmark.group = f"meta-step {variant}"
    learner = learner_for(variant)
    params = list(learner.net.parameters())
    lrs = list(learner.inner_lrs) if variant == "metasgd" else [LR] * len(params)
    data = workload()

    def step():
        for p in learner.parameters():
            p.grad = None
        _plain_loop_step(params, lrs, data, variant)

    _record(benchmark, variant)
    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    _tasks_per_s(benchmark)


@pytest.mark.parametrize("variant", ["maml2", "fomaml"])
def test_higher(benchmark, variant):
    higher = pytest.importorskip("higher")
    benchmark.group = f"meta-step {variant}"
    net = mr.MLP(D, SIZES[1:-1], 1)
    inner_opt = torch.optim.SGD(net.parameters(), lr=LR)
    xs, ys, xq, yq = workload()

    def step():
        net.zero_grad(set_to_none=True)
        for b in range(B):
            with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False,
                                      track_higher_grads=variant == "maml2") as (fnet, diffopt):
                for _ in range(S):
                    diffopt.step(((fnet(xs[b]) - ys[b]) ** 2).mean())
                q = ((fnet(xq[b]) - yq[b]) ** 2).mean() / B
                if variant == "maml2":
                    q.backward()
                else:  # first order: the query gradient at the adapted weights, applied to theta
                    grads = torch.autograd.grad(q, fnet.parameters())
                    for p, g in zip(net.parameters(), grads):
                        p.grad = g if p.grad is None else p.grad + g

    _record(benchmark, variant)
    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    _tasks_per_s(benchmark)
