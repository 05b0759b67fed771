"""Leakage-free meta-learning tasks for variance forecasting.

Target: the realised variance over the next h days, RV_t = mean(r_{t+1}^2 .. r_{t+h}^2) (or a
range-based proxy where OHLC exists). An episode is (asset, time window): K consecutive support
days, then Q query days starting at q0, where every support target is realised strictly before
q0 (support rows t <= q0 - h - 1). Features are normalised per task by the support's mean
realised variance (support rows only) and targets are taken relative to each row's RiskMetrics
forecast (known at that row), so nothing a learner adapts on depends on a price at or after q0.
The forecaster outputs the log of the variance relative to that anchor.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from numba import njit

from .._checks import check_int
from .._intrinsics import _ln
from ..data import MAX_GAP_DAYS, DataError, PricePanel, calendar_breaks
from .. import features as F
from ..features import FeatureSet
from ._normalise import gather_rows, gather_tasks
from .target import TARGET
from .young import PRIOR_MIN_RETURNS, young_panel

# From daily closes alone: close-to-close vols (HAR-style weekly / monthly / quarterly), EWMAs of
# growing memory (the anchor, then the slower levels GARCH mean-reverts to) and downside EWMAs
# (the leverage effect GJR-GARCH models); bench/FORECAST_QUALITY.md has the ablation.
CLOSE_FEATURES = FeatureSet(cc_windows=(5, 21, 63), ewma_lambdas=(0.94, 0.97, 0.99), range_features=(),
                            downside_lambdas=(0.94, 0.97))
VAR_FLOOR = 1e-12  # log-variance floor for constant prices
ANCHOR_LAMBDA = 0.94  # RiskMetrics
ANCHOR_FEATURE = f"ewma_vol_{ANCHOR_LAMBDA:g}"
MAX_BRIDGED_GAP = MAX_GAP_DAYS  # up to this many missing closes in a row carry the last price forward (bridge_gaps)
SCALES = ("support", "row")  # TaskSpec.scale: how a row's inputs are normalised (tasks/_normalise.py)
FEATURE_CLIP = 8.0  # normalised features live in [-8, 8] (e^8: a 3000x variance ratio)


def task_pick(seed: int, task_ids: np.ndarray, n_valid: int) -> np.ndarray:
    """Index in [0, n_valid) of each task: splitmix64 of (seed, task id), a counter-based draw, so
    that task i is the same whichever process draws it and whatever else it draws."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ task_ids.astype(np.uint64)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_valid)).astype(np.int64)


def bridge_gaps(close: np.ndarray, max_gap: int = MAX_BRIDGED_GAP, breaks: np.ndarray | None = None) -> np.ndarray:
    """Close prices with each missing day carried forward from the last observed close for at most
    ``max_gap`` days in a row (a holiday or a one-day halt: a zero return on the missing day, the
    move over the gap on the day trading resumes); days before listing and the rest of a longer gap
    stay NaN, so features restart after it. ``breaks`` (T,): rows after a calendar gap
    (data.calendar_breaks); such a row is NaN for every asset and nothing is carried across it, so
    every asset restarts there. Each row uses rows at or before it only."""
    check_int("max_gap", max_gap, 0)
    close = np.asarray(close, np.float64)
    seen = ~np.isnan(close)
    rows = np.arange(close.shape[0])[:, None]
    last = np.maximum.accumulate(np.where(seen, rows, -1), axis=0)  # last observed row <= t
    fill = ~seen & (last >= 0) & (rows - last <= max_gap)
    if breaks is not None and breaks.any():
        last_break = np.maximum.accumulate(np.where(breaks, np.arange(len(breaks)), -1))[:, None]
        fill &= last >= last_break  # nothing carried from before the latest break
    out = close.copy()
    out[fill] = close[last[fill], np.nonzero(fill)[1]]
    if breaks is not None:
        out[breaks] = np.nan
    return out


def forward_mean(rows) -> np.ndarray:
    """The mean of h stacked arrays, summed in order (rows[0] + rows[1] + ...) / h: the batch
    targets and the streaming engine add the same terms in the same order, so they agree bit for
    bit."""
    acc = np.array(rows[0], dtype=np.float64, copy=True)
    for r in rows[1:]:
        acc += r
    return acc / len(rows)


def realized_variance(close: np.ndarray, horizon: int) -> np.ndarray:
    """RV_t = mean of squared daily log returns over t+1..t+h, (T, N); NaN where incomplete."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    T = close.shape[0]
    r2 = F.log_returns(close) ** 2
    out = np.full(close.shape, np.nan)
    if T > horizon:
        out[: T - horizon] = forward_mean([r2[k: T - horizon + k] for k in range(1, horizon + 1)])
    return out


def network_inputs(feats: np.ndarray, youth: np.ndarray | None = None) -> np.ndarray:
    """Network inputs (..., D) from the feature set's outputs (F, ...): the log return, then
    log(vol^2) of each volatility (floored), then (if given) the youth input (tasks/young.py),
    for a panel or for one bar; one compiled pass (network_rows), which a streaming bar runs too."""
    F, M = feats.shape[0], int(np.prod(feats.shape[1:]))
    x = np.empty((*feats.shape[1:], F + (youth is not None)))
    network_rows(np.ascontiguousarray(feats).reshape(F, M),
                 np.empty(0) if youth is None else np.ascontiguousarray(youth, np.float64).reshape(M),
                 x.reshape(M, x.shape[-1]), VAR_FLOOR)
    return x


@njit(cache=True, nogil=True, inline="always")
def _floored(v, floor):
    """max(v, floor), NaN kept (as np.maximum)."""
    return v if v > floor or v != v else floor


NETWORK_BLOCK = 256  # rows whose logarithms are taken side by side


@njit(cache=True, nogil=True)
def network_rows(feats, youth, out, floor):
    """Row m of out (M, D): feats[0, m], then log(max(feats[f, m]^2, floor)) for each volatility f
    (the vectorising log of _intrinsics, under 1 ulp), then youth[m] if youth holds M values
    (empty: no youth input)."""
    _network_blocks(feats, youth, out, floor, np.empty((feats.shape[0], NETWORK_BLOCK)))


@njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
def _network_blocks(feats, youth, out, floor, logs):
    """network_rows, NETWORK_BLOCK rows at a time: each volatility's logarithms into a row of
    ``logs`` (F, NETWORK_BLOCK) over contiguous inputs, so that they run in vector registers, then
    the rows written out."""
    F, M = feats.shape
    for lo in range(0, M, NETWORK_BLOCK):
        nb = min(NETWORK_BLOCK, M - lo)
        for f in range(1, F):
            src, dst = feats[f, lo:lo + nb], logs[f, :nb]  # one-dimensional views: loops with a unit stride
            for l in range(nb):
                v = src[l]
                dst[l] = _ln(_floored(v * v, floor))
        for l in range(nb):
            m = lo + l
            out[m, 0] = feats[0, m]
            for f in range(1, F):
                out[m, f] = logs[f, l]
            if youth.shape[0]:
                out[m, F] = youth[m]


def young_inputs(spec: TaskSpec, feats: np.ndarray, bridged_close: np.ndarray):
    """Fill a panel's undefined close-to-close volatilities of young stretches and set their
    anchor EWMA in place (feats (F, T, N), the feature set's outputs on ``bridged_close``); return
    the youth input and each row's age (the prices its stretch has; 0: none), both (T, N)
    (tasks/young.py; the streaming engine runs the same row step)."""
    youth, prices = np.empty(bridged_close.shape), np.empty(bridged_close.shape, np.int64)
    young_panel(np.ascontiguousarray(feats[0]), np.isnan(bridged_close), *young_args(spec), feats, youth, prices)
    return youth, prices


def young_args(spec: TaskSpec) -> tuple:
    """The spec's arguments of tasks.young_row: (cc slots, longest cc window, the anchor's EWMA
    slot (-1: none), its lambda, the young anchor's prior variance)."""
    features = spec.features
    slots = np.arange(1, 1 + len(features.cc_windows), dtype=np.int64)
    anchor = features.names.index(ANCHOR_FEATURE) if ANCHOR_FEATURE in features.names else -1
    return slots, max(features.cc_windows, default=0), anchor, ANCHOR_LAMBDA, float(spec.young_prior)


def forecastable(x: np.ndarray, anchor: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Rows that get a forecast: finite inputs, an anchor above VAR_FLOOR, an observed close.
    x (..., D), anchor and close (...); one compiled pass (a streaming bar calls it too)."""
    out = np.empty(np.shape(anchor), bool)
    forecastable_rows(np.ascontiguousarray(x).reshape(-1, x.shape[-1]), np.ravel(anchor), np.ravel(close),
                       out.reshape(-1), VAR_FLOOR)
    return out


@njit(cache=True, nogil=True, _nrt=False)
def forecastable_rows(x, anchor, close, out, floor):
    """out[i]: row i gets a forecast (finite x[i], an anchor above ``floor``, an observed close)."""
    for i in range(x.shape[0]):
        ok = np.isfinite(anchor[i]) and anchor[i] > floor and not np.isnan(close[i])
        for d in range(x.shape[1]):
            ok = ok and np.isfinite(x[i, d])
        out[i] = ok


@njit(cache=True, nogil=True, inline="always")
def anchor_of(ewma_vol, floor):
    """One row's anchor: the RiskMetrics variance at t, floored (a streaming bar computes it here)."""
    return _floored(ewma_vol * ewma_vol, floor)


def anchor_variance(ewma_vol: np.ndarray) -> np.ndarray:
    """The anchor of each row: the RiskMetrics variance at t, floored (anchor_of, row by row)."""
    v = np.ascontiguousarray(ewma_vol, np.float64)
    out = np.empty(v.shape)
    _anchor_rows(v.reshape(-1), out.reshape(-1), VAR_FLOOR)
    return out


@njit(cache=True, nogil=True)
def _anchor_rows(v, out, floor):
    for i in range(v.shape[0]):
        out[i] = anchor_of(v[i], floor)


def normalise_task(x: np.ndarray, y: np.ndarray, s_idx: np.ndarray, xq_src: np.ndarray, q_idx: np.ndarray,
                   fallback: np.ndarray | None = None, n_scaled: int | None = None, row_scale: int = -1):
    """Learner inputs of B tasks: support rows x[s_idx] (x (R, D) float64, s_idx (B, K)) and query
    rows xq_src[q_idx] (q_idx (B, Q)), normalised by each task's support scale c = mean of its
    support rows' realised variances y[s_idx] (tasks/_normalise.py); with K = 0, c = ``fallback``
    (B,), the anchor variance of each task's first query row. Columns from ``n_scaled`` on
    (TaskSpec.n_scaled; default: none) are copied unscaled. ``row_scale`` >= 0 (TaskSpec.row_scale):
    each row is normalised by its own log-variance in that column instead. Returns (xs, xq, c): float32
    (B, K, D), (B, Q, D) and float64 (B,)."""
    s_idx, q_idx = np.ascontiguousarray(s_idx, np.int64), np.ascontiguousarray(q_idx, np.int64)
    B, D = s_idx.shape[0], x.shape[1]
    if fallback is None:
        if s_idx.shape[1] == 0:
            raise ValueError("a task with no support row needs a fallback scale (its query row's anchor)")
        fallback = np.empty(B)
    xs, xq = np.empty((B, s_idx.shape[1], D), np.float32), np.empty((B, q_idx.shape[1], D), np.float32)
    c = np.empty(B)
    gather_tasks(x, y, s_idx, xq_src, q_idx, np.ascontiguousarray(fallback, np.float64), VAR_FLOOR, FEATURE_CLIP,
                 D if n_scaled is None else int(n_scaled), int(row_scale), xs, xq, c)
    return xs, xq, c


def normalise_query(xq_src: np.ndarray, q_idx: np.ndarray, c: np.ndarray, n_scaled: int | None = None,
                    row_scale: int = -1) -> np.ndarray:
    """Query rows xq_src[q_idx] (q_idx (B, Q)) normalised by given support scales c (B,) (or each by
    its own, ``row_scale`` >= 0), float32."""
    q_idx = np.ascontiguousarray(q_idx, np.int64)
    out = np.empty((q_idx.shape[0], q_idx.shape[1], xq_src.shape[1]), np.float32)
    gather_rows(xq_src, q_idx, np.ascontiguousarray(c, np.float64), FEATURE_CLIP,
                xq_src.shape[1] if n_scaled is None else int(n_scaled), int(row_scale), out)
    return out


def range_variance(panel: PricePanel, horizon: int) -> np.ndarray:
    """Garman-Klass daily variance averaged over t+1..t+h (a lower-noise proxy with OHLC)."""
    if not panel.has_ohlc:
        raise DataError(f"{panel.source}: the range-based proxy needs open, high and low prices")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    gk = F.garman_klass_vol(panel.open, panel.high, panel.low, panel.close, horizon)  # mean over t-h+1..t
    out = np.full(gk.shape, np.nan)
    out[: max(gk.shape[0] - horizon, 0)] = gk[horizon:] ** 2  # row t: the mean over t+1..t+h
    return out


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its rows' inputs and targets, its support and query sizes.

    Parameters
    ----------
    horizon : int
        Days ahead: a row's target is the mean daily variance of log returns over the next
        ``horizon`` days.
    support : int
        Rows of a meta-training task's support (K).
    query : int
        Rows of a meta-training task's query (Q).
    features : FeatureSet
        The rolling-volatility inputs.
    proxy : {'squared_returns', 'garman_klass'}
        The realised-variance target: squared log returns, or the Garman-Klass range where OHLC exists.
    age_input : bool
        The youth inputs (an asset's age; tasks/young.py); False: a model saved before they existed.
    scale : {'support', 'row'}
        Inputs normalised by the task's support ('support') or each row by its own anchor ('row').
    young_prior : float
        The variance a young asset's anchor starts from before its own returns weigh in
        (tasks/young.py; training sets it, ``EpisodeBuilder.with_young_prior``); 0: none, the stretch's
        own returns alone (a model saved before it existed).
    """

    horizon: int = 1
    support: int = 60
    query: int = 20
    features: FeatureSet = CLOSE_FEATURES
    proxy: str = "squared_returns"  # or "garman_klass" where OHLC exists
    age_input: bool = True  # the youth input (tasks/young.py); False: a model saved before it existed
    scale: str = "support"  # inputs normalised by the task's support ("support") or each row by its own anchor ("row")
    young_prior: float = 0.0  # a young anchor's starting variance (tasks/young.py); training sets it

    def __post_init__(self):
        for name in ("horizon", "support", "query"):
            check_int(name, getattr(self, name), 1)
        if self.proxy not in ("squared_returns", "garman_klass"):
            raise ValueError(f"proxy must be 'squared_returns' or 'garman_klass', got {self.proxy!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if not (math.isfinite(self.young_prior) and self.young_prior >= 0):
            raise ValueError(f"young_prior must be a finite variance >= 0, got {self.young_prior!r}")
        if self.scale == "row" and ANCHOR_FEATURE not in self.features.names:
            raise ValueError(f"scale='row' normalises each row by its anchor; the feature set has no {ANCHOR_FEATURE}")

    @property
    def feature_names(self) -> list[str]:
        """Names of the D input columns: the log return, then log(vol^2) of each volatility, then
        the youth input."""
        return (["log_return"] + [f"log_var({n})" for n in self.features.names[1:]]
                + ["youth"] * self.age_input)

    @property
    def n_features(self) -> int:
        return len(self.features.names) + self.age_input

    @property
    def row_scale(self) -> int:
        """The input column whose log-variance scales its own row (scale="row": the anchor's); -1:
        the task's support scale."""
        return self.features.names.index(ANCHOR_FEATURE) if self.scale == "row" else -1

    @property
    def n_scaled(self) -> int:
        """Input columns that the support scale normalises (all but the youth input)."""
        return len(self.features.names)


@dataclass
class TaskBatch:
    """B episodes as arrays ready for the learners, with the (asset, rows) of every episode."""

    xs: np.ndarray  # (B, K, D) float32, normalised by support statistics (see normalise_task)
    ys: np.ndarray  # (B, K, 1) sqrt(RV / anchor) per row
    xq: np.ndarray  # (B, Q, D)
    yq: np.ndarray  # (B, Q, 1), NaN where the target is not (yet) realised
    anchor: np.ndarray  # (B, Q) anchor variance of each query row: forecast = anchor * exp(output)
    asset: np.ndarray  # (B,) column in the panel
    support_rows: np.ndarray  # (B, K) row indices
    query_rows: np.ndarray  # (B, Q)
    panel: PricePanel = field(repr=False)

    def __len__(self) -> int:
        return int(self.xs.shape[0])

    def tensors(self, dtype=torch.float32):
        """(xs, ys, xq, yq) as torch tensors of ``dtype``."""
        return tuple(torch.from_numpy(a).to(dtype) for a in (self.xs, self.ys, self.xq, self.yq))

    @property
    def query_dates(self) -> np.ndarray:
        return self.panel.dates[self.query_rows]

    @property
    def support_dates(self) -> np.ndarray:
        return self.panel.dates[self.support_rows]

    @property
    def asset_names(self) -> np.ndarray:
        return np.asarray(self.panel.assets, dtype=object)[self.asset]



class EpisodeBuilder:
    """Computes features and targets of a panel once; cuts episodes and forecast tasks from them.

    Every cut is a vectorised gather (no loop over tasks).

    Parameters
    ----------
    panel : PricePanel
        The prices (OHLC if the spec's features need them).
    spec : TaskSpec
        What a task is.
    """

    def __init__(self, panel: PricePanel, spec: TaskSpec = TaskSpec()):
        if spec.features.needs_ohlc and not panel.has_ohlc:
            raise DataError(f"{panel.source}: the feature set needs OHLC prices; this panel has close only")
        self.panel, self.spec = panel, spec
        # features run on the gap-bridged close; targets on the observed one, so a target never
        # includes a bridged (made-up) return
        breaks = calendar_breaks(panel.dates)
        self.close = bridge_gaps(panel.close, breaks=breaks)
        if panel.has_ohlc:
            feats = spec.features.compute_array(self.close, *(bridge_gaps(a, breaks=breaks)
                                                              for a in (panel.open, panel.high, panel.low)))
        else:
            feats = spec.features.compute_array(self.close)
        # the EWMA baseline is RiskMetrics as the features compute it, before the young anchor replaces it
        ewma_vol = (feats[spec.features.names.index(ANCHOR_FEATURE)].copy() if ANCHOR_FEATURE in spec.features.names
                    else F.ewma_vol(self.close, ANCHOR_LAMBDA))
        self.ewma_variance = ewma_vol ** 2
        youth, self.age = young_inputs(spec, feats, self.close)  # age: prices since listing or restart
        self.x = x = network_inputs(feats, youth if spec.age_input else None)
        self.returns = feats[0]  # log returns of the bridged close (one owner: the features pass)
        self.y = (realized_variance(panel.close, spec.horizon) if spec.proxy == "squared_returns"
                  else range_variance(panel, spec.horizon))
        anchor_vol = (feats[spec.features.names.index(ANCHOR_FEATURE)] if ANCHOR_FEATURE in spec.features.names
                      else ewma_vol)
        self.anchor = anchor_variance(anchor_vol)  # the anchor forecast of each row
        # a forecast is made on a day with an observed close, finite features and an anchor above
        # the floor (a stretch whose every return is zero has no scale to forecast from)
        self.x_ok = forecastable(x, self.anchor, panel.close)
        self.y_ok = np.isfinite(self.y)
        self._index_usable_rows()
        self._windows_cache: dict[int, np.ndarray] = {}

    def _index_usable_rows(self) -> None:
        """Counts for the support of a forecast: the last usable rows (finite features, realised
        target) of the asset's current stretch, skipping the few rows a bridged gap makes unusable;
        a stretch ends where the bridged close is NaN (before listing, inside a long gap)."""
        usable = self.x_ok & self.y_ok
        T, N = usable.shape
        self._usable_count = np.cumsum(usable, axis=0)  # usable rows <= t
        broken = np.isnan(self.close)
        idx = np.arange(T)[:, None]
        last_break = np.maximum.accumulate(np.where(broken, idx, -1), axis=0)
        before = np.take_along_axis(self._usable_count, np.maximum(last_break, 0), axis=0)
        self._stretch_start_count = np.where(last_break >= 0, before, 0)  # usable rows before the stretch
        self._usable_pos = np.flatnonzero(usable.T.ravel())  # asset-major flat positions j * T + t
        self._col_offset = np.concatenate([[0], np.cumsum(usable.sum(axis=0))[:-1]])

    def ewma(self, lam: float) -> np.ndarray:
        """The RiskMetrics variance s_t = lam s_{t-1} + (1 - lam) r_t^2 of the gap-bridged close.

        Parameters
        ----------
        lam : float
            The decay in (0, 1).

        Returns
        -------
        numpy.ndarray
            (T, N) float64 daily variances (squared log-return units).
        """
        return self.ewma_variance if lam == ANCHOR_LAMBDA else F.ewma_vol(self.close, lam) ** 2

    # ------------------------------------------------------------------ index helpers
    def _windows_ok(self, length: int) -> np.ndarray:
        """_window_ok of the usable rows, kept per length: the builder's arrays never change, and
        training asks for the same support and query lengths every step."""
        if length not in self._windows_cache:
            self._windows_cache[length] = self._window_ok(self.x_ok & self.y_ok, length)
        return self._windows_cache[length]

    def _window_ok(self, ok: np.ndarray, length: int) -> np.ndarray:
        """ok_all[s, j]: rows s..s+length-1 all ok (cumulative count, exact integers)."""
        if length == 0:
            return np.ones(ok.shape, bool)
        c = np.concatenate([np.zeros((1, ok.shape[1]), np.int64), np.cumsum(ok, axis=0)])
        T = ok.shape[0]
        out = np.zeros((T, ok.shape[1]), bool)
        if T >= length:
            out[: T - length + 1] = (c[length:] - c[:-length]) == length
        return out

    def _gather(self, asset, s_rows, q_rows) -> TaskBatch:
        """Cut (support, query) rows and normalise them (normalise_task). Each row's target is its
        realised variance relative to that row's anchor forecast a_t (the EWMA variance at t, known
        at t): sqrt(RV / a_t), so a network whose output is 0 forecasts exactly the anchor and
        learns multiplicative corrections to it. Nothing depends on a row after the support
        (support) or after t (query row t)."""
        cols = asset[:, None]
        N, D = self.panel.n_assets, self.x.shape[2]
        flat_x = self.x.reshape(-1, D)
        a_s, a_q = self.anchor[s_rows, cols], self.anchor[q_rows, cols]
        xs, xq, _ = normalise_task(flat_x, self.y.reshape(-1), s_rows * N + cols, flat_x, q_rows * N + cols,
                                   a_q[:, 0], self.spec.n_scaled, self.spec.row_scale)
        return TaskBatch(xs=xs, ys=TARGET.encode(self.y[s_rows, cols], a_s), xq=xq,
                         yq=TARGET.encode(self.y[q_rows, cols], a_q), anchor=a_q,
                         asset=asset, support_rows=s_rows, query_rows=q_rows, panel=self.panel)

    def with_scale(self, scale: str) -> "EpisodeBuilder":
        """This builder with its rows normalised another way, sharing its features and targets.

        Parameters
        ----------
        scale : {'support', 'row'}
            As TaskSpec.scale.

        Returns
        -------
        EpisodeBuilder
            This builder if the scale is its own, else a shallow copy (no array copied).
        """
        if scale == self.spec.scale:
            return self
        other = copy.copy(self)
        other.spec = replace(self.spec, scale=scale)
        return other

    def with_young_prior(self, assets, end_row: int) -> "EpisodeBuilder":
        """This panel's builder with the spec's ``young_prior`` set from training data: the median
        RiskMetrics variance of the rows of ``assets`` up to row ``end_row`` whose stretch has at
        least PRIOR_MIN_RETURNS returns (the anchor of every mature row; it does not depend on
        the prior); nothing after ``end_row`` and no other asset is read.

        Parameters
        ----------
        assets : sequence of str
            The training assets.
        end_row : int
            The last row training sees.

        Returns
        -------
        EpisodeBuilder
            A builder over the same panel with the prior in its spec (this one if it is already so).

        Raises
        ------
        DataError
            If no training asset has PRIOR_MIN_RETURNS returns in a row by ``end_row``.
        """
        cols = self.panel.asset_index(assets)
        variance, age = self.ewma_variance[:end_row + 1, cols], self.age[:end_row + 1, cols]
        seasoned = (age > PRIOR_MIN_RETURNS) & np.isfinite(variance)
        if not seasoned.any():
            raise DataError(f"{self.panel.source}: too little history to train on: no training asset has "
                            f"{PRIOR_MIN_RETURNS} returns in a row by {self.panel.dates[end_row]} (a young asset's "
                            "prior variance is the median of such assets' variance)")
        prior = float(np.median(variance[seasoned]))
        if prior == self.spec.young_prior:
            return self
        return EpisodeBuilder(self.panel, replace(self.spec, young_prior=prior))

    # ------------------------------------------------------------------ episodes
    def episodes(self, assets=None, start=None, end=None, n: int | None = None, stride: int | None = None,
                 seed: int = 0, support: int | None = None, query: int | None = None,
                 task_ids: np.ndarray | None = None) -> TaskBatch:
        """Episodes whose support and query rows lie in [start, end], query targets realised by ``end``.

        Parameters
        ----------
        assets : sequence of str, optional
            The assets to cut from (default: all).
        start, end : date-like, optional
            The dates the episodes lie within (default: the panel's).
        n : int, optional
            Draw this many episodes at random (seeded).
        stride : int, optional
            Or take every start ``stride`` rows apart.
        seed : int
            The draws' seed.
        support, query : int, optional
            Override the spec's K and Q.
        task_ids : numpy.ndarray, optional
            Or one episode per global task id, each drawn from (seed, id) alone (the same
            episodes whatever the split over processes).

        Returns
        -------
        TaskBatch
            B episodes: xs (B, K, D), ys (B, K, 1), xq (B, Q, D), yq (B, Q, 1), their anchors and rows.
        """
        spec = self.spec
        K = spec.support if support is None else check_int("support", support, 0)
        Q, h = query or spec.query, spec.horizon
        cols = (np.arange(self.panel.n_assets) if assets is None
                else self.panel.asset_index(list(assets)))
        lo = 0 if start is None else self.panel.row_of(start)
        hi = self.panel.n_days if end is None else self.panel.row_of(end, "right")  # rows < hi
        span = K + h + Q  # support, the h-row gap, query
        s_ok, q_ok = self._windows_ok(K), self._windows_ok(Q)
        starts = np.arange(self.panel.n_days)
        valid = np.zeros_like(s_ok)
        in_range = (starts >= lo) & (starts + span - 1 + h < hi)  # query targets realised by end
        idx = starts[in_range]
        valid[idx] = s_ok[idx] & q_ok[np.minimum(idx + K + h, self.panel.n_days - 1)]
        valid = valid[:, cols]
        s_idx, c_idx = np.nonzero(valid)
        if len(s_idx) == 0:
            raise DataError(f"{self.panel.source}: no complete episode (K={K}, gap={h}, Q={Q}) "
                            f"between {start or self.panel.dates[0]} and {end or self.panel.dates[-1]} "
                            "for the chosen assets: too little history")
        if stride is not None:
            keep = (s_idx - lo) % stride == 0
            s_idx, c_idx = s_idx[keep], c_idx[keep]
        if task_ids is not None:  # task i is a function of (seed, i) alone: any split of the ids over
            task_ids = np.asarray(task_ids)  # processes draws the same tasks
            if task_ids.ndim != 1 or task_ids.dtype.kind not in "iu" or (task_ids < 0).any():
                raise ValueError(f"task_ids must be a 1-D array of ints >= 0, got {task_ids.dtype} "
                                 f"of shape {task_ids.shape}")
            pick = task_pick(seed, task_ids, len(s_idx))
            s_idx, c_idx = s_idx[pick], c_idx[pick]
        elif n is not None:
            pick = np.random.default_rng(seed).choice(len(s_idx), size=n, replace=len(s_idx) < n)
            s_idx, c_idx = s_idx[pick], c_idx[pick]
        asset = cols[c_idx]
        s_rows = s_idx[:, None] + np.arange(K)
        q_rows = (s_idx + K + h)[:, None] + np.arange(Q)
        return self._gather(asset, s_rows, q_rows)

    # ------------------------------------------------------------------ forecasting
    def forecast_tasks(self, asset: np.ndarray, rows: np.ndarray, history: int):
        """One forecast task per (asset, row t).

        The support is the last ``history`` usable rows of the asset at or before t - h - 1 (all
        targets realised by t, strictly before it) within its current stretch; the query is row t.

        Parameters
        ----------
        asset : numpy.ndarray
            (n,) int: panel columns.
        rows : numpy.ndarray
            (n,) int: the rows t to forecast at.
        history : int
            Support rows per task.

        Returns
        -------
        tuple of (TaskBatch, numpy.ndarray)
            The tasks of the pairs that have that much history and finite features at t, and ok,
            (n,) bool, marking those pairs.
        """
        asset, rows = np.asarray(asset, np.int64), np.asarray(rows, np.int64)
        ok = (self.available_history(asset, rows) >= history) & self.x_ok[rows, asset]
        a, end = asset[ok], rows[ok] - self.spec.horizon - 1
        k = self._usable_count[end, a]  # usable rows <= end; the support is the last `history` of them
        flat = self._usable_pos[(self._col_offset[a] + k - history)[:, None] + np.arange(history)]
        s_rows = flat - a[:, None] * self.panel.n_days
        return self._gather(a, s_rows, rows[ok][:, None]), ok

    def available_history(self, asset: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The longest history a forecast at t can adapt on, for each (asset, t).

        Parameters
        ----------
        asset : numpy.ndarray
            (n,) int: panel columns.
        rows : numpy.ndarray
            (n,) int: rows t.

        Returns
        -------
        numpy.ndarray
            (n,) int: usable support rows (finite features, target realised by t) that the asset's
            current stretch holds at or before t - h - 1.
        """
        asset = np.asarray(asset, np.int64)
        end = np.asarray(rows, np.int64) - self.spec.horizon - 1
        e = np.maximum(end, 0)
        n = self._usable_count[e, asset] - self._stretch_start_count[e, asset]
        return np.where(end >= 0, n, 0)


def time_split(panel: PricePanel, train_end, horizon: int, embargo: int | None = None):
    """Split a panel's rows in time, with an embargo between training and test.

    Parameters
    ----------
    panel : PricePanel
        The prices.
    train_end : date-like
        Training targets are realised by this date.
    horizon : int
        Days ahead of the forecasts.
    embargo : int, optional
        Rows between the last training row and the first test row (at least ``horizon``).

    Returns
    -------
    tuple of int
        (last training row, first test row); test forecasts start ``max(embargo, horizon)`` rows later.
    """
    gap = max(horizon, embargo or 0)
    end = panel.row_of(train_end, "right") - 1
    if end < 0 or end + gap + 1 >= panel.n_days:
        raise DataError(f"{panel.source}: train end {train_end} leaves no training or no test period "
                        f"(data covers {panel.dates[0]} to {panel.dates[-1]})")
    return end, end + gap + 1


def asset_split(assets, n_test: int, seed: int = 0):
    """Split assets into training and held-out ones, deterministic under the seed.

    Parameters
    ----------
    assets : sequence of str
        The assets.
    n_test : int
        How many to hold out (at least one on each side).
    seed : int
        The permutation's seed.

    Returns
    -------
    tuple of list of str
        (train assets in their order, held-out assets sorted).
    """
    assets = list(assets)
    if not 1 <= n_test < len(assets):
        raise DataError(f"cannot hold out {n_test} of {len(assets)} assets: need at least one on each side")
    perm = np.random.default_rng(seed).permutation(len(assets))
    test = sorted(assets[i] for i in perm[:n_test])
    return [a for a in assets if a not in test], test




def simulated_listings(panel: PricePanel, assets, end, *, every: int = 42, length: int = 300,
                       start=None) -> PricePanel:
    """Young assets cut from a panel (for meta-training, or to evaluate forecasts by age): each
    asset "lists" on every ``every``-th row from ``start`` (default: the first) where it has a
    price, and its column holds only the ``length`` prices from that row on (ending by ``end``; all
    of them up to ``end`` on a shorter panel): nothing before the listing exists for it, so every
    input is the young one (tasks/young.py). Rows are ages (row 0: the listing's first price), dated as business
    days from the panel's first date; a listing whose window crosses a calendar gap is left out
    (the gap would restart it). Column names say the asset and the listing date.

    Parameters
    ----------
    panel : PricePanel
        The prices to cut listings from.
    assets : sequence of str
        The assets that list.
    end : date-like
        No listing's window reaches past this date.
    every : int
        Rows between two listings of an asset.
    length : int
        Prices per listing (at least 2).
    start : date-like, optional
        The first listing date (default: the panel's first).

    Returns
    -------
    PricePanel
        One column per listing, rows = ages (row 0: the listing's first price).
    """
    check_int("every", every, 1)
    check_int("length", length, 2)
    cols = panel.asset_index(list(assets))
    last = panel.row_of(end, "right") - 1  # the window's last price is at most `end`
    if last < 1:
        raise DataError(f"{panel.source}: fewer than two days up to {end}: no simulated listing fits")
    length = min(length, last + 1)  # a short panel gives shorter listings
    lo = 0 if start is None else panel.row_of(start)
    first_rows = np.arange(lo, last - length + 2, every)
    if len(first_rows) == 0:
        raise DataError(f"{panel.source}: no {length}-day listing fits between {start} and {end}")
    breaks = np.cumsum(calendar_breaks(panel.dates))  # breaks at or before each row
    crosses = breaks[first_rows + length - 1] != breaks[first_rows]
    starts, which = np.meshgrid(first_rows[~crosses], cols, indexing="ij")
    starts, which = starts.ravel(), which.ravel()
    listed = ~np.isnan(panel.close[starts, which])
    starts, which = starts[listed], which[listed]
    if len(starts) == 0:
        raise DataError(f"{panel.source}: no asset has a price on a simulated listing date up to {end}")
    rows = starts[None, :] + np.arange(length)[:, None]
    pick = (lambda a: a[rows, which[None, :]]) if panel.has_ohlc else None
    names = tuple(f"{panel.assets[j]}@{panel.dates[s]}" for s, j in zip(starts, which))
    dates = np.busday_offset(panel.dates[0], np.arange(length), roll="forward")
    return PricePanel(dates=dates, assets=names, close=panel.close[rows, which[None, :]],
                      open=pick(panel.open) if pick else None, high=pick(panel.high) if pick else None,
                      low=pick(panel.low) if pick else None, source=f"{panel.source} (simulated listings)")
