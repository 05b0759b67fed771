"""Learners: the MAML family (fused inner loops) share one interface with the baselines."""
from .head import HeadNewton
from .maml import MAML, MetaSGD, Reptile
from .memory import ExternalMemory, MemoryAugmentedNet, MemoryConditionedMAML
from .mlp import MLP



def input_scale(learner) -> str:
    """How the learner's rows are normalised (TaskSpec.scale): "row" for the head learner, whose
    engine keeps each row's features from bar to bar; "support" for every other learner."""
    return getattr(learner, "input_scale", "support")


__all__ = ["input_scale", "MLP", "MAML", "Reptile", "MetaSGD", "ExternalMemory", "MemoryAugmentedNet", "MemoryConditionedMAML", "HeadNewton"]
