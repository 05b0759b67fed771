"""Learners: the MAML family (fused inner loops) share one interface with the baselines."""
from .head import HeadNewton
from .maml import MAML, MetaSGD, Reptile
from .memory import ExternalMemory, MemoryAugmentedNet, MemoryConditionedMAML
from .mlp import MLP



def input_scale(learner) -> str:
    """How the learner's rows are normalised (TaskSpec.scale): "row" for the head learner, whose
    engine keeps each row's features from bar to bar; "support" for every other learner."""
    return getattr(learner, "input_scale", "support")


def support_rows(learner, history: int) -> int:
    """The most support rows the learner adapts on given ``history``: its window where it has one
    (the head learner), else ``history``. The forecasts and the streaming engine both cap their
    history at it, so an asset is ready (``min_history``) by the rows it adapts on."""
    window = getattr(learner, "window", None)
    return int(history) if window is None else min(int(history), window)


__all__ = ["input_scale", "support_rows", "MLP", "MAML", "Reptile", "MetaSGD", "ExternalMemory", "MemoryAugmentedNet", "MemoryConditionedMAML", "HeadNewton"]
