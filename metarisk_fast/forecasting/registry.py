"""The learner registry: every learner a model directory or a command can name, built fresh with
its output at zero (the anchor forecast of the variance target)."""
from __future__ import annotations

import torch

from ..learners import MAML, HeadNewton, MLP, MemoryAugmentedNet, MemoryConditionedMAML, MetaSGD, Reptile
from ..tasks import TARGET
from .training import pooled_learner

LEARNERS = ("maml", "fomaml", "reptile", "metasgd", "pooled", "memory", "memory_maml", "head")
MEMORY_LEARNERS = ("memory",)  # learners whose support is written into an external memory of memory_slots rows
MEMORY_SLOTS = 256  # >= the longest few-shot history written into one episode's memory


TRAINING_DEFAULTS = {"hidden": (64, 64), "steps": 1500, "young_listings": False}
# the head learner's, chosen on validation (bench/FORECAST_QUALITY.md): a body of one layer of 32
# (two of 64 scored worse, and the body runs on every bar of the engine), 3000 meta-steps (at
# 1500 it had not converged; a step costs a fifth of a MAML step) and simulated listings (without
# them it forecast ages 21-60 worse than EWMA)
HEAD_TRAINING_DEFAULTS = {"hidden": (32,), "steps": 3000, "young_listings": True}
# the head learner adapts on its 10 most recent support rows: on validation (three seeds each) 5 to
# 15 rows score alike and beat 20, 30, 40 and every row of 60 or 250 (its one step weighs an old
# row as much as a new one; bench/FORECAST_QUALITY.md)
HEAD_WINDOW = 10


def training_default(kind: str, name: str):
    """Learner ``kind``'s default ``name`` ("hidden" layer sizes, meta-training "steps", whether it
    trains on simulated "young_listings")."""
    return (HEAD_TRAINING_DEFAULTS if kind == "head" else TRAINING_DEFAULTS)[name]


def _zero_output(net: MLP) -> None:
    """Output 0 is the anchor forecast (see tasks): a fresh model starts at RiskMetrics."""
    with torch.no_grad():
        net.layers[-1].weight.zero_()
        net.layers[-1].bias.zero_()


def make_learner(kind: str, n_features: int, hidden=(64, 64), inner_lr: float = 0.05, inner_steps: int = 5,
                 loss: str = TARGET.loss, memory_slots: int = MEMORY_SLOTS, head_window: int | None = HEAD_WINDOW):
    """A fresh learner of the registry whose output starts at zero (the anchor forecast of the
    variance target; a 50 % probability under ``loss="bce"``). ``memory_slots``: the memory
    learner's slots, at least the support rows it writes.

    Parameters
    ----------
    kind : str
        One of ``LEARNERS``: 'maml', 'fomaml', 'reptile', 'metasgd', 'pooled', 'memory',
        'memory_maml', 'head'.
    n_features : int
        Inputs per row.
    hidden : sequence of int
        Hidden layer sizes.
    inner_lr : float
        The inner-loop learning rate (gradient-based learners).
    inner_steps : int
        Inner-loop steps.
    loss : str
        The training loss ('student_t_nll' for h = 1, 'gaussian_nll' for h > 1, 'bce' for credit).
    memory_slots : int
        The memory learner's slots.
    head_window : int, optional
        The head learner's window: it adapts on at most this many most recent support rows (None:
        all of them).

    Returns
    -------
    torch.nn.Module
        The learner, untrained.
    """
    if kind not in LEARNERS:
        raise ValueError(f"unknown learner {kind!r}; choose from {', '.join(LEARNERS)}")
    if kind == "memory":
        model = MemoryAugmentedNet(n_features, width=32, slots=memory_slots, hidden=tuple(hidden), loss=loss)
        _zero_output(model.decoder)
        return model
    if kind == "head":
        return HeadNewton(n_features, tuple(hidden), loss=loss, window=head_window)
    net = MLP(n_features, tuple(hidden), 1)
    _zero_output(net)
    if kind == "pooled":
        return pooled_learner(net, loss)
    if kind == "memory_maml":
        return MemoryConditionedMAML(net, inner_lr=inner_lr, inner_steps=inner_steps, loss=loss)
    cls = {"maml": MAML, "fomaml": MAML, "reptile": Reptile, "metasgd": MetaSGD}[kind]
    kw = {"first_order": True} if kind == "fomaml" else {}
    return cls(net, inner_lr=inner_lr, inner_steps=inner_steps, loss=loss, **kw)
