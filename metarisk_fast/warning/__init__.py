"""Regulatory early warning of market stress: events and scores (signals.py), the recursive
combination and the out-of-sample evaluation (evaluate.py), the `metarisk warn` job (jobs.py)."""
