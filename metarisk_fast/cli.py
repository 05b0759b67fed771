"""The `metarisk` command: argument parsing, then one library call per subcommand (jobs.py)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


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


def _log(args):
    return None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


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


def _nonnegative_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (np.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"{v} is not a finite number >= 0")
    return v


def _date(text):
    try:
        return str(np.datetime64(text, "D"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


_date.__name__ = "date"
_positive_float.__name__ = "number"
_nonnegative_float.__name__ = "number"


def _train_options(args):
    from .jobs import TrainOptions

    return TrainOptions(steps=args.steps, batch=args.batch, meta_lr=args.meta_lr, inner_lr=args.inner_lr,
                        inner_steps=args.inner_steps, hidden=tuple(args.hidden), seed=args.seed)


def cmd_train(args):
    from .jobs import train

    meta = train(args.prices, args.out, learner=args.learner, horizon=args.horizon, history=args.history,
                 train_end=args.train_end, options=_train_options(args), log=_log(args), nproc=args.nproc,
                 checkpoint_every=args.checkpoint_every, resume=args.resume)
    val = meta["validation"]
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the group
        print(f"saved {args.learner} model to {args.out}; validation QLIKE {val['qlike_model']:.4f} "
              f"(EWMA {val['qlike_ewma']:.4f}) on {', '.join(val['assets'])}")
    return 0


def cmd_forecast(args):
    from .jobs import forecast_to_csv

    frame = forecast_to_csv(args.model, args.prices, args.out, start=args.start, history=args.history, log=_log(args))
    print(f"wrote {len(frame)} forecasts ({frame['asset'].nunique()} assets, {frame['date'].min()} to "
          f"{frame['date'].max()}) to {args.out}")
    return 0


def cmd_stream(args):
    from .jobs import stream, stream_lines

    monitor = None
    if args.warning is not None:  # read and checked before any long work
        from functools import partial

        from .warning import StressScore, WarningModel

        monitor = partial(StressScore, WarningModel.load(args.warning))  # of the number of assets
    if args.prices is not None:
        frame = stream(args.model, args.prices, args.out, start=args.start, history=args.history,
                       readapt_every=args.readapt_every, online_lr=args.online_lr, monitor=monitor, log=_log(args))
        print(f"wrote {len(frame)} forecasts ({frame['asset'].nunique()} assets, {frame['date'].min()} to "
              f"{frame['date'].max()}) to {args.out}")
        return 0

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    bars = stream_lines(args.model, sys.stdin, write, history=args.history, readapt_every=args.readapt_every,
                        online_lr=args.online_lr, warm_up=args.warm_up, state=args.state, monitor=monitor,
                        log=_log(args))
    print(f"{bars} bars taken", file=sys.stderr)
    return 0


def _credit_training(args):
    from .credit.learn import CreditTraining

    return CreditTraining(learner=getattr(args, "learner", "maml"), hidden=tuple(args.hidden), steps=args.steps,
                          inner_lr=args.inner_lr, inner_steps=args.inner_steps, seed=args.seed)


def cmd_credit(args):
    from .credit import jobs as credit

    log = _log(args)
    if args.credit_command == "train":
        meta = credit.train(args.data, args.out, target=args.target, segment=args.segment,
                            training=_credit_training(args), log=log)
        print(f"saved {meta['training']['learner']} credit model to {args.out} ({meta['loans']} loans, "
              f"{len(meta['segments'])} segments)")
    elif args.credit_command == "score":
        frame = credit.score(args.model, args.support, args.data, args.out)
        print(f"wrote {len(frame)} scores with their reasons to {args.out}")
    else:
        if args.credit_command == "demo":
            summary = credit.demo(args.out, draws=args.draws, seed=args.seed, log=log)
        else:
            summary = credit.evaluate(args.data, args.out, target=args.target, segment=args.segment, ks=args.k,
                                      draws=args.draws, learners=args.learners, training=_credit_training(args),
                                      seed=args.seed, log=log)
        for k, s in summary.items():
            lo, hi = s["auc_difference_ci"]
            print(f"K = {k}: best meta-learner {s['best_meta_learner']} AUC "
                  f"{s['methods'][s['best_meta_learner']]['auc']:.3f}, best baseline {s['best_baseline']} "
                  f"{s['methods'][s['best_baseline']]['auc']:.3f}; difference {s['auc_difference']:+.4f} "
                  f"[{lo:+.4f}, {hi:+.4f}], p = {s['paired_t_pvalue']:.3g}")
        print(f"report written to {args.out}")
    return 0


def cmd_trade(args):
    from .trading import jobs as trade
    from .trading.train import PolicyTraining

    log = _log(args)
    if args.trade_command == "train":
        curve = trade.train(args.out, PolicyTraining(algorithm=args.algorithm, iterations=args.iterations,
                                                     seed=args.seed), model=args.model, log=log)
        last = curve[-10:].mean(axis=0)
        print(f"saved {args.algorithm} policy to {args.out}; last 10 iterations: {last[0]:+.2f} bp a bar before "
              f"adaptation, {last[1]:+.2f} after (with exploration)")
        return 0
    if args.trade_command == "evaluate":
        summary = trade.evaluate(args.policy, args.pooled, args.out, seed=args.seed, log=log)
    else:
        summary = trade.demo(args.out, seeds=args.seeds, iterations=args.iterations, model=args.model, log=log)
    for group, g in summary["groups"].items():
        for method, m in g["methods"].items():
            print(f"{group:<8} {method:<42} Sharpe {m['sharpe'][0]:+.3f}  turnover {m['turnover'][0]:.3f}  "
                  f"max drawdown {m['max_drawdown'][0]:.4f}")
    print(f"report written to {args.out}")
    return 0


def cmd_warn(args):
    from .warning.jobs import NAMES, warn

    summary = warn(args.prices, args.out, drawdown=args.drawdown, horizon=args.horizon, model=args.model,
                   log=_log(args))
    for name, r in sorted(summary["scores"].items(), key=lambda kv: -kv[1]["auroc"]):
        print(f"{NAMES[name]:<45} AUROC {r['auroc']:.3f}  hit rate at 10 % false alarms "
              f"{r['hit_rate_at_10pct_false_alarms']:.3f}  false alarm episodes a year "
              f"{r['false_alarm_episodes_per_year']:.2f}")
    print(f"report written to {args.out}")
    return 0


def cmd_evaluate(args):
    from .jobs import evaluate

    ev = evaluate(args.model, args.prices, args.out, start=args.start, history=args.history, garch=not args.no_garch,
                  garch_refit=args.garch_refit, log=_log(args))
    print(ev.table[["qlike", "mse", "hit_0.01_normal", "hit_0.05_normal"]].sort_values("qlike").to_string())
    if ev.meta["in_sample_pairs"]:
        print(f"note: {ev.meta['in_sample_pairs']} of {ev.meta['n_pairs']} asset-days are in-sample (training assets "
              "or dates up to the training end); forecasts.csv flags them")
    print(f"report written to {args.out}")
    return 0


def cmd_demo(args):
    import pandas as pd

    from .jobs import demo

    evals, out = demo(args.out, learners=args.learners, histories=args.histories, horizon=args.horizon,
                      train_end=args.train_end, holdout=args.holdout, garch=not args.no_garch,
                      garch_refit=args.garch_refit, options=_train_options(args), log=_log(args))
    cols = ["qlike", "mse", "dm_vs_ewma", "dm_pvalue", "mcs_pvalue", "hit_0.01_normal", "hit_0.05_normal",
            "kupiec_p_0.01_normal", "z2_normal"]
    for ev in evals:
        print(f"\n== {ev.meta['label']}: {', '.join(ev.meta['assets'])}, {ev.meta['first_date']} to {ev.meta['last_date']}")
        with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
            print(ev.table[[c for c in cols if c in ev.table]].sort_values("qlike").to_string())
    print(f"\nreport: {', '.join(str(Path(args.out) / f) for f in out['files'])}  ({out['seconds']:.0f} s)")
    return 0


FORECAST_COLUMNS_HELP = (
    "Columns: date, asset, forecast_variance, var_1, var_5, es_2_5. forecast_variance is the forecast, made "
    "at the close of `date`, of the mean daily variance of log returns over the next h days (daily "
    "variance units: 1e-4 is a 1 %% daily volatility). var_1 / var_5 are the normal 1 %% / 5 %% Value-at-Risk "
    "and es_2_5 the 2.5 %% Expected Shortfall of a one-day log return, as return quantiles: negative numbers, "
    "a loss beyond var_1 is a return below it. For h > 1 they are one-day figures from the h-day mean daily "
    "variance (scale by sqrt(h) for an h-day figure under independent returns).")


def _parser():
    from .forecasting.persistence import LEARNERS
    from .jobs import DEFAULT_HISTORIES, DEMO_LEARNERS, TrainOptions

    d = TrainOptions()  # the defaults live there, once

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=_int_in(0), default=0, help="random seed (default 0)")
    common.add_argument("--threads", type=_int_in(1, 1024), default=None, help="threads for the core, torch and numba")
    common.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    train_opts = argparse.ArgumentParser(add_help=False)
    train_opts.add_argument("--steps", type=_int_in(1, 10**7), default=d.steps,
                            help=f"meta-training steps (default {d.steps})")
    train_opts.add_argument("--batch", type=_int_in(1, 65536), default=d.batch,
                            help=f"tasks per meta-batch (default {d.batch})")
    train_opts.add_argument("--meta-lr", type=_positive_float, default=d.meta_lr,
                            help=f"Adam learning rate (default {d.meta_lr:g})")
    train_opts.add_argument("--inner-lr", type=_positive_float, default=d.inner_lr,
                            help=f"inner SGD learning rate (default {d.inner_lr:g})")
    train_opts.add_argument("--inner-steps", type=_int_in(1, 100), default=d.inner_steps,
                            help=f"inner SGD steps (default {d.inner_steps})")
    train_opts.add_argument("--hidden", type=_int_in(1, 4096), nargs="+", default=list(d.hidden),
                            help=f"hidden layer sizes (default {' '.join(map(str, d.hidden))})")
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
                   default=list(DEMO_LEARNERS),
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
    t.add_argument("--nproc", type=_int_in(1, 1024), default=1,
                   help="local processes for data-parallel meta-training (torch.distributed, gloo; default 1). "
                        "Under torchrun, its ranks form the group instead")
    t.add_argument("--checkpoint-every", type=_int_in(0), default=0,
                   help="write OUT/checkpoint.pt every this many meta-steps (default 0: never)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.set_defaults(func=cmd_train)

    model_opts = argparse.ArgumentParser(add_help=False)
    model_opts.add_argument("--model", required=True, help="model directory from `metarisk train`")
    model_opts.add_argument("--history", type=_int_in(1, 5000), default=None,
                            help="days of each asset's past to adapt on (default: the model's)")
    f = sub.add_parser("forecast", parents=[common, model_opts], help="forecast variance, VaR and ES with a trained model",
                       description="Forecast variance, VaR and ES with a trained model. " + FORECAST_COLUMNS_HELP)
    f.add_argument("--prices", required=True, help="price file or 'default'")
    f.add_argument("--out", required=True, help="CSV file to write (columns below)")
    f.add_argument("--start", type=_date, default=None, help="first forecast date (default: as soon as history allows)")
    f.set_defaults(func=cmd_forecast)

    s = sub.add_parser("stream", parents=[common, model_opts], help="the streaming engine: replay a file or serve a live feed",
                       description="Run the streaming RiskEngine. With --prices, replay the file bar by bar and "
                                   "write --out with `metarisk forecast`'s columns (the same numbers). Without "
                                   "it, read bars from standard input as CSV lines (a header `date,ASSET1,...`, "
                                   "then one line of closes per bar, an empty field for no price) and write one "
                                   "line per asset per bar. " + FORECAST_COLUMNS_HELP)
    s.add_argument("--prices", default=None, help="price file or 'default' to replay (default: bars from stdin)")
    s.add_argument("--out", default=None, help="CSV file to write (with --prices)")
    s.add_argument("--start", type=_date, default=None, help="first date written (with --prices)")
    s.add_argument("--readapt-every", type=_int_in(1, 10000), default=1,
                   help="re-adapt each asset every k bars, forward-only in between (default 1: exact)")
    s.add_argument("--online-lr", type=_nonnegative_float, default=0.0,
                   help="keep meta-learning while streaming: one SGD step of this size per bar on the tasks it "
                        "realises (default 0: the model as trained; > 0 departs from `forecast`'s numbers)")
    s.add_argument("--warm-up", default=None, help="price file to warm the engine up from (stdin mode)")
    s.add_argument("--state", default=None,
                   help="engine state file: continued if it exists, rewritten when the feed ends (stdin mode)")
    s.add_argument("--warning", default=None,
                   help="a `metarisk warn` report directory (its warning.json): every row also gets stress_score "
                        "and stress_alarm, the market-wide early warning of its bar (the model must be the one "
                        "given to warn --model, if any)")
    s.set_defaults(func=cmd_stream)

    from .credit.learn import CREDIT_LEARNERS

    c = sub.add_parser("credit", help="credit scoring that adapts to a new segment from a few labelled loans",
                       description="Credit assessment on the same engine: a segment (by default the loan purpose) is a "
                                   "task; meta-learners adapt to a new segment from K labelled loans.")
    csub = c.add_subparsers(dest="credit_command", required=True)
    data_opts = argparse.ArgumentParser(add_help=False)
    data_opts.add_argument("--data", default="default",
                           help="loans: CSV or Parquet with a target and a segment column, or 'default' (the "
                                "embedded German credit data)")
    data_opts.add_argument("--target", default="creditability",
                           help="target column: 1 / bad / default marks a default (default creditability)")
    data_opts.add_argument("--segment", default="purpose", help="segment column (default purpose)")
    credit_train = argparse.ArgumentParser(add_help=False)
    credit_train.add_argument("--steps", type=_int_in(1, 10**6), default=300, help="meta-training steps (default 300)")
    credit_train.add_argument("--hidden", type=_int_in(1, 4096), nargs="*", default=[],
                              help="hidden layer sizes (default none: a meta-learned logistic regression)")
    credit_train.add_argument("--inner-lr", type=_positive_float, default=0.1, help="inner learning rate (default 0.1)")
    credit_train.add_argument("--inner-steps", type=_int_in(1, 100), default=5, help="inner steps (default 5)")
    ct = csub.add_parser("train", parents=[common, data_opts, credit_train], help="meta-train on every segment")
    ct.add_argument("--learner", default="maml", choices=CREDIT_LEARNERS, help="default maml")
    ct.add_argument("--out", required=True, help="model directory to write")
    cs = csub.add_parser("score", parents=[common], help="adapt to a new segment's labelled loans and score loans")
    cs.add_argument("--model", required=True, help="model directory from `metarisk credit train`")
    cs.add_argument("--support", required=True, help="labelled loans of the new segment (with the target column)")
    cs.add_argument("--data", required=True, help="loans to score")
    cs.add_argument("--out", required=True, help="CSV to write: row, score (default probability), reason_1..3")
    ce = csub.add_parser("evaluate", parents=[common, data_opts, credit_train],
                         help="leave-one-segment-out evaluation against the baselines")
    ce.add_argument("--k", type=_int_in(2, 10**5), nargs="+", default=[10, 25, 50],
                    help="labelled loans of the held-out segment (default 10 25 50)")
    ce.add_argument("--draws", type=_int_in(2, 10_000), default=20, help="K-shot draws per segment (default 20)")
    ce.add_argument("--learners", nargs="+", default=list(CREDIT_LEARNERS), choices=CREDIT_LEARNERS,
                    metavar="LEARNER", help=f"from {', '.join(CREDIT_LEARNERS)} (default: all)")
    ce.add_argument("--out", default="credit_report", help="report directory (default ./credit_report)")
    cd = csub.add_parser("demo", parents=[common], help="the evaluation on the embedded German credit data")
    cd.add_argument("--draws", type=_int_in(2, 10_000), default=20, help="K-shot draws per segment (default 20)")
    cd.add_argument("--out", default="credit_demo", help="report directory (default ./credit_demo)")
    c.set_defaults(func=cmd_credit)

    w = sub.add_parser("warn", parents=[common], help="early warning of market-wide stress from a price panel",
                       description="Early-warning scores (turbulence, absorption ratio, realised volatility, novelty) "
                                   "and their recursive combination, evaluated out of sample against stress events: "
                                   "a drawdown of the equal-weighted index or a volatility jump within the horizon.")
    w.add_argument("--prices", default="default", help="price file or 'default' (the embedded panel)")
    w.add_argument("--out", default="warning_report", help="report directory (default ./warning_report)")
    w.add_argument("--drawdown", type=_positive_float, default=15.0,
                   help="index drawdown in percent that marks stress (default 15)")
    w.add_argument("--horizon", type=_int_in(1, 1000), default=60, help="days ahead a warning looks (default 60)")
    w.add_argument("--model", default=None,
                   help="a variance model directory from `metarisk train`: adds the jump of its forecasts across "
                        "assets as a score")
    w.set_defaults(func=cmd_warn)

    t = sub.add_parser("trade", help="trading-strategy adaptation by meta-reinforcement learning (ProMP, MAML-PG)",
                       description="Trading tasks (252-bar blocks of one asset: the embedded panel's stocks and the "
                                   "synthetic regimes); a policy adapts to a task from episodes of its first half "
                                   "and trades the second, net of a 5 bp cost a unit of turnover.")
    tsub = t.add_subparsers(dest="trade_command", required=True)
    tt = tsub.add_parser("train", parents=[common], help="train a policy on the training tasks")
    tt.add_argument("--algorithm", default="promp", choices=["promp", "maml", "fomaml", "pooled"],
                    help="promp (default), maml (second-order MAML-PG), fomaml, or pooled (no adaptation: the baseline)")
    tt.add_argument("--iterations", type=_int_in(1, 10**6), default=150, help="meta-training iterations (default 150)")
    tt.add_argument("--out", required=True, help="policy directory to write")
    tt.add_argument("--model", default=None, help="a variance model directory from `metarisk train`: its forecast "
                                                  "at each bar joins the observation")
    te = tsub.add_parser("evaluate", parents=[common], help="held-out tasks: policies against the baselines")
    te.add_argument("--policy", nargs="+", required=True, help="policy directories from `metarisk trade train`")
    te.add_argument("--pooled", required=True, help="a policy directory trained with --algorithm pooled")
    te.add_argument("--out", default="trade_report", help="report directory (default ./trade_report)")
    td = tsub.add_parser("demo", parents=[common], help="ProMP and MAML-PG against every baseline over seeds")
    td.add_argument("--seeds", type=_int_in(1, 100), default=5, help="training seeds (default 5)")
    td.add_argument("--iterations", type=_int_in(1, 10**6), default=150, help="meta-training iterations (default 150)")
    td.add_argument("--out", default="trade_report", help="report directory (default ./trade_report)")
    td.add_argument("--model", default=None, help="a variance model directory: its forecasts join the observations")
    t.set_defaults(func=cmd_trade)

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
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "stream" and args.prices is not None and args.out is None:
        parser.error("stream --prices needs --out (the CSV file to write)")
    from .data import DataError
    from .forecasting import ModelError

    try:
        _setup(args)
        return args.func(args)
    except (DataError, ModelError, ValueError, OSError, FloatingPointError) as exc:
        print(f"metarisk {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
