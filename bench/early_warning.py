"""Early warning on every definition of stress: the robustness grid and the choice of the
combined score's ingredients.

    python bench/early_warning.py --out bench/early_warning

Three panels drawn from the embedded data (all 20 stocks; the 5 stocks the forecasting benchmarks
hold out; the other 15) x two indices whose drawdowns mark stress (equal-weighted; the first
principal portfolio) x the grid of `metarisk warn`'s report (drawdown 10 / 15 / 20 / 25 %,
horizon 20 / 60 / 120 days, drawdown alone or drawdown or volatility jump). Validation: the
evaluated days up to `metarisk warn`'s default validation end; test: the days after it.

- choice: which scores join the index's 21-day realised volatility in the combined score, on
  validation only: greedily, the candidate whose addition raises the combined score's AUROC
  (the mean own-past percentile) on the largest share of definitions, kept if that share is at
  least RULE_SHARE in every panel and index (a rule across definitions: chosen on one
  definition, the pick overfits).
- grid: validation and test AUROC of every single score and of the combined score
  (evaluate.INGREDIENTS), the test difference to the realised volatility with its block-bootstrap
  interval, the share of test episodes alarmed ahead.
Writes grid.json, tables.md and machine.txt under --out; bench/EARLY_WARNING.md quotes them.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import cpu_model
from metarisk_fast import datasets
from metarisk_fast.report.render import markdown_table
from metarisk_fast.tasks import asset_split
from metarisk_fast.warning.evaluate import INGREDIENTS, SCORES
from metarisk_fast.warning.jobs import (INDICES, robustness_grid, score_names, validation_end_row, warning_scores,
                                        with_combination)

RULE_SHARE = 0.75
BASELINE = "vol_level"


def panels() -> dict:
    full = datasets.load_sp500_20(warn_data=False)
    train, held_out = asset_split(full.assets, 5, seed=0)  # the forecasting benchmarks' split
    return {"all 20": full, "held-out 5": full.select(assets=held_out), "other 15": full.select(assets=train)}


def validation_aurocs(frame, end, names, combo) -> list:
    """Validation AUROC of the mean-percentile combination of ``combo`` on each grid definition
    (None where validation holds one class only)."""
    grid = robustness_grid(with_combination(frame, combo, 20), end, names, draws=0)
    return [g["validation"]["score"] for g in grid]


def choose(frames: dict, end: int) -> tuple[list[str], list[dict]]:
    chosen, log = [BASELINE], []
    candidates = [n for n in SCORES if n != BASELINE]
    while candidates:
        current = {k: validation_aurocs(f, end, names, chosen) for k, (f, names) in frames.items()}
        shares = {}
        for c in candidates:
            shares[c] = {}
            for k, (f, names) in frames.items():
                new = validation_aurocs(f, end, names, (*chosen, c))
                pairs = [(a, b) for a, b in zip(new, current[k]) if a is not None and b is not None]
                shares[c][k] = float(np.mean([a > b for a, b in pairs]))
        best = max(candidates, key=lambda c: min(shares[c].values()))
        log.append({"chosen_so_far": list(chosen), "shares": shares, "best": best})
        if min(shares[best].values()) < RULE_SHARE:
            break
        chosen.append(best)
        candidates.remove(best)
    return chosen, log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/early_warning")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames, end = {}, None
    for pname, panel in panels().items():
        for index in INDICES:
            frame = warning_scores(panel, index=index, ingredients=INGREDIENTS)
            names = score_names(frame)
            if end is None:  # `metarisk warn`'s default validation end on the full panel, for every panel
                rows = np.flatnonzero(np.isfinite(frame[names].to_numpy()).all(axis=1) & np.isfinite(frame.label))
                end = validation_end_row(panel.dates, rows)
                dates = panel.dates
            frames[f"{pname}, {index}"] = (frame, names)
    chosen, log = choose(frames, end)
    grids = {k: robustness_grid(f, end, names) for k, (f, names) in frames.items()}
    (out / "grid.json").write_text(json.dumps({"validation_end": str(dates[end]), "ingredients_rule": chosen,
                                               "shipped_ingredients": list(INGREDIENTS), "rule_log": log,
                                               "grids": grids}, indent=1))
    (out / "tables.md").write_text(render(grids, chosen, log, str(dates[end])))
    (out / "machine.txt").write_text(f"{cpu_model()}; {platform.python_version()}; {time.perf_counter() - t0:.0f} s\n")
    print((out / "tables.md").read_text())


def _f(x, fmt="{:.3f}") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else fmt.format(x)


def render(grids: dict, chosen: list, log: list, end: str) -> str:
    parts = [f"Validation: evaluated days up to {end}; test: after it. Combined score: the mean own-past "
             f"percentile of {', '.join(INGREDIENTS)} (the rule below picks {', '.join(chosen)}).\n"]
    for step in log:
        t = pd.DataFrame(step["shares"]).T
        parts.append(f"### Choice on validation, after {', '.join(step['chosen_so_far'])}: share of definitions "
                     f"where adding the score raises AUROC (kept if >= {RULE_SHARE:g} in every column)\n\n"
                     + markdown_table(t, list(t.columns), first="candidate") + "\n")
    rows = []
    for k, grid in grids.items():
        test = [g["test"] for g in grid if g["test"].get("difference")]
        d = np.array([t["difference"]["difference"] for t in test])
        ahead = [(t["episodes_alarmed_ahead_score"] * t["episodes"], t[f"episodes_alarmed_ahead_{BASELINE}"]
                  * t["episodes"], t["episodes"]) for t in test]
        a = np.array(ahead).sum(axis=0)
        singles = {n: np.nanmean([np.nan if t.get(n) is None else t[n] for t in test]) for n in (*SCORES, "score")}
        rows.append({"group": k, "definitions": len(test), "combined >= volatility": int((d >= 0).sum()),
                     "interval > 0": sum(t["difference"]["low"] > 0 for t in test),
                     "interval < 0": sum(t["difference"]["high"] < 0 for t in test),
                     "mean difference": d.mean(), "worst": d.min(),
                     "episodes alarmed ahead: combined / volatility": f"{a[0]:.0f} / {a[1]:.0f} of {a[2]:.0f}",
                     **{f"mean AUROC {n}": v for n, v in singles.items()}})
    parts.append("### Test: the combined score against the index's 21-day realised volatility, over the grid\n\n"
                 + markdown_table(pd.DataFrame(rows).set_index("group"), list(rows[0])[1:], first="panel, index")
                 + "\n")
    for k, grid in grids.items():
        lines = [f"### {k}\n", "| events | drawdown | horizon | validation: combined / volatility | test: combined / "
                 "volatility | test difference [95 %] | test episodes alarmed ahead: combined / volatility |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for g in grid:
            v, t = g["validation"], g["test"]
            diff = t.get("difference")
            lines.append(f"| {g['events']} | {100 * g['drawdown']:g} % | {g['horizon']} | {_f(v['score'])} / "
                         f"{_f(v[BASELINE])} | {_f(t['score'])} / {_f(t[BASELINE])} | "
                         + ("-" if diff is None else
                            f"{diff['difference']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]") + " | "
                         + ("-" if diff is None else
                            f"{t['episodes_alarmed_ahead_score'] * t['episodes']:.0f} / "
                            f"{t[f'episodes_alarmed_ahead_{BASELINE}'] * t['episodes']:.0f} of {t['episodes']}") + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    main()
