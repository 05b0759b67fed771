"""Inputs of a young asset (one that listed, or restarted after a long gap, a few prices ago), as
one compiled row step that the batch tasks and the streaming engine both run, so the two agree
bit for bit.

An asset's age n is the number of returns in its current stretch (prices since the stretch began,
less one; a stretch ends where the gap-bridged close is NaN: before listing, inside a long gap,
after a calendar gap). While n is below a close-to-close window w, that window's volatility is
not defined by the feature kernels (NaN); it is then the root mean square of the n returns the
stretch has, sum(r^2) / n (summed in row order), defined from the first return on and never
using a price before the stretch. The EWMAs are defined from the first return already (the
feature kernels start them at r^2, and carry them across a gap); the anchor's EWMA (lam = 0.94,
the variance every forecast scales) is, while n < AGE_SCALE, the EWMA of the stretch's own returns
started at a prior variance v (TaskSpec.young_prior; training sets it to the median RiskMetrics
variance of its training rows, EpisodeBuilder.with_young_prior): s_n = lam s_{n-1} + (1 - lam) r_n^2
from s_0 = v, i.e. the prior weighs lam^n (0.94 at the first return, 0.29 at 20, 0.05 at 50). One or
two returns say little about an asset's variance: an anchor made of them alone is often 100x too low
(a quiet or stale first day), and a forecast stays within 5x its anchor. With v = 0 (a model saved
before the prior existed) the weights are normalised instead, s_n / (1 - lam^n) from s_0 = 0. Either
way the kernels' start at r_1^2 is not used: it lets one small first return hold the anchor near
zero for weeks. From AGE_SCALE returns on the stretch's EWMA and the kernels' agree to lam^AGE_SCALE
(2e-7) of the start and the kernels' value is kept. The learner also sees how young the asset is: the input
youth = 1 - ln(min(n, AGE_SCALE)) / ln(AGE_SCALE), 1 at the first return, 0 from AGE_SCALE
returns on (a mature asset's inputs are those it always had, plus a 0)."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

AGE_SCALE = 252  # returns: the youth input reaches 0 at one year of daily prices
PRIOR_MIN_RETURNS = 63  # training rows the prior variance is taken from have this many returns in their
# stretch: every default window is full, and the RiskMetrics EWMA's start weighs 0.94^63 = 2 %


@njit(cache=True, nogil=True, _nrt=False)
def young_row(returns, broken, cc_slots, max_window, anchor_slot, lam, prior, count, sq_sum, ew_sum, feats, youth):
    """Advance every asset's age by one row and fill its undefined close-to-close volatilities.

    returns (N,): the row's log returns of the bridged close (NaN at a stretch's first price);
    broken (N,): the bridged close is NaN (no stretch at this row); cc_slots: rows of ``feats``
    (F, N) holding the close-to-close volatilities, filled in place where NaN; max_window: the
    longest of them. anchor_slot: the row of the anchor's EWMA volatility (lam), replaced in
    place while count < AGE_SCALE (from the prior variance ``prior``; 0: none, weights normalised).
    count / sq_sum / ew_sum (N,): each asset's returns in its stretch, the sum of their squares
    (summed while count <= max_window) and their EWMA from 0, updated in place. youth (N,): out,
    NaN where the asset has no return yet."""
    log_scale = math.log(AGE_SCALE)
    for j in range(returns.shape[0]):
        if broken[j]:
            count[j] = 0
            sq_sum[j] = 0.0
            ew_sum[j] = 0.0
            youth[j] = np.nan
            continue
        r = returns[j]
        if not np.isnan(r):
            count[j] += 1
            if count[j] <= max_window:
                sq_sum[j] += r * r
            if count[j] < AGE_SCALE:
                ew_sum[j] = lam * ew_sum[j] + (1.0 - lam) * (r * r)
        n = count[j]
        if n == 0:
            youth[j] = np.nan
            continue
        youth[j] = 0.0 if n >= AGE_SCALE else 1.0 - math.log(n) / log_scale
        if n < AGE_SCALE and anchor_slot >= 0:
            feats[anchor_slot, j] = math.sqrt(ew_sum[j] + lam ** n * prior if prior > 0.0
                                              else ew_sum[j] / (1.0 - lam ** n))
        if n < max_window:
            partial = math.sqrt(sq_sum[j] / n)
            for s in cc_slots:
                if np.isnan(feats[s, j]):
                    feats[s, j] = partial


@njit(cache=True, nogil=True)
def young_panel(returns, broken, cc_slots, max_window, anchor_slot, lam, prior, feats, youth, prices):
    """young_row over a panel's rows in order (returns, broken (T, N); feats (F, T, N) filled in
    place; youth (T, N) out; prices (T, N) out: the prices each asset's stretch has at the row, 0
    where it has none), from a fresh state: no asset has a price before row 0."""
    N = returns.shape[1]
    count = np.zeros(N, np.int64)
    sq_sum = np.zeros(N)
    ew_sum = np.zeros(N)
    for t in range(returns.shape[0]):
        young_row(returns[t], broken[t], cc_slots, max_window, anchor_slot, lam, prior, count, sq_sum, ew_sum,
                  feats[:, t, :], youth[t])
        for j in range(N):
            prices[t, j] = 0 if broken[t, j] else count[j] + 1
