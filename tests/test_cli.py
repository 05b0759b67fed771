"""The `metarisk` command end to end on a small synthetic panel, and its bad-input messages."""
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from metarisk_fast import datasets
from metarisk_fast.cli import main
from metarisk_fast.forecasting import load_model
from metarisk_fast.forecasting.model_files import write_model_dir
from metarisk_fast.tasks import TARGET


@pytest.fixture(scope="module")
def prices(tmp_path_factory):
    d = tmp_path_factory.mktemp("prices")
    p = datasets.synthetic_ohlc(n_days=900, n_assets=6, seed=4)
    wide = pd.DataFrame(np.round(p.close, 4), columns=list(p.assets))
    wide.insert(0, "Date", p.dates.astype(str))
    path = d / "wide.csv"
    wide.to_csv(path, index=False)
    one = d / "one.csv"
    wide[["Date", "SYN000"]].to_csv(one, index=False)
    short = d / "short.csv"
    wide.iloc[:40].to_csv(short, index=False)
    return {"wide": path, "one": one, "short": short, "dates": p.dates}


@pytest.fixture(scope="module")
def model(prices, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["train", "--prices", str(prices["wide"]), "--out", str(out), "--steps", "8", "--batch", "16",
                 "--history", "40", "--quiet", "--train-end", str(prices["dates"][600])]) == 0
    return out


def test_train_writes_a_model_directory(model):
    meta = json.loads((model / "model.json").read_text())
    assert meta["learner"] == "maml" and meta["history"] == 40 and len(meta["train_assets"]) == 5
    assert meta["validation"]["qlike_model"] < 0 and (model / "model.pt").exists()
    assert meta["loss"] == TARGET.loss and meta["task_spec"]["features"]["downside_lambdas"] == [0.94, 0.97]
    assert load_model(model)[1].young_prior == meta["task_spec"]["young_prior"] > 0  # set from the training rows


def test_a_model_saved_before_the_young_prior_loads_without_one(model, tmp_path):
    """A model.json without task_spec.young_prior (written before it existed) reads as 0: young
    anchors from the stretch's own returns alone, as that model was trained."""
    learner, spec, meta = load_model(model)
    meta["task_spec"].pop("young_prior")
    write_model_dir(tmp_path / "old", "model.json", learner, meta)  # its hashes written anew
    assert load_model(tmp_path / "old")[1] == replace(spec, young_prior=0.0)


def test_multi_day_models_train_on_the_gaussian_likelihood(prices, tmp_path):
    """The t likelihood is for a daily return; an h-day mean trains on QLIKE's Gaussian form."""
    assert TARGET.loss_for(1) == "student_t_nll" and TARGET.loss_for(5) == "gaussian_nll"
    out = tmp_path / "m5"
    assert main(["train", "--prices", str(prices["wide"]), "--out", str(out), "--steps", "2", "--batch", "8",
                 "--history", "30", "--horizon", "5", "--quiet"]) == 0
    assert json.loads((out / "model.json").read_text())["loss"] == "gaussian_nll"


def test_model_files_without_a_loss_adapt_with_the_gaussian_one(model, tmp_path):
    """Model directories written before the loss was recorded were all trained on the Gaussian
    likelihood: they load with it."""
    from metarisk_fast.forecasting import load_model
    from metarisk_fast.forecasting.model_files import write_model_dir

    learner, _, meta = load_model(model)
    assert learner.loss == meta["loss"]
    old = {k: v for k, v in meta.items() if k not in ("loss", "weights_sha256", "format_version",
                                                       "metarisk_fast_version", "torch_version")}
    write_model_dir(tmp_path / "old", "model.json", learner, old)
    assert load_model(tmp_path / "old")[0].loss == "gaussian_nll"


def test_forecast_csv_for_seen_and_unseen_single_asset(model, prices, tmp_path):
    out = tmp_path / "f.csv"
    start = str(prices["dates"][700])
    assert main(["forecast", "--model", str(model), "--prices", str(prices["one"]), "--out", str(out),
                 "--start", start, "--quiet"]) == 0
    f = pd.read_csv(out)
    assert list(f.columns[:3]) == ["date", "asset", "forecast_variance"]
    assert f["date"].min() == start and f["asset"].unique().tolist() == ["SYN000"]
    assert len(f) == 900 - 700 and (f["forecast_variance"] > 0).all() and (f["var_1"] < f["var_5"]).all()
    assert (f["es_2_5"] < f["var_5"]).all()


def test_forecast_with_less_history_than_asked(model, prices, tmp_path):
    """A recently listed asset is forecast from its second price on, every day, from the days it
    has (at most --history)."""
    wide = pd.read_csv(prices["wide"])
    wide.loc[:649, "SYN001"] = np.nan  # listed at row 650
    src, out = tmp_path / "young.csv", tmp_path / "f.csv"
    wide.to_csv(src, index=False)
    assert main(["forecast", "--model", str(model), "--prices", str(src), "--out", str(out), "--quiet",
                 "--start", wide["Date"][600]]) == 0
    f = pd.read_csv(out)
    young = f[f["asset"] == "SYN001"]
    rows = wide.index[wide["Date"].isin(young["date"])]
    assert list(rows) == list(range(651, len(wide)))  # the second price's day on, no day missing
    assert np.isfinite(young[["forecast_variance", "var_1", "es_2_5"]].to_numpy()).all()
    assert (young["forecast_variance"] > 0).all()
    assert young["date"].is_monotonic_increasing
    assert (f[f["asset"] == "SYN000"]["date"].min()) == wide["Date"][600]


def test_forecast_uses_only_the_past(model, prices, tmp_path):
    """Forecasts up to a date do not change when later prices are altered."""
    wide = pd.read_csv(prices["wide"])
    cut = 800
    altered = wide.copy()
    altered.iloc[cut:, 1:] *= 1.5
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    wide.to_csv(tmp_path / "w1.csv", index=False)
    altered.to_csv(tmp_path / "w2.csv", index=False)
    for src, out in ((tmp_path / "w1.csv", a), (tmp_path / "w2.csv", b)):
        assert main(["forecast", "--model", str(model), "--prices", str(src), "--out", str(out),
                     "--start", wide["Date"][700], "--quiet"]) == 0
    fa, fb = pd.read_csv(a), pd.read_csv(b)
    before = fa["date"] < wide["Date"][cut]
    np.testing.assert_allclose(fa[before]["forecast_variance"], fb[before]["forecast_variance"], rtol=1e-6)


def test_evaluate_writes_the_report(model, prices, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(model), "--prices", str(prices["wide"]), "--out", str(out),
                 "--start", str(prices["dates"][650]), "--no-garch", "--quiet"]) == 0
    for name in ("forecasts.csv", "report.json", "report.md", "forecast_vs_realised.png", "loss_by_model.png",
                 "var_exceedances.png"):
        assert (out / name).stat().st_size > 0
    cols = pd.read_csv(out / "forecasts.csv", nrows=1).columns.tolist()
    assert cols[:5] == ["date", "asset", "model", "forecast_variance", "realized_variance"]
    rep = json.loads((out / "report.json").read_text())
    table = rep["evaluations"][0]["table"]
    assert set(table) == {"maml", "ewma", "har", "log_har"}
    md = (out / "report.md").read_text()
    assert "Kupiec" in md
    # the verdict first: the evaluated model against every baseline out of sample, then its VaR
    summary = md[md.index("## Summary"):md.index("## maml model")]
    rows = [line for line in summary.splitlines() if line.startswith("| maml | ")]
    for baseline in ("ewma", "har", "log_har"):
        assert any(f" | {baseline} | " in row for row in rows), baseline
    assert "Student-t 1 % VaR exceeded on" in summary and "expected 1 %" in summary
    seen = set(rep["model"]["train_assets"]) & set(pd.read_csv(out / "forecasts.csv").asset)
    assert "QLIKE by asset" in md and md.count("(in-sample days)") == len(seen) > 0
    assert "QLIKE by age" not in md and not (out / "loss_by_age.png").exists()  # every asset is mature here


def test_evaluate_reports_a_young_asset_by_age(model, prices, tmp_path):
    """An asset listed inside the evaluated period is scored from its second price, by age."""
    wide = pd.read_csv(prices["wide"])
    wide.loc[:649, "SYN001"] = np.nan  # listed at row 650
    src, out = tmp_path / "young.csv", tmp_path / "ev"
    wide.to_csv(src, index=False)
    assert main(["evaluate", "--model", str(model), "--prices", str(src), "--out", str(out),
                 "--start", str(prices["dates"][600]), "--no-garch", "--quiet"]) == 0
    md = (out / "report.md").read_text()
    by_age = md[md.index("QLIKE by age"):]
    for ages in ("2-20", "21-60", "61-250"):
        assert f"| {ages} | maml | " in by_age and f"| {ages} | ewma | " in by_age
    assert (out / "loss_by_age.png").stat().st_size > 0
    rows = json.loads((out / "report.json").read_text())["evaluations"][0]["meta"]["by_age"]
    young = [r for r in rows if r["ages"] == "2-20" and r["model"] == "maml"][0]
    assert young["n"] == 19 and young["listings"] == 1  # ages 2..20 of the one listing


@pytest.mark.parametrize("learner", ["fomaml", "reptile", "metasgd", "pooled", "memory", "memory_maml", "head"])
def test_every_learner_trains_saves_loads_and_forecasts(learner, prices, tmp_path):
    out = tmp_path / "m"
    assert main(["train", "--prices", str(prices["wide"]), "--out", str(out), "--steps", "3", "--batch", "8",
                 "--history", "30", "--memory-slots", "40", "--learner", learner, "--quiet"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["memory_slots"] == (40 if learner == "memory" else None)
    # the head learner: its own body and rows scaled by their own anchors, saved for every reader
    assert (meta["hidden"], meta["task_spec"]["scale"]) == (([32], "row") if learner == "head" else ([64, 64], "support"))
    assert main(["forecast", "--model", str(out), "--prices", str(prices["one"]), "--out", str(tmp_path / "f.csv"),
                 "--start", str(prices["dates"][850]), "--quiet"]) == 0
    f = pd.read_csv(tmp_path / "f.csv")
    assert len(f) == 50 and (f["forecast_variance"] > 0).all()


@pytest.mark.slow  # the whole demo, end to end
def test_demo_smoke(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "d"), "--steps", "2", "--batch", "8", "--learners", "fomaml",
                 "--histories", "20", "--no-garch", "--inner-steps", "2", "--quiet"]) == 0
    md = (tmp_path / "d" / "report.md").read_text()
    assert "few-shot, history k = 20 days" in md and "fomaml" in md and "ewma" in md
    assert "(2 gradient steps;" in md
    assert "new listings: " in md and "QLIKE by age" in md and (tmp_path / "d" / "loss_by_age.png").exists()


@pytest.mark.slow  # trains two learners
def test_demo_loads_its_shipped_learners_and_retraining_reproduces_them(tmp_path):
    """With the demo's settings the package's pretrained learners are loaded, not trained; saved
    with --save-models they record those settings; retrained here they score within 2e-3 QLIKE of
    the shipped ones (training is not bit-identical across machines)."""
    from metarisk_fast.forecasting import load_model
    from metarisk_fast.volatility.jobs import TrainOptions, demo, demo_settings

    kw = dict(learners=("pooled", "head"), histories=(60,), garch=False)
    shipped, _ = demo(tmp_path / "a", save_models=tmp_path / "models", **kw)
    md = (tmp_path / "a" / "report.md").read_text()
    assert "pooled, head loaded as shipped" in md
    _, _, meta = load_model(tmp_path / "models" / "head")
    assert meta["demo_settings"] == demo_settings("head", 1, meta["demo_settings"]["train_end"], 5, TrainOptions(),
                                                  meta["task_spec"]["young_prior"])
    assert 1e-5 < meta["task_spec"]["young_prior"] < 1e-3  # a stock's daily variance
    again, _ = demo(tmp_path / "b", retrain=True, **kw)
    assert "loaded as shipped" not in (tmp_path / "b" / "report.md").read_text()
    for kind in ("pooled", "head"):
        assert abs(shipped[0].table.loc[kind, "qlike"] - again[0].table.loc[kind, "qlike"]) < 2e-3, kind


@pytest.mark.parametrize("argv, message", [
    (["train", "--prices", "{one}", "--out", "{tmp}/m"], "needs two or more"),
    (["train", "--prices", "{short}", "--out", "{tmp}/m"], "too little history"),
    (["train", "--prices", "{wide}", "--out", "{tmp}/m", "--train-end", "1900-01-01"], "before the first date"),
    (["train", "--prices", "{tmp}/absent.csv", "--out", "{tmp}/m"], "no such file"),
    (["forecast", "--model", "{tmp}/nope", "--prices", "{wide}", "--out", "{tmp}/f.csv"], "no such model directory"),
    (["forecast", "--model", "{model}", "--prices", "{wide}", "--out", "{tmp}/f.csv", "--start", "2100-01-01"],
     "after the last date"),
])
def test_bad_input_exits_nonzero_with_a_clear_message(argv, message, prices, model, tmp_path, capsys):
    fill = {"one": prices["one"], "short": prices["short"], "wide": prices["wide"], "tmp": tmp_path, "model": model}
    argv = [a.format(**fill) for a in argv] + ["--quiet"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_edited_model_setting_is_refused(model, prices, tmp_path, capsys):
    """model.json's settings are checksummed with the weights: an inner_lr edited by hand (the
    forecasts would move 0.5-2.4x) is refused by name, not used."""
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(model, edited)
    meta = json.loads((edited / "model.json").read_text())
    meta["inner_lr"] = meta["inner_lr"] * 10
    (edited / "model.json").write_text(json.dumps(meta, indent=2))
    assert main(["forecast", "--model", str(edited), "--prices", str(prices["wide"]), "--out", str(tmp_path / "f.csv"),
                 "--quiet"]) == 2
    assert "settings were changed after the model was saved" in capsys.readouterr().err
    assert not (tmp_path / "f.csv").exists()


def test_damaged_model_is_reported(model, prices, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    data = bytearray((bad / "model.pt").read_bytes())
    data[100] ^= 0xFF
    (bad / "model.pt").write_bytes(bytes(data))
    assert main(["forecast", "--model", str(bad), "--prices", str(prices["wide"]), "--out", str(tmp_path / "f.csv"),
                 "--quiet"]) == 2
    assert "damaged" in capsys.readouterr().err
    (bad / "model.json").write_text(json.loads(json.dumps("{not json")))
    assert main(["forecast", "--model", str(bad), "--prices", str(prices["wide"]), "--out", str(tmp_path / "f.csv"),
                 "--quiet"]) == 2
    assert "damaged" in capsys.readouterr().err
    assert not (tmp_path / "f.csv").exists()


def test_help_on_every_subcommand(capsys):
    for sub in ("demo", "train", "forecast", "evaluate"):
        with pytest.raises(SystemExit) as e:
            main([sub, "--help"])
        assert e.value.code == 0
        assert "--seed" in capsys.readouterr().out


def test_evaluate_defaults_to_after_the_training_end(model, prices, tmp_path, capsys):
    """Without --start the evaluation begins after the model's training end and an h-day embargo;
    asked for earlier dates, the report says which rows are in-sample."""
    meta = json.loads((model / "model.json").read_text())
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(model), "--prices", str(prices["wide"]), "--out", str(out),
                 "--no-garch", "--quiet"]) == 0
    rep = json.loads((out / "report.json").read_text())["evaluations"][0]["meta"]
    assert rep["first_date"] > meta["train_end"]
    f = pd.read_csv(out / "forecasts.csv")
    assert f["in_sample"].sum() == f["asset"].isin(meta["train_assets"]).sum()  # training assets, later dates
    early = tmp_path / "early"
    assert main(["evaluate", "--model", str(model), "--prices", str(prices["wide"]), "--out", str(early),
                 "--start", str(prices["dates"][400]), "--no-garch", "--quiet"]) == 0
    md = (early / "report.md").read_text()
    assert "**In-sample:" in md
    f = pd.read_csv(early / "forecasts.csv")
    assert f.loc[f["date"] <= meta["train_end"], "in_sample"].all()
    assert "in-sample" in capsys.readouterr().out


def test_long_csv_missing_a_column_names_it(tmp_path, capsys, model):
    p = datasets.synthetic_ohlc(n_days=60, n_assets=2, seed=1)
    frame = pd.DataFrame({"date": np.repeat(p.dates.astype(str), 2), "asset": np.tile(list(p.assets), 60),
                          "close": p.close.ravel()})
    for drop in ("close", "asset"):
        path = tmp_path / f"no_{drop}.csv"
        frame.drop(columns=drop).assign(open=1.0, high=2.0).to_csv(path, index=False)
        assert main(["forecast", "--model", str(model), "--prices", str(path), "--out", str(tmp_path / "f.csv")]) == 2
        err = capsys.readouterr().err
        assert f"no '{drop}' column" in err and "not sorted" not in err


def test_messages_print_plain_numbers(tmp_path, capsys, model):
    path = tmp_path / "neg.csv"
    path.write_text("Date,A\n2020-01-01,10\n2020-01-02,-49.559\n")
    assert main(["forecast", "--model", str(model), "--prices", str(path), "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert "price -49.559 is not" in err and "np.float64" not in err


@pytest.mark.parametrize("argv, option", [
    (["forecast", "--model", "{model}", "--prices", "{wide}", "--out", "{tmp}/f.csv", "--start", "notadate"],
     "--start"),
    (["forecast", "--model", "{model}", "--prices", "{wide}", "--out", "{tmp}/f.csv", "--history", "0"], "--history"),
    (["forecast", "--model", "{model}", "--prices", "{wide}", "--out", "{tmp}/f.csv", "--history", "-5"], "--history"),
    (["train", "--prices", "{wide}", "--out", "{tmp}/m", "--steps", "0"], "--steps"),
    (["train", "--prices", "{wide}", "--out", "{tmp}/m", "--batch", "0"], "--batch"),
    (["train", "--prices", "{wide}", "--out", "{tmp}/m", "--horizon", "0"], "--horizon"),
    (["train", "--prices", "{wide}", "--out", "{tmp}/m", "--meta-lr", "nan"], "--meta-lr"),
    (["train", "--prices", "{wide}", "--out", "{tmp}/m", "--train-end", "2020-13-45"], "--train-end"),
    (["demo", "--histories", "0"], "--histories"),
    (["demo", "--threads", "0"], "--threads"),
    (["train", "--prices", "{wide}", "--out", "{tmp}/m", "--learner", "lstm"], "--learner"),
    (["demo", "--memory-slots", "0"], "--memory-slots"),
])
def test_bad_options_name_the_option(argv, option, prices, model, tmp_path, capsys):
    fill = {"wide": prices["wide"], "tmp": tmp_path, "model": model}
    with pytest.raises(SystemExit) as e:
        main([a.format(**fill) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def test_a_memory_too_small_for_the_histories_is_refused_before_training(tmp_path, capsys):
    """A memory learner writes each support row into a slot: `demo --histories 300` with the
    default 256 slots fails at once and names the option that fixes it."""
    import time

    t0 = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path / "d"), "--histories", "300", "--learners", "memory", "--quiet"]) == 2
    assert time.perf_counter() - t0 < 5
    err = capsys.readouterr().err
    assert "--histories 300" in err and "--memory-slots" in err
    assert not (tmp_path / "d").exists()


def test_out_paths_are_checked_before_the_work(prices, model, tmp_path, capsys):
    import time

    assert main(["forecast", "--model", str(model), "--prices", str(prices["wide"]), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    existing = tmp_path / "file.txt"
    existing.write_text("keep me")
    t0 = time.perf_counter()
    assert main(["train", "--prices", str(prices["wide"]), "--out", str(existing), "--steps", "2000"]) == 2
    assert time.perf_counter() - t0 < 5  # refused before training
    assert "exists and is not a directory" in capsys.readouterr().err and existing.read_text() == "keep me"
    assert main(["evaluate", "--model", str(model), "--prices", str(prices["wide"]), "--out", str(existing)]) == 2
    assert main(["demo", "--out", str(existing)]) == 2


def test_an_unwritable_out_is_refused_before_the_work_and_named(prices, model, tmp_path, capsys, monkeypatch):
    """A place the process cannot write (simulated: the tests run as root) is refused up front;
    a write that fails anyway names the file asked for, not its temporary twin."""
    import os
    import tempfile

    from metarisk_fast import _files

    monkeypatch.setattr(_files.os, "access", lambda path, mode: False)
    assert main(["forecast", "--model", str(model), "--prices", str(prices["wide"]), "--out",
                 str(tmp_path / "f.csv"), "--quiet"]) == 2
    assert f"--out {tmp_path / 'f.csv'}: {tmp_path} is not writable" in capsys.readouterr().err
    monkeypatch.setattr(_files.os, "access", os.access)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".f.csv.x1y2.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OSError, match=rf"cannot write {tmp_path / 'f.csv'}: Permission denied") as e:
        _files.atomic_write_text(tmp_path / "f.csv", "x")
    assert ".tmp" not in str(e.value)


def test_output_files_respect_the_umask(model, prices, tmp_path):
    import os

    old = os.umask(0o027)
    try:
        out = tmp_path / "f.csv"
        assert main(["forecast", "--model", str(model), "--prices", str(prices["one"]), "--out", str(out),
                     "--quiet", "--start", str(prices["dates"][850])]) == 0
        assert out.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


@pytest.mark.parametrize("argv, message", [
    (["stream", "--model", "{model}", "--prices", "{wide}", "--out", "{tmp}/f.csv", "--state", "{tmp}/e.npz"],
     "stream --state is for a live feed"),
    (["stream", "--model", "{model}", "--prices", "{wide}", "--out", "{tmp}/f.csv", "--warm-up", "{wide}"],
     "stream --warm-up is for a live feed"),
    (["stream", "--model", "{model}", "--out", "{tmp}/f.csv"], "stream --out needs --prices"),
    (["stream", "--model", "{model}", "--start", "2020-01-02"], "stream --start needs --prices"),
])
def test_stream_refuses_options_of_the_other_mode(argv, message, prices, model, tmp_path, capsys):
    fill = {"wide": prices["wide"], "tmp": tmp_path, "model": model}
    with pytest.raises(SystemExit) as e:
        main([a.format(**fill) for a in argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "f.csv").exists()


def test_long_commands_say_what_they_start(model, prices, tmp_path, capsys):
    assert main(["forecast", "--model", str(model), "--prices", str(prices["wide"]), "--out",
                 str(tmp_path / "f.csv")]) == 0
    err = capsys.readouterr().err
    assert "forecasting 6 assets x" in err and "with the maml model, history 40" in err and "forecast in" in err
    assert main(["stream", "--model", str(model), "--prices", str(prices["one"]), "--out", str(tmp_path / "s.csv")]) == 0
    assert "replaying" in capsys.readouterr().err


def test_an_interrupt_is_one_line_and_exit_130(monkeypatch, tmp_path, capsys):
    from metarisk_fast.volatility import jobs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "train", interrupted)
    assert main(["train", "--prices", "default", "--out", str(tmp_path / "m"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "metarisk train: interrupted"


def test_every_subcommand_describes_itself_without_format_escapes(capsys):
    for argv in (["demo"], ["train"], ["forecast"], ["stream"], ["evaluate"], ["warn"], ["credit", "train"],
                 ["credit", "evaluate"], ["trade", "train"], ["trade", "demo"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        out = capsys.readouterr().out
        assert "%%" not in out, argv
        if argv[0] in ("demo", "train", "evaluate", "forecast", "stream"):
            assert len(out.split("\n\n")) >= 3, f"{argv}: no description"


def test_help_explains_options_and_units(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "learners to meta-train and compare" in out and "few-shot history lengths" in out
    with pytest.raises(SystemExit):
        main(["forecast", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for phrase in ("daily variance units", "negative numbers", "For h > 1 they are one-day figures"):
        assert phrase in out


def test_the_library_calls_check_their_arguments(prices, model, tmp_path):
    from metarisk_fast.volatility import jobs

    for kw, match in ((dict(steps=0), "steps"), (dict(batch=-1), "batch"), (dict(meta_lr=float("nan")), "meta_lr"),
                      (dict(inner_steps=20_000), "inner_steps"), (dict(hidden=()), "hidden")):
        with pytest.raises(ValueError, match=match):
            jobs.TrainOptions(**kw)
    with pytest.raises(ValueError, match="history"):
        jobs.train(prices["wide"], tmp_path / "m", history=0)
    with pytest.raises(ValueError, match="nproc"):
        jobs.train(prices["wide"], tmp_path / "m", nproc=0)
    with pytest.raises(ValueError, match="history"):
        jobs.forecast(model, prices["wide"], history=-5)
    with pytest.raises(ValueError, match="histories"):
        jobs.demo(tmp_path / "d", histories=())
    with pytest.raises(ValueError, match="learners"):
        jobs.demo(tmp_path / "d", learners=("lstm",))
    assert not (tmp_path / "m").exists()


def test_forecast_reads_a_semicolon_file_and_writes_wide(tmp_path, capsys):
    """`--sep ';'` reads a spreadsheet's file; `--wide` writes the forecast variance one column per
    asset, which reads back as a wide file and equals the long table's numbers; a .parquet name
    writes the same tables as Parquet, a directory name a Parquet dataset partitioned by year."""
    from metarisk_fast.data import load_prices
    from metarisk_fast.datasets import load_sp500_20

    p = load_sp500_20(warn_data=False).select(assets=["AAPL", "JPM", "XOM"], start="2022-01-01")
    frame = pd.DataFrame(p.close, index=pd.DatetimeIndex(p.dates), columns=list(p.assets))
    frame.to_csv(tmp_path / "semi.csv", sep=";")
    args = ["forecast", "--model", "default", "--prices", str(tmp_path / "semi.csv"), "--sep", ";", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "long.csv")]) == 0
    assert main(args + ["--out", str(tmp_path / "wide.csv"), "--wide"]) == 0
    long = pd.read_csv(tmp_path / "long.csv")
    wide = load_prices(tmp_path / "wide.csv", warn_data=False)
    assert wide.assets == ("AAPL", "JPM", "XOM")
    back = pd.DataFrame(wide.close, index=pd.Index(wide.dates.astype(str)), columns=list(wide.assets)).stack()
    np.testing.assert_allclose(back.to_numpy(), long.set_index(["date", "asset"]).forecast_variance.to_numpy(),
                               rtol=1e-15)
    assert main(args[:-3] + ["--out", str(tmp_path / "x.csv"), "--quiet"]) == 2
    assert "look separated by ';'" in capsys.readouterr().err
    # a .parquet name writes Parquet: the same table, typed columns; --wide too (read back as a price file)
    assert main(args + ["--out", str(tmp_path / "long.parquet")]) == 0
    assert main(args + ["--out", str(tmp_path / "wide.pq"), "--wide"]) == 0
    table = pd.read_parquet(tmp_path / "long.parquet")
    assert list(table.columns) == list(long.columns) and pd.api.types.is_datetime64_any_dtype(table["date"])
    assert (table["asset"] == long["asset"]).all()
    exact = pd.read_csv(tmp_path / "long.csv", float_precision="round_trip")
    np.testing.assert_array_equal(table.iloc[:, 2:].to_numpy(), exact.iloc[:, 2:].to_numpy())
    assert (table["date"].dt.strftime("%Y-%m-%d") == long["date"]).all()
    wide_pq = load_prices(tmp_path / "wide.pq", warn_data=False)
    np.testing.assert_array_equal(wide_pq.close.ravel(), table.forecast_variance.to_numpy())
    # a name ending in '/': a Parquet dataset partitioned by year, the same long table read back
    assert main(args + ["--out", str(tmp_path / "dataset") + "/"]) == 0
    assert [p.name for p in (tmp_path / "dataset").iterdir()] == ["year=2022"]
    back = pd.read_parquet(tmp_path / "dataset").sort_values(["date", "asset"], kind="stable")
    np.testing.assert_array_equal(back.drop(columns="year").iloc[:, 2:].to_numpy(), table.iloc[:, 2:].to_numpy())
    for extra, match in (([], "exists and is not empty"), (["--wide"], "give a file name for --wide")):
        target = str(tmp_path / ("dataset" if not extra else "other")) + "/"
        assert main(args + ["--out", target, *extra]) == 2
        assert match in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
