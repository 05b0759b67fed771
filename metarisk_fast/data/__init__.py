"""Market data: validated price panels from files or DataFrames, and the checks of what they
hold (calendar gaps, coarse prices)."""
from .panel import (MAX_GAP_DAYS, CalendarGapWarning, DataError, PricePanel, QuantisationWarning, calendar_breaks,
                    calendar_gaps, coarse_stretches, load_prices, missing_business_days)

__all__ = ["PricePanel", "load_prices", "DataError", "QuantisationWarning", "CalendarGapWarning", "coarse_stretches",
           "calendar_breaks", "calendar_gaps", "missing_business_days", "MAX_GAP_DAYS"]
