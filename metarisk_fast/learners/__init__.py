"""Learners: the MAML family (fused inner loops) share one interface with the baselines."""
from .maml import MAML, MetaSGD, Reptile
from .memory import ExternalMemory, MemoryAugmentedNet, MemoryConditionedMAML
from .mlp import MLP

__all__ = ["MLP", "MAML", "Reptile", "MetaSGD", "ExternalMemory", "MemoryAugmentedNet", "MemoryConditionedMAML"]
