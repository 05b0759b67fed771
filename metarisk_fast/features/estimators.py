"""One estimator at a time: each runs the fused kernel with one feature switched on (the formulas
are in the package docstring; NumPy twins in metarisk_fast.reference.features)."""
from __future__ import annotations

import numpy as np

from .feature_set import FeatureSet


def _single(spec: FeatureSet, name_index: int, close, open=None, high=None, low=None):
    one_d = np.ndim(close) == 1
    skip = name_index > 0
    out = spec.compute_array(close, open, high, low, skip_log_return=skip)[name_index - skip]
    return out[:, 0] if one_d else out


LOG_RETURNS = FeatureSet(cc_windows=(), ewma_lambdas=(), range_features=())  # the log return alone


def range_feature_set(feature: str, window: int) -> FeatureSet:
    """The feature set of one range estimator (its output is the set's second feature)."""
    return FeatureSet(cc_windows=(), ewma_lambdas=(), range_window=window, range_features=(feature,))


def log_returns(close):
    """Log returns r_t = ln(C_t / C_{t-1}).

    Parameters
    ----------
    close : array_like
        (T,) or (T, N) closes (positive; NaN: no price).

    Returns
    -------
    numpy.ndarray
        Shaped like ``close``; NaN at row 0.
    """
    return _single(LOG_RETURNS, 0, close)


def close_to_close_vol(close, window: int):
    """The sample standard deviation (ddof = 1) of the last ``window`` log returns.

    Parameters
    ----------
    close : array_like
        (T,) or (T, N) closes (positive; NaN: no price).
    window : int
        Days per window.

    Returns
    -------
    numpy.ndarray
        Shaped like the prices: daily volatility in log-return units (not annualised); NaN until the window is full.
    """
    return _single(FeatureSet(cc_windows=(window,), ewma_lambdas=(), range_features=()), 1, close)


def ewma_vol(close, lam: float = 0.94):
    """The RiskMetrics EWMA volatility of log returns.

    Parameters
    ----------
    close : array_like
        (T,) or (T, N) closes (positive; NaN: no price).
    lam : float
        The decay in (0, 1) (RiskMetrics: 0.94).

    Returns
    -------
    numpy.ndarray
        Shaped like the prices: daily volatility in log-return units (not annualised); NaN at row 0.
    """
    return _single(FeatureSet(cc_windows=(), ewma_lambdas=(lam,), range_features=()), 1, close)


def downside_vol(close, lam: float = 0.94):
    """The EWMA volatility of the negative log returns (positive returns count as 0).

    Parameters
    ----------
    close : array_like
        (T,) or (T, N) closes (positive; NaN: no price).
    lam : float
        The decay in (0, 1) (RiskMetrics: 0.94).

    Returns
    -------
    numpy.ndarray
        Shaped like the prices: daily volatility in log-return units (not annualised); NaN at row 0.
    """
    return _single(FeatureSet(cc_windows=(), ewma_lambdas=(), range_features=(), downside_lambdas=(lam,)), 1, close)


def _range(feature, window, open, high, low, close):
    return _single(range_feature_set(feature, window), 1, close, open, high, low)


def parkinson_vol(high, low, window: int):
    """The rolling Parkinson (high-low range) volatility.

    Parameters
    ----------
    high, low : array_like
        (T,) or (T, N) daily highs and lows (positive, high >= low).
    window : int
        Days per window.

    Returns
    -------
    numpy.ndarray
        Shaped like the prices: daily volatility in log-return units (not annualised); NaN until the window is full.
    """
    return _range("parkinson", window, high, high, low, high)


def garman_klass_vol(open, high, low, close, window: int):
    """The rolling Garman-Klass volatility from open, high, low and close.

    Parameters
    ----------
    open, high, low, close : array_like
        (T,) or (T, N) prices of each day (positive; NaN: no price).
    window : int
        Days per window.

    Returns
    -------
    numpy.ndarray
        Shaped like the prices: daily volatility in log-return units (not annualised); NaN until the window is full.
    """
    return _range("garman_klass", window, open, high, low, close)


def rogers_satchell_vol(open, high, low, close, window: int):
    """The rolling Rogers-Satchell volatility from open, high, low and close (drift-robust).

    Parameters
    ----------
    open, high, low, close : array_like
        (T,) or (T, N) prices of each day (positive; NaN: no price).
    window : int
        Days per window.

    Returns
    -------
    numpy.ndarray
        Shaped like the prices: daily volatility in log-return units (not annualised); NaN until the window is full.
    """
    return _range("rogers_satchell", window, open, high, low, close)


def yang_zhang_vol(open, high, low, close, window: int):
    """The rolling Yang-Zhang volatility from open, high, low and close (overnight jumps included).

    Parameters
    ----------
    open, high, low, close : array_like
        (T,) or (T, N) prices of each day (positive; NaN: no price).
    window : int
        Days per window.

    Returns
    -------
    numpy.ndarray
        Shaped like the prices: daily volatility in log-return units (not annualised); NaN until the window is full.
    """
    return _range("yang_zhang", window, open, high, low, close)
