"""The report's PNG plots: forecast against realised volatility, loss by model, VaR exceedances."""
from __future__ import annotations

import io

import numpy as np

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
    plt = pyplot()

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
    files.append("var_exceedances.png")
    return files
