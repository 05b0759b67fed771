"""The variance-forecasting application as library calls: ``train``, ``forecast``, ``evaluate`` and
``demo`` do what the `metarisk` subcommands of the same names do, with the same results, and
return what they computed (``feed`` has `metarisk stream`). Paths are checked before any long
work; files are written atomically. ``log`` receives one-line progress messages (None: silent)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .._checks import check_int, check_number
from .._files import atomic_write_dataset, atomic_write_table, check_output
from .._types import STUDENT_T_NU
from ..data import MAX_GAP_DAYS, data_report
from ..datasets import ignore, load_panel
from ..evaluation import Evaluation, evaluate as evaluate_forecasts, qlike_log, risk_columns
from ..forecasting import (HEAD_WINDOW, LEARNERS, MEMORY_LEARNERS, MEMORY_SLOTS, EWMAForecaster, GARCHForecaster, HARForecaster,
                           MetaForecaster, input_scale, load_demo_model, load_model, make_learner, save_model,
                           train_meta, training_default)
from ..forecasting.distributed import join_torchrun, run_local, threads_per_rank, wait_for_all_ranks
from ..forecasting.training import process_group
from ..report import write_report
from ..tasks import TARGET, EpisodeBuilder, TaskSpec, asset_split, simulated_listings, time_split

DEFAULT_HISTORIES = (20, 60, 250)
DEMO_LEARNERS = ("maml", "fomaml", "reptile", "metasgd", "memory", "memory_maml", "pooled", "head")
QUERY = 20  # query days per training episode
Log = Callable[[str], None] | None


@dataclass(frozen=True)
class TrainOptions:
    """Meta-training hyper-parameters shared by ``train`` and ``demo``.

    Parameters
    ----------
    steps : int, optional
        Meta-training steps (None: the learner's own, ``forecasting.training_default``).
    batch : int
        Tasks per meta-batch.
    meta_lr : float
        The outer (Adam) learning rate.
    inner_lr : float
        The inner-loop learning rate of the gradient-based learners.
    inner_steps : int
        Inner-loop steps.
    hidden : tuple of int, optional
        Hidden layer sizes (None: the learner's own).
    seed : int
        The seed of the initialisation and the task draws.
    memory_slots : int
        The memory learner's slots: at least the longest history it writes.
    young_listings : bool, optional
        A third of the meta-batches from simulated listings (``tasks.simulated_listings``); None:
        the learner's own (on for the head learner, off for the others, as validation chose).
    """

    steps: int | None = None  # None: the learner's own (forecasting.training_default)
    batch: int = 64
    meta_lr: float = 1e-3
    inner_lr: float = 0.06
    inner_steps: int = 5
    hidden: tuple[int, ...] | None = None  # None: the learner's own (forecasting.default_hidden)
    seed: int = 0
    memory_slots: int = MEMORY_SLOTS  # the memory learner's slots: at least the longest history it writes
    young_listings: bool | None = None  # a third of the meta-batches from simulated listings
    # (tasks.simulated_listings); None: the learner's own (forecasting.training_default: on for the head
    # learner, off for the others, as validation chose; bench/FORECAST_QUALITY.md)


    def __post_init__(self):
        for name, lo, hi in (("batch", 1, 65536), ("inner_steps", 0, 10_000), ("seed", 0, None),
                             ("memory_slots", 1, 100_000)):
            check_int(name, getattr(self, name), lo, hi)
        for name in ("meta_lr", "inner_lr"):
            check_number(name, getattr(self, name))
        if self.steps is not None:
            check_int("steps", self.steps, 1, 10**7)
        if self.hidden is not None:
            if not self.hidden:
                raise ValueError("hidden must be one or more layer sizes >= 1, got none")
            for h in self.hidden:
                check_int("hidden", h, 1)

    def hidden_for(self, kind: str) -> tuple[int, ...]:
        """The hidden layer sizes of a learner: the ones given, else the learner's default.

        Parameters
        ----------
        kind : str
            A learner name (``forecasting.LEARNERS``).

        Returns
        -------
        tuple of int
            The sizes.
        """
        return tuple(self.hidden) if self.hidden is not None else training_default(kind, "hidden")

    def young_for(self, kind: str) -> bool:
        """Whether a learner trains on simulated listings: as given, else the learner's default.

        Parameters
        ----------
        kind : str
            A learner name (``forecasting.LEARNERS``).

        Returns
        -------
        bool
            True: a third of the meta-batches come from simulated listings.
        """
        return self.young_listings if self.young_listings is not None else training_default(kind, "young_listings")

    def steps_for(self, kind: str) -> int:
        """The meta-training steps of a learner: the number given, else the learner's default.

        Parameters
        ----------
        kind : str
            A learner name (``forecasting.LEARNERS``).

        Returns
        -------
        int
            The steps.
        """
        return self.steps if self.steps is not None else training_default(kind, "steps")


def say(log: Log, msg: str) -> None:
    """Pass ``msg`` to the progress log, if there is one."""
    if log is not None:
        log(msg)


def _check_memory(learners, histories, opts: TrainOptions, option: str) -> None:
    """A memory learner writes each support row into a slot: refuse a history longer than its
    slots before any training."""
    if any(kind in MEMORY_LEARNERS for kind in learners) and max(histories) > opts.memory_slots:
        raise ValueError(f"{option} {max(histories)}: more support rows than the memory learner's "
                         f"{opts.memory_slots} slots; raise --memory-slots to {max(histories)} or more, or leave "
                         "out the memory learner")


def grid(panel, assets, start_row: int, end_row: int):
    """(asset, row) pairs of every asset over rows start_row..end_row."""
    cols = panel.asset_index(list(assets))
    rows = np.arange(start_row, end_row + 1)
    return np.repeat(cols, len(rows)), np.tile(rows, len(cols))


def _data_quality_line(quality: dict) -> str:
    """One sentence for the report's preamble: what data_report found (report.json lists it)."""
    counts = [(len(quality["coarse_stretches"]), "stretch(es) of coarsely rounded prices"),
              (len(quality["calendar_gaps"]), f"calendar gap(s) of more than {MAX_GAP_DAYS} business days (every "
                                              "asset restarts after each)"),
              (len(quality["asset_gaps"]), f"gap(s) of more than {MAX_GAP_DAYS} missing closes in one asset "
                                           "(it restarts after each)"),
              (len(quality["suspected_splits"]), "suspected unadjusted split(s)"),
              (len(quality["stale_runs"]), "stale run(s) of unchanged closes"),
              (len(quality["empty_assets"]), "asset(s) without a price")]
    parts = [f"{n} {what}" for n, what in counts if n]
    return f" Data quality: {'; '.join(parts)} (listed in report.json, `data_quality`)." if parts else ""


def young_builder(builder: EpisodeBuilder, assets, end_date, opts: TrainOptions, kinds) -> EpisodeBuilder | None:
    """The simulated listings of the training assets up to ``end_date`` that meta-training draws
    young episodes from (None when the options leave them out for every learner of ``kinds``)."""
    if not any(opts.young_for(kind) for kind in kinds):
        return None
    return EpisodeBuilder(simulated_listings(builder.panel, assets, end_date), builder.spec)


def _train_learner(kind, builder, assets, end_date, opts: TrainOptions, supports, log: Log, young=None,
                   **checkpointing):
    learner = make_learner(kind, builder.spec.n_features, opts.hidden_for(kind), opts.inner_lr, opts.inner_steps,
                           loss=TARGET.loss_for(builder.spec.horizon), memory_slots=opts.memory_slots)
    t0 = time.perf_counter()
    run = train_meta(learner, builder, assets, end_date, steps=opts.steps_for(kind), batch=opts.batch, lr=opts.meta_lr,
                     seed=opts.seed, supports=supports, progress=log is not None, desc=f"train {kind}",
                     young=young, **checkpointing)
    return learner, {"train_seconds": round(time.perf_counter() - t0, 2),
                     "final_meta_loss": float(np.mean(run["losses"][-20:])), "diverged_batches_skipped": run["skipped"]}


def baselines(garch: bool = True, garch_refit: int = 63, progress: bool = False) -> list:
    """The baseline forecasters every report compares with: EWMA, HAR, log-HAR and (with
    ``garch``) GARCH-t and GJR-GARCH-t refitted every ``garch_refit`` days."""
    out = [EWMAForecaster(), HARForecaster(name="har"), HARForecaster(log=True, name="log_har")]
    if garch:
        out += [GARCHForecaster(name="garch_t", progress=progress, refit=garch_refit),
                GARCHForecaster(gjr=True, name="gjr_garch_t", progress=progress, refit=garch_refit)]
    return out


def _run_baselines(builder, A, R, garch, garch_refit, log):
    models, fitted = {}, baselines(garch, garch_refit, progress=log is not None)
    for b in fitted:
        say(log, f"forecasting with {b.name}")
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
    ``out/checkpoint.pt``; ``resume`` continues from it. Rank 0 alone writes.

    Parameters
    ----------
    prices : str, os.PathLike, PricePanel or pandas.DataFrame
        A price file (CSV or Parquet; wide, long or OHLC), 'default' for the embedded S&P 500
        panel, or a panel / wide DataFrame of closes.
    out : str or os.PathLike
        The model directory to write (new or empty).
    learner : str
        The learner (``forecasting.LEARNERS``).
    horizon : int
        Days ahead of the forecasts.
    history : int
        Support days per task.
    train_end : date-like, optional
        The last date training may see (default: the last date).
    options : TrainOptions
        Meta-training hyper-parameters.
    log : callable, optional
        Called with each progress line (None: silent).
    nproc : int
        Local processes (data-parallel; ``options.batch`` a multiple of it).
    checkpoint_every : int
        Steps between checkpoints (0: none).
    resume : bool
        Continue from ``out/checkpoint.pt``.

    Returns
    -------
    dict
        The model's metadata (model.json): assets, dates, validation losses, settings.
    """
    check_output(out, "dir")
    for name, value, lo, hi in (("nproc", nproc, 1, 1024), ("checkpoint_every", checkpoint_every, 0, 10**7)):
        check_int(name, value, lo, hi)
    panel = load_panel(prices, log or ignore)
    end = check_training(panel, learner, horizon, history, train_end, options)
    if options.batch % nproc:
        raise ValueError(f"--batch {options.batch} must be a multiple of --nproc {nproc}")
    if resume and not (Path(out) / CHECKPOINT).exists():
        raise ValueError(f"--resume: no checkpoint in {out} (`{CHECKPOINT}` is written every --checkpoint-every steps)")
    job = (panel, str(out), learner, horizon, history, end, options, log is not None, checkpoint_every, resume)
    if nproc > 1:
        say(log, f"training on {nproc} processes, {threads_per_rank(nproc)} kernel thread(s) each")
        run_local(_train_process, nproc, *job)
    elif join_torchrun():  # a rank of torchrun's group: read the model once rank 0 has written it
        _train_process(*job)
        wait_for_all_ranks()
    else:
        _train_process(*job)
    return load_model(out)[2]


CHECKPOINT = "checkpoint.pt"


def check_training(panel, learner: str, horizon: int, history: int, train_end, options: TrainOptions):
    """Every check of a training job that the panel and settings allow before any work; returns
    the training end date."""
    for name, value, lo, hi in (("history", history, 1, 5000), ("horizon", horizon, 1, 250)):
        check_int(name, value, lo, hi)
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {learner!r}")
    if panel.n_assets < 2:
        raise ValueError(f"{panel.source}: {panel.n_assets} asset(s); training holds out at least one asset "
                         "for validation, so it needs two or more")
    end = panel.dates[-1] if train_end is None else np.datetime64(train_end, "D")
    if end < panel.dates[0]:
        raise ValueError(f"--train-end {train_end} is before the first date of {panel.source} ({panel.dates[0]})")
    _check_memory((learner,), (history,), options, "--history")
    return end


def _train_process(panel, out, learner, horizon, history, end, options, progress, checkpoint_every, resume):
    """One process's share of ``train``: every rank trains; rank 0 validates and saves."""
    rank = process_group()[0]
    if checkpoint_every:  # the checkpoint lives in the model directory
        Path(out).mkdir(parents=True, exist_ok=True)
    model, spec, info = fit(panel, learner, horizon, history, end, options, _stderr if progress and rank == 0 else None,
                            checkpoint=Path(out) / CHECKPOINT, checkpoint_every=checkpoint_every, resume=resume)
    if rank != 0:
        return
    save_model(out, learner, model, spec, history=history, hidden=options.hidden_for(learner), info=info)
    (Path(out) / CHECKPOINT).unlink(missing_ok=True)


def fit(panel, learner: str, horizon: int, history: int, end, options: TrainOptions, log: Log = None,
        **checkpointing):
    """Meta-train ``learner`` on 80 % of the panel's assets up to ``end`` and validate it on the
    rest (rank 0 of a process group; the other ranks return info None): (the trained learner, its
    TaskSpec, the model.json information)."""
    rank, world = process_group()
    torch.manual_seed(options.seed)  # the initial weights: the same on one process or many
    spec = TaskSpec(horizon=horizon, support=history, query=QUERY)
    end_row = panel.row_of(end, "right") - 1
    train_assets, val_assets = asset_split(panel.assets, max(1, round(0.2 * panel.n_assets)), seed=options.seed)
    builder = EpisodeBuilder(panel, spec).with_young_prior(train_assets, end_row)
    say(log, f"training {learner} on {len(train_assets)} assets up to {panel.dates[end_row]}; "
              f"validating on held-out {', '.join(val_assets)}")
    model, info = _train_learner(learner, builder, train_assets, panel.dates[end_row], options, (history,), log,
                                 young_builder(builder, train_assets, panel.dates[end_row], options, [learner]),
                                 **checkpointing)
    spec = builder.with_scale(input_scale(model)).spec  # the normalisation the learner trained with
    if rank != 0:
        return model, spec, None
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
            "seed": options.seed, "meta_steps": options.steps_for(learner), "processes": world, "validation": val, **info}
    return model, spec, info


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- forecast
def forecast(model, prices, *, start=None, history: int | None = None, dist: str = "normal", alphas=None,
             log: Log = None) -> pd.DataFrame:
    """The forecast table (columns: date, asset, forecast_variance and ``risk_columns``) of every
    asset from ``start`` (default: as soon as history allows).

    Parameters
    ----------
    model : str or os.PathLike
        A model directory ('default': the shipped model).
    prices : str, os.PathLike, PricePanel or pandas.DataFrame
        A price file (CSV or Parquet; wide, long or OHLC), 'default' for the embedded S&P 500
        panel, or a panel / wide DataFrame of closes.
    start : date-like, optional
        The first date to forecast.
    history : int, optional
        Support days (default: the model's).
    dist : {'normal', 't'}
        The distribution of the VaR and ES columns.
    alphas : sequence of float, optional
        Tail levels in (0, 0.5) (default: VaR 1 %, 5 %, ES 2.5 %).
    log : callable, optional
        Called with each progress line (None: silent).

    Returns
    -------
    pandas.DataFrame
        One row per (date, asset) with a forecast, sorted by date: date, asset, forecast_variance
        (the mean daily variance of log returns over the next h days), then the VaR / ES columns
        (log-return units, negative).
    """
    learner, spec, meta = load_model(model)
    return forecast_panel(learner, spec, meta, load_panel(prices, log or ignore), start=start, history=history,
                          dist=dist, alphas=alphas, log=log)


def model_nu(learner) -> float | None:
    """The Student t degrees of freedom of the learner's training likelihood (None: Gaussian)."""
    return STUDENT_T_NU if learner.loss == "student_t_nll" else None


def check_risk(learner, dist: str, alphas) -> tuple:
    """(dist, nu, alphas) of a forecast table's risk columns, checked: 't' needs a model trained
    with the t likelihood (its degrees of freedom); each level in (0, 0.5)."""
    if dist not in ("normal", "t"):
        raise ValueError(f"--dist must be 'normal' or 't', got {dist!r}")
    nu = model_nu(learner)
    if dist == "t" and nu is None:
        raise ValueError(f"--dist t: this model is trained with a Gaussian likelihood ({learner.loss}, h > 1), "
                         "so it has no degrees of freedom; use --dist normal")
    if alphas is not None:
        alphas = [check_number("alpha", a) for a in alphas]
        bad = [a for a in alphas if not a < 0.5]
        if bad or not alphas:
            raise ValueError(f"--alpha: give left-tail levels in (0, 0.5) such as 0.01,0.05, got {alphas}")
    return dist, nu, alphas


def forecast_panel(learner, spec: TaskSpec, meta: dict, panel, *, start=None, history: int | None = None,
                   dist: str = "normal", alphas=None, log: Log = None) -> pd.DataFrame:
    """``forecast`` of a loaded model (learner, TaskSpec, model.json metadata) on a PricePanel;
    risk columns as evaluation.risk_columns(dist, alphas) with the model's degrees of freedom."""
    dist, nu, alphas = check_risk(learner, dist, alphas)
    if history is not None:
        check_int("history", history, 1, 5000)
    history = meta["history"] if history is None else history
    builder = EpisodeBuilder(panel, spec)
    lo = 0 if start is None else panel.row_of(start)
    if lo >= panel.n_days:
        raise ValueError(f"--start {start} is after the last date of {panel.source} ({panel.dates[-1]})")
    A, R = grid(panel, panel.assets, lo, panel.n_days - 1)
    say(log, f"forecasting {panel.n_assets} assets x {panel.n_days - lo} days of {panel.source} with the "
             f"{meta['learner']} model, history {history}")
    t0 = time.perf_counter()
    f = MetaForecaster(learner, history).predict(builder, A, R)
    say(log, f"forecast in {time.perf_counter() - t0:.1f} s")
    ok = np.isfinite(f)
    if not ok.any():
        raise ValueError(f"{panel.source}: no date from {panel.dates[lo]} on has a forecast for any asset (a "
                         "forecast needs two prices of the asset: a return)")
    f, A, R = f[ok], A[ok], R[ok]
    return pd.DataFrame({"date": panel.dates[R], "asset": np.asarray(panel.assets, dtype=object)[A],
                         "forecast_variance": f, **risk_columns(f, dist, nu, alphas)}).sort_values(["date", "asset"],
                                                                                                  kind="stable")


def forecast_to_file(model, prices, out, *, wide: bool = False, nproc: int = 1, log: Log = None, **kw) -> dict | None:
    """``forecast``'s table of ``model`` over ``prices``, written to ``out`` atomically, as
    Parquet for a .parquet / .pq name, as a Parquet dataset partitioned by year for a directory
    (a name ending in '/': ``year=2020/part-0.parquet``, ...; long tables only) and CSV otherwise:
    long (date, asset, forecast_variance and the risk columns, sorted by date), or with ``wide``
    the forecast variance alone, one row per date and one column per asset (a wide price file's
    layout; empty where an asset has no forecast). ``nproc`` > 1: the assets split over that many local processes
    (torch.distributed, gloo); under `torchrun` over the ranks it started, on any number of
    machines. Either way the file is the one process's, bit for bit, written once by rank 0 after
    every rank has finished (a failed rank: an error naming it, no file). Returns the table's
    summary (rows, assets, first and last date); None in a rank other than 0."""
    dataset = is_dataset(out)
    check_output(out, "dir" if dataset else "file")
    if dataset and wide:
        raise ValueError(f"--out {out}: a partitioned dataset holds the long table; give a file name for --wide")
    if dataset and Path(out).is_dir() and any(Path(out).iterdir()):
        raise ValueError(f"--out {out} exists and is not empty: give a new directory for the dataset")
    check_int("nproc", nproc, 1, 1024)
    learner, spec, meta = load_model(model)
    check_risk(learner, kw.get("dist", "normal"), kw.get("alphas"))
    panel = load_panel(prices, log or ignore)
    if nproc > 1:
        if nproc > panel.n_assets:
            raise ValueError(f"--nproc {nproc}: {panel.source} has {panel.n_assets} assets to share out; give at "
                             "most one process per asset")
        say(log, f"forecasting on {nproc} processes, {threads_per_rank(nproc)} kernel thread(s) each")
        with tempfile.TemporaryDirectory() as tmp:
            run_local(_forecast_process, nproc, model, panel, str(out), wide, kw, tmp, what="forecasting")
            return json.loads(Path(tmp, "summary.json").read_text())
    if join_torchrun():
        summary = _forecast_process(model, panel, str(out), wide, kw, None)
        wait_for_all_ranks()
        return summary
    frame = forecast_panel(learner, spec, meta, panel, log=log, **kw)
    _write_forecasts(frame, out, wide)
    return table_summary(frame)


def _forecast_process(model, panel, out, wide, kw, summary_dir):
    """One rank's share of ``forecast_to_file``: the assets rank, rank + world, ...; rank 0
    gathers every rank's table, writes the file and its summary."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    learner, spec, meta = load_model(model)
    mine = panel.select(assets=list(panel.assets[rank::world]))
    frame = forecast_panel(learner, spec, meta, mine, **kw)
    parts = [None] * world if rank == 0 else None
    dist.gather_object(frame, parts, dst=0)
    if rank != 0:
        return None
    whole = pd.concat(parts).sort_values(["date", "asset"], kind="stable")
    _write_forecasts(whole, out, wide)
    summary = table_summary(whole)
    if summary_dir is not None:
        Path(summary_dir, "summary.json").write_text(json.dumps(summary))
    return summary


def is_dataset(out) -> bool:
    """A forecast output named as a directory (ending in '/'): a Parquet dataset partitioned by year."""
    return str(out).endswith(("/", os.sep))


def _write_forecasts(frame: pd.DataFrame, out, wide: bool) -> None:
    if is_dataset(out):
        atomic_write_dataset(out, frame.assign(year=pd.DatetimeIndex(frame["date"]).year), "year")
    elif wide:
        table = frame.pivot(index="date", columns="asset", values="forecast_variance")
        atomic_write_table(out, table[pd.unique(frame["asset"])].rename_axis(columns=None), index=True)
    else:
        atomic_write_table(out, frame)


def table_summary(frame: pd.DataFrame) -> dict:
    """Rows, distinct assets and the first and last date (YYYY-MM-DD) of a long forecast table."""
    first, last = (str(np.datetime64(d, "D")) for d in (frame["date"].min(), frame["date"].max()))
    return {"rows": int(len(frame)), "assets": int(frame["asset"].nunique()), "first": first, "last": last}


# --------------------------------------------------------------------------- evaluate
def evaluate(model, prices, out, *, start=None, history: int | None = None, garch: bool = True,
             garch_refit: int = 63, log: Log = None) -> Evaluation:
    """The model against the baselines from ``start`` (default: the first day after the model's
    training end and an h-day embargo); training assets and earlier dates are flagged in-sample.
    Writes the report directory ``out``.

    Parameters
    ----------
    model : str or os.PathLike
        A model directory ('default': the shipped model).
    prices : str, os.PathLike, PricePanel or pandas.DataFrame
        A price file (CSV or Parquet; wide, long or OHLC), 'default' for the embedded S&P 500
        panel, or a panel / wide DataFrame of closes.
    out : str or os.PathLike
        The report directory to write (new or empty).
    start : date-like, optional
        The first date to evaluate.
    history : int, optional
        Support days (default: the model's).
    garch : bool
        Include the GARCH(1,1)-t and GJR-GARCH-t baselines.
    garch_refit : int
        Days between GARCH refits (each fit on data up to its date).
    log : callable, optional
        Called with each progress line (None: silent).

    Returns
    -------
    Evaluation
        The table (one row per model: QLIKE, MSE, DM tests, VaR backtests), per-model details and
        the forecasts.
    """
    check_output(out, "dir")
    if history is not None:
        check_int("history", history, 1, 5000)
    check_int("garch_refit", garch_refit, 1, 10_000)
    learner, spec, meta = load_model(model)
    panel = load_panel(prices, log or ignore)
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
    ev.meta["evaluated"] = list(models)
    quality = data_report(panel)
    pre = (f"Model `{model}` ({meta['learner']}, trained to {meta.get('train_end')}); prices `{panel.source}`. "
           + (f"Assets seen in training: {', '.join(seen)}." if seen else "No asset was seen in training.")
           + garch_line + _data_quality_line(quality) + "\n")
    write_report([ev], out, "metarisk evaluation", pre, extra={"model": meta, "garch_fits": fits, "data_quality": quality})
    return ev


# --------------------------------------------------------------------------- demo
LISTING_EVERY, LISTING_DAYS = 126, 250  # the demo's simulated listings: one every half year, a year each


def new_listings(panel, assets, first_row: int, spec: TaskSpec, trained: dict, garch: bool, log: Log) -> Evaluation:
    """The held-out ``assets`` as new listings: each lists every LISTING_EVERY days from
    ``first_row`` with only its first LISTING_DAYS prices (tasks.simulated_listings); every trained
    learner forecasts from the second price (k = 60), against EWMA, HAR and log-HAR (from their
    first fit, 50 realised days) and, with ``garch``, GARCH-t and GJR-GARCH-t fitted on the
    post-listing returns only (refit every 21 days, from 60 returns)."""
    listed = simulated_listings(panel, assets, panel.dates[-1], every=LISTING_EVERY, length=LISTING_DAYS,
                                start=panel.dates[first_row])
    builder = EpisodeBuilder(listed, spec)
    A, R = grid(listed, listed.assets, 1, listed.n_days - 1 - spec.horizon)
    fc = {kind: MetaForecaster(l, 60, name=kind).predict(builder, A, R) for kind, l in trained.items()}
    base = {b.name: b.predict(builder, A, R) for b in baselines(garch=False)}
    if garch:
        for name, gjr in (("garch_t", False), ("gjr_garch_t", True)):
            say(log, f"  {name} on the listings")
            base[name] = GARCHForecaster(gjr=gjr, name=name, refit=21, min_fit=60).predict(builder, A, R)
    ev = evaluate_forecasts(builder, A, R, {**fc, **base}, horizon=spec.horizon,
                            label=f"new listings: {listed.n_assets} listings of the held-out assets, first "
                                  f"{LISTING_DAYS} prices each, k = 60 (an asset is named by its listing date; "
                                  "dates here count business days from each listing)",
                            compare_by_age=tuple(n for n in ("garch_t", "gjr_garch_t", "pooled") if n in fc or n in base))
    ev.meta["evaluated"] = list(fc)
    return ev


def demo_settings(kind: str, horizon: int, train_end, holdout: int, options: TrainOptions,
                  young_prior: float) -> dict:
    """Everything a demo learner's weights depend on (besides the code and the embedded panel):
    a shipped demo model is used only where its recorded settings are these."""
    return {"learner": kind, "horizon": horizon, "train_end": str(train_end), "holdout": holdout,
            "young_prior": young_prior,
            "steps": options.steps_for(kind), "batch": options.batch, "meta_lr": options.meta_lr,
            "inner_lr": options.inner_lr, "inner_steps": options.inner_steps, "hidden": list(options.hidden_for(kind)),
            "seed": options.seed, "memory_slots": options.memory_slots, "young_listings": options.young_for(kind),
            **({"head_window": HEAD_WINDOW} if kind == "head" else {})}


def demo(out="metarisk_demo", *, learners=DEMO_LEARNERS, histories=DEFAULT_HISTORIES, horizon: int = 1,
         train_end="2014-12-31", holdout: int = 5, garch: bool = True, garch_refit: int = 63,
         options: TrainOptions = TrainOptions(), retrain: bool = False, save_models=None,
         log: Log = None) -> tuple[list[Evaluation], dict]:
    """Every learner on the embedded panel's training assets up to ``train_end`` (the package's
    pretrained one where it was trained with these settings, unless ``retrain``; else meta-trained
    here), then forecast the held-out assets from only the last k days (k in ``histories``) and
    compare with the baselines; writes the report directory ``out`` (and, with ``save_models``, each
    learner as a model directory under it).

    Parameters
    ----------
    out : str or os.PathLike
        The report directory to write (new or empty).
    learners : sequence of str
        The learners to compare.
    histories : sequence of int
        The few-shot history lengths k.
    horizon : int
        Days ahead of the forecasts.
    train_end : date-like
        The last date training sees.
    holdout : int
        Assets held out of training (the evaluated ones).
    garch : bool
        Include the GARCH baselines.
    garch_refit : int
        Days between GARCH refits.
    options : TrainOptions
        Meta-training hyper-parameters.
    retrain : bool
        Train every learner here even where a shipped one has these settings.
    save_models : str or os.PathLike, optional
        Also write each learner as a model directory under this one.
    log : callable, optional
        Called with each progress line (None: silent).

    Returns
    -------
    tuple of (list of Evaluation, dict)
        One evaluation per history length, and {"files": the files written, "seconds": the run time}.
    """
    check_output(out, "dir")
    if save_models is not None:
        check_output(save_models, "dir")
    if not histories:
        raise ValueError("histories: give at least one few-shot history length")
    for k in histories:
        check_int("histories", k, 1, 5000)
    for name, value, hi in (("horizon", horizon, 250), ("holdout", holdout, 10_000), ("garch_refit", garch_refit, 10_000)):
        check_int(name, value, 1, hi)
    unknown = [kind for kind in learners if kind not in LEARNERS]
    if unknown or not learners:
        raise ValueError(f"learners: choose one or more of {', '.join(LEARNERS)}, got {list(learners)}")
    _check_memory(learners, (*histories, *DEFAULT_HISTORIES), options, "--histories")
    t_start = time.perf_counter()
    panel = load_panel("default", log or ignore)
    spec = TaskSpec(horizon=horizon, support=60, query=QUERY)
    end_row, test_start = time_split(panel, train_end, spec.horizon)
    train_assets, test_assets = asset_split(panel.assets, holdout, seed=options.seed)
    builder = EpisodeBuilder(panel, spec).with_young_prior(train_assets, end_row)
    spec = builder.spec
    say(log, f"meta-training on {len(train_assets)} assets, {panel.dates[0]} to {panel.dates[end_row]}; "
              f"held out: {', '.join(test_assets)} from {panel.dates[test_start]}")
    trained, train_info, young = {}, {}, None
    for kind in learners:
        settings = demo_settings(kind, horizon, panel.dates[end_row], holdout, options, spec.young_prior)
        shipped = None if retrain else load_demo_model(kind, settings)
        if shipped is not None:
            trained[kind], train_info[kind] = shipped, {"pretrained": True}
            say(log, f"  {kind}: pretrained (shipped, trained with these settings; --retrain trains it again)")
        else:
            if options.young_for(kind) and young is None:
                young = young_builder(builder, train_assets, panel.dates[end_row], options, [kind])
            trained[kind], train_info[kind] = _train_learner(kind, builder, train_assets, panel.dates[end_row],
                                                             options, DEFAULT_HISTORIES, log,
                                                             young if options.young_for(kind) else None)
            say(log, f"  {kind}: {train_info[kind]['train_seconds']} s")
        if save_models is not None:
            save_model(Path(save_models) / kind, kind, trained[kind], builder.with_scale(input_scale(trained[kind])).spec,
                       history=spec.support, hidden=options.hidden_for(kind),
                       info={"demo_settings": settings, "train": train_info[kind]})
    A, R = grid(panel, test_assets, test_start, panel.n_days - 1 - spec.horizon)
    base, fits, garch_line = _run_baselines(builder, A, R, garch, garch_refit, log)
    evals = []
    for k in histories:
        fc = {kind: MetaForecaster(l, k, name=kind).predict(builder, A, R) for kind, l in trained.items()}
        evals.append(evaluate_forecasts(builder, A, R, {**fc, **base}, horizon=spec.horizon,
                                        label=f"few-shot, history k = {k} days"))
        evals[-1].meta["evaluated"] = list(fc)
    say(log, "new listings: the held-out assets listed every "
             f"{LISTING_EVERY} days from {panel.dates[test_start]}")
    evals.append(new_listings(panel, test_assets, test_start, spec, trained, garch, log))
    elapsed = time.perf_counter() - t_start
    quality = data_report(panel)
    steps = f"{options.inner_steps} gradient step{'s' if options.inner_steps != 1 else ''}"
    pre = (f"Meta-learners adapt on only the last k days of each held-out asset ({steps}; `memory` "
           f"writes them into an external memory and reads it once; `memory_maml` starts its {steps} from "
           "parameters retrieved from a memory; `pooled` is the same network trained "
           "without meta-learning and does not adapt; `head` adapts a linear head on a shared body by one "
           "Newton step); the baselines use each asset's "
           f"full history up to the forecast date. Training: assets {', '.join(train_assets)}, "
           f"{panel.dates[0]} to {panel.dates[end_row]}; testing after an embargo of {spec.horizon} day(s)"
           + (f"; {', '.join(k for k, v in train_info.items() if v.get('pretrained'))} loaded as shipped "
              "(trained with these settings by `metarisk demo --retrain`)"
              if any(v.get("pretrained") for v in train_info.values()) else "") + ". "
           f"Run time {elapsed:.0f} s." + garch_line + _data_quality_line(quality) + "\n")
    files = write_report(evals, out, "metarisk demo: few-shot variance forecasting on held-out assets", pre,
                         extra={"train": train_info, "train_assets": train_assets, "test_assets": test_assets,
                                "garch_fits": fits, "data_quality": quality})
    return evals, {"files": files["files"], "seconds": elapsed}
