"""The variance-forecasting application as library calls: ``train``, ``forecast``, ``evaluate`` and
``demo`` do what the `metarisk` subcommands of the same names do, with the same results, and
return what they computed. Paths are checked before any long work; files are written atomically.
``log`` receives one-line progress messages (None: silent)."""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ._files import atomic_write_text
from .data import coarse_stretches, load_prices
from .datasets import load_sp500_20
from .evaluation import Evaluation, evaluate as evaluate_forecasts, qlike_log, risk_columns, write_report
from .forecasting import (LEARNERS, EWMAForecaster, GARCHForecaster, HARForecaster, MetaForecaster,
                          load_model, make_learner, save_model, train_meta)
from .forecasting.distributed import join_torchrun, run_local, threads_per_rank, wait_for_all_ranks
from .forecasting.training import process_group
from .streaming import RiskEngine
from .tasks import TARGET, EpisodeBuilder, TaskSpec, asset_split, time_split

DEFAULT_HISTORIES = (20, 60, 250)
DEMO_LEARNERS = ("maml", "fomaml", "reptile", "metasgd", "memory", "memory_maml", "pooled")
QUERY = 20  # query days per training episode
Log = Callable[[str], None] | None


@dataclass(frozen=True)
class TrainOptions:
    """Meta-training hyper-parameters shared by ``train`` and ``demo``."""

    steps: int = 1500
    batch: int = 64
    meta_lr: float = 1e-3
    inner_lr: float = 0.06
    inner_steps: int = 5
    hidden: tuple[int, ...] = (64, 64)
    seed: int = 0

    def __post_init__(self):
        for name, lo, hi in (("steps", 1, 10**7), ("batch", 1, 65536), ("inner_steps", 0, 10_000), ("seed", 0, None)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
                raise ValueError(f"{name} must be an int in [{lo}, {hi if hi is not None else 'inf'}], got {v!r}")
        for name in ("meta_lr", "inner_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                                  for h in self.hidden):
            raise ValueError(f"hidden must be one or more layer sizes >= 1, got {self.hidden!r}")


def _check_count(name: str, value, lo: int = 1, hi: int = 5000) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")


def _say(log: Log, msg: str) -> None:
    if log is not None:
        log(msg)


def check_out(path, kind: str, option: str = "--out") -> None:
    """Refuse an output path of the wrong kind ('file' or 'dir') before any work starts."""
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise ValueError(f"{option} {path} is a directory; give the path of the file to write")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise ValueError(f"{option} {path} exists and is not a directory")
    parent = (p if kind == "dir" else p.parent).resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: {parent} is not a directory")


def load_panel(source, log: Log = None):
    """A price panel from a path, a DataFrame or 'default' (the embedded S&P 500 panel); its
    warnings go to ``log`` as one line each (the report holds the details)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panel = load_sp500_20() if isinstance(source, str) and source == "default" else load_prices(source)
    for w in caught:
        _say(log, f"warning: {w.message}")
    return panel


def grid(panel, assets, start_row: int, end_row: int):
    """(asset, row) pairs of every asset over rows start_row..end_row."""
    cols = panel.asset_index(list(assets))
    rows = np.arange(start_row, end_row + 1)
    return np.repeat(cols, len(rows)), np.tile(rows, len(cols))


def _data_quality(panel) -> dict:
    return {"coarse_stretches": [{"asset": a, "first": str(f), "last": str(t), "largest_step": round(w, 6)}
                                 for a, f, t, w in coarse_stretches(panel)]}


def _data_quality_line(quality: dict) -> str:
    n = len(quality["coarse_stretches"])
    return (f" Data quality: coarsely rounded prices in {n} stretches (listed in report.json, `data_quality`)."
            if n else "")


def _train_learner(kind, builder, assets, end_date, opts: TrainOptions, supports, log: Log, **checkpointing):
    learner = make_learner(kind, builder.spec.n_features, opts.hidden, opts.inner_lr, opts.inner_steps,
                           loss=TARGET.loss_for(builder.spec.horizon))
    t0 = time.perf_counter()
    run = train_meta(learner, builder, assets, end_date, steps=opts.steps, batch=opts.batch, lr=opts.meta_lr,
                     seed=opts.seed, supports=supports, progress=log is not None, desc=f"train {kind}",
                     **checkpointing)
    return learner, {"train_seconds": round(time.perf_counter() - t0, 2),
                     "final_meta_loss": float(np.mean(run["losses"][-20:])), "diverged_batches_skipped": run["skipped"]}


def baselines(garch: bool = True, garch_refit: int = 63, progress: bool = False) -> list:
    out = [EWMAForecaster(), HARForecaster(name="har"), HARForecaster(log=True, name="log_har")]
    if garch:
        out += [GARCHForecaster(name="garch_t", progress=progress, refit=garch_refit),
                GARCHForecaster(gjr=True, name="gjr_garch_t", progress=progress, refit=garch_refit)]
    return out


def _run_baselines(builder, A, R, garch, garch_refit, log):
    models, fitted = {}, baselines(garch, garch_refit, progress=log is not None)
    for b in fitted:
        _say(log, f"forecasting with {b.name}")
        models[b.name] = b.predict(builder, A, R)
    fits = {b.name: {"fits": b.fits, "convergence_failures": b.failures} for b in fitted if hasattr(b, "failures")}
    line = "".join(f" {n}: {v['fits']} fits, {v['convergence_failures']} failed to converge (no forecast "
                   "for their blocks)." for n, v in fits.items())
    return models, fits, line


# --------------------------------------------------------------------------- train
def train(prices, out, *, learner: str = "maml", horizon: int = 1, history: int = 60, train_end=None,
          options: TrainOptions = TrainOptions(), log: Log = None, nproc: int = 1, checkpoint_every: int = 0,
          resume: bool = False) -> dict:
    """Meta-train on 80 % of the panel's assets up to ``train_end``, validate on the rest, and save
    the model directory ``out``; returns its metadata (model.json). ``nproc`` > 1: data-parallel
    over that many local processes (torch.distributed, gloo); under `torchrun` the ranks it
    started join one group. Every ``checkpoint_every`` steps rank 0 rewrites
    ``out/checkpoint.pt``; ``resume`` continues from it. Rank 0 alone writes."""
    check_out(out, "dir")
    for name, value, lo, hi in (("history", history, 1, 5000), ("horizon", horizon, 1, 250), ("nproc", nproc, 1, 1024),
                                ("checkpoint_every", checkpoint_every, 0, 10**7)):
        _check_count(name, value, lo, hi)
    panel = load_panel(prices, log)
    if panel.n_assets < 2:
        raise ValueError(f"{panel.source}: {panel.n_assets} asset(s); training holds out at least one asset "
                         "for validation, so it needs two or more")
    end = panel.dates[-1] if train_end is None else np.datetime64(train_end, "D")
    if end < panel.dates[0]:
        raise ValueError(f"--train-end {train_end} is before the first date of {panel.source} ({panel.dates[0]})")
    if options.batch % nproc:
        raise ValueError(f"--batch {options.batch} must be a multiple of --nproc {nproc}")
    if resume and not (Path(out) / CHECKPOINT).exists():
        raise ValueError(f"--resume: no checkpoint in {out} (`{CHECKPOINT}` is written every --checkpoint-every steps)")
    job = (panel, str(out), learner, horizon, history, end, options, log is not None, checkpoint_every, resume)
    if nproc > 1:
        _say(log, f"training on {nproc} processes, {threads_per_rank(nproc)} kernel thread(s) each")
        run_local(_train_process, nproc, *job)
    elif join_torchrun():  # a rank of torchrun's group: read the model once rank 0 has written it
        _train_process(*job)
        wait_for_all_ranks()
    else:
        _train_process(*job)
    return load_model(out)[2]


CHECKPOINT = "checkpoint.pt"


def _train_process(panel, out, learner, horizon, history, end, options, progress, checkpoint_every, resume):
    """One process's share of ``train``: every rank trains; rank 0 validates and saves."""
    rank, world = process_group()
    torch.manual_seed(options.seed)  # the initial weights: the same on one process or many
    log = _stderr if progress and rank == 0 else None
    spec = TaskSpec(horizon=horizon, support=history, query=QUERY)
    end_row = panel.row_of(end, "right") - 1
    builder = EpisodeBuilder(panel, spec)
    train_assets, val_assets = asset_split(panel.assets, max(1, round(0.2 * panel.n_assets)), seed=options.seed)
    _say(log, f"training {learner} on {len(train_assets)} assets up to {panel.dates[end_row]}; "
              f"validating on held-out {', '.join(val_assets)}")
    if checkpoint_every:  # the checkpoint lives in the model directory
        Path(out).mkdir(parents=True, exist_ok=True)
    model, info = _train_learner(learner, builder, train_assets, panel.dates[end_row], options, (history,), log,
                                 checkpoint=Path(out) / CHECKPOINT, checkpoint_every=checkpoint_every, resume=resume)
    if rank != 0:
        return
    # validation: held-out assets over the last quarter of the training period
    lo = end_row - max((end_row - spec.horizon) // 4, 30)
    A, R = grid(panel, val_assets, lo, end_row - spec.horizon)
    s = builder.y[R, A]
    fm = MetaForecaster(model, history).predict(builder, A, R)
    fe = EWMAForecaster().predict(builder, A, R)
    ok = np.isfinite(s) & np.isfinite(fm) & np.isfinite(fe)
    val = {"assets": val_assets, "first_date": str(panel.dates[lo]), "last_date": str(panel.dates[end_row - spec.horizon]),
           "qlike_model": float(qlike_log(s[ok], fm[ok]).mean()), "qlike_ewma": float(qlike_log(s[ok], fe[ok]).mean())}
    info = {"train_assets": train_assets, "train_end": str(panel.dates[end_row]), "prices": panel.source,
            "seed": options.seed, "meta_steps": options.steps, "processes": world, "validation": val, **info}
    save_model(out, learner, model, spec, history=history, hidden=options.hidden, info=info)
    (Path(out) / CHECKPOINT).unlink(missing_ok=True)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- forecast
def forecast(model, prices, *, start=None, history: int | None = None, log: Log = None) -> pd.DataFrame:
    """The forecast table (columns: date, asset, forecast_variance and ``risk_columns``) of every
    asset from ``start`` (default: as soon as history allows); ``model`` is a model directory."""
    if history is not None:
        _check_count("history", history)
    learner, spec, meta = load_model(model)
    panel = load_panel(prices, log)
    history = meta["history"] if history is None else history
    builder = EpisodeBuilder(panel, spec)
    lo = 0 if start is None else panel.row_of(start)
    if lo >= panel.n_days:
        raise ValueError(f"--start {start} is after the last date of {panel.source} ({panel.dates[-1]})")
    A, R = grid(panel, panel.assets, lo, panel.n_days - 1)
    f = MetaForecaster(learner, history).predict(builder, A, R)
    ok = np.isfinite(f)
    if not ok.any():
        raise ValueError(f"{panel.source}: no date from {panel.dates[lo]} on has {history} days of history "
                         f"(+{spec.horizon + builder.spec.features.warmup} for targets and features) for any asset")
    f, A, R = f[ok], A[ok], R[ok]
    return pd.DataFrame({"date": panel.dates[R], "asset": np.asarray(panel.assets, dtype=object)[A],
                         "forecast_variance": f, **risk_columns(f)}).sort_values(["date", "asset"], kind="stable")


def forecast_to_csv(model, prices, out, **kw) -> pd.DataFrame:
    check_out(out, "file")
    frame = forecast(model, prices, **kw)
    atomic_write_text(out, frame.to_csv(index=False))
    return frame


# --------------------------------------------------------------------------- stream
STREAM_COLUMNS = ("date", "asset", "forecast_variance", "var_1", "var_5", "es_2_5")
STRESS_COLUMNS = ("stress_score", "stress_alarm")  # with a market-wide monitor: its reading of the bar, 0/1 alarm


def _with_stress(frame: pd.DataFrame, snap) -> pd.DataFrame:
    if snap.stress is not None:
        frame[STRESS_COLUMNS[0]], frame[STRESS_COLUMNS[1]] = snap.stress.score, int(snap.stress.alarm)
    return frame


def stream(model, prices, out=None, *, start=None, history: int | None = None, readapt_every: int = 1,
           online_lr: float = 0.0, monitor=None, log: Log = None) -> pd.DataFrame:
    """Replay a price file bar by bar through a RiskEngine and return (and write to ``out``, a CSV
    file) ``forecast``'s table from ``start`` on; with ``readapt_every`` = 1 it equals
    ``forecast``'s bit for bit. ``monitor``: a function of the number of assets giving the
    engine's market-wide monitor (warning.StressScore); its reading adds STRESS_COLUMNS."""
    if out is not None:
        check_out(out, "file")
    panel = load_panel(prices, log)
    engine = RiskEngine.from_model(model, list(panel.assets), history=history, readapt_every=readapt_every,
                                   online_lr=online_lr, monitor=None if monitor is None else monitor(panel.n_assets))
    lo = 0 if start is None else panel.row_of(start)
    if lo >= panel.n_days:
        raise ValueError(f"--start {start} is after the last date of {panel.source} ({panel.dates[-1]})")
    ohlc = {k: getattr(panel, k) for k in ("open", "high", "low")} if panel.has_ohlc else {}
    frames = []
    t0 = time.perf_counter()
    for i in range(panel.n_days):
        snap = engine.update(panel.close[i], date=panel.dates[i], **{k: v[i] for k, v in ohlc.items()})
        if i >= lo and snap.ready.any():
            frames.append(_with_stress(snap.to_frame(), snap))
    if not frames:
        raise ValueError(f"{panel.source}: no bar from {panel.dates[lo]} on has enough history for a forecast "
                         f"(the engine needs {engine.bars_needed} bars of an asset)")
    frame = pd.concat(frames, ignore_index=True)
    _say(log, f"streamed {panel.n_days} bars of {panel.n_assets} assets in {time.perf_counter() - t0:.2f} s")
    if out is not None:
        atomic_write_text(out, frame.to_csv(index=False))
    return frame


def stream_lines(model, lines, write: Callable[[str], None], *, history: int | None = None, readapt_every: int = 1,
                 online_lr: float = 0.0, warm_up=None, state=None, monitor=None, log: Log = None) -> int:
    """A live feed: ``lines`` are CSV text lines, a header ``date,ASSET1,ASSET2,...`` then one bar
    of closes per line (empty field: no price); for each bar ``write`` gets one line per asset with
    a forecast, in ``STREAM_COLUMNS`` (and STRESS_COLUMNS with a ``monitor``, as in ``stream``),
    after a header. ``warm_up``: a price file to start from; ``state``: an engine state file,
    continued if it exists and rewritten at the end of the feed. A bad line is reported to
    ``log`` and skipped (the engine is unchanged). Returns the bars taken."""
    lines = iter(lines)
    header = next(lines, "").strip()
    names = [h.strip() for h in header.split(",")]
    if len(names) < 2 or names[0].lower() != "date":
        raise ValueError(f"the feed's first line must be a header `date,ASSET1,...`, got {header[:80]!r}")
    assets = names[1:]
    kw = dict(history=history, readapt_every=readapt_every, online_lr=online_lr,
              monitor=None if monitor is None else monitor(len(assets)))
    if state is not None and Path(state).exists():
        engine = RiskEngine.load(state, model, **kw)
        if engine.assets != assets:
            raise ValueError(f"{state}: holds assets {engine.assets}, the feed's header names {assets}")
    else:
        engine = RiskEngine.from_model(model, assets, **kw)
    if warm_up is not None:
        engine.warm_up(load_panel(warm_up, log))
    write(",".join(STREAM_COLUMNS + (STRESS_COLUMNS if monitor is not None else ())) + "\n")
    taken = 0
    for number, line in enumerate(lines, start=2):
        line = line.strip()
        if not line:
            continue
        fields = line.split(",")
        try:
            if len(fields) != len(names):
                raise ValueError(f"{len(fields)} fields, the header has {len(names)}")
            bar = np.array([float(f) if f.strip() else np.nan for f in fields[1:]])
            snap = engine.update(bar, date=fields[0].strip())
        except ValueError as exc:
            _say(log, f"line {number}: {exc} (bar skipped)")
            continue
        taken += 1
        rows = np.flatnonzero(snap.ready)
        stress = "" if snap.stress is None else f",{snap.stress.score!r},{int(snap.stress.alarm)}"
        write("".join(f"{snap.date},{snap.assets[j]},{float(snap.variance[j])!r},{float(snap.var_1[j])!r},"
                      f"{float(snap.var_5[j])!r},{float(snap.es_2_5[j])!r}{stress}\n" for j in rows))
    if state is not None:
        engine.save(state)
    return taken


# --------------------------------------------------------------------------- evaluate
def evaluate(model, prices, out, *, start=None, history: int | None = None, garch: bool = True,
             garch_refit: int = 63, log: Log = None) -> Evaluation:
    """The model against the baselines from ``start`` (default: the first day after the model's
    training end and an h-day embargo); training assets and earlier dates are flagged in-sample.
    Writes the report directory ``out``."""
    check_out(out, "dir")
    if history is not None:
        _check_count("history", history)
    _check_count("garch_refit", garch_refit, 1, 10_000)
    learner, spec, meta = load_model(model)
    panel = load_panel(prices, log)
    history = meta["history"] if history is None else history
    builder = EpisodeBuilder(panel, spec)
    train_end = np.datetime64(meta["train_end"], "D") if meta.get("train_end") else None
    hi = panel.n_days - 1 - spec.horizon
    if start is not None:
        lo = panel.row_of(start)
        where = f"from --start {start}"
    elif train_end is not None:
        lo = panel.row_of(train_end, "right") + spec.horizon
        where = (f"after the model's training end {train_end} (+{spec.horizon} day embargo; give --start to "
                 "evaluate earlier, in-sample dates)")
    else:
        lo, where = 0, "on"
    if lo > hi:
        raise ValueError(f"{panel.source} ({panel.dates[0]} to {panel.dates[-1]}) has no date with a realised "
                         f"target {where}")
    A, R = grid(panel, panel.assets, lo, hi)
    seen = sorted(set(meta.get("train_assets", [])) & set(panel.assets))
    in_sample = np.isin(np.asarray(panel.assets, dtype=object)[A], seen)
    if train_end is not None:
        in_sample |= panel.dates[R] <= train_end
    models = {meta["learner"]: MetaForecaster(learner, history, name=meta["learner"]).predict(builder, A, R)}
    base, fits, garch_line = _run_baselines(builder, A, R, garch, garch_refit, log)
    ev = evaluate_forecasts(builder, A, R, {**models, **base}, horizon=spec.horizon,
                            label=f"{meta['learner']} model, history {history}", in_sample=in_sample)
    quality = _data_quality(panel)
    pre = (f"Model `{model}` ({meta['learner']}, trained to {meta.get('train_end')}); prices `{panel.source}`. "
           + (f"Assets seen in training: {', '.join(seen)}." if seen else "No asset was seen in training.")
           + garch_line + _data_quality_line(quality) + "\n")
    write_report([ev], out, "metarisk evaluation", pre, extra={"model": meta, "garch_fits": fits, "data_quality": quality})
    return ev


# --------------------------------------------------------------------------- demo
def demo(out="metarisk_demo", *, learners=DEMO_LEARNERS, histories=DEFAULT_HISTORIES, horizon: int = 1,
         train_end="2014-12-31", holdout: int = 5, garch: bool = True, garch_refit: int = 63,
         options: TrainOptions = TrainOptions(), log: Log = None) -> tuple[list[Evaluation], dict]:
    """Meta-train every learner on the embedded panel's training assets up to ``train_end``, then
    forecast the held-out assets from only the last k days (k in ``histories``) and compare with
    the baselines; writes the report directory ``out``. Returns the evaluations and the files."""
    check_out(out, "dir")
    if not histories:
        raise ValueError("histories: give at least one few-shot history length")
    for k in histories:
        _check_count("histories", k)
    for name, value, hi in (("horizon", horizon, 250), ("holdout", holdout, 10_000), ("garch_refit", garch_refit, 10_000)):
        _check_count(name, value, 1, hi)
    unknown = [kind for kind in learners if kind not in LEARNERS]
    if unknown or not learners:
        raise ValueError(f"learners: choose one or more of {', '.join(LEARNERS)}, got {list(learners)}")
    t_start = time.perf_counter()
    panel = load_panel("default", log)
    spec = TaskSpec(horizon=horizon, support=60, query=QUERY)
    builder = EpisodeBuilder(panel, spec)
    end_row, test_start = time_split(panel, train_end, spec.horizon)
    train_assets, test_assets = asset_split(panel.assets, holdout, seed=options.seed)
    _say(log, f"meta-training on {len(train_assets)} assets, {panel.dates[0]} to {panel.dates[end_row]}; "
              f"held out: {', '.join(test_assets)} from {panel.dates[test_start]}")
    trained, train_info = {}, {}
    for kind in learners:
        trained[kind], train_info[kind] = _train_learner(kind, builder, train_assets, panel.dates[end_row], options,
                                                         DEFAULT_HISTORIES, log)
        _say(log, f"  {kind}: {train_info[kind]['train_seconds']} s")
    A, R = grid(panel, test_assets, test_start, panel.n_days - 1 - spec.horizon)
    base, fits, garch_line = _run_baselines(builder, A, R, garch, garch_refit, log)
    evals = []
    for k in histories:
        fc = {kind: MetaForecaster(l, k, name=kind).predict(builder, A, R) for kind, l in trained.items()}
        evals.append(evaluate_forecasts(builder, A, R, {**fc, **base}, horizon=spec.horizon,
                                        label=f"few-shot, history k = {k} days"))
    elapsed = time.perf_counter() - t_start
    quality = _data_quality(panel)
    pre = ("Meta-learners adapt on only the last k days of each held-out asset (5 gradient steps; `memory` "
           "writes them into an external memory and reads it once; `memory_maml` starts its 5 steps from "
           "parameters retrieved from a memory; `pooled` is the same network trained "
           "without meta-learning and does not adapt); the baselines use each asset's "
           f"full history up to the forecast date. Training: assets {', '.join(train_assets)}, "
           f"{panel.dates[0]} to {panel.dates[end_row]}; testing after an embargo of {spec.horizon} day(s). "
           f"Run time {elapsed:.0f} s." + garch_line + _data_quality_line(quality) + "\n")
    files = write_report(evals, out, "metarisk demo: few-shot variance forecasting on held-out assets", pre,
                         extra={"train": train_info, "train_assets": train_assets, "test_assets": test_assets,
                                "garch_fits": fits, "data_quality": quality})
    return evals, {"files": files["files"], "seconds": elapsed}
