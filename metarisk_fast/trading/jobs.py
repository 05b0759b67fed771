"""`metarisk trade train | evaluate | demo` as library calls.

Tasks (blocks of 252 bars of one asset, trading/env.TaskPool): for training, the embedded
panel's training assets up to ``train_end`` and the synthetic regimes (trending,
mean-reverting, high-volatility, crash) of seeds 0 and 1; held out, the panel's other assets
after ``train_end`` ("stocks") and the regimes drawn with seed 7 ("regimes"). A policy directory
holds ``policy.pt`` and ``policy.json``; every file is written atomically."""
from __future__ import annotations

import io
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._files import atomic_write_bytes, atomic_write_text, check_output
from ..evaluation import mean_interval
from ..report import markdown_table, png_bytes, pyplot
from ..datasets import REGIMES, load_sp500_20, synthetic_regimes
from ..tasks import asset_split, time_split
from .env import TaskPool, TradingSpec, TradingTasks
from .evaluate import evaluate_methods
from .policy import MetaPolicy
from .train import ALGORITHMS, PolicyTraining, train_policy

SPEC = TradingSpec(length=21, cost=5e-4)  # 5 bp a unit of turnover
TRAIN_END = "2014-12-31"
REGIME_DAYS, REGIME_ASSETS, TRAIN_SEEDS, HELD_OUT_SEED = 1100, 8, (0, 1), 7
DEMO_METHODS = ("promp", "maml")


def task_pools(model=None, train_end: str = TRAIN_END, holdout: int = 5) -> tuple[TaskPool, dict[str, TaskPool]]:
    """(training pool, held-out pools by group) of the embedded panel and the synthetic regimes;
    with ``model`` (a variance model directory from `metarisk train`) the observations hold its
    forecast at each bar (made from data up to that bar)."""
    panel = load_sp500_20(warn_data=False)
    end_row, test_start = time_split(panel, train_end, 1)
    train_assets, test_assets = asset_split(panel.assets, holdout)
    forecast = _forecaster(model)

    def tasks(p):
        return TradingTasks(p, SPEC, forecast=None if forecast is None else forecast(p))

    stocks = tasks(panel)

    def regimes(seed):
        return [(tasks(synthetic_regimes(r, n_days=REGIME_DAYS, n_assets=REGIME_ASSETS, seed=seed)), None, None, None)
                for r in REGIMES]

    train = TaskPool([(stocks, train_assets, None, str(panel.dates[end_row]))] +
                     [src for s in TRAIN_SEEDS for src in regimes(s)])
    held = {"stocks": TaskPool([(stocks, test_assets, str(panel.dates[test_start]), None)]),
            "regimes": TaskPool(regimes(HELD_OUT_SEED))}
    return train, held


def _forecaster(model):
    """A function panel -> the model's variance forecasts (days, assets), or None without a model."""
    if model is None:
        return None
    from ..forecasting import SavedModelForecasts

    return SavedModelForecasts(model).variance


def save_policy(out, policy: MetaPolicy, options: PolicyTraining, curve: np.ndarray, model=None) -> None:
    """Write a policy directory: policy.pt, and policy.json with its training options and
    learning curve."""
    p = check_output(out, "dir")
    p.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(policy.state_dict(), buf)
    atomic_write_bytes(p / "policy.pt", buf.getvalue())
    meta = {"format": 1, "n_obs": policy.net.layers[0].in_features, "training": asdict(options),
            "spec": asdict(SPEC), "train_end": TRAIN_END, "model": None if model is None else str(model),
            "curve_bp": curve.round(4).tolist()}
    atomic_write_text(p / "policy.json", json.dumps(meta, indent=1))


def load_policy(path) -> tuple[MetaPolicy, PolicyTraining, str | None]:
    """(policy, its training options, the variance model its observations hold, if any)."""
    p = Path(path)
    try:
        meta = json.loads((p / "policy.json").read_text())
        o = meta["training"]
        options = PolicyTraining(**{**o, "hidden": tuple(o["hidden"])})
        policy = MetaPolicy(int(meta["n_obs"]), 1, hidden=options.hidden, sigma=options.sigma,
                            inner_lr=options.inner_lr, inner_steps=options.inner_steps,
                            mode="first_order" if options.algorithm == "fomaml" else "second_order")
        policy.load_state_dict(torch.load(p / "policy.pt", weights_only=True))
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a policy directory written by `metarisk trade train` (missing or damaged): "
                         f"{exc}") from None
    return policy, options, meta.get("model")


def train(out, options: PolicyTraining = PolicyTraining(), *, model=None, log=None) -> np.ndarray:
    """Train one policy on the training pool (with ``model``'s forecasts in its observations) and
    save it to ``out``.

    Parameters
    ----------
    out : str or os.PathLike
        The policy directory to write (new or empty).
    options : PolicyTraining
        The algorithm (ProMP, Reptile, pooled, ...) and its settings.
    model : str or os.PathLike, optional
        A variance model directory whose forecasts join the observations (None: none).
    log : callable, optional
        Called with each progress line (None: silent).

    Returns
    -------
    numpy.ndarray
        (iterations, 2) learning curve: the mean reward per bar in basis points before and after
        adaptation, both sampled with exploration.
    """
    check_output(out, "dir")
    pool, _ = task_pools(model)
    policy, curve = train_policy(pool, options, log=log)
    save_policy(out, policy, options, curve, model)
    return curve


def evaluate(policies, pooled, out, *, seed: int = 0, log=None) -> dict:
    """Every method on the held-out pools: the meta-trained policies (directories), the pooled
    one (a directory trained with --algorithm pooled) and the baselines; writes ``out``.

    Parameters
    ----------
    policies : sequence of str or os.PathLike
        Meta-trained policy directories.
    pooled : str or os.PathLike
        A policy directory trained with --algorithm pooled (over the same variance model).
    out : str or os.PathLike
        The report directory to write (new or empty).
    seed : int
        The seed of the held-out episodes.
    log : callable, optional
        Called with each progress line (None: silent).

    Returns
    -------
    dict
        Per held-out group and method: the mean Sharpe, turnover, drawdown and P&L with 95 %
        intervals; per meta method, its Sharpe after adaptation against before, the pooled policy and PPO.
    """
    check_output(out, "dir")
    meta, models = {}, set()
    for path in policies:
        policy, options, model = load_policy(path)
        meta[f"{options.algorithm} ({Path(path).name})"] = policy
        models.add(model)
    pooled_policy, options, model = load_policy(pooled)
    if options.algorithm != "pooled":
        raise ValueError(f"--pooled {pooled}: trained with --algorithm {options.algorithm}, not pooled")
    if models != {model}:
        raise ValueError(f"the policies were trained on observations with different variance models "
                         f"({sorted(map(str, models | {model}))}): train them all with the same --model")
    _, held = task_pools(model)
    rows = _rows(held, meta, pooled_policy, options, seed)
    summary = _summarise(rows, [seed])
    _write(out, rows, summary, {}, log)
    return summary


def demo(out="trade_report", *, seeds: int = 5, iterations: int = 150, model=None, log=None) -> dict:
    """ProMP and MAML-PG against the pooled policy (as is, fine-tuned, PPO fine-tuned), volatility
    targeting and buy and hold, over ``seeds`` training seeds, on every held-out task."""
    check_output(out, "dir")
    t0 = time.perf_counter()
    pool, held = task_pools(model)
    if log:
        log(f"{len(pool)} training tasks; held out: {len(held['stocks'])} stock tasks, {len(held['regimes'])} regime tasks")
    rows, curves = [], {}
    for seed in range(seeds):
        policies = {}
        for algorithm in (*DEMO_METHODS, "pooled"):
            options = PolicyTraining(algorithm=algorithm, iterations=iterations, seed=seed)
            policies[algorithm], curve = train_policy(pool, options)
            curves.setdefault(algorithm, []).append(curve)
        pooled = policies.pop("pooled")
        rows += _rows(held, policies, pooled, options, seed)
        if log:
            log(f"seed {seed}: trained and evaluated ({time.perf_counter() - t0:.0f} s)")
    summary = _summarise(rows, list(range(seeds)))
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    _write(out, rows, summary, {k: np.stack(v) for k, v in curves.items()}, log)
    return summary


def _rows(held: dict[str, TaskPool], meta, pooled, options: PolicyTraining, seed: int) -> list[dict]:
    rows = []
    for group, pool in held.items():
        res = evaluate_methods(pool, np.arange(len(pool)), meta, pooled, episodes=options.episodes,
                               length=options.length, seed=1000 + seed)
        for method, metrics in res.items():
            rows.append({"seed": seed, "group": group, "method": method, "tasks": len(pool),
                         **{k: float(np.mean(v)) for k, v in metrics.items()}})
    return rows


def _summarise(rows: list[dict], seeds: list[int]) -> dict:
    """Per group and method: the seeds' mean Sharpe / turnover / drawdown with a 95 % t interval
    over seeds; per meta method: the improvement after - before adaptation, and after adaptation
    minus the pooled policy and minus PPO fine-tuned, paired by seed."""
    frame = pd.DataFrame(rows)
    out = {"seeds": seeds, "groups": {}}
    for group, g in frame.groupby("group", sort=False):
        methods = {}
        for method, m in g.groupby("method", sort=False):
            ordered = m.sort_values("seed")
            methods[method] = {k: mean_interval(ordered[k]) for k in ("sharpe", "turnover", "max_drawdown", "pnl_bp")}
        by = g.pivot(index="seed", columns="method", values="sharpe")
        ppo = next(c for c in by.columns if c.startswith("pooled, PPO"))
        paired = {}
        for name in [c[:-len(", after adaptation")] for c in by.columns if c.endswith(", after adaptation")]:
            after = by[f"{name}, after adaptation"]
            paired[name] = {"after_minus_before": mean_interval(after - by[f"{name}, before adaptation"]),
                            "after_minus_pooled": mean_interval(after - by["pooled"]),
                            "after_minus_ppo": mean_interval(after - by[ppo])}
        out["groups"][group] = {"tasks": int(g.tasks.iloc[0]), "methods": methods, "paired_sharpe": paired}
    return out


def _fmt(iv) -> str:
    mean, lo, hi = iv
    return f"{mean:+.3f}" if np.isnan(lo) else f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _markdown(summary: dict, rows: list[dict]) -> str:
    lines = ["# metarisk trade\n",
             f"Held-out tasks (blocks of 252 bars: the first half for adaptation, the second traded), net of a "
             f"{SPEC.cost * 1e4:g} bp cost per unit of turnover, positions in [-{SPEC.max_position:g}, "
             f"{SPEC.max_position:g}]. Seeds {summary['seeds']}; each figure is the mean over seeds of the mean over "
             "tasks, with a 95 % t interval over seeds.\n"]
    for group, g in summary["groups"].items():
        lines += [f"## {group} ({g['tasks']} tasks)\n", "| method | Sharpe (annualised) | turnover a bar | "
                  "max drawdown | PnL bp a bar |", "| --- | --- | --- | --- | --- |"]
        for method, m in g["methods"].items():
            lines.append(f"| {method} | {_fmt(m['sharpe'])} | {m['turnover'][0]:.3f} | {m['max_drawdown'][0]:.4f} | "
                         f"{m['pnl_bp'][0]:+.2f} |")
        lines += ["", "Sharpe differences paired by seed:", "",
                  "| meta-learner | after - before adaptation | after - pooled | after - PPO fine-tuned |",
                  "| --- | --- | --- | --- |"]
        for name, p in g["paired_sharpe"].items():
            lines.append(f"| {name} | {_fmt(p['after_minus_before'])} | {_fmt(p['after_minus_pooled'])} | "
                         f"{_fmt(p['after_minus_ppo'])} |")
        lines.append("")
    every = pd.DataFrame(rows).pivot_table(index=["group", "method"], columns="seed", values="sharpe", sort=False)
    every.index = [f"{g}: {m}" for g, m in every.index]
    every.columns = [f"seed {c}" for c in every.columns]
    lines += ["## Every seed (Sharpe)\n", markdown_table(every, list(every.columns), first="task group: method")]
    return "\n".join(lines)


def _write(out, rows, summary, curves: dict, log) -> None:
    p = Path(out)
    p.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p / "results.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_write_text(p / "report.json", json.dumps(summary, indent=1))
    atomic_write_text(p / "report.md", _markdown(summary, rows))
    if curves:
        atomic_write_bytes(p / "learning_curve.png", _plot(curves))
    if log:
        log(f"report written to {out}")


def _plot(curves: dict[str, np.ndarray]) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, c) in enumerate(curves.items()):  # c: (seeds, iterations, 2)
        mean = c.mean(axis=0)
        k = min(10, len(mean))  # a 10-iteration moving average
        smooth = np.array([np.convolve(mean[:, j], np.ones(k) / k, "valid") for j in range(2)]).T
        x = np.arange(k, len(mean) + 1)
        ax.plot(x, smooth[:, 0], color=f"C{i}", ls=":", label=f"{name}: before adaptation")
        if name != "pooled":
            ax.plot(x, smooth[:, 1], color=f"C{i}", label=f"{name}: after adaptation")
    ax.set_xlabel("meta-training iteration")
    ax.set_ylabel("reward a bar, bp (with exploration)")
    ax.set_title("Training tasks: reward before and after adaptation (mean over seeds, 10-iteration average)")
    ax.legend(fontsize=7)
    return png_bytes(fig)


__all__ = ["ALGORITHMS", "demo", "evaluate", "load_policy", "save_policy", "task_pools", "train"]
