"""The RiskEngine's per-bar bookkeeping, compiled (Numba), in place on the engine's arrays. Each
value is computed with the batch path's operations in the same order (tasks.bridge_gaps,
tasks.forward_mean, EpisodeBuilder's usable rows and stretches), so the two agree bit for bit."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._intrinsics import _prefetch_write
from ..evaluation.risk import _scaled_columns
from ..features._kernels import feature_step
from ..learners._head_kernels import HEAD_BLOCK, body_rows, stream_outputs, stream_stores
from ..tasks._normalise import gather_rows
from ..tasks.episodes import anchor_of, forecastable_rows, network_rows
from ..tasks.target import _decode_all, encode_ratio
from ..tasks.young import young_row


@njit(cache=True, nogil=True, _nrt=False)
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


PREFETCH_AHEAD = 16  # assets


@njit(cache=True, nogil=True, inline="always")
def _prefetch_store_slot(j, p, sup_x, sup_y, sup_target):
    """Ask for asset j's store slot p for writing: its row of sup_x (first and last value: it may
    straddle two cache lines), sup_y and sup_target; none of the stores that keep nothing (the
    head learner's keep neither inputs nor targets)."""
    D = sup_x.shape[2]
    if D:
        first = (j * sup_x.shape[1] + p) * D
        _prefetch_write(sup_x, first)
        _prefetch_write(sup_x, first + D - 1)
    if sup_y.shape[1]:
        _prefetch_write(sup_y, j * sup_y.shape[1] + p)
        _prefetch_write(sup_target, j * sup_target.shape[1] + p)


@njit(cache=True, nogil=True, _nrt=False)
def record_row(t, x, anchor, ok, bridged_close, target, squared, row_x, row_anchor, row_ok, row_break, row_y, sq_ring):
    """Bar t's row into the delay line (h + 2 rows) and the target completed at t (row t - h's: the
    in-order mean of the last h squared returns, or ``target`` itself)."""
    h = row_x.shape[0] - 2
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


@njit(cache=True, nogil=True, _nrt=False)
def push_rows(t, row_x, row_anchor, row_ok, row_break, row_y, sup_x, sup_y, sup_target, count, pos, adapted_at, pushed,
              pushed_target, target_floor, target_cap, pushed_at, lo, hi):
    """Row t - h - 1 of the delay line (its target realised at the bar before) into each asset's
    support store if usable (tasks.forecastable of its bar, and a realised target), with its encoded
    target (tasks.encode_ratio with the target's floor and cap, float32) and the bar in pushed_at; a
    stretch break (a NaN bridged close) empties the asset's store. Stores without targets (sup_y
    (n, 0), the head learner's) keep only the count and position. Reads only rows recorded at
    earlier bars. Only the assets lo:hi are touched. Returns how many rows joined the stores; their
    (asset, slot) pairs are in ``pushed`` and their encoded targets in ``pushed_target``, in asset
    order. The store slots an asset writes are asked for PREFETCH_AHEAD
    assets ahead: each lies in another part of the stores, so without it every asset's writes wait
    for their lines one after another."""
    h = row_x.shape[0] - 2
    H, D = sup_x.shape[1], sup_x.shape[2]
    keep_targets = sup_y.shape[1] > 0
    n = 0
    if t < h + 1:
        return n
    e = (t - h - 1) % (h + 2)
    for j in range(lo, min(hi, lo + PREFETCH_AHEAD)):
        _prefetch_store_slot(j, pos[j], sup_x, sup_y, sup_target)
    for j in range(lo, hi):
        if j + PREFETCH_AHEAD < hi:
            _prefetch_store_slot(j + PREFETCH_AHEAD, pos[j + PREFETCH_AHEAD], sup_x, sup_y, sup_target)
        if row_break[e, j]:
            count[j] = 0
            adapted_at[j] = -1  # a new stretch: weights adapted on the old one are dropped
        elif row_ok[e, j] and np.isfinite(row_y[e, j]):
            count[j] += 1
            p = pos[j]
            for d in range(D):
                sup_x[j, p, d] = row_x[e, j, d]
            y = row_y[e, j]
            target = np.float32(encode_ratio(y, row_anchor[e, j], target_floor, target_cap))
            if keep_targets:
                sup_y[j, p] = y
                sup_target[j, p] = target
            pushed_at[j] = t
            pushed[n, 0] = j
            pushed[n, 1] = p
            pushed_target[n] = target
            n += 1
            pos[j] = (p + 1) % H
    return n


@njit(cache=True, nogil=True)
def observe_bar(t, observed, gap_break, max_gap, last_price, gap, seen, bridged, range_inputs, f_t, f_args, f_state,
                squared, y_t, y_args, y_state, young_args, age, age_sq_sum, age_ewma, age_input, anchor_row, floor, youth, x,
                anchor, ok, target, row_x, row_anchor, row_ok, row_break, row_y, sq_ring):
    """A RiskEngine bar up to its support stores, each step the batch path's own function: the gap
    bridge (``gap_break``: a calendar gap restarts every asset), the feature stream's step on the
    bridged prices (f_t, f_args, f_state: StreamingFeatures' counter, kernel arguments and state),
    the young-asset row (tasks/young.py), the network inputs and anchors (tasks.network_rows,
    anchor_of), the target stream's step on the observed prices (squared returns, or the
    Garman-Klass range), the usable rows (tasks.forecastable_rows) and record_row. observed (S, N):
    the close, then open, high, low where the engine keeps them; x (N, D), anchor, ok, target, youth
    (N,) are written. Touches nothing push_rows reads or writes."""
    if gap_break:
        seen[:] = False
    bridge(observed, last_price, gap, seen, max_gap, bridged)
    if gap_break:
        bridged[:] = np.nan
    b_close = bridged[0]
    if range_inputs:
        feats, _ = feature_step(f_t, bridged[1], bridged[2], bridged[3], b_close, *f_args, *f_state)
    else:
        feats, _ = feature_step(f_t, b_close, b_close, b_close, b_close, *f_args, *f_state)
    feats = np.ascontiguousarray(feats)
    young_row(feats[0], np.isnan(b_close), young_args[0], young_args[1], young_args[2], young_args[3], young_args[4],
              age, age_sq_sum, age_ewma, feats, youth)
    network_rows(feats, youth if age_input else youth[:0], x, floor)
    for j in range(anchor.shape[0]):
        anchor[j] = anchor_of(feats[anchor_row, j], floor)
    close = observed[0]
    if squared:
        rows, _ = feature_step(y_t, close, close, close, close, *y_args, *y_state)
        for j in range(target.shape[0]):
            target[j] = rows[0, j] * rows[0, j]
    else:
        rows, _ = feature_step(y_t, observed[1], observed[2], observed[3], close, *y_args, *y_state)
        for j in range(target.shape[0]):
            target[j] = rows[1, j] * rows[1, j]
    forecastable_rows(x, anchor, close, ok, floor)
    record_row(t, x, anchor, ok, b_close, target, squared, row_x, row_anchor, row_ok, row_break, row_y, sq_ring)


@njit(cache=True, nogil=True)
def advance_bar(observe, push):
    """A RiskEngine bar's bookkeeping in one compiled call: observe_bar, then push_rows (their
    arguments in ``observe`` and ``push``). Returns how many rows joined the stores."""
    observe_bar(*observe)
    return push_rows(*push)


@njit(cache=True, nogil=True, inline="always")
def _supported(count, history, min_support):
    """An asset has at least ``min_support`` of its last ``history`` stored rows."""
    return min(count, history) >= min_support


@njit(cache=True, nogil=True, inline="always")
def _ready(ok, count, history, min_support):
    """An asset forecasts at a bar: its row is usable and it is _supported."""
    return ok and _supported(count, history, min_support)


@njit(cache=True, nogil=True)
def ready_assets(ok, count, history, min_support):
    """_ready of every asset, (N,) bool."""
    ready = np.empty(ok.shape[0], np.bool_)
    for j in range(ok.shape[0]):
        ready[j] = _ready(ok[j], count[j], history, min_support)
    return ready


@njit(cache=True, nogil=True)
def _head_observe(observe, x, ok, clip, n_scaled, row_scale, theta, sizes, row_phi):
    """observe_bar (its arguments in ``observe``; x and ok among them), then the bar's usable rows,
    each normalised by its own scale (tasks.normalise_query's gather, row_scale >= 0), through the
    head learner's body into the delay line's slot of the bar."""
    observe_bar(*observe)
    use = np.flatnonzero(ok)
    rows = np.empty((1, use.shape[0], x.shape[1]), np.float32)
    gather_rows(x, use.reshape((1, use.shape[0])), np.ones(1), clip, n_scaled, row_scale, rows)
    body_rows(rows[0], use, theta, sizes, row_phi[observe[0] % row_phi.shape[0]])


@njit(cache=True, nogil=True)
def _head_push(push, count, pushed, pushed_target, history, w0, precision, code, row_phi, sup_phi, sup_slopes, stats,
               w):
    """push_rows (its arguments in ``push``, the asset range lo:hi last; count, pushed and
    pushed_target among them), then the head learner's stores and the range's heads solved (learners'
    stream_stores)."""
    n = push_rows(*push)
    t, lo, hi, h = push[0], push[-2], push[-1], row_phi.shape[0] - 2
    stream_stores(pushed, pushed_target, n, row_phi[(t - h - 1) % (h + 2)], count, history, w0, precision, code,
                  sup_phi, sup_slopes, stats, w, lo, hi)


@njit(cache=True, parallel=True)
def _head_parts(bounds, t, observed, gap_break, max_gap, last_price, gap, seen, bridged, range_inputs, f_t, f_cc_w,
                f_lams, f_downside, f_wr, f_want, f_n_out, f_r_ring, f_term_ring, f_cc_st, f_ew_st, f_m_st, f_yz_st,
                f_prev_c, squared, y_t, y_cc_w, y_lams, y_downside, y_wr, y_want, y_n_out, y_r_ring, y_term_ring,
                y_cc_st, y_ew_st, y_m_st, y_yz_st, y_prev_c, young_slots, young_window, young_anchor, young_lam,
                young_prior, age, age_sq_sum, age_ewma, age_input, anchor_row, floor, youth, x, anchor, ok, target,
                row_x, row_anchor, row_ok, row_break, row_y, sq_ring, sup_x, sup_y, sup_target, count, pos, adapted_at,
                pushed, pushed_target, target_floor, target_cap, pushed_at, clip, n_scaled, row_scale, history, theta,
                sizes, w0, precision, code, row_phi, sup_phi, sup_slopes, stats, w):
    """The bar's parts side by side, one thread each: part p pushes, stores and solves the assets
    bounds[p]:bounds[p + 1] (_head_push), and part 0 first runs _head_observe (no part writes an
    array another reads: observe writes the delay line's slot of bar t, the pushes read that of bar
    t - h - 1 and touch only their own assets). Their arguments one by one, as a parallel loop
    takes them (no tuples)."""
    for part in prange(bounds.shape[0] - 1):
        if part == 0:
            f_args = (f_cc_w, f_lams, f_downside, f_wr, f_want, f_n_out)
            f_state = (f_r_ring, f_term_ring, f_cc_st, f_ew_st, f_m_st, f_yz_st, f_prev_c)
            y_args = (y_cc_w, y_lams, y_downside, y_wr, y_want, y_n_out)
            y_state = (y_r_ring, y_term_ring, y_cc_st, y_ew_st, y_m_st, y_yz_st, y_prev_c)
            young = (young_slots, young_window, young_anchor, young_lam, young_prior)
            observe = (t, observed, gap_break, max_gap, last_price, gap, seen, bridged, range_inputs, f_t, f_args,
                       f_state, squared, y_t, y_args, y_state, young, age, age_sq_sum, age_ewma, age_input, anchor_row,
                       floor, youth, x, anchor, ok, target, row_x, row_anchor, row_ok, row_break, row_y, sq_ring)
            _head_observe(observe, x, ok, clip, n_scaled, row_scale, theta, sizes, row_phi)
        lo, hi = bounds[part], bounds[part + 1]
        part_pushed, part_target = pushed[lo:hi], pushed_target[lo:hi]
        push = (t, row_x, row_anchor, row_ok, row_break, row_y, sup_x, sup_y, sup_target, count, pos, adapted_at,
                part_pushed, part_target, target_floor, target_cap, pushed_at, lo, hi)
        _head_push(push, count, part_pushed, part_target, history, w0, precision, code, row_phi, sup_phi, sup_slopes,
                   stats, w)


PARTS_ASSETS = 128  # from this many assets a bar runs its parts on several threads
OBSERVE_COST = 0.85  # observing an asset's bar (_head_observe) against pushing, storing and solving it (_head_push)


def part_bounds(n_assets: int, threads: int) -> np.ndarray:
    """Asset ranges of head_bar's parts, (parts + 1,) int64: one part (all assets, [0, n]) below
    PARTS_ASSETS assets or on one thread; otherwise one part a thread, in whole blocks of the head
    statistics (HEAD_BLOCK assets), part 0 observing the bar (_head_observe) and taking fewer
    assets to push, store and solve than the others, so that each part's work is about the same
    (OBSERVE_COST: observing an asset costs this many times pushing, storing and solving it)."""
    if threads < 2 or n_assets < PARTS_ASSETS:
        return np.array([0, n_assets], np.int64)
    blocks = -(-n_assets // HEAD_BLOCK)
    first = max(0, round(blocks * ((1.0 + OBSERVE_COST) / threads - OBSERVE_COST)))  # part 0's blocks
    bounds = np.zeros(threads + 1, np.int64)
    for p in range(1, threads + 1):
        bounds[p] = min(n_assets, (first + (blocks - first) * (p - 1) // (threads - 1)) * HEAD_BLOCK)
    return bounds


@njit(cache=True, nogil=True)
def head_bar(observe, x, anchor, ok, push, count, pushed, pushed_target, clip, n_scaled, row_scale, history,
             min_support, theta, sizes, w0, precision, code, row_phi, sup_phi, sup_slopes, stats, bounds, w,
             output_clip, out, ready, factors, vol, risk):
    """A RiskEngine bar of the head learner in one compiled call: advance_bar's two steps, each
    followed by the head learner's share of it (_head_observe: the bar's rows through the body;
    _head_push: the stores' rows in and out, the heads solved into w (n, d)), in the parts
    ``bounds`` (part_bounds; one part: all on this thread) side by side (_head_parts), every value
    as on one thread; then the outputs of the ready assets (in ``ready``) decoded into variance
    forecasts in out (tasks.decode_ratio with ``output_clip``; NaN for the others), and their square
    roots into vol and the risk columns (factors[k] sqrt(out)) into risk (k, n) by
    evaluation.risk_columns' kernel. ``observe`` and ``push`` are observe_bar's and push_rows'
    arguments (push's asset range all assets); x, anchor, ok, count, pushed and pushed_target are
    the same arrays as in them. Returns risk_columns' verdict (False: a forecast is negative or
    infinite)."""
    if bounds.shape[0] > 2:  # observe's nested tuples spread out, then push's stores
        _head_parts(bounds, *observe[:10], *observe[10], *observe[11], *observe[12:14], *observe[14], *observe[15],
                    *observe[16], *observe[17:], *push[6:-2], clip, n_scaled, row_scale, history, theta, sizes, w0,
                    precision, code, row_phi, sup_phi, sup_slopes, stats, w)
    else:
        _head_observe(observe, x, ok, clip, n_scaled, row_scale, theta, sizes, row_phi)
        _head_push(push, count, pushed, pushed_target, history, w0, precision, code, row_phi, sup_phi, sup_slopes,
                   stats, w)
    return _head_outputs(ok, count, history, min_support, row_phi[observe[0] % row_phi.shape[0]], w, anchor,
                         output_clip, out, ready, factors, vol, risk)


@njit(cache=True, nogil=True, error_model="numpy")
def _head_outputs(ok, count, history, min_support, phi, w, anchor, output_clip, out, ready, factors, vol, risk):
    """head_bar's outputs: which assets are ready, their variance forecasts (stream_outputs' z =
    phi . w, decoded; NaN for the others) in out, then vol and the risk columns (_scaled_columns);
    vol holds the outputs z on the way, so that the decoding loop reads and writes separate arrays
    and vectorises."""
    for j in range(out.shape[0]):
        ready[j] = _ready(ok[j], count[j], history, min_support)
    stream_outputs(ready, phi, w, vol)
    _decode_all(vol, anchor, output_clip, out)
    return _scaled_columns(out, factors, vol, risk)


@njit(cache=True, nogil=True)
def forward_rows(x, ok, count, history, min_support, adapted_at, phase, bar, every, adapted_scale, clip, n_scaled,
                 row_scale):
    """A bar of a learner that re-adapts every ``every`` bars: the assets due for re-adaptation
    (_ready, and never adapted or at their phase), and those that predict with the weights of
    their last adaptation (``go``) with their rows normalised by that adaptation's support scale
    (tasks.normalise_query's gather), float32 (m, 1, D)."""
    n = ok.shape[0]
    due, forward = np.empty(n, np.bool_), np.empty(n, np.bool_)
    for j in range(n):
        ready = _ready(ok[j], count[j], history, min_support)
        due[j] = ready and (adapted_at[j] < 0 or (bar - phase[j]) % every == 0)
        forward[j] = ready and not due[j] and adapted_at[j] >= 0
    go = np.flatnonzero(forward)
    xq = np.empty((go.shape[0], 1, x.shape[1]), np.float32)
    gather_rows(x, go.reshape((go.shape[0], 1)), adapted_scale[go], clip, n_scaled, row_scale, xq)
    return due, go, xq
