"""`metarisk credit train | score | evaluate | demo`: credit scoring that adapts to a new segment
from a few labelled loans; one library call each (credit/jobs.py)."""
from __future__ import annotations

import argparse

from .._command import int_in, positive_float, progress_log


def _training(args):
    from .learn import CreditTraining

    return CreditTraining(learner=getattr(args, "learner", "maml"), hidden=tuple(args.hidden), steps=args.steps,
                          inner_lr=args.inner_lr, inner_steps=args.inner_steps, seed=args.seed)


def cmd_credit(args):
    """Run one `metarisk credit` subcommand from its parsed arguments; returns the exit status."""
    from . import jobs as credit

    log = progress_log(args)
    if args.credit_command == "train":
        meta = credit.train(args.data, args.out, target=args.target, segment=args.segment, training=_training(args),
                            log=log)
        print(f"saved {meta['training']['learner']} credit model to {args.out} ({meta['loans']} loans, "
              f"{len(meta['segments'])} segments)")
        return 0
    if args.credit_command == "score":
        frame = credit.score(args.model, args.support, args.data, args.out)
        print(f"wrote {len(frame)} scores with their reasons to {args.out}")
        return 0
    if args.credit_command == "demo":
        summary = credit.demo(args.out, draws=args.draws, seed=args.seed, log=log)
    else:
        summary = credit.evaluate(args.data, args.out, target=args.target, segment=args.segment, ks=args.k,
                                  draws=args.draws, learners=args.learners, training=_training(args), seed=args.seed,
                                  log=log)
    for k, s in summary.items():
        lo, hi = s["auc_difference_ci"]
        print(f"K = {k}: best meta-learner {s['best_meta_learner']} AUC "
              f"{s['methods'][s['best_meta_learner']]['auc']:.3f}, best baseline {s['best_baseline']} "
              f"{s['methods'][s['best_baseline']]['auc']:.3f}; difference {s['auc_difference']:+.4f} "
              f"[{lo:+.4f}, {hi:+.4f}], p = {s['paired_t_pvalue']:.3g}")
    print(f"report written to {args.out}")
    return 0


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add `metarisk credit train | evaluate | score | demo` to the subcommands ``sub``."""
    from .learn import CREDIT_LEARNERS

    credit = sub.add_parser("credit", help="credit scoring that adapts to a new segment from a few labelled loans",
                            description="Credit assessment on the same engine: a segment (by default the loan purpose) "
                                        "is a task; meta-learners adapt to a new segment from K labelled loans.")
    verbs = credit.add_subparsers(dest="credit_command", required=True)
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", default="default",
                      help="loans: CSV or Parquet with a target and a segment column, or 'default' (the embedded "
                           "German credit data)")
    data.add_argument("--target", default="creditability",
                      help="target column: 1 / bad / default marks a default (default creditability)")
    data.add_argument("--segment", default="purpose", help="segment column (default purpose)")
    training = argparse.ArgumentParser(add_help=False)
    training.add_argument("--steps", type=int_in(1, 10**6), default=300, help="meta-training steps (default 300)")
    training.add_argument("--hidden", type=int_in(1, 4096), nargs="*", default=[],
                          help="hidden layer sizes (default none: a meta-learned logistic regression)")
    training.add_argument("--inner-lr", type=positive_float, default=0.1, help="inner learning rate (default 0.1)")
    training.add_argument("--inner-steps", type=int_in(1, 100), default=5, help="inner steps (default 5)")
    train = verbs.add_parser("train", parents=[common, data, training], help="meta-train on every segment")
    train.add_argument("--learner", default="maml", choices=CREDIT_LEARNERS, help="default maml")
    train.add_argument("--out", required=True, help="model directory to write")
    score = verbs.add_parser("score", parents=[common], help="adapt to a new segment's labelled loans and score loans")
    score.add_argument("--model", required=True, help="model directory from `metarisk credit train`")
    score.add_argument("--support", required=True, help="labelled loans of the new segment (with the target column)")
    score.add_argument("--data", required=True, help="loans to score")
    score.add_argument("--out", required=True, help="CSV to write: row, score (default probability), reason_1..3")
    evaluate = verbs.add_parser("evaluate", parents=[common, data, training],
                                help="leave-one-segment-out evaluation against the baselines")
    evaluate.add_argument("--k", type=int_in(2, 10**5), nargs="+", default=[10, 25, 50],
                          help="labelled loans of the held-out segment (default 10 25 50)")
    evaluate.add_argument("--draws", type=int_in(2, 10_000), default=20, help="K-shot draws per segment (default 20)")
    evaluate.add_argument("--learners", nargs="+", default=list(CREDIT_LEARNERS), choices=CREDIT_LEARNERS,
                          metavar="LEARNER", help=f"from {', '.join(CREDIT_LEARNERS)} (default: all)")
    evaluate.add_argument("--out", default="credit_report", help="report directory (default ./credit_report)")
    demo = verbs.add_parser("demo", parents=[common], help="the evaluation on the embedded German credit data")
    demo.add_argument("--draws", type=int_in(2, 10_000), default=20, help="K-shot draws per segment (default 20)")
    demo.add_argument("--out", default="credit_demo", help="report directory (default ./credit_demo)")
    credit.set_defaults(func=cmd_credit)
