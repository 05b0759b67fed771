"""The early-warning covariance scores one bar at a time: the same step as the batch scores
(signals.monitor_step), for a live loop over many assets."""
from __future__ import annotations

import numpy as np

from .signals import monitor_step, new_monitor


class StressMonitor:
    """Turbulence and absorption ratio of each bar's returns against the previous ``window`` bars
    (NaN until the window is full). ``update`` costs O(N^2 k) for N assets and the top k = N / 5
    eigenvectors: two rank-one updates of an inverse and one subspace-iteration step."""

    def __init__(self, n_assets: int, window: int = 250, top_k: int | None = None):
        for name, v, lo in (("n_assets", n_assets, 2), ("window", window, 3)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= 100_000:
                raise ValueError(f"{name} must be an int in [{lo}, 100000], got {v!r}")
        k = max(1, n_assets // 5) if top_k is None else top_k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_assets:
            raise ValueError(f"top_k must be an int in [1, {n_assets}], got {top_k!r}")
        self.n_assets = int(n_assets)
        self._state = new_monitor(int(n_assets), int(window), int(k))

    def update(self, returns) -> tuple[float, float]:
        """(turbulence, absorption ratio) of one bar of log returns (N,); a missing return (NaN)
        counts as no move, as in the batch scores. Checked before the state changes."""
        r = np.asarray(returns)
        if r.dtype.kind not in "fiu" or r.shape != (self.n_assets,):
            raise ValueError(f"returns must be {self.n_assets} real numbers, got {r.dtype} of shape {r.shape}")
        r = np.where(np.isnan(r), 0.0, r.astype(np.float64))
        if np.isinf(r).any():
            raise ValueError(f"returns hold an infinite value at asset column {int(np.argmax(np.isinf(r)))}")
        return monitor_step(r, *self._state)
