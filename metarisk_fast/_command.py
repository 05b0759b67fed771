"""What every application's command module shares: argparse types that check a value and name
the option in argparse's message, the options every subcommand takes (--seed, --threads,
--quiet), the set-up they ask for and the progress log."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ._checks import check_separator


def int_in(lo: int, hi: int | None = None):
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


def _number(allow_zero: bool):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (np.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
            raise argparse.ArgumentTypeError(f"{v} is not a finite number {'>=' if allow_zero else '>'} 0")
        return v
    parse.__name__ = "number"
    return parse


positive_float = _number(allow_zero=False)
nonnegative_float = _number(allow_zero=True)


def date(text):
    """argparse type: a calendar date, YYYY-MM-DD."""
    try:
        return str(np.datetime64(text, "D"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def common_options() -> argparse.ArgumentParser:
    """The parent parser of every subcommand: --seed, --threads, --quiet."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int_in(0), default=0, help="random seed (default 0)")
    common.add_argument("--threads", type=int_in(1, 1024), default=None, help="threads for the core, torch and numba")
    common.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    return common


def separator(text: str) -> str:
    """--sep: one character ('\\t' for a tab)."""
    try:
        return check_separator("\t" if text in ("\\t", "tab") else text, "--sep")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def price_file_options() -> argparse.ArgumentParser:
    """The parent parser of every subcommand that reads a price file: --sep."""
    prices = argparse.ArgumentParser(add_help=False)
    prices.add_argument("--sep", type=separator, default=",",
                        help="field separator of a CSV price file (default ','; e.g. ';' as spreadsheets of "
                             "decimal-comma locales write)")
    return prices


def setup(args) -> None:
    """Threads and seeds as the common options ask."""
    import numba
    import torch

    import metarisk_fast as mr

    if args.threads is not None:
        mr.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)


def progress_log(args):
    """One-line progress messages to standard error, or None with --quiet."""
    return None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
