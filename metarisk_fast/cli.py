"""The `metarisk` command: demo, train, forecast, evaluate."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_HISTORIES = (20, 60, 250)


def _setup(args):
    import numba
    import torch

    import metarisk_fast as mr

    if args.threads is not None:
        mr.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)


def _int_in(lo: int, hi: int | None = None):
    """argparse type: an int in [lo, hi]; argparse names the option in its message."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v} is out of range: expected {lo}..{hi}" if hi is not None
                                             else f"{v} is out of range: expected an integer >= {lo}")
        return v
    parse.__name__ = "integer"
    return parse


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{v} is not a positive finite number")
    return v


def _date(text):
    try:
        return str(np.datetime64(text, "D"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


_date.__name__ = "date"
_positive_float.__name__ = "number"


def _check_out(path, kind: str, option: str = "--out") -> None:
    """Refuse an output path of the wrong kind before any work starts."""
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


def _data_quality(panel) -> dict:
    from .data import coarse_stretches

    return {"coarse_stretches": [{"asset": a, "first": str(f), "last": str(t), "largest_step": round(w, 6)}
                                 for a, f, t, w in coarse_stretches(panel)]}


def _data_quality_line(quality: dict) -> str:
    n = len(quality["coarse_stretches"])
    return (f" Data quality: coarsely rounded prices in {n} stretches (listed in report.json, `data_quality`)."
            if n else "")


def _log(args, msg):
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _load_panel(source: str):
    from .data import load_prices
    from .datasets import load_sp500_20

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panel = load_sp500_20() if source == "default" else load_prices(source)
    for w in caught:  # one line each; the report holds the details
        print(f"warning: {w.message}", file=sys.stderr)
    return panel


def _spec(horizon: int, support: int):
    from .tasks import TaskSpec

    return TaskSpec(horizon=horizon, support=support, query=20)


def _train_learner(args, kind, builder, assets, end_date, *, steps, supports):
    from .learners.forecasters import train_meta
    from .model_dir import make_learner

    learner = make_learner(kind, builder.spec.n_features, args.hidden, args.inner_lr, args.inner_steps)
    t0 = time.perf_counter()
    run = train_meta(learner, builder, assets, end_date, steps=steps, batch=args.batch, lr=args.meta_lr,
                     seed=args.seed, supports=supports, progress=not args.quiet, desc=f"train {kind}")
    return learner, {"train_seconds": round(time.perf_counter() - t0, 2),
                     "final_meta_loss": float(np.mean(run["losses"][-20:])), "diverged_batches_skipped": run["skipped"]}


def _grid(panel, assets, start_row, end_row):
    cols = panel.asset_index(list(assets))
    rows = np.arange(start_row, end_row + 1)
    return np.repeat(cols, len(rows)), np.tile(rows, len(cols))


def _garch_fits(baselines) -> dict:
    """Refits and convergence failures of the GARCH baselines (reported, not hidden)."""
    return {b.name: {"fits": b.fits, "convergence_failures": b.failures} for b in baselines if hasattr(b, "failures")}


def _garch_line(fits: dict) -> str:
    return "".join(f" {n}: {v['fits']} fits, {v['convergence_failures']} failed to converge (no forecast "
                   "for their blocks)." for n, v in fits.items())


def _baselines(args, include_garch=True):
    from .learners.forecasters import EWMAForecaster, GARCHForecaster, HARForecaster

    out = [EWMAForecaster(), HARForecaster(name="har"), HARForecaster(log=True, name="log_har")]
    if include_garch:
        out += [GARCHForecaster(name="garch_t", progress=not args.quiet, refit=args.garch_refit),
                GARCHForecaster(gjr=True, name="gjr_garch_t", progress=not args.quiet, refit=args.garch_refit)]
    return out


# --------------------------------------------------------------------------- train
def cmd_train(args):
    from .learners.forecasters import EWMAForecaster, MetaForecaster
    from .evaluation import qlike_log
    from .model_dir import save_model
    from .tasks import EpisodeBuilder, asset_split

    _check_out(args.out, "dir")
    panel = _load_panel(args.prices)
    if panel.n_assets < 2:
        raise ValueError(f"{panel.source}: {panel.n_assets} asset(s); training holds out at least one asset "
                         "for validation, so it needs two or more")
    spec = _spec(args.horizon, args.history)
    end = panel.dates[-1] if args.train_end is None else np.datetime64(args.train_end, "D")
    if end < panel.dates[0]:
        raise ValueError(f"--train-end {args.train_end} is before the first date of {panel.source} ({panel.dates[0]})")
    end_row = int(np.searchsorted(panel.dates, end, "right")) - 1
    builder = EpisodeBuilder(panel, spec)
    n_val = max(1, round(0.2 * panel.n_assets))
    train_assets, val_assets = asset_split(panel.assets, n_val, seed=args.seed)
    _log(args, f"training {args.learner} on {len(train_assets)} assets up to {panel.dates[end_row]}; "
               f"validating on held-out {', '.join(val_assets)}")
    learner, info = _train_learner(args, args.learner, builder, train_assets, panel.dates[end_row],
                                   steps=args.steps, supports=(args.history,))
    # validation: held-out assets over the last quarter of the training period
    lo = end_row - max((end_row - spec.horizon) // 4, 30)
    A, R = _grid(panel, val_assets, lo, end_row - spec.horizon)
    s = builder.y[R, A]
    fm = MetaForecaster(learner, args.history).predict(builder, A, R)
    fe = EWMAForecaster().predict(builder, A, R)
    ok = np.isfinite(s) & np.isfinite(fm) & np.isfinite(fe)
    val = {"assets": val_assets, "first_date": str(panel.dates[lo]), "last_date": str(panel.dates[end_row - spec.horizon]),
           "qlike_model": float(qlike_log(s[ok], fm[ok]).mean()), "qlike_ewma": float(qlike_log(s[ok], fe[ok]).mean())}
    save_model(args.out, args.learner, learner, spec, history=args.history, hidden=args.hidden,
               info={"train_assets": train_assets, "train_end": str(panel.dates[end_row]), "prices": panel.source,
                     "seed": args.seed, "meta_steps": args.steps, "validation": val, **info})
    print(f"saved {args.learner} model to {args.out}; validation QLIKE {val['qlike_model']:.4f} "
          f"(EWMA {val['qlike_ewma']:.4f}) on {', '.join(val_assets)}")
    return 0


# --------------------------------------------------------------------------- forecast
def _forecast_frame(learner, spec, panel, start, history):
    import pandas as pd

    from .evaluation import expected_shortfall, value_at_risk
    from .learners.forecasters import MetaForecaster
    from .tasks import EpisodeBuilder

    builder = EpisodeBuilder(panel, spec)
    lo = 0 if start is None else int(np.searchsorted(panel.dates, np.datetime64(start, "D"), "left"))
    if lo >= panel.n_days:
        raise ValueError(f"--start {start} is after the last date of {panel.source} ({panel.dates[-1]})")
    A, R = _grid(panel, panel.assets, lo, panel.n_days - 1)
    f = MetaForecaster(learner, history).predict(builder, A, R)
    ok = np.isfinite(f)
    if not ok.any():
        raise ValueError(f"{panel.source}: no date from {panel.dates[lo]} on has {history} days of history "
                         f"(+{spec.horizon + builder.spec.features.warmup} for targets and features) for any asset")
    f, A, R = f[ok], A[ok], R[ok]
    return pd.DataFrame({"date": panel.dates[R], "asset": np.asarray(panel.assets, dtype=object)[A],
                         "forecast_variance": f, "var_1": value_at_risk(f, 0.01), "var_5": value_at_risk(f, 0.05),
                         "es_2_5": expected_shortfall(f, 0.025)}).sort_values(["date", "asset"], kind="stable")


def cmd_forecast(args):
    from .data.io import atomic_write_text
    from .model_dir import load_model

    _check_out(args.out, "file")
    learner, spec, meta = load_model(args.model)
    panel = _load_panel(args.prices)
    history = meta["history"] if args.history is None else args.history
    frame = _forecast_frame(learner, spec, panel, args.start, history)
    atomic_write_text(args.out, frame.to_csv(index=False))
    print(f"wrote {len(frame)} forecasts ({frame['asset'].nunique()} assets, {frame['date'].min()} to "
          f"{frame['date'].max()}) to {args.out}")
    return 0


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args):
    from .evaluation import evaluate, write_report
    from .learners.forecasters import MetaForecaster
    from .model_dir import load_model
    from .tasks import EpisodeBuilder

    _check_out(args.out, "dir")
    learner, spec, meta = load_model(args.model)
    panel = _load_panel(args.prices)
    history = meta["history"] if args.history is None else args.history
    builder = EpisodeBuilder(panel, spec)
    train_end = np.datetime64(meta["train_end"], "D") if meta.get("train_end") else None
    hi = panel.n_days - 1 - spec.horizon
    if args.start is not None:
        lo = int(np.searchsorted(panel.dates, np.datetime64(args.start, "D"), "left"))
        where = f"from --start {args.start}"
    elif train_end is not None:  # out of sample by default: after the training end and an embargo of h days
        lo = int(np.searchsorted(panel.dates, train_end, "right")) + spec.horizon
        where = (f"after the model's training end {train_end} (+{spec.horizon} day embargo; give --start to "
                 "evaluate earlier, in-sample dates)")
    else:
        lo, where = 0, "on"
    if lo > hi:
        raise ValueError(f"{panel.source} ({panel.dates[0]} to {panel.dates[-1]}) has no date with a realised "
                         f"target {where}")
    A, R = _grid(panel, panel.assets, lo, hi)
    seen = sorted(set(meta.get("train_assets", [])) & set(panel.assets))
    in_sample = np.isin(np.asarray(panel.assets, dtype=object)[A], seen)
    if train_end is not None:
        in_sample |= panel.dates[R] <= train_end
    models = {meta["learner"]: MetaForecaster(learner, history, name=meta["learner"]).predict(builder, A, R)}
    baselines = _baselines(args, include_garch=not args.no_garch)
    for b in baselines:
        _log(args, f"forecasting with {b.name}")
        models[b.name] = b.predict(builder, A, R)
    fits = _garch_fits(baselines)
    ev = evaluate(builder, A, R, models, horizon=spec.horizon, label=f"{meta['learner']} model, history {history}",
                  in_sample=in_sample)
    quality = _data_quality(panel)
    pre = (f"Model `{args.model}` ({meta['learner']}, trained to {meta.get('train_end')}); prices `{panel.source}`. "
           + (f"Assets seen in training: {', '.join(seen)}." if seen else "No asset was seen in training.")
           + _garch_line(fits) + _data_quality_line(quality) + "\n")
    write_report([ev], args.out, "metarisk evaluation", pre,
                 extra={"model": meta, "garch_fits": fits, "data_quality": quality})
    print(ev.table[["qlike", "mse", "hit_0.01_normal", "hit_0.05_normal"]].sort_values("qlike").to_string())
    if ev.meta["in_sample_pairs"]:
        print(f"note: {ev.meta['in_sample_pairs']} of {ev.meta['n_pairs']} asset-days are in-sample (training assets "
              "or dates up to the training end); forecasts.csv flags them")
    print(f"report written to {args.out}")
    return 0


# --------------------------------------------------------------------------- demo
def cmd_demo(args):
    import pandas as pd

    from .evaluation import evaluate, write_report
    from .learners.forecasters import MetaForecaster
    from .tasks import EpisodeBuilder, asset_split, time_split

    _check_out(args.out, "dir")
    t_start = time.perf_counter()
    panel = _load_panel("default")
    spec = _spec(args.horizon, 60)
    builder = EpisodeBuilder(panel, spec)
    train_end, test_start = time_split(panel, args.train_end, spec.horizon)
    train_assets, test_assets = asset_split(panel.assets, args.holdout, seed=args.seed)
    _log(args, f"meta-training on {len(train_assets)} assets, 1990 to {panel.dates[train_end]}; "
               f"held out: {', '.join(test_assets)} from {panel.dates[test_start]}")
    learners, train_info = {}, {}
    for kind in args.learners:
        learners[kind], train_info[kind] = _train_learner(args, kind, builder, train_assets, panel.dates[train_end],
                                                          steps=args.steps, supports=DEFAULT_HISTORIES)
        _log(args, f"  {kind}: {train_info[kind]['train_seconds']} s")
    hi = panel.n_days - 1 - spec.horizon
    A, R = _grid(panel, test_assets, test_start, hi)
    base = {}
    baselines = _baselines(args, include_garch=not args.no_garch)
    for b in baselines:
        _log(args, f"forecasting with {b.name}")
        base[b.name] = b.predict(builder, A, R)
    fits = _garch_fits(baselines)
    evals = []
    for k in args.histories:
        fc = {kind: MetaForecaster(l, k, name=kind).predict(builder, A, R) for kind, l in learners.items()}
        evals.append(evaluate(builder, A, R, {**fc, **base}, horizon=spec.horizon,
                              label=f"few-shot, history k = {k} days"))
    elapsed = time.perf_counter() - t_start
    quality = _data_quality(panel)
    pre = ("Meta-learners adapt on only the last k days of each held-out asset (5 gradient steps; `memory` "
           "writes them into an external memory and reads it once; `memory_maml` starts its 5 steps from "
           "parameters retrieved from a memory; `pooled` is the same network trained "
           "without meta-learning and does not adapt); the baselines use each asset's "
           f"full history up to the forecast date. Training: assets {', '.join(train_assets)}, "
           f"{panel.dates[0]} to {panel.dates[train_end]}; testing after an embargo of {spec.horizon} day(s). "
           f"Run time {elapsed:.0f} s." + _garch_line(fits) + _data_quality_line(quality) + "\n")
    out = write_report(evals, args.out, "metarisk demo: few-shot variance forecasting on held-out assets", pre,
                       extra={"train": train_info, "train_assets": train_assets, "test_assets": test_assets,
                              "garch_fits": fits, "data_quality": quality})
    for ev in evals:
        print(f"\n== {ev.meta['label']}: {', '.join(ev.meta['assets'])}, {ev.meta['first_date']} to {ev.meta['last_date']}")
        cols = ["qlike", "mse", "dm_vs_ewma", "dm_pvalue", "mcs_pvalue", "hit_0.01_normal", "hit_0.05_normal",
                "kupiec_p_0.01_normal", "z2_normal"]
        with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
            print(ev.table[[c for c in cols if c in ev.table]].sort_values("qlike").to_string())
    print(f"\nreport: {', '.join(str(Path(args.out) / f) for f in out['files'])}  ({elapsed:.0f} s)")
    return 0


# --------------------------------------------------------------------------- parser
FORECAST_COLUMNS_HELP = (
    "Columns: date, asset, forecast_variance, var_1, var_5, es_2_5. forecast_variance is the forecast, made "
    "at the close of `date`, of the mean daily variance of log returns over the next h days (daily "
    "variance units: 1e-4 is a 1 %% daily volatility). var_1 / var_5 are the normal 1 %% / 5 %% Value-at-Risk "
    "and es_2_5 the 2.5 %% Expected Shortfall of a one-day log return, as return quantiles: negative numbers, "
    "a loss beyond var_1 is a return below it. For h > 1 they are one-day figures from the h-day mean daily "
    "variance (scale by sqrt(h) for an h-day figure under independent returns).")


def _parser():
    from .model_dir import LEARNERS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=_int_in(0), default=0, help="random seed (default 0)")
    common.add_argument("--threads", type=_int_in(1, 1024), default=None, help="threads for the core, torch and numba")
    common.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    train_opts = argparse.ArgumentParser(add_help=False)
    train_opts.add_argument("--steps", type=_int_in(1, 10**7), default=300, help="meta-training steps (default 300)")
    train_opts.add_argument("--batch", type=_int_in(1, 65536), default=64, help="tasks per meta-batch (default 64)")
    train_opts.add_argument("--meta-lr", type=_positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    train_opts.add_argument("--inner-lr", type=_positive_float, default=0.05,
                            help="inner SGD learning rate (default 0.05)")
    train_opts.add_argument("--inner-steps", type=_int_in(1, 100), default=5, help="inner SGD steps (default 5)")
    train_opts.add_argument("--hidden", type=_int_in(1, 4096), nargs="+", default=[64, 64],
                            help="hidden layer sizes (default 64 64)")
    base_opts = argparse.ArgumentParser(add_help=False)
    base_opts.add_argument("--no-garch", action="store_true", help="skip the GARCH baselines (slowest)")
    base_opts.add_argument("--garch-refit", type=_int_in(1, 10000), default=63,
                           help="GARCH refit interval in days (default 63)")
    horizon = argparse.ArgumentParser(add_help=False)
    horizon.add_argument("--horizon", type=_int_in(1, 250), default=1, help="forecast horizon h in days (default 1)")

    p = argparse.ArgumentParser(prog="metarisk", description="Meta-learned risk forecasting: train, forecast, evaluate.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", parents=[common, train_opts, base_opts, horizon],
                       help="meta-train on the embedded S&P 500 data and compare with baselines on held-out assets")
    d.add_argument("--out", default="metarisk_demo", help="report directory (default ./metarisk_demo)")
    d.add_argument("--train-end", type=_date, default="2014-12-31", help="last training date (default 2014-12-31)")
    d.add_argument("--holdout", type=_int_in(1), default=5, help="assets held out for testing (default 5)")
    d.add_argument("--learners", nargs="+",
                   default=["maml", "fomaml", "reptile", "metasgd", "memory", "memory_maml", "pooled"],
                   choices=LEARNERS, metavar="LEARNER",
                   help=f"learners to meta-train and compare, from {', '.join(LEARNERS)} (default: all)")
    d.add_argument("--histories", type=_int_in(1, 5000), nargs="+", default=list(DEFAULT_HISTORIES),
                   help="few-shot history lengths k: days of each held-out asset's past the learners adapt on "
                        "(default 20 60 250)")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", parents=[common, train_opts, horizon], help="meta-train a model and save it")
    t.add_argument("--prices", required=True, help="price file (CSV, CSV.gz, Parquet; wide or long) or 'default'")
    t.add_argument("--out", required=True, help="model directory to write")
    t.add_argument("--learner", default="maml", help=f"one of {', '.join(LEARNERS)} (default maml)")
    t.add_argument("--train-end", type=_date, default=None, help="last date whose targets train the model (default: all)")
    t.add_argument("--history", type=_int_in(1, 5000), default=60, help="support days per task (default 60)")
    t.set_defaults(func=cmd_train)

    f = sub.add_parser("forecast", parents=[common], help="forecast variance, VaR and ES with a trained model",
                       description="Forecast variance, VaR and ES with a trained model. " + FORECAST_COLUMNS_HELP)
    f.add_argument("--model", required=True, help="model directory from `metarisk train`")
    f.add_argument("--prices", required=True, help="price file or 'default'")
    f.add_argument("--out", required=True, help="CSV file to write (columns below)")
    f.add_argument("--start", type=_date, default=None, help="first forecast date (default: as soon as history allows)")
    f.add_argument("--history", type=_int_in(1, 5000), default=None,
                   help="days of each asset's past to adapt on (default: the model's)")
    f.set_defaults(func=cmd_forecast)

    e = sub.add_parser("evaluate", parents=[common, base_opts], help="evaluate a model against the baselines")
    e.add_argument("--model", required=True, help="model directory from `metarisk train`")
    e.add_argument("--prices", required=True, help="price file or 'default'")
    e.add_argument("--out", required=True, help="report directory")
    e.add_argument("--start", type=_date, default=None,
                   help="first forecast date (default: the first day after the model's training end and a "
                        "horizon-long embargo; earlier dates and training assets are flagged in-sample)")
    e.add_argument("--history", type=_int_in(1, 5000), default=None,
                   help="days of history to adapt on (default: the model's)")
    e.set_defaults(func=cmd_evaluate)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from .data import DataError
    from .model_dir import ModelError

    try:
        _setup(args)
        return args.func(args)
    except (DataError, ModelError, ValueError, OSError, FloatingPointError) as exc:
        print(f"metarisk {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
