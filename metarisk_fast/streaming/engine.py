"""RiskEngine: one bar in, every asset's risk out, for live loops and bar-by-bar backtests.

The engine keeps, per asset, what a forecast at the newest bar t needs and nothing more:
- the gap bridging of the batch path (tasks.bridge_gaps: a missing price carries the last one
  forward for up to MAX_BRIDGED_GAP bars; a bar dated after a calendar gap, data.calendar_breaks,
  restarts every asset);
- the streaming feature state (features.StreamingFeatures, the batch kernel's step) on the
  bridged prices, each asset's age and partial-window sums (tasks/young.py, the batch's row step),
  and the target's own stream on the observed prices;
- a delay line of the last h + 2 rows (inputs, anchor, usability, stretch breaks), since a row
  enters a support set only once its h-day target is realised strictly before t;
- the support store: the last ``history`` usable rows of the asset's current stretch.
A bar then costs one feature step, a few array operations and one batched adapt-and-predict
kernel call over the assets due (never a Python loop over assets), and its forecasts are the
batch path's (``metarisk forecast``) bit for bit: the same inputs meet the same functions
(tasks.network_inputs, tasks.normalise_task, MetaForecaster.variance) in the same order.
"""
from __future__ import annotations

import copy as _copy
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from collections.abc import Mapping

import numba
import numpy as np
import pandas as pd
import torch

from .._checks import check_int, check_number
from .._files import atomic_write_bytes
from ._kernels import advance_bar, forward_rows, head_bar, part_bounds, ready_assets
from ..data import MAX_GAP_DAYS, CalendarGapWarning, DataError, missing_business_days
from ..datasets import load_panel
from ..evaluation import risk_columns
from ..evaluation.risk import risk_column_factors
from ..features import LOG_RETURNS, StreamingFeatures, range_feature_set
from ..learners import support_rows
from ..learners._head_kernels import stats_blocks, stats_rows
from ..forecasting import MetaForecaster, input_scale, load_model
from ..tasks import ANCHOR_FEATURE, MAX_BRIDGED_GAP, TARGET, TaskSpec, normalise_task, young_args
from ..tasks.episodes import FEATURE_CLIP, VAR_FLOOR

STATE_FORMAT = 5  # 5: the head learner's stores keep no targets and its statistics round to nearest; 4: one-exp slopes
_ARRAYS = ("last_price", "gap", "seen", "row_x", "row_anchor", "row_ok", "row_break", "row_y", "sq_returns",
           "sup_x", "sup_y", "sup_target", "count", "pos", "pushed_at", "adapted", "adapted_scale", "adapted_at",
           "phase", "age", "age_sq_sum", "age_ewma", "head_phi", "head_slopes", "head_stats", "row_phi")
_PER_ASSET = ("count", "pos", "pushed_at", "adapted", "adapted_scale", "adapted_at", "phase", "age", "age_sq_sum",
              "age_ewma")


@dataclass(frozen=True)
class RiskSnapshot:
    """Every asset's risk at one bar; each array has one entry per asset, in ``assets``' order.

    Parameters
    ----------
    bar : int
        The bar's number, counted from the first bar the engine took (0-based).
    date : numpy.datetime64 or None
        The bar's date, if bars come with dates.
    assets : tuple of str
        The engine's assets, in order.
    variance : numpy.ndarray
        (n_assets,) float64: the forecast mean daily variance of log returns over the next h bars
        (squared log-return units); NaN where not ``ready``.
    vol : numpy.ndarray
        (n_assets,): the square root of ``variance`` (daily log-return units).
    var_1, var_5 : numpy.ndarray
        (n_assets,): the normal 1 % and 5 % Value-at-Risk of a one-day log return (negative).
    es_2_5 : numpy.ndarray
        (n_assets,): the normal 2.5 % Expected Shortfall of a one-day log return (negative).
    ready : numpy.ndarray
        (n_assets,) bool: the asset has a forecast at this bar.
    stress : object, optional
        The attached monitor's reading of the bar (``warning.StressReading``), if any.
    """

    bar: int
    date: np.datetime64 | None
    assets: tuple[str, ...]
    variance: np.ndarray
    vol: np.ndarray
    var_1: np.ndarray
    var_5: np.ndarray
    es_2_5: np.ndarray
    ready: np.ndarray
    stress: object = None  # the attached monitor's reading of the bar (warning.StressReading), if any

    def to_frame(self) -> pd.DataFrame:
        """The ready assets' rows in ``metarisk forecast``'s columns.

        Returns
        -------
        pandas.DataFrame
            One row per ready asset: date (or the bar number), asset, forecast_variance, var_1,
            var_5, es_2_5.
        """
        r = self.ready
        return pd.DataFrame({"date": np.repeat(self.date, int(r.sum())) if self.date is not None else self.bar,
                             "asset": np.asarray(self.assets, dtype=object)[r], "forecast_variance": self.variance[r],
                             "var_1": self.var_1[r], "var_5": self.var_5[r], "es_2_5": self.es_2_5[r]})


def _snapshot(**fields) -> RiskSnapshot:
    """RiskSnapshot(**fields), every field given, without the frozen dataclass's __init__ (a
    setattr through object.__setattr__ per field: a microsecond of every bar)."""
    snapshot = object.__new__(RiskSnapshot)
    snapshot.__dict__.update(fields)
    return snapshot


def _weights_digest(learner: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(learner.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RiskEngine:
    """The streaming twin of ``metarisk forecast``. Build it with ``from_model``; feed it history
    with ``warm_up`` and then one bar at a time with ``update`` (``peek`` for a forming bar).

    ``readapt_every`` = 1 (default) re-adapts every ready asset on every bar: exact, the batch
    forecasts bit for bit. k > 1 (gradient-based learners) adapts each asset every k bars (assets
    staggered over the k bars) and in between predicts with the weights of its last adaptation and
    that support's scale: an approximation that trades accuracy for speed.

    ``online_lr`` > 0 (off by default) keeps meta-learning while it runs: after each bar, one SGD
    step of the initialisation on the tasks that bar realised (the engine learns on its own copy of
    the learner; its weights are then part of the saved state). The forecasts then depart from
    the batch path's, by design.

    ``monitor`` (optional) is a market-wide score carried bar by bar, such as the early warning's
    ``warning.StressScore`` over the same assets: each bar it gets the observed closes, the bar's
    variance forecasts and, where it asks (``needs_novelty``), the memory learner's novelty of
    each asset, and its reading is the snapshot's ``stress``. It is part of the saved state; the
    asset set is then fixed (add_asset / remove_asset refuse). A monitor with ``check_fits``
    refuses assets, or a variance model (``model_sha256``: its model.json's weights checksum;
    from_model passes it), other than those it was fitted on.

    Parameters
    ----------
    learner : torch.nn.Module
        A trained learner (``forecasting.make_learner`` / ``load_model``).
    spec : TaskSpec
        The features, horizon and normalisation the learner was trained with.
    assets : sequence of str
        The assets, in the order of every bar's arrays.
    history : int
        At most this many latest realised bars per support set (a head learner with a window:
        at most its window, ``learners.support_rows``).
    min_history : int
        Bars an asset needs before it forecasts (0: from its second price).
    readapt_every : int
        Re-adapt each asset every this many bars (1: exact).
    online_lr : float
        The learning rate of the online meta-update after each bar (0: off).
    monitor : object, optional
        A market-wide score carried bar by bar (``warning.StressScore``).
    model_sha256 : str, optional
        The model's weights checksum, for a monitor's ``check_fits``.
    """

    def __init__(self, learner: torch.nn.Module, spec: TaskSpec, assets, *, history: int = 60,
                 min_history: int = 0, readapt_every: int = 1, online_lr: float = 0.0, monitor=None,
                 model_sha256: str | None = None):
        for name, value, lo in (("history", history, 1), ("min_history", min_history, 0),
                                ("readapt_every", readapt_every, 1)):
            check_int(name, value, lo, 100_000)
        if readapt_every > 1 and not hasattr(learner, "predict_with_weights"):
            raise ValueError(f"readapt_every={readapt_every} keeps each asset's adapted weights between bars, which "
                             f"needs a gradient-based learner (MAML, FOMAML, Reptile, Meta-SGD); "
                             f"{type(learner).__name__} re-adapts on every bar (readapt_every=1)")
        check_number("online_lr", online_lr, allow_zero=True, note=" (0: the model stays as trained)")
        self._incremental = hasattr(learner, "stream_state")  # the head learner: running statistics per asset
        if self._incremental and online_lr:
            raise ValueError("online_lr needs a learner whose initialisation may move between bars; the head learner's "
                             "running statistics are computed at its trained head (online_lr=0)")
        if spec.scale != input_scale(learner):
            raise ValueError(f"{type(learner).__name__} was trained on rows normalised with scale="
                             f"{input_scale(learner)!r}; the TaskSpec given has scale={spec.scale!r}")
        if ANCHOR_FEATURE not in spec.features.names:
            raise ValueError(f"the model's feature set has no {ANCHOR_FEATURE} (the anchor of every forecast)")
        assets = self._check_names(assets)
        if monitor is not None:
            missing = [m for m in ("update", "needs_novelty", "state_dict", "load_state_dict", "copy", "n_assets")
                       if not hasattr(monitor, m)]
            if missing:
                raise TypeError(f"monitor lacks {missing}: give a warning.StressScore (or an object with its methods)")
            if monitor.n_assets != len(assets):
                raise ValueError(f"the monitor covers {monitor.n_assets} assets, the engine {len(assets)}")
            if hasattr(monitor, "check_fits"):  # a fitted monitor names the universe and model it was fitted on
                monitor.check_fits(assets, model_sha256)
            if monitor.needs_novelty and not hasattr(learner, "novelty"):
                raise ValueError(f"the monitor combines a memory learner's novelty; this model is "
                                 f"{type(learner).__name__}: load the memory model its warning model was fitted with")
        self.monitor = monitor
        self.weights = _weights_digest(learner)  # of the model as given: a saved state names its model
        self.online_lr = float(online_lr)
        if self.online_lr:  # the engine's own copy learns; the caller's learner stays as trained
            learner = _copy.deepcopy(learner)
        self.learner, self.spec = learner, spec
        self.history = support_rows(learner, history)
        self.min_history, self.readapt_every = int(min_history), int(readapt_every)
        self.forecaster = MetaForecaster(learner, self.history, min_history=self.min_history)
        self._anchor_row = spec.features.names.index(ANCHOR_FEATURE)
        # the spec's per-bar constants, read once (its properties rebuild the feature names)
        self._n_scaled, self._row_scale, self._squared = spec.n_scaled, spec.row_scale, spec.proxy == "squared_returns"
        self._range_inputs, self._n_features = spec.features.needs_ohlc, spec.n_features
        self._ohlc = self._range_inputs or not self._squared
        self._head_params = learner.kernel_params() if self._incremental else None
        # the head learner's last bar (head_bar): its forecasts (NaN where none), readiness, vol and risk columns
        self._head_out: tuple[np.ndarray, ...] | None = None
        self._risk_names, self._risk_factors = risk_column_factors()
        # the head learner's bar runs in this many parts (head_bar), one a thread: Numba's thread count now (asked
        # once: the question takes a lock; with fewer threads later the parts run in turn)
        self._bar_threads = numba.get_num_threads()
        self._young_args = young_args(spec)
        self._scratch = None  # _advance's arrays (_bar_scratch)
        self.assets: list[str] = []
        self._names: tuple[str, ...] = ()  # the assets as a snapshot holds them (set wherever self.assets changes)
        self.t, self.last_date = 0, None
        self._features = StreamingFeatures(spec.features, len(assets))
        self._targets = StreamingFeatures(self._target_features(), len(assets))
        self._state = self._fresh(0)
        self._adopted = 0  # assets ever added: the stagger phase of the next one
        self._append(assets, fresh_streams=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model, assets, *, history: int | None = None, spec: TaskSpec | None = None,
                   min_history: int = 0, readapt_every: int = 1, online_lr: float = 0.0,
                   monitor=None) -> "RiskEngine":
        """An engine for ``assets`` from a model directory or a learner.

        Parameters
        ----------
        model : str, os.PathLike or torch.nn.Module
            A model directory (its feature spec and history are used), a shipped model
            ('streaming': the head learner, exact on every bar; 'default': MAML) or a learner.
        assets : sequence of str
            The assets, in the order of every bar's arrays.
        history : int, optional
            Support days (default: the model's; 60 for a learner).
        spec : TaskSpec, optional
            The learner's spec (default: the model's; TaskSpec() for a learner).
        min_history, readapt_every, online_lr, monitor
            As in ``RiskEngine``.

        Returns
        -------
        RiskEngine
            An engine with no bars yet.
        """
        sha = None
        if isinstance(model, torch.nn.Module):
            spec, history = spec or TaskSpec(scale=input_scale(model)), history or 60
            learner = model
        else:
            learner, saved_spec, meta = load_model(model)
            spec, history, sha = spec or saved_spec, history or meta["history"], meta.get("weights_sha256")
        return cls(learner, spec, assets, history=history, min_history=min_history, readapt_every=readapt_every,
                   online_lr=online_lr, monitor=monitor, model_sha256=sha)

    def _target_features(self):
        """The observed-price stream of the target proxy: log returns, or Garman-Klass over h."""
        if self.spec.proxy == "squared_returns":
            return LOG_RETURNS
        return range_feature_set("garman_klass", self.spec.horizon)

    def _fresh(self, n: int) -> dict[str, np.ndarray]:
        """The state of n assets with no bar yet."""
        h, H, D = self.spec.horizon, self.history, self.spec.n_features
        S = 4 if self._ohlc else 1
        P = sum(p.numel() for p in self.learner.net.parameters()) if self.readapt_every > 1 else 0
        head = (self.learner.stream_state(n, H) if self._incremental else
                {"head_phi": np.zeros((n, H, 0)), "head_slopes": np.zeros((n, H, 0)),
                 "head_stats": np.zeros((n, 0), np.int64)})
        head["row_phi"] = np.zeros((h + 2, n, head["head_phi"].shape[2]))  # the head's features of the delay line's rows
        # adapted weights: float32, the dtype of the tasks the learner adapts on; the head learner's stores keep
        # each row's body features and loss slopes (head_phi, head_slopes), neither its inputs nor its targets
        # (sup_x, sup_y and sup_target hold none: nothing re-adapts from them)
        return {**head, "last_price": np.full((S, n), np.nan), "gap": np.zeros((S, n), np.int64), "seen": np.zeros((S, n), bool),
                "row_x": np.full((h + 2, n, D), np.nan), "row_anchor": np.full((h + 2, n), np.nan),
                "row_ok": np.zeros((h + 2, n), bool), "row_break": np.ones((h + 2, n), bool),
                "row_y": np.full((h + 2, n), np.nan), "sq_returns": np.full((h, n), np.nan),
                "sup_x": np.zeros((n, H, 0 if self._incremental else D)),
                "sup_y": np.zeros((n, 0 if self._incremental else H)),
                "sup_target": np.zeros((n, 0 if self._incremental else H), np.float32),
                "count": np.zeros(n, np.int64), "pos": np.zeros(n, np.int64), "pushed_at": np.full(n, -1, np.int64),
                "adapted": np.zeros((n, P), np.float32), "adapted_scale": np.ones(n), "adapted_at": np.full(n, -1, np.int64),
                "phase": np.zeros(n, np.int64), "age": np.zeros(n, np.int64), "age_sq_sum": np.zeros(n),
                "age_ewma": np.zeros(n)}

    @staticmethod
    def _check_names(assets) -> list[str]:
        if isinstance(assets, str):
            assets = [assets]
        names = [a for a in assets]
        if not names or not all(isinstance(a, str) and a for a in names):
            raise ValueError(f"assets must be one or more non-empty names, got {assets!r}")
        dup = sorted({a for a in names if names.count(a) > 1})
        if dup:
            raise ValueError(f"duplicate asset names: {dup}")
        return names

    # ------------------------------------------------------------------ assets
    def add_asset(self, name: str) -> None:
        """Add an asset mid-stream, as an asset listed mid-sample is in the batch forecast.

        It forecasts from its second price on (once it has ``min_history`` usable bars, if set).

        Parameters
        ----------
        name : str
            The new asset; it takes the last position of every bar's arrays.
        """
        self._fixed_assets()
        names = self._check_names([name])
        if names[0] in self.assets:
            raise ValueError(f"asset {names[0]!r} is already in the engine")
        self._append(names, fresh_streams=True)

    def remove_asset(self, name: str) -> None:
        """Drop an asset and its state; the other assets continue unchanged.

        Parameters
        ----------
        name : str
            An asset of the engine (not its last).
        """
        self._fixed_assets()
        if name not in self.assets:
            raise ValueError(f"asset {name!r} is not in the engine (assets: {', '.join(self.assets)})")
        if len(self.assets) == 1:
            raise ValueError("cannot remove the engine's last asset")
        keep = np.array([i for i, a in enumerate(self.assets) if a != name])
        self._features, self._targets = self._features.select(keep), self._targets.select(keep)
        by_asset = self._by_asset(self._state, len(self.assets))
        self._state = self._kernel_layout({k: np.take(v, keep, axis=self._asset_axis(k)) for k, v in by_asset.items()})
        self.assets.remove(name)
        self._names = tuple(self.assets)

    def _fixed_assets(self) -> None:
        if self.monitor is not None:
            raise ValueError("the engine carries a market-wide monitor over a fixed set of assets: build a new "
                             "engine (and monitor) for another set")

    @staticmethod
    def _asset_axis(key: str) -> int:
        """The axis of a state array (in _by_asset's layout) that runs over the assets."""
        return 0 if key.startswith(("sup_", "head_")) or key in _PER_ASSET else 1

    def _by_asset(self, state: dict, n: int) -> dict:
        """The state of n assets with every array's assets along _asset_axis: the head learner's
        statistics, which its kernels keep in blocks of assets, an asset a row (the saved layout)."""
        if not self._incremental:
            return state
        return {**state, "head_stats": stats_rows(state["head_stats"], n)}

    def _kernel_layout(self, state: dict) -> dict:
        """_by_asset's inverse."""
        if not self._incremental:
            return state
        return {**state, "head_stats": stats_blocks(state["head_stats"])}

    def _append(self, names, fresh_streams: bool) -> None:
        n = len(names)
        if fresh_streams:
            self._features, self._targets = self._features.extend(n), self._targets.extend(n)
        new = self._by_asset(self._fresh(n), n)
        new["phase"] = (self._adopted + np.arange(n)) % self.readapt_every
        old = self._by_asset(self._state, len(self.assets))
        self._state = self._kernel_layout({k: np.concatenate([v, new[k]], axis=self._asset_axis(k))
                                           for k, v in old.items()})
        self._adopted += n
        self.assets.extend(names)
        self._names = tuple(self.assets)

    # ------------------------------------------------------------------ bars
    def _bar(self, bar, open, high, low, date):
        """The bar as checked float64 arrays (close, open, high, low) in the engine's asset order
        and its date; every check runs before any state changes."""
        arrays = []
        for x, name in ((bar, "close"), (open, "open"), (high, "high"), (low, "low")):
            if x is not None and isinstance(x, Mapping):
                unknown = sorted(set(map(str, x)) - set(self.assets))
                if unknown:
                    raise ValueError(f"{name} bar names assets not in the engine: {unknown} (add them with add_asset)")
                x = np.array([x.get(a, np.nan) for a in self.assets], dtype=np.float64)
            arrays.append(x)
        if not self._ohlc:
            arrays[1:] = [None, None, None]
        elif any(a is None for a in arrays[1:]):
            raise ValueError("this model uses open, high and low: give them as keyword arrays in every bar")
        # shapes, dtypes, prices > 0 or NaN, high >= low; by the stream that reads open/high/low if any
        if date is not None:
            try:
                date = np.datetime64(date, "D")
            except (ValueError, TypeError):
                raise ValueError(f"date {date!r} is not a date") from None
            if date.item() is None:  # NaT (datetime.date comparisons: numpy's scalar ones cost ~1 us each)
                raise ValueError("date is NaT")
            if self.last_date is not None and date.item() <= self.last_date.item():
                raise ValueError(f"bar date {date} is not after the previous bar's {self.last_date}: bars must come "
                                 "in increasing date order")
        checker = self._targets if self.spec.proxy == "garman_klass" else self._features
        checked = checker.check_bar(*arrays, assets=self.assets,
                                    where=f"the bar of {date}" if date is not None else f"bar {self.t}")
        return checked, date

    def _advance(self, close, open, high, low, date, warn_gap: bool = False):
        """Commit one checked bar; returns the bar's network inputs (N, D), anchors and usability.
        ``warn_gap``: a bar after a calendar gap is warned (a live bar; a file's gaps are warned
        when it is read)."""
        st, t = self._state, self.t
        date = None if date is None else np.datetime64(date, "D")  # a panel's dates may come in another unit
        N = len(self.assets)
        sc = self._bar_scratch(N)
        observed = np.stack([close, open, high, low]) if self._ohlc else close[None]
        gap_break = self._after_calendar_gap(date)
        if gap_break and warn_gap:  # nothing is carried across the gap (tasks.bridge_gaps with its breaks)
            warnings.warn(f"bar {date}: {int(missing_business_days(self.last_date, date))} business days after "
                          f"the last bar ({self.last_date}); every asset restarts (no forecast until it has "
                          "history again)", CalendarGapWarning, stacklevel=3)
        x, anchor, ok, pushed, pushed_target = sc["x"], sc["anchor"], sc["ok"], sc["pushed"], sc["pushed_target"]
        observe = (t, observed, gap_break, MAX_BRIDGED_GAP, st["last_price"], st["gap"], st["seen"],
                   sc["bridged"], self._range_inputs, *self._features.step_args(), self._squared,
                   *self._targets.step_args(), self._young_args, st["age"], st["age_sq_sum"], st["age_ewma"],
                   self.spec.age_input, self._anchor_row, VAR_FLOOR, sc["youth"], x, anchor, ok, sc["target"],
                   st["row_x"], st["row_anchor"], st["row_ok"], st["row_break"], st["row_y"], st["sq_returns"])
        push = (t, st["row_x"], st["row_anchor"], st["row_ok"], st["row_break"], st["row_y"], st["sup_x"], st["sup_y"],
                st["sup_target"], st["count"], st["pos"], st["adapted_at"], pushed, pushed_target,
                TARGET.floor, TARGET.cap, st["pushed_at"], 0, N)
        if self._incremental:  # the head learner: the whole bar in one compiled call, forecasts included
            out = np.empty(N), np.empty(N, bool), np.empty(N), np.empty((len(self._risk_factors), N))
            theta, sizes, w0, precision, code = self._head_params
            if not head_bar(observe, x, anchor, ok, push, st["count"], pushed, pushed_target, FEATURE_CLIP,
                            self._n_scaled, self._row_scale, self.history, self._min_support, theta, sizes, w0,
                            precision, code, st["row_phi"], st["head_phi"], st["head_slopes"], st["head_stats"],
                            sc["part_bounds"], sc["heads"], self.forecaster.target.output_clip, out[0], out[1],
                            self._risk_factors, out[2], out[3]):
                risk_columns(out[0])  # raises: a forecast is negative or infinite
            self._head_out = out
        else:
            advance_bar(observe, push)
        self._features.advance()
        self._targets.advance()
        self.t += 1
        if date is not None:
            self.last_date = date
        return x, anchor, ok

    def _bar_scratch(self, n: int) -> dict:
        """The arrays a bar of n assets writes and reads within _advance and _forecast (network
        inputs, anchors, usability, the bridged prices, youth, targets, the pushed rows, the head
        learner's solved heads and head_bar's parts for this many threads), kept from bar to bar: no
        allocation, and still in cache. Nothing a bar returns refers to them; each engine (copies
        too) has its own."""
        if (self._scratch is None or self._scratch["ok"].shape[0] != n
                or self._scratch["threads"] != self._bar_threads):
            head_size = len(self._head_params[2]) if self._incremental else 0  # w0: one head's weights
            self._scratch = {"x": np.empty((n, self._n_features)), "anchor": np.empty(n), "ok": np.empty(n, bool),
                             "bridged": np.empty((4 if self._ohlc else 1, n)), "youth": np.empty(n),
                             "target": np.empty(n), "pushed": np.empty((n, 2), np.int64),
                             "pushed_target": np.empty(n, np.float32), "heads": np.empty((n, head_size)),
                             "threads": self._bar_threads, "part_bounds": part_bounds(n, self._bar_threads)}
        return self._scratch

    def _ready(self, ok) -> np.ndarray:
        """The assets that get a forecast this bar: usable rows with at least ``min_history`` support rows."""
        return ready_assets(ok, self._state["count"], self.history, self._min_support)

    def _after_calendar_gap(self, date) -> bool:
        """Whether a bar dated ``date`` follows the last bar after a calendar gap (data.calendar_breaks)."""
        # within MAX_GAP_DAYS + 1 calendar days no more than MAX_GAP_DAYS business days are missing
        return (date is not None and self.last_date is not None
                and (date.item() - self.last_date.item()).days > MAX_GAP_DAYS + 1
                and int(missing_business_days(self.last_date, date)) > MAX_GAP_DAYS)

    def _tasks(self, sel: np.ndarray, length: int, x: np.ndarray, anchor: np.ndarray):
        """Learner inputs of the assets ``sel``: support = their last ``length`` stored rows, oldest
        first; query = this bar's row x[sel]. Returns (xs, ys, xq, c)."""
        st, H, D = self._state, self.history, self.spec.n_features
        s_idx = sel[:, None] * H + (st["pos"][sel, None] - length + np.arange(length)) % H
        xs, xq, c = normalise_task(st["sup_x"].reshape(-1, D), st["sup_y"].reshape(-1), s_idx, x, sel[:, None],
                                   anchor[sel], self._n_scaled, self._row_scale)
        return xs, st["sup_target"].reshape(-1)[s_idx][..., None], xq, c

    def _forecast(self, x, anchor, ok) -> tuple[np.ndarray, np.ndarray | None]:
        """The bar's variance forecasts and, where the monitor asks for it, the memory learner's
        novelty of each asset (None otherwise)."""
        st, H = self._state, self.history
        novelty = np.full(len(self.assets), np.nan) if self.monitor is not None and self.monitor.needs_novelty else None
        if self._incremental:  # exact: each asset's head solved from its running statistics and decoded (head_bar)
            return self._head_out[0], novelty  # NaN where no asset is ready
        variance, length = np.full(len(self.assets), np.nan), np.minimum(st["count"], H)
        if self.readapt_every == 1:
            ready = self._ready(ok)
            for L in np.unique(length[ready]):  # nearly always one group: every asset with the full history
                sel = np.flatnonzero(ready & (length == L))
                xs, ys, xq, _ = self._tasks(sel, int(L), x, anchor)
                variance[sel] = self.forecaster.variance(xs, ys, xq, anchor[sel])
                if novelty is not None:
                    novelty[sel] = self.forecaster.memory_novelty(xs, ys, xq)
            return variance, novelty
        due, go, xq = forward_rows(x, ok, st["count"], H, self._min_support, st["adapted_at"], st["phase"], self.t - 1,
                                   self.readapt_every, st["adapted_scale"], FEATURE_CLIP, self._n_scaled,
                                   self._row_scale)
        if len(go) == len(self.assets):  # every asset forward only: no gathers of weights or anchors
            z = self.learner.predict_with_weights(st["adapted"], xq)
            return TARGET.decode(z[:, 0, 0].astype(np.float64), anchor), None
        for L in (np.unique(length[due]) if due.any() else ()):
            sel = np.flatnonzero(due & (length == L))
            xs, ys, xq_due, c = self._tasks(sel, int(L), x, anchor)
            z, st["adapted"][sel] = self.learner.adapt_predict_weights(xs, ys, xq_due)
            st["adapted_scale"][sel], st["adapted_at"][sel] = c, self.t - 1
            variance[sel] = TARGET.decode(z[:, 0, 0].astype(np.float64), anchor[sel])
        if len(go):  # forward only: each asset's weights and scale from its last adaptation
            z = self.learner.predict_with_weights(st["adapted"][go], xq)
            variance[go] = TARGET.decode(z[:, 0, 0].astype(np.float64), anchor[go])
        return variance, None

    def _snapshot(self, close, forecast) -> RiskSnapshot:
        """The bar's snapshot; the monitor (if any) reads the bar here, once per committed bar."""
        variance, novelty = forecast
        stress = None if self.monitor is None else self.monitor.update(close, variance, novelty)
        if self._incremental:  # head_bar computed them with the forecasts
            _, ready, vol, risk = self._head_out
            cols = dict(zip(self._risk_names, risk))
        else:
            vol, cols, ready = np.sqrt(variance), risk_columns(variance), ~np.isnan(variance)
        return _snapshot(bar=self.t - 1, date=self.last_date, assets=self._names, variance=variance, vol=vol,
                         ready=ready, stress=stress, **cols)

    def update(self, bar, *, open=None, high=None, low=None, date=None) -> RiskSnapshot:
        """Commit one bar and return every asset's risk after it.

        A rejected bar raises and leaves the engine exactly as it was.

        Parameters
        ----------
        bar : array_like or mapping
            Closes: a 1-D array in the engine's asset order, or a mapping asset -> price; NaN or
            absent: no bar for that asset.
        open, high, low : array_like or mapping, optional
            The bar's other prices, in the same form, for the range features of a spec that has them.
        date : date-like, optional
            The bar's date; dates must increase from bar to bar.

        Returns
        -------
        RiskSnapshot
            Every asset's forecast made at this bar's close.
        """
        checked, date = self._bar(bar, open, high, low, date)
        snapshot = self._snapshot(checked[0], self._forecast(*self._advance(*checked, date, warn_gap=True)))
        if self.online_lr:
            self._online_step()
        return snapshot

    def _online_step(self) -> None:
        """One SGD step of the meta-learned initialisation on the tasks this bar realised: per
        asset, query = its newest stored row (target realised before this bar), support = the
        stored rows up to h + 1 rows before it (their targets realised before the query row), as
        the training episodes are cut. Taken after this bar's forecasts, so it shapes the next."""
        st, h, H = self._state, self.spec.horizon, self.history
        length = np.minimum(st["count"], H) - h - 1  # support rows before the query's embargo
        fresh = st["pushed_at"] == self.t - 1
        ok = fresh & (length >= max(1, min(self.min_history, H - h - 1)))
        if not ok.any():
            return
        L = int(length[ok].min())
        sel = np.flatnonzero(ok)
        newest = (st["pos"][sel] - 1) % H
        s_idx = sel[:, None] * H + (newest[:, None] - h - L + np.arange(L)) % H
        q_idx = (sel * H + newest)[:, None]
        D = self.spec.n_features
        xs, xq, _ = normalise_task(st["sup_x"].reshape(-1, D), st["sup_y"].reshape(-1), s_idx,
                                   st["sup_x"].reshape(-1, D), q_idx, n_scaled=self.spec.n_scaled,
                                   row_scale=self.spec.row_scale)
        target = st["sup_target"].reshape(-1)
        ys, yq = target[s_idx][..., None], target[q_idx][..., None]
        params = [p for p in self.learner.parameters() if p.requires_grad]
        loss = self.learner.meta_loss(*(torch.from_numpy(a) for a in (xs, ys, xq, yq)))
        grads = torch.autograd.grad(loss, params)
        if all(torch.isfinite(g).all() for g in grads):  # a diverged inner loop skips the step
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(self.online_lr * g)

    def peek(self, bar, *, open=None, high=None, low=None, date=None) -> RiskSnapshot:
        """``update``'s result for a bar that is not committed (a forming bar).

        The engine is left as it was; this costs a copy of the state.

        Parameters
        ----------
        bar, open, high, low, date
            As in ``update``.

        Returns
        -------
        RiskSnapshot
            What ``update`` would return.
        """
        return self.copy().update(bar, open=open, high=high, low=low, date=date)

    # ------------------------------------------------------------------ history
    def warm_up(self, prices) -> RiskSnapshot:
        """Feed a history of bars at once.

        Parameters
        ----------
        prices : PricePanel, pandas.DataFrame, str or os.PathLike
            A panel holding every engine asset: a PricePanel, a wide DataFrame of closes, a CSV /
            Parquet path, or 'default' for the embedded panel. Too short for any forecast: refused,
            saying how many bars are needed.

        Returns
        -------
        RiskSnapshot
            The risk after its last bar.
        """
        panel = load_panel(prices)
        missing = [a for a in self.assets if a not in panel.assets]
        if missing:
            raise DataError(f"{panel.source}: no prices for the engine's assets {missing}")
        if self._ohlc and not panel.has_ohlc:
            raise DataError(f"{panel.source}: this model uses open, high and low prices; the file has close only")
        needed = self.bars_needed
        if self.t == 0 and panel.n_days < needed:
            raise DataError(f"{panel.source}: {panel.n_days} bar{'s' * (panel.n_days != 1)}; the engine needs at "
                            f"least {needed} before its first forecast (two prices: a return"
                            + (f"; then {self._min_support} support rows and the horizon {self.spec.horizon} + 1 "
                               "that realises their targets)" if self._min_support else ")"))
        if self.last_date is not None and panel.dates[0] <= self.last_date:
            raise DataError(f"{panel.source}: starts {panel.dates[0]}, not after the engine's last bar {self.last_date}")
        cols = panel.asset_index(self.assets)
        fields = [panel.close[:, cols]] + ([a[:, cols] for a in (panel.open, panel.high, panel.low)] if self._ohlc else [])
        for i in range(panel.n_days - 1):  # the forecasts of past bars are needed only by a monitor
            row = self._checked_row(fields, i)
            out = self._advance(*row, panel.dates[i])
            if self.monitor is not None:
                self._snapshot(row[0], self._forecast(*out))
        row = self._checked_row(fields, panel.n_days - 1)
        return self._snapshot(row[0], self._forecast(*self._advance(*row, panel.dates[-1])))

    def _checked_row(self, fields, i):
        checker = self._targets if self.spec.proxy == "garman_klass" else self._features
        return checker.check_bar(*(f[i] for f in fields), *([None] * (4 - len(fields))))

    @property
    def _min_support(self) -> int:
        return min(self.min_history, self.history)

    @property
    def bars_needed(self) -> int:
        """Bars of a gap-free history before the first forecast: two (a return) without a minimum
        support; otherwise the first return's bar, ``min(min_history, history)`` support rows and
        the horizon plus the one-bar embargo that realises their targets."""
        m = self._min_support
        return 2 if m == 0 else 1 + m + self.spec.horizon + 1

    # ------------------------------------------------------------------ persistence
    def copy(self) -> "RiskEngine":
        """An independent engine in the same state.

        Returns
        -------
        RiskEngine
            A copy that shares only the read-only learner.
        """
        other = _copy.copy(self)
        other.assets = list(self.assets)
        other._state = {k: v.copy() for k, v in self._state.items()}
        other._scratch = None
        if self.online_lr:  # a learning engine's weights are part of its state
            other.learner = _copy.deepcopy(self.learner)
            other.forecaster = MetaForecaster(other.learner, self.history, min_history=self.min_history)
        if self.monitor is not None:
            other.monitor = self.monitor.copy()
        other._features = self._features.select(np.arange(len(self.assets)))
        other._targets = self._targets.select(np.arange(len(self.assets)))
        return other

    def state_dict(self) -> dict:
        """The engine's whole state as arrays.

        Returns
        -------
        dict of str to numpy.ndarray
            What ``save`` writes and ``load_state_dict`` restores.
        """
        meta = {"format": STATE_FORMAT, "t": self.t, "last_date": None if self.last_date is None else str(self.last_date),
                "assets": self.assets, "adopted": self._adopted, "history": self.history,
                "min_history": self.min_history, "readapt_every": self.readapt_every, "online_lr": self.online_lr,
                "weights": self.weights, "monitor": self.monitor is not None,
                "horizon": self.spec.horizon, "features": self.spec.features.names, "proxy": self.spec.proxy}
        out = {"meta": np.array(json.dumps(meta))}
        out.update({f"state.{k}": v.copy() for k, v in self._by_asset(self._state, len(self.assets)).items()})
        out.update({f"features.{k}": v for k, v in self._features.state_dict().items()})
        out.update({f"targets.{k}": v for k, v in self._targets.state_dict().items()})
        if self.online_lr:
            out.update({f"learner.{k}": v.detach().cpu().numpy().copy() for k, v in self.learner.state_dict().items()})
        if self.monitor is not None:
            out.update({f"monitor.{k}": v for k, v in self.monitor.state_dict().items()})
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore a state taken by ``state_dict``.

        Parameters
        ----------
        state : dict of str to numpy.ndarray
            From an engine over the same model (weights, features, horizon, history); every check
            runs before anything changes.
        """
        try:
            meta = json.loads(str(state["meta"]))
            new_state = {k: np.array(state[f"state.{k}"]) for k in _ARRAYS}
            feats = {k[len("features."):]: np.array(v) for k, v in state.items() if k.startswith("features.")}
            targs = {k[len("targets."):]: np.array(v) for k, v in state.items() if k.startswith("targets.")}
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"not a RiskEngine state: {exc}") from None
        mine = self.state_dict()
        mine_meta = json.loads(str(mine["meta"]))
        for key in ("format", "weights", "history", "min_history", "readapt_every", "online_lr", "horizon", "features",
                    "proxy", "monitor"):
            if meta.get(key, False if key == "monitor" else None) != mine_meta[key]:
                raise ValueError(f"the saved engine state has {key} = {meta.get(key)!r}, this engine "
                                 f"{mine_meta[key]!r}: restore it into an engine over the same model and settings")
        n = len(meta["assets"])
        fresh = self._by_asset(self._fresh(n), n)
        for k, v in new_state.items():
            if v.shape != fresh[k].shape or v.dtype != fresh[k].dtype:
                raise ValueError(f"the saved engine state's {k} has shape {v.shape} {v.dtype}, expected "
                                 f"{fresh[k].shape} {fresh[k].dtype}")
        learned = {k[len("learner."):]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("learner.")}
        if self.online_lr:
            try:
                self.learner.load_state_dict(learned)
            except (RuntimeError, KeyError) as exc:
                raise ValueError(f"the saved engine state's learned weights do not fit this model: {exc}") from None
        monitor = self.monitor
        if monitor is not None:  # restored into a copy: the engine's own stays as it was until every check passed
            monitor = monitor.copy()
            monitor.load_state_dict({k[len("monitor."):]: v for k, v in state.items() if k.startswith("monitor.")})
        features = self._stream_from(self.spec.features, feats, n)
        targets = self._stream_from(self._target_features(), targs, n)
        self._features, self._targets, self.monitor = features, targets, monitor
        self._state, self.assets, self.t = self._kernel_layout(new_state), list(meta["assets"]), int(meta["t"])
        self._names = tuple(self.assets)
        self.last_date = None if meta["last_date"] is None else np.datetime64(meta["last_date"], "D")
        self._adopted = int(meta["adopted"])

    @staticmethod
    def _stream_from(spec, saved: dict, n: int) -> StreamingFeatures:
        stream = StreamingFeatures.from_state_dict(spec, saved, "the saved engine state's feature stream")
        if stream.n_assets != n:
            raise ValueError(f"the saved engine state's feature stream holds {stream.n_assets} assets, its state {n}")
        return stream

    def save(self, path) -> None:
        """Write the state (not the model) atomically, as NumPy .npz.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        """
        buf = io.BytesIO()
        np.savez(buf, **self.state_dict())
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path, model, **kw) -> "RiskEngine":
        """An engine in a saved state; continuing it gives the outputs of the engine never stopped.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by ``save``.
        model : str, os.PathLike or torch.nn.Module
            The model the state was taken over (a model directory or learner, as in ``from_model``).
        **kw
            ``from_model``'s options (history, spec, min_history, readapt_every, online_lr, monitor).

        Returns
        -------
        RiskEngine
            The engine as it was saved.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                state = {k: z[k] for k in z.files}
            meta = json.loads(str(state["meta"]))
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ValueError(f"{path}: not a saved RiskEngine state (damaged or another file): {exc}") from None
        kw = {k: v for k, v in kw.items() if v is not None}  # unset: the saved engine's settings
        kw.setdefault("history", meta.get("history"))
        kw.setdefault("min_history", meta.get("min_history", 0))
        kw.setdefault("readapt_every", meta.get("readapt_every", 1))
        kw.setdefault("online_lr", meta.get("online_lr", 0.0))
        engine = cls.from_model(model, meta.get("assets"), **kw)
        engine.load_state_dict(state)
        return engine
