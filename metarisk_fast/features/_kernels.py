"""Numba kernels of the rolling-volatility features: one fused pass over a (T, N) panel.

Layout: time-major C-ordered panels. Assets are split into blocks processed in parallel; inside a
block the loop runs over time and, for each feature, over the block's assets, so every inner
loop reads and writes contiguous memory and vectorises.

Numerics (see DESIGN.md, "Rolling variance"):
- rolling variances use the exact replace-one update of Welford's recurrence
  (mean' = mean + (x_new - x_old)/w; M2' = M2 + (x_new - x_old)(x_new - mean' + x_old - mean)),
  never sum / sum-of-squares, and are clamped at 0;
- rolling means of the non-negative range terms use running sums;
- both are recomputed exactly from the window (kept in ring buffers) every `w` rows, when the
  running value falls below 1 % of its peak since the last recomputation (a spike leaving the
  window: the cancellation case, so no residue survives it), and when the last NaN leaves.
A NaN input makes NaN exactly the outputs whose window contains it.

The same step function advances the batch kernel and the streaming twin, so the two agree.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

CANCEL = 1e-2  # recompute when the running moment drops below this fraction of its peak
LN2 = math.log(2.0)

# rows of the per-asset state array, per rolling variance (cc windows and the two YZ variances)
V_MEAN, V_M2, V_PEAK, V_NAN = 0, 1, 2, 3
# rows per rolling mean (Parkinson, Garman-Klass, Rogers-Satchell)
M_SUM, M_PEAK, M_NAN = 0, 1, 2
# range terms kept in rings: ln(H/L)^2, GK term, RS term, overnight, open-to-close
T_U2, T_GK, T_RS, T_O, T_C = 0, 1, 2, 3, 4


# fdlibm's log (Sun Microsystems, 1993): x = m 2^k with m in [sqrt(2)/2, sqrt(2)), f = m - 1,
# s = f / (2 + f), log(1 + f) = 2 atanh(s) by a polynomial in s^2; under 1 ulp. Written on bit
# patterns in separate passes so the compiler vectorises it (libm's log stays scalar and
# dominated the kernel: 7.1 vs 2.8 ns per value here).
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
LG1, LG2, LG3, LG4 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, 2.222219843214978396e-01
LG5, LG6, LG7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01
TINY = 2.2250738585072014e-308  # smallest normal double


@njit(cache=True, error_model="numpy")
def _log_into(x, out, ibuf):
    """out = log(x) elementwise; ibuf: (2, n) int64 scratch. Zero, negative, subnormal, inf and
    NaN inputs take libm's log (same results as math.log)."""
    n = x.shape[0]
    xb = x.view(np.int64)
    mant = ibuf[0]
    expo = ibuf[1]
    for j in range(n):
        b = xb[j]
        hx = ((b >> 32) & 0xffffffff) + (0x3ff00000 - 0x3fe6a09e)
        expo[j] = (hx >> 20) - 0x3ff
        mant[j] = (((hx & 0x000fffff) + 0x3fe6a09e) << 32) | (b & 0xffffffff)
    m = mant.view(np.float64)
    for j in range(n):
        f = m[j] - 1.0
        hfsq = 0.5 * f * f
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        r = w * (LG2 + w * (LG4 + w * LG6)) + z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
        k = float(expo[j])
        out[j] = s * (hfsq + r) + k * LN2_LO - hfsq + f + k * LN2_HI
    for j in range(n):
        xj = x[j]
        if not (xj >= TINY and xj < np.inf):
            out[j] = math.log(xj)


@njit(cache=True, inline="always", error_model="numpy")
def _swap(nan_row, j, a, b):
    """Enter a and drop b from asset j's window: NaN-count bookkeeping shared by the rolling
    variance and the rolling mean. Returns (a, b with NaN as 0, whether b was NaN, NaN count)."""
    an = np.isnan(a)
    bn = np.isnan(b)
    nanc = nan_row[j] + an - bn
    nan_row[j] = nanc
    return (0.0 if an else a), (0.0 if bn else b), bn, nanc


@njit(cache=True, inline="always", error_model="numpy")
def _needs_recompute(peak_row, j, value, bn, nanc):
    """Track the running moment's peak; True where the window is NaN-free and either the last
    NaN just left or the moment fell below CANCEL of its peak (cancellation)."""
    peak = max(peak_row[j], value)
    peak_row[j] = peak
    return (nanc == 0.0) & (bn | (value < CANCEL * peak))


@njit(cache=True, error_model="numpy")
def _window_sum(ring, t, w, j):
    """Sum of asset j's values at rows t - w + 1 .. t (ring indexed by row % len)."""
    R = ring.shape[0]
    s = 0.0
    for k in range(t - w + 1, t + 1):
        s += ring[k % R, j]
    return s


@njit(cache=True, inline="always", error_model="numpy")
def _var_update(st, xn, xo, inv_w, flags):
    """Replace xo by xn in each asset's window; st: (4, nb). Sets flags where the exact
    recomputation is needed (cancellation, or the last NaN just left)."""
    for j in range(xn.shape[0]):
        a0, b0, bn, nanc = _swap(st[V_NAN], j, xn[j], xo[j])
        d = a0 - b0
        mean = st[V_MEAN, j]
        mnew = mean + d * inv_w
        m2 = st[V_M2, j] + d * (a0 - mnew + b0 - mean)
        st[V_MEAN, j] = mnew
        st[V_M2, j] = m2
        flags[j] = _needs_recompute(st[V_PEAK], j, m2, bn, nanc)


@njit(cache=True, error_model="numpy")
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


@njit(cache=True, error_model="numpy")
def _window_sums(ring, t, w, acc):
    """acc[j] = sum of every asset's values at rows t - w + 1 .. t, rows outer and assets inner
    so the ring is read contiguously."""
    R = ring.shape[0]
    acc[:] = 0.0
    for k in range(t - w + 1, t + 1):
        row = ring[k % R]
        for j in range(ring.shape[1]):
            acc[j] += row[j]


@njit(cache=True, error_model="numpy")
def _var_recompute_all(st, ring, t, w, acc):
    """_var_recompute for every asset whose window holds no NaN (the periodic recomputation)."""
    R = ring.shape[0]
    nb = ring.shape[1]
    _window_sums(ring, t, w, acc)
    for j in range(nb):
        acc[j] /= w
    m2 = np.zeros(nb)
    for k in range(t - w + 1, t + 1):
        row = ring[k % R]
        for j in range(nb):
            d = row[j] - acc[j]
            m2[j] += d * d
    for j in range(nb):
        if st[V_NAN, j] == 0.0:
            st[V_MEAN, j] = acc[j]
            st[V_M2, j] = m2[j]
            st[V_PEAK, j] = m2[j]


@njit(cache=True, inline="always", error_model="numpy")
def _mean_update(st, xn, xo, flags):
    for j in range(xn.shape[0]):
        a0, b0, bn, nanc = _swap(st[M_NAN], j, xn[j], xo[j])
        s = st[M_SUM, j] + (a0 - b0)
        st[M_SUM, j] = s
        flags[j] = _needs_recompute(st[M_PEAK], j, s, bn, nanc)


@njit(cache=True, error_model="numpy")
def _mean_recompute(st, ring, t, w, j):
    s = _window_sum(ring, t, w, j)
    st[M_SUM, j] = s
    st[M_PEAK, j] = s


@njit(cache=True, error_model="numpy")
def _mean_recompute_all(st, ring, t, w, acc):
    _window_sums(ring, t, w, acc)
    for j in range(ring.shape[1]):
        if st[M_NAN, j] == 0.0:
            st[M_SUM, j] = acc[j]
            st[M_PEAK, j] = acc[j]


@njit(cache=True, error_model="numpy")
def _recompute_flagged(st, ring, t, w, flags, is_var, acc):
    """Exact recomputation: every asset every w rows (vectorised), else only the flagged ones."""
    if t % w == 0:
        if is_var:
            _var_recompute_all(st, ring, t, w, acc)
        else:
            _mean_recompute_all(st, ring, t, w, acc)
        return
    for j in range(flags.shape[0]):
        if flags[j]:
            if is_var:
                _var_recompute(st, ring, t, w, j)
            else:
                _mean_recompute(st, ring, t, w, j)


@njit(cache=True, error_model="numpy")
def _step(t, o, h, l, c, cc_w, lams, wr, want, r_ring, term_ring, cc_st, ew_st, m_st, yz_st,
          prev_c, r, flags, acc, fscr, iscr, outs, bad):
    """Advance one row t for nb assets. o/h/l/c: the row's prices (h, l, o are ignored when no
    range feature is wanted). want: [parkinson, garman_klass, rogers_satchell, yang_zhang].
    outs rows: log return, cc vol per window, EWMA vol per lambda, then the wanted range vols.
    Non-positive or infinite prices: count in bad[0], first (row, asset) in bad[1:3];
    high < low: count in bad[3], first (row, asset) in bad[4:6]. fscr (4, nb) float and
    iscr (2, nb) int64 are scratch for the logs."""
    nb = c.shape[0]
    ncc = cc_w.shape[0]
    ranged = want[0] or want[1] or want[2] or want[3]
    Rr = r_ring.shape[0]
    pos = t % Rr
    Rt = term_ring.shape[1]
    tpos = t % Rt
    ov = term_ring[T_O, tpos]
    ratio = fscr[0]
    for j in range(nb):
        cj = c[j]
        if cj <= 0.0 or np.isinf(cj):
            if bad[0] == 0:
                bad[1] = t
                bad[2] = j
            bad[0] += 1
    for j in range(nb):
        ratio[j] = c[j] / prev_c[j]
    _log_into(ratio, r, iscr)
    if ranged:
        for j in range(nb):
            ratio[j] = o[j] / prev_c[j]
        _log_into(ratio, ov, iscr)
    for j in range(nb):
        prev_c[j] = c[j]
    r_ring[pos, :] = r
    outs[0, :] = r
    for m in range(ncc):  # close-to-close variances; R > w so row t never overwrites row t - w
        w = cc_w[m]
        st = cc_st[m]
        _var_update(st, r, r_ring[(t - w) % Rr], 1.0 / w, flags)
        _recompute_flagged(st, r_ring, t, w, flags, True, acc)
        out = outs[1 + m]
        for j in range(nb):
            out[j] = np.nan if st[V_NAN, j] > 0.0 else math.sqrt(max(st[V_M2, j], 0.0) / (w - 1))
    for k in range(lams.shape[0]):
        lam = lams[k]
        s = ew_st[k]
        out = outs[1 + ncc + k]
        for j in range(nb):
            x = r[j]
            if np.isnan(x):
                out[j] = np.nan
            else:
                sj = s[j]
                sj = x * x if np.isnan(sj) else lam * sj + (1.0 - lam) * x * x
                s[j] = sj
                out[j] = math.sqrt(sj)
    if not ranged:
        return
    u2 = term_ring[T_U2, tpos]
    gk = term_ring[T_GK, tpos]
    rs = term_ring[T_RS, tpos]
    oc = term_ring[T_C, tpos]
    k_gk = 2.0 * LN2 - 1.0
    for j in range(nb):
        hj, lj, oj = h[j], l[j], o[j]
        if oj <= 0.0 or hj <= 0.0 or lj <= 0.0 or np.isinf(oj) or np.isinf(hj) or np.isinf(lj):
            if bad[0] == 0:
                bad[1] = t
                bad[2] = j
            bad[0] += 1
        if hj < lj:
            if bad[3] == 0:
                bad[4] = t
                bad[5] = j
            bad[3] += 1
    # three logs of ratios; the others follow without cancellation (L <= C <= H)
    la, lb, lco = fscr[1], fscr[2], fscr[3]
    for j in range(nb):
        ratio[j] = h[j] / c[j]
    _log_into(ratio, la, iscr)
    for j in range(nb):
        ratio[j] = l[j] / c[j]
    _log_into(ratio, lb, iscr)
    for j in range(nb):
        ratio[j] = c[j] / o[j]
    _log_into(ratio, lco, iscr)
    for j in range(nb):
        a = la[j]
        b = lb[j]
        lc = lco[j]
        lu = a - b
        u2[j] = lu * lu
        gk[j] = 0.5 * lu * lu - k_gk * lc * lc
        rs[j] = a * (a + lc) + b * (b + lc)
        oc[j] = lc
    opos = (t - wr) % Rt  # Rt = wr + 1: the row leaving the window
    for f in range(3):  # Parkinson, Garman-Klass, Rogers-Satchell means (RS also feeds YZ)
        if not (want[f] or (f == 2 and want[3])):
            continue
        st = m_st[f]
        _mean_update(st, term_ring[f, tpos], term_ring[f, opos], flags)
        _recompute_flagged(st, term_ring[f], t, wr, flags, False, acc)
    if want[3]:
        for f in range(2):  # overnight and open-to-close variances
            st = yz_st[f]
            _var_update(st, term_ring[T_O + f, tpos], term_ring[T_O + f, opos], 1.0 / wr, flags)
            _recompute_flagged(st, term_ring[T_O + f], t, wr, flags, True, acc)
    slot = 1 + ncc + lams.shape[0]
    inv_wr = 1.0 / wr
    for f in range(3):
        if not want[f]:
            continue
        scale = inv_wr / (4.0 * LN2) if f == 0 else inv_wr
        st = m_st[f]
        out = outs[slot]
        slot += 1
        for j in range(nb):
            out[j] = np.nan if st[M_NAN, j] > 0.0 else math.sqrt(max(st[M_SUM, j], 0.0) * scale)
    if want[3]:
        kyz = 0.34 / (1.34 + (wr + 1.0) / (wr - 1.0))
        out = outs[slot]
        so, sc, srs = yz_st[0], yz_st[1], m_st[2]
        for j in range(nb):
            if so[V_NAN, j] > 0.0 or sc[V_NAN, j] > 0.0 or srs[M_NAN, j] > 0.0:
                out[j] = np.nan
            else:
                out[j] = math.sqrt(max(so[V_M2, j], 0.0) / (wr - 1) + kyz * max(sc[V_M2, j], 0.0) / (wr - 1)
                                   + (1.0 - kyz) * max(srs[M_SUM, j], 0.0) * inv_wr)


@njit(cache=True, error_model="numpy")
def new_state(n_assets, cc_w, n_lams, wr, ranged):
    """Fresh state: every window full of NaN (so outputs are NaN until it fills)."""
    R = 2
    for m in range(cc_w.shape[0]):
        R = max(R, cc_w[m] + 1)
    r_ring = np.full((R, n_assets), np.nan)
    Rt = wr + 1 if ranged else 1
    term_ring = np.full((5, Rt, n_assets), np.nan)
    cc_st = np.zeros((cc_w.shape[0], 4, n_assets))
    for m in range(cc_w.shape[0]):
        cc_st[m, V_NAN] = cc_w[m]
    ew_st = np.full((n_lams, n_assets), np.nan)
    m_st = np.zeros((3, 3, n_assets))
    m_st[:, M_NAN] = wr
    yz_st = np.zeros((2, 4, n_assets))
    yz_st[:, V_NAN] = wr
    prev_c = np.full(n_assets, np.nan)
    return r_ring, term_ring, cc_st, ew_st, m_st, yz_st, prev_c


@njit(cache=True, parallel=True, error_model="numpy")
def feature_panel(o, h, l, c, cc_w, lams, wr, want, n_out, first_out, n_blocks):
    """All requested features of a (T, N) panel in one pass; returns (outs (F, T, N), bad), where
    outs holds the kernel's outputs from index first_out on (1 drops the log returns)."""
    T, N = c.shape
    outs = np.empty((n_out - first_out, T, N))
    ranged = want[0] or want[1] or want[2] or want[3]
    bounds = np.linspace(0, N, n_blocks + 1).astype(np.int64)
    bads = np.zeros((n_blocks, 6), np.int64)
    for blk in prange(n_blocks):
        j0, j1 = bounds[blk], bounds[blk + 1]
        nb = j1 - j0
        if nb == 0:
            continue
        r_ring, term_ring, cc_st, ew_st, m_st, yz_st, prev_c = new_state(nb, cc_w, lams.shape[0], wr, ranged)
        row = np.empty((n_out, nb))
        r = np.empty(nb)
        acc = np.empty(nb)
        fscr = np.empty((4, nb))
        iscr = np.empty((2, nb), np.int64)
        flags = np.zeros(nb, np.bool_)
        bad = np.zeros(6, np.int64)
        for t in range(T):
            cr = c[t, j0:j1]  # a row slice of a C-ordered panel: contiguous for numba too
            if ranged:
                _step(t, o[t, j0:j1], h[t, j0:j1], l[t, j0:j1], cr, cc_w, lams, wr, want, r_ring, term_ring,
                      cc_st, ew_st, m_st, yz_st, prev_c, r, flags, acc, fscr, iscr, row, bad)
            else:
                _step(t, cr, cr, cr, cr, cc_w, lams, wr, want, r_ring, term_ring, cc_st, ew_st, m_st, yz_st,
                      prev_c, r, flags, acc, fscr, iscr, row, bad)
            for f in range(first_out, n_out):
                for j in range(nb):
                    outs[f - first_out, t, j0 + j] = row[f, j]
        bad[2] += j0
        bad[5] += j0
        bads[blk] = bad
    return outs, bads


@njit(cache=True, error_model="numpy")
def feature_step(t, o, h, l, c, cc_w, lams, wr, want, n_out, r_ring, term_ring, cc_st, ew_st,
                 m_st, yz_st, prev_c):
    """One bar of the streaming twin: the same _step as the batch kernel."""
    nb = c.shape[0]
    row = np.empty((n_out, nb))
    bad = np.zeros(6, np.int64)
    _step(t, o, h, l, c, cc_w, lams, wr, want, r_ring, term_ring, cc_st, ew_st, m_st, yz_st,
          prev_c, np.empty(nb), np.zeros(nb, np.bool_), np.empty(nb), np.empty((4, nb)),
          np.empty((2, nb), np.int64), row, bad)
    return row, bad
