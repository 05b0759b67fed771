"""Leakage-free tasks: episodes and forecast tasks cut from a price panel (episodes.py), and the
learners' target convention (target.py)."""
from .episodes import (MAX_BRIDGED_GAP, EpisodeBuilder, TaskBatch, TaskSpec, asset_split, bridge_gaps,
                       range_variance, realized_variance, time_split)
from .target import TARGET, AnchorRatioTarget

__all__ = ["TaskSpec", "TaskBatch", "EpisodeBuilder", "bridge_gaps", "realized_variance", "range_variance",
           "time_split", "asset_split", "MAX_BRIDGED_GAP", "TARGET", "AnchorRatioTarget"]
