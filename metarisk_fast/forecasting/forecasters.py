"""Variance forecasters behind one interface, so evaluation treats learners and baselines alike.

``predict(builder, asset, rows)`` returns, for each (asset, row t), the forecast made at the
close of t of the mean daily variance of log returns over t+1..t+h (NaN where a model has no
forecast), using nothing after t.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from ..tasks import TARGET, EpisodeBuilder


class Forecaster(ABC):
    name = "forecaster"

    @abstractmethod
    def predict(self, builder: EpisodeBuilder, asset: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Forecasts (M,) for the (asset, row) pairs."""


@dataclass
class MetaForecaster(Forecaster):
    """A meta-learned network: for each (asset, t), adapt on at most the last ``history`` days
    (targets realised before t; fewer where the asset has less, down to ``min_history``) and
    decode its output with the task target convention (tasks/target.py)."""

    learner: torch.nn.Module  # a MAML-family learner or a MemoryAugmentedNet
    history: int = 60
    name: str = "maml"
    min_history: int = 20
    chunk: int = 1024

    def predict(self, builder, asset, rows):
        asset, rows = np.asarray(asset, np.int64), np.asarray(rows, np.int64)
        out = np.full(len(asset), np.nan)
        avail = np.minimum(builder.available_history(asset, rows), self.history)
        # one batched call per distinct history length (nearly all pairs have the full one)
        for length in np.unique(avail[avail >= min(self.min_history, self.history)]):
            sel = np.flatnonzero(avail == length)
            batch, ok = builder.forecast_tasks(asset[sel], rows[sel], int(length))
            if len(batch):
                out[sel[ok]] = TARGET.decode(self._predict(batch), batch.anchor[:, 0])
        return out

    def _predict(self, batch) -> np.ndarray:
        z = np.empty(len(batch), dtype=np.float64)
        for lo in range(0, len(batch), self.chunk):  # bounded memory; each chunk is one kernel call
            sl = slice(lo, lo + self.chunk)
            z[sl] = self.learner.adapt_predict(batch.xs[sl], batch.ys[sl], batch.xq[sl])[:, 0, 0]
        return z
