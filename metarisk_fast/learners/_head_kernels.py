"""HeadNewton's compiled forecasting path (Numba): the body's forward pass, each
support row's fixed-point contribution to the Newton step's statistics, the step's solve, and the
streaming engine's add-one-row / drop-one-row update. Every value of a row is computed by the
same loops in the same order wherever it is computed, so the batch forecasts (fresh sums per
task) and the engine (running sums) agree bit for bit.

Statistics: g (d values) then the upper triangle of H (row by row), each row's contribution
clipped to +-STAT_CLIP and rounded to the nearest multiple of 1 / STAT_SCALE in an int64 (the
slopes enter the products scaled by STAT_SCALE): sums of up to
100,000 rows cannot overflow (1e4 * 2^32 * 1e5 < 2^63) and are exact in any order. They are kept
in blocks of HEAD_BLOCK heads, (blocks, n_stats, HEAD_BLOCK) with head j at [j // HEAD_BLOCK, :,
j % HEAD_BLOCK] (stats_blocks, stats_rows): a block's updates and its solve run over the heads
innermost without transposing."""
from __future__ import annotations

import numpy as np
from numba import njit

from .._types import STUDENT_T_NU
from .._intrinsics import _exp, _prefetch_write

STAT_SCALE = 2.0 ** 32
STAT_CLIP = 1e4  # |l'| <= 3 and l'' <= 0.75 under the t loss with |phi| <= 1; the Gaussian one is
# unbounded in y^2 e^-z, clipped here (a variance ratio beyond 2e4 is a broken price, not a signal)
PRECISION_FLOOR = 1e-4  # the prior precision's floor: the step's system stays positive definite


@njit(cache=True, nogil=True, inline="always")
def _slopes(z, y, code):
    """l'(z; y) and l''(z; y) of the Student t (code 0) or Gaussian (code 1) likelihood (e^z by the
    branch-free exp of _intrinsics: a loop of them vectorises)."""
    if code == 0:  # s = sigmoid(log(y^2) - z - log(nu - 2)), with one exp and no log
        nu = STUDENT_T_NU
        y2 = y * y
        s = y2 / (y2 + (nu - 2.0) * _exp(z))
        return 0.5 - 0.5 * (nu + 1.0) * s, 0.5 * (nu + 1.0) * s * (1.0 - s)
    e = y * y * _exp(-z)
    return 0.5 - 0.5 * e, 0.5 * e


FIXED_CLIP = STAT_CLIP * STAT_SCALE


@njit(cache=True, nogil=True, inline="always")
def _fixed(v):
    """A contribution already scaled by STAT_SCALE (its slope is: a power of two, so exactly the
    scaled product) clipped and rounded to the nearest integer (ties to even)."""
    return np.int64(np.rint(min(max(v, -FIXED_CLIP), FIXED_CLIP)))


HEAD_BLOCK = 64  # heads solved side by side (the innermost loops run over them): 41 KB of systems, in L1
ROW_BLOCK = 128  # rows through the body side by side: two (width, 128) float32 buffers (32 KB at width 32) in L1


@njit(cache=True, nogil=True)
def body_rows(rows, which, theta, sizes, out):
    """phi = [s(body(x)), 1], s(a) = a / sqrt(1 + a^2), of each row x = rows[i] into out[which[i]]
    (float64), in float32 arithmetic (theta float32, the body's own precision): the MLP's layers
    (each weight transposed, (in, out) row-major, then its bias; ReLU between layers), ROW_BLOCK
    rows at a time with the rows innermost so the loops run in vector registers. Output o of a row is bias + w[0, o] a[0] +
    w[1, o] a[1] + ... in that order whatever the block, so a row's features are the same bits in
    every call."""
    width = max(sizes.max(), rows.shape[1])
    _body_blocks(rows, which, theta, sizes, out, np.empty((width, ROW_BLOCK), np.float32),
                 np.empty((width, ROW_BLOCK), np.float32))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, _nrt=False)
def _body_blocks(rows, which, theta, sizes, out, A, B):
    """body_rows' loops on its two (width, ROW_BLOCK) float32 scratch arrays, without reference
    counting (each row's view of ``out`` otherwise takes and drops an atomic reference)."""
    m = rows.shape[0]
    n_layers = sizes.shape[0] - 1
    d = sizes[n_layers]
    for lo in range(0, m, ROW_BLOCK):
        nb = min(ROW_BLOCK, m - lo)
        for l in range(nb):
            for i in range(rows.shape[1]):
                A[i, l] = rows[lo + l, i]
        off = 0
        for layer in range(n_layers):
            n_in, n_out = sizes[layer], sizes[layer + 1]
            bias = off + n_out * n_in
            relu = layer < n_layers - 1
            o = 0
            while o + 4 <= n_out:  # four outputs a pass: each input row loaded once for the four
                _four_outputs(theta, off, bias, n_in, n_out, o, nb, relu, A, B)
                o += 4
            for o in range(o, n_out):
                _one_output(theta, off, bias, n_in, n_out, o, nb, relu, A, B)
            off = bias + n_out
            A, B = B, A
        for k in range(d):  # the squashing in vector registers, then each row to its place
            for l in range(nb):
                v = A[k, l]
                A[k, l] = v / np.sqrt(np.float32(1.0) + v * v)
        for l in range(nb):
            phi = out[which[lo + l]]
            for k in range(d):
                phi[k] = A[k, l]
            phi[d] = 1.0


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, _nrt=False, inline="always")
def _four_outputs(theta, off, bias, n_in, n_out, o, nb, relu, A, B):
    """Outputs o:o + 4 of a layer for the block's nb rows (B[o + k, l]), each the sum of
    _one_output's terms in its order: four inputs a pass, each of their rows loaded once for the
    four outputs."""
    for k in range(4):
        b = theta[bias + o + k]
        for l in range(nb):
            B[o + k, l] = b
    i = 0
    while i + 4 <= n_in:
        r0 = off + i * n_out + o
        r1, r2, r3 = r0 + n_out, r0 + 2 * n_out, r0 + 3 * n_out
        w00, w01, w02, w03 = theta[r0], theta[r0 + 1], theta[r0 + 2], theta[r0 + 3]
        w10, w11, w12, w13 = theta[r1], theta[r1 + 1], theta[r1 + 2], theta[r1 + 3]
        w20, w21, w22, w23 = theta[r2], theta[r2 + 1], theta[r2 + 2], theta[r2 + 3]
        w30, w31, w32, w33 = theta[r3], theta[r3 + 1], theta[r3 + 2], theta[r3 + 3]
        for l in range(nb):
            a0, a1, a2, a3 = A[i, l], A[i + 1, l], A[i + 2, l], A[i + 3, l]
            B[o, l] = (((B[o, l] + w00 * a0) + w10 * a1) + w20 * a2) + w30 * a3
            B[o + 1, l] = (((B[o + 1, l] + w01 * a0) + w11 * a1) + w21 * a2) + w31 * a3
            B[o + 2, l] = (((B[o + 2, l] + w02 * a0) + w12 * a1) + w22 * a2) + w32 * a3
            B[o + 3, l] = (((B[o + 3, l] + w03 * a0) + w13 * a1) + w23 * a2) + w33 * a3
        i += 4
    for i in range(i, n_in):
        r0 = off + i * n_out + o
        w0, w1, w2, w3 = theta[r0], theta[r0 + 1], theta[r0 + 2], theta[r0 + 3]
        for l in range(nb):
            a = A[i, l]
            B[o, l] += w0 * a
            B[o + 1, l] += w1 * a
            B[o + 2, l] += w2 * a
            B[o + 3, l] += w3 * a
    if relu:
        for k in range(4):
            for l in range(nb):
                B[o + k, l] = max(B[o + k, l], np.float32(0.0))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, _nrt=False, inline="always")
def _one_output(theta, off, bias, n_in, n_out, o, nb, relu, A, B):
    """Output o of a layer for the block's nb rows: bias + w[0, o] a[0] + w[1, o] a[1] + ... in
    that order (four inputs a pass, one store per four products), then the ReLU if ``relu``."""
    b = theta[bias + o]
    for l in range(nb):
        B[o, l] = b
    i = 0
    while i + 4 <= n_in:
        w0, w1 = theta[off + i * n_out + o], theta[off + (i + 1) * n_out + o]
        w2, w3 = theta[off + (i + 2) * n_out + o], theta[off + (i + 3) * n_out + o]
        for l in range(nb):
            B[o, l] = (((B[o, l] + w0 * A[i, l]) + w1 * A[i + 1, l]) + w2 * A[i + 2, l]) + w3 * A[i + 3, l]
        i += 4
    for i in range(i, n_in):
        w = theta[off + i * n_out + o]
        for l in range(nb):
            B[o, l] += w * A[i, l]
    if relu:
        for l in range(nb):
            B[o, l] = max(B[o, l], np.float32(0.0))


@njit(cache=True, nogil=True, error_model="numpy")
def _add_changes(p_in, g_in, p_out, g_out, nb, leaving, st):
    """st[:, l] += the fixed-point statistics of row l of a block (features p_in[:, l], slopes
    times STAT_SCALE g_in[:, l]: g1 phi, then g2 phi_i phi_j over the upper triangle, row by
    row), less those of the row it replaces (p_out, g_out) where ``leaving``; nb rows, innermost,
    so that the products, the roundings and the sums run in vector registers. Each value is
    rounded on its own: a row's statistics are the same integers whatever the block, and taking
    away a leaving row's exactly undoes its addition."""
    d = p_in.shape[0]
    for i in range(d):
        if leaving:
            for l in range(nb):
                st[i, l] += _fixed(g_in[0, l] * p_in[i, l]) - _fixed(g_out[0, l] * p_out[i, l])
        else:
            for l in range(nb):
                st[i, l] += _fixed(g_in[0, l] * p_in[i, l])
    k = d
    for i in range(d):
        for j in range(i, d):
            if leaving:
                for l in range(nb):
                    st[k, l] += (_fixed(g_in[1, l] * p_in[i, l] * p_in[j, l])
                                 - _fixed(g_out[1, l] * p_out[i, l] * p_out[j, l]))
            else:
                for l in range(nb):
                    st[k, l] += _fixed(g_in[1, l] * p_in[i, l] * p_in[j, l])
            k += 1


@njit(cache=True, nogil=True, error_model="numpy")
def _sum_stats(p, g, st, lane):
    """st[:, lane] = the fixed-point statistics of the rows p[:, k], g[:, k] (slopes times
    STAT_SCALE) summed (each row's values those _add_changes adds)."""
    d, K = p.shape
    for i in range(d):
        acc = 0
        for k in range(K):
            acc += _fixed(g[0, k] * p[i, k])
        st[i, lane] = acc
    m = d
    for i in range(d):
        for j in range(i, d):
            acc = 0
            for k in range(K):
                acc += _fixed(g[1, k] * p[i, k] * p[j, k])
            st[m, lane] = acc
            m += 1


def stats_blocks(rows: np.ndarray) -> np.ndarray:
    """Per-head statistics (n, n_stats) int64 in the blocked layout (blocks, n_stats, HEAD_BLOCK);
    the last block's unused heads are zero."""
    n, n_stats = rows.shape
    blocks = np.zeros(((n + HEAD_BLOCK - 1) // HEAD_BLOCK * HEAD_BLOCK, n_stats), np.int64)
    blocks[:n] = rows
    return np.ascontiguousarray(blocks.reshape(-1, HEAD_BLOCK, n_stats).transpose(0, 2, 1))


def stats_rows(blocks: np.ndarray, n: int) -> np.ndarray:
    """stats_blocks' inverse: the first n heads' statistics, (n, n_stats)."""
    return np.ascontiguousarray(blocks.transpose(0, 2, 1).reshape(-1, blocks.shape[1])[:n])


@njit(cache=True, nogil=True, error_model="numpy")
def solve_heads(stats, lo, hi, w0, precision, w):
    """w[j] = w0 - (H + diag(precision))^-1 g of the fixed-point statistics of head j (blocked,
    see the module's docstring), for the heads lo:hi (lo a multiple of HEAD_BLOCK): A = L D L^T in
    place (no square roots; the lower triangle holds L D during the factorisation, the upper L^T,
    the pivots D) and the two triangular solves, a block's heads side by side (innermost), so every
    loop runs over them in vector registers while each head's numbers are those of its own scalar
    computation (division is correctly rounded; error_model="numpy" keeps it branch-free so that it
    vectorises too)."""
    d = w0.shape[0]
    unit = 1.0 / STAT_SCALE  # a power of two: exact
    A = np.empty((d, d, HEAD_BLOCK))
    inv = np.empty((d, HEAD_BLOCK))
    u = np.empty((d, HEAD_BLOCK))
    for first in range(lo, hi, HEAD_BLOCK):
        nb = min(HEAD_BLOCK, hi - first)
        st = stats[first // HEAD_BLOCK]
        k = d
        for i in range(d):
            for l in range(nb):
                u[i, l] = st[i, l] * unit
            for j in range(i, d):
                for l in range(nb):
                    A[j, i, l] = st[k, l] * unit
                k += 1
        for i in range(d):
            p = max(precision[i], PRECISION_FLOOR)
            for l in range(nb):
                A[i, i, l] += p
        for j in range(d):  # column j: its pivot (i = j) first, then the rows below it
            for i in range(j, d):
                q = 0
                while q + 4 <= j:  # four terms a pass, taken away in order: one load and store of A[i, j] per four
                    for l in range(nb):
                        A[i, j, l] = ((((A[i, j, l] - A[i, q, l] * A[q, j, l]) - A[i, q + 1, l] * A[q + 1, j, l])
                                       - A[i, q + 2, l] * A[q + 2, j, l]) - A[i, q + 3, l] * A[q + 3, j, l])
                    q += 4
                for q in range(q, j):
                    for l in range(nb):
                        A[i, j, l] -= A[i, q, l] * A[q, j, l]
                if i == j:
                    for l in range(nb):
                        inv[j, l] = 1.0 / A[j, j, l]
                else:
                    for l in range(nb):
                        A[j, i, l] = A[i, j, l] * inv[j, l]
        for i in range(d):  # L y = g
            q = 0
            while q + 4 <= i:
                for l in range(nb):
                    u[i, l] = ((((u[i, l] - A[q, i, l] * u[q, l]) - A[q + 1, i, l] * u[q + 1, l])
                                - A[q + 2, i, l] * u[q + 2, l]) - A[q + 3, i, l] * u[q + 3, l])
                q += 4
            for q in range(q, i):
                for l in range(nb):
                    u[i, l] -= A[q, i, l] * u[q, l]
        for i in range(d - 1, -1, -1):  # L^T v = D^-1 y
            for l in range(nb):
                u[i, l] *= inv[i, l]
            q = i + 1
            while q + 4 <= d:
                for l in range(nb):
                    u[i, l] = ((((u[i, l] - A[i, q, l] * u[q, l]) - A[i, q + 1, l] * u[q + 1, l])
                                - A[i, q + 2, l] * u[q + 2, l]) - A[i, q + 3, l] * u[q + 3, l])
                q += 4
            for q in range(q, d):
                for l in range(nb):
                    u[i, l] -= A[i, q, l] * u[q, l]
        for l in range(nb):
            for i in range(d):
                w[first + l, i] = w0[i] - u[i, l]


@njit(cache=True, nogil=True, error_model="numpy")
def adapt_predict(xs, ys, xq, theta, sizes, w0, precision, code, out):
    """Tasks (B, K, D) / (B, K) / (B, Q, D): each support's statistics summed afresh, the heads
    solved, the query rows' outputs into out (B, Q)."""
    B, K, Q, d = xs.shape[0], xs.shape[1], xq.shape[1], w0.shape[0]
    phi_s, phi_q = np.empty((K, d)), np.empty((B * Q, d))
    n_stats = d + d * (d + 1) // 2
    stats = np.zeros(((B + HEAD_BLOCK - 1) // HEAD_BLOCK, n_stats, HEAD_BLOCK), np.int64)
    p_in, g_in, y, has = np.empty((d, K)), np.empty((2, K)), np.empty(K), np.ones(K, np.bool_)
    for t in range(B):
        body_rows(xs[t], np.arange(K), theta, sizes, phi_s)
        for k in range(K):
            y[k] = ys[t, k]
            for i in range(d):
                p_in[i, k] = phi_s[k, i]
        _lane_slopes(p_in, y, w0, code, K, has, g_in)
        _sum_stats(p_in, g_in, stats[t // HEAD_BLOCK], t % HEAD_BLOCK)
    w = np.empty((B, d))
    solve_heads(stats, 0, B, w0, precision, w)
    body_rows(xq.reshape(B * Q, xq.shape[2]), np.arange(B * Q), theta, sizes, phi_q)  # every query row at once
    for t in range(B):
        for q in range(Q):
            out[t, q] = _dot(phi_q[t * Q + q], w[t])


@njit(cache=True, nogil=True, inline="always")
def _dot(phi, w):
    z = 0.0
    for i in range(phi.shape[0]):
        z += phi[i] * w[i]
    return z


PREFETCH_AHEAD = 16  # stored rows


@njit(cache=True, nogil=True, inline="always")
def _prefetch_slot(j, p, sup_phi, sup_slopes):
    """Ask for asset j's stored row p (its features, which may straddle two cache lines, and its
    slopes): each lies in another part of the stores, so without it every row waits for its lines
    one after another."""
    d = sup_phi.shape[2]
    first = (j * sup_phi.shape[1] + p) * d
    _prefetch_write(sup_phi, first)
    _prefetch_write(sup_phi, first + d - 1)
    _prefetch_write(sup_slopes, (j * sup_slopes.shape[1] + p) * 2)


@njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
def _lane_slopes(p, y, w0, code, nb, has, g):
    """g[:, l] = STAT_SCALE (l', l'') at the head's start w0 of the rows p[:, l] with targets y[l]
    (z = phi . w0 summed in order, in g[0] on the way), zero where not has[l]; lanes innermost, so
    that the products, the exponentials and the divisions run in vector registers. The batch path
    (adapt_predict) and the streaming stores (_update_stores) both take a row's slopes from here."""
    z = g[0]
    for l in range(nb):
        z[l] = 0.0
    for i in range(p.shape[0]):
        wi = w0[i]
        for l in range(nb):
            z[l] += p[i, l] * wi
    for l in range(nb):
        g1, g2 = _slopes(z[l], y[l], code)
        g[0, l] = g1 * STAT_SCALE if has[l] else 0.0
        g[1, l] = g2 * STAT_SCALE if has[l] else 0.0


@njit(cache=True, nogil=True, _nrt=False)
def _update_stores(pushed, pushed_target, n_pushed, arriving, count, history, w0, code, sup_phi, sup_slopes, stats, lo,
                   hi, p_in, p_out, g_in, g_out, y, has, slot):
    """The n_pushed rows that join the stores of the assets lo:hi (lo a multiple of HEAD_BLOCK;
    (asset, slot) in ``pushed``, in asset order; their targets in pushed_target, their features in
    arriving[asset]) stored with their loss slopes and added to their assets' statistics, each
    taking away the row it overwrites when the store is full; a block of HEAD_BLOCK assets at a
    time (an asset without a row adds zeros): the rows in and out gathered asset by asset (each
    row's store slot asked for PREFETCH_AHEAD rows ahead), the block's slopes side by side
    (_lane_slopes), then stored. Scratch: p_in, p_out (d, HEAD_BLOCK), g_in, g_out (2, HEAD_BLOCK),
    y (HEAD_BLOCK,), has (HEAD_BLOCK,) bool, slot (HEAD_BLOCK,) int64. Compiled without reference
    counting (each row's view of the stores and the prefetches' array arguments otherwise take and
    drop atomic references)."""
    d = w0.shape[0]
    for i in range(min(n_pushed, PREFETCH_AHEAD)):
        _prefetch_slot(pushed[i, 0], pushed[i, 1], sup_phi, sup_slopes)
    r = 0  # the next pushed row
    for first in range(lo, hi, HEAD_BLOCK):
        nb = min(HEAD_BLOCK, hi - first)
        if r == n_pushed or pushed[r, 0] >= first + nb:  # no row joins this block's stores
            continue
        leaving = False
        for l in range(nb):
            j = first + l
            has[l] = r < n_pushed and pushed[r, 0] == j
            if has[l]:
                ahead = r + PREFETCH_AHEAD
                if ahead < n_pushed:
                    _prefetch_slot(pushed[ahead, 0], pushed[ahead, 1], sup_phi, sup_slopes)
                p = pushed[r, 1]
                slot[l] = p
                y[l] = pushed_target[r]
                r += 1
                stored = sup_phi[j, p]
                full = count[j] > history
                leaving |= full
                for i in range(d):  # a row that does not leave contributes zeros (its slopes are zero)
                    p_out[i, l] = stored[i] if full else 0.0
                    stored[i] = p_in[i, l] = arriving[j, i]
                for i in range(2):
                    g_out[i, l] = sup_slopes[j, p, i] * STAT_SCALE if full else 0.0
            else:
                y[l] = 0.0
                for i in range(d):
                    p_in[i, l] = p_out[i, l] = 0.0
                for i in range(2):
                    g_out[i, l] = 0.0
        _lane_slopes(p_in, y, w0, code, nb, has, g_in)
        unit = 1.0 / STAT_SCALE  # a power of two: the slopes back exactly
        for l in range(nb):
            if has[l]:
                sup_slopes[first + l, slot[l], 0] = g_in[0, l] * unit
                sup_slopes[first + l, slot[l], 1] = g_in[1, l] * unit
        _add_changes(p_in, g_in, p_out, g_out, nb, leaving, stats[first // HEAD_BLOCK])


@njit(cache=True, nogil=True)
def stream_stores(pushed, pushed_target, n_pushed, arriving, count, history, w0, precision, code, sup_phi, sup_slopes,
                  stats, w, lo, hi):
    """A streaming bar's stores and solves for the assets lo:hi (lo a multiple of HEAD_BLOCK): each
    without a stretch row (count 0) cleared; the ``n_pushed`` rows that joined their stores
    ((asset, slot) in ``pushed``, in asset order, their targets in pushed_target, their features in
    arriving[asset]) added, each taking away the row it overwrites; every head of lo:hi solved into
    w[lo:hi] (an asset with too few rows gets one too, from what it has: only ready assets' outputs
    are read). A range starts at a block of the statistics: each block's loops run over its lanes
    from lane 0 (an offset lane index stops them vectorising)."""
    if lo % HEAD_BLOCK:
        raise ValueError("stream_stores: the asset range must start at a multiple of HEAD_BLOCK")
    for j in range(lo, hi):
        if count[j] == 0:
            stats[j // HEAD_BLOCK, :, j % HEAD_BLOCK] = 0
    d = w0.shape[0]
    _update_stores(pushed, pushed_target, n_pushed, arriving, count, history, w0, code, sup_phi, sup_slopes, stats, lo,
                   hi, np.empty((d, HEAD_BLOCK)), np.empty((d, HEAD_BLOCK)), np.empty((2, HEAD_BLOCK)),
                   np.empty((2, HEAD_BLOCK)), np.empty(HEAD_BLOCK), np.empty(HEAD_BLOCK, np.bool_),
                   np.empty(HEAD_BLOCK, np.int64))
    solve_heads(stats, lo, hi, w0, precision, w)


@njit(cache=True, nogil=True, _nrt=False)
def stream_outputs(ready, phi, w, out):
    """out[j] = phi[j] . w[j] for the ``ready`` assets (each supported, so with its head solved into
    w[j] by stream_stores), NaN for the others."""
    for j in range(out.shape[0]):
        out[j] = _dot(phi[j], w[j]) if ready[j] else np.nan
