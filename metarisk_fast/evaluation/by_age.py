"""Loss by age: how forecasts fare on young assets (the prices an asset has since it listed or
restarted after a long gap), with the listings (stretches) as the independent units of the tests.

Each model is scored on its own rows (a GARCH fit has no forecast before it has enough returns);
a comparison of two models uses the rows both forecast: one mean loss difference per listing, then
a one-sample t test over the listings (days of one listing share its estimation error, listings
do not)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .metrics import qlike_log
from .risk import value_at_risk

AGE_BUCKETS = (("2-20", 2, 20), ("21-60", 21, 60), ("61-250", 61, 250), ("over 250", 251, np.inf))
MIN_LISTINGS = 3  # fewer listings than this in a bucket: no test


def listing_test(loss_a: np.ndarray, loss_b: np.ndarray, unit: np.ndarray) -> tuple[float, float, float, int]:
    """(mean difference of a - b over listings, t, two-sided p, listings) on the rows where both
    losses are finite: each listing's mean difference, then a t test of their mean against 0."""
    ok = np.isfinite(loss_a) & np.isfinite(loss_b)
    d = pd.Series(loss_a[ok] - loss_b[ok]).groupby(unit[ok]).mean().to_numpy()
    if len(d) < MIN_LISTINGS:
        return float("nan"), float("nan"), float("nan"), len(d)
    sd = d.std(ddof=1)
    t = d.mean() / (sd / np.sqrt(len(d))) if sd > 0 else float("nan")
    return float(d.mean()), float(t), float(2 * stats.t.sf(abs(t), len(d) - 1)), len(d)


def loss_by_age(realised: np.ndarray, forecasts: dict, age: np.ndarray, unit: np.ndarray, next_return: np.ndarray,
                *, nu: float, buckets=AGE_BUCKETS, compare_with=("ewma",)) -> pd.DataFrame:
    """One row per (age bucket, model): rows scored, listings, mean QLIKE (ln h + s/h; a forecast
    <= 0 is no forecast, counted apart in ``nonpositive``: its QLIKE is unbounded), the mean difference to each model in ``compare_with`` with its t and p
    over listings, and the 1 % / 5 % VaR exceedance rates (normal and Student-t with ``nu``).

    Parameters
    ----------
    realised : numpy.ndarray
        (M,) realised variances (the targets).
    forecasts : dict of str to numpy.ndarray
        Model name -> (M,) variance forecasts (NaN: none).
    age : numpy.ndarray
        (M,) int: prices the asset has at the row.
    unit : numpy.ndarray
        (M,): the row's listing (any hashable id), the unit of the t statistics.
    next_return : numpy.ndarray
        (M,) the next day's log return (VaR exceedances).
    nu : float
        The Student t degrees of freedom of the t VaR.
    buckets : sequence of (str, int, float)
        (label, first age, last age) of each bucket.
    compare_with : sequence of str
        Models each model's loss is compared with.

    Returns
    -------
    pandas.DataFrame
        One row per (bucket, model): rows, listings, qlike, nonpositive, per compared model the
        mean difference, t and p, and the VaR 1 % / 5 % exceedance rates.
    """
    realised, age, unit, next_return = (np.asarray(a) for a in (realised, age, unit, next_return))
    M = realised.shape[0]
    for name, a in (("age", age), ("unit", unit), ("next_return", next_return)):
        if a.shape != (M,):
            raise ValueError(f"{name} has shape {a.shape}, expected ({M},) like realised")
    for name, f in forecasts.items():
        if np.shape(f) != (M,):
            raise ValueError(f"forecasts[{name!r}] has shape {np.shape(f)}, expected ({M},)")
    evaluable = np.isfinite(realised) & np.isfinite(next_return)
    loss = {}
    for name, f in forecasts.items():
        f = np.asarray(f, np.float64)
        has = evaluable & np.isfinite(f) & (f > 0)
        loss[name] = np.where(has, qlike_log(np.where(has, realised, 1.0), np.where(has, f, 1.0)), np.nan)
    rows = []
    for label, lo, hi in buckets:
        in_bucket = (age >= lo) & (age <= hi)
        if not (in_bucket & evaluable).any():
            continue
        for name, f in forecasts.items():
            has = in_bucket & np.isfinite(loss[name])
            row = {"ages": label, "model": name, "n": int(has.sum()), "listings": int(len(np.unique(unit[has]))),
                   "qlike": float(loss[name][has].mean()) if has.any() else float("nan"),
                   "nonpositive": int((in_bucket & evaluable & (np.asarray(f) <= 0)).sum())}
            for other in compare_with:
                if other != name and other in loss:
                    d, t, p, _ = listing_test(np.where(has, loss[name], np.nan),
                                              np.where(in_bucket, loss[other], np.nan), unit)
                    row.update({f"diff_{other}": d, f"t_{other}": t, f"p_{other}": p})
            fb, rb = np.asarray(f, np.float64)[has], next_return[has]
            for alpha in (0.01, 0.05):
                for dist in ("normal", "t"):
                    row[f"hit_{alpha:g}_{dist}"] = (float((rb < value_at_risk(fb, alpha, dist, nu)).mean())
                                                    if has.any() else float("nan"))
            rows.append(row)
    return pd.DataFrame(rows)
