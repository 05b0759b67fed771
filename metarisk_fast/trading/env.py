"""Trading tasks for meta-reinforcement learning, vectorised over episodes.

A task is an (asset, stretch of dates) of daily bars. At the close of bar t the policy sees an
observation built from bars up to t and sets a target position p_t in [-L, L]; it earns
p_t r_{t+1} - cost |p_t - p_{t-1}| - risk_penalty p_t^2 s_t, where r_{t+1} is the next log
return, s_t the RiskMetrics variance at t and p_{-1} = 0 (every episode starts flat; the last
position is not closed out). The market does not react to the policy, so every observation of
an episode exists before the policy acts: a policy acts on all (episode, bar) pairs in one batched
call, and the rewards of a batch of episodes are one compiled pass (``episode_rewards``).

Observation of bar t (float32, each column from bars <= t only):
- the last ``lookback`` log returns r_t, r_{t-1}, ... divided by the RiskMetrics volatility at t;
- the log return over the last 21 and 63 bars divided by that volatility times sqrt(bars) (the
  trend, or the distance a mean-reverting price has to come back);
- log(vol^2 / s_t) of close-to-close volatility over 5, 21 and 63 bars and of the EWMA at 0.97
  and 0.99 (the volatility regime relative to today's);
- log(forecast / s_t) of a given variance forecast at t (the risk engine's), when one is given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .._checks import check_int, check_number
from ..data import DataError, PricePanel
from ..features import FeatureSet

OBS_FEATURES = FeatureSet(cc_windows=(5, 21, 63), ewma_lambdas=(0.94, 0.97, 0.99), range_features=())
MOMENTUM_BARS = (21, 63)
OBS_CLIP = 8.0  # normalised observations live in [-8, 8]
VAR_FLOOR = 1e-12


@njit(cache=True, parallel=True, nogil=True)
def _rewards(positions, next_returns, variance, cost, risk_penalty, out):
    for b in prange(positions.shape[0]):
        prev = 0.0
        for t in range(positions.shape[1]):
            p = positions[b, t]
            out[b, t] = p * next_returns[b, t] - cost * abs(p - prev) - risk_penalty * p * p * variance[b, t]
            prev = p


def episode_rewards(positions, next_returns, variance, *, cost: float, risk_penalty: float = 0.0) -> np.ndarray:
    """Rewards (B, T) of positions (B, T) held from each bar's close to the next, float64."""
    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.dtype.kind != "f":
        raise ValueError(f"positions must be a 2-D float array (episodes, bars), got {positions.dtype} "
                         f"of shape {positions.shape}")
    if positions.shape != np.shape(next_returns) or positions.shape != np.shape(variance):
        raise ValueError(f"positions {positions.shape}, next_returns {np.shape(next_returns)} and variance "
                         f"{np.shape(variance)} must have one shape")
    if not np.isfinite(positions).all():
        b, t = np.argwhere(~np.isfinite(positions))[0]
        raise ValueError(f"positions hold a NaN or infinite value (episode {b}, bar {t})")
    if not (np.isfinite(cost) and cost >= 0 and np.isfinite(risk_penalty) and risk_penalty >= 0):
        raise ValueError(f"cost and risk_penalty must be finite and >= 0, got {cost}, {risk_penalty}")
    out = np.empty(positions.shape)
    _rewards(np.ascontiguousarray(positions, np.float64), np.ascontiguousarray(next_returns, np.float64),
             np.ascontiguousarray(variance, np.float64), float(cost), float(risk_penalty), out)
    return out


@dataclass(frozen=True)
class TradingSpec:
    length: int = 63  # bars per episode
    lookback: int = 5  # recent returns in the observation
    max_position: float = 1.0  # L: positions live in [-L, L]
    cost: float = 5e-4  # per unit of turnover (5 bp)
    risk_penalty: float = 0.0

    def __post_init__(self):
        for name, lo in (("length", 2), ("lookback", 1)):
            check_int(name, getattr(self, name), lo)
        for name in ("max_position", "cost", "risk_penalty"):
            check_number(name, getattr(self, name), allow_zero=True)
        if self.max_position == 0:
            raise ValueError("max_position must be > 0")


@dataclass
class Episodes:
    """B episodes of ``length`` bars: what a policy sees and what its positions earn."""

    obs: np.ndarray  # (B, T, D) float32
    next_returns: np.ndarray  # (B, T) r_{t+1}
    variance: np.ndarray  # (B, T) RiskMetrics variance at t
    asset: np.ndarray  # (B,) panel column
    rows: np.ndarray  # (B, T) panel rows
    spec: TradingSpec

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def rewards(self, positions) -> np.ndarray:
        """Rewards (B, T) of positions (B, T), clipped to [-L, L] first."""
        L = self.spec.max_position
        return episode_rewards(np.clip(np.asarray(positions, np.float64), -L, L), self.next_returns, self.variance,
                               cost=self.spec.cost, risk_penalty=self.spec.risk_penalty)


class TradingTasks:
    """Observations, next returns and variances of a panel, computed once; episodes are cut
    from them by vectorised gathers. ``forecast``: an optional (T, N) variance forecast made at
    each bar's close (NaN where there is none: those bars cannot start or fill an episode)."""

    def __init__(self, panel: PricePanel, spec: TradingSpec = TradingSpec(), forecast=None):
        self.panel, self.spec = panel, spec
        close = panel.close
        feats = OBS_FEATURES.compute_array(close)
        names = OBS_FEATURES.names
        s = np.maximum(feats[names.index("ewma_vol_0.94")] ** 2, VAR_FLOOR)
        r = feats[0]
        k = spec.lookback
        cols = []
        for lag in range(k):  # r_{t-lag} / sigma_t: known at t
            lagged = np.full(r.shape, np.nan)
            lagged[lag:] = r[: r.shape[0] - lag]
            cols.append(lagged / np.sqrt(s))
        log_close = np.log(close)
        for w in MOMENTUM_BARS:
            move = np.full(r.shape, np.nan)
            move[w:] = log_close[w:] - log_close[:-w]
            cols.append(move / np.sqrt(s * w))
        for n in ("cc_vol_5", "cc_vol_21", "cc_vol_63", "ewma_vol_0.97", "ewma_vol_0.99"):
            cols.append(np.log(np.maximum(feats[names.index(n)] ** 2, VAR_FLOOR) / s))
        if forecast is not None:
            forecast = np.asarray(forecast, np.float64)
            if forecast.shape != close.shape:
                raise ValueError(f"forecast has shape {forecast.shape}, the panel {close.shape}")
            if (forecast[np.isfinite(forecast)] <= 0).any():
                raise ValueError("forecast variances must be > 0 (NaN: no forecast)")
            cols.append(np.log(forecast / s))
        self.obs = np.clip(np.stack(cols, axis=-1), -OBS_CLIP, OBS_CLIP).astype(np.float32)  # NaN stays NaN
        self.variance = s
        self.next_returns = np.full(close.shape, np.nan)
        self.next_returns[:-1] = r[1:]  # the features pass's log returns
        self.ok = np.isfinite(self.obs).all(axis=-1) & np.isfinite(self.next_returns)

    @property
    def n_obs(self) -> int:
        return int(self.obs.shape[-1])

    def episodes(self, assets=None, start=None, end=None, n: int = 256, seed: int = 0) -> Episodes:
        """``n`` episodes drawn at random (seeded) among the assets' stretches of ``length``
        usable bars whose next returns are realised by ``end``."""
        check_int("n", n, 1, note=" (episodes to draw)")
        T = self.spec.length
        panel = self.panel
        cols = np.arange(panel.n_assets) if assets is None else panel.asset_index(list(assets))
        lo = 0 if start is None else panel.row_of(start)
        hi = panel.n_days if end is None else panel.row_of(end, "right")  # rows < hi
        ok = self.ok[:, cols]
        csum = np.concatenate([np.zeros((1, len(cols)), np.int64), np.cumsum(ok, axis=0)])
        first = np.arange(panel.n_days - T + 1)
        full = (csum[first + T] - csum[first]) == T
        full &= ((first >= lo) & (first + T < hi))[:, None]  # the last bar's next return realised by end
        s_idx, c_idx = np.nonzero(full)
        if len(s_idx) == 0:
            raise DataError(f"{panel.source}: no stretch of {T} usable bars between "
                            f"{start or panel.dates[0]} and {end or panel.dates[-1]} for the chosen assets")
        pick = np.random.default_rng(seed).choice(len(s_idx), size=n, replace=len(s_idx) < n)
        asset = cols[c_idx[pick]]
        rows = s_idx[pick][:, None] + np.arange(T)
        a = asset[:, None]
        return Episodes(obs=self.obs[rows, a], next_returns=self.next_returns[rows, a],
                        variance=self.variance[rows, a], asset=asset, rows=rows, spec=self.spec)


class TaskPool:
    """Tasks from one or more TradingTasks: a task is a block of ``block`` usable bars of one
    asset (an (asset, regime) pair: a stretch of one asset's dates, or one synthetic regime's
    asset). Each source is cut to its dates [start, end] (None: all) and assets (None: all);
    blocks do not overlap. The sources' arrays are stacked side by side once, so the episodes of
    many tasks are one vectorised gather.

    Within a task, bars [0, block // 2) are its adaptation period and [block // 2, block) its
    evaluation period: ``episodes(tasks, part="adapt")`` draws episodes whose next returns are
    all realised before the evaluation period starts."""

    def __init__(self, sources, block: int = 252):
        self.block = check_int("block", block, 8, note=" (bars per task)")
        obs, nxt, var, first, col, names = [], [], [], [], [], []
        T = max(src[0].obs.shape[0] for src in sources)
        offset = 0
        for tasks, assets, start, end in sources:
            panel = tasks.panel
            cols = np.arange(panel.n_assets) if assets is None else panel.asset_index(list(assets))
            lo = 0 if start is None else panel.row_of(start)
            hi = panel.n_days if end is None else panel.row_of(end, "right")
            pad = ((0, T - tasks.obs.shape[0]),) + ((0, 0),) * (tasks.obs.ndim - 1)
            obs.append(np.pad(tasks.obs[:, cols], pad, constant_values=np.nan))
            nxt.append(np.pad(tasks.next_returns[:, cols], pad[:2], constant_values=np.nan))
            var.append(np.pad(tasks.variance[:, cols], pad[:2], constant_values=np.nan))
            ok = tasks.ok[:, cols]
            csum = np.concatenate([np.zeros((1, len(cols)), np.int64), np.cumsum(ok, axis=0)])
            for j in range(len(cols)):  # a loop over assets when the pool is built, not on a hot path
                usable = np.flatnonzero(ok[lo:hi, j])
                if len(usable) == 0:
                    continue
                # blocks from the asset's first usable bar; the last next return realised by end
                starts = np.arange(lo + usable[0], hi - self.block, self.block)
                good = starts[(csum[starts + self.block, j] - csum[starts, j]) == self.block]
                first.append(good)
                col.append(np.full(len(good), offset + j))
            names += [f"{panel.source}:{panel.assets[c]}" for c in cols]
            offset += len(cols)
        self.obs, self.next_returns, self.variance = np.concatenate(obs, 1), np.concatenate(nxt, 1), np.concatenate(var, 1)
        self.first, self.column = np.concatenate(first), np.concatenate(col)
        self.names = names
        self.spec = sources[0][0].spec
        if len(self.first) == 0:
            raise DataError(f"no block of {self.block} usable bars in the given sources and dates")

    def __len__(self) -> int:
        return int(len(self.first))

    @property
    def n_obs(self) -> int:
        return int(self.obs.shape[-1])

    def task_names(self, tasks) -> list[str]:
        """Names 'ASSET@first-row' of the given task indices."""
        return [f"{self.names[self.column[i]]}@{int(self.first[i])}" for i in np.asarray(tasks)]

    def episodes(self, tasks, n: int, length: int, rng: np.random.Generator, part: str = "adapt") -> Episodes:
        """``n`` episodes of ``length`` bars in each task's ``part`` ("adapt": the first half,
        their next returns realised before the second; "evaluate": the second half), drawn at
        random; arrays (B, n, length, ...) flattened to (B * n, length, ...)."""
        tasks = np.asarray(tasks, np.int64)
        half = self.block // 2
        if part not in ("adapt", "evaluate") or not 2 <= length <= half - 1:
            raise ValueError(f"part must be 'adapt' or 'evaluate' and length in [2, {half - 1}], got {part!r}, {length}")
        lo = self.first[tasks] + (0 if part == "adapt" else half)
        offsets = rng.integers(0, half - length, (len(tasks), n))  # the episode's last next return inside the part
        rows = (lo[:, None, None] + offsets[..., None] + np.arange(length)).reshape(-1, length)
        a = np.repeat(self.column[tasks], n)[:, None]
        return Episodes(obs=self.obs[rows, a], next_returns=self.next_returns[rows, a], variance=self.variance[rows, a],
                        asset=a[:, 0], rows=rows, spec=self.spec)

    def evaluation(self, tasks) -> Episodes:
        """Each task's whole evaluation period as one episode (B, block - block // 2 - 1)."""
        tasks = np.asarray(tasks, np.int64)
        half = self.block // 2
        rows = self.first[tasks][:, None] + half + np.arange(self.block - half - 1)
        a = self.column[tasks][:, None]
        return Episodes(obs=self.obs[rows, a], next_returns=self.next_returns[rows, a], variance=self.variance[rows, a],
                        asset=a[:, 0], rows=rows, spec=self.spec)
