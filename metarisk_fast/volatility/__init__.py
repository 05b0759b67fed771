"""The variance / VaR / ES forecasting application: ``estimator`` (RiskModel, the Python
estimator: fit / forecast / save / load, pandas in and out), ``jobs`` (train, forecast, evaluate,
demo), ``feed`` (the streaming engine over a file or a live feed) and ``command`` (their
`metarisk` subcommands). Lazy: `metarisk --help` imports no torch."""
from __future__ import annotations

import importlib

__all__ = ["RiskModel", "RiskForecast"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module(".estimator", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
