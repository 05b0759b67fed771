"""`metarisk warn`: early warning of market-wide stress from a price panel; one library call
(warning/jobs.py)."""
from __future__ import annotations

import argparse

from .._command import date, int_in, positive_float, price_file_options, progress_log
from .evaluate import INGREDIENTS, MEMORY_SCORE, MODEL_SCORE, SCORES
from .signals import EVENTS


def score_list(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated score names, each known."""
    known = (*SCORES, MODEL_SCORE, MEMORY_SCORE)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown score(s) {bad or [text]}: choose from {', '.join(known)}")
    return names


def cmd_warn(args):
    """Run `metarisk warn` from its parsed arguments; returns the exit status."""
    from ..data import price_source
    from .jobs import NAMES, warn

    summary = warn(price_source(args.prices, args.sep), args.out, drawdown=args.drawdown, horizon=args.horizon,
                   events=args.events, validation_end=args.validation_end, ingredients=args.ingredients,
                   model=args.model, log=progress_log(args))
    print(f"test period {summary['test'][0]} to {summary['test'][1]}; combined score: the mean own-past percentile of "
          f"{', '.join(summary['ingredients']['chosen'])} (chosen on validation up to {summary['validation'][1]})")
    for name, r in sorted(summary["scores"]["test"].items(), key=lambda kv: -kv[1]["auroc"]):
        print(f"{NAMES[name]:<45} AUROC {r['auroc']:.3f}  hit rate at 10 % false alarms "
              f"{r['hit_rate_at_10pct_false_alarms']:.3f}  false alarm episodes a year "
              f"{r['false_alarm_episodes_per_year']:.2f}")
    print(f"report written to {args.out}")
    return 0


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add `metarisk warn` to the subcommands ``sub``."""
    warn = sub.add_parser("warn", parents=[common, price_file_options()], help="early warning of market-wide stress from a price panel",
                          description="Early-warning scores (turbulence, absorption ratio, the index's realised "
                                      "and EWMA volatility, novelty) and their combination (the mean of their "
                                      "percentiles within their own past), evaluated on a validation period and the "
                                      "test period after it against stress events (a drawdown of the equal-weighted "
                                      "index, or also a volatility jump, within the horizon) and on a grid of other "
                                      "event definitions.")
    warn.add_argument("--prices", default="default", help="price file or 'default' (the embedded panel)")
    warn.add_argument("--out", default="warning_report", help="report directory (default ./warning_report)")
    warn.add_argument("--drawdown", type=positive_float, default=15.0,
                      help="index drawdown in percent that marks stress (default 15)")
    warn.add_argument("--horizon", type=int_in(1, 1000), default=60, help="days ahead a warning looks (default 60)")
    warn.add_argument("--events", choices=EVENTS, default=EVENTS[0],
                      help="what marks stress: drawdown_or_vol (default: the drawdown, or the index's 21-day realised "
                           "volatility jumping into the top decile of its past) or drawdown alone")
    warn.add_argument("--validation-end", type=date, default=None,
                      help="last day of the validation period, which chooses the combination (default: the year end "
                           "after 40 %% of the evaluated days); the report's test period starts after it")
    warn.add_argument("--ingredients", type=score_list, default=None,
                      help=f"comma-separated scores the combined score averages (default {','.join(INGREDIENTS)}; "
                           f"from {','.join((*SCORES, MODEL_SCORE, MEMORY_SCORE))}; the last two need --model)")
    warn.add_argument("--model", default=None,
                      help="a variance model directory from `metarisk train`: adds the jump of its forecasts across "
                           "assets as a score")
    warn.set_defaults(func=cmd_warn)
