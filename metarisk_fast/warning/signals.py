"""Stress events and the early-warning scores, every value at day t computed from data up to t.

Events (from prices alone): day t is labelled when the equal-weighted index falls at least
``drawdown`` below its level at t within the next ``horizon`` days, or when its 21-day realised
volatility jumps within that horizon into the top decile of its own past (above the 90th
percentile of the values up to t, from below it at t). A label is known only ``horizon`` days later.

Scores:
- turbulence (Kritzman and Li 2010): the Mahalanobis distance of day t's returns from the mean
  and covariance of the previous ``window`` days (ridged by RIDGE x its mean variance: with more
  assets than days it is singular), divided by the number of assets;
- absorption ratio (Kritzman et al. 2011): the share of total variance the largest fifth of the
  eigenvalues of that covariance explains; the score is its standardised shift (its 15-day mean
  minus its 1-year mean, over the 1-year standard deviation).
  Both follow the window incrementally (monitor_step, shared with warning/stream.py): the
  inverse by Sherman-Morrison updates, the eigenvectors by one subspace-iteration step a bar,
  each recomputed exactly every REFRESH bars;
- realised volatility level: the index's annualised 21-day realised volatility;
- novelty: the distance from day t's cross-section of volatility states (each asset's log 21-day
  over 252-day realised variance) to the nearest state of days t - ``memory`` .. t - 22;
- forecast jump (with a trained variance model): the mean over assets of the change of the log
  variance forecast over the last 5 days (each forecast at t from data up to t).
"""
from __future__ import annotations

import numpy as np
from numba import njit

ANNUAL = 252


def index_level(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index level, daily log returns (T, N)) of the equal-weighted index: each day the mean of
    the assets' simple returns (a missing price: no return that day)."""
    simple = np.zeros_like(close)
    simple[1:] = close[1:] / close[:-1] - 1.0
    simple = np.where(np.isfinite(simple), simple, 0.0)
    level = np.cumprod(1.0 + simple.mean(axis=1))
    logret = np.zeros_like(close)
    logret[1:] = np.log(close[1:] / close[:-1])
    return level, np.where(np.isfinite(logret), logret, 0.0)


def realised_vol(index: np.ndarray, window: int = 21) -> np.ndarray:
    """Annualised realised volatility of the index's log returns over the last ``window`` days."""
    r = np.zeros_like(index)
    r[1:] = np.log(index[1:] / index[:-1])
    c = np.concatenate([[0.0], np.cumsum(r * r)])
    out = np.full(len(index), np.nan)
    out[window:] = np.sqrt((c[window + 1:] - c[1:-window]) / window * ANNUAL)
    return out


@njit(cache=True)
def _expanding_quantile(x, q, start):
    """q-quantile of x[:t+1] for each t >= start (NaN before; NaNs skipped), by insertion into a
    sorted buffer."""
    out = np.full(x.shape[0], np.nan)
    buf = np.empty(x.shape[0])
    n = 0
    for t in range(x.shape[0]):
        v = x[t]
        if not np.isnan(v):
            i = np.searchsorted(buf[:n], v)
            buf[i + 1:n + 1] = buf[i:n].copy()
            buf[i] = v
            n += 1
        if t >= start and n > 0:
            pos = q * (n - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, n - 1)
            out[t] = buf[lo] + (buf[hi] - buf[lo]) * (pos - lo)
    return out


@njit(cache=True)
def expanding_rank(x):
    """The share of x[:t] (the past, NaNs skipped) strictly below x[t], for each t (NaN where x[t]
    is NaN or there is no past yet): a score's percentile within its own history."""
    out = np.full(x.shape[0], np.nan)
    buf = np.empty(x.shape[0])
    n = 0
    for t in range(x.shape[0]):
        v = x[t]
        if np.isnan(v):
            continue
        i = np.searchsorted(buf[:n], v)
        if n > 0:
            out[t] = i / n
        buf[i + 1:n + 1] = buf[i:n].copy()
        buf[i] = v
        n += 1
    return out


def stress_labels(index: np.ndarray, drawdown: float = 0.15, horizon: int = 60, vol_start: int = 252) -> np.ndarray:
    """Labels (T,) float: 1 where a stress event follows within ``horizon`` days, 0 where none
    does, NaN for the last ``horizon`` days (not known yet)."""
    T = len(index)
    fut_min = np.full(T, np.nan)
    for k in range(1, horizon + 1):  # a loop over the horizon, not over days
        ahead = np.full(T, np.nan)
        ahead[:T - k] = index[k:]
        fut_min = np.fmin(fut_min, ahead)
    y_dd = fut_min / index - 1.0 <= -drawdown
    vol = realised_vol(index)
    top = _expanding_quantile(vol, 0.9, vol_start)
    fut_vol = np.full(T, np.nan)
    for k in range(1, horizon + 1):
        ahead = np.full(T, np.nan)
        ahead[:T - k] = vol[k:]
        fut_vol = np.fmax(fut_vol, ahead)
    y_vol = (fut_vol > top) & (vol <= top)
    y = (y_dd | y_vol).astype(np.float64)
    y[T - horizon:] = np.nan
    return y


def episodes(y: np.ndarray, merge_gap: int = 0) -> list[tuple[int, int]]:
    """(first, last) row of each run of labelled days; runs fewer than ``merge_gap`` days apart
    are one episode."""
    on = np.nan_to_num(y) > 0
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] <= merge_gap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


RIDGE = 1e-3  # covariance + RIDGE x its mean variance: a window shorter than the assets is singular
REFRESH = 250  # bars between exact recomputations of the incremental inverse and subspace


@njit(cache=True)
def new_monitor(n_assets, window, top_k):
    """The state of a covariance monitor: the window's rows (a ring), their sum and scatter, the
    inverse of scatter + ridge, the ridge, an orthonormal basis tracking the top-k eigenvectors,
    and counters (bars seen, bars since the last exact recomputation)."""
    return (np.zeros((window, n_assets)), np.zeros(n_assets), np.zeros((n_assets, n_assets)),
            np.zeros((n_assets, n_assets)), np.zeros(1), np.zeros((n_assets, top_k)), np.zeros(2, np.int64))


@njit(cache=True)
def _refresh(ring, s1, s2, binv, lam, q):
    """Exact recomputation: the ridge from the window's mean variance, the inverse, and the
    subspace from a full eigendecomposition."""
    W, N = ring.shape
    mu = s1 / W
    cov = (s2 - W * np.outer(mu, mu)) / (W - 1)
    lam[0] = RIDGE * np.trace(cov) / N + 1e-300
    binv[:, :] = np.linalg.inv(s2 + (W - 1) * lam[0] * np.eye(N))
    vecs = np.linalg.eigh(cov)[1]
    q[:, :] = vecs[:, N - q.shape[1]:]


@njit(cache=True)
def _sherman_morrison(binv, u, sign):
    """binv <- (B + sign u u')^-1 from binv = B^-1."""
    bu = binv @ u
    scale = sign / (1.0 + sign * (u @ bu))
    for i in range(binv.shape[0]):  # in place: no N x N temporary
        for j in range(binv.shape[1]):
            binv[i, j] -= scale * bu[i] * bu[j]


@njit(cache=True)
def _orthonormal(z):
    """An orthonormal basis of z's columns by Cholesky QR, twice (CholeskyQR2: O(N k^2), several
    times faster than Householder QR at N = 500, k = 100, and as orthogonal after the second
    pass); Householder QR where the Gram matrix is not positive definite."""
    for _ in range(2):
        zt = np.ascontiguousarray(z.T)  # contiguous operands: BLAS (a strided view takes a slow loop)
        try:
            low = np.linalg.cholesky(zt @ z)
        except Exception:  # noqa: BLE001 - numba raises a plain LinAlgError here
            return np.ascontiguousarray(np.linalg.qr(z)[0])
        z = np.ascontiguousarray(np.linalg.solve(low, zt).T)
    return z


@njit(cache=True)
def monitor_step(r, ring, s1, s2, binv, lam, q, counts):
    """One bar: the turbulence and absorption ratio of returns r (N,) against the window of the
    previous rows (NaN until it is full), then r joins the window. The inverse of the ridged
    covariance follows the window by Sherman-Morrison updates and the top-k eigenvectors by one
    step of subspace iteration per bar; both are recomputed exactly every REFRESH bars."""
    W, N = ring.shape
    t = counts[0]
    turb, absorb = np.nan, np.nan
    if t >= W:
        mu = s1 / W
        # (cov + lam I)^-1 d, cov + lam I = (B - W mu mu') / (W - 1), B = scatter + (W - 1) lam I
        d = r - mu
        bd, bm = binv @ d, binv @ mu
        turb = (d @ ((W - 1) * (bd + W * bm * (mu @ bd) / (1.0 - W * (mu @ bm))))) / N
        cq = (s2 @ q - W * np.outer(mu, mu @ q)) / (W - 1)  # the one O(N^2 k) product of a bar
        top = np.sum(q * cq)  # trace(q' cov q): the top-k eigenvalues' sum on the tracked basis
        absorb = top / ((np.trace(s2) - W * (mu @ mu)) / (W - 1))
        q[:, :] = _orthonormal(cq)  # one subspace-iteration step for the next bar
    slot = t % W
    old = ring[slot].copy()
    ring[slot] = r
    s1 += r - old
    for i in range(N):  # the scatter's rank-two update in place
        for j in range(N):
            s2[i, j] += r[i] * r[j] - old[i] * old[j]
    counts[0] = t + 1
    if t + 1 >= W:
        if t + 1 == W or counts[1] + 1 >= REFRESH:
            _refresh(ring, s1, s2, binv, lam, q)
            counts[1] = 0
        else:
            _sherman_morrison(binv, r, 1.0)
            _sherman_morrison(binv, old, -1.0)
            counts[1] += 1
    return turb, absorb


@njit(cache=True)
def _monitor_panel(r, window, top_k):
    T, N = r.shape
    state = new_monitor(N, window, top_k)
    turb, absorb = np.full(T, np.nan), np.full(T, np.nan)
    for t in range(T):
        turb[t], absorb[t] = monitor_step(r[t], *state)
    return turb, absorb


def turbulence_and_absorption(logret: np.ndarray, window: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """(turbulence, absorption-ratio shift) per day; NaN until the windows fill. The same step as
    the streaming StressMonitor (warning/stream.py), row after row."""
    N = logret.shape[1]
    turb, ar = _monitor_panel(np.ascontiguousarray(logret, np.float64), window, max(1, N // 5))
    return turb, absorption_shift(ar)


def absorption_shift(ar: np.ndarray) -> np.ndarray:
    """The absorption ratio's 15-day mean minus its 1-year mean, over its 1-year standard deviation."""
    short = _trailing_mean(ar, 15)
    long_mean, long_std = _trailing_mean(ar, ANNUAL), _trailing_std(ar, ANNUAL)
    return (short - long_mean) / np.where(long_std > 0, long_std, np.nan)


def _trailing_mean(x: np.ndarray, w: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    ok = np.isfinite(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    n = np.concatenate([[0], np.cumsum(ok)])
    full = (n[w:] - n[:-w]) == w
    out[w - 1:] = np.where(full, (c[w:] - c[:-w]) / w, np.nan)
    return out


def _trailing_std(x: np.ndarray, w: int) -> np.ndarray:
    m = _trailing_mean(x, w)
    m2 = _trailing_mean(x * x, w)
    return np.sqrt(np.maximum(m2 - m * m, 0.0) * w / (w - 1))


def novelty(logret: np.ndarray, memory: int = 500, recent: int = 21, block: int = 256) -> np.ndarray:
    """The distance from day t's cross-section of volatility states to the nearest state the
    memory holds: those of days t - memory .. t - recent - 1 (root mean square over assets; NaN
    until it is full). The last ``recent`` days are left out, so a new regime stays novel while it
    lasts instead of matching yesterday."""
    r2 = logret ** 2
    short = np.apply_along_axis(_trailing_mean, 0, r2, 21)
    long = np.apply_along_axis(_trailing_mean, 0, r2, ANNUAL)
    state = np.log(np.maximum(short, 1e-12) / np.maximum(long, 1e-12))
    sq = (state ** 2).sum(axis=1)
    T, N = state.shape
    out = np.full(T, np.nan)
    first = ANNUAL - 1 + memory
    for lo in range(first, T, block):  # bounded memory: one block of days against its memories
        days = np.arange(lo, min(lo + block, T))
        slots = days[:, None] - memory + np.arange(memory - recent)  # (days, memory - recent)
        d2 = sq[slots] + sq[days][:, None] - 2.0 * np.einsum("dmn,dn->dm", state[slots], state[days])
        out[days] = np.sqrt(np.maximum(d2.min(axis=1), 0.0) / N)
    return out


def forecast_jump(variance: np.ndarray, lag: int = 5) -> np.ndarray:
    """Mean over assets of log(forecast_t / forecast_{t - lag}) of variance forecasts (T, N) (NaN
    where an asset has none): how fast the forecast risk is rising across the market."""
    logv = np.log(variance)
    change = np.full_like(logv, np.nan)
    change[lag:] = logv[lag:] - logv[:-lag]
    ok = np.isfinite(change)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, change, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
