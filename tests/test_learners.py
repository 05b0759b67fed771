"""Learners end to end: an outer training loop against the reference, and meta-learning that
measurably beats plain training on a family of tasks."""
import math

import numpy as np
import pytest
import torch

import metarisk_fast as mr
from metarisk_fast import reference


def sinusoid_tasks(B, K, Q, gen):
    amp = torch.rand(B, 1, 1, generator=gen, dtype=torch.float64) * 4.9 + 0.1
    phase = torch.rand(B, 1, 1, generator=gen, dtype=torch.float64) * math.pi
    x = torch.rand(B, K + Q, 1, generator=gen, dtype=torch.float64) * 10 - 5
    y = amp * torch.sin(x - phase)
    return x[:, :K].float(), y[:, :K].float(), x[:, K:].float(), y[:, K:].float()


@pytest.mark.parametrize("cls, kw", [(mr.MAML, {}), (mr.MAML, {"first_order": True}),
                                     (mr.Reptile, {}), (mr.MetaSGD, {})])
def test_outer_training_loop_tracks_the_reference(cls, kw):
    """Adam on the fused meta-gradient and on the torch.func one stay together over 10 steps."""
    torch.manual_seed(3)
    net = mr.MLP(1, (16, 16), 1).double()
    fused = cls(net, inner_lr=0.02, inner_steps=3, **kw)
    ref_params = [p.detach().clone().requires_grad_() for p in fused.parameters()]
    opt_f = torch.optim.Adam(fused.parameters(), lr=1e-2)
    opt_r = torch.optim.Adam(ref_params, lr=1e-2)
    n_net = len(list(net.parameters()))
    mode = fused.mode
    gen = torch.Generator().manual_seed(0)
    for step in range(10):
        xs, ys, xq, yq = (t.double() for t in sinusoid_tasks(8, 10, 10, gen))
        opt_f.zero_grad()
        fused.meta_loss(xs, ys, xq, yq).backward()
        opt_f.step()
        opt_r.zero_grad()
        lr = ref_params[n_net:] if cls is mr.MetaSGD else 0.02
        reference.mlp_meta_loss(ref_params[:n_net], lr, xs, ys, xq, yq, steps=3, mode=mode).mean().backward()
        opt_r.step()
        tol = 1e-9 * (step + 1)
        for a, b in zip(fused.parameters(), ref_params):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=tol, atol=tol)


def test_meta_learning_beats_the_same_net_trained_without_it():
    """Sinusoid regression (Finn et al. 2017): after 5 adaptation steps on 10 points, the
    MAML-initialised net has a far lower query MSE than a net pre-trained on pooled tasks."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    maml = mr.MAML(mr.MLP(1, (40, 40), 1), inner_lr=0.01, inner_steps=5, first_order=False)
    opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
    for _ in range(400):
        opt.zero_grad()
        maml.meta_loss(*sinusoid_tasks(16, 10, 10, gen)).backward()
        opt.step()

    pooled = mr.MLP(1, (40, 40), 1)
    opt = torch.optim.Adam(pooled.parameters(), lr=1e-3)
    for _ in range(400):
        xs, ys, xq, yq = sinusoid_tasks(16, 10, 10, gen)
        opt.zero_grad()
        ((pooled(torch.cat([xs, xq], 1)) - torch.cat([ys, yq], 1)) ** 2).mean().backward()
        opt.step()
    finetune = mr.MAML(pooled, inner_lr=0.01, inner_steps=5)

    test_gen = torch.Generator().manual_seed(99)
    xs, ys, xq, yq = sinusoid_tasks(200, 10, 50, test_gen)
    mse_meta = ((maml.adapt_predict(xs, ys, xq) - yq) ** 2).mean().item()
    mse_plain = ((finetune.adapt_predict(xs, ys, xq) - yq) ** 2).mean().item()
    assert mse_meta < 0.6 * mse_plain, (mse_meta, mse_plain)


def test_any_torch_optimizer_steps_meta_sgd_rates():
    learner = mr.MetaSGD(mr.MLP(1, (8,), 1), inner_lr=0.01, inner_steps=2)
    before = [r.detach().clone() for r in learner.inner_lrs]
    opt = torch.optim.SGD(learner.parameters(), lr=0.1)
    learner.meta_loss(*sinusoid_tasks(4, 5, 5, torch.Generator().manual_seed(0))).backward()
    assert all(r.grad is not None and torch.isfinite(r.grad).all() for r in learner.inner_lrs)
    opt.step()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, learner.inner_lrs))


def test_reptile_gradient_is_the_mean_parameter_displacement():
    learner = mr.Reptile(mr.MLP(1, (8,), 1).double(), inner_lr=0.05, inner_steps=3)
    xs, ys, xq, yq = (t.double() for t in sinusoid_tasks(5, 6, 6, torch.Generator().manual_seed(0)))
    learner.meta_loss(xs, ys, xq, yq).backward()
    adapted = learner.adapt(xs, ys)
    for p, a in zip(learner.parameters(), adapted):
        torch.testing.assert_close(p.grad, p.detach() - a.mean(0), rtol=1e-12, atol=1e-12)


def test_adapt_predict_single_task_numpy_float64():
    learner = mr.MAML(mr.MLP(3, (8,), 1).double(), inner_lr=0.05, inner_steps=2)
    rng = np.random.default_rng(0)
    xs, ys, xq = rng.normal(size=(10, 3)), rng.normal(size=(10, 1)), rng.normal(size=(1, 3))
    out = learner.adapt_predict(xs, ys, xq)
    assert out.shape == (1, 1) and out.dtype == np.float64
    np.testing.assert_allclose(out, learner.adapt_predict(torch.from_numpy(xs), torch.from_numpy(ys),
                                                          torch.from_numpy(xq)).numpy(), rtol=1e-12)


def test_numpy_path_follows_parameter_updates_and_replacements():
    """The per-bar NumPy path reads the parameters through MLP.parameter_list and cached views:
    an in-place update, an optimiser step and a replaced parameter or layer all reach the next
    prediction, which always equals the torch path's."""
    net = mr.MLP(3, (8,), 1).double()
    learner = mr.MAML(net, inner_lr=0.05, inner_steps=2)
    rng = np.random.default_rng(1)
    xs, ys, xq = rng.normal(size=(10, 3)), rng.normal(size=(10, 1)), rng.normal(size=(1, 3))

    def agrees():
        assert [p for p in net.parameter_list()] == list(net.parameters())
        want = learner.adapt_predict(torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(xq)).numpy()
        got = learner.adapt_predict(xs, ys, xq)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        return got

    before = agrees()
    with torch.no_grad():
        net.layers[0].weight.mul_(2.0)
    after_inplace = agrees()
    net.layers[1].bias = torch.nn.Parameter(torch.full_like(net.layers[1].bias, 3.0))
    after_param = agrees()
    net.layers[0] = torch.nn.Linear(3, 8).double()
    after_layer = agrees()
    assert len({float(v.item()) for v in (before, after_inplace, after_param, after_layer)}) == 4
