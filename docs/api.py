"""Writes docs/API.md, the reference of the public Python API (signatures and docstrings, read
from the code): `python docs/api.py`. tests/test_api_docs.py checks that the file is current."""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

SECTIONS = {
    "The estimator": ["RiskModel", "volatility.RiskForecast"],
    "Bar by bar": ["RiskEngine", "RiskSnapshot"],
    "Learners": ["MLP", "MAML", "Reptile", "MetaSGD", "HeadNewton", "MemoryAugmentedNet", "MemoryConditionedMAML",
                 "ExternalMemory"],
    "Kernels (autograd functions over the compiled core)": [
        "ops.mlp_meta_loss", "ops.mlp_adapt", "ops.mlp_adapt_predict", "ops.mlp_adapt_predict_numpy",
        "ops.memory_read", "ops.memory_write_lrua", "build_info", "set_num_threads", "get_num_threads"],
    "Prices in": ["datasets.load_panel", "data.load_prices", "data.PricePanel", "data.data_report",
                  "datasets.load_sp500_20", "datasets.synthetic_ohlc"],
    "Rolling volatility": ["features.FeatureSet", "features.StreamingFeatures", "features.log_returns",
                           "features.close_to_close_vol", "features.ewma_vol", "features.downside_vol",
                           "features.parkinson_vol", "features.garman_klass_vol", "features.rogers_satchell_vol",
                           "features.yang_zhang_vol"],
    "Tasks": ["tasks.TaskSpec", "tasks.EpisodeBuilder", "tasks.time_split", "tasks.asset_split",
              "tasks.simulated_listings"],
    "Forecasting": ["forecasting.make_learner", "forecasting.train_meta", "forecasting.MetaForecaster",
                    "forecasting.EWMAForecaster", "forecasting.HARForecaster", "forecasting.GARCHForecaster",
                    "forecasting.save_model", "forecasting.load_model", "forecasting.SavedModelForecasts"],
    "Evaluation": ["evaluation.evaluate", "evaluation.qlike", "evaluation.qlike_log", "evaluation.diebold_mariano",
                   "evaluation.model_confidence_set", "evaluation.mincer_zarnowitz", "evaluation.value_at_risk",
                   "evaluation.expected_shortfall", "evaluation.risk_columns", "evaluation.kupiec_pof",
                   "evaluation.christoffersen", "evaluation.basel_traffic_light", "evaluation.acerbi_szekely_z2",
                   "evaluation.fz0_loss", "evaluation.vol_target_backtest", "evaluation.loss_by_age"],
    "The applications' library calls (what each `metarisk` subcommand runs)": [
        "volatility.jobs.train", "volatility.jobs.forecast", "volatility.jobs.evaluate", "volatility.jobs.demo",
        "volatility.jobs.TrainOptions", "warning.jobs.warn", "credit.jobs.train", "credit.jobs.score",
        "credit.jobs.evaluate", "trading.jobs.train", "trading.jobs.evaluate"],
}


def _resolve(path: str):
    parts = ["metarisk_fast", *path.split(".")]
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            continue
    for attr in parts[i:]:
        obj = getattr(obj, attr)
    return obj


class _Annotation(str):
    """An annotation kept as the code spells it (the package's modules postpone their evaluation)."""

    def __repr__(self) -> str:
        return str(self)


def _signature(obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    plain = lambda a: _Annotation(a.strip("'\"")) if isinstance(a, str) else a  # noqa: E731
    params = [p.replace(annotation=plain(p.annotation)) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=plain(sig.return_annotation)))


def _entry(name: str, obj, level: str = "###") -> list[str]:
    doc = inspect.getdoc(obj) or ""
    out = [f"{level} `{name}{_signature(obj) if callable(obj) else ''}`", "", doc, ""]
    if inspect.isclass(obj):
        for m, f in vars(obj).items():
            if m.startswith("_") or not (inspect.isfunction(f) or isinstance(f, (classmethod, staticmethod))):
                continue
            fn = getattr(obj, m)
            out += [f"- `{m}{_signature(fn)}`: " + (inspect.getdoc(fn) or "").replace("\n", " ")]
        out.append("")
    return out


def render() -> str:
    lines = ["# API reference", "",
             "The public Python API, generated from the code by `python docs/api.py` (a test keeps it current).",
             "Names at the top level are `metarisk_fast.<name>`; the others `metarisk_fast.<module>.<name>`.", ""]
    for title, names in SECTIONS.items():
        lines += [f"## {title}", ""]
        for name in names:
            lines += _entry(name, _resolve(name))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("API.md")
    out.write_text(render())
    print(f"wrote {out}")
