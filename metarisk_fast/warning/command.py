"""`metarisk warn`: early warning of market-wide stress from a price panel; one library call
(warning/jobs.py)."""
from __future__ import annotations

import argparse

from .._command import int_in, positive_float, price_file_options, progress_log


def cmd_warn(args):
    """Run `metarisk warn` from its parsed arguments; returns the exit status."""
    from ..data import price_source
    from .jobs import NAMES, warn

    summary = warn(price_source(args.prices, args.sep), args.out, drawdown=args.drawdown, horizon=args.horizon, model=args.model,
                   log=progress_log(args))
    for name, r in sorted(summary["scores"].items(), key=lambda kv: -kv[1]["auroc"]):
        print(f"{NAMES[name]:<45} AUROC {r['auroc']:.3f}  hit rate at 10 % false alarms "
              f"{r['hit_rate_at_10pct_false_alarms']:.3f}  false alarm episodes a year "
              f"{r['false_alarm_episodes_per_year']:.2f}")
    print(f"report written to {args.out}")
    return 0


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add `metarisk warn` to the subcommands ``sub``."""
    warn = sub.add_parser("warn", parents=[common, price_file_options()], help="early warning of market-wide stress from a price panel",
                          description="Early-warning scores (turbulence, absorption ratio, realised volatility, "
                                      "novelty) and their recursive combination, evaluated out of sample against "
                                      "stress events: a drawdown of the equal-weighted index or a volatility jump "
                                      "within the horizon.")
    warn.add_argument("--prices", default="default", help="price file or 'default' (the embedded panel)")
    warn.add_argument("--out", default="warning_report", help="report directory (default ./warning_report)")
    warn.add_argument("--drawdown", type=positive_float, default=15.0,
                      help="index drawdown in percent that marks stress (default 15)")
    warn.add_argument("--horizon", type=int_in(1, 1000), default=60, help="days ahead a warning looks (default 60)")
    warn.add_argument("--model", default=None,
                      help="a variance model directory from `metarisk train`: adds the jump of its forecasts across "
                           "assets as a score")
    warn.set_defaults(func=cmd_warn)
