"""Out-of-sample comparison of variance forecasts on (asset, row) pairs: losses, Diebold-Mariano
and the Model Confidence Set, Mincer-Zarnowitz, VaR backtests (Kupiec, Christoffersen, per-asset
Basel zones), ES backtests, a volatility-targeting backtest, and the coverage of each model."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import metrics as M
from . import risk as R
from .by_age import loss_by_age
from .sizing import vol_target_backtest

VAR_LEVELS = (0.01, 0.05)
ES_LEVEL = 0.025


def student_t_nu(standardised: np.ndarray) -> float:
    """Degrees of freedom matching the excess kurtosis of standardised returns (6 / (nu - 4)),
    clipped to [4.5, 30]; used for the Student-t VaR and ES."""
    z = standardised[np.isfinite(standardised)]
    excess = float(np.mean(z**4) / np.mean(z**2) ** 2 - 3.0)
    return float(np.clip(4.0 + 6.0 / excess, 4.5, 30.0)) if excess > 0 else 30.0



def last_days(asset, rows, days: int = 250) -> np.ndarray:
    """Mask of each asset's last ``days`` observations (the Basel backtesting window)."""
    order = np.lexsort((-rows, asset))
    rank = np.empty(len(rows), np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(asset[order])) + 1]
    counts = np.diff(np.r_[starts, len(rows)])
    rank[order] = np.arange(len(rows)) - np.repeat(starts, counts)
    return rank < days


def basel_by_asset(hits, asset, rows, names, alpha: float = 0.01, days: int = 250) -> dict:
    """The regulatory Basel test: each asset's zone over its own last ``days`` days; the pooled
    exceedance count over those days is given apart (it is not a Basel zone)."""
    last = last_days(asset, rows, days)
    per_asset = {str(names[j]): R.basel_traffic_light(hits[last & (asset == j)], alpha) for j in np.unique(asset)}
    zones = [v["zone"] for v in per_asset.values()]
    return {"days": days, "alpha": alpha, "per_asset": per_asset,
            "zone_counts": {z: zones.count(z) for z in ("green", "yellow", "red")},
            "pooled": {"exceedances": int(hits[last].sum()), "n": int(last.sum()), "assets": len(per_asset)}}


def next_returns(builder, asset, rows) -> np.ndarray:
    """r_{t+1} for each (asset, t): NaN unless both closes were observed (no bridged return)."""
    close = builder.panel.close
    nxt = np.minimum(rows + 1, builder.panel.n_days - 1)
    seen = np.isfinite(close[rows, asset]) & np.isfinite(close[nxt, asset]) & (rows + 1 < builder.panel.n_days)
    return np.where(seen, builder.returns[nxt, asset], np.nan)


MIN_NU_SAMPLE = 250


def student_t_nu_before(builder, asset, first_row: int) -> tuple[float, dict]:
    """Student-t degrees of freedom for the t-VaR / ES, fitted on data before the evaluation:
    next-day returns standardised by the RiskMetrics forecast, pooled over the evaluated assets,
    for days t with t + 1 <= first_row. Too few such returns (< 250): nu = 30 (near normal)."""
    cols = np.unique(asset)
    t = np.arange(max(first_row - 1, 0))
    A, Rw = np.repeat(cols, len(t)), np.tile(t, len(cols))
    z = next_returns(builder, A, Rw) / np.sqrt(builder.anchor[Rw, A])
    z = z[np.isfinite(z)]
    if z.size < MIN_NU_SAMPLE:
        return 30.0, {"n": int(z.size), "note": f"fewer than {MIN_NU_SAMPLE} returns before the evaluation: nu = 30"}
    last = str(builder.panel.dates[first_row]) if first_row < builder.panel.n_days else None
    return student_t_nu(z), {"n": int(z.size), "returns_through": last}


def coverage(builder, asset, rows, forecasts: dict, evaluable: np.ndarray) -> dict:
    """Per asset: asset-days asked for, those with a realised target and next return, and how many
    of those each model could not forecast (too little history after listing or a long gap)."""
    names = np.asarray(builder.panel.assets, dtype=object)
    out = {}
    for j in np.unique(asset):
        sel = asset == j
        ev = sel & evaluable
        entry = {"asked": int(sel.sum()), "evaluable": int(ev.sum()),
                 "no_forecast": {k: int((ev & ~(np.isfinite(f) & (f > 0))).sum()) for k, f in forecasts.items()}}
        out[str(names[j])] = entry
    return out


@dataclass
class Evaluation:
    """One comparison of forecasts, as ``evaluate`` returns it and the reports read it.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per model.
    details : dict
        Per-model test results.
    forecasts : pandas.DataFrame
        Long: date, asset, model, forecast, realised.
    meta : dict
        Counts, dates, the loss by age, the settings.
    """

    table: pd.DataFrame  # one row per model
    details: dict  # per-model test results
    forecasts: pd.DataFrame  # long: date, asset, model, ...
    meta: dict = field(default_factory=dict)


def evaluate(builder, asset, rows, forecasts: dict, *, benchmark: str = "ewma", nu: float | None = None,
             horizon: int = 1, label: str = "", in_sample: np.ndarray | None = None,
             compare_by_age: tuple = ()) -> Evaluation:
    """Compare forecasts on the (asset, row) pairs where every model has a forecast and the target
    is realised. VaR / ES backtests use the next day's log return; the Student-t shape is fitted on
    data before the first evaluated date unless ``nu`` is given. ``in_sample`` marks pairs a model
    saw in training (dates or assets): they are counted in the report and flagged in the forecasts.
    ``meta["by_age"]``: evaluation.by_age.loss_by_age of every model on every pair it forecasts,
    the listings (an asset's stretches) as units, against the benchmark and ``compare_by_age``.

    Parameters
    ----------
    builder : EpisodeBuilder
        The panel's features and targets (realised variances, returns).
    asset : numpy.ndarray
        (M,) int: panel columns of the forecast pairs.
    rows : numpy.ndarray
        (M,) int: their rows (the forecast is made at the row's close).
    forecasts : dict of str to numpy.ndarray
        Model name -> (M,) variance forecasts (NaN: none).
    benchmark : str
        The model every other is tested against (Diebold-Mariano).
    nu : float, optional
        The Student t degrees of freedom of the VaR / ES backtests (None: fitted before the first date).
    horizon : int
        Days ahead of the forecasts.
    label : str
        The evaluation's name in reports.
    in_sample : numpy.ndarray, optional
        (M,) bool: pairs some model saw in training.
    compare_by_age : tuple of str
        Models the loss by age is also compared with.

    Returns
    -------
    Evaluation
        table (one row per model: QLIKE, MSE, DM against the benchmark, MCS p-value, Mincer-Zarnowitz,
        VaR / ES backtests), details (per-model tests), forecasts (long: date, asset, model, ...), meta.
    """
    panel = builder.panel
    asset, rows = np.asarray(asset), np.asarray(rows)
    in_sample = np.zeros(len(rows), bool) if in_sample is None else np.asarray(in_sample, bool)
    if asset.shape != rows.shape or asset.ndim != 1 or in_sample.shape != rows.shape:
        raise ValueError(f"asset {asset.shape}, rows {rows.shape} and in_sample {in_sample.shape} must be 1-D "
                         "arrays of one length")
    for name, f in forecasts.items():
        if np.shape(f) != rows.shape:
            raise ValueError(f"forecasts[{name!r}] has shape {np.shape(f)}, expected {rows.shape}")
    s = builder.y[rows, asset]
    r_next = next_returns(builder, asset, rows)
    evaluable = np.isfinite(s) & np.isfinite(r_next)
    ok = evaluable.copy()
    for f in forecasts.values():
        ok &= np.isfinite(f) & (f > 0)
    cover = coverage(builder, asset, rows, forecasts, evaluable)
    if ok.sum() < 30:
        raise ValueError(f"only {int(ok.sum())} forecast dates are common to all models: too few to evaluate")
    nu_fit = {"given": True}
    if nu is None:
        nu, nu_fit = student_t_nu_before(builder, asset[ok], int(rows[ok].min()))
    # by age, each model on every pair it forecasts (not only the pairs common to all)
    age = builder.age[rows, asset]
    by_age = loss_by_age(s, forecasts, age, asset * panel.n_days + rows - age, r_next, nu=nu,
                         compare_with=tuple(dict.fromkeys((benchmark, *compare_by_age))))
    asset, rows, s, r_next, in_sample = asset[ok], rows[ok], s[ok], r_next[ok], in_sample[ok]
    fc = {k: np.asarray(v)[ok] for k, v in forecasts.items()}
    dates = panel.dates[rows]
    names = np.asarray(panel.assets, dtype=object)

    # loss per date (averaged over assets) for DM and MCS
    def per_date(loss):
        return pd.Series(loss).groupby(dates).mean()

    losses = {k: M.qlike_log(s, v) for k, v in fc.items()}
    daily = pd.DataFrame({k: per_date(v) for k, v in losses.items()})
    pos = s > 0
    rows_out, details, frames = [], {}, []
    for name, f in fc.items():
        d = {"model": name, "n": int(len(f)), "qlike": float(losses[name].mean()),
             "qlike_ratio": float(M.qlike(s[pos], f[pos]).mean()), "mse": float(M.squared_error(s, f).mean())}
        det = {}
        if name != benchmark and benchmark in fc:
            dm = M.diebold_mariano(daily[name], daily[benchmark], horizon)
            d["dm_vs_" + benchmark] = dm.statistic
            d["dm_pvalue"] = dm.pvalue
            det["diebold_mariano_vs_" + benchmark] = dm.as_dict()
        det["mincer_zarnowitz"] = M.mincer_zarnowitz(s, f)
        d["mz_beta"], d["mz_pvalue"] = det["mincer_zarnowitz"]["beta"], det["mincer_zarnowitz"]["pvalue"]
        for alpha in VAR_LEVELS:
            for dist in ("normal", "t"):
                var = R.value_at_risk(f, alpha, dist, nu)
                hits = r_next < var
                key = f"var_{alpha:g}_{dist}"
                det[key] = {"kupiec": R.kupiec_pof(hits, alpha), "christoffersen": R.christoffersen(hits, alpha)}
                d[f"hit_{alpha:g}_{dist}"] = float(hits.mean())
                d[f"kupiec_p_{alpha:g}_{dist}"] = det[key]["kupiec"]["pvalue"]
        det["basel_1pct_normal"] = basel_by_asset(r_next < R.value_at_risk(f, 0.01), asset, rows, names)
        for dist in ("normal", "t"):
            es = R.expected_shortfall(f, ES_LEVEL, dist, nu)
            var = R.value_at_risk(f, ES_LEVEL, dist, nu)
            det[f"es_{dist}"] = {"z2": R.acerbi_szekely_z2(r_next, f, ES_LEVEL, dist, nu, reps=500),
                                 "fz0": float(R.fz0_loss(r_next, var, es, ES_LEVEL).mean())}
            d[f"z2_{dist}"] = det[f"es_{dist}"]["z2"]["z2"]
            d[f"fz0_{dist}"] = det[f"es_{dist}"]["fz0"]
        vt = vol_target_backtest(r_next, f, asset)
        det["vol_target"] = vt
        d["vt_realised_vol"], d["vt_turnover"] = vt["realised_vol"], vt["turnover"]
        rows_out.append(d)
        details[name] = det
        frames.append(pd.DataFrame({
            "date": dates, "asset": names[asset], "model": name,
            "forecast_variance": f, "realized_variance": s, "next_return": r_next, **R.risk_columns(f),
            "in_sample": in_sample}))
    table = pd.DataFrame(rows_out).set_index("model")
    if len(fc) > 1:
        table["mcs_pvalue"] = M.model_confidence_set(daily, reps=500)
    meta = {"label": label, "n_pairs": int(len(s)), "in_sample_pairs": int(in_sample.sum()),
            "assets": sorted(set(names[asset])), "coverage": cover,
            "first_date": str(dates.min()), "last_date": str(dates.max()), "student_t_nu": nu,
            "student_t_nu_fit": nu_fit, "horizon": horizon, "benchmark": benchmark,
            "by_age": by_age.to_dict(orient="records"),
            "loss": "QLIKE in the form ln h + s/h (s: realised-variance proxy, can be 0); qlike_ratio: "
                    "s/h - ln(s/h) - 1 on s > 0"}
    return Evaluation(table=table, details=details, forecasts=pd.concat(frames, ignore_index=True), meta=meta)
