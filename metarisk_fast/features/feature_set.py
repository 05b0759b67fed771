"""FeatureSet (one fused pass over a panel, into new arrays or a given buffer) and its streaming
twin StreamingFeatures (one bar at a time, the same step function, resumable from a file)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numba
import numpy as np

from .._checks import check_int
from . import _kernels as K

RANGE_FEATURES = ("parkinson", "garman_klass", "rogers_satchell", "yang_zhang")


def _panel(x, name: str) -> tuple[np.ndarray, bool]:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (T,) or (T, N), got {x.shape}")
    one_d = x.ndim == 1
    x = np.ascontiguousarray(x.reshape(-1, 1) if one_d else x, dtype=np.float64)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x, one_d


MAX_WINDOW = 100_000  # rows; each window keeps a ring of this many values per asset


def _check_window(window, name="window", minimum: int = 2) -> int:
    return check_int(name, window, minimum, MAX_WINDOW)


def _check_lambda(lam) -> float:
    lam = float(lam)
    if not 0.0 < lam < 1.0:
        raise ValueError(f"EWMA lambda must be in (0, 1), got {lam}")
    return lam


@dataclass(frozen=True)
class FeatureSet:
    """A named set of features computed together in one pass over the data.

    Every feature is a daily volatility in log-return units (not annualised), at each row from
    the rows up to it.

    Parameters
    ----------
    cc_windows : tuple of int
        Windows (rows) of the close-to-close volatilities.
    ewma_lambdas : tuple of float
        Decays in (0, 1) of the EWMA volatilities (RiskMetrics: 0.94).
    range_window : int
        The window of the range estimators (Parkinson, Garman-Klass, Rogers-Satchell, Yang-Zhang).
    range_features : tuple of str
        Which range estimators to compute (needs open, high, low); empty: none.
    downside_lambdas : tuple of float
        Decays of EWMAs of the squared negative returns (the leverage effect: variance rises more
        after a fall than after a rise), after the plain EWMAs.

    Examples
    --------
    >>> fs = FeatureSet(cc_windows=(5, 21, 63), ewma_lambdas=(0.94,), range_window=21)
    >>> out = fs.compute(close=c, open=o, high=h, low=l)   # {name: (T, N) array}
    """

    cc_windows: tuple[int, ...] = (5, 21, 63)
    ewma_lambdas: tuple[float, ...] = (0.94,)
    range_window: int = 21
    range_features: tuple[str, ...] = RANGE_FEATURES
    downside_lambdas: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "cc_windows", tuple(_check_window(w, "cc window") for w in self.cc_windows))
        object.__setattr__(self, "ewma_lambdas", tuple(_check_lambda(x) for x in self.ewma_lambdas))
        object.__setattr__(self, "downside_lambdas", tuple(_check_lambda(x) for x in self.downside_lambdas))
        # a range mean over one day is the day's estimator; Yang-Zhang's sample variances need two
        _check_window(self.range_window, "range_window", 2 if "yang_zhang" in self.range_features else 1)
        unknown = set(self.range_features) - set(RANGE_FEATURES)
        if unknown:
            raise ValueError(f"unknown range features {sorted(unknown)}; choose from {RANGE_FEATURES}")
        object.__setattr__(self, "range_features",
                           tuple(f for f in RANGE_FEATURES if f in self.range_features))

    @property
    def names(self) -> list[str]:
        w = self.range_window
        return (["log_return"] + [f"cc_vol_{x}" for x in self.cc_windows]
                + [f"ewma_vol_{lam:g}" for lam in self.ewma_lambdas]
                + [f"downside_vol_{lam:g}" for lam in self.downside_lambdas]
                + [f"{f}_vol_{w}" for f in self.range_features])

    @property
    def needs_ohlc(self) -> bool:
        return bool(self.range_features)

    @property
    def warmup(self) -> int:
        """Rows before every feature is defined (the longest window, +1 for returns)."""
        return max([*self.cc_windows, self.range_window if self.needs_ohlc else 1]) + 1

    def _args(self):
        want = np.array([f in self.range_features for f in RANGE_FEATURES], dtype=np.bool_)
        lams = np.array(self.ewma_lambdas + self.downside_lambdas, dtype=np.float64)
        downside = np.arange(len(lams)) >= len(self.ewma_lambdas)
        return (np.array(self.cc_windows, dtype=np.int64), lams, downside, int(self.range_window), want,
                len(self.names))

    def _inputs(self, close, open, high, low):
        c, one_d = _panel(close, "close")
        if not self.needs_ohlc:
            return c, c, c, c, one_d
        if open is None or high is None or low is None:
            raise ValueError(f"range features {self.range_features} need open, high and low prices")
        o, h, lo = (_panel(x, n)[0] for x, n in ((open, "open"), (high, "high"), (low, "low")))
        for x, n in ((o, "open"), (h, "high"), (lo, "low")):
            if x.shape != c.shape:
                raise ValueError(f"{n} has shape {x.shape} but close has {c.shape}")
        return o, h, lo, c, one_d

    def compute_array(self, close, open=None, high=None, low=None, *, skip_log_return=False,
                      out=None) -> np.ndarray:
        """Every feature in one array.

        Parameters
        ----------
        close : array_like
            (T,) or (T, N) closes (positive, NaN: no price).
        open, high, low : array_like, optional
            The same shape; needed by the range features only (without them a set that has range
            features raises).
        skip_log_return : bool
            Leave out the log returns (one output less to write).
        out : numpy.ndarray, optional
            A C-contiguous float64 array of the result's shape to fill instead of a new one (a
            backtest that recomputes reuses its buffer and skips the page faults of fresh memory).

        Returns
        -------
        numpy.ndarray
            (F, T, N) float64 (N = 1 for a 1-D close), features in the order of ``names``.
        """
        o, h, lo, c, _ = self._inputs(close, open, high, low)
        cc_w, lams, downside, wr, want, n_out = self._args()
        shape = (n_out - int(skip_log_return), *c.shape)
        if out is None:
            out = np.empty(shape)
        elif (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float64
              or not out.flags.c_contiguous or not out.flags.writeable):
            raise ValueError(f"out must be a writeable C-contiguous float64 array of shape {shape}, got "
                             f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
        bads = K.feature_panel(o, h, lo, c, cc_w, lams, downside, wr, want, int(skip_log_return),
                               _block_width(c.shape[1]), out)
        _raise_bad(bads)
        return out

    def compute(self, close, open=None, high=None, low=None) -> dict[str, np.ndarray]:
        """Every feature, by name.

        Parameters
        ----------
        close : array_like
            (T,) or (T, N) closes (positive, NaN: no price).
        open, high, low : array_like, optional
            The same shape; needed by the range features only (without them a set that has range
            features raises).

        Returns
        -------
        dict of str to numpy.ndarray
            Each feature shaped like ``close``, NaN before its window fills.
        """
        one_d = np.ndim(close) == 1
        outs = self.compute_array(close, open, high, low)
        return {n: (o[:, 0] if one_d else o) for n, o in zip(self.names, outs)}

    def stream(self, n_assets: int) -> "StreamingFeatures":
        """This set's streaming twin, fed one bar at a time (the batch kernel's step).

        Parameters
        ----------
        n_assets : int
            Assets per bar.

        Returns
        -------
        StreamingFeatures
            A stream that has seen no bar.
        """
        return StreamingFeatures(self, n_assets)


def _block_width(n_assets: int) -> int:
    """Assets per parallel block: one block per thread, so each row's slice is a long contiguous
    run the hardware prefetcher follows (short runs are slower despite their cache-resident
    rings), capped so the rings stay within L3."""
    return max(1, min(4096, -(-n_assets // numba.get_num_threads())))


def _raise_bad(bads: np.ndarray) -> None:
    bads = np.atleast_2d(bads)
    hit = bads[bads[:, 0] > 0]
    if len(hit):
        first = hit[np.lexsort((hit[:, 2], hit[:, 1]))][0]
        raise ValueError(f"non-positive or infinite price at row {first[1]}, asset column {first[2]} "
                         f"({int(hit[:, 0].sum())} such values); prices must be > 0 (NaN marks missing)")
    hit = bads[bads[:, 3] > 0]
    if len(hit):
        first = hit[np.lexsort((hit[:, 5], hit[:, 4]))][0]
        raise ValueError(f"high < low at row {first[4]}, asset column {first[5]} "
                         f"({int(hit[:, 3].sum())} such rows)")


@dataclass
class StreamingFeatures:
    """The streaming twin of a FeatureSet: ``update(bar)`` is O(1) per asset.

    It agrees with the batch result (the same kernel step). The state can be saved and restored.

    Parameters
    ----------
    spec : FeatureSet
        The features.
    n_assets : int
        Assets per bar.
    t : int
        Bars seen so far.
    _state : tuple of numpy.ndarray, optional
        The running window state (internal: build streams with ``FeatureSet.stream`` or
        ``from_state_dict``).
    """

    spec: FeatureSet
    n_assets: int
    t: int = 0
    _state: tuple = field(default=(), repr=False)

    def __post_init__(self):
        if int(self.n_assets) < 1:
            raise ValueError(f"n_assets must be >= 1, got {self.n_assets}")
        self._kernel_args = self.spec._args()  # the spec is frozen: its kernel arguments once
        if not self._state:
            cc_w, lams, _, wr, want, _ = self._kernel_args
            self._state = K.new_state(int(self.n_assets), cc_w, lams.shape[0], wr, bool(want.any()))

    def update(self, close, open=None, high=None, low=None) -> dict[str, np.ndarray]:
        """Consume one bar.

        Parameters
        ----------
        close : array_like
            (n_assets,) closes (positive, NaN: no price).
        open, high, low : array_like, optional
            The same shape; needed by the range features only (without them a set that has range
            features raises).

        Returns
        -------
        dict of str to numpy.ndarray
            Each feature's (n_assets,) value at this bar.
        """
        return dict(zip(self.spec.names, self.update_array(close, open, high, low)))

    def update_array(self, close, open=None, high=None, low=None) -> np.ndarray:
        """``update`` as one array.

        Parameters
        ----------
        close : array_like
            (n_assets,) closes (positive, NaN: no price).
        open, high, low : array_like, optional
            The same shape; needed by the range features only (without them a set that has range
            features raises).

        Returns
        -------
        numpy.ndarray
            (F, n_assets) float64 in the order of ``spec.names``.
        """
        return self.update_checked(*self.check_bar(close, open, high, low))

    def update_checked(self, close, open, high, low) -> np.ndarray:
        """``update_array`` of a bar that ``check_bar`` returned: no second check.

        Parameters
        ----------
        close, open, high, low : numpy.ndarray
            (n_assets,) float64, as ``check_bar`` returns them (the close again for open, high and
            low where the set has no range feature).

        Returns
        -------
        numpy.ndarray
            (F, n_assets) float64 in the order of ``spec.names``.
        """
        cc_w, lams, downside, wr, want, n_out = self._kernel_args
        row, _ = K.feature_step(self.t, open, high, low, close, cc_w, lams, downside, wr, want, n_out, *self._state)
        self.t += 1
        return row

    def step_args(self) -> tuple:
        """What a compiled caller passes to ``features._kernels.feature_step`` for the next bar.

        Returns
        -------
        tuple
            (bars seen so far, the kernel's arguments of the set, the state arrays, updated in
            place by the step); call ``advance`` after the step.
        """
        return self.t, self._kernel_args, self._state

    def advance(self) -> None:
        """Count a bar that a compiled caller stepped through ``step_args``."""
        self.t += 1

    def select(self, columns) -> "StreamingFeatures":
        """A stream of some of the assets, each with its state so far.

        Parameters
        ----------
        columns : array_like of int
            The asset columns to keep, in the new order.

        Returns
        -------
        StreamingFeatures
            A new stream; this one is unchanged.
        """
        columns = np.asarray(columns, np.int64)
        return StreamingFeatures(self.spec, len(columns), self.t, tuple(a[..., columns].copy() for a in self._state))

    def extend(self, n_new: int) -> "StreamingFeatures":
        """This stream with more assets, appended with a fresh state.

        A fresh state is that of an asset that has had no price so far (a fresh window is all NaN,
        as after only missing bars).

        Parameters
        ----------
        n_new : int
            Assets to append.

        Returns
        -------
        StreamingFeatures
            A new stream; this one is unchanged.
        """
        fresh = StreamingFeatures(self.spec, n_new)._state
        return StreamingFeatures(self.spec, self.n_assets + n_new, self.t,
                                 tuple(np.concatenate([a, b], axis=-1) for a, b in zip(self._state, fresh)))

    def check_bar(self, close, open=None, high=None, low=None, *, assets=None, where=None):
        """Check a bar before the state is touched (a rejected bar leaves the stream as it was).

        Checked: shapes, real-number dtypes, prices > 0 or NaN, high >= low. A message names the
        column (or ``assets[column]``) and the row (or ``where``).

        Parameters
        ----------
        close : array_like
            (n_assets,) closes (positive, NaN: no price).
        open, high, low : array_like, optional
            The same shape; needed by the range features only (without them a set that has range
            features raises).
        assets : sequence of str, optional
            Asset names for the messages.
        where : str, optional
            The bar's name for the messages, such as its date (default: its row number).

        Returns
        -------
        tuple of numpy.ndarray
            (close, open, high, low) as (n_assets,) float64 arrays, the close again for a missing
            open, high or low.
        """
        where = f"row {self.t}" if where is None else where
        column = (lambda j: f"asset column {j}") if assets is None else (lambda j: f"asset '{assets[j]}'")
        bar = []
        for x, n in ((close, "close"), (open, "open"), (high, "high"), (low, "low")):
            if x is None:
                bar.append(None)
                continue
            a = np.asarray(x)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"{n} bar must hold real numbers, got dtype {a.dtype}")
            a = np.ascontiguousarray(a, dtype=np.float64).reshape(-1)
            if a.shape[0] != self.n_assets:
                raise ValueError(f"{n} bar has {a.shape[0]} values, expected {self.n_assets} assets")
            j, count = K.bad_prices(a)  # one compiled pass: a bar is checked every time it streams
            if count:
                raise ValueError(f"non-positive or infinite price at {where}, {column(j)} "
                                 f"({count} such values); prices must be > 0 (NaN marks missing)")
            bar.append(a)
        c, o, h, lo = bar
        if self.spec.needs_ohlc:
            if o is None or h is None or lo is None:
                raise ValueError("range features need open, high and low in every bar")
            crossed = h < lo
            if crossed.any():
                raise ValueError(f"high < low at {where}, {column(int(np.argmax(crossed)))} "
                                 f"({int(crossed.sum())} such rows)")
        else:
            o = h = lo = c
        return c, o, h, lo

    STATE_KEYS = ("r_ring", "term_ring", "cc", "ewma", "means", "yz", "prev_close")

    def state_dict(self) -> dict[str, np.ndarray]:
        """The stream's state as arrays.

        Returns
        -------
        dict of str to numpy.ndarray
            Copies: bars seen and every window's running sums.
        """
        return {"t": np.array(self.t), **{k: v.copy() for k, v in zip(self.STATE_KEYS, self._state)}}

    @classmethod
    def from_state_dict(cls, spec: FeatureSet, saved, where: str = "the saved state") -> "StreamingFeatures":
        """A stream in a saved state.

        Parameters
        ----------
        spec : FeatureSet
            The features the state must be of (checked).
        saved : mapping of str to numpy.ndarray
            A ``state_dict`` or an open .npz.
        where : str
            The state's name for the messages.

        Returns
        -------
        StreamingFeatures
            The stream as it was saved.
        """
        try:
            state = tuple(np.array(saved[k]) for k in cls.STATE_KEYS)
            t = int(saved["t"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{where}: not a saved feature state ({exc})") from None
        fresh = cls(spec, state[-1].shape[0])._state
        if any(a.shape != b.shape for a, b in zip(state, fresh)):
            raise ValueError(f"{where} belongs to another feature set (windows, lambdas or assets differ)")
        return cls(spec, state[-1].shape[0], t, state)

    def save(self, path) -> None:
        """Write the stream's state atomically, as NumPy .npz.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        """
        buf = io.BytesIO()
        np.savez(buf, **self.state_dict())
        from .._files import atomic_write_bytes
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, spec: FeatureSet, path) -> "StreamingFeatures":
        """A stream in the state ``save`` wrote.

        Parameters
        ----------
        spec : FeatureSet
            The features the state must be of (checked).
        path : str or os.PathLike
            A file written by ``save``.

        Returns
        -------
        StreamingFeatures
            The stream as it was saved.
        """
        try:
            with np.load(path) as z:
                saved = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{path}: not a saved feature state (damaged or another file): {exc}") from None
        return cls.from_state_dict(spec, saved, str(path))
