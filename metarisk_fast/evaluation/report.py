"""Out-of-sample evaluation of variance forecasts: losses, comparison tests, VaR / ES backtests,
a volatility-targeting backtest, and the written report (CSV, JSON, Markdown, PNG)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._files import atomic_write_text
from . import metrics as M
from . import risk as R

ANNUAL = 252
VAR_LEVELS = (0.01, 0.05)
ES_LEVEL = 0.025


def student_t_nu(standardised: np.ndarray) -> float:
    """Degrees of freedom matching the excess kurtosis of standardised returns (6 / (nu - 4)),
    clipped to [4.5, 30]; used for the Student-t VaR and ES."""
    z = standardised[np.isfinite(standardised)]
    excess = float(np.mean(z**4) / np.mean(z**2) ** 2 - 3.0)
    return float(np.clip(4.0 + 6.0 / excess, 4.5, 30.0)) if excess > 0 else 30.0


def vol_target_backtest(returns_next, variance, asset, target_annual=0.10, max_leverage=10.0) -> dict:
    """Scale each asset to ``target_annual`` volatility with the forecasts: weight_t =
    target_daily / forecast vol, position return weight_t * r_{t+1}. Realised volatility is
    averaged over assets."""
    target = target_annual / np.sqrt(ANNUAL)
    w = np.minimum(target / np.sqrt(variance), max_leverage)
    vols, turns = [], []
    for j in np.unique(asset):
        sel = asset == j
        pnl = w[sel] * returns_next[sel]
        vols.append(np.std(pnl, ddof=1) * np.sqrt(ANNUAL))
        turns.append(np.mean(np.abs(np.diff(w[sel]))) if sel.sum() > 1 else 0.0)
    vol = float(np.mean(vols))
    return {"target": target_annual, "realised_vol": vol, "gap": vol - target_annual,
            "abs_gap": float(np.mean(np.abs(np.array(vols) - target_annual))), "turnover": float(np.mean(turns))}


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
    table: pd.DataFrame  # one row per model
    details: dict  # per-model test results
    forecasts: pd.DataFrame  # long: date, asset, model, ...
    meta: dict = field(default_factory=dict)


def evaluate(builder, asset, rows, forecasts: dict, *, benchmark: str = "ewma", nu: float | None = None,
             horizon: int = 1, label: str = "", in_sample: np.ndarray | None = None) -> Evaluation:
    """Compare forecasts on the (asset, row) pairs where every model has a forecast and the target
    is realised. VaR / ES backtests use the next day's log return; the Student-t shape is fitted on
    data before the first evaluated date unless ``nu`` is given. ``in_sample`` marks pairs a model
    saw in training (dates or assets): they are counted in the report and flagged in the forecasts."""
    panel = builder.panel
    asset, rows = np.asarray(asset), np.asarray(rows)
    in_sample = np.zeros(len(rows), bool) if in_sample is None else np.asarray(in_sample, bool)
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
            "loss": "QLIKE in the form ln h + s/h (s: realised-variance proxy, can be 0); qlike_ratio: "
                    "s/h - ln(s/h) - 1 on s > 0"}
    return Evaluation(table=table, details=details, forecasts=pd.concat(frames, ignore_index=True), meta=meta)


def _md_table(df: pd.DataFrame, cols) -> str:
    cols = [c for c in cols if c in df.columns]
    head = "| model | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    body = ""
    for name, row in df[cols].iterrows():
        body += f"| {name} | " + " | ".join(f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
                                            for v in row) + " |\n"
    return head + body


SUMMARY_COLS = ["qlike", "qlike_ratio", "mse", "dm_vs_ewma", "dm_pvalue", "mcs_pvalue", "mz_beta", "mz_pvalue",
                "hit_0.01_normal",
                "kupiec_p_0.01_normal", "hit_0.05_normal", "hit_0.01_t", "z2_normal", "fz0_normal",
                "vt_realised_vol", "vt_turnover"]


def _coverage_lines(m: dict) -> list[str]:
    """Assets that lost evaluable days, and how many each model could not forecast."""
    lines = []
    for a, c in m["coverage"].items():
        missing = {k: v for k, v in c["no_forecast"].items() if v}
        if c["evaluable"] == 0:
            lines.append(f"- {a}: no day with a realised target and next return in the period ({c['asked']} asked): "
                         "left out")
        elif missing:
            lines.append(f"- {a}: {c['evaluable']} evaluable days; without a forecast: "
                         + ", ".join(f"{k} {v}" for k, v in missing.items()))
    return lines


def render_markdown(evals: list[Evaluation], title: str, preamble: str = "") -> str:
    out = [f"# {title}\n", preamble]
    for ev in evals:
        m = ev.meta
        nu_fit = m["student_t_nu_fit"]
        nu_src = ("given" if nu_fit.get("given") else nu_fit.get("note")
                  or f"fitted on {nu_fit['n']} standardised returns before {nu_fit['returns_through']}")
        out.append(f"\n## {m['label']}\n\nAssets: {', '.join(m['assets'])}. Dates: {m['first_date']} to "
                   f"{m['last_date']} ({m['n_pairs']} asset-days where every model has a forecast). "
                   f"Horizon {m['horizon']} day(s). Loss: {m['loss']}. Student-t nu = {m['student_t_nu']:.2f} "
                   f"({nu_src}).\n")
        if m["in_sample_pairs"]:
            out.append(f"**In-sample: {m['in_sample_pairs']} of {m['n_pairs']} asset-days were seen in training** "
                       "(a training asset, or a date up to the training end); `forecasts.csv` flags them "
                       "(`in_sample`).\n")
        cov = _coverage_lines(m)
        if cov:
            out.append("Coverage (asset-days left out of the comparison):\n" + "\n".join(cov) + "\n")
        out.append(_md_table(ev.table.sort_values("qlike"), SUMMARY_COLS))
        out.append("\nVaR backtests (Kupiec POF, Christoffersen conditional coverage, p-values):\n")
        lines = ["| model | VaR | exceedances | Kupiec p | CC p |", "|---|---|---|---|---|"]
        for name, det in ev.details.items():
            for key in ("var_0.01_normal", "var_0.05_normal", "var_0.01_t", "var_0.05_t"):
                k, c = det[key]["kupiec"], det[key]["christoffersen"]
                lines.append(f"| {name} | {key[4:]} | {k['exceedances']}/{k['n']} | {k['pvalue']:.3g} | {c['pvalue_cc']:.3g} |")
        out.append("\n".join(lines) + "\n")
        out.append("\nBasel traffic light (1 % normal VaR), each asset over its own last 250 days; the pooled "
                   "count over the same days is not a Basel zone:\n")
        lines = ["| model | green | yellow | red | yellow or red | pooled exceedances |", "|---|---|---|---|---|---|"]
        for name, det in ev.details.items():
            b = det["basel_1pct_normal"]
            flagged = ", ".join(f"{a} ({v['zone']}, {v['exceedances']}/{v['n']})"
                                for a, v in b["per_asset"].items() if v["zone"] != "green") or "none"
            zc = b["zone_counts"]
            lines.append(f"| {name} | {zc['green']} | {zc['yellow']} | {zc['red']} | {flagged} | "
                         f"{b['pooled']['exceedances']}/{b['pooled']['n']} over {b['pooled']['assets']} assets |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def write_report(evals: list[Evaluation], out_dir, title: str, preamble: str = "", extra: dict | None = None,
                 plots: bool = True) -> dict:
    """forecasts.csv, report.json, report.md and PNG plots, each written atomically."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for ev in evals:
        frames.append(ev.forecasts.assign(setting=ev.meta["label"]))
    atomic_write_text(out / "forecasts.csv", pd.concat(frames).to_csv(index=False))
    report = {"title": title, **(extra or {}),
              "evaluations": [{"meta": ev.meta, "table": json.loads(ev.table.to_json(orient="index")),
                               "details": ev.details} for ev in evals]}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=_json_default))
    atomic_write_text(out / "report.md", render_markdown(evals, title, preamble))
    files = ["forecasts.csv", "report.json", "report.md"]
    if plots:
        files += _plots(evals, out)
    return {"files": files}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _save(fig, path):
    import io

    from .._files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _plots(evals: list[Evaluation], out) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    ev = evals[-1]
    f = ev.forecasts
    assets = list(dict.fromkeys(f["asset"]))[:6]
    models = list(ev.table.sort_values("qlike").index[:3])
    if "ewma" in ev.table.index and "ewma" not in models:
        models.append("ewma")
    fig, axes = plt.subplots(len(assets), 1, figsize=(10, 2.2 * len(assets)), sharex=True, squeeze=False)
    for ax, a in zip(axes[:, 0], assets):
        sub = f[f["asset"] == a]
        base = sub[sub["model"] == models[0]].set_index("date")
        realised = np.sqrt(base["realized_variance"].rolling(21, min_periods=5).mean() * ANNUAL)
        ax.plot(realised.index, realised, color="0.6", lw=1, label="realised (21-day mean, ann.)")
        for m in models:
            s = sub[sub["model"] == m].set_index("date")
            ax.plot(s.index, np.sqrt(s["forecast_variance"] * ANNUAL), lw=0.8, label=m)
        ax.set_ylabel(a)
    axes[0, 0].legend(fontsize=7, ncol=5, loc="upper left")
    axes[0, 0].set_title(f"Forecast vs realised volatility ({ev.meta['label']})")
    _save(fig, out / "forecast_vs_realised.png")
    plt.close(fig)
    files.append("forecast_vs_realised.png")

    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.35 * sum(len(e.table) for e in evals)))
    labels, vals = [], []
    for e in evals:
        for name, q in e.table["qlike"].items():
            labels.append(f"{e.meta['label']}: {name}")
            vals.append(q)
    ax.barh(labels, vals, color="tab:blue")
    ax.set_xlim(min(vals) - 0.02 * abs(min(vals)), max(vals) + 0.005 * abs(max(vals)))
    ax.set_xlabel("mean QLIKE (ln h + s/h), lower is better")
    ax.invert_yaxis()
    _save(fig, out / "loss_by_model.png")
    plt.close(fig)
    files.append("loss_by_model.png")

    a = assets[0]
    sub = f[(f["asset"] == a) & (f["model"] == models[0])].set_index("date")
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(sub.index, sub["next_return"], lw=0.5, color="0.4", label="next-day return")
    ax.plot(sub.index, sub["var_1"], lw=0.8, color="tab:red", label=f"1 % VaR ({models[0]})")
    hit = sub["next_return"] < sub["var_1"]
    ax.scatter(sub.index[hit], sub["next_return"][hit], s=10, color="tab:red", zorder=3, label="exceedance")
    ax.set_title(f"VaR exceedances, {a}: {int(hit.sum())} of {len(sub)} days")
    ax.legend(fontsize=7)
    _save(fig, out / "var_exceedances.png")
    plt.close(fig)
    files.append("var_exceedances.png")
    return files
