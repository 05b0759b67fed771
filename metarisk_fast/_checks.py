"""The argument checks every layer shares: an int in a range, a finite number above zero (or at
or above it), a CSV field separator. Each raises a ValueError that names the argument, the range and the value given."""
from __future__ import annotations

import math

import numpy as np


def check_int(name: str, value, lo: int = 0, hi: int | None = None, note: str = "") -> int:
    """``value`` as an int in [lo, hi] (no upper bound with hi None); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an int {bound}{note}, got {value!r}")
    return int(value)


def check_separator(sep, name: str = "sep") -> str:
    """A CSV field separator: one character, not a quote or a line break."""
    if not isinstance(sep, str) or len(sep) != 1 or sep in "\"\n\r":
        raise ValueError(f"{name} must be one character (not a quote or a line break), got {sep!r}")
    return sep


def check_number(name: str, value, *, allow_zero: bool = False, note: str = "") -> float:
    """``value`` as a finite float > 0 (>= 0 with allow_zero); bools are refused."""
    ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
          and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0{note}, got {value!r}")
    return float(value)
