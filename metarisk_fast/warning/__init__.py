"""Regulatory early warning of market stress: events and scores (signals.py), the recursive
combination and the out-of-sample evaluation (evaluate.py), the fitted model for live use
(model.py), the scores bar by bar (stream.py), the `metarisk warn` job (jobs.py)."""
from .model import WarningModel
from .stream import StressMonitor, StressReading, StressScore

__all__ = ["StressMonitor", "StressReading", "StressScore", "WarningModel"]
