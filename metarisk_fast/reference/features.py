"""Plain NumPy twins of every rolling-volatility estimator in metarisk_fast.features, with the same
names and signatures: each formula written out directly from its paper (no running sums, no ring
buffers), for the tests to compare the fused kernels against. Inputs (T,) or (T, N); any dtype
NumPy's log takes (float64, long double). Value at row t from rows <= t; NaN until the window is
full and wherever the window holds a NaN."""
from __future__ import annotations

import numpy as np


def _2d(x):
    x = np.asarray(x)
    return (x[:, None], True) if x.ndim == 1 else (x, False)


def _shape_like(out, one_d):
    return out[:, 0] if one_d else out


def rolling(x, window: int, stat):
    """stat over each trailing window of rows: stat(windows) with windows (T - w + 1, N, w)."""
    out = np.full(x.shape, np.nan, dtype=np.result_type(x, np.float64))
    if len(x) >= window:
        win = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)
        val = stat(win)
        out[window - 1:] = np.where(np.isnan(win).any(axis=-1), np.nan, val)
    return out


def _mean(win):
    return win.mean(axis=-1)


def _var(win):
    return win.var(axis=-1, ddof=1)


def log_returns(close):
    """Twin of features.log_returns: log(p_t / p_{t-1}) in plain NumPy, NaN in the first row."""
    c, one_d = _2d(close)
    r = np.full(c.shape, np.nan, dtype=np.result_type(c, np.float64))
    r[1:] = np.log(c[1:] / c[:-1])
    return _shape_like(r, one_d)


def close_to_close_vol(close, window: int):
    """Twin of features.close_to_close_vol: the rolling standard deviation of log returns over
    ``window`` days, in plain NumPy."""
    c, one_d = _2d(close)
    return _shape_like(np.sqrt(rolling(log_returns(c), window, _var)), one_d)


def _ewma(close, lam, term, first):
    """s_t = lam s_{t-1} + (1 - lam) term(r_t), s = first(r) at an asset's first return; a NaN
    return leaves s unchanged (and that row NaN). Returns sqrt(s)."""
    c, one_d = _2d(close)
    r = log_returns(c)
    s = np.full(c.shape[1], np.nan)
    out = np.full(c.shape, np.nan)
    for t in range(len(c)):  # a recursion: one row after another
        ok = ~np.isnan(r[t])
        x = r[t, ok]
        s[ok] = np.where(np.isnan(s[ok]), first(x), lam * s[ok] + (1 - lam) * term(x))
        out[t, ok] = np.sqrt(s[ok])
    return _shape_like(out, one_d)


def ewma_vol(close, lam: float = 0.94):
    """s_t = lam s_{t-1} + (1 - lam) r_t^2, s = r^2 at an asset's first return."""
    return _ewma(close, lam, lambda x: x ** 2, lambda x: x ** 2)


def downside_vol(close, lam: float = 0.94):
    """d_t = lam d_{t-1} + (1 - lam) min(r_t, 0)^2, d = r^2 / 2 at an asset's first return."""
    return _ewma(close, lam, lambda x: np.minimum(x, 0.0) ** 2, lambda x: 0.5 * x ** 2)


def parkinson_vol(high, low, window: int):
    """Parkinson (1980): sqrt(mean(ln(H/L)^2) / (4 ln 2))."""
    h, one_d = _2d(high)
    return _shape_like(np.sqrt(rolling(np.log(h / _2d(low)[0]) ** 2, window, _mean) / (4 * np.log(2))), one_d)


def garman_klass_vol(open, high, low, close, window: int):
    """Garman & Klass (1980): sqrt(mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2))."""
    (o, one_d), h, l, c = _2d(open), _2d(high)[0], _2d(low)[0], _2d(close)[0]
    term = 0.5 * np.log(h / l) ** 2 - (2 * np.log(2) - 1) * np.log(c / o) ** 2
    return _shape_like(np.sqrt(rolling(term, window, _mean)), one_d)


def _rogers_satchell_variance(o, h, l, c, window):
    term = np.log(h / c) * np.log(h / o) + np.log(l / c) * np.log(l / o)
    return rolling(term, window, _mean)


def rogers_satchell_vol(open, high, low, close, window: int):
    """Rogers & Satchell (1991): sqrt(mean(ln(H/C) ln(H/O) + ln(L/C) ln(L/O)))."""
    (o, one_d), h, l, c = _2d(open), _2d(high)[0], _2d(low)[0], _2d(close)[0]
    return _shape_like(np.sqrt(_rogers_satchell_variance(o, h, l, c, window)), one_d)


def yang_zhang_vol(open, high, low, close, window: int):
    """Yang & Zhang (2000): sqrt(V_O + k V_C + (1 - k) V_RS), V_O the sample variance of overnight
    returns ln(O_t / C_{t-1}), V_C that of open-to-close returns ln(C_t / O_t) (not close-to-close),
    k = 0.34 / (1.34 + (w + 1) / (w - 1))."""
    (o, one_d), h, l, c = _2d(open), _2d(high)[0], _2d(low)[0], _2d(close)[0]
    overnight = np.full(c.shape, np.nan, dtype=np.result_type(c, np.float64))
    overnight[1:] = np.log(o[1:] / c[:-1])
    k = 0.34 / (1.34 + (window + 1) / (window - 1))
    v = (rolling(overnight, window, _var) + k * rolling(np.log(c / o), window, _var)
         + (1 - k) * _rogers_satchell_variance(o, h, l, c, window))
    return _shape_like(np.sqrt(v), one_d)


__all__ = ["log_returns", "close_to_close_vol", "ewma_vol", "downside_vol", "parkinson_vol", "garman_klass_vol",
           "rogers_satchell_vol", "yang_zhang_vol", "rolling"]
