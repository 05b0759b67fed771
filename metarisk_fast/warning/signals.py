"""Stress events and the early-warning scores, every value at day t computed from data up to t.

Events (from prices alone), on an index (the equal-weighted one, or the first principal
portfolio's): day t is labelled when the index falls at least ``drawdown`` below its level at t
within the next ``horizon`` days ("drawdown"), and in the "drawdown_or_vol" definition also when
its 21-day realised volatility jumps within that horizon into the top decile of its own past
(above the 90th percentile of the values up to t, from below it at t). A label is known only
``horizon`` days later.

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
- the index's own volatility: its annualised realised volatility over 21 days (vol_level) and
  63 days (vol_63), and its EWMA volatility (RiskMetrics, lambda 0.94; ewma_vol);
- novelty: the distance from day t's cross-section of volatility states (each asset's log 21-day
  over 252-day realised variance) to the nearest state of days t - ``memory`` .. t - 22;
- forecast jump (with a trained variance model): the mean over assets of the change of the log
  variance forecast over the last 5 days (each forecast at t from data up to t).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .. import features
from ..evaluation.risk import ANNUAL



@njit(cache=True, error_model="numpy")
def bar_returns(close, last_close, logret):
    """One bar: each asset's log return into logret (N,) (0 for a missing price or a ratio that
    underflows) and the equal-weighted index's simple return, the mean of the assets' (a missing
    price: no return). The batch (index_level) and the stream (StressScore) both call it, so their
    log returns are the same bits: NumPy's vectorised log and the scalar one differ in the last
    place on AVX-512 CPUs, and the turbulence would inherit that."""
    N = close.shape[0]
    simple = 0.0
    for i in range(N):
        ratio = close[i] / last_close[i]
        logret[i] = 0.0
        if np.isfinite(ratio):
            simple += ratio - 1.0
            if ratio > 0:
                logret[i] = np.log(ratio)
    return simple / N


@njit(cache=True, error_model="numpy")
def _index_panel(close):
    T, N = close.shape
    level, logret = np.ones(T), np.zeros((T, N))
    for t in range(1, T):
        level[t] = level[t - 1] * (1.0 + bar_returns(close[t], close[t - 1], logret[t]))
    return level, logret


def index_level(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index level, daily log returns (T, N)) of the equal-weighted index: each day the mean of
    the assets' simple returns (a missing price: no return that day), bar by bar (bar_returns)."""
    return _index_panel(np.ascontiguousarray(close, np.float64))


def index_log_returns(index: np.ndarray) -> np.ndarray:
    """The index's daily log returns (0 on the first day)."""
    r = np.zeros_like(index)
    r[1:] = np.log(index[1:] / index[:-1])
    return r


def realised_vol(index: np.ndarray, window: int = 21) -> np.ndarray:
    """Annualised realised volatility of the index's log returns over the last ``window`` days."""
    r = index_log_returns(index)
    c = np.concatenate([[0.0], np.cumsum(r * r)])
    out = np.full(len(index), np.nan)
    out[window:] = np.sqrt((c[window + 1:] - c[1:-window]) / window * ANNUAL)
    return out


EWMA_LAMBDA = 0.94  # RiskMetrics' daily decay
EWMA_START = 63  # days before the index's EWMA volatility is reported (its start then weighs 0.94^63 = 2 %)


def ewma_vol(index: np.ndarray) -> np.ndarray:
    """The index's annualised RiskMetrics EWMA volatility (features.ewma_vol, lambda EWMA_LAMBDA,
    the features' own recursion); NaN for the first EWMA_START days."""
    vol = features.ewma_vol(np.asarray(index, np.float64), EWMA_LAMBDA) * np.sqrt(ANNUAL)
    vol[:EWMA_START] = np.nan
    return vol


def index_scores(index: np.ndarray) -> dict[str, np.ndarray]:
    """The scores of an index's own volatility: 21- and 63-day realised, EWMA."""
    return {"vol_level": realised_vol(index, 21), "vol_63": realised_vol(index, 63), "ewma_vol": ewma_vol(index)}


def principal_index(close: np.ndarray, window: int = 250, every: int = 21) -> np.ndarray:
    """The level of the first principal portfolio: each day the assets' simple returns (missing:
    none) weighted by the largest eigenvector of the covariance of the previous ``window`` days'
    log returns, its negative entries set to 0, summing to 1, refreshed every ``every`` days
    (equal weights until the first window fills). A second index for the stress events."""
    _, logret = index_level(close)
    simple = np.expm1(logret)
    T, N = simple.shape
    weights = np.full((T, N), 1.0 / N)
    for t in range(window + 1, T, every):  # a loop over refreshes, each one eigendecomposition
        top = np.linalg.eigh(np.cov(logret[t - window:t], rowvar=False))[1][:, -1]
        top = np.maximum(top * np.sign(top.sum()), 0.0)
        if top.sum() > 0:
            weights[t:t + every] = top / top.sum()
    level = np.ones(T)
    level[1:] = np.cumprod(1.0 + (simple[1:] * weights[1:]).sum(axis=1))
    return level


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


EVENTS = ("drawdown_or_vol", "drawdown")  # the stress event definitions; the first is the default


def stress_labels(index: np.ndarray, drawdown: float = 0.15, horizon: int = 60, vol_start: int = 252,
                  events: str = EVENTS[0]) -> np.ndarray:
    """Labels (T,) float: 1 where a stress event (``events``, one of EVENTS) follows within
    ``horizon`` days, 0 where none does, NaN for the last ``horizon`` days (not known yet)."""
    if events not in EVENTS:
        raise ValueError(f"events must be one of {', '.join(EVENTS)}, got {events!r}")
    T = len(index)
    fut_min = np.full(T, np.nan)
    for k in range(1, horizon + 1):  # a loop over the horizon, not over days
        ahead = np.full(T, np.nan)
        ahead[:T - k] = index[k:]
        fut_min = np.fmin(fut_min, ahead)
    y_dd = fut_min / index - 1.0 <= -drawdown
    if events == "drawdown":
        y = y_dd.astype(np.float64)
        y[max(T - horizon, 0):] = np.nan
        return y
    vol = realised_vol(index)
    top = _expanding_quantile(vol, 0.9, vol_start)
    fut_vol = np.full(T, np.nan)
    for k in range(1, horizon + 1):
        ahead = np.full(T, np.nan)
        ahead[:T - k] = vol[k:]
        fut_vol = np.fmax(fut_vol, ahead)
    y_vol = (fut_vol > top) & (vol <= top)
    y = (y_dd | y_vol).astype(np.float64)
    y[max(T - horizon, 0):] = np.nan
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
RIDGE_FLOOR = 1e-14  # the ridge of a flat window (no move at all: its scores are NaN, its inverse stays finite)
REFRESH = 250  # bars between exact recomputations of the incremental inverse
BLOCK = 8  # basis vectors advanced by one subspace-iteration step a bar (all of them when top_k <= BLOCK)


@njit(cache=True, error_model="numpy")
def new_monitor(n_assets, window, top_k, block=BLOCK):
    """The state of a covariance monitor: the window's rows (a ring, W x N), their sum, the inverse
    of scatter + ridge (N x N), [ridge, sum of squares], the tracked top-k eigenvectors as rows
    (k x N), their projections of the window's rows (k x W), and counters (bars seen, bars since
    the last exact recomputation, the next block of the subspace sweep, the block size)."""
    counts = np.zeros(4, np.int64)
    counts[3] = block
    return (np.zeros((window, n_assets)), np.zeros(n_assets), np.zeros((n_assets, n_assets)), np.zeros(2),
            np.zeros((top_k, n_assets)), np.zeros((top_k, window)), counts)


@njit(cache=True, error_model="numpy")
def _refresh(ring, s1, binv, scal, basis, proj, first):
    """Exact recomputation from the window: its sum and sum of squares, the ridge from its mean
    variance and the inverse; on the ``first`` (the window just filled) also the basis, from a full
    eigendecomposition. Later the basis only follows by subspace iteration: re-seeding it
    periodically would put a sawtooth into the absorption ratio (its tracking error restarting
    from zero) that its shift score would read as a signal."""
    W, N = ring.shape
    s1[:] = ring.sum(axis=0)
    scal[1] = np.sum(ring * ring)
    scatter = ring.T @ ring
    mu = s1 / W
    cov = (scatter - W * np.outer(mu, mu)) / (W - 1)
    scal[0] = max(RIDGE * np.trace(cov) / N, RIDGE_FLOOR)
    binv[:, :] = np.linalg.inv(scatter + (W - 1) * scal[0] * np.eye(N))
    if first:
        vecs = np.linalg.eigh(cov)[1]
        basis[:, :] = np.ascontiguousarray(vecs[:, N - basis.shape[0]:].T)
        proj[:, :] = basis @ ring.T


@njit(cache=True, error_model="numpy")
def _advance_block(basis, proj, ring, mu, mq, lo, hi):
    """One step of subspace iteration for the basis rows lo:hi: z = cov q from the window's
    projections (cov q = (X'(X q) - W mu (mu' q)) / (W - 1), O(W N c) for c rows), projected off
    the other rows (once: the basis is near-invariant, so little cancels; its orthogonality stays
    at 1e-14 over thousands of bars) and orthonormalised by Cholesky QR twice; their projections
    follow. A block that comes out rank-deficient (a flat window) is kept as it was."""
    W = ring.shape[0]
    z = (np.ascontiguousarray(proj[lo:hi]) @ ring - W * np.outer(mq[lo:hi], mu)) / (W - 1)
    g = z @ basis.T  # (c, k): overlaps with every row; the block's own are not projected out
    g[:, lo:hi] = 0.0
    z = z - g @ basis
    for _ in range(2):
        try:
            low = np.linalg.cholesky(z @ z.T)
        except Exception:  # noqa: BLE001 - numba raises a plain LinAlgError here
            return
        z = np.linalg.inv(low) @ z
    basis[lo:hi] = z
    proj[lo:hi] = z @ ring.T


@njit(cache=True, fastmath=True, error_model="numpy")
def _three_products(m, a, b, c):
    """(m a, m b, m c) for a symmetric m in one read-only pass over its rows (3 dot products per
    row): the turbulence's and the Woodbury update's products with the inverse. A loop, not BLAS:
    for 3 columns BLAS packs the whole matrix first and takes twice as long."""
    N = m.shape[0]
    ma, mb, mc = np.empty(N), np.empty(N), np.empty(N)
    for j in range(N):
        row = m[j]
        sa, sb, sc = 0.0, 0.0, 0.0
        for i in range(N):
            sa += row[i] * a[i]
            sb += row[i] * b[i]
            sc += row[i] * c[i]
        ma[j], mb[j], mc[j] = sa, sb, sc
    return ma, mb, mc


@njit(cache=True, error_model="numpy")
def monitor_step(r, ring, s1, binv, scal, basis, proj, counts):
    """One bar: the turbulence and absorption ratio of returns r (N,) against the window of the
    previous rows (NaN until it is full), then r joins the window.

    The inverse of the ridged scatter follows the window by one rank-two Woodbury update (the row
    in, the row out) that shares its pass over the inverse with the turbulence's products. The
    absorption ratio reads the tracked basis through its projections of the window's rows
    (trace(Q' cov Q) = (|X Q|^2 - W |mu' Q|^2) / (W - 1)), which change by one row a bar; each
    bar advances b (the block, counts[3]) basis rows by one subspace-iteration step, so a sweep
    over k rows takes k / b bars. Cost per bar O(N^2 + (W + k) N b), no N x N x k product. The
    ratio read off a tracked basis is a lower bound of the exact one (Ky Fan), as close as the
    tracking keeps up: with b >= k (a full step a bar) to about 2e-3 on a 500-asset, 250-bar
    window, with b = 8 to about 2e-2 (bench/test_early_warning.py). The inverse is recomputed
    exactly every REFRESH bars."""
    W, N = ring.shape
    k = basis.shape[0]
    t = counts[0]
    slot = t % W
    old = ring[slot].copy()
    turb, absorb = np.nan, np.nan
    if t >= W:
        mu = s1 / W
        bm, br, bo = _three_products(binv, mu, r, old)
        # (cov + lam I)^-1 d, cov + lam I = (B - W mu mu') / (W - 1), B = scatter + (W - 1) lam I
        d = r - mu
        bd = br - bm
        turb = (d @ ((W - 1) * (bd + W * bm * (mu @ bd) / (1.0 - W * (mu @ bm))))) / N
        mq = basis @ mu
        top = np.sum(proj * proj) - W * (mq @ mq)
        absorb = top / (scal[1] - W * (mu @ mu))
        lo = counts[2] * counts[3]
        hi = min(lo + counts[3], k)
        _advance_block(basis, proj, ring, mu, mq, lo, hi)
        counts[2] = 0 if hi >= k else counts[2] + 1
        if counts[1] + 1 < REFRESH:  # B <- B + r r' - old old': Woodbury with the 2 x 2 capacitance
            m00, m01, m11 = 1.0 + r @ br, r @ bo, -1.0 + old @ bo
            det = m00 * m11 - m01 * m01
            a = (m11 * br - m01 * bo) / det
            b = (m00 * bo - m01 * br) / det
            for i in range(N):  # in place: no N x N temporary
                for j in range(N):
                    binv[i, j] -= br[i] * a[j] + bo[i] * b[j]
    ring[slot] = r
    s1 += r - old
    scal[1] += r @ r - old @ old
    proj[:, slot] = basis @ r
    counts[0] = t + 1
    if t + 1 >= W:
        if t + 1 == W or counts[1] + 1 >= REFRESH:
            _refresh(ring, s1, binv, scal, basis, proj, t + 1 == W)
            counts[1] = 0
        else:
            counts[1] += 1
    return turb, absorb


@njit(cache=True, error_model="numpy")
def _monitor_panel(r, window, top_k, block=BLOCK):
    T, N = r.shape
    state = new_monitor(N, window, top_k, block)
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
