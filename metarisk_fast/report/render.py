"""The written report of one or more evaluations: forecasts.csv, report.json, report.md and the
plots, each written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import atomic_write_text
from ..evaluation import Evaluation
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
