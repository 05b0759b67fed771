"""Leakage-free tasks: episodes and forecast tasks cut from a price panel (episodes.py), and the
learners' target convention (target.py)."""
from .episodes import (ANCHOR_FEATURE, MAX_BRIDGED_GAP, EpisodeBuilder, TaskBatch, TaskSpec, asset_split, bridge_gaps,
                       anchor_variance, forecastable, forward_mean, network_inputs, normalise_query, normalise_task,
                       range_variance, simulated_listings, young_args,
                       realized_variance, time_split)
from .target import TARGET, AnchorRatioTarget
from .young import AGE_SCALE, young_row

__all__ = ["TaskSpec", "TaskBatch", "EpisodeBuilder", "bridge_gaps", "realized_variance", "range_variance",
           "time_split", "asset_split", "MAX_BRIDGED_GAP", "TARGET", "AnchorRatioTarget",
           "ANCHOR_FEATURE", "anchor_variance", "forward_mean", "network_inputs", "normalise_query", "normalise_task",
           "forecastable", "young_args", "young_row", "AGE_SCALE", "simulated_listings"]
