"""The RiskEngine's per-bar bookkeeping, compiled (Numba), in place on the engine's arrays. Each
value is computed with the batch path's operations in the same order (tasks.bridge_gaps,
tasks.forward_mean, EpisodeBuilder's usable rows and stretches), so the two agree bit for bit."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def bridge(observed, last_price, gap, seen, max_gap, out):
    """tasks.bridge_gaps one bar at a time: a missing price (NaN) is the last observed one while
    the gap is at most ``max_gap`` bars long, NaN before the first price and beyond the gap."""
    for s in range(observed.shape[0]):
        for j in range(observed.shape[1]):
            v = observed[s, j]
            if np.isnan(v):
                gap[s, j] += 1
                out[s, j] = last_price[s, j] if seen[s, j] and gap[s, j] <= max_gap else np.nan
            else:
                gap[s, j] = 0
                out[s, j] = v
                last_price[s, j] = v
                seen[s, j] = True


@njit(cache=True, nogil=True)
def commit_row(t, x, anchor, ok, bridged_close, target, squared, row_x, row_anchor, row_ok, row_break, row_y,
               sq_ring, sup_x, sup_y, count, pos, adapted_at, pushed):
    """Bar t's row into the delay line (h + 2 rows), the target completed at t (row t - h's: the
    in-order mean of the last h squared returns, or ``target`` itself), and row t - h - 1 into the
    support store if usable (``ok``: tasks.forecastable of the bar, and a realised target); a stretch break
    (bridged close NaN) empties the asset's store. Returns how many rows joined the store; their
    (asset, slot) pairs are in ``pushed``."""
    h = row_x.shape[0] - 2
    H = sup_x.shape[1]
    D = x.shape[1]
    slot = t % (h + 2)
    for j in range(x.shape[0]):
        for d in range(D):
            row_x[slot, j, d] = x[j, d]
        row_anchor[slot, j] = anchor[j]
        row_ok[slot, j] = ok[j]
        row_break[slot, j] = np.isnan(bridged_close[j])
        row_y[slot, j] = np.nan
        if squared:
            sq_ring[t % h, j] = target[j]
        if t >= h:
            if squared:
                acc = sq_ring[(t - h + 1) % h, j]
                for k in range(1, h):
                    acc += sq_ring[(t - h + 1 + k) % h, j]
                row_y[(t - h) % (h + 2), j] = acc / h
            else:
                row_y[(t - h) % (h + 2), j] = target[j]
    n = 0
    if t >= h + 1:
        e = (t - h - 1) % (h + 2)
        for j in range(x.shape[0]):
            if row_break[e, j]:
                count[j] = 0
                adapted_at[j] = -1  # a new stretch: weights adapted on the old one are dropped
            elif row_ok[e, j] and np.isfinite(row_y[e, j]):
                count[j] += 1
                p = pos[j]
                for d in range(D):
                    sup_x[j, p, d] = row_x[e, j, d]
                sup_y[j, p] = row_y[e, j]
                pushed[n, 0] = j
                pushed[n, 1] = p
                n += 1
                pos[j] = (p + 1) % H
    return n
