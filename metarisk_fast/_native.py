"""The one door to the compiled core. torch is imported first, so that the loader gives the core
torch's OpenMP runtime (one thread team: csrc/common/parallel.h); then the core itself: the
baseline module `_core` always, and on x86-64 the widest variant this CPU runs (`_core` is
x86-64-v2, `_core_x86_64_v3` AVX2 + FMA, `_core_x86_64_v4` AVX-512), or the one METARISK_ISA names
(x86-64-v2, x86-64-v3, x86-64-v4). Only `ops` and the package face import this module."""
from __future__ import annotations

import importlib
import importlib.util
import os

import torch  # noqa: F401  (first: see above)

try:
    from . import _core as baseline
except ImportError as exc:  # no silent fall-back to slow code
    raise ImportError(
        "metarisk_fast's compiled core (metarisk_fast._core) could not be imported: "
        f"{exc}. Rebuild it from the source tree with `pip install .` "
        "(needs a C++17 compiler, CMake >= 3.18 and pybind11; set METARISK_CUDA=OFF to skip CUDA)."
    ) from exc

MODULES = {"x86-64-v2": "_core", "x86-64-v3": "_core_x86_64_v3", "x86-64-v4": "_core_x86_64_v4"}


def available() -> list[str]:
    """The variants built into this installation that this CPU can run, narrowest first; none for
    a build of one module (-march=native, a sanitizer build, a non-x86 machine)."""
    if baseline.build_info().get("variant") != "x86-64-v2":
        return []
    runs = baseline.cpu_supports()
    out = []
    for isa, module in MODULES.items():
        if runs.get(isa) and importlib.util.find_spec(f"{__package__}.{module}") is not None:
            out.append(isa)
    return out


def _load():
    wanted = os.environ.get("METARISK_ISA", "").strip()
    variants = available()
    if wanted:
        if wanted not in MODULES:
            raise ImportError(f"METARISK_ISA={wanted!r}: choose one of {', '.join(MODULES)}")
        if wanted not in variants:
            single = baseline.build_info().get("variant")
            raise ImportError(f"METARISK_ISA={wanted}: this CPU or this build does not have it (available: "
                              + (", ".join(variants) if variants else f"none: a build of one module, {single}") + ")")
        return importlib.import_module(f".{MODULES[wanted]}", __package__)
    if not variants:  # a non-x86 or native build: one module
        return baseline
    return importlib.import_module(f".{MODULES[variants[-1]]}", __package__)


core = _load()
# the package's `_core` names the module in use (importing the baseline above had bound it there)
setattr(importlib.import_module(__package__), "_core", core)

__all__ = ["core", "baseline", "available"]
