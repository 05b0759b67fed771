"""The written report of one or more evaluations: forecasts.csv, report.json, report.md and the
plots, each written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import atomic_write_text
from ..evaluation import AGE_BUCKETS, Evaluation
from ..evaluation import metrics as M
from .plots import write_plots


def markdown_table(df: pd.DataFrame, cols, first: str = "model") -> str:
    """A markdown table of ``df``'s columns ``cols`` (those present), its index as the first column."""
    cols = [c for c in cols if c in df.columns]
    head = f"| {first} | " + " | ".join(map(str, cols)) + " |\n|---|" + "---|" * len(cols) + "\n"
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


def evaluated_models(ev: Evaluation) -> list[str]:
    """The models under evaluation (the meta-learners), as the job marked them; else every model
    but the benchmark."""
    return list(ev.meta.get("evaluated") or [m for m in ev.table.index if m != "ewma"])


def pair_losses(ev: Evaluation, out_of_sample: bool = True) -> pd.DataFrame:
    """QLIKE (ln h + s/h) of every (date, asset) pair, a column per model; out of sample only
    (pairs no model saw in training) unless asked otherwise."""
    f = ev.forecasts
    if out_of_sample and "in_sample" in f:
        f = f[~f["in_sample"].astype(bool)]
    loss = M.qlike_log(f["realized_variance"].to_numpy(), f["forecast_variance"].to_numpy())
    return f.assign(loss=loss).pivot_table(index=["date", "asset"], columns="model", values="loss", sort=True)


def summary_lines(ev: Evaluation) -> list[str]:
    """The one-screen verdict: out-of-sample loss of each evaluated model against every baseline
    (difference, Diebold-Mariano on the daily cross-asset mean loss) and its VaR backtest."""
    losses = pair_losses(ev)
    if losses.empty:
        return [f"**{ev.meta['label']}**: no out-of-sample asset-day (every evaluated pair was seen in training); "
                "give `--start` after the training end or assets the model never saw."]
    daily = losses.groupby(level="date").mean()
    n_assets = losses.index.get_level_values("asset").nunique()
    lines = [f"**{ev.meta['label']}**, out of sample: {len(losses)} asset-days ({n_assets} assets, "
             f"{str(daily.index.min())[:10]} to {str(daily.index.max())[:10]}); QLIKE (ln h + s/h), lower is better; "
             "DM on the "
             "daily mean over assets.", "",
             "| model | QLIKE | baseline | baseline QLIKE | difference | DM p | verdict |", "|---|---|---|---|---|---|---|"]
    for m in evaluated_models(ev):
        for b in [c for c in losses.columns if c not in evaluated_models(ev)]:
            diff = float(losses[m].mean() - losses[b].mean())
            p = M.diebold_mariano(daily[m], daily[b], ev.meta["horizon"]).pvalue
            verdict = ("better" if diff < 0 else "worse") + (" (significant at 5 %)" if p < 0.05 else " (not significant)")
            lines.append(f"| {m} | {losses[m].mean():.4f} | {b} | {losses[b].mean():.4f} | {diff:+.4f} | {p:.3g} | "
                         f"{verdict} |")
    for m in evaluated_models(ev):
        det = ev.details.get(m, {})
        if "var_0.01_t" in det:
            k, b = det["var_0.01_t"]["kupiec"], det["basel_1pct_normal"]["zone_counts"]
            lines += ["", f"{m}, over every evaluated asset-day: Student-t 1 % VaR exceeded on {k['exceedances']} of "
                      f"{k['n']} "
                      f"({k['exceedances'] / max(k['n'], 1):.2%}, expected 1 %, Kupiec p {k['pvalue']:.3g}); "
                      f"Basel zones of its normal 1 % VaR over each asset's last 250 days: {b['green']} green, "
                      f"{b['yellow']} yellow, {b['red']} red."]
    return lines


def per_asset_table(ev: Evaluation) -> str:
    """QLIKE by asset (every evaluated pair of the asset, in-sample ones marked) for the evaluated
    models, EWMA and the best baseline."""
    losses = pair_losses(ev, out_of_sample=False)
    models = evaluated_models(ev)
    others = [c for c in losses.columns if c not in models]
    best = min(others, key=lambda c: losses[c].mean()) if others else None
    cols = list(dict.fromkeys([*models, *(["ewma"] if "ewma" in losses else []), *([best] if best else [])]))
    by_asset = losses.groupby(level="asset")[cols].mean()
    f = ev.forecasts
    seen = set(f.loc[f["in_sample"].astype(bool), "asset"]) if "in_sample" in f else set()
    lines = ["| asset | " + " | ".join(cols) + " | days |", "|---|" + "---|" * (len(cols) + 1)]
    counts = losses.groupby(level="asset").size()
    for a, row in by_asset.iterrows():
        name = f"{a} (in-sample days)" if a in seen else a
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.4f}" for c in cols) + f" | {counts[a]} |")
    return "\n".join(lines)


def young_rows(ev: Evaluation) -> bool:
    """Whether the evaluation scored an asset younger than 251 prices (then it reports by age)."""
    return any(r["ages"] != AGE_BUCKETS[-1][0] for r in ev.meta.get("by_age", []))


def by_age_table(ev: Evaluation) -> str:
    """QLIKE by age bucket, each model on every day it forecasts, its difference to each compared
    model with the p-value over listings, and the 1 % VaR exceedance rates."""
    table = pd.DataFrame(ev.meta["by_age"])
    others = [c[len("diff_"):] for c in table.columns if c.startswith("diff_")]
    zeros = bool(table["nonpositive"].any())  # days a model forecast a variance <= 0 (left out: unbounded loss)
    head = (["ages", "model", "days", "listings", "QLIKE"] + ["days forecast <= 0"] * zeros
            + [f"vs {o} (p)" for o in others] + ["VaR 1 % hits normal", "VaR 1 % hits t"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict(orient="records"):
        vs = [("" if not np.isfinite(r[f"diff_{o}"]) else f"{r[f'diff_{o}']:+.4f} ({r[f'p_{o}']:.2g})")
              for o in others]
        lines.append("| " + " | ".join([r["ages"], r["model"], str(r["n"]), str(r["listings"]),
                                        f"{r['qlike']:.4f}" if r["n"] else "no forecast",
                                        *([str(r["nonpositive"])] * zeros), *vs,
                                        f"{r['hit_0.01_normal']:.2%}" if r["n"] else "",
                                        f"{r['hit_0.01_t']:.2%}" if r["n"] else ""]) + " |")
    return "\n".join(lines)


def render_markdown(evals: list[Evaluation], title: str, preamble: str = "") -> str:
    """The Markdown report of evaluations ``evals``: a summary, the ``preamble``, then each
    evaluation's tables."""
    out = [f"# {title}\n", "## Summary\n"]
    for ev in evals:
        out += summary_lines(ev) + [""]
    out.append(preamble)
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
        out.append(markdown_table(ev.table.sort_values("qlike"), SUMMARY_COLS))
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
        out.append("\nQLIKE by asset (all evaluated days of the asset):\n\n" + per_asset_table(ev) + "\n")
        if young_rows(ev):
            out.append("\nQLIKE by age (prices the asset has since it listed or restarted after a gap), each model "
                       "on every day it forecasts (a GARCH fit needs its first returns; the table above keeps the "
                       "days every model forecasts); differences on the days both forecast, one mean per listing, "
                       "p-value of a t test over listings:\n\n" + by_age_table(ev) + "\n")
    return "\n".join(out)


def write_report(evals: list[Evaluation], out_dir, title: str, preamble: str = "", extra: dict | None = None,
                 plots: bool = True) -> dict:
    """forecasts.csv, report.json, report.md and PNG plots, each written atomically."""
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
        files += write_plots(evals, out)
    return {"files": files}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
