"""Meta-training: Adam on a learner's meta-loss over leakage-free episodes."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..learners import MAML
from ..tasks import TARGET, EpisodeBuilder


def pooled_learner(net, loss=TARGET.loss):
    """The same network trained on the same tasks without meta-learning: zero inner steps make
    the meta-loss the plain query loss."""
    return MAML(net, inner_lr=1e-3, inner_steps=0, loss=loss)


def train_meta(learner, builder: EpisodeBuilder, assets, end, *, steps: int, batch: int = 64,
               lr: float = 1e-3, seed: int = 0, supports=(None,), progress: bool = False,
               desc: str = "meta-train"):
    """Adam on the meta-loss over episodes of ``assets`` whose targets are realised by ``end``;
    meta-batches cycle through the support sizes in ``supports`` (None: the spec's K), so one
    model serves several few-shot history lengths.
    A meta-batch whose inner loop diverges is skipped and counted (``skipped`` in the result)
    rather than stopping the run; a run where most batches diverge is an error."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    history, skipped = [], 0
    for it in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        xs, ys, xq, yq = builder.episodes(assets, end=end, n=batch, seed=seed * 100003 + it,
                                          support=supports[it % len(supports)]).tensors()
        opt.zero_grad(set_to_none=True)
        try:
            loss = learner.meta_loss(xs, ys, xq, yq)
        except FloatingPointError:
            skipped += 1
            if skipped > max(10, steps // 2):
                raise
            continue
        loss.backward()
        opt.step()
        history.append(loss.item())
    return {"losses": history, "skipped": skipped}
