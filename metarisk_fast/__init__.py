"""metarisk_fast: fast meta-learning for financial risk forecasting.

The compiled core (`metarisk_fast._core` and its wider CPU variants, loaded through `_native`)
holds the fused kernels; everything else is Python on top of it, in layers
(docs/ARCHITECTURE.md). This face is lazy:
`import metarisk_fast` loads nothing heavy; each name loads its layer on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_NAMES = {  # public name -> the module that owns it
    "MLP": "learners", "MAML": "learners", "HeadNewton": "learners", "Reptile": "learners", "MetaSGD": "learners",
    "ExternalMemory": "learners", "MemoryAugmentedNet": "learners", "MemoryConditionedMAML": "learners",
    "RiskEngine": "streaming", "RiskSnapshot": "streaming", "RiskModel": "volatility", "RiskForecast": "volatility",
}
_SUBMODULES = ("ops", "reference", "learners", "features", "data", "datasets", "tasks", "forecasting",
               "evaluation", "report", "streaming", "integrations", "volatility", "warning", "credit", "trading", "cli")


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name == "_core":  # the compiled module in use (the widest variant the CPU runs), as every op loads it
        return importlib.import_module("._native", __name__).core
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_info() -> dict:
    """What the compiled core was built with.

    Returns
    -------
    dict
        variant (the loaded module's ISA level), cpu_isa (the flags it was compiled for), compiler,
        cuda_compiled, cuda_devices, num_threads.
    """
    from ._native import core

    return dict(core.build_info())


def set_num_threads(n: int) -> None:
    """Set the threads of the core's parallel loops (default: METARISK_NUM_THREADS or all cores).

    Parameters
    ----------
    n : int
        Threads, at least 1.
    """
    from ._native import core

    if int(n) < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The threads the core's parallel loops use now.

    Returns
    -------
    int
        The thread count.
    """
    from ._native import core

    return int(core.num_threads())


__all__ = [*_NAMES, *_SUBMODULES, "build_info", "set_num_threads", "get_num_threads", "__version__"]
