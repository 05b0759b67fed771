"""Forecast quality against GARCH-t and GJR-GARCH-t: the recipe search and the held-out report.

    python bench/forecast_quality.py --out bench/forecast_quality [--stages validation,test,report,render]
                                     [--recipes TEXT]   # only the recipes whose name contains TEXT

Stages (each writes CSV and markdown under --out; bench/FORECAST_QUALITY.md quotes them):
- validation: every recipe in RECIPES trained on 11 of the demo's 15 training assets up to
  2009-12-31 and scored on all 15 over 2010-01 .. 2014-12 (h-day embargo; the 4 assets it did not
  train on are also scored apart). Nothing here reads 2015 or later, nor a held-out asset.
- test: every recipe, once, as the demo runs it: trained on the 15 training assets up to
  2014-12-31, scored on the 5 held-out assets 2015-2022.
- report: the chosen recipe (CHOSEN) for h = 1, 5, 22 and k = 20, 60, 250: QLIKE, MSE,
  Diebold-Mariano (HLN) against GJR-GARCH-t and GARCH-t, the Model Confidence Set, VaR 1 % / 5 %
  Kupiec and Christoffersen per asset, ES 2.5 % Z2; and the new-listing view (each held-out asset
  listed on 2015-01-02: its first 250 days, GARCH fitted on what exists).
- young: the held-out stocks listed every 63 days from 2015 (500 prices each, nothing before the
  listing): QLIKE by age (2-20, 21-60, 61-250, 251-500 prices) against EWMA, GARCH-t and
  GJR-GARCH-t fitted on the post-listing returns only, and against the pooled network, tested
  over listings; VaR exceedances by age; MAML trained with and without simulated listings.
- render: tables.md from the CSVs (a run of some recipes updates their rows and keeps the rest).
Every number comes from this run; nothing is copied in.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from metarisk_fast._types import STUDENT_T_NU as TARGET_NU
from metarisk_fast.evaluation import christoffersen, evaluate, kupiec_pof, loss_by_age, qlike_log, value_at_risk
from metarisk_fast.features import FeatureSet
from metarisk_fast.forecasting import (EWMAForecaster, GARCHForecaster, MetaForecaster, make_learner,
                                       train_meta)
from metarisk_fast.datasets import load_panel
from metarisk_fast.volatility.jobs import DEFAULT_HISTORIES, QUERY, TrainOptions, grid, young_builder
from metarisk_fast.tasks import TARGET, EpisodeBuilder, TaskSpec, asset_split, simulated_listings, time_split
from metarisk_fast.tasks.episodes import CLOSE_FEATURES
from metarisk_fast.tasks.target import AnchorRatioTarget

PREVIOUS_FEATURES = FeatureSet(cc_windows=(5, 21, 63), ewma_lambdas=(0.94,), range_features=())
SLOW_EWMAS = replace(PREVIOUS_FEATURES, ewma_lambdas=(0.94, 0.97, 0.99))
DOWNSIDE = replace(PREVIOUS_FEATURES, downside_lambdas=(0.94, 0.97))


@dataclass(frozen=True)
class Recipe:
    features: FeatureSet
    learner: str = "maml"
    options: TrainOptions = TrainOptions()
    loss: str | None = "gaussian_nll"  # None: the shipped rule, TARGET.loss_for(horizon)
    max_ratio: float = float(np.exp(50.0))  # forecasts within [EWMA / max_ratio, EWMA * max_ratio]
    head_window: int | None = None  # the head learner adapts on its last head_window support rows (None: all)

    def spec(self, horizon: int = 1) -> TaskSpec:
        return TaskSpec(horizon=horizon, support=60, query=QUERY, features=self.features)

    def forecaster(self, learner, k: int, name: str = "maml") -> MetaForecaster:
        return MetaForecaster(learner, k, name=name, target=AnchorRatioTarget(output_clip=float(np.log(self.max_ratio))))


OLD = TrainOptions(steps=300, inner_lr=0.05)
LONG = TrainOptions(steps=1500, inner_lr=0.01)
STUDENT_T = "student_t_nll"
RECIPES = {
    "previous default (5 inputs, 300 steps, inner lr 0.05)": Recipe(PREVIOUS_FEATURES, options=OLD),
    "+ EWMA 0.97, 0.99": Recipe(SLOW_EWMAS, options=OLD),
    "+ downside EWMA 0.94, 0.97": Recipe(DOWNSIDE, options=OLD),
    "+ both (shipped inputs), 300 steps": Recipe(CLOSE_FEATURES, options=OLD),
    "shipped inputs, 1500 steps, inner lr 0.01": Recipe(CLOSE_FEATURES, options=LONG),
    "shipped inputs, 1500 steps, inner lr 0.01, FOMAML": Recipe(CLOSE_FEATURES, "fomaml", LONG),
    "shipped inputs, 1500 steps, pooled (no adaptation)": Recipe(CLOSE_FEATURES, "pooled", LONG),
    "shipped inputs, 1500 steps, inner lr 0.01, seed 1": Recipe(CLOSE_FEATURES, options=replace(LONG, seed=1)),
    "shipped inputs, 1500 steps, inner lr 0.01, seed 2": Recipe(CLOSE_FEATURES, options=replace(LONG, seed=2)),
    "t loss, 300 steps, inner lr 0.05": Recipe(CLOSE_FEATURES, options=OLD, loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.01": Recipe(CLOSE_FEATURES, options=LONG, loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.01, seed 1": Recipe(CLOSE_FEATURES, options=replace(LONG, seed=1), loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.01, seed 2": Recipe(CLOSE_FEATURES, options=replace(LONG, seed=2), loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.01, FOMAML": Recipe(CLOSE_FEATURES, "fomaml", LONG, loss=STUDENT_T),
    "t loss, 1500 steps, pooled": Recipe(CLOSE_FEATURES, "pooled", LONG, loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.003": Recipe(CLOSE_FEATURES, options=replace(LONG, inner_lr=0.003), loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.03": Recipe(CLOSE_FEATURES, options=replace(LONG, inner_lr=0.03), loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.06": Recipe(CLOSE_FEATURES, options=replace(LONG, inner_lr=0.06), loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.1": Recipe(CLOSE_FEATURES, options=replace(LONG, inner_lr=0.1), loss=STUDENT_T),
    "t loss, 1500 steps, inner lr 0.06, forecasts within 3x EWMA": Recipe(
        CLOSE_FEATURES, options=replace(LONG, inner_lr=0.06), loss=STUDENT_T, max_ratio=3.0),
    "t loss, 1500 steps, inner lr 0.06, forecasts within 5x EWMA": Recipe(
        CLOSE_FEATURES, options=replace(LONG, inner_lr=0.06), loss=STUDENT_T, max_ratio=5.0),
    "t loss, 1500 steps, inner lr 0.06, forecasts within 10x EWMA": Recipe(
        CLOSE_FEATURES, options=replace(LONG, inner_lr=0.06), loss=STUDENT_T, max_ratio=10.0),
    "shipped: t loss, 1500 steps, inner lr 0.06, within 5x EWMA, targets floored at 0.05": Recipe(
        CLOSE_FEATURES, options=replace(LONG, inner_lr=0.06), loss=None, max_ratio=5.0),
}
CHOSEN = "shipped: t loss, 1500 steps, inner lr 0.06, within 5x EWMA, targets floored at 0.05"
HEAD = "head: one Newton step of a linear head (width 8) on a shared body"
HEAD_OPTIONS = replace(LONG, hidden=(32,), steps=3000, young_listings=True)  # forecasting.training_default("head", ...)
HEAD_CHOSEN = f"{HEAD}, body 32, 3000 steps, simulated listings"
NO_LISTINGS = replace(HEAD_OPTIONS, young_listings=False)
RECIPES.update({
    f"{HEAD}, body 32, 1500 steps, no simulated listings": Recipe(CLOSE_FEATURES, "head", replace(NO_LISTINGS, steps=1500),
                                                                  loss=None, max_ratio=5.0),
    f"{HEAD}, body 64-64, 1500 steps, no simulated listings": Recipe(
        CLOSE_FEATURES, "head", replace(NO_LISTINGS, hidden=(64, 64), steps=1500), loss=None, max_ratio=5.0),
    f"{HEAD}, body 32-32, 1500 steps, no simulated listings": Recipe(
        CLOSE_FEATURES, "head", replace(NO_LISTINGS, hidden=(32, 32), steps=1500), loss=None, max_ratio=5.0),
    f"{HEAD}, body 32, 3000 steps, no simulated listings": Recipe(CLOSE_FEATURES, "head", NO_LISTINGS, loss=None,
                                                                  max_ratio=5.0),
    f"{HEAD}, body 32, 3000 steps, no simulated listings, seed 1": Recipe(
        CLOSE_FEATURES, "head", replace(NO_LISTINGS, seed=1), loss=None, max_ratio=5.0),
    f"{HEAD}, body 32, 3000 steps, no simulated listings, seed 2": Recipe(
        CLOSE_FEATURES, "head", replace(NO_LISTINGS, seed=2), loss=None, max_ratio=5.0),
    HEAD_CHOSEN: Recipe(CLOSE_FEATURES, "head", HEAD_OPTIONS, loss=None, max_ratio=5.0),
    f"{HEAD_CHOSEN}, seed 1": Recipe(CLOSE_FEATURES, "head", replace(HEAD_OPTIONS, seed=1), loss=None, max_ratio=5.0),
    f"{HEAD_CHOSEN}, seed 2": Recipe(CLOSE_FEATURES, "head", replace(HEAD_OPTIONS, seed=2), loss=None, max_ratio=5.0),
    f"{CHOSEN}, seed 1": Recipe(CLOSE_FEATURES, options=replace(LONG, inner_lr=0.06, seed=1), loss=None, max_ratio=5.0),
    f"{CHOSEN}, seed 2": Recipe(CLOSE_FEATURES, options=replace(LONG, inner_lr=0.06, seed=2), loss=None, max_ratio=5.0),
})
RECIPES.update({  # issue #27: the head adapts on its most recent rows only
    f"{HEAD_CHOSEN}, adapting on the last {w} rows{tag}": replace(RECIPES[HEAD_CHOSEN], head_window=w, options=replace(
        HEAD_OPTIONS, seed=seed)) for w in (5, 10, 15, 20, 30, 40) for seed, tag in ((0, ""), (1, ", seed 1"), (2, ", seed 2"))})
HEAD_SHIPPED = f"{HEAD_CHOSEN}, adapting on the last 10 rows"  # forecasting.HEAD_WINDOW, as validation chose
YEAR_WINDOW = replace(CLOSE_FEATURES, cc_windows=(*CLOSE_FEATURES.cc_windows, 252))  # issue #31: longer memory
RECIPES.update({f"{CHOSEN}, + a 252-day close-to-close window{tag}": Recipe(
    YEAR_WINDOW, options=replace(LONG, inner_lr=0.06, seed=seed), loss=None, max_ratio=5.0)
    for seed, tag in ((0, ""), (1, ", seed 1"), (2, ", seed 2"))})

panel = load_panel("default")
TRAIN_ASSETS, TEST_ASSETS = asset_split(panel.assets, 5, seed=0)  # the demo's split
FIT_ASSETS, VAL_ASSETS = asset_split(TRAIN_ASSETS, 4, seed=1)
SPLITS = {"validation": dict(fit=FIT_ASSETS, end="2009-12-31", score=TRAIN_ASSETS, score_end="2014-12-31"),
          "test": dict(fit=TRAIN_ASSETS, end="2014-12-31", score=TEST_ASSETS, score_end=None)}


def training_builder(spec: TaskSpec, split: str) -> EpisodeBuilder:
    """The panel's builder with the young anchor's prior set from the split's training assets and
    dates (as `metarisk train` sets it)."""
    end_row, _ = time_split(panel, SPLITS[split]["end"], spec.horizon)
    return EpisodeBuilder(panel, spec).with_young_prior(SPLITS[split]["fit"], end_row)


def score_rows(split: str, h: int, source=panel):
    s = SPLITS[split]
    end_row, first = time_split(source, s["end"], h)
    last = source.n_days - 1 - h if s["score_end"] is None else source.row_of(s["score_end"], "right") - 1 - h
    A, R = grid(source, s["score"], first, last)
    return A, R, source.dates[end_row]


_BASELINES: dict = {}


def baselines(builder, split: str, h: int, A, R, key=None) -> dict:
    key = key or (split, h)
    if key not in _BASELINES:
        _BASELINES[key] = {"ewma": EWMAForecaster().predict(builder, A, R),
                           "garch_t": GARCHForecaster(name="garch_t").predict(builder, A, R),
                           "gjr_garch_t": GARCHForecaster(gjr=True, name="gjr_garch_t").predict(builder, A, R)}
    return _BASELINES[key]


def train(recipe: Recipe, builder, assets, end):
    o = recipe.options
    torch.manual_seed(o.seed)
    loss = recipe.loss or TARGET.loss_for(builder.spec.horizon)
    learner = make_learner(recipe.learner, builder.spec.n_features, o.hidden_for(recipe.learner), o.inner_lr,
                           o.inner_steps, loss=loss, head_window=recipe.head_window)
    t0 = time.perf_counter()
    train_meta(learner, builder, assets, end, steps=o.steps_for(recipe.learner), batch=o.batch, lr=o.meta_lr, seed=o.seed,
               supports=DEFAULT_HISTORIES, young=young_builder(builder, assets, end, o, [recipe.learner]))
    return learner, time.perf_counter() - t0


def recipe_scores(split: str, only: str = "") -> pd.DataFrame:
    rows = []
    for name, recipe in RECIPES.items():
        if not any(part in name for part in only.split("|")):
            continue
        builder = training_builder(recipe.spec(1), split)
        A, R, end = score_rows(split, 1)
        learner, seconds = train(recipe, builder, SPLITS[split]["fit"], end)
        base = baselines(builder, split, 1, A, R)
        y = builder.y[R, A]
        row = {"recipe": name, "train_s": round(seconds, 1), "machine": MACHINE}
        for k in DEFAULT_HISTORIES:
            f = recipe.forecaster(learner, k).predict(builder, A, R)
            ok = np.isfinite(y) & np.isfinite(f) & np.all([np.isfinite(v) for v in base.values()], axis=0)
            groups = {"": ok}
            if split == "validation":
                groups = {"": ok, " unseen": ok & np.isin(A, panel.asset_index(VAL_ASSETS))}
            for g, m in groups.items():
                row[f"k={k}{g}"] = qlike_log(y[m], f[m]).mean()
                for b, v in base.items():
                    row[f"{b}{g}"] = qlike_log(y[m], v[m]).mean()  # the same rows as this k
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    return pd.DataFrame(rows).set_index("recipe")


def per_asset_var(ev, alpha: float) -> pd.DataFrame:
    """Kupiec and Christoffersen p-values of each model's VaR per held-out asset (normal and t)."""
    f = ev.forecasts
    nu = ev.meta["student_t_nu"]
    out = []
    for (model, asset), g in f.groupby(["model", "asset"]):
        for dist in ("normal", "t"):
            hits = g["next_return"].to_numpy() < value_at_risk(g["forecast_variance"].to_numpy(), alpha, dist, nu)
            out.append({"model": model, "asset": asset, "dist": dist, "hit_rate": hits.mean(),
                        "kupiec_p": kupiec_pof(hits, alpha)["pvalue"],
                        "christoffersen_cc_p": christoffersen(hits, alpha)["pvalue_cc"]})
    return pd.DataFrame(out)


def report(out: Path, learner_kind: str = "maml") -> None:
    recipe = RECIPES[CHOSEN]
    tables = []
    for h in (1, 5, 22):
        builder = training_builder(recipe.spec(h), "test")
        A, R, end = score_rows("test", h)
        learner, _ = train(recipe, builder, TRAIN_ASSETS, end)
        base = baselines(builder, "test", h, A, R)
        for k in DEFAULT_HISTORIES:
            fc = {learner_kind: recipe.forecaster(learner, k, learner_kind).predict(builder, A, R), **base}
            for bench in ("gjr_garch_t", "garch_t"):
                ev = evaluate(builder, A, R, fc, benchmark=bench, horizon=h, label=f"h={h}, k={k}")
                t = ev.table
                row = {"h": h, "k": k, "benchmark": bench, "n": int(t.loc[learner_kind, "n"]),
                       **{f"qlike {m}": t.loc[m, "qlike"] for m in t.index},
                       **{f"mse {m}": t.loc[m, "mse"] for m in t.index},
                       "dm": t.loc[learner_kind, f"dm_vs_{bench}"], "dm_p": t.loc[learner_kind, "dm_pvalue"],
                       **{f"mcs_p {m}": t.loc[m, "mcs_pvalue"] for m in t.index},
                       "kupiec_1_p": t.loc[learner_kind, "kupiec_p_0.01_normal"],
                       "kupiec_5_p": t.loc[learner_kind, "kupiec_p_0.05_normal"],
                       "z2_normal": t.loc[learner_kind, "z2_normal"], "z2_t": t.loc[learner_kind, "z2_t"]}
                tables.append(row)
                print(json.dumps(row, default=float), flush=True)
                if h == 1 and bench == "gjr_garch_t":
                    for alpha in (0.01, 0.05):
                        per_asset_var(ev, alpha).to_csv(out / f"var_{alpha:g}_per_asset_k{k}.csv", index=False)
    pd.DataFrame(tables).to_csv(out / "report.csv", index=False)
    new_listing(out, recipe, learner_kind)


def new_listing(out: Path, recipe: Recipe, learner_kind: str, listed="2015-01-02", days: int = 250) -> None:
    """Each held-out asset as if it listed on ``listed``: prices before it removed; forecasts over
    its first ``days`` days where the meta-learner (up to k = 250 of its own days) and GARCH
    (refit every 21 days on every return it has, from 60 on) both forecast."""
    close = panel.close.copy()
    first = panel.row_of(listed)
    cols = panel.asset_index(TEST_ASSETS)
    close[:first, cols] = np.nan
    listed_panel = replace(panel, close=close)
    train_builder = training_builder(recipe.spec(1), "test")
    builder = EpisodeBuilder(listed_panel, train_builder.spec)
    _, _, end = score_rows("test", 1)
    learner, _ = train(recipe, train_builder, TRAIN_ASSETS, end)
    A, R = grid(listed_panel, TEST_ASSETS, first, first + days - 1)
    fc = {learner_kind: recipe.forecaster(learner, 250, learner_kind).predict(builder, A, R),
          "ewma": EWMAForecaster().predict(builder, A, R),
          "garch_t": GARCHForecaster(name="garch_t", refit=21, min_fit=60).predict(builder, A, R),
          "gjr_garch_t": GARCHForecaster(gjr=True, name="gjr_garch_t", refit=21, min_fit=60).predict(builder, A, R)}
    ev = evaluate(builder, A, R, fc, benchmark="gjr_garch_t", horizon=1, label="new listing")
    ev.table.to_csv(out / "new_listing.csv")
    print(ev.table[["n", "qlike", "dm_vs_gjr_garch_t", "dm_pvalue"]], flush=True)


YOUNG_SPLITS = {"validation": dict(listed=TRAIN_ASSETS, start="2010-01-04", end="2014-12-31"),
                "test": dict(listed=TEST_ASSETS, start="2015-01-02", end=None)}


def young_assets(out: Path, split: str = "test", every: int = 63, length: int = 500, garch: bool = True,
                 learners: dict | None = None, machine: str = "") -> pd.DataFrame:
    """Assets listed every ``every`` days (their first ``length`` prices each; nothing before the
    listing): QLIKE by age against EWMA, GARCH-t and GJR-GARCH-t fitted on the post-listing
    returns only (expanding, refit every 21 days, from 60 returns on), and against the pooled
    network, with the listings as the units of the tests; Student-t and normal VaR exceedances by
    age. Test: the held-out stocks from 2015, the models trained as the test stage trains them (15
    assets to 2014-12-31). Validation: the 15 training assets listed in 2010-2014, the models
    trained on 11 of them to 2009-12-31. MAML as shipped, and trained with the simulated listings
    of its training assets (TrainOptions.young_listings)."""
    recipe = RECIPES[CHOSEN]
    spec = recipe.spec(1)
    ys = YOUNG_SPLITS[split]
    listed = simulated_listings(panel, ys["listed"], ys["end"] or panel.dates[-1], every=every, length=length,
                                start=ys["start"])
    train_builder = training_builder(spec, split)
    builder = EpisodeBuilder(listed, train_builder.spec)
    _, _, end = score_rows(split, 1)
    A, R = grid(listed, listed.assets, 1, listed.n_days - 2)  # every day with a return and a realised target
    age, y = builder.age[R, A], builder.y[R, A]
    nxt = builder.returns[R + 1, A]
    learners = learners or {
        "maml": recipe, "maml, young listings": replace(recipe, options=replace(recipe.options, young_listings=True)),
        "pooled": replace(recipe, learner="pooled"), "head": RECIPES[HEAD_SHIPPED],
        "head, no listings": RECIPES[f"{HEAD}, body 32, 3000 steps, no simulated listings"]}
    fc, seconds = {}, {}
    for name, r in learners.items():
        learner, seconds[name] = train(r, train_builder, SPLITS[split]["fit"], end)
        fc[name] = r.forecaster(learner, 60, name).predict(builder, A, R)
    fc["ewma"] = EWMAForecaster().predict(builder, A, R)
    for name, gjr in (("garch_t", False), ("gjr_garch_t", True)) if garch else ():
        fc[name] = GARCHForecaster(gjr=gjr, name=name, refit=21, min_fit=60).predict(builder, A, R)
    table = loss_by_age(y, fc, age, A, nxt, nu=TARGET_NU, compare_with=("ewma", "garch_t", "gjr_garch_t", "pooled"))
    table.to_csv(out / f"young_{split}.csv", index=False)
    (out / f"young_{split}.json").write_text(json.dumps({"listings": listed.n_assets, "every": every,
                                                         "length": length, "train_seconds": seconds,
                                                         "machine": machine}, indent=1))
    print(table[[c for c in ("ages", "model", "n", "nonpositive", "qlike", "diff_ewma", "p_ewma", "diff_garch_t",
                             "p_garch_t", "diff_pooled", "p_pooled", "hit_0.01_t") if c in table]].to_string(), flush=True)
    return table


def markdown_table(df: pd.DataFrame, first: str = "") -> str:
    """Every column of ``df``, its index first; floats to 4 decimals (QLIKE differences of 0.001
    matter here)."""
    head = f"| {first or df.index.name or ''} | " + " | ".join(map(str, df.columns)) + " |\n|---|" + "---|" * df.shape[1]
    rows = [f"| {i} | " + " | ".join((f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}") if isinstance(v, (float, np.floating)) else str(v) for v in r) + " |"
            for i, r in zip(df.index, df.itertuples(index=False))]
    return "\n".join([head, *rows])


def render(out: Path) -> str:
    """Markdown tables of every CSV the stages wrote."""
    parts = []
    for stage, title in (("validation", "Validation: 11 assets trained to 2009, scored 2010-2014 on all 15 "
                                        "training assets and apart on the 4 unseen ones (AMD, LLY, PFE, RRC)"),
                         ("test", "Held out, once per recipe: BAC, CVX, HD, PEP, XOM, 2015-2022")):
        f = out / f"{stage}.csv"
        if f.exists():
            t = pd.read_csv(f, index_col=0)
            order = [f"{c}{g}" for g in ("", " unseen") for c in ("k=20", "k=60", "k=250", "gjr_garch_t", "garch_t", "ewma")]
            parts.append(f"### {title}\n\n" + markdown_table(t[[c for c in order if c in t.columns]]))
    f = out / "report.csv"
    if f.exists():
        t = pd.read_csv(f)
        cols = ["h", "k", "benchmark", "n", "qlike maml", "qlike gjr_garch_t", "qlike garch_t", "qlike ewma", "dm", "dm_p",
                "mse maml", "mse gjr_garch_t", "mcs_p maml", "mcs_p gjr_garch_t", "mcs_p garch_t", "kupiec_1_p",
                "kupiec_5_p", "z2_normal", "z2_t"] + (["run"] if "run" in t.columns else [])
        parts.append("### The chosen recipe, h = 1, 5, 22 and k = 20, 60, 250 (DM < 0: ours better)\n\n"
                     + markdown_table(t[cols].set_index("h")))
    for alpha in (0.01, 0.05):
        f = out / f"var_{alpha:g}_per_asset_k250.csv"
        if f.exists():
            t = pd.read_csv(f)
            t = t[t["model"].isin(["maml", "gjr_garch_t", "garch_t"])].set_index("model")
            parts.append(f"### VaR {alpha:.0%} per held-out asset, k = 250, h = 1 (p-values)\n\n" + markdown_table(t))
    f = out / "new_listing.csv"
    if f.exists():
        t = pd.read_csv(f, index_col=0)
        cols = [c for c in ("n", "qlike", "mse", "dm_vs_gjr_garch_t", "dm_pvalue", "mcs_pvalue", "hit_0.01_normal",
                            "kupiec_p_0.01_normal") if c in t.columns]
        parts.append("### New listing: each held-out asset's first 250 days from 2015-01-02\n\n"
                     + markdown_table(t[cols]))
    text = "\n\n".join(parts) + "\n"
    (out / "tables.md").write_text(text)
    return text


def _cpu() -> str:
    """The CPU's model name with its family and model numbers (/proc/cpuinfo), else the platform."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        return f"{info['model name']} (family {info['cpu family']} model {info['model']})"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


MACHINE = f"{_cpu()}, 2 threads, torch {torch.__version__}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench/forecast_quality")
    p.add_argument("--stages", default="validation,test,report,render")
    p.add_argument("--recipes", default="", help="only the recipes whose name contains this (or any of A|B|...)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    machine = MACHINE
    if not a.recipes and {"validation", "test", "report"} & set(a.stages.split(",")):
        (out / "machine.txt").write_text(machine + "\n")  # the young stages record it in their JSON; a run of
        # some recipes in their rows' machine column
    for stage in a.stages.split(","):
        t0 = time.perf_counter()
        if stage in ("validation", "test"):
            scores, path = recipe_scores(stage, a.recipes), out / f"{stage}.csv"
            if path.exists():  # a run of some recipes updates their rows and keeps the others
                kept = pd.read_csv(path, index_col=0)
                scores = pd.concat([kept.drop(index=scores.index, errors="ignore"), scores])
                scores = scores.loc[[r for r in RECIPES if r in scores.index]]
            scores.to_csv(path)
        elif stage.startswith("young"):  # young_validation, young_test
            young_assets(out, stage.split("_")[1], machine=machine)
        elif stage == "report":
            report(out)
        elif stage == "render":
            render(out)
        else:
            raise SystemExit(f"unknown stage {stage!r}")
        print(f"{stage}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
