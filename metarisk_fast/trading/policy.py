"""Meta-learned policies: a Gaussian policy whose mean is the shared MLP, adapted to a task by
policy-gradient steps that run in the fused inner-loop kernel.

Actions are a ~ N(mu_theta(s), sigma^2 I). For sampled actions with advantages A,
-A log pi(a | s) = A |mu(s) - a|^2 / (2 sigma^2) + const, so a policy-gradient step is a
gradient step on the kernel's MSE loss with per-row weights A / (2 sigma^2) (the kernel's MSE
is the mean over rows and action dimensions, hence the extra factor of the action dimension): the
inner loop adapts every task in one batched call (ops.mlp_adapt with support_weights). The
meta-gradient (MAML-PG: the surrogate on episodes sampled with each task's adapted policy,
differentiated through the inner steps) is the same kernel's weighted query loss;
``mode="first_order"`` drops the curvature.

ProMP (Rothfuss et al. 2019, ``promp_loss``): several outer steps on one batch of rollouts, each
on the clipped likelihood-ratio objective of the adapted policy, mean_r min(rho_r A_r,
clip(rho_r, 1 - eps, 1 + eps) A_r) with rho_r = pi_theta'(a_r | s_r) / pi_theta'_old(a_r | s_r),
minus a KL penalty keeping the pre-update policy near the one that sampled. Its gradient is a
weighted MSE's: grad(rho A) = rho A grad log pi, zero where the clip binds, so each outer step
is the kernel's meta-loss with query weights rho A (active rows only), after one
adapt-and-predict call for the ratios. The inner step's curvature is that of the weighted MSE
(grad^2 log pi A); ProMP's low-variance curvature estimator adds A grad log pi grad log pi' per
row: ``lvc=True`` adds it (one inner step) as a torch term around the kernel, from each task's
query-loss gradient at its adapted parameters and one forward-mode product (``lvc_correction``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import ops
from ..learners import MLP


def reward_to_go_advantages(rewards: np.ndarray) -> np.ndarray:
    """Advantages of rewards (B tasks, M episodes, T bars): the reward to go from each bar minus
    its mean over the task's M episodes at that bar (the baseline), divided by the task's
    standard deviation of that difference."""
    togo = np.cumsum(rewards[..., ::-1], axis=-1)[..., ::-1]
    adv = togo - togo.mean(axis=1, keepdims=True)
    return adv / (adv.reshape(adv.shape[0], -1).std(axis=1)[:, None, None] + 1e-12)


@dataclass
class Rollouts:
    """Rows of each task's episodes, flattened for the kernel: obs (B, R, D), actions (B, R, A),
    advantages (B, R)."""

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor


class MetaPolicy(torch.nn.Module):
    """A Gaussian policy (MLP mean, fixed exploration ``sigma``), float64, meta-trained so that
    ``inner_steps`` policy-gradient steps on a task's own episodes improve it there."""

    def __init__(self, n_obs: int, n_actions: int = 1, hidden=(32, 32), sigma: float = 0.3, inner_lr: float = 0.1,
                 inner_steps: int = 1, mode: str = "second_order", lvc: bool = False):
        super().__init__()
        if not (sigma > 0 and inner_lr > 0):
            raise ValueError(f"sigma and inner_lr must be > 0, got {sigma}, {inner_lr}")
        if lvc and (inner_steps != 1 or mode != "second_order"):
            raise ValueError("the low-variance curvature (lvc=True) is ProMP's for one second-order inner step: "
                             f"got inner_steps={inner_steps}, mode={mode!r}")
        self.lvc = bool(lvc)
        self.net = MLP(n_obs, tuple(hidden), n_actions).double()
        with torch.no_grad():  # start at a zero mean action (a flat book)
            self.net.layers[-1].weight.zero_()
            self.net.layers[-1].bias.zero_()
        self.sigma, self.inner_lr, self.inner_steps, self.mode = float(sigma), float(inner_lr), int(inner_steps), mode

    def mean(self, obs: torch.Tensor, adapted=None) -> torch.Tensor:
        """Mean actions (B, R, A) of obs (B, R, D): the shared parameters, or each task's own
        (``adapted``: parameters with a leading task dimension, as mlp_adapt returns them)."""
        with torch.no_grad():
            return self.net(obs) if adapted is None else _per_task_mlp(obs, adapted)

    def act(self, obs: torch.Tensor, rng: np.random.Generator, adapted=None) -> torch.Tensor:
        """Actions sampled around the policy's mean for observations ``obs`` (optionally with
        adapted parameters)."""
        mu = self.mean(obs, adapted)
        return mu + self.sigma * torch.from_numpy(rng.standard_normal(tuple(mu.shape)))

    def _weights(self, r: Rollouts) -> torch.Tensor:
        return r.advantages * (r.actions.shape[-1] / (2 * self.sigma ** 2))

    def adapt(self, support: Rollouts):
        """Per-task parameters after the inner policy-gradient steps (one kernel call)."""
        return ops.mlp_adapt([p.detach() for p in self.net.parameters()], self.inner_lr, support.obs, support.actions,
                             steps=self.inner_steps, loss="mse", support_weights=self._weights(support))

    def log_ratio(self, mean: torch.Tensor, old_mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | mean) - log pi(a | old_mean) per row (B, R), Gaussian with this sigma."""
        return -(((actions - mean) ** 2).sum(-1) - ((actions - old_mean) ** 2).sum(-1)) / (2 * self.sigma ** 2)

    def promp_loss(self, support: Rollouts, query: Rollouts, old_query_mean: torch.Tensor,
                   old_support_mean: torch.Tensor, clip: float = 0.2, kl_coef: float = 0.0) -> torch.Tensor:
        """A loss whose gradient is minus ProMP's objective's: the clipped surrogate of the
        adapted policies on the query rollouts, sampled with means ``old_query_mean``, plus
        ``kl_coef`` x KL(pre-update policy that sampled the support (means ``old_support_mean``)
        || the current one). Its value is not the objective's (the weights are the gradient's);
        at the parameters that sampled, its gradient is ``meta_loss``'s."""
        if not (0 < clip < 1 and kl_coef >= 0):
            raise ValueError(f"clip must be in (0, 1) and kl_coef >= 0, got {clip}, {kl_coef}")
        adapted = self.adapt(support)
        rho = torch.exp(self.log_ratio(self.mean(query.obs, adapted), old_query_mean, query.actions))
        adv = query.advantages
        active = ~(((adv > 0) & (rho > 1 + clip)) | ((adv < 0) & (rho < 1 - clip)))
        weights = adv * rho * active * (query.actions.shape[-1] / (2 * self.sigma ** 2))
        surrogate = ops.mlp_meta_loss(list(self.net.parameters()), self.inner_lr, support.obs, support.actions,
                                      query.obs, query.actions, steps=self.inner_steps, loss="mse", mode=self.mode,
                                      support_weights=self._weights(support), query_weights=weights).mean()
        if self.lvc:
            surrogate = surrogate + self.lvc_correction(support, query, weights, adapted)
        if not kl_coef:
            return surrogate
        kl = ((self.net(support.obs) - old_support_mean) ** 2).sum(-1).mean() / (2 * self.sigma ** 2)
        return surrogate + kl_coef * kl

    def meta_loss(self, support: Rollouts, query: Rollouts) -> torch.Tensor:
        """Mean over tasks of the post-adaptation surrogate on the query rollouts, differentiable
        through the inner steps (with ``lvc``, plus the low-variance curvature correction)."""
        loss = ops.mlp_meta_loss(list(self.net.parameters()), self.inner_lr, support.obs, support.actions, query.obs,
                                 query.actions, steps=self.inner_steps, loss="mse", mode=self.mode,
                                 support_weights=self._weights(support), query_weights=self._weights(query)).mean()
        return loss + self.lvc_correction(support, query, self._weights(query)) if self.lvc else loss

    def lvc_correction(self, support: Rollouts, query: Rollouts, query_weights: torch.Tensor,
                       adapted=None) -> torch.Tensor:
        """A term whose gradient is what ProMP's low-variance curvature estimator adds to the
        kernel's second-order meta-gradient for one inner step: the inner objective is then
        mean_r A_r pi(a_r|s_r) / stop(pi(a_r|s_r)), whose Hessian at the sampling parameters is
        the kernel's mean_r A_r grad^2 log pi_r plus mean_r A_r grad log pi_r grad log pi_r'. The
        meta-gradient gains alpha H' g_b for each task b, with g_b the gradient of its query loss
        at its adapted parameters: alpha mean_r A_r (grad log pi_r . g_b) grad log pi_r, the
        gradient of alpha mean_r A_r stop(u_r) log pi_r with u_r = grad log pi_r . g_b (one
        forward-mode product). ``adapted``: the tasks' adapted parameters, if already at hand."""
        B = support.obs.shape[0]
        adapted = [a.detach().requires_grad_() for a in (self.adapt(support) if adapted is None else adapted)]
        z = _per_task_mlp(query.obs, adapted)
        per_task = (query_weights[..., None] * (z - query.actions) ** 2).mean(dim=(1, 2))  # the kernel's query loss
        g = torch.autograd.grad(per_task.sum(), adapted)
        theta = [p.detach().unsqueeze(0).expand(B, *p.shape) for p in self.net.parameters()]
        _, dmu = _per_task_mlp(support.obs, theta, g)
        mu = self.net(support.obs)
        u = (-(mu.detach() - support.actions) / self.sigma ** 2 * dmu).sum(-1)  # grad log pi_r . g_b
        log_pi = -((support.actions - mu) ** 2).sum(-1) / (2 * self.sigma ** 2)
        return self.inner_lr * (support.advantages * u.detach() * log_pi).mean(dim=1).mean()


def _per_task_mlp(obs: torch.Tensor, params, tangents=None):
    """The policy's MLP (ReLU hidden layers) with each task's own parameters (a leading task
    dimension, as mlp_adapt returns them) on its rows obs (B, R, D); with ``tangents`` (shaped
    like params), also its derivative along them (forward mode, by hand): (output, derivative)."""
    x = obs
    dx = None if tangents is None else torch.zeros_like(obs)
    n = len(params) // 2
    for i in range(n):
        w = params[2 * i]
        pre = torch.einsum("brd,bod->bro", x, w) + params[2 * i + 1][:, None, :]
        if dx is not None:
            dx = (torch.einsum("brd,bod->bro", x, tangents[2 * i]) + torch.einsum("brd,bod->bro", dx, w)
                  + tangents[2 * i + 1][:, None, :])
        if i < n - 1:
            if dx is not None:
                dx = dx * (pre > 0)
            pre = torch.relu(pre)
        x = pre
    return x if dx is None else (x, dx)
