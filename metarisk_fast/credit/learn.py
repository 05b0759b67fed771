"""Segments as tasks: meta-training on the loans of many segments (one task = K support and Q
query loans of one segment, binary cross-entropy in the fused inner loop), adaptation to a new
segment from K labelled loans, and the attribution behind each score."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_number
from ..forecasting.registry import make_learner

CREDIT_LEARNERS = ("maml", "fomaml", "reptile", "metasgd", "memory")
MEMORY_SLOTS = 128  # the memory learner's slots: at least the largest K it adapts on


@dataclass(frozen=True)
class CreditTraining:
    learner: str = "maml"
    hidden: tuple[int, ...] = ()  # none: a meta-learned logistic regression (chosen on the evaluation, RESULTS.md)
    inner_lr: float = 0.1
    inner_steps: int = 5
    steps: int = 300
    batch: int = 32
    meta_lr: float = 3e-3
    support: int = 25  # K of the training tasks
    query: int = 25
    seed: int = 0

    def __post_init__(self):
        if self.learner not in CREDIT_LEARNERS:
            raise ValueError(f"learner must be one of {', '.join(CREDIT_LEARNERS)}, got {self.learner!r}")
        for name, lo, hi in (("inner_steps", 0, 1000), ("steps", 1, 10**6), ("batch", 1, 65536), ("support", 1, 10**5),
                             ("query", 1, 10**5), ("seed", 0, 2**63 - 1)):
            check_int(name, getattr(self, name), lo, hi)
        for name in ("inner_lr", "meta_lr"):
            check_number(name, getattr(self, name))

    def make(self, n_features: int):
        """A fresh learner of these settings for ``n_features`` inputs, with the binary
        cross-entropy inner loop."""
        return make_learner(self.learner, n_features, self.hidden, self.inner_lr, self.inner_steps, loss="bce",
                            memory_slots=MEMORY_SLOTS)


def segment_codes(segment: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes of each loan's segment and the sorted segment names they index."""
    names = sorted(set(segment.tolist()))
    return np.searchsorted(np.asarray(names, dtype=object), segment), names


def sample_rows(rng: np.random.Generator, members: np.ndarray, sizes: np.ndarray, n: int) -> np.ndarray:
    """(B, n) distinct rows of each task's segment: ``members`` (B, max size) lists each task's
    segment rows (padded), ``sizes`` (B,) how many are real; random keys sorted, no loop over tasks."""
    keys = rng.random(members.shape)
    keys[np.arange(members.shape[1])[None, :] >= sizes[:, None]] = 2.0  # padding sorts last
    return np.take_along_axis(members, np.argsort(keys, axis=1)[:, :n], axis=1)


def meta_train(x: np.ndarray, y: np.ndarray, segment: np.ndarray, opts: CreditTraining, progress=None):
    """A learner meta-trained on tasks cut from the segments with at least support + query loans.
    Returns (learner, mean loss of the last 20 steps)."""
    codes, names = segment_codes(segment)
    sizes = np.bincount(codes, minlength=len(names))
    usable = np.flatnonzero(sizes >= opts.support + opts.query)
    if len(usable) == 0:
        raise ValueError(f"no training segment has {opts.support + opts.query} loans (support + query); the "
                         f"largest has {sizes.max()}")
    order = np.argsort(codes, kind="stable")
    members = np.full((len(names), sizes.max()), -1, np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    members[codes[order], np.arange(len(order)) - offsets[codes[order]]] = order
    torch.manual_seed(opts.seed)
    learner = opts.make(x.shape[1])
    optimiser = torch.optim.Adam(learner.parameters(), lr=opts.meta_lr)
    rng = np.random.default_rng(opts.seed)
    weights = sizes[usable] / sizes[usable].sum()  # tasks in proportion to the segments' loans
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32)[:, None])
    losses = []
    for _ in range(opts.steps):
        seg = rng.choice(usable, size=opts.batch, p=weights)
        rows = torch.from_numpy(sample_rows(rng, members[seg], sizes[seg], opts.support + opts.query))
        s, q = rows[:, :opts.support], rows[:, opts.support:]
        loss = learner.meta_loss(xt[s], yt[s], xt[q], yt[q])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress()
    return learner, float(np.mean(losses[-20:]))


def adapt_scores(learner, xs: np.ndarray, ys: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Default probabilities (B, Q) of the query loans after adapting on each support set
    (xs (B, K, D), ys (B, K) labels, xq (B, Q, D)): one batched call."""
    logits = learner.adapt_predict(np.ascontiguousarray(xs, np.float32),
                                   np.ascontiguousarray(ys, np.float32)[..., None],
                                   np.ascontiguousarray(xq, np.float32))
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)[..., 0]))


def _logit_function(learner, xs: torch.Tensor, ys: torch.Tensor):
    """x (Q, D) -> adapted logits (Q,), differentiable in x: the MAML family's adapted network, or
    the memory learner reading a memory written with the support."""
    if hasattr(learner, "adapt"):
        params = [p[0] for p in learner.adapt(xs[None], ys[None])]
        names = [n for n, _ in learner.net.named_parameters()]
        return lambda x: torch.func.functional_call(learner.net, dict(zip(names, params)), (x,))[:, 0]
    return lambda x: learner._forward(xs[None], ys[None], x[None])[0, :, 0]


def attributions(learner, xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, baseline: np.ndarray,
                 steps: int = 32) -> np.ndarray:
    """Integrated gradients (Sundararajan et al. 2017) of each query loan's adapted logit, (Q, D),
    from ``baseline`` (the average training applicant): the path integral of the gradient from the
    baseline to the loan, midpoint rule. It is the Aumann-Shapley value, the Shapley value of
    the continuous game, and shares its completeness: the attributions add up to the logit minus
    the baseline's. Exact Shapley values over 20 attributes would need 2^20 evaluations per loan."""
    xs_t = torch.from_numpy(np.ascontiguousarray(xs, np.float32))
    ys_t = torch.from_numpy(np.ascontiguousarray(ys, np.float32)[:, None])
    f = _logit_function(learner, xs_t, ys_t)
    x = torch.from_numpy(np.ascontiguousarray(xq, np.float32))
    b = torch.from_numpy(np.ascontiguousarray(baseline, np.float32))[None, :]
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    path = (b + alphas[:, None, None] * (x - b)[None]).reshape(-1, x.shape[1]).requires_grad_(True)
    (grad,) = torch.autograd.grad(f(path).sum(), path)
    return ((x - b) * grad.reshape(steps, *x.shape).mean(0)).detach().numpy().astype(np.float64)


def reasons(contrib: np.ndarray, groups: list[str], frame, top: int = 3) -> list[list[str]]:
    """The ``top`` attributes that raise each loan's default score most, as 'attribute=value
    (+logit)', from input attributions summed over each attribute's columns."""
    names = list(dict.fromkeys(groups))
    member = np.zeros((len(groups), len(names)))
    member[np.arange(len(groups)), [names.index(g) for g in groups]] = 1.0
    per_attr = contrib @ member
    best = np.argsort(-per_attr, axis=1)[:, :top]
    return [[f"{names[a]}={frame.iloc[i][names[a]]} ({per_attr[i, a]:+.3f})" for a in best[i] if per_attr[i, a] > 0]
            for i in range(contrib.shape[0])]
