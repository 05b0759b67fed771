"""The RiskEngine inside backtest and trading frameworks. ``sizing`` is the volatility-targeting
rule every adapter's example strategy uses, and the library-only backtest they are checked
against; ``nautilus`` (an Actor publishing the engine's risk per bar, and a strategy) and
``backtrader`` (an Indicator with variance / VaR / ES lines, and a strategy) need their
frameworks: ``pip install "metarisk_fast[nautilus]"`` or ``"metarisk_fast[backtrader]"``."""
