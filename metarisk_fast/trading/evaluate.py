"""Held-out evaluation of trading policies, net of costs.

Every method trades each held-out task's evaluation half (deterministically: a policy's mean
action as the position L tanh(mean)) after adapting, where it adapts, on exploration episodes of the task's
first half only (their returns all realised before the evaluation starts). Methods:
- a meta-trained policy before and after its inner policy-gradient step(s);
- the pooled policy (no adaptation), and fine-tuned with the same inner steps and learning rate;
- PPO fine-tuning of the pooled policy on the same episodes (``ppo_epochs`` clipped steps);
- volatility targeting (long, sized to a target volatility from the variance forecast at t);
- buy and hold (long L throughout).
Metrics per task: annualised Sharpe ratio of the daily net PnL, turnover (mean |position change|
a bar, the entry included), maximum drawdown of the cumulative PnL, mean PnL a bar.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import ops
from ..evaluation.risk import ANNUAL
from ..evaluation.sizing import vol_target_weights
from .env import Episodes, TaskPool
from .policy import MetaPolicy
from .train import positions, rollouts

TARGET_VOL = 0.10  # annualised, of the volatility-targeting baseline


def strategy_metrics(positions: np.ndarray, ep: Episodes) -> dict[str, np.ndarray]:
    """Per-episode metrics (B,) of positions (B, T) on ``ep`` (clipped to [-L, L] first)."""
    pnl = ep.rewards(positions)
    L = ep.spec.max_position
    p = np.clip(positions, -L, L)
    sd = pnl.std(axis=1, ddof=1)
    sharpe = np.where(sd > 0, pnl.mean(axis=1) / np.where(sd > 0, sd, 1.0) * np.sqrt(ANNUAL), 0.0)
    turnover = np.abs(np.diff(p, axis=1, prepend=0.0)).mean(axis=1)
    wealth = np.cumsum(pnl, axis=1)
    drawdown = (np.maximum.accumulate(np.maximum(wealth, 0.0), axis=1) - wealth).max(axis=1)
    return {"sharpe": sharpe, "turnover": turnover, "max_drawdown": drawdown, "pnl_bp": pnl.mean(axis=1) * 1e4}


def ppo_fine_tune(policy: MetaPolicy, support, epochs: int, clip: float = 0.2):
    """Per-task parameters after ``epochs`` PPO steps (the clipped ratio objective, one gradient
    step of the policy's inner learning rate each) from the shared parameters on each task's
    support rollouts; every step is one batched kernel call from the tasks' current parameters."""
    params = [p.detach() for p in policy.net.parameters()]
    old = policy.mean(support.obs)
    offsets = [torch.zeros((support.obs.shape[0], *p.shape), dtype=p.dtype) for p in params]
    scale = support.actions.shape[-1] / (2 * policy.sigma ** 2)
    for _ in range(epochs):
        current = [p + o for p, o in zip(params, offsets)]
        rho = torch.exp(policy.log_ratio(policy.mean(support.obs, current), old, support.actions))
        adv = support.advantages
        active = ~(((adv > 0) & (rho > 1 + clip)) | ((adv < 0) & (rho < 1 - clip)))
        adapted = ops.mlp_adapt(params, policy.inner_lr, support.obs, support.actions, steps=1, loss="mse",
                                task_offsets=offsets, support_weights=adv * rho * active * scale)
        offsets = [a - p for a, p in zip(adapted, params)]
    return [p + o for p, o in zip(params, offsets)]


def evaluate_methods(pool: TaskPool, tasks, meta: dict[str, MetaPolicy], pooled: MetaPolicy, *, episodes: int,
                     length: int, ppo_epochs: int = 4, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Metrics (per task) of every method on the held-out ``tasks`` of ``pool``; ``meta`` maps a
    name to a meta-trained policy. The adaptation episodes are drawn with ``seed``."""
    tasks = np.asarray(tasks, np.int64)
    B = len(tasks)
    ev = pool.evaluation(tasks)
    obs = torch.from_numpy(ev.obs.astype(np.float64))
    L = pool.spec.max_position

    def held(policy, adapted=None):
        return positions(policy.mean(obs, adapted)[..., 0].numpy(), L)

    def support(policy):
        rng = np.random.default_rng(seed)
        return rollouts(policy, pool.episodes(tasks, episodes, length, rng, "adapt"), B, rng)[0]

    out = {}
    for name, policy in meta.items():
        out[f"{name}, before adaptation"] = strategy_metrics(held(policy), ev)
        out[f"{name}, after adaptation"] = strategy_metrics(held(policy, policy.adapt(support(policy))), ev)
    out["pooled"] = strategy_metrics(held(pooled), ev)
    s = support(pooled)
    out["pooled, fine-tuned"] = strategy_metrics(held(pooled, pooled.adapt(s)), ev)
    out[f"pooled, PPO fine-tuned ({ppo_epochs} epochs)"] = strategy_metrics(held(pooled, ppo_fine_tune(pooled, s, ppo_epochs)), ev)
    out["volatility targeting"] = strategy_metrics(
        vol_target_weights(ev.variance, TARGET_VOL, max_leverage=L), ev)
    out["buy and hold"] = strategy_metrics(np.full(ev.next_returns.shape, L), ev)
    return out
