"""`metarisk stream` as library calls: a price file replayed bar by bar through the RiskEngine
(``stream``: the forecast table, bit for bit), or a live feed of CSV lines (``stream_lines``: a
header ``date,ASSET1,...``, then one bar of closes per line, one line out per asset per bar)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .._files import atomic_write_text, check_output
from ..datasets import ignore, load_panel
from ..streaming import RiskEngine
from .jobs import Log, say

STREAM_COLUMNS = ("date", "asset", "forecast_variance", "var_1", "var_5", "es_2_5")
STRESS_COLUMNS = ("stress_score", "stress_alarm")  # with a market-wide monitor: its reading of the bar, 0/1 alarm


def _with_stress(frame: pd.DataFrame, snap) -> pd.DataFrame:
    if snap.stress is not None:
        frame[STRESS_COLUMNS[0]], frame[STRESS_COLUMNS[1]] = snap.stress.score, int(snap.stress.alarm)
    return frame


def stream(model, prices, out=None, *, start=None, history: int | None = None, readapt_every: int = 1,
           online_lr: float = 0.0, monitor=None, log: Log = None) -> pd.DataFrame:
    """Replay a price file bar by bar through a RiskEngine and return (and write to ``out``, a CSV
    file) ``forecast``'s table from ``start`` on; with ``readapt_every`` = 1 it equals
    ``forecast``'s bit for bit. ``monitor``: a function of the number of assets giving the
    engine's market-wide monitor (warning.StressScore); its reading adds STRESS_COLUMNS."""
    if out is not None:
        check_output(out, "file")
    panel = load_panel(prices, log or ignore)
    engine = RiskEngine.from_model(model, list(panel.assets), history=history, readapt_every=readapt_every,
                                   online_lr=online_lr, monitor=None if monitor is None else monitor(panel.n_assets))
    lo = 0 if start is None else panel.row_of(start)
    if lo >= panel.n_days:
        raise ValueError(f"--start {start} is after the last date of {panel.source} ({panel.dates[-1]})")
    ohlc = {k: getattr(panel, k) for k in ("open", "high", "low")} if panel.has_ohlc else {}
    frames = []
    say(log, f"replaying {panel.n_days} bars of {panel.n_assets} assets ({panel.source}) through the engine")
    t0 = time.perf_counter()
    for i in range(panel.n_days):
        snap = engine.update(panel.close[i], date=panel.dates[i], **{k: v[i] for k, v in ohlc.items()})
        if i >= lo and snap.ready.any():
            frames.append(_with_stress(snap.to_frame(), snap))
    if not frames:
        raise ValueError(f"{panel.source}: no bar from {panel.dates[lo]} on has enough history for a forecast "
                         f"(the engine needs {engine.bars_needed} bars of an asset)")
    frame = pd.concat(frames, ignore_index=True)
    say(log, f"streamed {panel.n_days} bars of {panel.n_assets} assets in {time.perf_counter() - t0:.2f} s")
    if out is not None:
        atomic_write_text(out, frame.to_csv(index=False))
    return frame


def stream_lines(model, lines, write: Callable[[str], None], *, history: int | None = None, readapt_every: int = 1,
                 online_lr: float = 0.0, warm_up=None, state=None, monitor=None,
                 log: Log = None) -> tuple[int, int]:
    """A live feed: ``lines`` are CSV text lines, a header ``date,ASSET1,ASSET2,...`` then one bar
    of closes per line (empty field: no price); for each bar ``write`` gets one line per asset with
    a forecast, in ``STREAM_COLUMNS`` (and STRESS_COLUMNS with a ``monitor``, as in ``stream``),
    after a header. ``warm_up``: a price file to start from; ``state``: an engine state file,
    continued if it exists and rewritten at the end of the feed. A bad line is reported to
    ``log`` (its line number, the date and the asset at fault) and skipped (the engine is
    unchanged). Returns (bars taken, lines skipped)."""
    lines = iter(lines)
    header = next(lines, "").strip()
    names = [h.strip() for h in header.split(",")]
    if len(names) < 2 or names[0].lower() != "date":
        raise ValueError(f"the feed's first line must be a header `date,ASSET1,...`, got {header[:80]!r}")
    assets = names[1:]
    kw = dict(history=history, readapt_every=readapt_every, online_lr=online_lr,
              monitor=None if monitor is None else monitor(len(assets)))
    if state is not None and Path(state).exists():
        engine = RiskEngine.load(state, model, **kw)
        if engine.assets != assets:
            raise ValueError(f"{state}: holds assets {engine.assets}, the feed's header names {assets}")
    else:
        engine = RiskEngine.from_model(model, assets, **kw)
    if warm_up is not None:
        engine.warm_up(load_panel(warm_up, log or ignore))
    write(",".join(STREAM_COLUMNS + (STRESS_COLUMNS if monitor is not None else ())) + "\n")
    taken = skipped = 0
    for number, line in enumerate(lines, start=2):
        line = line.strip()
        if not line:
            continue
        fields = line.split(",")
        try:
            if len(fields) != len(names):
                raise ValueError(f"{len(fields)} fields, the header has {len(names)}")
            bar = np.array([float(f) if f.strip() else np.nan for f in fields[1:]])
            snap = engine.update(bar, date=fields[0].strip())
        except ValueError as exc:
            say(log, f"line {number}: {exc} (bar skipped)")
            skipped += 1
            continue
        taken += 1
        rows = np.flatnonzero(snap.ready)
        stress = "" if snap.stress is None else f",{snap.stress.score!r},{int(snap.stress.alarm)}"
        write("".join(f"{snap.date},{snap.assets[j]},{float(snap.variance[j])!r},{float(snap.var_1[j])!r},"
                      f"{float(snap.var_5[j])!r},{float(snap.es_2_5[j])!r}{stress}\n" for j in rows))
    if state is not None:
        engine.save(state)
    return taken, skipped
