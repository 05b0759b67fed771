"""`metarisk warn`: the early-warning scores of a price panel, the recursive combined score and
its alarms, evaluated out of sample against the stress events; writes scores.csv, the report and
a plot."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._checks import check_int
from .._files import atomic_write_bytes, atomic_write_text, check_output
from ..data import DataError, PricePanel, data_report
from ..datasets import ignore, load_panel
from ..report import png_bytes, pyplot
from .evaluate import EPISODE_GAP, MEMORY_SCORE, MODEL_SCORE, SCORES, alarms, combined_score, evaluate_score
from .model import WarningModel
from .signals import (episodes, forecast_jump, index_level, novelty, realised_vol, stress_labels,
                      turbulence_and_absorption)


def saved_model(model):
    """A variance model directory read once (forecasting.SavedModelForecasts), or the one given."""
    from ..forecasting import SavedModelForecasts

    return model if isinstance(model, SavedModelForecasts) else SavedModelForecasts(model)


def model_scores(model, panel: PricePanel) -> dict[str, np.ndarray]:
    """A trained variance model's scores of every day, from `metarisk forecast`'s numbers (each
    forecast at t from data up to t): the jump of its forecasts across assets and, for a memory
    learner, its novelty (each asset's day against what its memory holds) averaged over assets.
    ``model``: a model directory or a SavedModelForecasts."""
    saved = saved_model(model)
    variance, nov = saved.every_day(panel, novelty=saved.has_novelty)
    out = {MODEL_SCORE: forecast_jump(variance)}
    if nov is not None:
        ok = np.isfinite(nov)
        out[MEMORY_SCORE] = np.where(ok.any(axis=1), np.where(ok, nov, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1),
                                     np.nan)
    seen = in_training(saved.meta, panel)
    return {name: np.where(seen, np.nan, values) for name, values in out.items()}


def in_training(meta: dict, panel: PricePanel) -> np.ndarray:
    """(days,) True where a variance model's scores would be in-sample: days up to its training
    end and the horizon after it (their targets trained it). Those days get no model score, so the
    evaluation and the combination see only what the model never trained on."""
    end = meta.get("train_end")
    if not end:
        return np.zeros(panel.n_days, dtype=bool)
    last = panel.row_of(np.datetime64(end, "D"), "right") - 1 + meta["task_spec"]["horizon"]
    return np.arange(panel.n_days) <= last


def score_names(frame: pd.DataFrame) -> list[str]:
    """The score columns present in ``frame``, in the report's order."""
    return [c for c in (*SCORES, MODEL_SCORE, MEMORY_SCORE) if c in frame.columns]


WINDOW, MEMORY = 250, 500  # days of the covariance scores' window and of the novelty's memory


def warning_scores(panel: PricePanel, *, drawdown: float = 0.15, horizon: int = 60, window: int = WINDOW,
                   memory: int = MEMORY, model=None) -> pd.DataFrame:
    """One row per day: the index, the stress label (NaN while unknown), each single score (with
    ``model``, a trained variance model's directory or a SavedModelForecasts, also its forecast
    jump, and a memory learner's novelty), the combined score and its alarm; every score at t from
    prices up to t."""
    if panel.n_assets < 2:
        raise DataError(f"{panel.source}: {panel.n_assets} asset(s); the cross-sectional scores need two or more")
    needed = window + 252 + horizon + 750
    if panel.n_days < needed:
        raise DataError(f"{panel.source}: {panel.n_days} days; the recursive evaluation needs at least {needed} "
                        f"(a {window}-day covariance, a year of history per score, {horizon} days for a label, "
                        "750 labelled days before the first combined fit)")
    index, logret = index_level(panel.close)
    y = stress_labels(index, drawdown, horizon)
    turb, absorb = turbulence_and_absorption(logret, window)
    columns = [turb, absorb, realised_vol(index), novelty(logret, memory)]
    names = list(SCORES)
    if model is not None:
        for name, values in model_scores(model, panel).items():
            columns.append(values)
            names.append(name)
    singles = np.column_stack(columns)
    comb = combined_score(singles, y, horizon)
    frame = pd.DataFrame(singles, columns=names)
    frame.insert(0, "date", panel.dates)
    frame.insert(1, "index", index)
    frame.insert(2, "label", y)
    frame["score"] = comb
    frame["alarm"] = alarms(comb, y, horizon)
    return frame


def warn(prices="default", out="warning_report", *, drawdown: float = 15.0, horizon: int = 60, model=None,
         log=None) -> dict:
    """``warning_scores`` of a price file / DataFrame / 'default', evaluated out of sample from
    the first day the combined score exists; writes ``out``/scores.csv (date, score, alarm),
    report.md, report.json, warning.png and warning.json (the combination fitted on every known
    label, for a live StressScore or RiskEngine). ``drawdown`` in percent."""
    check_output(out, "dir")
    if not (isinstance(drawdown, (int, float)) and 0 < drawdown < 100):
        raise ValueError(f"--drawdown must be a percentage in (0, 100), got {drawdown!r}")
    check_int("--horizon", horizon, 1, 1000, note=" days")
    t0 = time.perf_counter()
    if log:
        log(f"early-warning scores of {prices if isinstance(prices, str) else 'the prices'}"
            + (f" with the variance model {model}" if model is not None else ""))
    panel = load_panel(prices, log or ignore)
    saved = None if model is None else saved_model(model)
    frame = warning_scores(panel, drawdown=drawdown / 100, horizon=horizon, window=WINDOW, memory=MEMORY, model=saved)
    y = frame.label.to_numpy()
    names = score_names(frame)
    single = frame[names].to_numpy()
    comb = frame.score.to_numpy()
    rows = np.flatnonzero(np.isfinite(comb) & np.isfinite(y) & np.isfinite(single).all(axis=1))
    if len(rows) == 0 or len(np.unique(y[rows])) < 2:
        raise DataError(f"{panel.source}: no evaluable day with both stress and calm labels after the burn-in")
    results = {name: evaluate_score(frame[name].to_numpy(), y, rows, horizon) for name in (*names, "score")}
    eps = [(str(panel.dates[rows[a]]), str(panel.dates[rows[b]]), lead) for (a, b), lead in
           zip(episodes(y[rows], EPISODE_GAP), results["score"]["lead_times"])]
    elapsed = time.perf_counter() - t0
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    live = WarningModel.fit(frame, names, horizon=horizon, drawdown=drawdown / 100, window=WINDOW, memory=MEMORY,
                            assets=panel.assets, model_sha256=None if saved is None else saved.meta["weights_sha256"])
    live.save(out_dir / "warning.json")
    atomic_write_text(out_dir / "scores.csv", frame[["date", "score", "alarm"]].to_csv(index=False))
    summary = {"prices": panel.source, "model": None if model is None else str(model), "drawdown": drawdown,
               "horizon": horizon,
               "evaluated": [str(panel.dates[rows[0]]), str(panel.dates[rows[-1]])], "days": int(len(rows)),
               "labelled_share": float(y[rows].mean()), "scores": results, "episodes": eps, "seconds": round(elapsed, 1),
               "live_model": {"file": "warning.json", "fitted_through": live.fitted_through,
                              "threshold": live.threshold},
               "data_quality": data_report(panel)}
    atomic_write_text(out_dir / "report.json", json.dumps(summary, indent=1))
    atomic_write_text(out_dir / "report.md", _markdown(summary))
    atomic_write_bytes(out_dir / "warning.png", _plot(frame, rows, live.threshold))
    if log:
        log(f"report written to {out} ({elapsed:.0f} s)")
    return summary


NAMES = {"turbulence": "turbulence (Kritzman-Li)", "absorption_shift": "absorption ratio shift (Kritzman et al.)",
         "vol_level": "realised volatility level", "novelty": "novelty (distance to the nearest older volatility state)",
         MODEL_SCORE: "variance-model forecast jump across assets",
         MEMORY_SCORE: "memory learner's novelty (key distance to its memory), mean over assets",
         "score": "combined (recursive)"}


def _markdown(s: dict) -> str:
    lines = ["# metarisk early warning\n",
             f"Prices `{s['prices']}`. A day is labelled when the equal-weighted index falls {s['drawdown']:g} % or "
             f"more below that day's level within the next {s['horizon']} days, or its 21-day realised volatility "
             "jumps within them into the top decile of its own past. Every score at day t uses prices up to t; the "
             f"combined score is refitted every 21 days on labels already known (t - {s['horizon']}). Evaluated "
             f"out of sample {s['evaluated'][0]} to {s['evaluated'][1]} ({s['days']} days, "
             f"{100 * s['labelled_share']:.0f} % labelled). Run time {s['seconds']:.0f} s."
             + (f" Variance model `{s['model']}`: its forecasts' jump (and, for a memory learner, its novelty) "
                "are scores too." if s["model"] else "")
             + "\n",
             "| score | AUROC | hit rate at 10 % false alarms | alarm days: hit / false rate | false alarm "
             "episodes a year |", "| --- | --- | --- | --- | --- |"]
    for name, r in sorted(s["scores"].items(), key=lambda kv: -kv[1]["auroc"]):
        lines.append(f"| {NAMES[name]} | {r['auroc']:.3f} | {r['hit_rate_at_10pct_false_alarms']:.3f} | "
                     f"{r['alarm_hit_rate']:.3f} / {r['alarm_false_rate']:.3f} | "
                     f"{r['false_alarm_episodes_per_year']:.2f} |")
    lines += ["\nAn alarm: the score above the 90th percentile of its values on past days known to be calm "
              "(a 10 % false-alarm rate, recalibrated as labels come in). Episodes (labelled runs fewer "
              f"than {EPISODE_GAP} days apart merged) and the combined score's lead time (days from its first alarm, "
              f"up to {s['horizon']} days before, to the episode's first day; negative: after it started; none: no "
              "alarm):\n", "| first day | last day | lead time |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {'none' if lead is None else lead} |" for a, b, lead in s["episodes"]]
    quality = {k: len(v) for k, v in s["data_quality"].items() if v}
    if quality:
        lines += ["\nData quality (listed in report.json, `data_quality`): "
                  + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in quality.items()) + "."]
    live = s["live_model"]
    lines += [f"\nFor live use, `{live['file']}` holds the combination fitted on every label known at the end "
              f"(through {live['fitted_through']}) and its alarm threshold {live['threshold']:.3f}: "
              "`StressScore.load(DIR, n_assets)`, or `RiskEngine.from_model(..., monitor=...)` to carry it "
              "in the engine's bars."]
    return "\n".join(lines) + "\n"


def _plot(frame: pd.DataFrame, rows: np.ndarray, threshold: float) -> bytes:
    plt = pyplot()
    dates = pd.to_datetime(frame.date)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    a1.plot(dates, frame["index"], lw=0.8, color="black")
    a1.set_yscale("log")
    a1.set_ylabel("equal-weighted index (log scale)")
    a1.set_title("Early warning: stress episodes (shaded), the combined score and its alarms")
    for i, (a, b) in enumerate(episodes(frame.label.to_numpy())):
        for ax in (a1, a2):
            ax.axvspan(dates[a], dates[b], color="tab:red", alpha=0.15, lw=0, label="stress ahead" if i == 0 else None)
    a2.plot(dates, frame.score, lw=0.7, label="combined score")
    on = frame.alarm.to_numpy()
    a2.scatter(dates[on], frame.score[on], s=3, color="tab:orange", label="alarm")
    a2.axhline(threshold, color="tab:orange", ls="--", lw=0.8, label=f"live alarm threshold {threshold:.3f}")
    a2.axvline(dates[rows[0]], color="grey", ls=":", lw=1, label="evaluation starts")
    a2.set_ylabel("P(stress within the horizon)")
    a1.legend(fontsize=8, loc="upper left")
    a2.legend(fontsize=8, loc="upper left")
    return png_bytes(fig)
