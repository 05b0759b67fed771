"""The fitted early-warning model that a live loop scores with: the single scores the combined
score averages the percentiles of (its ingredients), the alarm threshold calibrated on every
label known at the end of the history, the event definition and the settings the scores were
computed with. `metarisk warn` writes it as warning.json beside its report;
warning.stream.StressScore reads it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import atomic_write_text
from .evaluate import FALSE_ALARM_RATE, MEMORY_SCORE, MODEL_SCORE, SCORES, combined_score
from .signals import EVENTS

FORMAT = 2


@dataclass(frozen=True)
class WarningModel:
    """A fitted early-warning model: what a live StressScore scores with.

    Parameters
    ----------
    ingredients : tuple of str
        The single scores whose own-past percentiles the combined score averages.
    threshold : float
        An alarm: the combined score above it.
    horizon : int
        Days ahead the stress event is looked for.
    drawdown : float
        The event's drawdown, a fraction.
    window : int
        Days of the covariance scores.
    memory : int
        Days of volatility states the novelty compares against.
    fitted_through : str
        The last day whose label calibrated the threshold.
    events : str
        The stress event definition (``signals.EVENTS``).
    assets : tuple of str, optional
        The panel's assets.
    model_sha256 : str, optional
        The variance model whose scores it combines (its weights' SHA-256).
    """

    ingredients: tuple[str, ...]  # the single scores whose own-past percentiles the combined score averages
    threshold: float  # an alarm: the combined score above it
    horizon: int
    drawdown: float  # a fraction
    window: int  # of the covariance scores
    memory: int  # days of volatility states the novelty compares against
    fitted_through: str  # the last day whose label calibrated the threshold
    events: str = EVENTS[0]  # the stress event definition (signals.EVENTS)
    assets: tuple[str, ...] | None = None  # the panel's assets
    model_sha256: str | None = None  # the variance model whose scores it combines (its weights' SHA-256)

    @property
    def needs_forecasts(self) -> bool:
        """Whether scoring needs the bar's variance forecasts."""
        return MODEL_SCORE in self.ingredients

    @property
    def needs_novelty(self) -> bool:
        """Whether scoring needs a memory learner's novelty."""
        return MEMORY_SCORE in self.ingredients

    def check_fits(self, assets, model_sha256: str | None = None) -> None:
        """Refuse to score another universe, or another variance model's forecasts, than the ones
        it was fitted on: its percentiles and threshold mean nothing there.

        Parameters
        ----------
        assets : sequence of str
            The assets to be scored.
        model_sha256 : str, optional
            The variance model's weights checksum (its model.json's), if its scores are combined.
        """
        if self.assets is not None and sorted(self.assets) != sorted(assets):
            extra, gone = sorted(set(assets) - set(self.assets)), sorted(set(self.assets) - set(assets))
            raise ValueError(f"the warning model was fitted on {len(self.assets)} other assets (not fitted: "
                             f"{extra[:5]}; missing: {gone[:5]}): run `metarisk warn` on these assets")
        if self.model_sha256 is not None and model_sha256 is not None and model_sha256 != self.model_sha256:
            raise ValueError("the warning model combines the scores of another variance model (weights "
                             f"{self.model_sha256[:12]}..., this one {model_sha256[:12]}...): give the model that "
                             "`metarisk warn --model` was given")

    @classmethod
    def fit(cls, frame: pd.DataFrame, ingredients, *, horizon: int, drawdown: float, window: int, memory: int,
            events: str = EVENTS[0], false_alarm_rate: float = FALSE_ALARM_RATE, assets=None,
            model_sha256: str | None = None) -> "WarningModel":
        """The model combining ``ingredients`` (columns of ``frame``, warning_scores' rows): its
        threshold is the (1 - false_alarm_rate) quantile of the combined score on the days known
        to be calm at the last day (the evaluation's alarm rule, at the end of the history).

        Parameters
        ----------
        frame : pandas.DataFrame
            ``warning_scores``' rows: date, label and one column per single score.
        ingredients : sequence of str
            Columns of ``frame`` to combine.
        horizon, drawdown, window, memory, events
            The settings the scores and labels were computed with (as the fields).
        false_alarm_rate : float
            The share of calm days above the threshold.
        assets : sequence of str, optional
            The panel's assets.
        model_sha256 : str, optional
            The variance model's weights checksum.

        Returns
        -------
        WarningModel
            The fitted model.
        """
        ingredients = tuple(ingredients)
        score = combined_score(frame[list(ingredients)].to_numpy())
        y = frame["label"].to_numpy()
        end = max(len(y) - horizon, 0)
        known = np.flatnonzero(np.isfinite(score[:end]) & np.isfinite(y[:end]))
        calm = known[y[known] == 0]
        if len(calm) == 0:
            raise ValueError("no day known to be calm (with every ingredient present) to calibrate the warning "
                             "model's alarm threshold on")
        threshold = float(np.quantile(score[calm], 1.0 - false_alarm_rate))
        return cls(ingredients, threshold, int(horizon), float(drawdown), int(window), int(memory),
                   str(np.datetime64(frame["date"].iloc[known[-1]], "D")), events,
                   None if assets is None else tuple(str(a) for a in assets), model_sha256)

    def to_json(self) -> str:
        """The model as JSON.

        Returns
        -------
        str
            Its format, ingredients, threshold, event definition and score settings.
        """
        return json.dumps({"format": FORMAT, "ingredients": list(self.ingredients), "threshold": self.threshold,
                           "horizon": self.horizon, "drawdown": self.drawdown, "events": self.events,
                           "window": self.window, "memory": self.memory, "fitted_through": self.fitted_through,
                           "assets": None if self.assets is None else list(self.assets),
                           "model_sha256": self.model_sha256}, indent=1)

    def save(self, path) -> None:
        """Write the model atomically as JSON.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        """
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path) -> "WarningModel":
        """A saved model, checked.

        Parameters
        ----------
        path : str or os.PathLike
            A warning.json, or the `metarisk warn` directory holding one.

        Returns
        -------
        WarningModel
            The model.
        """
        p = Path(path)
        if p.is_dir():
            p = p / "warning.json"
        try:
            d = json.loads(p.read_text())
        except OSError as exc:
            raise ValueError(f"{p}: cannot read the warning model: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{p}: not a warning model written by `metarisk warn` (damaged or another file): "
                             f"{exc!r}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else None
            raise ValueError(f"{p}: warning model format {got!r}, this version reads format {FORMAT}"
                             + (" (format 1 combined its scores by a logistic regression): run `metarisk warn` again"
                                if got == 1 else ""))
        try:
            ingredients = tuple(d["ingredients"])
            fields = (float(d["threshold"]), int(d["horizon"]), float(d["drawdown"]), int(d["window"]),
                      int(d["memory"]), str(d["fitted_through"]), str(d["events"]),
                      None if d.get("assets") is None else tuple(str(a) for a in d["assets"]),
                      None if d.get("model_sha256") is None else str(d["model_sha256"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}: not a warning model written by `metarisk warn` (damaged or another file): "
                             f"{exc!r}") from None
        known = set(SCORES) | {MODEL_SCORE, MEMORY_SCORE}
        if not ingredients or not set(ingredients) <= known or len(set(ingredients)) != len(ingredients):
            raise ValueError(f"{p}: ingredients {list(ingredients)} not understood (scores: {sorted(known)})")
        if fields[6] not in EVENTS or not np.isfinite(fields[0]):
            raise ValueError(f"{p}: events {fields[6]!r} (one of {', '.join(EVENTS)}) or threshold {fields[0]!r} "
                             "(a finite number) not understood")
        return cls(ingredients, *fields)
