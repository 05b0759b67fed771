"""Trading-strategy adaptation (the fourth application): trading tasks over daily bars of the
embedded panel or the synthetic regimes, vectorised over episodes (env.py, no torch); Gaussian
meta-policies adapted by policy-gradient steps in the fused kernel (policy.py, import it by name)."""
from .env import OBS_FEATURES, Episodes, TaskPool, TradingSpec, TradingTasks, episode_rewards

__all__ = ["OBS_FEATURES", "Episodes", "TaskPool", "TradingSpec", "TradingTasks", "episode_rewards"]
