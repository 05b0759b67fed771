"""The streaming risk engine (engine.py): one bar in, every asset's risk out, bit-identical to
the batch forecasts, for live loops and bar-by-bar backtests."""
from .engine import RiskEngine, RiskSnapshot

__all__ = ["RiskEngine", "RiskSnapshot"]
