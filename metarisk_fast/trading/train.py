"""Meta-training of trading policies on a TaskPool: ProMP, MAML-PG (second or first order), and
the pooled policy without adaptation (the baseline), all with the same sampler and budget.

One iteration: draw ``tasks`` tasks; sample ``episodes`` exploration episodes of each in its
adaptation half with the current policy; adapt (one kernel call); sample as many episodes in
its second half with the adapted policy; take the outer step(s). The pooled policy takes a
plain policy-gradient step on both halves' episodes sampled with the shared policy. Every
task's episodes are one gather and every policy call is batched over tasks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_number
from .env import Episodes, TaskPool
from .policy import MetaPolicy, Rollouts, reward_to_go_advantages

ALGORITHMS = ("promp", "maml", "fomaml", "pooled")


@dataclass(frozen=True)
class PolicyTraining:
    algorithm: str = "promp"
    iterations: int = 150
    tasks: int = 16
    episodes: int = 32
    length: int = 21
    hidden: tuple = (32, 32)
    sigma: float = 0.5
    inner_lr: float = 1.0
    inner_steps: int = 1
    lr: float = 3e-3
    outer_steps: int = 3  # ProMP's outer steps on one batch of rollouts
    clip: float = 0.2
    kl_coef: float = 0.01
    lvc: bool = True  # ProMP's low-variance curvature estimate (promp only)
    seed: int = 0

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        for name in ("iterations", "tasks", "episodes", "length", "inner_steps", "outer_steps"):
            check_int(name, getattr(self, name), 1)
        for name in ("sigma", "inner_lr", "lr"):
            check_number(name, getattr(self, name))


def positions(actions, max_position: float) -> np.ndarray:
    """Target positions L tanh(a) of the policy's Gaussian actions: smooth in the action, so a
    policy step moves the position wherever the mean lies (a clip would freeze it beyond L)."""
    return max_position * np.tanh(np.asarray(actions, np.float64))


def rollouts(policy: MetaPolicy, ep: Episodes, n_tasks: int, rng: np.random.Generator, adapted=None
             ) -> tuple[Rollouts, np.ndarray]:
    """Sample the policy's actions on episodes (B * M, T) of B tasks and trade them (positions);
    returns the task-major rollouts and the rewards (B, M, T)."""
    BM, T, D = ep.obs.shape
    obs = torch.from_numpy(ep.obs.reshape(n_tasks, -1, D).astype(np.float64))
    actions = policy.act(obs, rng, adapted)  # (B, M * T, 1)
    rewards = ep.rewards(positions(actions.numpy().reshape(BM, T), ep.spec.max_position)).reshape(n_tasks, -1, T)
    adv = torch.from_numpy(reward_to_go_advantages(rewards).reshape(n_tasks, -1))
    return Rollouts(obs, actions, adv), rewards


def pooled_loss(policy: MetaPolicy, *parts: Rollouts) -> torch.Tensor:
    """The plain policy-gradient surrogate of the shared policy, -mean A log pi (up to a constant)."""
    total = 0.0
    for r in parts:
        total = total + (r.advantages * ((policy.net(r.obs) - r.actions) ** 2).sum(-1)).mean() / (2 * policy.sigma ** 2)
    return total / len(parts)


def train_policy(pool: TaskPool, options: PolicyTraining = PolicyTraining(), log=None) -> tuple[MetaPolicy, np.ndarray]:
    """(policy, learning curve (iterations, 2): the mean reward per bar in basis points before
    and after adaptation, both sampled with exploration)."""
    o = options
    rng = np.random.default_rng(o.seed)
    torch.manual_seed(o.seed)
    mode = "first_order" if o.algorithm == "fomaml" else "second_order"
    policy = MetaPolicy(pool.n_obs, 1, hidden=o.hidden, sigma=o.sigma, inner_lr=o.inner_lr,
                        inner_steps=o.inner_steps, mode=mode, lvc=o.algorithm == "promp" and o.lvc)
    opt = torch.optim.Adam(policy.parameters(), lr=o.lr)
    curve = np.empty((o.iterations, 2))
    for it in range(o.iterations):
        tasks = rng.integers(0, len(pool), o.tasks)
        support, pre = rollouts(policy, pool.episodes(tasks, o.episodes, o.length, rng, "adapt"), o.tasks, rng)
        adapted = None if o.algorithm == "pooled" else policy.adapt(support)
        query, post = rollouts(policy, pool.episodes(tasks, o.episodes, o.length, rng, "evaluate"), o.tasks, rng,
                               adapted)
        if o.algorithm == "promp":
            old_q, old_s = policy.mean(query.obs, adapted), policy.mean(support.obs)
        for _ in range(o.outer_steps if o.algorithm == "promp" else 1):
            if o.algorithm == "pooled":
                loss = pooled_loss(policy, support, query)
            elif o.algorithm == "promp":
                loss = policy.promp_loss(support, query, old_q, old_s, o.clip, o.kl_coef)
            else:
                loss = policy.meta_loss(support, query)
            opt.zero_grad()
            loss.backward()
            opt.step()
        curve[it] = pre.mean() * 1e4, post.mean() * 1e4
        if log and (it + 1) % max(1, o.iterations // 5) == 0:
            log(f"{o.algorithm} seed {o.seed}: iteration {it + 1}/{o.iterations}, reward per bar "
                f"{curve[max(0, it - 9):it + 1, 0].mean():+.2f} bp before adaptation, "
                f"{curve[max(0, it - 9):it + 1, 1].mean():+.2f} bp after")
    return policy, curve
