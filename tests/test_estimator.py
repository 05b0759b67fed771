"""RiskModel, the Python estimator: the shipped model forecasts out of the box, fit / save / load
round-trip, its forecasts are `metarisk forecast`'s, VaR / ES for any level and both
distributions, bad input named; the shipped model is what retraining with its settings gives."""
import json

import numpy as np
import pandas as pd
import pytest

from metarisk_fast import RiskModel, datasets
from metarisk_fast.cli import main
from metarisk_fast.evaluation import expected_shortfall, value_at_risk
from metarisk_fast.forecasting.model_files import SHIPPED_MODELS
from metarisk_fast.volatility import jobs


@pytest.fixture(scope="module")
def closes() -> pd.DataFrame:
    p = datasets.load_sp500_20(warn_data=False).select(assets=["AAPL", "JPM", "KO", "XOM"], start="2019-01-01",
                                                           end="2020-12-31")
    return pd.DataFrame(p.close, index=pd.DatetimeIndex(p.dates, name="Date"), columns=list(p.assets))


@pytest.mark.parametrize("name, learner", [("default", "maml"), ("streaming", "head")])
def test_a_shipped_model_forecasts_as_the_command_does(closes, tmp_path, name, learner):
    model = RiskModel.pretrained(name) if name != "default" else RiskModel.pretrained()
    fc = model.forecast(closes)
    assert fc.variance.shape == closes.shape and list(fc.variance.columns) == list(closes.columns)
    assert fc.variance.iloc[0].isna().all() and fc.variance.iloc[1:].notna().all().all()  # from the second price
    np.testing.assert_allclose(fc.vol.to_numpy() ** 2, fc.variance.to_numpy())
    src, out = tmp_path / "p.csv", tmp_path / "f.csv"
    closes.to_csv(src)
    assert main(["forecast", "--model", name, "--prices", str(src), "--out", str(out), "--quiet"]) == 0
    cli = pd.read_csv(out, parse_dates=["date"])
    mine = fc.to_frame()
    assert list(mine.columns) == list(cli.columns)
    np.testing.assert_array_equal(mine["date"].to_numpy(), cli["date"].to_numpy().astype("datetime64[D]"))
    np.testing.assert_allclose(mine[["forecast_variance", "var_1", "var_5", "es_2_5"]], cli.iloc[:, 2:], rtol=1e-12)
    assert model.info["learner"] == learner and "validation" in model.info


def test_var_and_es_for_any_level_in_either_distribution(closes):
    fc = RiskModel.pretrained().forecast(closes)
    assert fc.nu == 5.0  # the model's training likelihood
    v = fc.variance.to_numpy()[1:]
    np.testing.assert_allclose(fc.var(0.01).to_numpy()[1:], value_at_risk(v, 0.01, "t", 5.0))
    np.testing.assert_allclose(fc.var(0.05, "normal").to_numpy()[1:], value_at_risk(v, 0.05))
    np.testing.assert_allclose(fc.es(0.025).to_numpy()[1:], expected_shortfall(v, 0.025, "t", 5.0))
    assert (fc.es(0.01) < fc.var(0.01)).iloc[1:].all().all() and fc.var(0.01).iloc[0].isna().all()
    for bad in (0.0, 0.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            fc.var(bad)
    with pytest.raises(ValueError, match="dist must be"):
        fc.es(0.01, "cauchy")


# prices rebuilt from the returns of cent-rounded closes keep their relative rounding: the data
# check warns of it, rightly
@pytest.mark.filterwarnings("ignore::metarisk_fast.data.panel.QuantisationWarning")
def test_fit_save_load_and_inputs(closes, tmp_path):
    wide = datasets.load_sp500_20(warn_data=False).select(start="2012-01-01", end="2016-12-31")
    frame = pd.DataFrame(wide.close, index=pd.DatetimeIndex(wide.dates), columns=list(wide.assets))
    model = RiskModel(history=40).fit(frame, "2015-12-31", steps=3, seed=1)
    assert model.info["train_end"] == "2015-12-31" and model.info["meta_steps"] == 3
    fc = model.forecast(closes)
    model.save(tmp_path / "m")
    again = RiskModel.load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.forecast(closes).variance, fc.variance)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["history"] == 40
    one = model.forecast(closes["KO"])  # a Series: one asset
    pd.testing.assert_series_equal(one.variance["KO"], fc.variance["KO"])
    returns = np.log(closes).diff()
    from_returns = model.forecast(returns, returns=True)
    np.testing.assert_allclose(from_returns.variance.to_numpy()[1:], fc.variance.to_numpy()[1:], rtol=1e-9)
    later = model.forecast(closes, start="2020-06-01")
    pd.testing.assert_frame_equal(later.variance, fc.variance.loc["2020-06-01":])


def test_bad_use_is_named(closes):
    with pytest.raises(ValueError, match="forecast: the model is not fitted"):
        RiskModel().forecast(closes)
    with pytest.raises(ValueError, match="save: the model is not fitted"):
        RiskModel().save("/tmp/never")
    with pytest.raises(ValueError, match="learner must be one of"):
        RiskModel(learner="lstm").fit(closes)
    with pytest.raises(ValueError, match="history must be an int"):
        RiskModel(history=0).fit(closes)
    with pytest.raises(ValueError, match="needs two or more"):
        RiskModel().fit(closes[["KO"]])
    bad = np.log(closes).diff()
    bad.iloc[5, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        RiskModel.pretrained().forecast(bad, returns=True)
    neg = closes.copy()
    neg.iloc[3, 2] = -1.0
    with pytest.raises(ValueError, match=r"close of .KO., row 4 \(date 2019-01-07\): price -1.0 is not a positive"):
        RiskModel.pretrained().forecast(neg)
    with pytest.raises(ValueError, match="look like returns .* pass returns=True"):
        RiskModel.pretrained().forecast(np.log(closes).diff().iloc[1:])
    with pytest.raises(TypeError, match="bare ndarray have no dates"):
        RiskModel.pretrained().forecast(closes.to_numpy())
    with pytest.raises(TypeError, match="a path, a PriceFile or a pandas DataFrame, got list"):
        RiskModel.pretrained().forecast([101.0, 102.0])
    with pytest.raises(ValueError, match="no shipped model 'my_model'; the shipped ones are 'default', 'streaming'"):
        RiskModel.pretrained("my_model")


@pytest.mark.slow  # one full training run each, ~30-90 s on 2 cores
@pytest.mark.parametrize("name, learner", [("default", "maml"), ("streaming", "head")])
def test_the_shipped_model_is_what_its_settings_train(tmp_path, name, learner):
    """Retraining with a shipped model's command (`metarisk train --prices default`, seed 0; the
    streaming model with `--learner head`) gives its settings and its validation loss (to the
    rounding that the CPU's kernel variant changes over the run's steps)."""
    shipped = json.loads((SHIPPED_MODELS[name] / "model.json").read_text())
    meta = jobs.train("default", tmp_path / "m", learner=learner)
    for key in ("learner", "history", "hidden", "inner_lr", "inner_steps", "loss", "task_spec", "train_assets",
                "train_end", "seed", "meta_steps", "head_window"):
        assert meta[key] == shipped.get(key), key  # files from before head_window have none
    assert meta["validation"]["qlike_model"] == pytest.approx(shipped["validation"]["qlike_model"], abs=2e-3)
    assert meta["validation"]["qlike_model"] < meta["validation"]["qlike_ewma"]


def test_forecast_writes_t_risk_at_any_level(closes, tmp_path):
    src, out = tmp_path / "p.csv", tmp_path / "f.csv"
    closes.to_csv(src)
    assert main(["forecast", "--model", "default", "--prices", str(src), "--out", str(out), "--dist", "t",
                 "--alpha", "0.01,0.025", "--quiet"]) == 0
    cli = pd.read_csv(out)
    assert list(cli.columns) == ["date", "asset", "forecast_variance", "var_1", "es_1", "var_2_5", "es_2_5"]
    fc = RiskModel.pretrained().forecast(closes)
    mine = fc.to_frame("t", [0.01, 0.025])
    np.testing.assert_allclose(mine.iloc[:, 2:], cli.iloc[:, 2:], rtol=1e-12)
    wide = fc.var(0.01).stack().to_numpy()  # dates x assets, the same order as the long table
    np.testing.assert_allclose(np.sort(wide), np.sort(cli["var_1"].to_numpy()), rtol=1e-12)
    for bad in ("0.6", "0", "a,b", ""):
        with pytest.raises(SystemExit):
            main(["forecast", "--model", "default", "--prices", str(src), "--out", str(out), "--alpha", bad])


def test_t_risk_needs_a_t_model(closes, tmp_path):
    import torch

    from metarisk_fast.forecasting import make_learner, save_model
    from metarisk_fast.tasks import TaskSpec

    spec = TaskSpec(horizon=5)
    torch.manual_seed(0)
    learner = make_learner("maml", spec.n_features, (8,), 0.05, 2, loss="gaussian_nll")
    save_model(tmp_path / "h5", "maml", learner, spec, history=60, hidden=(8,), info={})
    src = tmp_path / "p.csv"
    closes.to_csv(src)
    assert main(["forecast", "--model", str(tmp_path / "h5"), "--prices", str(src), "--out", str(tmp_path / "f.csv"),
                 "--dist", "t", "--quiet"]) == 2
    fc = RiskModel.load(tmp_path / "h5").forecast(closes)
    assert fc.nu is None and fc.var(0.01).equals(fc.var(0.01, "normal"))
    with pytest.raises(ValueError, match="Gaussian likelihood"):
        fc.to_frame("t")
