"""The one normalisation of learner inputs, compiled (Numba): the batch episodes and the streaming
engine gather their support and query rows through it, so both compute each value with the same
operations in the same order.

A task's scale c is the mean of its support rows' realised variances (summed in row order),
floored; a row's log return r becomes r / sqrt(c) and each log-variance v becomes v - log(c),
both clipped to [-clip, clip] (a flat-price stretch would otherwise give log(1e-12 / c)). Columns
from ``n_scaled`` on (the youth input, tasks/young.py) are scale-free and copied as they are. A task
with no support row (an asset too young to have a realised target) takes its scale from
``fallback`` (the anchor variance of its first query row).

With ``row_scale`` >= 0 (TaskSpec(scale="row"), the head learner's) every row is normalised by its
own anchor instead: c is e^v of the row's log-variance column ``row_scale``, so a row's inputs do
not depend on the task it is in and a streaming engine can keep them from bar to bar."""
from __future__ import annotations

import math

from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _rows(src, idx, c, clip, n_scaled, row_scale, out):
    ic, lc = (1.0 / math.sqrt(c), math.log(c)) if row_scale < 0 else (0.0, 0.0)  # row scale: set per row
    for k in range(idx.shape[0]):
        r = idx[k]
        if row_scale >= 0:
            lc = src[r, row_scale]
            ic = math.exp(-0.5 * lc)
        out[k, 0] = min(max(src[r, 0] * ic, -clip), clip)
        for d in range(1, n_scaled):
            out[k, d] = min(max(src[r, d] - lc, -clip), clip)
        for d in range(n_scaled, src.shape[1]):
            out[k, d] = src[r, d]


@njit(cache=True, nogil=True)
def gather_tasks(x, y, s_idx, xq_src, q_idx, fallback, floor, clip, n_scaled, row_scale, out_xs, out_xq, out_c):
    """Task b's support rows x[s_idx[b]] and query rows xq_src[q_idx[b]], normalised by its scale
    c = max(mean(y[s_idx[b]]), floor) (K = 0: max(fallback[b], floor)), into out_xs (B, K, D) /
    out_xq (B, Q, D) (float32); c in out_c (B,)."""
    K = s_idx.shape[1]
    for b in range(s_idx.shape[0]):
        acc = 0.0
        for k in range(K):
            acc += y[s_idx[b, k]]
        c = max(acc / K if K > 0 else fallback[b], floor)
        out_c[b] = c
        _rows(x, s_idx[b], c, clip, n_scaled, row_scale, out_xs[b])
        _rows(xq_src, q_idx[b], c, clip, n_scaled, row_scale, out_xq[b])


@njit(cache=True, nogil=True, _nrt=False)
def gather_rows(src, idx, c, clip, n_scaled, row_scale, out):
    """Rows src[idx[b]] normalised by a given scale c[b] (a query against an earlier support), or
    each by its own (row_scale >= 0)."""
    for b in range(idx.shape[0]):
        _rows(src, idx[b], c[b], clip, n_scaled, row_scale, out[b])
