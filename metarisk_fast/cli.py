"""The `metarisk` command: assembles the applications' subcommands (each application's
command.py adds its own) and runs the one the arguments name."""
from __future__ import annotations

import argparse
import importlib
import sys

from ._command import common_options, setup

# in the order `metarisk --help` lists them: the core application's verbs first
APPLICATIONS = ("volatility", "warning", "credit", "trading")


def parser() -> argparse.ArgumentParser:
    """The `metarisk` argument parser with every application's subcommands."""
    p = argparse.ArgumentParser(prog="metarisk", description="Meta-learned risk: forecast variance, VaR and ES; "
                                "early warning; credit scoring; trading-strategy adaptation.")
    sub = p.add_subparsers(dest="command", required=True)
    common = common_options()
    for app in APPLICATIONS:
        importlib.import_module(f".{app}.command", __package__).add_commands(sub, common)
    return p


def main(argv=None) -> int:
    """Run `metarisk` with ``argv`` (default: the command line); returns the exit status (2 on a
    data, model or argument error, or a failed process of --nproc, printed as one line)."""
    p = parser()
    args = p.parse_args(argv)
    if hasattr(args, "check"):  # a subcommand's checks across options, before any work
        args.check(p, args)
    from .data import DataError
    from .forecasting import ModelError
    from .forecasting.distributed import ProcessFailed

    try:
        setup(args)
        return args.func(args)
    except (DataError, ModelError, ProcessFailed, ValueError, OSError, FloatingPointError) as exc:
        print(f"metarisk {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # files are written atomically: nothing half-written is left
        print(f"metarisk {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
