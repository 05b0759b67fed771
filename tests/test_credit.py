"""Credit assessment: data checks, the transform fitted on training segments only, meta-training
over segments and adaptation to a new one, attributions that add up, the leave-one-segment-out
evaluation and the `metarisk credit` subcommands end to end (on a small synthetic book)."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from metarisk_fast.cli import main
from metarisk_fast.credit import jobs
from metarisk_fast.credit.data import CreditEncoder, load_credit
from metarisk_fast.credit.learn import CreditTraining, adapt_scores, attributions, meta_train
from metarisk_fast.data import DataError


def book(n_per=(160, 140, 120, 100, 60), seed=0) -> pd.DataFrame:
    """Loans of several segments: default risk rises with `debt` everywhere, and with `age` in
    some segments but falls with it in others (what a pooled model cannot know of a new segment)."""
    rng = np.random.default_rng(seed)
    frames = []
    for s, n in enumerate(n_per):
        debt, age = rng.normal(0, 1, n), rng.normal(0, 1, n)
        job = rng.choice(["a", "b", "c"], n)
        sign = 1.0 if s % 2 == 0 else -1.0
        logit = -1.0 + 1.2 * debt + 1.5 * sign * age + 0.5 * (job == "c")
        bad = rng.random(n) < 1 / (1 + np.exp(-logit))
        frames.append(pd.DataFrame({"debt": debt, "age": age, "job": job, "segment": f"s{s}",
                                    "status": np.where(bad, "bad", "good")}))
    return pd.concat(frames, ignore_index=True)


def test_bad_credit_data_is_named(tmp_path):
    df = book()
    with pytest.raises(DataError, match="no column 'nope'"):
        load_credit(df, target="nope", segment="segment")
    with pytest.raises(DataError, match="no column 'zone'"):
        load_credit(df, target="status", segment="zone")
    with pytest.raises(DataError, match="must be binary"):
        load_credit(df.assign(status=np.arange(len(df)) % 3), target="status", segment="segment")
    with pytest.raises(DataError, match="different columns"):
        load_credit(df, target="status", segment="status")
    with pytest.raises(DataError, match="missing on row 3"):
        load_credit(df.assign(status=df.status.where(df.index != 3)), target="status", segment="segment")
    (tmp_path / "junk.csv").write_bytes(b"\x00\xff\x00")
    with pytest.raises(DataError):
        load_credit(tmp_path / "junk.csv", target="status", segment="segment")
    emb = load_credit("default")
    assert len(emb) == 1000 and emb.y.sum() == 300 and len(emb.segments) == 10


def test_the_transform_sees_only_its_training_rows():
    df = book()
    loans = load_credit(df, target="status", segment="segment")
    train = loans.take(np.flatnonzero(loans.segment != "s0"))
    enc = CreditEncoder.fit(train.frame)
    held = loans.frame[loans.segment == "s0"].copy()
    shifted = held.assign(debt=held.debt + 100.0, job="zzz")
    assert CreditEncoder.fit(train.frame).to_json() == enc.to_json()  # the held-out rows never enter
    x = enc.transform(shifted)
    assert (x[:, enc.names.index("job=a"):] == 0).all()  # an unseen level: no column on
    np.testing.assert_allclose(x[:, 0], (shifted.debt - train.frame.debt.mean()) / train.frame.debt.std(ddof=0),
                               rtol=1e-5)
    assert CreditEncoder.from_json(enc.to_json()).names == enc.names


def test_meta_learning_adapts_to_a_segment_a_pooled_model_gets_wrong():
    """On segments whose `age` effect flips sign, the meta-learned model adapted on 40 loans of a
    new segment ranks its other loans better than the same model without adaptation."""
    loans = load_credit(book(n_per=(300, 300, 300, 300, 200), seed=1), target="status", segment="segment")
    enc = CreditEncoder.fit(loans.frame)
    x = enc.transform(loans.frame)
    train = loans.segment != "s4"
    learner, _ = meta_train(x[train], loans.y[train], loans.segment[train],
                            CreditTraining(steps=300, support=40, query=40, inner_lr=0.5, inner_steps=5))
    rows = np.flatnonzero(~train)
    sup, qry = rows[:40], rows[40:]
    adapted = adapt_scores(learner, x[sup][None], loans.y[sup][None], x[qry][None])[0]
    unadapted = adapt_scores(learner, x[sup][None][:, :1], loans.y[sup][None][:, :1], x[qry][None])[0]
    learner.inner_steps = 0
    frozen = adapt_scores(learner, x[sup][None], loans.y[sup][None], x[qry][None])[0]
    assert roc_auc_score(loans.y[qry], adapted) > roc_auc_score(loans.y[qry], frozen) + 0.05
    assert unadapted.shape == adapted.shape


@pytest.mark.parametrize("hidden", [(), (8,)])
def test_attributions_add_up_to_the_logit_change(hidden):
    loans = load_credit(book(), target="status", segment="segment")
    enc = CreditEncoder.fit(loans.frame)
    x = enc.transform(loans.frame)
    learner, _ = meta_train(x, loans.y, loans.segment, CreditTraining(steps=30, hidden=hidden))
    sup, qry = np.arange(30), np.arange(30, 40)
    base = x.mean(axis=0)
    contrib = attributions(learner, x[sup], loans.y[sup], x[qry], base, steps=64)
    p = adapt_scores(learner, x[sup][None], loans.y[sup][None], np.vstack([x[qry], base])[None])[0]
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(contrib.sum(axis=1), logit[:-1] - logit[-1], atol=2e-3 if hidden else 1e-4)


def test_credit_commands_end_to_end(tmp_path):
    df = book()
    df.to_csv(tmp_path / "book.csv", index=False)
    common = ["--data", str(tmp_path / "book.csv"), "--target", "status", "--segment", "segment", "--quiet"]
    assert main(["credit", "evaluate", *common, "--k", "10", "20", "--draws", "3", "--steps", "40",
                 "--learners", "maml", "memory", "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    scores = pd.read_csv(tmp_path / "report" / "scores.csv")
    assert list(scores.columns) == ["segment", "draw", "k", "method", "y", "score"]
    assert {"maml", "memory", "logit_pooled", "gbm_pooled_plus_k", "logit_k_only"} <= set(scores.method)
    # anyone can recompute the metrics from scores.csv
    one = scores[(scores.k == 10) & (scores.method == "maml") & (scores.segment == "s0") & (scores.draw == 1)]
    row = [r for r in report["per_draw"] if r["k"] == 10 and r["method"] == "maml" and r["segment"] == "s0"
           and r["draw"] == 1][0]
    assert roc_auc_score(one.y, one.score) == pytest.approx(row["auc"], abs=1e-12)
    assert (tmp_path / "report" / "auc_by_k.png").stat().st_size > 0 and "K = 20" in (tmp_path / "report" / "report.md").read_text()

    assert main(["credit", "train", *common, "--steps", "30", "--out", str(tmp_path / "model")]) == 0
    new = book(n_per=(80,), seed=9)
    new.iloc[:30].to_csv(tmp_path / "support.csv", index=False)
    new.iloc[30:].drop(columns=["status"]).to_csv(tmp_path / "loans.csv", index=False)
    assert main(["credit", "score", "--model", str(tmp_path / "model"), "--support", str(tmp_path / "support.csv"),
                 "--data", str(tmp_path / "loans.csv"), "--out", str(tmp_path / "scores.csv")]) == 0
    out = pd.read_csv(tmp_path / "scores.csv")
    assert len(out) == 50 and out.score.between(0, 1).all() and out.reason_1.str.contains("=").any()
    (tmp_path / "model" / "model.pt").write_bytes(b"damaged")
    with pytest.raises(jobs.CreditModelError, match="checksum"):
        jobs.load(tmp_path / "model")
    assert main(["credit", "score", "--model", str(tmp_path / "nope"), "--support", "x", "--data", "y",
                 "--out", str(tmp_path / "s.csv")]) == 2
