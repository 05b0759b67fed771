"""The rolling-window state of the feature kernels: running moments per asset (Welford's replace-one
update for variances, running sums for means), their exact recomputation from the ring buffers of
the window, and the NaN bookkeeping. The numerics are described in _kernels.py."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

CANCEL = 1e-4  # recompute when the running moment drops below this fraction of its peak
RECOMPUTE_ROWS = 256  # periodic exact recomputation about this often (a multiple of the window)

# rows of the per-asset state array, per rolling variance (cc windows and the two YZ variances)
V_MEAN, V_M2, V_PEAK, V_NAN = 0, 1, 2, 3
# rows per rolling mean (Parkinson, Garman-Klass, Rogers-Satchell)
M_SUM, M_PEAK, M_NAN = 0, 1, 2
# range terms kept in rings: ln(H/L)^2, GK term, RS term, overnight, open-to-close
T_U2, T_GK, T_RS, T_O, T_C = 0, 1, 2, 3, 4


@njit(cache=True, error_model="numpy", _nrt=False)
def _window_sum(ring, t, w, j):
    """Sum of asset j's values at rows t - w + 1 .. t (ring indexed by row % len)."""
    R = ring.shape[0]
    s = 0.0
    for k in range(t - w + 1, t + 1):
        s += ring[k % R, j]
    return s


@njit(cache=True, error_model="numpy", _nrt=False)
def _var_recompute(st, ring, t, w, j):
    """Two-pass mean and M2 of the window ending at row t (ring indexed by row % len)."""
    R = ring.shape[0]
    mean = _window_sum(ring, t, w, j) / w
    m2 = 0.0
    for k in range(t - w + 1, t + 1):
        d = ring[k % R, j] - mean
        m2 += d * d
    st[V_MEAN, j] = mean
    st[V_M2, j] = m2
    st[V_PEAK, j] = m2


@njit(cache=True, error_model="numpy", _nrt=False)
def _window_sums(ring, t, w, acc):
    """acc[j] = sum of every asset's values at rows t - w + 1 .. t, rows outer and assets inner
    so the ring is read contiguously."""
    R = ring.shape[0]
    acc[:] = 0.0
    for k in range(t - w + 1, t + 1):
        row = ring[k % R]
        for j in range(ring.shape[1]):
            acc[j] += row[j]


@njit(cache=True, error_model="numpy", _nrt=False)
def _var_recompute_all(st, ring, t, w, acc):
    """_var_recompute for every asset whose window holds no NaN (the periodic recomputation);
    acc: (2, nb) scratch."""
    R = ring.shape[0]
    nb = ring.shape[1]
    mean, m2 = acc[0], acc[1]
    _window_sums(ring, t, w, mean)
    for j in range(nb):
        mean[j] /= w
    m2[:] = 0.0
    for k in range(t - w + 1, t + 1):
        row = ring[k % R]
        for j in range(nb):
            d = row[j] - mean[j]
            m2[j] += d * d
    for j in range(nb):
        if st[V_NAN, j] == 0.0:
            st[V_MEAN, j] = mean[j]
            st[V_M2, j] = m2[j]
            st[V_PEAK, j] = m2[j]


@njit(cache=True, error_model="numpy", _nrt=False)
def _mean_recompute(st, ring, t, w, j):
    s = _window_sum(ring, t, w, j)
    st[M_SUM, j] = s
    st[M_PEAK, j] = s


@njit(cache=True, error_model="numpy", _nrt=False)
def _mean_recompute_all(st, ring, t, w, acc):
    s = acc[0]
    _window_sums(ring, t, w, s)
    for j in range(ring.shape[1]):
        if st[M_NAN, j] == 0.0:
            st[M_SUM, j] = s[j]
            st[M_PEAK, j] = s[j]




@njit(cache=True, error_model="numpy", _nrt=False)
def _vol(nan_count, moment, scale):
    """sqrt(moment * scale), NaN while the window holds a NaN, never negative."""
    return np.nan if nan_count > 0.0 else math.sqrt(max(moment, 0.0) * scale)


# The small helpers below are plain njit functions that LLVM inlines; Numba's own
# inline="always" (IR level) makes the loops using them stop vectorising. _ln is the exception: too big for LLVM's inliner, it needs inline="always".
@njit(cache=True, error_model="numpy", _nrt=False)
def _enter_leave(nan_a, j, a, b):
    """Enter a and drop b from asset j's window: NaN-count bookkeeping shared by the rolling
    variance and the rolling sum. Returns (a and b with NaN as 0, whether b was NaN, NaN count)."""
    an = np.isnan(a)
    bn = np.isnan(b)
    nanc = nan_a[j] + (1.0 if an else 0.0) - (1.0 if bn else 0.0)
    nan_a[j] = nanc
    return (0.0 if an else a), (0.0 if bn else b), bn, nanc


@njit(cache=True, error_model="numpy", _nrt=False)
def _recompute_due(moment, peak, nanc, left_nan):
    """The window is NaN-free and either its last NaN just left or the running moment fell
    below CANCEL of its peak (cancellation): recompute it exactly."""
    return (nanc == 0.0) & (left_nan | (moment < CANCEL * peak))


@njit(cache=True, error_model="numpy", _nrt=False)
def _finish_update(peak_a, j, moment, bn, nanc, out, scale, write):
    """After asset j's running moment is updated: track its peak, if write out[j] = its vol;
    returns whether a recomputation is due (only counted here: the rare recomputation finds
    the assets again from the stored state, which saved a store per asset and step, ~6 %)."""
    peak = max(peak_a[j], moment)
    peak_a[j] = peak
    if write:
        out[j] = _vol(nanc, moment, scale)
    return _recompute_due(moment, peak, nanc, bn)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _var_update(st, j, a0, b0, bn, nanc, inv_w, out, scale, write):
    """Asset j's replace-one update of a rolling variance (a0 enters, b0 leaves, NaN as 0);
    returns whether it needs the exact recomputation."""
    mean = st[V_MEAN, j]
    d = a0 - b0
    mnew = mean + d * inv_w
    m2 = st[V_M2, j] + d * (a0 - mnew + b0 - mean)
    st[V_MEAN, j] = mnew
    st[V_M2, j] = m2
    return _finish_update(st[V_PEAK], j, m2, bn, nanc, out, scale, write)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _var_step(st, xn, xo, w, out, scale, write, nan_free):
    """Replace xo by xn in every asset's window (st: (4, nb) mean, M2, peak, NaN count; a NaN
    counts and enters the moments as 0) and, if write, out = sqrt(M2 * scale). Returns how many
    NaN-free windows need the exact recomputation (the last NaN just left, or M2 fell below
    CANCEL of its peak: cancellation). nan_free: no window holds or takes a NaN
    (the NaN counts are all 0 and stay 0), so the loop skips their bookkeeping; same result.
    Branch-free loops, so they vectorise."""
    inv_w = 1.0 / w
    nflag = 0
    if nan_free:
        for j in range(xn.shape[0]):
            nflag += _var_update(st, j, xn[j], xo[j], False, 0.0, inv_w, out, scale, write)
    else:
        nan_a = st[V_NAN]
        for j in range(xn.shape[0]):
            a0, b0, bn, nanc = _enter_leave(nan_a, j, xn[j], xo[j])
            nflag += _var_update(st, j, a0, b0, bn, nanc, inv_w, out, scale, write)
    return nflag


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _mean_update(st, j, a0, b0, bn, nanc, out, scale, write):
    """Asset j's update of a running sum; returns whether it needs the exact recomputation."""
    s = st[M_SUM, j] + (a0 - b0)
    st[M_SUM, j] = s
    return _finish_update(st[M_PEAK], j, s, bn, nanc, out, scale, write)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _mean_step(st, xn, xo, out, scale, write, nan_free):
    """_var_step for a running sum (st: (3, nb) sum, peak, NaN count)."""
    nflag = 0
    if nan_free:
        for j in range(xn.shape[0]):
            nflag += _mean_update(st, j, xn[j], xo[j], False, 0.0, out, scale, write)
    else:
        nan_a = st[M_NAN]
        for j in range(xn.shape[0]):
            a0, b0, bn, nanc = _enter_leave(nan_a, j, xn[j], xo[j])
            nflag += _mean_update(st, j, a0, b0, bn, nanc, out, scale, write)
    return nflag


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _recompute(st, ring, t, w, is_var, nflag, acc, out, scale, write):
    """Exact recomputation after a step: every asset every w * (RECOMPUTE_ROWS // w) rows
    (vectorised), else, when the step counted nflag > 0 due, those assets (found again from the
    state and the value that left, still in the ring); rewrites their outputs."""
    nan_row = st[V_NAN] if is_var else st[M_NAN]
    moment = st[V_M2] if is_var else st[M_SUM]
    peak = st[V_PEAK] if is_var else st[M_PEAK]
    if t % (w * max(1, RECOMPUTE_ROWS // w)) == 0:
        if is_var:
            _var_recompute_all(st, ring, t, w, acc)
        else:
            _mean_recompute_all(st, ring, t, w, acc)
        if write:
            for j in range(out.shape[0]):
                out[j] = _vol(nan_row[j], moment[j], scale)
        return
    if nflag == 0:
        return
    left = ring[(t - w) % ring.shape[0]]
    for j in range(left.shape[0]):
        if _recompute_due(moment[j], peak[j], nan_row[j], np.isnan(left[j])):
            if is_var:
                _var_recompute(st, ring, t, w, j)
            else:
                _mean_recompute(st, ring, t, w, j)
            if write:
                out[j] = _vol(nan_row[j], moment[j], scale)
