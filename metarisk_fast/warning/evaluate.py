"""The combined early-warning score and the out-of-sample evaluation of every score: AUROC (with
a block-bootstrap interval against a baseline), the hit rate at a 10 % false-alarm rate, false
alarms per year and each episode's lead time, on a validation period and the test period after it.

The combined score is the mean of its ingredients' percentiles within their own past: monotone in
each ingredient, no weight to fit, so it cannot learn a sign from a few episodes and flip it on
the next (the recursive logistic regression it replaces did, scoring below chance on validation).
Which ingredients it combines is a choice made on validation only: INGREDIENTS by the rule in
bench/early_warning.py over a grid of event definitions, and per run ``choose_ingredients``'
fall-back to a single ingredient that scores better on that run's validation period.
Every value at day t uses data known by t (a label of day s is known at s + horizon)."""
from __future__ import annotations

import numpy as np
from numba import njit
from sklearn.metrics import roc_auc_score, roc_curve

from .signals import _expanding_quantile, episodes, expanding_rank

SCORES = ("turbulence", "absorption_shift", "vol_level", "vol_63", "ewma_vol", "novelty")
MODEL_SCORE = "forecast_jump"  # with a trained variance model: the jump of its forecasts across assets
MEMORY_SCORE = "memory_novelty"  # with a trained memory learner: its novelty, averaged over assets
INGREDIENTS = ("vol_level",)  # the combined score's default, chosen on validation (bench/early_warning.py)
FALSE_ALARM_RATE = 0.10  # the alarm threshold: this share of the known calm days lies above it
EPISODE_GAP = 20  # labelled runs fewer days apart are one episode (for lead times)
VALIDATION_SHARE = 0.4  # the default validation period: evaluated days up to the year end at this share


def score_ranks(scores: np.ndarray) -> np.ndarray:
    """Each single score's percentile within its own past (signals.expanding_rank), (T, S): the
    combined score's inputs, stable as the scores' levels drift."""
    return np.column_stack([expanding_rank(np.ascontiguousarray(c, np.float64)) for c in np.asarray(scores).T])


def combined_score(scores: np.ndarray) -> np.ndarray:
    """The mean of the columns' own-past percentiles (score_ranks), (T,); NaN on a day where any
    column has no percentile yet."""
    return score_ranks(scores).mean(axis=1)


def auroc(score: np.ndarray, y: np.ndarray) -> float:
    """AUROC of ``score`` for the 0/1 labels ``y`` (NaN when one class is absent)."""
    return float(roc_auc_score(y, score)) if 0 < np.mean(y) < 1 else float("nan")


def choose_ingredients(singles: dict, y: np.ndarray, rows: np.ndarray) -> tuple[tuple[str, ...], dict]:
    """The ingredients the combined score keeps, chosen on the validation ``rows`` only: all of
    ``singles`` (name -> (T,) score), unless the combined score of one of them alone (its own-past
    percentile) has a higher AUROC there, then that one. Returns the choice and the validation
    AUROC of each candidate ("+"-joined names for the combination of several). With no stress
    or no calm day in ``rows`` every ingredient stays."""
    names = tuple(singles)
    subsets = [names] + ([(n,) for n in names] if len(names) > 1 else [])
    found = {"+".join(c): auroc(combined_score(np.column_stack([singles[n] for n in c]))[rows], y[rows])
             for c in subsets}
    if not all(np.isfinite(list(found.values()))):
        return names, found
    best = max(subsets, key=lambda c: (found["+".join(c)], len(c)))  # a tie keeps more ingredients
    return best, found


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
    """The metrics of one score over the evaluated rows: AUROC, hit rate at a 10 % false-alarm
    rate, the alarm rule's hit and false rates, false alarm episodes a year, each episode's lead
    time (days from its first alarm, up to ``horizon`` before it, to its first day; None: no
    alarm) and the share of episodes alarmed before they began."""
    s, lab = score[rows], y[rows]
    if not 0 < lab.mean() < 1:
        raise ValueError("the evaluated days hold no stress day or no calm day: AUROC is undefined there")
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
    return {"auroc": auroc(s, lab), "hit_rate_at_10pct_false_alarms": float(np.interp(0.10, fpr, tpr)),
            "alarm_hit_rate": float(alarm[rows][lab > 0].mean()), "alarm_false_rate": float(alarm[rows][lab == 0].mean()),
            "false_alarm_episodes_per_year": float(false_runs / years), "lead_times": leads,
            "episodes_alarmed_ahead": float(np.mean([lead is not None and lead > 0 for lead in leads]))}


@njit(cache=True)
def _bootstrap_aurocs(starts, block, order, positive, tie_start, out):
    """AUROC under each moving-block bootstrap sample (rows: ``starts``' blocks of ``block``
    days, cut at n): the rows' counts, then one pass over the rows in score order (``order``;
    ``tie_start`` marks the first of each run of tied scores), ties counted half."""
    n = order.shape[0]
    counts = np.zeros(n)
    for d in range(starts.shape[0]):
        counts[:] = 0.0
        taken = 0
        for b in range(starts.shape[1]):
            for j in range(starts[d, b], starts[d, b] + block):
                if taken == n:
                    break
                counts[j] += 1.0
                taken += 1
        below, wins, total_pos, i = 0.0, 0.0, 0.0, 0
        while i < n:  # one run of tied scores at a time
            k = i + 1
            while k < n and not tie_start[k]:
                k += 1
            neg_run, pos_run = 0.0, 0.0
            for j in range(i, k):
                if positive[order[j]]:
                    pos_run += counts[order[j]]
                else:
                    neg_run += counts[order[j]]
            wins += pos_run * (below + 0.5 * neg_run)
            below += neg_run
            total_pos += pos_run
            i = k
        out[d] = wins / (total_pos * below) if total_pos > 0 and below > 0 else np.nan


def block_bootstrap_auroc(scores: np.ndarray, y: np.ndarray, block: int, draws: int = 1000,
                          seed: int = 0) -> np.ndarray:
    """AUROC of each column of ``scores`` (n, S) under ``draws`` moving-block bootstrap samples of
    the rows (blocks of ``block`` consecutive days: the labels of neighbouring days overlap by up
    to the horizon), (draws, S); the same samples for every column, so their differences are
    paired. NaN for a sample that holds one class only."""
    scores = np.asarray(scores, np.float64)
    n = len(y)
    block = max(1, min(int(block), n))
    starts = np.random.default_rng(seed).integers(0, n - block + 1, size=(draws, -(-n // block)))
    positive = np.asarray(y) > 0
    out = np.empty((draws, scores.shape[1]))
    for c in range(scores.shape[1]):  # a loop over the compared scores
        order = np.argsort(scores[:, c], kind="stable")
        ranked = scores[order, c]
        tie_start = np.r_[True, ranked[1:] != ranked[:-1]]
        column = np.empty(draws)
        _bootstrap_aurocs(starts, block, order, positive, tie_start, column)
        out[:, c] = column
    return out


def auroc_difference(score: np.ndarray, baseline: np.ndarray, y: np.ndarray, block: int, draws: int = 1000,
                     seed: int = 0) -> dict:
    """AUROC(score) - AUROC(baseline) on the same rows, with its 95 % moving-block bootstrap
    interval."""
    boot = block_bootstrap_auroc(np.column_stack([score, baseline]), y, block, draws, seed)
    d = boot[:, 0] - boot[:, 1]
    d = d[np.isfinite(d)]
    return {"difference": auroc(score, y) - auroc(baseline, y),
            "low": float(np.quantile(d, 0.025)) if len(d) else float("nan"),
            "high": float(np.quantile(d, 0.975)) if len(d) else float("nan")}
