"""metarisk_fast: fast meta-learning for financial risk forecasting.

The compiled core (`metarisk_fast._core`) holds the fused kernels; everything else is thin
Python on top of it: autograd ops, learners, features, data, tasks and evaluation.
"""
from __future__ import annotations

import torch  # noqa: F401  first, so that _core shares torch's OpenMP runtime (csrc/common/parallel.h)

try:
    from . import _core
except ImportError as exc:  # no silent fall-back to slow code
    raise ImportError(
        "metarisk_fast's compiled core (metarisk_fast._core) could not be imported: "
        f"{exc}. Rebuild it from the source tree with `pip install .` "
        "(needs a C++17 compiler, CMake >= 3.18 and pybind11; set METARISK_CUDA=OFF to skip CUDA)."
    ) from exc

__version__ = "0.1.0"


def build_info() -> dict:
    """What the compiled core was built with: CPU ISA flags, CUDA or not, thread count."""
    return dict(_core.build_info())


def set_num_threads(n: int) -> None:
    """Threads used by the core's parallel loops (default: METARISK_NUM_THREADS or all cores)."""
    if int(n) < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return int(_core.num_threads())


from .learners import (MAML, MLP, ExternalMemory, MemoryAugmentedNet, MemoryConditionedMAML, MetaSGD,  # noqa: E402
                       Reptile)

__all__ = ["MLP", "MAML", "Reptile", "MetaSGD", "ExternalMemory", "MemoryAugmentedNet", "MemoryConditionedMAML", "build_info",
           "set_num_threads", "get_num_threads"]
