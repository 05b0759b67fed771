"""`metarisk warn`: the early-warning scores of a price panel, the combined score and its alarms,
evaluated on a validation period and the test period after it against the stress events and on
a grid of other event definitions; writes scores.csv, the report, a plot and the live model."""
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
from .evaluate import (EPISODE_GAP, INGREDIENTS, MEMORY_SCORE, MODEL_SCORE, SCORES, VALIDATION_SHARE, alarms, auroc,
                       auroc_difference, choose_ingredients, combined_score, evaluate_score)
from .model import WarningModel
from .signals import (EVENTS, episodes, forecast_jump, index_level, index_scores, novelty, principal_index,
                      stress_labels, turbulence_and_absorption)


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
GRID_DRAWDOWNS = (0.10, 0.15, 0.20, 0.25)  # the robustness grid of event definitions in the report
GRID_HORIZONS = (20, 60, 120)
BOOTSTRAP_DRAWS = 1000


INDICES = ("equal", "principal")  # the index whose drawdowns mark stress: equal-weighted, first principal portfolio


def warning_scores(panel: PricePanel, *, drawdown: float = 0.15, horizon: int = 60, events: str = EVENTS[0],
                   window: int = WINDOW, memory: int = MEMORY, model=None, ingredients=INGREDIENTS,
                   index: str = INDICES[0]) -> pd.DataFrame:
    """One row per day: the index (``index``: the equal-weighted one, which `metarisk warn` and
    the live StressScore follow, or the first principal portfolio's, signals.principal_index),
    the stress label (``events``; NaN while unknown), each single score (with ``model``, a
    trained variance model's directory or a SavedModelForecasts, also its forecast jump, and a
    memory learner's novelty), the combined score of ``ingredients`` and its alarm; every score
    at t from prices up to t."""
    if panel.n_assets < 2:
        raise DataError(f"{panel.source}: {panel.n_assets} asset(s); the cross-sectional scores need two or more")
    needed = 252 + memory + horizon + 250
    if panel.n_days < needed:
        raise DataError(f"{panel.source}: {panel.n_days} days; the evaluation needs at least {needed} (a year and "
                        f"{memory} days of volatility states before the novelty exists, {horizon} days for a label, "
                        "a year of evaluated days)")
    if index not in INDICES:
        raise ValueError(f"index must be one of {', '.join(INDICES)}, got {index!r}")
    level, logret = index_level(panel.close)
    if index == "principal":
        level = principal_index(panel.close)
    turb, absorb = turbulence_and_absorption(logret, window)
    columns = {"turbulence": turb, "absorption_shift": absorb, **index_scores(level), "novelty": novelty(logret, memory)}
    if model is not None:
        columns.update(model_scores(model, panel))
    missing = [n for n in ingredients if n not in columns]
    if missing:
        raise ValueError(f"ingredients {missing} are not scores of this run (scores: {', '.join(columns)}"
                         + ("; forecast_jump and memory_novelty need --model" if model is None else "") + ")")
    frame = pd.DataFrame(columns)
    frame.insert(0, "date", panel.dates)
    frame.insert(1, "index", level)
    frame.insert(2, "label", stress_labels(level, drawdown, horizon, events=events))
    return with_combination(frame, ingredients, horizon)


def with_combination(frame: pd.DataFrame, ingredients, horizon: int) -> pd.DataFrame:
    """``frame`` with its score (the combined score of ``ingredients``) and alarm columns set."""
    score = combined_score(frame[list(ingredients)].to_numpy())
    return frame.assign(score=score, alarm=alarms(score, frame["label"].to_numpy(), horizon))


def validation_end_row(dates: np.ndarray, rows: np.ndarray, validation_end=None) -> int:
    """The last day of the validation period: ``validation_end`` (a date), or by default the year
    end after VALIDATION_SHARE of the evaluated ``rows``."""
    if validation_end is None:
        year = np.datetime64(dates[rows[int(VALIDATION_SHARE * (len(rows) - 1))]], "Y")
        validation_end = (year + 1).astype("datetime64[D]") - 1
    return int(np.searchsorted(dates, np.datetime64(validation_end, "D"), "right")) - 1


def split_rows(rows: np.ndarray, end: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation, test) rows: validation the days whose label is known by ``end`` (s <= end -
    horizon), test the days after ``end``."""
    return rows[rows <= end - horizon], rows[rows > end]


def _has_both(y: np.ndarray, rows: np.ndarray) -> bool:
    return len(rows) > 0 and 0 < float(np.mean(y[rows])) < 1


def robustness_grid(frame: pd.DataFrame, end: int, names, baseline: str = "vol_level",
                    draws: int = BOOTSTRAP_DRAWS) -> list[dict]:
    """The combined score (``frame``'s score column) and each single score of ``names`` on every
    event definition of the grid (GRID_DRAWDOWNS x GRID_HORIZONS x EVENTS, on ``frame``'s
    index): per period the AUROC of each (None where the period has no stress or no calm day);
    on test the combined score's difference to ``baseline`` with its 95 % block-bootstrap
    interval (blocks of the horizon) and the share of episodes the combined score and the
    baseline alarmed before they began."""
    index = frame["index"].to_numpy()
    finite = np.isfinite(frame[list(names)].to_numpy()).all(axis=1) & np.isfinite(frame["score"].to_numpy())
    score, base = frame["score"].to_numpy(), frame[baseline].to_numpy()
    out = []
    for events in EVENTS:
        for drawdown in GRID_DRAWDOWNS:
            for horizon in GRID_HORIZONS:
                y = stress_labels(index, drawdown, horizon, events=events)
                val, test = split_rows(np.flatnonzero(finite & np.isfinite(y)), end, horizon)
                row = {"events": events, "drawdown": drawdown, "horizon": horizon}
                for period, rows in (("validation", val), ("test", test)):
                    both = _has_both(y, rows)
                    row[period] = {"days": int(len(rows)), "stress_share": float(y[rows].mean()) if len(rows) else None}
                    row[period].update({name: auroc(frame[name].to_numpy()[rows], y[rows]) if both else None
                                        for name in (*names, "score")})
                if _has_both(y, test):
                    row["test"]["difference"] = auroc_difference(score[test], base[test], y[test], horizon, draws)
                    for name, values in (("score", score), (baseline, base)):
                        metrics = evaluate_score(values, y, test, horizon)
                        row["test"]["episodes"] = len(metrics["lead_times"])
                        row["test"][f"episodes_alarmed_ahead_{name}"] = metrics["episodes_alarmed_ahead"]
                out.append(row)
    return out


def warn(prices="default", out="warning_report", *, drawdown: float = 15.0, horizon: int = 60,
         events: str = EVENTS[0], validation_end=None, ingredients=None, model=None, log=None) -> dict:
    """``warning_scores`` of a price file / DataFrame / 'default', evaluated on a validation period
    (up to ``validation_end``; default: the year end after 40 % of the evaluated days) and the
    test period after it. The combined score's ``ingredients`` (default INGREDIENTS) are
    checked on validation: a single one that scores better there alone replaces them. Writes
    ``out``/scores.csv (date, score, alarm), report.md, report.json (both periods, the
    robustness grid of event definitions), warning.png and warning.json (the combination and
    its alarm threshold on every known label, for a live StressScore or RiskEngine).

    Parameters
    ----------
    prices : str, os.PathLike, PricePanel or pandas.DataFrame
        A price file, a panel or DataFrame of closes, or 'default' (the embedded panel).
    out : str or os.PathLike
        The report directory to write (new or empty).
    drawdown : float
        The stress event's drawdown of the index, in percent.
    horizon : int
        Days ahead the event is looked for (the label at t: an event within the next ``horizon`` days).
    events : {'drawdown_or_vol', 'drawdown'}
        The event definition.
    validation_end : date-like, optional
        The last date of the validation period.
    ingredients : sequence of str, optional
        The single scores the combined score averages (default INGREDIENTS).
    model : str or os.PathLike, optional
        A variance model directory (its forecast jump, and a memory learner's novelty, become scores).
    log : callable, optional
        Called with each progress line (None: silent).

    Returns
    -------
    dict
        The summary (report.json): both periods' figures per score, the ingredients chosen, the
        robustness grid, the episodes and their lead times, the live model's threshold.
    """
    check_output(out, "dir")
    if not (isinstance(drawdown, (int, float)) and 0 < drawdown < 100):
        raise ValueError(f"--drawdown must be a percentage in (0, 100), got {drawdown!r}")
    check_int("--horizon", horizon, 1, 1000, note=" days")
    if events not in EVENTS:
        raise ValueError(f"--events must be one of {', '.join(EVENTS)}, got {events!r}")
    if validation_end is not None:
        try:
            validation_end = np.datetime64(validation_end, "D")
        except (ValueError, TypeError):
            raise ValueError(f"--validation-end must be a date (YYYY-MM-DD), got {validation_end!r}") from None
    ingredients = INGREDIENTS if ingredients is None else tuple(ingredients)
    if not ingredients or len(set(ingredients)) != len(ingredients):
        raise ValueError(f"--ingredients must name distinct scores, got {list(ingredients)}")
    t0 = time.perf_counter()
    if log:
        log(f"early-warning scores of {prices if isinstance(prices, str) else 'the prices'}"
            + (f" with the variance model {model}" if model is not None else ""))
    panel = load_panel(prices, log or ignore)
    saved = None if model is None else saved_model(model)
    frame = warning_scores(panel, drawdown=drawdown / 100, horizon=horizon, events=events, window=WINDOW,
                           memory=MEMORY, model=saved, ingredients=ingredients)
    y = frame.label.to_numpy()
    names = score_names(frame)
    rows = np.flatnonzero(np.isfinite(frame[names].to_numpy()).all(axis=1) & np.isfinite(y))
    if not _has_both(y, rows):
        raise DataError(f"{panel.source}: no evaluable day with both stress and calm labels after the burn-in")
    end = validation_end_row(panel.dates, rows, validation_end)
    val, test = split_rows(rows, end, horizon)
    for period, part in (("validation", val), ("test", test)):
        if not _has_both(y, part):
            raise DataError(f"{panel.source}: the {period} period (validation up to {panel.dates[max(end, 0)]}) "
                            f"holds {len(part)} evaluable days and {'no' if len(part) == 0 else 'not both'} stress "
                            "and calm days: move --validation-end or choose another --drawdown / --horizon")
    chosen, candidates = choose_ingredients({n: frame[n].to_numpy() for n in ingredients}, y, val)
    frame = with_combination(frame, chosen, horizon)
    results = {period: {name: evaluate_score(frame[name].to_numpy(), y, part, horizon) for name in (*names, "score")}
               for period, part in (("validation", val), ("test", test))}
    grid = robustness_grid(frame, end, names)
    eps = {period: [(str(panel.dates[part[a]]), str(panel.dates[part[b]]), lead) for (a, b), lead in
                    zip(episodes(y[part], EPISODE_GAP), results[period]["score"]["lead_times"])]
           for period, part in (("validation", val), ("test", test))}
    elapsed = time.perf_counter() - t0
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    live = WarningModel.fit(frame, chosen, horizon=horizon, drawdown=drawdown / 100, window=WINDOW, memory=MEMORY,
                            events=events, assets=panel.assets,
                            model_sha256=None if saved is None else saved.meta["weights_sha256"])
    live.save(out_dir / "warning.json")
    atomic_write_text(out_dir / "scores.csv", frame[["date", "score", "alarm"]].to_csv(index=False))
    summary = {"prices": panel.source, "model": None if model is None else str(model), "drawdown": drawdown,
               "horizon": horizon, "events": events,
               "validation": [str(panel.dates[val[0]]), str(panel.dates[val[-1]])],
               "test": [str(panel.dates[test[0]]), str(panel.dates[test[-1]])],
               "days": {"validation": int(len(val)), "test": int(len(test))},
               "stress_share": {"validation": float(y[val].mean()), "test": float(y[test].mean())},
               "ingredients": {"given": list(ingredients), "chosen": list(chosen), "validation_auroc": candidates},
               "scores": results, "grid": grid, "episodes": eps, "seconds": round(elapsed, 1),
               "live_model": {"file": "warning.json", "fitted_through": live.fitted_through,
                              "threshold": live.threshold},
               "data_quality": data_report(panel)}
    atomic_write_text(out_dir / "report.json", json.dumps(summary, indent=1))
    atomic_write_text(out_dir / "report.md", _markdown(summary))
    atomic_write_bytes(out_dir / "warning.png", _plot(frame, panel.dates[end], live.threshold))
    if log:
        log(f"report written to {out} ({elapsed:.0f} s)")
    return summary


NAMES = {"turbulence": "turbulence (Kritzman-Li)", "absorption_shift": "absorption ratio shift (Kritzman et al.)",
         "vol_level": "index realised volatility, 21 days", "vol_63": "index realised volatility, 63 days",
         "ewma_vol": "index EWMA volatility (lambda 0.94)",
         "novelty": "novelty (distance to the nearest older volatility state)",
         MODEL_SCORE: "variance-model forecast jump across assets",
         MEMORY_SCORE: "memory learner's novelty (key distance to its memory), mean over assets",
         "score": "combined (mean own-past percentile)"}
EVENT_TEXT = {"drawdown": "a drawdown", "drawdown_or_vol": "a drawdown or a volatility jump"}


def _auc(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _markdown(s: dict) -> str:
    vol_jump = (", or its 21-day realised volatility jumps within them into the top decile of its own past"
                if s["events"] == "drawdown_or_vol" else "")
    ing = s["ingredients"]
    lines = ["# metarisk early warning\n",
             f"Prices `{s['prices']}`. A day is labelled when the equal-weighted index falls {s['drawdown']:g} % or "
             f"more below that day's level within the next {s['horizon']} days{vol_jump} (`--events "
             f"{s['events']}`). Every score at day t uses prices up to t. The combined score is the mean of its "
             "ingredients' percentiles within their own past: no weights are fitted. Validation "
             f"{s['validation'][0]} to {s['validation'][1]} ({s['days']['validation']} days, "
             f"{100 * s['stress_share']['validation']:.0f} % labelled; labels known by its end), test "
             f"{s['test'][0]} to {s['test'][1]} ({s['days']['test']} days, {100 * s['stress_share']['test']:.0f} % "
             f"labelled). Run time {s['seconds']:.0f} s."
             + (f" Variance model `{s['model']}`: its forecasts' jump (and, for a memory learner, its novelty) "
                "are scores too." if s["model"] else "") + "\n",
             f"Ingredients {', '.join(ing['given'])}; chosen on validation: **{', '.join(ing['chosen'])}** "
             "(the combination unless one ingredient alone scores higher there). Validation AUROC: "
             + ", ".join(f"{k} {v:.3f}" for k, v in ing["validation_auroc"].items()) + ".\n"]
    for period in ("validation", "test"):
        lines += [f"## {period.capitalize()}\n",
                  "| score | AUROC | hit rate at 10 % false alarms | alarm days: hit / false rate | false alarm "
                  "episodes a year | episodes alarmed ahead |", "| --- | --- | --- | --- | --- | --- |"]
        for name, r in sorted(s["scores"][period].items(), key=lambda kv: -kv[1]["auroc"]):
            lines.append(f"| {NAMES[name]} | {r['auroc']:.3f} | {r['hit_rate_at_10pct_false_alarms']:.3f} | "
                         f"{r['alarm_hit_rate']:.3f} / {r['alarm_false_rate']:.3f} | "
                         f"{r['false_alarm_episodes_per_year']:.2f} | {100 * r['episodes_alarmed_ahead']:.0f} % |")
        lines.append("")
    lines += ["## Every definition of stress\n",
              "The combined score against the index's 21-day realised volatility on the grid of event definitions "
              "(the same scores, other labels); the test difference with its 95 % moving-block bootstrap interval "
              "(blocks of the horizon). '-': no stress day or no calm day in that period.\n",
              "| events | drawdown | horizon | validation: combined / volatility | test: combined / volatility | "
              "test difference [95 %] | test episodes alarmed ahead |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for g in s["grid"]:
        v, t = g["validation"], g["test"]
        diff = t.get("difference")
        lines.append(f"| {g['events']} | {100 * g['drawdown']:g} % | {g['horizon']} | {_auc(v['score'])} / "
                     f"{_auc(v['vol_level'])} | {_auc(t['score'])} / {_auc(t['vol_level'])} | "
                     + ("-" if diff is None else f"{diff['difference']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]")
                     + " | " + ("-" if "episodes" not in t else
                                f"{round(t['episodes_alarmed_ahead_score'] * t['episodes'])} of {t['episodes']}") + " |")
    lines += ["\nAn alarm: the score above the 90th percentile of its values on past days known to be calm "
              "(a 10 % false-alarm rate, recalibrated as labels come in). Episodes (labelled runs fewer "
              f"than {EPISODE_GAP} days apart merged) and the combined score's lead time (days from its first alarm, "
              f"up to {s['horizon']} days before, to the episode's first day; negative: after it started; none: no "
              "alarm):\n", "| period | first day | last day | lead time |", "| --- | --- | --- | --- |"]
    lines += [f"| {period} | {a} | {b} | {'none' if lead is None else lead} |"
              for period in ("validation", "test") for a, b, lead in s["episodes"][period]]
    quality = {k: len(v) for k, v in s["data_quality"].items() if v}
    if quality:
        lines += ["\nData quality (listed in report.json, `data_quality`): "
                  + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in quality.items()) + "."]
    live = s["live_model"]
    lines += [f"\nFor live use, `{live['file']}` holds the chosen ingredients and the alarm threshold "
              f"{live['threshold']:.3f}, calibrated on every label known at the end (through {live['fitted_through']}): "
              "`StressScore.load(DIR, n_assets)`, or `RiskEngine.from_model(..., monitor=...)` to carry it "
              "in the engine's bars."]
    return "\n".join(lines) + "\n"


def _plot(frame: pd.DataFrame, validation_end, threshold: float) -> bytes:
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
    a2.axvline(pd.Timestamp(validation_end), color="grey", ls=":", lw=1, label="validation ends, test begins")
    a2.set_ylabel("combined score (mean percentile)")
    a1.legend(fontsize=8, loc="upper left")
    a2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5)  # below: the score fills the panel
    return png_bytes(fig)
