"""Losses, forecast-comparison tests, VaR / ES backtests and reports."""
from .metrics import diebold_mariano, mincer_zarnowitz, model_confidence_set, qlike, qlike_log, squared_error
from .report import Evaluation, evaluate, vol_target_backtest, write_report
from .risk import (acerbi_szekely_z2, basel_traffic_light, christoffersen, expected_shortfall, fz0_loss,
                   kupiec_pof, risk_columns, value_at_risk)

__all__ = ["qlike", "qlike_log", "squared_error", "diebold_mariano", "mincer_zarnowitz", "model_confidence_set",
           "value_at_risk", "expected_shortfall", "risk_columns", "kupiec_pof", "christoffersen", "basel_traffic_light",
           "acerbi_szekely_z2", "fz0_loss", "evaluate", "write_report", "vol_target_backtest", "Evaluation"]
