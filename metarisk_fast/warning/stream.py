"""The early-warning scores one bar at a time, for a live loop over many assets: the covariance
scores (StressMonitor: the batch scores' own compiled step, signals.monitor_step) and the whole
combined score of a fitted warning model (StressScore: every single score's streaming twin, the
mean of its ingredients' own-past percentiles and the model's alarm)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .._checks import check_int
from .evaluate import MEMORY_SCORE, MODEL_SCORE, SCORES
from .model import WarningModel
from ..features._kernels import _ewma_row
from .signals import ANNUAL, BLOCK, EWMA_LAMBDA, EWMA_START, bar_returns, monitor_step, new_monitor

VOL_WINDOW, VOL_LONG, SHORT_AR, STATE_SHORT, RECENT, JUMP_LAG = 21, 63, 15, 21, 21, 5  # signals' windows, in bars
MAX_LOG_RETURN = 1e4  # beyond any ratio of two floats' prices (|log| < 1500); its square sums without overflow


class StressMonitor:
    """Turbulence and absorption ratio of each bar's returns against the previous ``window`` bars
    (NaN until the window is full). ``update`` costs O(N^2 + (W + k) N b) for N assets, the top
    k = N / 5 eigenvectors and b = ``block`` of them advanced a bar (signals.monitor_step)."""

    def __init__(self, n_assets: int, window: int = 250, top_k: int | None = None, block: int = BLOCK):
        check_int("n_assets", n_assets, 2, 100_000)
        check_int("window", window, 3, 100_000)
        k = max(1, n_assets // 5) if top_k is None else top_k
        check_int("top_k", k, 1, n_assets)
        check_int("block", block, 1, 100_000)
        self.n_assets = int(n_assets)
        self._state = new_monitor(int(n_assets), int(window), int(k), int(block))

    def update(self, returns) -> tuple[float, float]:
        """(turbulence, absorption ratio) of one bar of log returns (N,); a missing return (NaN)
        counts as no move, as in the batch scores. Checked before the state changes."""
        r = np.asarray(returns)
        if r.dtype.kind not in "fiu" or r.shape != (self.n_assets,):
            raise ValueError(f"returns must be {self.n_assets} real numbers, got {r.dtype} of shape {r.shape}")
        r = np.where(np.isnan(r), 0.0, r.astype(np.float64))
        bad = ~(np.abs(r) <= MAX_LOG_RETURN)
        if bad.any():
            raise ValueError(f"returns must be log returns within +-{MAX_LOG_RETURN:g}: {r[bad][0]} at asset column "
                             f"{int(np.argmax(bad))}")
        return monitor_step(r, *self._state)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The monitor's state arrays (views, in StressMonitor's order)."""
        return self._state


@dataclass(frozen=True)
class StressReading:
    """One bar's early warning: the combined score (the mean of its ingredients' percentiles
    within their own past, in [0, 1]; NaN until every ingredient has a past), the alarm (score above the model's threshold) and every single
    score (NaN where it needs more history).

    Parameters
    ----------
    score : float
        The combined score in [0, 1]; NaN until every ingredient has a past.
    alarm : bool
        The score is above the model's threshold.
    singles : dict of str to float
        Every single score (NaN where it needs more history).
    """

    score: float
    alarm: bool
    singles: dict


SINGLES = (*SCORES, MODEL_SCORE, MEMORY_SCORE)  # the layout of _score_step's single scores
_MONITOR = ("ring", "s1", "binv", "scal", "basis", "proj", "counts")  # signals.new_monitor's arrays, in order
_STATE = ("t", "last_close", "level", "index_r2", "ewma", "ar", "r2", "r2_whole", "r2_recent", "states", "state_sq", "logvar",
          *_MONITOR, "hist", "hist_n")


@njit(cache=True, error_model="numpy")
def _score_step(close, variance, novelty, use, t_arr, last_close, level, index_r2, ewma, ar, r2,
                whole, recent, states, state_sq, logvar, ring, s1, binv, scal, basis, proj, counts, hist, hist_n):
    """One bar of every single score (the layout of SINGLES; NaN where it needs more history, or
    where its input is not given: variance / novelty all NaN), each ingredient's (``use``)
    percentile within its own past, and the combined score, their mean. The streaming twin of signals' batch definitions: the
    log returns and the covariance scores (turbulence, absorption ratio) by the batch's own
    compiled steps, so bit for bit; the others by the same formulas with their sums taken as
    running sums instead of the batch's cumulative ones, so equal to rounding (a few ulps)."""
    N = close.shape[0]
    t = t_arr[0]
    singles = np.full(len(SINGLES), np.nan)
    # the equal-weighted index and the log returns: the batch's own step (signals.bar_returns)
    logret = np.zeros(N)
    index_return = bar_returns(close, last_close, logret)  # 0 on the first bar (no last close)
    prev = level[0]
    level[0] = prev * (1.0 + index_return)
    idx_r = np.log(level[0] / prev) if t > 0 else 0.0
    index_r2[t % VOL_LONG] = idx_r * idx_r
    short = 0.0
    for j in range(VOL_WINDOW):
        short += index_r2[(t - j) % VOL_LONG]
    if t >= VOL_WINDOW:  # signals.realised_vol over 21 and 63 days
        singles[2] = np.sqrt(short / VOL_WINDOW * ANNUAL)
    if t >= VOL_LONG:
        singles[3] = np.sqrt(index_r2.sum() / VOL_LONG * ANNUAL)
    if t > 0:  # signals.ewma_vol: the features' EWMA step
        vol = np.empty(1)
        _ewma_row(EWMA_LAMBDA, False, ewma, np.array([idx_r]), vol)
        if t >= EWMA_START:
            singles[4] = vol[0] * np.sqrt(ANNUAL)
    singles[0], ar[t % ANNUAL] = monitor_step(logret, ring, s1, binv, scal, basis, proj, counts)
    if t >= ANNUAL - 1 and np.isfinite(ar).all():  # signals.absorption_shift
        m, m2 = ar.mean(), (ar * ar).mean()
        sd = np.sqrt(max(m2 - m * m, 0.0) * ANNUAL / (ANNUAL - 1))
        short = 0.0
        for j in range(SHORT_AR):
            short += ar[(t - j) % ANNUAL]
        if sd > 0:
            singles[1] = (short / SHORT_AR - m) / sd
    # the squared returns' sums over the last STATE_SHORT and ANNUAL bars, by the rows in and out
    # (recomputed from the ring every ANNUAL bars, so rounding does not accumulate)
    old_short = r2[(t - STATE_SHORT) % ANNUAL].copy() if t >= STATE_SHORT else np.zeros(N)
    old_long = r2[t % ANNUAL].copy()
    r2[t % ANNUAL] = logret * logret
    if t % ANNUAL == ANNUAL - 1:
        whole[:] = 0.0
        recent[:] = 0.0
        for j in range(ANNUAL):  # row by row: contiguous
            whole += r2[j]
        for j in range(STATE_SHORT):
            recent += r2[(t - j) % ANNUAL]
    else:
        whole += r2[t % ANNUAL] - old_long
        recent += r2[t % ANNUAL] - old_short
    if t >= ANNUAL - 1:  # signals.novelty: the volatility states against the memory's
        M = states.shape[0]
        state = np.empty(N)
        for i in range(N):
            state[i] = np.log(max(recent[i] / STATE_SHORT, 1e-12) / max(whole[i] / ANNUAL, 1e-12))
        sq = state @ state
        if t >= ANNUAL - 1 + M:
            dots = states @ state  # one pass over the memory
            best = np.inf
            for j in range(M - RECENT):
                slot = (t - M + j) % M
                best = min(best, state_sq[slot] + sq - 2.0 * dots[slot])
            singles[5] = np.sqrt(max(best, 0.0) / N)
        states[t % M], state_sq[t % M] = state, sq
    logvar[t % (JUMP_LAG + 1)] = np.log(variance)
    if t >= JUMP_LAG:  # signals.forecast_jump
        total, n = 0.0, 0
        for i in range(N):
            change = logvar[t % (JUMP_LAG + 1), i] - logvar[(t - JUMP_LAG) % (JUMP_LAG + 1), i]
            if np.isfinite(change):
                total, n = total + change, n + 1
        if n:
            singles[6] = total / n
    total, n = 0.0, 0
    for i in range(N):
        if np.isfinite(novelty[i]):
            total, n = total + novelty[i], n + 1
    if n:
        singles[7] = total / n
    last_close[:] = close
    t_arr[0] = t + 1
    z, complete = 0.0, True
    for p in range(use.shape[0]):  # signals.expanding_rank, then evaluate.combined_score's mean
        v = singles[use[p]]
        if np.isnan(v):
            complete = False
            continue
        n = hist_n[p]
        i = np.searchsorted(hist[p, :n], v)
        hist[p, i + 1:n + 1] = hist[p, i:n].copy()
        hist[p, i] = v
        hist_n[p] = n + 1
        if n == 0:
            complete = False
        else:
            z += i / n
    return singles, (z / use.shape[0] if complete else np.nan)


class StressScore:
    """A fitted warning model's combined score, bar by bar, over ``n_assets`` assets' closes: the
    streaming twin of warning_scores (the covariance scores bit for bit, by the same compiled steps;
    the others to rounding: running sums instead of cumulative ones), the mean of its ingredients'
    percentiles within their own past and the model's threshold (as calibrated; recalibrate by
    running `metarisk warn` again). One compiled call a bar.

    ``update(close, variance=None, novelty=None)``: variance forecasts (N,) are needed where the
    model combines the forecast jump, a memory learner's novelty (N,) where it combines that;
    RiskEngine(monitor=...) passes both.

    Parameters
    ----------
    model : WarningModel
        The fitted warning model (``WarningModel.load``).
    n_assets : int
        Assets per bar (at least 2), in the order the model was fitted on.
    """

    def __init__(self, model: WarningModel, n_assets: int):
        if not isinstance(model, WarningModel):
            raise TypeError(f"model must be a WarningModel (WarningModel.load(path)), got {type(model).__name__}")
        check_int("n_assets", n_assets, 2, 100_000)
        self.model, self.n_assets = model, int(n_assets)
        N, S = self.n_assets, len(model.ingredients)
        self._use = np.array([SINGLES.index(n) for n in model.ingredients], np.int64)
        monitor = new_monitor(N, model.window, max(1, N // 5), BLOCK)
        self._s = dict(zip(_STATE, (np.zeros(1, np.int64), np.full(N, np.nan), np.ones(1), np.zeros(VOL_LONG),
                                    np.full(1, np.nan), np.full(ANNUAL, np.nan), np.zeros((ANNUAL, N)), np.zeros(N), np.zeros(N),
                                    np.zeros((model.memory, N)),
                                    np.zeros(model.memory), np.full((JUMP_LAG + 1, N), np.nan), *monitor,
                                    np.empty((S, 1024)), np.zeros(S, np.int64))))
        self._no_input = np.full(N, np.nan)

    @classmethod
    def load(cls, path, n_assets: int) -> "StressScore":
        """A score of a saved warning model.

        Parameters
        ----------
        path : str or os.PathLike
            A warning.json, or the `metarisk warn` directory holding one.
        n_assets : int
            Assets per bar.

        Returns
        -------
        StressScore
            A score that has seen no bar.
        """
        return cls(WarningModel.load(path), n_assets)

    @property
    def needs_forecasts(self) -> bool:
        """Whether ``update`` needs the bar's variance forecasts."""
        return self.model.needs_forecasts

    def check_fits(self, assets, model_sha256: str | None = None) -> None:
        """Refuse other assets, or another variance model, than the warning model was fitted on.

        RiskEngine calls it with its own.

        Parameters
        ----------
        assets : sequence of str
            The assets to be scored.
        model_sha256 : str, optional
            The variance model's weights checksum (its model.json's), if its scores are combined.
        """
        self.model.check_fits(assets, model_sha256)

    @property
    def needs_novelty(self) -> bool:
        """Whether ``update`` needs a memory learner's novelty."""
        return self.model.needs_novelty

    def _checked(self, name, x, positive=False):
        a = np.asarray(x)
        if a.dtype.kind not in "fiu" or a.shape != (self.n_assets,):
            raise ValueError(f"{name} must be {self.n_assets} real numbers, got {a.dtype} of shape {a.shape}")
        a = a.astype(np.float64)
        bad = np.isinf(a) | ((a <= 0) if positive else False)
        if bad.any():
            raise ValueError(f"{name} holds {a[bad][0]} at asset column {int(np.argmax(bad))} "
                             f"({'a positive number' if positive else 'a finite number'} or NaN expected)")
        return a

    def update(self, close, variance=None, novelty=None) -> StressReading:
        """Score one bar; the bar is checked before the state changes.

        Parameters
        ----------
        close : array_like
            (n_assets,) closes, positive; NaN: no price.
        variance : array_like, optional
            (n_assets,) the bar's variance forecasts (needed where the model combines the forecast jump).
        novelty : array_like, optional
            (n_assets,) a memory learner's novelty (needed where the model combines it).

        Returns
        -------
        StressReading
            The bar's combined score, alarm and single scores.
        """
        close = self._checked("close", close, positive=True)
        if self.needs_forecasts and variance is None:
            raise ValueError("this warning model combines the forecast jump: pass the bar's variance forecasts")
        if self.needs_novelty and novelty is None:
            raise ValueError("this warning model combines the memory learner's novelty: pass the bar's novelty")
        variance = self._no_input if variance is None else self._checked("variance", variance, positive=True)
        novelty = self._no_input if novelty is None else self._checked("novelty", novelty)
        s = self._s
        if s["hist_n"].max(initial=0) >= s["hist"].shape[1]:  # room for this bar's values: double it
            s["hist"] = np.concatenate([s["hist"], np.empty_like(s["hist"])], axis=1)
        singles, score = _score_step(close, variance, novelty, self._use, *(s[k] for k in _STATE))
        return StressReading(float(score), bool(score > self.model.threshold),
                             {name: float(v) for name, v in zip(SINGLES, singles)
                              if name in SCORES or name in self.model.ingredients})

    # state, for RiskEngine's save / restore / copy
    def state_dict(self) -> dict:
        """The score's state as arrays.

        Returns
        -------
        dict of str to numpy.ndarray
            Copies: what an engine's saved state holds for its monitor.
        """
        return {k: v.copy() for k, v in self._s.items()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state taken by ``state_dict``; every check runs before anything changes.

        Parameters
        ----------
        state : dict of str to numpy.ndarray
            From a score of the same model and assets.
        """
        mine = StressScore(self.model, self.n_assets)._s
        for k, v in mine.items():
            got = state.get(k)
            same = got is not None and np.asarray(got).dtype == v.dtype and (
                np.shape(got)[0] == v.shape[0] if k == "hist" else np.shape(got) == v.shape)
            if not same:
                raise ValueError(f"the saved stress score state's {k} is missing or has another shape or dtype "
                                 f"(expected {v.shape} {v.dtype}): restore it into a StressScore of the same "
                                 "model and assets")
        self._s = {k: np.array(state[k]) for k in _STATE}

    def copy(self) -> "StressScore":
        """An independent score in the same state.

        Returns
        -------
        StressScore
            The copy.
        """
        other = StressScore(self.model, self.n_assets)
        other.load_state_dict(self.state_dict())
        return other


__all__ = ["SCORES", "StressMonitor", "StressReading", "StressScore", "WarningModel"]
