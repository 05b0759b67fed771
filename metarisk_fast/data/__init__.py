"""Market data: validated price panels from files or DataFrames, and the checks of what they
hold (calendar gaps, coarse prices, suspected splits, stale runs, empty columns: data_report)."""
from .panel import (MAX_GAP_DAYS, CalendarGapWarning, DataError, DataQualityWarning, PriceFile, PricePanel,
                    QuantisationWarning, price_source,
                    asset_gaps, calendar_breaks, calendar_gaps, coarse_stretches, data_report, empty_assets, load_prices,
                    missing_business_days, stale_runs, suspected_splits)

__all__ = ["PricePanel", "PriceFile", "price_source", "load_prices", "DataError", "QuantisationWarning", "CalendarGapWarning", "DataQualityWarning",
           "coarse_stretches", "asset_gaps", "calendar_breaks", "calendar_gaps", "missing_business_days", "suspected_splits",
           "stale_runs", "empty_assets", "data_report", "MAX_GAP_DAYS"]
