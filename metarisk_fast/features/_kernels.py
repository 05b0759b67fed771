"""Numba row drivers of the rolling-volatility features: one fused pass over a (T, N) panel.

Layout: time-major C-ordered panels. Assets are split into one block per thread; inside a block
the loop runs over time and, for each feature, over the block's assets, so every inner loop
reads and writes contiguous memory and vectorises. Each row loop is its own compiled function
(see _returns_row). Everything below the parallel loop is compiled without Numba's reference
counting (_nrt=False: these functions never allocate): each row slice otherwise took an atomic
reference on the whole panel, and with two threads slicing the same panels every row that cache
line bounced between the cores (bench/RESULTS.md has the measurement).

Numerics (naive sum / sum-of-squares cancels catastrophically, the trap pandas, polars and
bottleneck have all fallen into):
- rolling variances use the exact replace-one update of Welford's recurrence
  (mean' = mean + (x_new - x_old)/w; M2' = M2 + (x_new - x_old)(x_new - mean' + x_old - mean)),
  never sum / sum-of-squares, and are clamped at 0;
- rolling means of the non-negative range terms use running sums;
- both are recomputed exactly from the window (kept in ring buffers) every w * (256 // w) rows
  (each recomputation costs two passes over the window, so it runs rarely; the update's rounding
  drift over 256 rows is ~1e-14), when the running value
  falls below 1e-4 of its peak since the last recomputation (a spike leaving the window: the
  cancellation case, so no residue survives it; above that the relative error stays ~1e-12),
  and when the last NaN leaves.
A NaN input makes NaN exactly the outputs whose window contains it.

The same step function advances the batch kernel and the streaming twin, so the two agree.
The fast log and the intrinsics are in metarisk_fast/_intrinsics.py, the rolling-window state in _rolling.py.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._intrinsics import TINY, _ln, _ln_f_normal, _ln_finish_normal, _prefetch_read, _prefetch_write
from ._rolling import (M_NAN, M_SUM, T_C, T_GK, T_O, T_RS, T_U2, V_M2, V_NAN, _mean_step, _recompute,
                       _var_step)

LN2 = math.log(2.0)


@njit(cache=True, error_model="numpy", _nrt=False)
def _is_bad_price(x):
    """Non-positive or infinite (NaN marks a missing value and is allowed)."""
    return (x <= 0.0) | (x == np.inf)


@njit(cache=True, error_model="numpy", nogil=True)
def bad_prices(a):
    """(first column, count) of the non-positive or infinite values of a bar (NaN is allowed)."""
    first, count = -1, 0
    for j in range(a.shape[0]):
        if _is_bad_price(a[j]):
            if count == 0:
                first = j
            count += 1
    return first, count


@njit(cache=True, error_model="numpy", _nrt=False)
def _finite_or_nan(x):
    """x, or NaN where x is +-inf: a log return or range term that overflowed (extreme or
    subnormal prices) is treated as missing, so the NaN bookkeeping restores the windows after it
    leaves them."""
    return x if (x - x) == 0.0 else np.nan


@njit(cache=True, error_model="numpy", _nrt=False)
def _record_first(bad, k, t, mask_row):
    """Count the row's bad values in bad[k] and keep the first (row, asset) in bad[k+1:k+3]."""
    for j in range(mask_row.shape[0]):
        if mask_row[j]:
            if bad[k] == 0:
                bad[k + 1] = t
                bad[k + 2] = j
            bad[k] += 1


@njit(cache=True, error_model="numpy", _nrt=False)
def _range_row_special(o, h, l, c, prev_c, r, u2, gk, rs, ov, oc):
    """_range_row's rare path (before prev_c is updated): the counts of bad prices and of assets
    with a NaN price, and the assets with a non-positive close or a ratio that is not a positive
    normal number redone with libm's log, which handles 0, < 0, inf and NaN."""
    nbad = 0
    nnan = 0
    for j in range(c.shape[0]):
        cj, oj, hj, lj, pj = c[j], o[j], h[j], l[j], prev_c[j]
        nbad += _is_bad_price(cj) | _is_bad_price(oj) | _is_bad_price(hj) | _is_bad_price(lj)
        nnan += np.isnan(cj) | np.isnan(oj) | np.isnan(hj) | np.isnan(lj) | np.isnan(pj)
        x0, x1, x2, x3, x4 = _price_ratios(cj, oj, hj, lj, pj)
        if not _fast_logs_ok(cj, x0, x1, x2, x3, x4):
            lc = _finite_or_nan(math.log(x4))
            r[j] = _finite_or_nan(math.log(x0))
            ov[j] = _finite_or_nan(math.log(x1))
            _, gk[j], rs[j] = _range_terms(_finite_or_nan(math.log(x2)), _finite_or_nan(math.log(x3)), lc)
            lu = _finite_or_nan(math.log(hj / lj))  # Parkinson's term needs high and low only
            u2[j] = lu * lu
            oc[j] = lc
    return nbad, nnan


# Each row loop is its own compiled function: inlined into the step, the loops stopped
# vectorising.
@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _returns_row(c, prev_c, r):
    """r = ln(c / prev_c), prev_c = c; returns the counts of bad prices (located on the rare path
    later, so the loop stays branch-free) and of NaN returns."""
    nbad = 0
    nnan = 0
    for j in range(c.shape[0]):
        cj = c[j]
        nbad += _is_bad_price(cj)
        rj = _finite_or_nan(_ln(cj / prev_c[j]))  # an overflowing ratio counts as missing
        nnan += np.isnan(rj)
        r[j] = rj
        prev_c[j] = cj
    return nbad, nnan


@njit(cache=True, error_model="numpy", _nrt=False)
def _price_ratios(cj, oj, hj, lj, pj):
    """C/C-1, O/C-1, H/C, L/C and C/O, whose logs the range row takes: exact divisions (they
    must equal NumPy's)."""
    return cj / pj, oj / pj, hj / cj, lj / cj, cj / oj


@njit(cache=True, error_model="numpy", _nrt=False)
def _is_normal_ratio(x):
    """A positive normal number."""
    return (x >= TINY) & (x < np.inf)


@njit(cache=True, error_model="numpy", _nrt=False)
def _fast_logs_ok(cj, x0, x1, x2, x3, x4):
    """The close is positive and the five ratios are positive normal numbers, so the logs need
    none of their special cases (and, the ratios being positive and finite, every price is)."""
    return ((cj > 0.0) & _is_normal_ratio(x0) & _is_normal_ratio(x1) & _is_normal_ratio(x2)
            & _is_normal_ratio(x3) & _is_normal_ratio(x4))


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _range_terms(a, b, lc):
    """ln(H/L)^2, the Garman-Klass and the Rogers-Satchell terms from a = ln(H/C), b = ln(L/C) and
    lc = ln(C/O); the other logs follow from them without cancellation (L <= C <= H)."""
    lu = a - b
    return lu * lu, 0.5 * lu * lu - (2.0 * LN2 - 1.0) * lc * lc, a * (a + lc) + b * (b + lc)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _range_row(o, h, l, c, prev_c, r, u2, gk, rs, ov, oc):
    """Log return and the five range terms of one row (ln(H/L)^2, Garman-Klass, Rogers-Satchell,
    overnight and open-to-close returns), prev_c = c; returns the counts of bad prices, of
    high < low and of assets with a NaN price (the previous close included)."""
    nsus = 0
    nhl = 0
    for j in range(c.shape[0]):
        cj, oj, hj, lj, pj = c[j], o[j], h[j], l[j], prev_c[j]
        nhl += hj < lj
        # The five logs of _price_ratios share one division for their s = f / (2 + f):
        # D = prod(2 + f_i), s_i = f_i prod_{j != i}(2 + f_j) / D, a few ulp instead of one (the
        # row was bound by its ten divisions). The logs skip their special cases: an asset that
        # fails _fast_logs_ok (a NaN, zero, negative or infinite price) is counted and redone
        # by _range_row_special (the selects would cost every asset, for the rare bad one).
        x0, x1, x2, x3, x4 = _price_ratios(cj, oj, hj, lj, pj)
        nsus += not _fast_logs_ok(cj, x0, x1, x2, x3, x4)
        f0, f1, f2, f3, f4 = _ln_f_normal(x0), _ln_f_normal(x1), _ln_f_normal(x2), _ln_f_normal(x3), _ln_f_normal(x4)
        d0, d1, d2, d3, d4 = 2.0 + f0, 2.0 + f1, 2.0 + f2, 2.0 + f3, 2.0 + f4
        p01 = d0 * d1
        p012 = p01 * d2
        p0123 = p012 * d3
        q34 = d3 * d4
        q234 = d2 * q34
        inv = 1.0 / (p0123 * d4)
        r[j] = _ln_finish_normal(x0, f0, f0 * (inv * (d1 * q234)), 0.0)
        ov[j] = _ln_finish_normal(x1, f1, f1 * (inv * (d0 * q234)), 0.0)
        a = _ln_finish_normal(x2, f2, f2 * (inv * (p01 * q34)), 0.0)
        b = _ln_finish_normal(x3, f3, f3 * (inv * (p012 * d4)), 0.0)
        lc = _ln_finish_normal(x4, f4, f4 * (inv * p0123), 0.0)
        u2[j], gk[j], rs[j] = _range_terms(a, b, lc)
        oc[j] = lc
    nbad = nnan = 0
    if nsus:
        nbad, nnan = _range_row_special(o, h, l, c, prev_c, r, u2, gk, rs, ov, oc)
    for j in range(c.shape[0]):
        prev_c[j] = c[j]
    return nbad, nhl, nnan


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _ewma_row(lam, downside, s, r, out):
    """s = lam s + (1 - lam) q, out = sqrt(s); q = r^2, or for a downside EWMA r^2 where r < 0
    and 0 otherwise. s starts at the first return as q's expectation under symmetry (r^2;
    downside: r^2 / 2) and is unchanged at a NaN."""
    for j in range(r.shape[0]):
        x = r[j]
        sj = s[j]
        x2 = x * x
        if downside:
            q = x2 if x < 0.0 else 0.0
            start = 0.5 * x2
        else:
            q = x2
            start = x2
        new = start if np.isnan(sj) else lam * sj + (1.0 - lam) * q
        xn = np.isnan(x)
        sj = sj if xn else new
        s[j] = sj
        out[j] = np.nan if xn else math.sqrt(sj)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _yang_zhang_row(so, sc, srs, wr, out):
    """sqrt(s_o^2 + k s_c^2 + (1 - k) s_RS^2) from the overnight and open-to-close variances and
    the Rogers-Satchell sum."""
    kyz = 0.34 / (1.34 + (wr + 1.0) / (wr - 1.0))
    inv_wr, inv_wr1 = 1.0 / wr, 1.0 / (wr - 1)
    for j in range(out.shape[0]):
        nanc = so[V_NAN, j] + sc[V_NAN, j] + srs[M_NAN, j]
        out[j] = np.nan if nanc > 0.0 else math.sqrt(
            max(so[V_M2, j], 0.0) * inv_wr1 + kyz * max(sc[V_M2, j], 0.0) * inv_wr1
            + (1.0 - kyz) * max(srs[M_SUM, j], 0.0) * inv_wr)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _step(t, o, h, l, c, cc_w, lams, downside, wr, want, r_ring, term_ring, cc_st, ew_st, m_st, yz_st,
          prev_c, flags, acc, outs, t_out, j0, first_out, bad, clean_windows):
    """Advance one row t for the nb assets of o/h/l/c (h, l, o are ignored when no range feature
    is wanted; want: [parkinson, garman_klass, rogers_satchell, yang_zhang]) and write the row's
    features to outs[:, t_out, j0:j0 + nb] in the order log return, cc vol per window, EWMA vol
    per lambda (downside[k]: a downside EWMA), wanted range vols, without the first `first_out` of
    them.
    Non-positive or infinite prices: count in bad[0], first (row, asset) in bad[1:3];
    high < low: count in bad[3], first (row, asset) in bad[4:6].
    clean_windows: no window holds a NaN at row t - 1 nor loses one at row t (the caller tracks
    the last row with a NaN price); with a NaN-free row t the steps then skip the NaN counts.
    Returns whether row t has a NaN price. Scratch: flags (nb,) bool, acc (2, nb)."""
    nb = c.shape[0]
    j1 = j0 + nb
    ranged = want[0] or want[1] or want[2] or want[3]
    Rr = r_ring.shape[0]
    r = r_ring[t % Rr]
    Rt = term_ring.shape[1]
    tpos = t % Rt
    if ranged:
        nbad, nhl, nnan = _range_row(o, h, l, c, prev_c, r, term_ring[T_U2, tpos], term_ring[T_GK, tpos],
                                     term_ring[T_RS, tpos], term_ring[T_O, tpos], term_ring[T_C, tpos])
    else:
        nhl = 0
        nbad, nnan = _returns_row(c, prev_c, r)
    nan_free = clean_windows and nnan == 0
    if nbad:
        for j in range(nb):
            flags[j] = _is_bad_price(c[j]) | (ranged and (_is_bad_price(o[j]) | _is_bad_price(h[j]) | _is_bad_price(l[j])))
        _record_first(bad, 0, t, flags)
    if nhl:
        for j in range(nb):
            flags[j] = h[j] < l[j]
        _record_first(bad, 3, t, flags)

    slot = -first_out
    if slot == 0:
        out = outs[0, t_out, j0:j1]
        for j in range(nb):
            out[j] = r[j]
        _prefetch_output(outs, 0, t_out + 1, j0, j1)
    slot += 1
    for m in range(cc_w.shape[0]):  # close-to-close variances; R > w so row t never overwrites row t - w
        w = cc_w[m]
        out = outs[slot, t_out, j0:j1]
        _prefetch_output(outs, slot, t_out + 1, j0, j1)
        scale = 1.0 / (w - 1)
        nflag = _var_step(cc_st[m], r, r_ring[(t - w) % Rr], w, out, scale, True, nan_free)
        _recompute(cc_st[m], r_ring, t, w, True, nflag, acc, out, scale, True)
        slot += 1
    for k in range(lams.shape[0]):
        _ewma_row(lams[k], downside[k], ew_st[k], r, outs[slot, t_out, j0:j1])
        _prefetch_output(outs, slot, t_out + 1, j0, j1)
        slot += 1
    if not ranged:
        return nnan > 0

    opos = (t - wr) % Rt  # Rt = wr + 1: the row leaving the window
    inv_wr = 1.0 / wr
    for f in range(3):  # Parkinson, Garman-Klass, Rogers-Satchell means (RS also feeds YZ)
        if not (want[f] or (f == 2 and want[3])):
            continue
        st = m_st[f]
        write = want[f]
        out = outs[slot, t_out, j0:j1] if write else acc[0, :0]
        if write:
            _prefetch_output(outs, slot, t_out + 1, j0, j1)
        scale = inv_wr / (4.0 * LN2) if f == 0 else inv_wr
        nflag = _mean_step(st, term_ring[f, tpos], term_ring[f, opos], out, scale, write, nan_free)
        _recompute(st, term_ring[f], t, wr, False, nflag, acc, out, scale, write)
        if write:
            slot += 1
    if want[3]:
        no_out = acc[0, :0]
        for f in range(2):  # overnight and open-to-close variances
            st = yz_st[f]
            nflag = _var_step(st, term_ring[T_O + f, tpos], term_ring[T_O + f, opos], wr, no_out, 1.0, False, nan_free)
            _recompute(st, term_ring[T_O + f], t, wr, True, nflag, acc, no_out, 1.0, False)
        _yang_zhang_row(yz_st[0], yz_st[1], m_st[2], wr, outs[slot, t_out, j0:j1])
        _prefetch_output(outs, slot, t_out + 1, j0, j1)
    return nnan > 0


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


@njit(cache=True, error_model="numpy")
def _scratch(nb):
    return np.zeros(nb, np.bool_), np.empty((2, nb))


@njit(cache=True, error_model="numpy", _nrt=False)
def _prefetch_output(outs, slot, t, j0, j1):
    """Ask for row t of output slot, columns j0:j1 (if there is such a row), for writing."""
    if t < outs.shape[1]:
        for j in range(j0, j1, 8):
            _prefetch_write(outs[slot, t], j)


@njit(cache=True, error_model="numpy", _nrt=False)
def _prefetch_inputs(t, j0, j1, o, h, l, c, ranged):
    """Ask for the prices step t reads while step t - 1 runs: a block's rows are short runs at a
    long stride, which the hardware prefetcher picks up late. Each output row of step t is asked for right after step t - 1 wrote the same
    feature (_prefetch_output): spread out instead of all at once, the prefetches stopped
    queueing behind each other (~4 %)."""
    for j in range(j0, j1, 8):  # 8 doubles per 64-byte line
        _prefetch_read(c[t], j)
        if ranged:
            _prefetch_read(o[t], j)
            _prefetch_read(h[t], j)
            _prefetch_read(l[t], j)


@njit(cache=True, error_model="numpy", _nrt=False)
def _block_rows(o, h, l, c, j0, j1, cc_w, lams, downside, wr, want, ranged, r_ring, term_ring, cc_st, ew_st, m_st,
                yz_st, prev_c, flags, acc, outs, first_out, bad):
    """Every row of the asset block j0:j1, in time order."""
    T = c.shape[0]
    w_max = wr
    for m in range(cc_w.shape[0]):
        w_max = max(w_max, cc_w[m])
    # The last row with a NaN price or previous close (row 0 has none): a NaN price at row L
    # makes rows L and L + 1 of the returns and range terms NaN, and row L + 1 is flagged too
    # (its previous close). At row t > last_nan + w_max no window holds a NaN and none leaves
    # (the step where the last one leaves still runs the bookkeeping, and recomputes).
    last_nan = 0
    for t in range(T):
        if t + 1 < T:
            _prefetch_inputs(t + 1, j0, j1, o, h, l, c, ranged)
        cr = c[t, j0:j1]  # a row slice of a C-ordered panel: contiguous for numba too
        if ranged:
            has_nan = _step(t, o[t, j0:j1], h[t, j0:j1], l[t, j0:j1], cr, cc_w, lams, downside, wr, want, r_ring,
                            term_ring, cc_st, ew_st, m_st, yz_st, prev_c, flags, acc, outs, t, j0, first_out,
                            bad, t - last_nan > w_max)
        else:
            has_nan = _step(t, cr, cr, cr, cr, cc_w, lams, downside, wr, want, r_ring, term_ring, cc_st, ew_st, m_st,
                            yz_st, prev_c, flags, acc, outs, t, j0, first_out, bad, t - last_nan > w_max)
        if has_nan:
            last_nan = t


@njit(cache=True, parallel=True, error_model="numpy")
def feature_panel(o, h, l, c, cc_w, lams, downside, wr, want, first_out, block, outs):
    """All requested features of a (T, N) panel in one pass into outs (F, T, N) (the kernel's
    outputs from index first_out on: 1 drops the log returns), asset blocks of `block` columns
    in parallel (features._block_width: one per thread). Returns the per-block bad-input counts
    and positions (see _step)."""
    T, N = c.shape
    n_blocks = (N + block - 1) // block
    ranged = want[0] or want[1] or want[2] or want[3]
    bads = np.zeros((n_blocks, 6), np.int64)
    for blk in prange(n_blocks):
        j0 = blk * block
        j1 = min(N, j0 + block)
        nb = j1 - j0
        r_ring, term_ring, cc_st, ew_st, m_st, yz_st, prev_c = new_state(nb, cc_w, lams.shape[0], wr, ranged)
        flags, acc = _scratch(nb)
        bad = np.zeros(6, np.int64)
        _block_rows(o, h, l, c, j0, j1, cc_w, lams, downside, wr, want, ranged, r_ring, term_ring, cc_st, ew_st,
                    m_st, yz_st, prev_c, flags, acc, outs, first_out, bad)
        bad[2] += j0
        bad[5] += j0
        bads[blk] = bad
    return bads


@njit(cache=True, error_model="numpy")
def feature_step(t, o, h, l, c, cc_w, lams, downside, wr, want, n_out, r_ring, term_ring, cc_st, ew_st,
                 m_st, yz_st, prev_c):
    """One bar of the streaming twin: the same _step as the batch kernel."""
    nb = c.shape[0]
    outs = np.empty((n_out, 1, nb))
    bad = np.zeros(6, np.int64)
    flags, acc = _scratch(nb)
    _step(t, o, h, l, c, cc_w, lams, downside, wr, want, r_ring, term_ring, cc_st, ew_st, m_st, yz_st,
          prev_c, flags, acc, outs, 0, 0, 0, bad, False)  # NaN bookkeeping always: no row history here
    return outs[:, 0, :], bad
