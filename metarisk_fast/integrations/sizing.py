"""Volatility targeting from the RiskEngine's forecasts, and the library-only backtest that the
framework adapters reproduce: every bar, each asset's position is sized so that it carries
``target_annual`` volatility on an equal share of a fixed capital."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import PricePanel
from ..evaluation import vol_target_weights
from ..streaming import RiskEngine, RiskSnapshot


@dataclass(frozen=True)
class VolTargetSizer:
    capital: float = 1_000_000.0
    target_annual: float = 0.10
    max_leverage: float = 2.0

    def __post_init__(self):
        for name in ("capital", "target_annual", "max_leverage"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")

    def shares(self, snapshot: RiskSnapshot, close: np.ndarray) -> np.ndarray:
        """Whole shares per asset (int64): weight x capital / number of assets / close, rounded
        toward zero; 0 where the engine has no forecast or the asset no price."""
        close = np.asarray(close, np.float64)
        w = vol_target_weights(snapshot.variance, self.target_annual, self.max_leverage)
        ok = snapshot.ready & np.isfinite(close) & (close > 0)
        budget = self.capital / len(snapshot.assets)
        return np.where(ok, np.trunc(np.where(ok, w, 0.0) * budget / np.where(ok, close, 1.0)), 0).astype(np.int64)


def positions_frame(dates, assets, shares) -> pd.DataFrame:
    """The adapters' common record: one row per (bar, asset) with the target position."""
    shares = np.asarray(shares, np.int64)
    return pd.DataFrame({"date": np.repeat(np.asarray(dates, "datetime64[D]"), len(assets)),
                         "asset": np.tile(np.asarray(assets, dtype=object), len(dates)),
                         "shares": shares.reshape(-1)})


def library_backtest(model, panel: PricePanel, sizer: VolTargetSizer = VolTargetSizer()) -> pd.DataFrame:
    """The target positions of every bar of ``panel`` (positions_frame), from the RiskEngine
    alone: the reference the framework adapters are tested against."""
    engine = RiskEngine.from_model(model, list(panel.assets))
    out = np.zeros((panel.n_days, panel.n_assets), np.int64)
    for i in range(panel.n_days):
        out[i] = sizer.shares(engine.update(panel.close[i], date=panel.dates[i]), panel.close[i])
    return positions_frame(panel.dates, panel.assets, out)
