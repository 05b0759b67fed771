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

from .._checks import check_int
from ..learners import input_scale, support_rows
from ..tasks import TARGET, EpisodeBuilder
from ..tasks.target import AnchorRatioTarget


class Forecaster(ABC):
    """A variance forecaster as the evaluation sees it: ``predict`` gives, for (asset, row t)
    pairs of an episode builder's panel, the forecast made at t from data up to t."""

    name = "forecaster"

    @abstractmethod
    def predict(self, builder: EpisodeBuilder, asset: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Forecasts for (asset, row) pairs, each from data up to its row.

        Parameters
        ----------
        builder : EpisodeBuilder
            The panel's features and targets.
        asset : numpy.ndarray
            (M,) int: panel columns.
        rows : numpy.ndarray
            (M,) int: the rows (dates) to forecast at.

        Returns
        -------
        numpy.ndarray
            (M,) float64 forecast variances (squared log-return units); NaN where there is none.
        """


def every_pair(per_pair, builder: EpisodeBuilder) -> np.ndarray:
    """``per_pair(builder, asset, rows)`` (a forecaster's predict, or a memory learner's novelty)
    of every (day, asset) of the builder's panel, as (days, assets)."""
    T, N = builder.panel.n_days, builder.panel.n_assets
    return per_pair(builder, np.repeat(np.arange(N), T), np.tile(np.arange(T), N)).reshape(N, T).T


@dataclass
class MetaForecaster(Forecaster):
    """A meta-learned network: for each (asset, t), adapt on at most the last ``history`` days
    (targets realised before t; fewer where the asset has less, down to ``min_history``: by default
    none, a young asset's forecast from its second price is the meta-learned prior's, adapted as
    its support grows) and decode its output with the task target convention (tasks/target.py).

    Parameters
    ----------
    learner : torch.nn.Module
        A trained learner (a MAML-family learner, the head learner or a MemoryAugmentedNet).
    history : int
        At most this many latest realised days per support set (a head learner with a window:
        at most its window, ``learners.support_rows``).
    name : str
        The forecaster's name in reports.
    min_history : int
        Days an asset needs before it forecasts (0: from its second price).
    chunk : int
        Tasks per kernel call.
    block : int
        Tasks built at once (their support windows take block x history x features floats).
    target : AnchorRatioTarget
        How outputs become variances (the bound on the correction).
    """

    learner: torch.nn.Module  # a MAML-family learner or a MemoryAugmentedNet
    history: int = 60
    name: str = "maml"
    min_history: int = 0
    chunk: int = 1024  # tasks per kernel call
    block: int = 16384  # tasks built at once (their support windows: block x history x features floats)
    target: AnchorRatioTarget = TARGET  # how outputs become variances (the bound on the correction)

    def __post_init__(self):
        for name in ("history", "chunk", "block"):
            check_int(name, getattr(self, name), 1)
        check_int("min_history", self.min_history, 0)
        self.history = support_rows(self.learner, self.history)

    def predict(self, builder, asset, rows):
        return self._per_task(builder, asset, rows, self.variance)

    def novelty(self, builder, asset, rows) -> np.ndarray:
        """A memory learner's novelty of each (asset, row) pair.

        Novelty: how far the day's inputs lie from everything the asset's memory holds once its
        support is written (1 - the largest cosine similarity of keys).

        Parameters
        ----------
        builder : EpisodeBuilder
            The panel's features and targets.
        asset : numpy.ndarray
            (M,) int: panel columns.
        rows : numpy.ndarray
            (M,) int: the rows (dates) to forecast at.

        Returns
        -------
        numpy.ndarray
            (M,) float64 in [0, 2]; NaN where there is no forecast.
        """
        if not hasattr(self.learner, "novelty"):
            raise ValueError(f"novelty needs a memory learner (memory); this model is {type(self.learner).__name__}")
        return self._per_task(builder, asset, rows, self.memory_novelty)

    def _per_task(self, builder, asset, rows, fn) -> np.ndarray:
        """fn(xs, ys, xq, anchor) of the forecast task of each (asset, row) pair (NaN where the
        asset has less than ``min_history`` usable days)."""
        asset, rows = np.asarray(asset, np.int64), np.asarray(rows, np.int64)
        builder = builder.with_scale(input_scale(self.learner))
        out = np.full(len(asset), np.nan)
        avail = np.minimum(builder.available_history(asset, rows), self.history)
        # batched calls per distinct history length (nearly all pairs have the full one), in
        # blocks of pairs: the tasks' support windows exist for one block at a time
        for length in np.unique(avail[avail >= min(self.min_history, self.history)]):
            same = np.flatnonzero(avail == length)
            for lo in range(0, len(same), self.block):
                sel = same[lo:lo + self.block]
                batch, ok = builder.forecast_tasks(asset[sel], rows[sel], int(length))
                if len(batch):
                    out[sel[ok]] = fn(batch.xs, batch.ys, batch.xq, batch.anchor[:, 0])
        return out

    def variance(self, xs, ys, xq, anchor) -> np.ndarray:
        """Variance forecasts of normalised one-query tasks: adapt on each support, predict, decode.

        The batch forecasts and the streaming engine both end here.

        Parameters
        ----------
        xs : numpy.ndarray
            (B, K, D) float32 normalised support rows (``tasks.normalise_task``).
        ys : numpy.ndarray
            (B, K, 1) float32 support targets.
        xq : numpy.ndarray
            (B, 1, D) float32: each task's query row.
        anchor : numpy.ndarray
            (B,) float64: each query row's anchor variance.

        Returns
        -------
        numpy.ndarray
            (B,) float64 forecast variances (squared log-return units).
        """
        z = np.empty(len(xs), dtype=np.float64)
        for lo in range(0, len(xs), self.chunk):  # bounded memory; each chunk is one kernel call
            sl = slice(lo, lo + self.chunk)
            z[sl] = self.learner.adapt_predict(xs[sl], ys[sl], xq[sl])[:, 0, 0]
        return self.target.decode(z, anchor)

    def memory_novelty(self, xs, ys, xq, anchor=None) -> np.ndarray:
        """The memory learner's novelty of the query row of normalised one-query tasks.

        The batch scores and the streaming engine both end here.

        Parameters
        ----------
        xs : numpy.ndarray
            (B, K, D) float32 normalised support rows (``tasks.normalise_task``).
        ys : numpy.ndarray
            (B, K, 1) float32 support targets.
        xq : numpy.ndarray
            (B, 1, D) float32: each task's query row.
        anchor : numpy.ndarray, optional
            Not read (the signature is ``variance``'s).

        Returns
        -------
        numpy.ndarray
            (B,) float64 in [0, 2].
        """
        out = np.empty(len(xs), dtype=np.float64)
        for lo in range(0, len(xs), self.chunk):
            sl = slice(lo, lo + self.chunk)
            out[sl] = self.learner.novelty(xs[sl], ys[sl], xq[sl])[:, 0]
        return out


class SavedModelForecasts:
    """A saved model's numbers for every (day, asset) of a price panel, as `metarisk forecast`
    makes them (each at t from data up to t): its variance forecasts and, for a memory learner,
    its novelty. What the early warning and the trading observations read from a model.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A model directory ('default': the shipped model).
    """

    def __init__(self, model_dir):
        from .model_files import load_model

        self.learner, self.spec, self.meta = load_model(model_dir)
        self.forecaster = MetaForecaster(self.learner, self.meta["history"])

    @property
    def has_novelty(self) -> bool:
        return hasattr(self.learner, "novelty")

    def variance(self, panel) -> np.ndarray:
        """The variance forecasts of every (day, asset) of a panel.

        Parameters
        ----------
        panel : PricePanel
            The prices.

        Returns
        -------
        numpy.ndarray
            (days, assets) float64; NaN where an asset has no forecast.
        """
        return self.every_day(panel)[0]

    def every_day(self, panel, novelty: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Variance forecasts and novelty of every (day, asset), from one pass of the features.

        Parameters
        ----------
        panel : PricePanel
            The prices.
        novelty : bool
            Also the memory learner's novelty.

        Returns
        -------
        tuple of numpy.ndarray
            (variance, novelty or None), each (days, assets) float64; NaN where an asset has none.
        """
        builder = EpisodeBuilder(panel, self.spec)
        return (every_pair(self.forecaster.predict, builder),
                every_pair(self.forecaster.novelty, builder) if novelty else None)
