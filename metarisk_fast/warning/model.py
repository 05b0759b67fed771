"""The fitted early-warning model that a live loop scores with: which single scores it combines,
the logistic regression on their own-past percentiles fitted on every label known at the end of
the history, the alarm threshold, and the settings the scores were computed with. `metarisk
warn` writes it as warning.json beside its report; warning.stream.StressScore reads it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import atomic_write_text
from .evaluate import FALSE_ALARM_RATE, MEMORY_SCORE, MODEL_SCORE, SCORES, Logistic, _known_rows, score_ranks

FORMAT = 1


@dataclass(frozen=True)
class WarningModel:
    names: tuple[str, ...]  # the single scores, in the order of the logistic's inputs
    logistic: Logistic
    threshold: float  # an alarm: the combined score above it
    horizon: int
    drawdown: float  # a fraction
    window: int  # of the covariance scores
    memory: int  # days of volatility states the novelty compares against
    fitted_through: str  # the last day whose label trained it
    assets: tuple[str, ...] | None = None  # the panel's assets (files before they were recorded: None)
    model_sha256: str | None = None  # the variance model whose scores it combines (its weights' SHA-256)

    @property
    def needs_forecasts(self) -> bool:
        return MODEL_SCORE in self.names

    @property
    def needs_novelty(self) -> bool:
        return MEMORY_SCORE in self.names

    def check_fits(self, assets, model_sha256: str | None = None) -> None:
        """Refuse to score another universe, or another variance model's forecasts, than the ones
        it was fitted on: its percentiles and coefficients mean nothing there."""
        if self.assets is not None and sorted(self.assets) != sorted(assets):
            extra, gone = sorted(set(assets) - set(self.assets)), sorted(set(self.assets) - set(assets))
            raise ValueError(f"the warning model was fitted on {len(self.assets)} other assets (not fitted: "
                             f"{extra[:5]}; missing: {gone[:5]}): run `metarisk warn` on these assets")
        if self.model_sha256 is not None and model_sha256 is not None and model_sha256 != self.model_sha256:
            raise ValueError("the warning model combines the scores of another variance model (weights "
                             f"{self.model_sha256[:12]}..., this one {model_sha256[:12]}...): give the model that "
                             "`metarisk warn --model` was given")

    @classmethod
    def fit(cls, frame: pd.DataFrame, names, *, horizon: int, drawdown: float, window: int, memory: int,
            false_alarm_rate: float = FALSE_ALARM_RATE, assets=None, model_sha256: str | None = None) -> "WarningModel":
        """Fit on every day of ``frame`` (warning_scores' rows) whose label is known at its last
        day; the threshold is the (1 - false_alarm_rate) quantile of the fitted score on the
        known calm days (the recursive evaluation's alarm rule, at the end of the history)."""
        names = tuple(names)
        X = score_ranks(frame[list(names)].to_numpy())
        y = frame["label"].to_numpy()
        rows = _known_rows(X, y, len(y) - 1, horizon)
        if len(rows) == 0 or len(np.unique(y[rows])) < 2:
            raise ValueError("no day with a known label of each class to fit the warning model on")
        logistic = Logistic.fit(X[rows], y[rows])
        calm = rows[y[rows] == 0]
        threshold = float(np.quantile(logistic.probability(X[calm]), 1.0 - false_alarm_rate))
        return cls(names, logistic, threshold, int(horizon), float(drawdown), int(window), int(memory),
                   str(np.datetime64(frame["date"].iloc[rows[-1]], "D")),
                   None if assets is None else tuple(str(a) for a in assets), model_sha256)

    def to_json(self) -> str:
        """The model as JSON: its scores, standardisation, coefficients, threshold and episode
        definition."""
        lg = self.logistic
        return json.dumps({"format": FORMAT, "names": list(self.names), "mean": lg.mean.tolist(),
                           "scale": lg.scale.tolist(), "coef": lg.coef.tolist(), "intercept": lg.intercept,
                           "threshold": self.threshold, "horizon": self.horizon, "drawdown": self.drawdown,
                           "window": self.window, "memory": self.memory, "fitted_through": self.fitted_through,
                           "assets": None if self.assets is None else list(self.assets),
                           "model_sha256": self.model_sha256}, indent=1)

    def save(self, path) -> None:
        """Write the model to ``path`` atomically (JSON)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path) -> "WarningModel":
        """A saved model (a warning.json, or the `metarisk warn` directory holding one), checked."""
        p = Path(path)
        if p.is_dir():
            p = p / "warning.json"
        try:
            d = json.loads(p.read_text())
            names = tuple(d["names"])
            arrays = [np.asarray(d[k], np.float64) for k in ("mean", "scale", "coef")]
            fields = (float(d["intercept"]), float(d["threshold"]), int(d["horizon"]), float(d["drawdown"]),
                      int(d["window"]), int(d["memory"]), str(d["fitted_through"]),
                      None if d.get("assets") is None else tuple(str(a) for a in d["assets"]),
                      None if d.get("model_sha256") is None else str(d["model_sha256"]))
        except OSError as exc:
            raise ValueError(f"{p}: cannot read the warning model: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}: not a warning model written by `metarisk warn` (damaged or another file): "
                             f"{exc!r}") from None
        known = set(SCORES) | {MODEL_SCORE, MEMORY_SCORE}
        if d.get("format") != FORMAT or not names or not set(names) <= known or len(set(names)) != len(names):
            raise ValueError(f"{p}: format {d.get('format')!r} or scores {list(names)} not understood "
                             f"(scores: {sorted(known)})")
        if any(a.shape != (len(names),) or not np.isfinite(a).all() for a in arrays) or (arrays[1] <= 0).any() \
                or not np.isfinite(np.asarray(fields[:2], np.float64)).all():
            raise ValueError(f"{p}: the logistic regression's parameters are not {len(names)} finite numbers each (scales positive)")
        logistic = Logistic(arrays[0], arrays[1], arrays[2], fields[0])
        return cls(names, logistic, *fields[1:])
