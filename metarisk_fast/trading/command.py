"""`metarisk trade train | evaluate | demo`: trading-strategy adaptation by meta-reinforcement
learning; one library call each (trading/jobs.py)."""
from __future__ import annotations

import argparse

from .._command import int_in, progress_log


def cmd_trade(args):
    """Run one `metarisk trade` subcommand from its parsed arguments; returns the exit status."""
    from . import jobs as trade
    from .train import PolicyTraining

    log = progress_log(args)
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


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add `metarisk trade train | evaluate | demo` to the subcommands ``sub``."""
    trade = sub.add_parser("trade", help="trading-strategy adaptation by meta-reinforcement learning (ProMP, MAML-PG)",
                           description="Trading tasks (252-bar blocks of one asset: the embedded panel's stocks and "
                                       "the synthetic regimes); a policy adapts to a task from episodes of its first "
                                       "half and trades the second, net of a 5 bp cost a unit of turnover.")
    verbs = trade.add_subparsers(dest="trade_command", required=True)
    train = verbs.add_parser("train", parents=[common], help="train a policy on the training tasks")
    train.add_argument("--algorithm", default="promp", choices=["promp", "maml", "fomaml", "pooled"],
                       help="promp (default), maml (second-order MAML-PG), fomaml, or pooled (no adaptation: the "
                            "baseline)")
    train.add_argument("--iterations", type=int_in(1, 10**6), default=150,
                       help="meta-training iterations (default 150)")
    train.add_argument("--out", required=True, help="policy directory to write")
    train.add_argument("--model", default=None, help="a variance model directory from `metarisk train`: its "
                                                     "forecast at each bar joins the observation")
    evaluate = verbs.add_parser("evaluate", parents=[common], help="held-out tasks: policies against the baselines")
    evaluate.add_argument("--policy", nargs="+", required=True, help="policy directories from `metarisk trade train`")
    evaluate.add_argument("--pooled", required=True, help="a policy directory trained with --algorithm pooled")
    evaluate.add_argument("--out", default="trade_report", help="report directory (default ./trade_report)")
    demo = verbs.add_parser("demo", parents=[common], help="ProMP and MAML-PG against every baseline over seeds")
    demo.add_argument("--seeds", type=int_in(1, 100), default=5, help="training seeds (default 5)")
    demo.add_argument("--iterations", type=int_in(1, 10**6), default=150,
                      help="meta-training iterations (default 150)")
    demo.add_argument("--out", default="trade_report", help="report directory (default ./trade_report)")
    demo.add_argument("--model", default=None, help="a variance model directory: its forecasts join the observations")
    trade.set_defaults(func=cmd_trade)
