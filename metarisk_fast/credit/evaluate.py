"""Leave-one-segment-out evaluation of few-shot credit scoring. For every segment large enough,
every learner is meta-trained on the other segments (the input transform fitted on them alone),
then adapts to K labelled loans of the held-out segment and scores the rest; many seeded K-shot
draws per segment. Baselines see the same loans: logistic regression and gradient boosting on
the pooled training segments, the same plus the K target loans, and logistic regression on the K
loans alone. Metrics per draw: AUC, KS, Brier; intervals over draws; a paired comparison of the
best meta-learner with the best baseline."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats
from lightgbm import LGBMClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

from ..evaluation import mean_interval
from .data import CreditData, CreditEncoder
from .learn import CreditTraining, adapt_scores, meta_train

BASELINES = ("logit_pooled", "logit_pooled_plus_k", "logit_k_only", "gbm_pooled", "gbm_pooled_plus_k")
MIN_QUERY = 25  # loans scored per draw, at least: a segment needs K + this many


def _logit():
    return LogisticRegression(C=1.0, max_iter=2000)


def _gbm(seed):
    return LGBMClassifier(n_estimators=100, learning_rate=0.05, num_leaves=8, min_child_samples=10, subsample=0.8,
                          subsample_freq=1, colsample_bytree=0.8, random_state=seed, n_jobs=1, verbose=-1)


def draw_supports(rng: np.random.Generator, y: np.ndarray, k: int, draws: int, max_tries: int = 100) -> np.ndarray:
    """(draws, k) support rows of one segment, each holding both classes (a draw with one class
    is redrawn: a lender labels a few of each before scoring a new segment)."""
    out = np.empty((draws, k), np.int64)
    pending = np.arange(draws)  # draws still without both classes
    for _ in range(max_tries):
        picks = np.argsort(rng.random((len(pending), len(y))), axis=1)[:, :k]
        both = (y[picks].min(axis=1) == 0) & (y[picks].max(axis=1) == 1)
        out[pending[both]] = picks[both]
        pending = pending[~both]
        if len(pending) == 0:
            return out
    raise ValueError(f"could not draw {k} loans with both classes from a segment of {len(y)} ({int(y.sum())} bad)")


def metrics(y: np.ndarray, score: np.ndarray) -> dict:
    """AUC, Kolmogorov-Smirnov statistic and Brier score of default probabilities ``score`` for
    outcomes ``y`` (0/1)."""
    fpr, tpr, _ = roc_curve(y, score)
    return {"auc": float(roc_auc_score(y, score)), "ks": float(np.max(tpr - fpr)),
            "brier": float(np.mean((score - y) ** 2))}


def eligible_segments(data: CreditData, k: int) -> list[str]:
    """Segments with at least k + MIN_QUERY loans and at least 2 of each class."""
    out = []
    for s in data.segments:
        y = data.y[data.segment == s]
        if len(y) >= k + MIN_QUERY and 2 <= y.sum() <= len(y) - 2:
            out.append(s)
    return out


def evaluate_credit(data: CreditData, ks=(10, 25, 50), draws: int = 20, learners=("maml", "fomaml", "reptile",
                    "metasgd", "memory"), training: CreditTraining = CreditTraining(), seed: int = 0,
                    log=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores: one row per scored loan — segment, draw, k, method, y, score —, metrics: one row per
    segment, k, method, draw)."""
    ks = sorted(set(int(k) for k in ks))
    folds = eligible_segments(data, ks[0])
    if not folds:
        raise ValueError(f"{data.source}: no segment of {data.segment_column!r} has {ks[0]} + {MIN_QUERY} loans with "
                         "both classes: nothing to evaluate")
    rows, found = [], []
    for f, held in enumerate(folds):
        train = data.take(np.flatnonzero(data.segment != held))
        test = data.take(np.flatnonzero(data.segment == held))
        enc = CreditEncoder.fit(train.frame)
        xtr, xte = enc.transform(train.frame), enc.transform(test.frame)
        if log:
            log(f"fold {f + 1}/{len(folds)}: held out {held!r} ({len(test)} loans, {int(test.y.sum())} bad); "
                f"meta-training {', '.join(learners)} on {len(train)} loans")
        models = {kind: meta_train(xtr, train.y, train.segment, replace(training, learner=kind))[0]
                  for kind in learners}
        # the baselines on float64 inputs: scikit-learn's solver works in float64, and OpenBLAS's float32
        # matrix-vector kernels on AVX-512 set a spurious 'invalid' flag now and then (numpy#24067)
        btr, bte = xtr.astype(np.float64), xte.astype(np.float64)
        pooled = {"logit_pooled": _logit().fit(btr, train.y), "gbm_pooled": _gbm(seed).fit(btr, train.y)}
        for k in ks:
            if held not in eligible_segments(data, k):
                continue
            rng = np.random.default_rng([seed, f, k])
            sup = draw_supports(rng, test.y, k, draws)
            mask = np.ones((draws, len(test)), bool)
            mask[np.arange(draws)[:, None], sup] = False
            qry = np.nonzero(mask)[1].reshape(draws, -1)
            scores = {kind: adapt_scores(m, xte[sup], test.y[sup], xte[qry]) for kind, m in models.items()}
            for name, model in pooled.items():
                scores[name] = model.predict_proba(bte[qry].reshape(-1, bte.shape[1]))[:, 1].reshape(qry.shape)
            plus = {"logit_pooled_plus_k": [], "gbm_pooled_plus_k": [], "logit_k_only": []}
            for d in range(draws):  # the baselines refit per draw: their own cost, not the engine's
                xk, yk = bte[sup[d]], test.y[sup[d]]
                xa, ya = np.vstack([btr, xk]), np.concatenate([train.y, yk])
                plus["logit_pooled_plus_k"].append(_logit().fit(xa, ya).predict_proba(bte[qry[d]])[:, 1])
                plus["gbm_pooled_plus_k"].append(_gbm(seed).fit(xa, ya).predict_proba(bte[qry[d]])[:, 1])
                plus["logit_k_only"].append(_logit().fit(xk, yk).predict_proba(bte[qry[d]])[:, 1])
            scores.update({name: np.array(v) for name, v in plus.items()})
            for method, sc in scores.items():
                for d in range(draws):
                    yq = test.y[qry[d]]
                    found.append({"segment": held, "k": k, "method": method, "draw": d, **metrics(yq, sc[d])})
                rows.append(pd.DataFrame({"segment": held, "draw": np.repeat(np.arange(draws), qry.shape[1]), "k": k,
                                          "method": method, "y": test.y[qry].reshape(-1), "score": sc.reshape(-1)}))
    return pd.concat(rows, ignore_index=True), pd.DataFrame(found)


def summarise(found: pd.DataFrame, learners) -> dict:
    """Per k: each method's mean AUC / KS / Brier over (segment, draw) with a 95 % interval
    (t over the draws' values), and the best meta-learner against the best baseline by mean AUC,
    paired on the same draws: mean difference, its 95 % interval, and the t-test p-value."""
    out = {}
    for k, g in found.groupby("k"):
        table = {}
        for method, m in g.groupby("method"):
            row = {}
            for col in ("auc", "ks", "brier"):
                row[col], lo, hi = mean_interval(m[col].to_numpy())
                row[f"{col}_ci"] = [lo, hi]
            row["n_draws"] = int(len(m))
            table[method] = row
        meta = [m for m in learners if m in table]
        base = [m for m in BASELINES if m in table]
        best_meta = max(meta, key=lambda m: table[m]["auc"])
        best_base = max(base, key=lambda m: table[m]["auc"])
        a = g[g.method == best_meta].sort_values(["segment", "draw"]).auc.to_numpy()
        b = g[g.method == best_base].sort_values(["segment", "draw"]).auc.to_numpy()
        diff = a - b
        mean, lo, hi = mean_interval(diff)
        test = stats.ttest_rel(a, b)
        out[int(k)] = {"methods": table, "best_meta_learner": best_meta, "best_baseline": best_base,
                       "auc_difference": mean, "auc_difference_ci": [lo, hi],
                       "paired_t_pvalue": float(test.pvalue), "n_pairs": int(len(diff)),
                       "segments": sorted(g.segment.unique().tolist())}
    return out
