"""Meta-training: Adam on a learner's meta-loss over leakage-free episodes, on one process or
data-parallel over a torch.distributed group (gloo on CPU, NCCL on GPUs; `torchrun` or
``jobs.train(..., nproc=N)`` to launch)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .._files import atomic_write_bytes
from ..learners import MAML, input_scale
from ..tasks import TARGET, EpisodeBuilder

# support rows of the young episodes that start at a simulated listing (0: zero-shot, the prior alone)
YOUNG_SUPPORTS = (0, 1, 2, 4, 8, 16, 32, 60)
YOUNG_EVERY = 3  # every third meta-batch is young when training sees young assets


def pooled_learner(net, loss=TARGET.loss):
    """The same network trained on the same tasks without meta-learning: zero inner steps make
    the meta-loss the plain query loss."""
    return MAML(net, inner_lr=1e-3, inner_steps=0, loss=loss)


def process_group() -> tuple[int, int]:
    """(rank, world size) of the initialised torch.distributed group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sum_across_ranks(params, loss_sum: float, diverged: bool) -> tuple[float, bool]:
    """One all-reduce per step: every gradient, the loss sum and the divergence flag in one flat
    buffer; the gradients are replaced by their sums over the ranks."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]
                     + [torch.tensor([loss_sum, float(diverged)], dtype=grads[0].dtype, device=grads[0].device)])
    dist.all_reduce(flat)
    start = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[start:start + n].view_as(p).clone()
        start += n
    return float(flat[-2]), bool(flat[-1] > 0)


def save_checkpoint(path, learner, opt, step: int, history: list, skipped: int) -> None:
    """Write a training checkpoint (weights, optimizer, step, loss history, skipped batches) to
    ``path`` atomically."""
    buf = io.BytesIO()
    torch.save({"learner": learner.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "losses": history, "skipped": skipped}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, learner, opt) -> tuple[int, list, int]:
    """Restore a training checkpoint into ``learner`` and ``opt``; returns (step, loss history,
    skipped batches) or a ValueError naming the file."""
    try:
        state = torch.load(path, weights_only=True)
        learner.load_state_dict(state["learner"])
        opt.load_state_dict(state["optimizer"])
        return int(state["step"]), list(state["losses"]), int(state["skipped"])
    except (OSError, RuntimeError, KeyError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable training checkpoint (damaged, or from another learner): "
                         f"{exc}") from None


def _meta_batch(builder, assets, end, seed, ids, it, supports, young):
    """The episodes of meta-step ``it`` (see train_meta)."""
    if young is None or it % YOUNG_EVERY != YOUNG_EVERY - 1:
        return builder.episodes(assets, end=end, seed=seed, task_ids=ids, support=supports[it % len(supports)])
    k = it // YOUNG_EVERY
    if k % 2:
        return young.episodes(seed=seed, task_ids=ids, support=supports[(k // 2) % len(supports)])
    size = YOUNG_SUPPORTS[(k // 2) % len(YOUNG_SUPPORTS)]
    first = 0 if size == 0 else 1  # row 1: the first return; with no support the first query is there
    return young.episodes(start=young.panel.dates[first], stride=young.panel.n_days, seed=seed, task_ids=ids,
                          support=size)


def train_meta(learner, builder: EpisodeBuilder, assets, end, *, steps: int, batch: int = 64,
               lr: float = 1e-3, seed: int = 0, supports=(None,), progress: bool = False,
               desc: str = "meta-train", dtype: torch.dtype = torch.float32, checkpoint=None,
               checkpoint_every: int = 0, resume: bool = False, young: EpisodeBuilder | None = None):
    """Adam on the meta-loss over episodes of ``assets`` whose targets are realised by ``end``;
    meta-batches cycle through the support sizes in ``supports`` (None: the spec's K), so one
    model serves several few-shot history lengths. Task i of step t is drawn from (seed,
    t * batch + i) alone (``EpisodeBuilder.episodes(task_ids=...)``).

    ``young``: a builder over simulated listings (tasks.simulated_listings, cut from the training
    assets up to ``end``): every YOUNG_EVERY-th meta-batch is drawn from it, alternately episodes
    whose support starts at the listing (its size cycling through YOUNG_SUPPORTS, from zero-shot
    on) and episodes anywhere in the listing's first year (the ``supports`` sizes), so the
    initialisation serves a two-day-old asset as well as a mature one.

    Inside an initialised torch.distributed group of N processes, rank r takes tasks
    r * batch / N .. (r + 1) * batch / N of every step; the gradients of the summed query losses
    are added across ranks in one all-reduce, so every rank takes the same Adam step as a single
    process running all ``batch`` tasks (equal to round-off).
    A meta-batch whose inner loop diverges on any rank is skipped everywhere and counted
    (``skipped``); a run where most batches diverge is an error. ``checkpoint``: a file rank 0
    rewrites every ``checkpoint_every`` steps, and ``resume`` continues from it.

    Parameters
    ----------
    learner : torch.nn.Module
        The learner, trained in place.
    builder : EpisodeBuilder
        The training panel's features and targets.
    assets : sequence of str
        The training assets.
    end : date-like
        Every target used is realised by this date.
    steps : int
        Meta-training steps.
    batch : int
        Tasks per meta-batch.
    lr : float
        Adam's learning rate.
    seed : int
        The seed of the task draws.
    supports : sequence of int or None
        Support sizes the meta-batches cycle through (None: the spec's K).
    progress : bool
        Show a progress bar.
    desc : str
        The progress bar's label.
    dtype : torch.dtype
        The tasks' dtype.
    checkpoint : str or os.PathLike, optional
        The checkpoint file.
    checkpoint_every : int
        Steps between checkpoints (0: none).
    resume : bool
        Continue from ``checkpoint``.
    young : EpisodeBuilder, optional
        A builder over simulated listings.

    Returns
    -------
    dict
        losses (the meta-loss of every step) and skipped (meta-batches skipped as divergent).
    """
    rank, world = process_group()
    builder = builder.with_scale(input_scale(learner))
    young = None if young is None else young.with_scale(input_scale(learner))
    if batch % world:
        raise ValueError(f"the meta-batch ({batch} tasks) must split evenly over the {world} processes")
    torch.manual_seed(seed)
    params = list(learner.parameters())
    if world > 1:  # every rank starts from rank 0's parameters
        for p in params:
            dist.broadcast(p.data, src=0)
    opt = torch.optim.Adam(params, lr=lr)
    start, history, skipped = 0, [], 0
    if resume:
        if checkpoint is None or not Path(checkpoint).exists():
            raise ValueError(f"nothing to resume: no checkpoint at {checkpoint}")
        start, history, skipped = load_checkpoint(checkpoint, learner, opt)
    local = batch // world
    for it in tqdm(range(start, steps), desc=desc, disable=not progress or rank != 0, leave=False,
                   initial=start, total=steps):
        ids = np.arange(it * batch + rank * local, it * batch + (rank + 1) * local)
        xs, ys, xq, yq = _meta_batch(builder, assets, end, seed, ids, it, supports, young).tensors(dtype)
        xs, ys, xq, yq = (t.to(params[0].device) for t in (xs, ys, xq, yq))
        opt.zero_grad(set_to_none=True)
        loss_sum, diverged = 0.0, False
        try:
            losses = learner.query_losses(xs, ys, xq, yq)
            (losses.sum() / batch).backward()
            loss_sum = float(losses.detach().sum())
            # an overflow inside a backward pass gives inf / NaN gradients without an error; one
            # Adam step on them would make every parameter NaN
            diverged = not all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)
        except FloatingPointError:
            diverged = True
        if world > 1:
            loss_sum, diverged = _sum_across_ranks(params, loss_sum, diverged)
        if diverged:
            skipped += 1
            if skipped > max(10, steps // 2):
                raise FloatingPointError(f"the inner loop diverged on {skipped} of {it + 1} meta-batches; "
                                         "lower the inner learning rate")
            continue
        opt.step()
        history.append(loss_sum / batch)
        if checkpoint is not None and checkpoint_every and (it + 1) % checkpoint_every == 0 and rank == 0:
            save_checkpoint(checkpoint, learner, opt, it + 1, history, skipped)
    return {"losses": history, "skipped": skipped}
