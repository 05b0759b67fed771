"""The combined early-warning score, learned recursively, and the out-of-sample evaluation of
every score: AUROC, the hit rate at a 10 % false-alarm rate, false alarms per year and each
episode's lead time. Every fitted quantity at day t uses data and labels known by t (a label of
day s is known at s + horizon)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

from .signals import _expanding_quantile, episodes, expanding_rank

SCORES = ("turbulence", "absorption_shift", "vol_level", "novelty")
MODEL_SCORE = "forecast_jump"  # with a trained variance model: the jump of its forecasts across assets
MEMORY_SCORE = "memory_novelty"  # with a trained memory learner: its novelty, averaged over assets
FALSE_ALARM_RATE = 0.10  # the alarm threshold: this share of the known calm days lies above it
EPISODE_GAP = 20  # labelled runs fewer days apart are one episode (for lead times)


def score_ranks(scores: np.ndarray) -> np.ndarray:
    """Each single score's percentile within its own past (signals.expanding_rank), (T, S): the
    combined score's inputs, stable as the scores' levels drift."""
    return np.column_stack([expanding_rank(np.ascontiguousarray(c, np.float64)) for c in np.asarray(scores).T])


@dataclass(frozen=True)
class Logistic:
    """P(stress within the horizon) = 1 / (1 + exp(-(((x - mean) / scale) . coef + intercept))) of
    the ranks x: the combined score's one formula, in the recursive evaluation and live."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray) -> "Logistic":
        mu, sd = X.mean(axis=0), X.std(axis=0) + 1e-12
        m = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit((X - mu) / sd, y)
        return cls(mu, sd, m.coef_[0].astype(np.float64), float(m.intercept_[0]))

    def probability(self, X: np.ndarray) -> np.ndarray:
        """P(stress episode ahead) of each row of scores ``X``."""
        z = ((np.asarray(X, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def _known_rows(X: np.ndarray, y: np.ndarray, t: int, horizon: int) -> np.ndarray:
    """Rows whose inputs exist and whose labels are known at day t (s <= t - horizon)."""
    end = max(t - horizon + 1, 0)
    return np.flatnonzero(np.isfinite(X[:end]).all(axis=1) & np.isfinite(y[:end]))


def combined_score(scores: np.ndarray, y: np.ndarray, horizon: int, refit: int = 21, min_train: int = 750) -> np.ndarray:
    """P(stress within the horizon) from the single scores (T, S): a logistic regression on each
    score's percentile within its own past (``score_ranks``), refitted every ``refit`` days on
    the rows whose labels are known (s <= t - horizon), from the first day with ``min_train``
    such rows of both classes; NaN before."""
    X = score_ranks(scores)
    T = len(y)
    out = np.full(T, np.nan)
    finite = np.isfinite(X).all(axis=1)
    for t in range(0, T, refit):  # a loop over refits (every `refit` days), each one fit
        rows = _known_rows(X, y, t, horizon)
        if len(rows) < min_train or len(np.unique(y[rows])) < 2:
            continue
        model = Logistic.fit(X[rows], y[rows])
        block = np.arange(t, min(t + refit, T))
        block = block[finite[block]]
        if len(block):
            out[block] = model.probability(X[block])
    return out


def alarms(score: np.ndarray, y: np.ndarray, horizon: int, false_alarm_rate: float = FALSE_ALARM_RATE) -> np.ndarray:
    """Alarm days: the score above the (1 - false_alarm_rate) quantile of its values on the past
    days known to be calm (labels known by t: days up to t - horizon), so that each score alarms on
    about that share of calm days, recalibrated as labels come in."""
    score = np.asarray(score, np.float64)
    calm = np.where(np.asarray(y) == 0, score, np.nan)
    q = _expanding_quantile(calm, 1.0 - false_alarm_rate, 0)
    threshold = np.full(len(score), np.nan)
    threshold[horizon:] = q[:-horizon]
    return np.nan_to_num(score, nan=-np.inf) > np.nan_to_num(threshold, nan=np.inf)


def evaluate_score(score: np.ndarray, y: np.ndarray, rows: np.ndarray, horizon: int) -> dict:
    """The metrics of one score over the evaluated rows."""
    s, lab = score[rows], y[rows]
    fpr, tpr, _ = roc_curve(lab, s)
    alarm = alarms(score, y, horizon)
    years = len(rows) / 252
    false_runs = 0
    for a, b in episodes(alarm[rows].astype(np.float64)):
        if not (lab[a:b + 1] > 0).any():
            false_runs += 1
    leads = []
    for a, b in episodes(y[rows], EPISODE_GAP):
        first = rows[a]
        window = np.arange(max(first - horizon, rows[0]), rows[b] + 1)
        fired = window[alarm[window]]
        leads.append(int(first - fired[0]) if len(fired) else None)
    return {"auroc": float(roc_auc_score(lab, s)), "hit_rate_at_10pct_false_alarms": float(np.interp(0.10, fpr, tpr)),
            "alarm_hit_rate": float(alarm[rows][lab > 0].mean()), "alarm_false_rate": float(alarm[rows][lab == 0].mean()),
            "false_alarm_episodes_per_year": float(false_runs / years), "lead_times": leads}
