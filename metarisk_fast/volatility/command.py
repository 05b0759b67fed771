"""`metarisk demo | train | forecast | stream | evaluate`: the variance-forecasting application's
subcommands (the core application's verbs stand at the top level), one library call each."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._command import date, int_in, nonnegative_float, positive_float, price_file_options, progress_log

FORECAST_COLUMNS_HELP = (
    "Columns: date, asset, forecast_variance, var_1, var_5, es_2_5. forecast_variance is the forecast, made "
    "at the close of `date`, of the mean daily variance of log returns over the next h days (daily "
    "variance units: 1e-4 is a 1 % daily volatility). var_1 / var_5 are the normal 1 % / 5 % Value-at-Risk "
    "and es_2_5 the 2.5 % Expected Shortfall of a one-day log return, as return quantiles: negative numbers, "
    "a loss beyond var_1 is a return below it. For h > 1 they are one-day figures from the h-day mean daily "
    "variance (scale by sqrt(h) for an h-day figure under independent returns). --dist t and --alpha change "
    "the distribution and the levels.")

# the shipped models by name (forecasting.model_files.SHIPPED_MODELS; named here so that parsing
# imports no torch)
STREAMING = "streaming"
SHIPPED_MODEL_HELP = ("model directory from `metarisk train`, or a shipped model: 'default' (MAML) or "
                      f"'{STREAMING}' (the head learner, re-adapted exactly on every bar)")


def levels(text: str) -> list[float]:
    """--alpha: comma-separated tail levels in (0, 0.5)."""
    try:
        out = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not out or not all(0.0 < a < 0.5 for a in out):
        raise argparse.ArgumentTypeError(f"levels must be in (0, 0.5) (left-tail probabilities), got {text!r}")
    return out


def _train_options(args):
    from .jobs import TrainOptions

    return TrainOptions(steps=args.steps, batch=args.batch, meta_lr=args.meta_lr, inner_lr=args.inner_lr,
                        inner_steps=args.inner_steps, hidden=args.hidden and tuple(args.hidden), seed=args.seed,
                        memory_slots=args.memory_slots, young_listings=args.young_listings)


def cmd_train(args):
    """Run `metarisk train` (on one process, several, or under torchrun); returns the exit
    status."""
    from ..forecasting.distributed import is_lead_process
    from .jobs import train

    from ..data import price_source

    meta = train(price_source(args.prices, args.sep), args.out, learner=args.learner, horizon=args.horizon, history=args.history,
                 train_end=args.train_end, options=_train_options(args), log=progress_log(args), nproc=args.nproc,
                 checkpoint_every=args.checkpoint_every, resume=args.resume)
    val = meta["validation"]
    if is_lead_process():
        print(f"saved {args.learner} model to {args.out}; validation QLIKE {val['qlike_model']:.4f} "
              f"(EWMA {val['qlike_ewma']:.4f}) on {', '.join(val['assets'])}")
    return 0


def _wrote(summary: dict | None, out) -> None:
    if summary is not None:  # None: a rank of torchrun's group other than 0 (rank 0 speaks)
        print(f"wrote {summary['rows']} forecasts ({summary['assets']} assets, {summary['first']} to "
              f"{summary['last']}) to {out}")


def cmd_forecast(args):
    """Run `metarisk forecast` (the forecast table of a model over a price file); returns the
    exit status."""
    from ..data import price_source
    from .jobs import forecast_to_file

    _wrote(forecast_to_file(args.model, price_source(args.prices, args.sep), args.out, start=args.start,
                            history=args.history, dist=args.dist, alphas=args.alpha, wide=args.wide, nproc=args.nproc,
                            log=progress_log(args)), args.out)
    return 0


def _stress_monitor(warning_dir):
    """The engine's market-wide monitor from a `metarisk warn` directory, read and checked now
    (before any long work): a function of the number of assets."""
    if warning_dir is None:
        return None
    from functools import partial

    from ..warning import StressScore, WarningModel

    return partial(StressScore, WarningModel.load(warning_dir))


def cmd_stream(args):
    """Run `metarisk stream`: a file replayed bar by bar, or a live feed on standard input;
    returns the exit status."""
    from ..data import price_source
    from .feed import stream, stream_lines
    from .jobs import table_summary

    monitor = _stress_monitor(args.warning)
    if args.prices is not None:
        frame = stream(args.model, price_source(args.prices, args.sep), args.out, start=args.start, history=args.history,
                       readapt_every=args.readapt_every, online_lr=args.online_lr, monitor=monitor,
                       log=progress_log(args))
        _wrote(table_summary(frame), args.out)
        return 0

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    taken, skipped = stream_lines(args.model, sys.stdin, write, history=args.history,
                                  readapt_every=args.readapt_every, online_lr=args.online_lr,
                                  warm_up=price_source(args.warm_up, args.sep),
                                  state=args.state, monitor=monitor, log=progress_log(args))
    print(f"{taken} bars taken" + (f", {skipped} bad lines skipped (exit status 3)" if skipped else ""),
          file=sys.stderr)
    return 3 if skipped else 0


def cmd_evaluate(args):
    """Run `metarisk evaluate` (a saved model against the baselines); returns the exit status."""
    from ..data import price_source
    from .jobs import evaluate

    ev = evaluate(args.model, price_source(args.prices, args.sep), args.out, start=args.start, history=args.history, garch=not args.no_garch,
                  garch_refit=args.garch_refit, log=progress_log(args))
    print(ev.table[["qlike", "mse", "hit_0.01_normal", "hit_0.05_normal"]].sort_values("qlike").to_string())
    if ev.meta["in_sample_pairs"]:
        print(f"note: {ev.meta['in_sample_pairs']} of {ev.meta['n_pairs']} asset-days are in-sample (training assets "
              "or dates up to the training end); forecasts.csv flags them")
    print(f"report written to {args.out}")
    return 0


def cmd_demo(args):
    """Run `metarisk demo` and print its tables; returns the exit status."""
    import pandas as pd

    from ..report import young_rows
    from .jobs import demo

    evals, out = demo(args.out, learners=args.learners, histories=args.histories, horizon=args.horizon,
                      train_end=args.train_end, holdout=args.holdout, garch=not args.no_garch,
                      garch_refit=args.garch_refit, options=_train_options(args), retrain=args.retrain,
                      save_models=args.save_models, log=progress_log(args))
    cols = ["qlike", "mse", "dm_vs_ewma", "dm_pvalue", "mcs_pvalue", "hit_0.01_normal", "hit_0.05_normal",
            "kupiec_p_0.01_normal", "z2_normal"]
    for ev in evals:
        names = ev.meta["assets"]
        if young_rows(ev):  # the new listings: by age
            print(f"\n== {ev.meta['label']}")
            table = pd.DataFrame(ev.meta["by_age"])
            with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
                print(table[[c for c in ("ages", "model", "n", "qlike", "diff_ewma", "p_ewma") if c in table]]
                      .to_string(index=False))
            continue
        print(f"\n== {ev.meta['label']}: {', '.join(names)}, {ev.meta['first_date']} to {ev.meta['last_date']}")
        with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
            print(ev.table[[c for c in cols if c in ev.table]].sort_values("qlike").to_string())
    print(f"\nreport: {', '.join(str(Path(args.out) / f) for f in out['files'])}  ({out['seconds']:.0f} s)")
    return 0


def _check_stream(parser, args) -> None:
    """A replay (--prices) and a live feed (standard input) take different options: refuse a mix."""
    if args.prices is not None:
        if args.out is None:
            parser.error("stream --prices needs --out (the CSV file to write)")
        for option, value in (("--state", args.state), ("--warm-up", args.warm_up)):
            if value is not None:
                parser.error(f"stream {option} is for a live feed on standard input; a replay (--prices) "
                             "starts from the file's first bar")
    else:
        for option, value in (("--out", args.out), ("--start", args.start)):
            if value is not None:
                parser.error(f"stream {option} needs --prices (a live feed writes to standard output from its "
                             "first bar)")


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add `metarisk demo | train | forecast | stream | evaluate` to the subcommands ``sub``."""
    from ..forecasting import LEARNERS, MEMORY_SLOTS, training_default
    from .jobs import DEFAULT_HISTORIES, DEMO_LEARNERS, TrainOptions

    defaults = TrainOptions()  # the defaults live there, once
    training = argparse.ArgumentParser(add_help=False)
    training.add_argument("--steps", type=int_in(1, 10**7), default=None,
                          help=f"meta-training steps (default {training_default('maml', 'steps')}; the head "
                               f"learner: {training_default('head', 'steps')})")
    training.add_argument("--batch", type=int_in(1, 65536), default=defaults.batch,
                          help=f"tasks per meta-batch (default {defaults.batch})")
    training.add_argument("--meta-lr", type=positive_float, default=defaults.meta_lr,
                          help=f"Adam learning rate (default {defaults.meta_lr:g})")
    training.add_argument("--inner-lr", type=positive_float, default=defaults.inner_lr,
                          help=f"inner SGD learning rate (default {defaults.inner_lr:g})")
    training.add_argument("--inner-steps", type=int_in(1, 100), default=defaults.inner_steps,
                          help=f"inner SGD steps (default {defaults.inner_steps})")
    training.add_argument("--hidden", type=int_in(1, 4096), nargs="+", default=None,
                          help=f"hidden layer sizes (default {' '.join(map(str, training_default('maml', 'hidden')))}; "
                               f"the head learner's body: {' '.join(map(str, training_default('head', 'hidden')))})")
    training.add_argument("--memory-slots", type=int_in(1, 100_000), default=MEMORY_SLOTS,
                          help=f"the memory learner's slots: at least the longest history it adapts on "
                               f"(default {MEMORY_SLOTS})")
    training.add_argument("--young-listings", action=argparse.BooleanOptionalAction, default=None,
                          help="draw a third of the meta-batches from listings simulated inside the training "
                               "panel (young assets; default: on for the head learner, off for the others, as "
                               "validation chose, bench/FORECAST_QUALITY.md)")
    baseline_options = argparse.ArgumentParser(add_help=False)
    baseline_options.add_argument("--no-garch", action="store_true", help="skip the GARCH baselines (slowest)")
    baseline_options.add_argument("--garch-refit", type=int_in(1, 10000), default=63,
                                  help="GARCH refit interval in days (default 63)")
    horizon = argparse.ArgumentParser(add_help=False)
    horizon.add_argument("--horizon", type=int_in(1, 250), default=1, help="forecast horizon h in days (default 1)")

    prices = price_file_options()
    demo = sub.add_parser("demo", parents=[common, training, baseline_options, horizon],
                          help="meta-train on the embedded S&P 500 data and compare with baselines on held-out assets",
                          description="Meta-train every learner on 15 of the 20 embedded stocks up to --train-end, "
                                      "forecast the 5 held-out stocks afterwards from only their last k days "
                                      "(--histories), and compare with EWMA, HAR and the GARCH family; writes "
                                      "--out/report.md, report.json, forecasts.csv and plots.")
    demo.add_argument("--out", default="metarisk_demo", help="report directory (default ./metarisk_demo)")
    demo.add_argument("--train-end", type=date, default="2014-12-31", help="last training date (default 2014-12-31)")
    demo.add_argument("--holdout", type=int_in(1), default=5, help="assets held out for testing (default 5)")
    demo.add_argument("--learners", nargs="+", default=list(DEMO_LEARNERS), choices=LEARNERS, metavar="LEARNER",
                      help=f"learners to meta-train and compare, from {', '.join(LEARNERS)} (default: all)")
    demo.add_argument("--histories", type=int_in(1, 5000), nargs="+", default=list(DEFAULT_HISTORIES),
                      help="few-shot history lengths k: days of each held-out asset's past the learners adapt on "
                           "(default 20 60 250)")
    demo.add_argument("--retrain", action="store_true",
                      help="meta-train every learner here, also those the package ships pretrained with these "
                           "settings (by default they are loaded, which makes the demo a few minutes shorter)")
    demo.add_argument("--save-models", metavar="DIR", default=None,
                      help="also write each learner as a model directory DIR/<learner> (the files the package's "
                           "pretrained demo learners are)")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", parents=[common, training, horizon, prices], help="meta-train a model and save it",
                           description="Meta-train a learner on 80 % of the panel's assets up to --train-end, "
                                       "validate on the others (QLIKE against EWMA) and save the model directory "
                                       "--out (model.pt, model.json).")
    train.add_argument("--prices", required=True, help="price file (CSV, CSV.gz, Parquet; wide or long) or 'default'")
    train.add_argument("--out", required=True, help="model directory to write")
    train.add_argument("--learner", default="maml", choices=LEARNERS, metavar="LEARNER",
                       help=f"one of {', '.join(LEARNERS)} (default maml)")
    train.add_argument("--train-end", type=date, default=None,
                       help="last date whose targets train the model (default: all)")
    train.add_argument("--history", type=int_in(1, 5000), default=60, help="support days per task (default 60)")
    train.add_argument("--nproc", type=int_in(1, 1024), default=1,
                       help="local processes for data-parallel meta-training (torch.distributed, gloo; default 1). "
                            "Under torchrun, its ranks form the group instead")
    train.add_argument("--checkpoint-every", type=int_in(0), default=0,
                       help="write OUT/checkpoint.pt every this many meta-steps (default 0: never)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.set_defaults(func=cmd_train)

    def model_options(default: str | None) -> argparse.ArgumentParser:
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument("--model", required=default is None, default=default,
                             help=SHIPPED_MODEL_HELP + (f" (default {default})" if default else ""))
        options.add_argument("--history", type=int_in(1, 5000), default=None,
                             help="days of each asset's past to adapt on (default: the model's)")
        return options

    forecast = sub.add_parser("forecast", parents=[common, model_options(None), prices],
                              help="forecast variance, VaR and ES with a trained model",
                              description="Forecast variance, VaR and ES with a trained model. " + FORECAST_COLUMNS_HELP)
    forecast.add_argument("--prices", required=True, help="price file or 'default'")
    forecast.add_argument("--out", required=True, help="file to write (columns below): Parquet for a .parquet name, "
                                                        "a Parquet dataset partitioned by year for a directory "
                                                        "name ending in '/', CSV otherwise")
    forecast.add_argument("--nproc", type=int_in(1, 1024), default=1,
                          help="processes to share the assets out to (torch.distributed; the same file, bit for bit; "
                               "under torchrun: its ranks, on any number of machines)")
    forecast.add_argument("--wide", action="store_true",
                          help="write the forecast variance wide instead: one row per date, one column per asset "
                               "(the layout of a wide price file; the VaR / ES columns are in the long table)")
    forecast.add_argument("--start", type=date, default=None,
                          help="first forecast date (default: as soon as history allows)")
    forecast.add_argument("--dist", choices=["normal", "t"], default="normal",
                          help="VaR / ES distribution: normal (default: the columns every report and the streaming "
                               "engine write) or t (the Student t with the model's own degrees of freedom, the "
                               "likelihood it is trained with; the normal 1 %% VaR is exceeded on about 2 %% of days "
                               "on real indices)")
    forecast.add_argument("--alpha", type=levels, default=None,
                          help="VaR and ES levels, comma-separated (e.g. 0.01,0.05): columns var_<a> and es_<a> in "
                               "%% (0.025 -> var_2_5) instead of var_1, var_5, es_2_5")
    forecast.set_defaults(func=cmd_forecast)

    stream = sub.add_parser(
        "stream", parents=[common, model_options(STREAMING), prices], help="the streaming engine: replay a file or serve a live feed",
        description="Run the streaming RiskEngine. With --prices, replay the file bar by bar and write --out with "
                    "`metarisk forecast`'s columns (the same numbers). Without it, read bars from standard input as "
                    "CSV lines (a header `date,ASSET1,...`, then one line of closes per bar, an empty field for no "
                    "price) and write one line per asset per bar; a bad line is reported and skipped, and the "
                    "exit status is then 3. " + FORECAST_COLUMNS_HELP)
    stream.add_argument("--prices", default=None, help="price file or 'default' to replay (default: bars from stdin)")
    stream.add_argument("--out", default=None, help="CSV file to write (with --prices)")
    stream.add_argument("--start", type=date, default=None, help="first date written (with --prices)")
    stream.add_argument("--readapt-every", type=int_in(1, 10000), default=1,
                        help="re-adapt each asset every k bars, forward-only in between (default 1: exact)")
    stream.add_argument("--online-lr", type=nonnegative_float, default=0.0,
                        help="keep meta-learning while streaming: one SGD step of this size per bar on the tasks it "
                             "realises (default 0: the model as trained; > 0 departs from `forecast`'s numbers)")
    stream.add_argument("--warm-up", default=None, help="price file to warm the engine up from (stdin mode)")
    stream.add_argument("--state", default=None,
                        help="engine state file: continued if it exists, rewritten when the feed ends (stdin mode)")
    stream.add_argument("--warning", default=None,
                        help="a `metarisk warn` report directory (its warning.json): every row also gets stress_score "
                             "and stress_alarm, the market-wide early warning of its bar (the model must be the one "
                             "given to warn --model, if any)")
    stream.set_defaults(func=cmd_stream, check=_check_stream)

    evaluate = sub.add_parser("evaluate", parents=[common, baseline_options, prices],
                              help="evaluate a model against the baselines",
                              description="Forecast every asset of --prices out of sample with a trained model and "
                                          "compare with EWMA, HAR and the GARCH family (QLIKE, MSE, DM, MCS, VaR / ES "
                                          "backtests); writes the report directory --out.")
    evaluate.add_argument("--model", required=True,
                          help=SHIPPED_MODEL_HELP)
    evaluate.add_argument("--prices", required=True, help="price file or 'default'")
    evaluate.add_argument("--out", required=True, help="report directory")
    evaluate.add_argument("--start", type=date, default=None,
                          help="first forecast date (default: the first day after the model's training end and a "
                               "horizon-long embargo; earlier dates and training assets are flagged in-sample)")
    evaluate.add_argument("--history", type=int_in(1, 5000), default=None,
                          help="days of history to adapt on (default: the model's)")
    evaluate.set_defaults(func=cmd_evaluate)
