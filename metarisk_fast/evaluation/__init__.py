"""Losses and tests (metrics.py), VaR / ES and their backtests (risk.py), volatility-targeted
sizing (sizing.py), the comparison of forecasts (compare.py) and the loss by age (by_age.py).
The written reports and their plots are in metarisk_fast.report."""
from .metrics import (diebold_mariano, mean_interval, mincer_zarnowitz, model_confidence_set, qlike, qlike_log,
                      squared_error)
from .by_age import AGE_BUCKETS, listing_test, loss_by_age
from .compare import Evaluation, evaluate
from .risk import (acerbi_szekely_z2, basel_traffic_light, christoffersen, expected_shortfall, fz0_loss,
                   kupiec_pof, risk_columns, value_at_risk)
from .sizing import vol_target_backtest, vol_target_weights

__all__ = ["qlike", "qlike_log", "squared_error", "diebold_mariano", "mincer_zarnowitz", "model_confidence_set",
           "value_at_risk", "expected_shortfall", "risk_columns", "kupiec_pof", "christoffersen", "basel_traffic_light",
           "acerbi_szekely_z2", "fz0_loss", "evaluate", "vol_target_backtest", "vol_target_weights", "mean_interval",
           "Evaluation", "AGE_BUCKETS", "listing_test", "loss_by_age"]
