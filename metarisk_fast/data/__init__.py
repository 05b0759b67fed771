"""Market data: validated price panels from files or DataFrames."""
from .panel import DataError, PricePanel, QuantisationWarning, coarse_stretches, load_prices

__all__ = ["PricePanel", "load_prices", "DataError", "QuantisationWarning", "coarse_stretches"]
