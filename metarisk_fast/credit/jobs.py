"""`metarisk credit train | score | evaluate | demo` as library calls. Model directories hold
``model.pt`` and ``credit.json`` (learner, hyper-parameters, the fitted input transform, the
weights' SHA-256); every file is written atomically; paths are checked before any long work."""
from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._checks import check_int
from .._files import atomic_write_bytes, atomic_write_text, check_output
from ..data import DataError
from ..report import markdown_table, png_bytes, pyplot
from ..forecasting.model_files import read_model_dir, write_model_dir
from .data import DEFAULT_SEGMENT, DEFAULT_TARGET, CreditData, CreditEncoder, binary_target, load_credit, read_table
from .evaluate import BASELINES, MIN_QUERY, eligible_segments, evaluate_credit, summarise
from .learn import CREDIT_LEARNERS, CreditTraining, adapt_scores, attributions, meta_train, reasons

META = "credit.json"
DEMO_KS = (10, 25, 50)


class CreditModelError(ValueError):
    """A credit model directory that is missing, damaged or from an incompatible version."""


# --------------------------------------------------------------------------- train / score
def train(data="default", out="credit_model", *, target: str = DEFAULT_TARGET, segment: str = DEFAULT_SEGMENT,
          training: CreditTraining = CreditTraining(), log=None) -> dict:
    """Meta-train on every segment of ``data`` and save the model directory ``out``.

    Parameters
    ----------
    data : str, os.PathLike or pandas.DataFrame
        Loans: a CSV / Parquet file or a DataFrame, one row per loan ('default': the embedded
        German credit data).
    out : str or os.PathLike
        The model directory to write (new or empty).
    target : str
        The 0/1 default column.
    segment : str
        The column whose values are the segments (the tasks).
    training : CreditTraining
        The learner and its meta-training settings.
    log : callable, optional
        Called with each progress line (None: silent).

    Returns
    -------
    dict
        The model's metadata (its model.json).
    """
    check_output(out, "dir")
    loans = load_credit(data, target=target, segment=segment)
    enc = CreditEncoder.fit(loans.frame)
    x = enc.transform(loans.frame)
    t0 = time.perf_counter()
    learner, loss = meta_train(x, loans.y, loans.segment, training)
    meta = {"training": asdict(training), "encoder": json.loads(enc.to_json()), "target": target, "segment": segment,
            "segments": loans.segments, "loans": len(loans), "data": loans.source, "final_meta_loss": loss,
            "train_seconds": round(time.perf_counter() - t0, 2), "baseline_input": x.mean(axis=0).tolist()}
    meta = json.loads((write_model_dir(out, META, learner, meta) / META).read_text())
    if log:
        log(f"trained {training.learner} on {len(loans)} loans in {len(loans.segments)} segments; saved to {out}")
    return meta


def load(model_dir):
    """(learner, encoder, metadata) of a credit model directory."""
    d = Path(model_dir)
    meta, weights = read_model_dir(d, META, CreditModelError, "metarisk credit train")
    try:
        training = CreditTraining(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["training"].items()})
        enc = CreditEncoder.from_json(json.dumps(meta["encoder"]))
        learner = training.make(len(enc.names))
        learner.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CreditModelError(f"{d}: credit.json and model.pt do not describe a loadable model: {exc}") from None
    return learner, enc, meta


def score(model, support, data, out=None, *, top: int = 3) -> pd.DataFrame:
    """Adapt the model to a new segment on ``support`` (labelled loans of that segment: a file or
    DataFrame with the model's target column) and score the loans of ``data``: the default
    probability and the ``top`` attributes that raise it most (integrated-gradient attributions of
    the adapted model, from the average training applicant).

    Parameters
    ----------
    model : str or os.PathLike
        A credit model directory.
    support : str, os.PathLike or pandas.DataFrame
        Labelled loans of the new segment (with the model's target column; both classes).
    data : str, os.PathLike or pandas.DataFrame
        The loans to score.
    out : str or os.PathLike, optional
        Also write the scores as CSV.
    top : int
        Reasons per loan.

    Returns
    -------
    pandas.DataFrame
        One row per loan of ``data``: row, score (the default probability), reason_1 ... reason_<top>.
    """
    if out is not None:
        check_output(out, "file")
    learner, enc, meta = load(model)
    sup = read_table(support)[0]
    if meta["target"] not in sup.columns:
        raise DataError(f"the support loans have no target column {meta['target']!r}: they must be labelled")
    ys = binary_target(sup[meta["target"]], meta["target"], "support")
    if len(ys) < 2 or ys.min() == ys.max():
        raise DataError(f"the support needs labelled loans of both classes, got {len(ys)} loans, {int(ys.sum())} bad")
    loans = read_table(data)[0]
    xs, xq = enc.transform(sup), enc.transform(loans)
    p = adapt_scores(learner, xs[None], ys[None], xq[None])[0]
    contrib = attributions(learner, xs, ys, xq, np.asarray(meta["baseline_input"], np.float32))
    why = reasons(contrib, enc.groups, loans, top)
    frame = pd.DataFrame({"row": np.arange(len(loans)), "score": p})
    for i in range(top):
        frame[f"reason_{i + 1}"] = [r[i] if i < len(r) else "" for r in why]
    if out is not None:
        atomic_write_text(out, frame.to_csv(index=False))
    return frame


# --------------------------------------------------------------------------- evaluate / demo
def evaluate(data="default", out="credit_report", *, target: str = DEFAULT_TARGET, segment: str = DEFAULT_SEGMENT,
             ks=DEMO_KS, draws: int = 20, learners=CREDIT_LEARNERS, training: CreditTraining = CreditTraining(),
             seed: int = 0, log=None) -> dict:
    """Leave-one-segment-out evaluation; writes ``out``/report.md, report.json, scores.csv and
    auc_by_k.png.

    Parameters
    ----------
    data : str, os.PathLike or pandas.DataFrame
        Loans: a CSV / Parquet file or a DataFrame, one row per loan ('default': the embedded
        German credit data).
    out : str or os.PathLike
        The report directory to write (new or empty).
    target : str
        The 0/1 default column.
    segment : str
        The column whose values are the segments (the tasks).
    training : CreditTraining
        The learner and its meta-training settings.
    ks : sequence of int
        Support sizes (labelled loans of the held-out segment, at least 2).
    draws : int
        Random supports per segment and size.
    learners : sequence of str
        The meta-learners to compare (with the baselines).
    seed : int
        The draws' seed.
    log : callable, optional
        Called with each progress line (None: silent).

    Returns
    -------
    dict
        Per support size: each method's mean AUC, KS and Brier score over (segment, draw) with 95 %
        intervals, and the best meta-learner against the best baseline on the same draws.
    """
    check_output(out, "dir")
    if not ks:
        raise ValueError("--k: give one or more support sizes >= 2")
    for k in ks:
        check_int("--k", k, 2)
    check_int("--draws", draws, 2, 10_000)
    unknown = [m for m in learners if m not in CREDIT_LEARNERS]
    if unknown or not learners:
        raise ValueError(f"--learners: choose from {', '.join(CREDIT_LEARNERS)}, got {list(learners)}")
    t0 = time.perf_counter()
    loans = load_credit(data, target=target, segment=segment)
    scores, found = evaluate_credit(loans, ks, draws, tuple(learners), replace(training, seed=seed), seed, log)
    summary = summarise(found, learners)
    elapsed = time.perf_counter() - t0
    _write_report(Path(out), loans, scores, found, summary, ks, draws, learners, elapsed)
    if log:
        log(f"report written to {out} ({elapsed:.0f} s)")
    return summary


def demo(out="credit_demo", *, draws: int = 20, seed: int = 0, log=None) -> dict:
    """``evaluate`` on the embedded German credit data, segments by loan purpose."""
    return evaluate("default", out, ks=DEMO_KS, draws=draws, seed=seed, log=log)


def _write_report(out: Path, loans: CreditData, scores, found, summary, ks, draws, learners, elapsed) -> None:
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    sizes = {s: int((loans.segment == s).sum()) for s in loans.segments}
    bads = {s: int(loans.y[loans.segment == s].sum()) for s in loans.segments}
    left_out = {k: [s for s in loans.segments if s not in eligible_segments(loans, k)] for k in ks}
    lines = ["# metarisk credit evaluation: few-shot scoring of new segments\n",
             f"Data `{loans.source}`: {len(loans)} loans, {int(loans.y.sum())} defaults, segments by "
             f"`{loans.segment_column}` ({', '.join(f'{s}: {sizes[s]} loans, {bads[s]} bad' for s in loans.segments)}).",
             f"Leave one segment out: the learners ({', '.join(learners)}) are meta-trained on the other segments "
             f"and the input transform fitted on them alone; each adapts to K labelled loans of the held-out "
             f"segment and scores the rest. {draws} seeded K-shot draws per segment (each with both classes). "
             "Baselines on the same loans: logistic regression and LightGBM on the pooled training segments "
             "(`*_pooled`), the same refitted with the K loans (`*_pooled_plus_k`), logistic regression on the K "
             f"loans alone. A segment needs K + {MIN_QUERY} loans and two of each class. Run time {elapsed:.0f} s.\n",
             "Power: 1,000 loans. The intervals are 95 % t intervals over the (segment, draw) values; draws of one "
             "segment share most of their loans, so they are narrower than independent samples would give: read a "
             "difference inside a few hundredths of AUC as no difference.\n"]
    for k in ks:
        if k not in summary:
            continue
        s = summary[k]
        lines.append(f"## K = {k} (segments: {', '.join(s['segments'])}; left out as too small: "
                     f"{', '.join(left_out[k]) or 'none'})\n")
        lines.append("| method | AUC [95 % CI] | KS | Brier |\n| --- | --- | --- | --- |")
        for m, r in sorted(s["methods"].items(), key=lambda kv: -kv[1]["auc"]):
            lines.append(f"| {m} | {r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}] | {r['ks']:.3f} | "
                         f"{r['brier']:.3f} |")
        lo, hi = s["auc_difference_ci"]
        lines.append(f"\nBest meta-learner `{s['best_meta_learner']}` against best baseline `{s['best_baseline']}`, "
                     f"paired on {s['n_pairs']} draws: AUC difference {s['auc_difference']:+.4f} "
                     f"[{lo:+.4f}, {hi:+.4f}], paired t-test p = {s['paired_t_pvalue']:.3g}.\n")
    per_seg = found.groupby(["k", "segment", "method"]).auc.mean().unstack("method")
    per_seg.index = [f"K = {k}, {s}" for k, s in per_seg.index]
    lines += ["## Mean AUC per segment\n", markdown_table(per_seg, list(per_seg.columns), "segment"), ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    atomic_write_text(out / "report.json", json.dumps(
        {"data": loans.source, "segment_column": loans.segment_column, "segments": sizes, "defaults": bads,
         "draws": draws, "ks": list(ks), "left_out": left_out, "seconds": round(elapsed, 1),
         "summary": {str(k): v for k, v in summary.items()},
         "per_draw": found.to_dict(orient="records")}, indent=1))
    atomic_write_text(out / "scores.csv", scores.to_csv(index=False))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = [*learners, *BASELINES]
    for i, m in enumerate(methods):
        got = [(k, summary[k]["methods"][m]) for k in ks if k in summary and m in summary[k]["methods"]]
        if got:
            x = np.array([k for k, _ in got], float) * (1 + 0.012 * (i - len(methods) / 2))  # side by side
            y = np.array([r["auc"] for _, r in got])
            ci = np.array([r["auc_ci"] for _, r in got])
            ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], marker="o", capsize=2, label=m,
                        linestyle="-" if m in learners else "--")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.set_xlabel("K labelled loans of the new segment")
    ax.set_ylabel("mean held-out AUC (95 % interval)")
    ax.set_title(f"Few-shot scoring of a new segment ({loans.source}, segments by {loans.segment_column})")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    atomic_write_bytes(out / "auc_by_k.png", png_bytes(fig))
