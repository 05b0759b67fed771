"""The report's PNG plots: forecast against realised volatility, loss by model, VaR exceedances, loss by age."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from .._files import atomic_write_bytes
from ..evaluation.risk import ANNUAL


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no screen needed): every report's plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    """The figure as the reports' PNG, closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def _save(fig, path):
    atomic_write_bytes(path, png_bytes(fig))


def write_plots(evals, out) -> list[str]:
    """forecast_vs_realised.png (the evaluated models, the best baseline and EWMA against realised
    volatility), loss_by_model.png (each model's QLIKE difference to EWMA with its 95 % interval)
    and var_exceedances.png (the evaluated model's 1 % VaR and its exceedances against the count
    expected)."""
    from .render import evaluated_models, young_rows

    plt = pyplot()
    files = []
    ev = next((e for e in reversed(evals) if not young_rows(e)), evals[-1])  # the series plots: mature assets
    f = ev.forecasts
    all_assets = list(dict.fromkeys(f["asset"]))
    assets = all_assets[:6]
    evaluated = evaluated_models(ev)
    baselines = [m for m in ev.table.sort_values("qlike").index if m not in evaluated]
    models = list(dict.fromkeys([*evaluated, *baselines[:1], *(["ewma"] if "ewma" in ev.table.index else [])]))
    fig, axes = plt.subplots(len(assets), 1, figsize=(10, 2.2 * len(assets)), sharex=True, squeeze=False)
    for ax, a in zip(axes[:, 0], assets):
        sub = f[f["asset"] == a]
        base = sub[sub["model"] == models[0]].set_index("date")
        realised = np.sqrt(base["realized_variance"].rolling(21, min_periods=5).mean() * ANNUAL)
        ax.plot(realised.index, realised, color="0.6", lw=1, label="realised (21-day mean)")
        for m in models:
            s = sub[sub["model"] == m].set_index("date")
            ax.plot(s.index, np.sqrt(s["forecast_variance"] * ANNUAL), lw=0.8, label=m)
        ax.set_ylabel(f"{a}\nannualised vol")
    axes[0, 0].legend(fontsize=7, ncol=5, loc="upper left")
    shown = f"{len(assets)} of {len(all_assets)} assets" if len(all_assets) > len(assets) else "every asset"
    axes[0, 0].set_title(f"Forecast vs realised volatility ({ev.meta['label']}; {shown})")
    _save(fig, out / "forecast_vs_realised.png")
    files.append("forecast_vs_realised.png")

    rows = []  # (label, difference to EWMA, half-width of the 95 % interval from the DM statistic)
    for e in evals:
        if "ewma" not in e.table.index:
            continue
        for name, r in e.table.sort_values("qlike").iterrows():
            if name == "ewma":
                continue
            diff = r["qlike"] - e.table.loc["ewma", "qlike"]
            half = 1.96 * abs(diff / r["dm_vs_ewma"]) if np.isfinite(r["dm_vs_ewma"]) and r["dm_vs_ewma"] else 0.0
            rows.append((f"{e.meta['label']}: {name}" if len(evals) > 1 else name, diff, half))
    if rows:
        fig, ax = plt.subplots(figsize=(8, 1.0 + 0.35 * len(rows)))
        labels, diffs, halves = zip(*rows)
        colors = ["tab:green" if d < 0 else "tab:red" for d in diffs]
        ax.barh(labels, diffs, xerr=halves, color=colors, ecolor="0.3", capsize=3)
        ax.axvline(0.0, color="0.2", lw=0.8)
        ax.set_xlabel("mean QLIKE minus EWMA's (ln h + s/h): below 0 beats EWMA; bars: 95 % interval (DM, HAC)")
        ax.set_title(f"Loss against EWMA ({', '.join(e.meta['label'] for e in evals)})" if len(evals) == 1
                     else "Loss against EWMA")
        ax.invert_yaxis()
        _save(fig, out / "loss_by_model.png")
        files.append("loss_by_model.png")

    a = assets[0]
    sub = f[(f["asset"] == a) & (f["model"] == evaluated[0])].set_index("date")
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(sub.index, sub["next_return"], lw=0.5, color="0.4", label="next-day log return")
    ax.plot(sub.index, sub["var_1"], lw=0.8, color="tab:red", label=f"1 % VaR (normal, {evaluated[0]})")
    hit = sub["next_return"] < sub["var_1"]
    ax.scatter(sub.index[hit], sub["next_return"][hit], s=10, color="tab:red", zorder=3, label="exceedance")
    ax.set_ylabel("daily log return")
    ax.set_title(f"1 % VaR exceedances, {a}: {int(hit.sum())} of {len(sub)} days (expected {0.01 * len(sub):.0f})")
    ax.legend(fontsize=7)
    _save(fig, out / "var_exceedances.png")
    files.append("var_exceedances.png")
    young = [e for e in evals if young_rows(e)]
    if young:
        files.append(_loss_by_age(plt, young[-1], out))
    return files


def _loss_by_age(plt, ev, out) -> str:
    """loss_by_age.png: each model's mean QLIKE minus the benchmark's by age bucket, on the days
    both forecast (one mean per listing; bars: 95 % interval over listings), on a symmetric log
    scale (a near-zero young forecast costs thousands, a mature edge a hundredth)."""
    table = pd.DataFrame(ev.meta["by_age"])
    bench = ev.meta["benchmark"]
    col = f"diff_{bench}"
    buckets = list(dict.fromkeys(table["ages"]))
    models = [m for m in dict.fromkeys(table["model"]) if m != bench]
    fig, ax = plt.subplots(figsize=(9, 4.6))
    width = 0.8 / max(len(models), 1)
    colors = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")(np.arange(len(models)) % 20)  # one per model
    for i, m in enumerate(models):
        sub = table[table["model"] == m].set_index("ages").reindex(buckets)
        diff = sub[col].to_numpy(float)
        half = np.abs(1.96 * diff / sub[f"t_{bench}"].to_numpy(float))
        x = np.arange(len(buckets)) + (i - (len(models) - 1) / 2) * width
        ax.bar(x, diff, width, yerr=np.where(np.isfinite(half), half, 0.0), capsize=2, label=m, color=colors[i])
    ax.axhline(0.0, color="0.2", lw=0.8)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xticks(np.arange(len(buckets)), [f"{b} prices" for b in buckets])
    ax.set_ylabel(f"mean QLIKE minus {bench}'s\n(below 0: better)")
    ax.set_title(f"Loss by age against {bench}: {ev.meta['label'].split(' (')[0]}", fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(models), 7), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    _save(fig, out / "loss_by_age.png")
    return "loss_by_age.png"
