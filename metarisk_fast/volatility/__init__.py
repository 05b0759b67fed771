"""The variance / VaR / ES forecasting application: ``jobs`` (train, forecast, evaluate, demo),
``feed`` (the streaming engine over a file or a live feed) and ``command`` (their `metarisk`
subcommands)."""
