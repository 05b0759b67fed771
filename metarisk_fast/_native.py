"""The one door to the compiled core. torch is imported first, so that the loader gives `_core`
torch's OpenMP runtime (one thread team: csrc/common/parallel.h); then `_core` itself, with a
clear message when it is missing. Only `ops` and the package face import this module."""
from __future__ import annotations

import torch  # noqa: F401  (first: see above)

try:
    from . import _core as core
except ImportError as exc:  # no silent fall-back to slow code
    raise ImportError(
        "metarisk_fast's compiled core (metarisk_fast._core) could not be imported: "
        f"{exc}. Rebuild it from the source tree with `pip install .` "
        "(needs a C++17 compiler, CMake >= 3.18 and pybind11; set METARISK_CUDA=OFF to skip CUDA)."
    ) from exc

__all__ = ["core"]
