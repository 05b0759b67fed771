"""Value-at-Risk and Expected Shortfall from variance forecasts, and their backtests.

Conventions: VaR and ES are returned as quantities of the return distribution (negative numbers
for a loss), so an exceedance is r < VaR. alpha is the tail probability (0.01 for 99 % VaR).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit
from scipy import stats

ANNUAL = 252  # trading days a year


def _t_scale(nu):
    return np.sqrt((nu - 2.0) / nu)  # unit-variance Student t


def _sigma(variance, alpha):
    v = np.asarray(variance, np.float64)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError("variance forecasts must be finite and >= 0")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha (tail probability) must be in (0, 1), got {alpha}")
    return np.sqrt(v)


def _hits(hits):
    hits = np.asarray(hits, bool)
    if hits.size == 0:
        raise ValueError("no VaR exceedance indicators to test")
    return hits


@lru_cache(maxsize=64)
def _normal_factors(alpha: float) -> tuple[float, float]:
    """(VaR, ES) of a standard normal at tail probability alpha: computed once per alpha, since a
    streaming engine asks for the same few on every bar."""
    q = float(stats.norm.ppf(alpha))
    return q, float(-stats.norm.pdf(q) / alpha)


def value_at_risk(variance, alpha: float, dist: str = "normal", nu: float | None = None):
    """The Value-at-Risk of a zero-mean one-day return, as a return quantile (negative).

    Parameters
    ----------
    variance : array_like
        Forecast variances of the one-day log return (squared log-return units).
    alpha : float
        The tail probability, 0 < alpha < 0.5 (0.01: the 1 % VaR).
    dist : {'normal', 't'}
        The return distribution.
    nu : float, optional
        The Student t degrees of freedom (> 2; needed with dist='t'); the t is scaled to unit variance.

    Returns
    -------
    numpy.ndarray or float
        Shaped like ``variance``, log-return units (negative).
    """
    sigma = _sigma(variance, alpha)
    if dist == "normal":
        return sigma * _normal_factors(float(alpha))[0]
    if dist == "t":
        _check_nu(nu)
        return sigma * stats.t.ppf(alpha, nu) * _t_scale(nu)
    raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")


def expected_shortfall(variance, alpha: float, dist: str = "normal", nu: float | None = None):
    """The Expected Shortfall E[r | r < VaR_alpha] of a zero-mean one-day return (negative).

    Parameters
    ----------
    variance : array_like
        Forecast variances of the one-day log return (squared log-return units).
    alpha : float
        The tail probability, 0 < alpha < 0.5 (0.01: the 1 % VaR).
    dist : {'normal', 't'}
        The return distribution.
    nu : float, optional
        The Student t degrees of freedom (> 2; needed with dist='t'); the t is scaled to unit variance.

    Returns
    -------
    numpy.ndarray or float
        Shaped like ``variance``, log-return units (negative).
    """
    sigma = _sigma(variance, alpha)
    if dist == "normal":
        return sigma * _normal_factors(float(alpha))[1]
    if dist == "t":
        _check_nu(nu)
        q = stats.t.ppf(alpha, nu)
        return -sigma * _t_scale(nu) * stats.t.pdf(q, nu) * (nu + q * q) / ((nu - 1) * alpha)
    raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")


def risk_columns(variance, dist: str = "normal", nu: float | None = None, alphas=None) -> dict:
    """The risk columns of every forecast table (``metarisk forecast``, the reports, the streaming
    engine's snapshots) of a one-day log return, as return quantiles (negative); NaN where the
    variance is NaN (no forecast). Without ``alphas``: VaR at 1 % and 5 % and ES at 2.5 %
    (var_1, var_5, es_2_5); with them, var_<a> and es_<a> for each level a (in %, '.' as '_':
    0.025 -> var_2_5).

    Parameters
    ----------
    variance : array_like
        (n,) forecast variances of the one-day log return (squared log-return units).
    dist : {'normal', 't'}
        The return distribution.
    nu : float, optional
        The Student t degrees of freedom (> 2; needed with dist='t'); the t is scaled to unit variance.
    alphas : sequence of float, optional
        Tail levels in (0, 0.5).

    Returns
    -------
    dict of str to numpy.ndarray
        Column name -> (n,) values, log-return units (negative); NaN where the variance is NaN.
    """
    v = np.asarray(variance, np.float64)
    names, factors = _column_factors(None if alphas is None else tuple(float(a) for a in alphas), dist, nu)
    cols = np.empty((len(names), v.size))
    if not _scaled_columns(np.ascontiguousarray(v).reshape(-1), factors, np.empty(v.size), cols):
        raise ValueError("variance forecasts must be finite and >= 0 (NaN: no forecast)")
    return {name: col.reshape(v.shape) for name, col in zip(names, cols)}


def risk_column_factors(dist: str = "normal", nu: float | None = None,
                        alphas=None) -> tuple[tuple[str, ...], np.ndarray]:
    """risk_columns' column names and the unit-variance VaR / ES factor of each (column k of a
    variance v is factors[k] sqrt(v)): for a caller that computes the columns in its own compiled
    pass (the streaming engine's head bar) with the same kernel.

    Parameters
    ----------
    dist, nu, alphas
        As in ``risk_columns``.

    Returns
    -------
    tuple
        (column names, factors (k,) float64).
    """
    return _column_factors(None if alphas is None else tuple(float(a) for a in alphas), dist, nu)


@lru_cache(maxsize=256)
def _column_factors(alphas: tuple | None, dist: str, nu: float | None) -> tuple[tuple[str, ...], np.ndarray]:
    """risk_columns' column names and the unit-variance VaR / ES factor of each, once per set of
    levels (a streaming engine asks for the same ones on every bar)."""
    if alphas is None:
        return ("var_1", "var_5", "es_2_5"), np.array([_unit_risk(0.01, dist, nu)[0], _unit_risk(0.05, dist, nu)[0],
                                                       _unit_risk(0.025, dist, nu)[1]])
    names, factors = [], []
    for a in alphas:
        name = f"{100 * a:g}".replace(".", "_")
        var, es = _unit_risk(a, dist, nu)
        names += [f"var_{name}", f"es_{name}"]
        factors += [var, es]
    return tuple(names), np.array(factors)


@njit(cache=True, nogil=True, error_model="numpy")
def _scaled_columns(variance, factors, sigma, out):
    """sigma[i] = sqrt(variance[i]) and out[k, i] = sigma[i] * factors[k] (NaN stays NaN), each loop
    branch-free so that it vectorises; False (nothing written) if a variance is infinite or
    negative."""
    bad = False
    for i in range(variance.shape[0]):
        bad |= (variance[i] < 0.0) | (variance[i] == np.inf)
    if bad:
        return False
    for i in range(variance.shape[0]):
        sigma[i] = np.sqrt(variance[i])
    for k in range(factors.shape[0]):
        f = factors[k]
        for i in range(variance.shape[0]):
            out[k, i] = sigma[i] * f
    return True


@lru_cache(maxsize=256)
def _unit_risk(alpha: float, dist: str, nu: float | None) -> tuple[float, float]:
    """(VaR, ES) of a unit-variance return at tail probability alpha: computed once per level, since
    a streaming engine asks for the same few on every bar."""
    return float(value_at_risk(1.0, alpha, dist, nu)), float(expected_shortfall(1.0, alpha, dist, nu))


def _check_nu(nu):
    if nu is None or not nu > 2:
        raise ValueError(f"Student t needs nu > 2 (finite variance), got {nu}")


def kupiec_pof(hits, alpha: float) -> dict:
    """The Kupiec (1995) proportion-of-failures LR test; chi2(1) under H0: P(hit) = alpha.

    The p-value is compared with the test size (e.g. 5 %), not with the VaR level.

    Parameters
    ----------
    hits : array_like of bool
        (T,) exceedance indicators r_t < VaR_t.
    alpha : float
        The tail probability, 0 < alpha < 0.5 (0.01: the 1 % VaR).

    Returns
    -------
    dict
        n, exceedances, rate (exceedances / n), lr (the statistic), pvalue.
    """
    hits = _hits(hits)
    n, x = hits.size, int(hits.sum())
    p_hat = x / n
    ll0 = (n - x) * np.log1p(-alpha) + x * np.log(alpha)
    ll1 = (n - x) * np.log1p(-p_hat) if x < n else 0.0
    ll1 += x * np.log(p_hat) if x > 0 else 0.0
    lr = -2.0 * (ll0 - ll1)
    return {"n": n, "exceedances": x, "rate": p_hat, "lr": float(lr), "pvalue": float(stats.chi2.sf(lr, 1))}


def christoffersen(hits, alpha: float) -> dict:
    """Christoffersen (1998) independence LR (first-order Markov vs independence) and
    conditional coverage LR_cc = LR_pof + LR_ind, chi2(1) and chi2(2).

    Parameters
    ----------
    hits : array_like of bool
        (T,) exceedance indicators r_t < VaR_t.
    alpha : float
        The tail probability, 0 < alpha < 0.5 (0.01: the 1 % VaR).

    Returns
    -------
    dict
        lr_ind, pvalue_ind, lr_cc, pvalue_cc, and transitions [n00, n01, n10, n11] (counts of
        no hit / hit followed by no hit / hit).
    """
    hits = _hits(hits).astype(int)
    prev, cur = hits[:-1], hits[1:]
    n00 = int(np.sum((prev == 0) & (cur == 0)))
    n01 = int(np.sum((prev == 0) & (cur == 1)))
    n10 = int(np.sum((prev == 1) & (cur == 0)))
    n11 = int(np.sum((prev == 1) & (cur == 1)))

    def xlogy(a, b):
        return a * np.log(b) if a > 0 else 0.0

    pi01 = n01 / max(n00 + n01, 1)
    pi11 = n11 / max(n10 + n11, 1)
    pi = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    ll_ind = xlogy(n00, 1 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1 - pi11) + xlogy(n11, pi11)
    ll_null = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    lr_ind = float(max(-2.0 * (ll_null - ll_ind), 0.0))
    pof = kupiec_pof(hits.astype(bool), alpha)
    lr_cc = pof["lr"] + lr_ind
    return {"lr_ind": lr_ind, "pvalue_ind": float(stats.chi2.sf(lr_ind, 1)),
            "lr_cc": float(lr_cc), "pvalue_cc": float(stats.chi2.sf(lr_cc, 2)),
            "transitions": [n00, n01, n10, n11]}


def basel_traffic_light(hits, alpha: float = 0.01) -> dict:
    """Basel zones from the binomial probability of at most x exceedances: green below 95 %,
    yellow below 99.99 %, red above (for 250 days at 99 %: green 0-4, yellow 5-9, red 10+).

    Parameters
    ----------
    hits : array_like of bool
        (T,) exceedance indicators r_t < VaR_t.
    alpha : float
        The tail probability, 0 < alpha < 0.5 (0.01: the 1 % VaR).

    Returns
    -------
    dict
        zone ('green', 'yellow' or 'red'), exceedances, n, cumulative_probability.
    """
    hits = _hits(hits)
    n, x = hits.size, int(hits.sum())
    cum = float(stats.binom.cdf(x, n, alpha))
    zone = "green" if cum < 0.95 else ("yellow" if cum < 0.9999 else "red")
    return {"zone": zone, "exceedances": x, "n": n, "cumulative_probability": cum}


def acerbi_szekely_z2(returns, variance, alpha: float, dist: str = "normal", nu: float | None = None,
                      reps: int = 2000, seed: int = 0) -> dict:
    """The Acerbi & Szekely (2014) Z2 test of Expected Shortfall.

    Z2 = sum_t r_t 1{r_t < VaR_t} / (T alpha abs(ES_t)) + 1, with VaR and ES from the variance
    forecasts. E[Z2] = 0 when the forecast distribution is right; Z2 < 0 says risk was
    underestimated. The one-sided p-value comes from returns simulated from the forecasts.

    Parameters
    ----------
    returns : array_like
        (T,) realised one-day log returns.
    variance : array_like
        (T,) their forecast variances, made the day before.
    alpha : float
        The tail probability, 0 < alpha < 0.5 (0.01: the 1 % VaR).
    dist : {'normal', 't'}
        The return distribution.
    nu : float, optional
        The Student t degrees of freedom (> 2; needed with dist='t'); the t is scaled to unit variance.
    reps : int
        Simulated return paths.
    seed : int
        The simulation's seed.

    Returns
    -------
    dict
        z2, pvalue.
    """
    r = np.asarray(returns, np.float64)
    variance = np.asarray(variance, np.float64)
    var = value_at_risk(variance, alpha, dist, nu)
    es = np.abs(expected_shortfall(variance, alpha, dist, nu))
    T = r.size

    def z2(x):
        return np.sum(x * (x < var) / es, axis=-1) / (T * alpha) + 1.0

    rng = np.random.default_rng(seed)
    draws = rng.standard_normal((reps, T)) if dist == "normal" else rng.standard_t(nu, (reps, T)) * _t_scale(nu)
    stat = float(z2(r))
    return {"z2": stat, "pvalue": float(np.mean(z2(draws * np.sqrt(variance)) <= stat))}


def fz0_loss(returns, var, es, alpha: float):
    """The FZ0 loss of Patton, Ziegel & Chen (2019) for (VaR, ES) with ES <= VaR < 0.

    FZ0 = -1/(alpha ES) 1{r <= VaR} (VaR - r) + VaR/ES + ln(-ES) - 1. Lower is better.

    Parameters
    ----------
    returns : array_like
        Realised one-day log returns.
    var, es : array_like
        Their VaR and ES forecasts (negative), shaped like ``returns``.
    alpha : float
        The tail probability, 0 < alpha < 0.5 (0.01: the 1 % VaR).

    Returns
    -------
    numpy.ndarray
        The loss of each day, shaped like ``returns``.
    """
    r = np.asarray(returns, np.float64)
    v, e = np.asarray(var, np.float64), np.asarray(es, np.float64)
    if np.any(e >= 0) or np.any(v >= 0):
        raise ValueError("FZ0 needs negative VaR and ES (return quantiles of the loss tail)")
    hit = (r <= v).astype(np.float64)
    return -hit * (v - r) / (alpha * e) + v / e + np.log(-e) - 1.0
