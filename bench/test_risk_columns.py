"""The risk columns of a forecast table (evaluation.risk_columns: VaR 1 % / 5 % and ES 2.5 % of a
one-day return from each variance), as a streaming snapshot of 500 assets and a forecast table of a
million rows need them, against the NumPy expressions of the same columns (the same bits) and, for
the table, against the machine's same-run limit: one copy of the variances into each column."""
import numpy as np
import pytest

from metarisk_fast.evaluation import risk_columns, value_at_risk, expected_shortfall

ROWS = [500, 1_000_000]


def _variances(n: int) -> np.ndarray:
    v = np.random.default_rng(0).uniform(1e-5, 1e-3, n)
    v[::7] = np.nan  # assets without a forecast
    return v


FACTORS = (value_at_risk(1.0, 0.01), value_at_risk(1.0, 0.05), expected_shortfall(1.0, 0.025))  # once, as cached


def numpy_columns(v: np.ndarray) -> dict:
    """The columns as NumPy expressions: a check of the variances, their square root, one product per column."""
    if np.isinf(v).any() or (v < 0).any():
        raise ValueError("variance forecasts must be finite and >= 0")
    sigma = np.sqrt(v)
    return {"var_1": sigma * FACTORS[0], "var_5": sigma * FACTORS[1], "es_2_5": sigma * FACTORS[2]}


@pytest.mark.parametrize("n", ROWS)
def test_metarisk_fast_risk_columns(benchmark, n):
    benchmark.group = f"risk columns, {n} rows"
    v = _variances(n)
    got = benchmark.pedantic(risk_columns, (v,), rounds=200 if n < 10_000 else 20, warmup_rounds=5)
    want = numpy_columns(v)
    assert all(np.array_equal(got[k], want[k], equal_nan=True) for k in want)
    benchmark.extra_info["GB_per_s"] = round(4 * 8 * n / benchmark.stats.stats.median / 1e9, 2)


@pytest.mark.parametrize("n", ROWS)
def test_numpy_risk_columns(benchmark, n):
    benchmark.group = f"risk columns, {n} rows"
    v = _variances(n)
    benchmark.pedantic(numpy_columns, (v,), rounds=200 if n < 10_000 else 20, warmup_rounds=5)
    benchmark.extra_info["GB_per_s"] = round(4 * 8 * n / benchmark.stats.stats.median / 1e9, 2)


def test_copy_reference(benchmark):
    """The limit of a million-row table: the variances copied into three fresh columns (read 1, write 3)."""
    n = ROWS[-1]
    benchmark.group = f"risk columns, {n} rows"
    v = _variances(n)
    benchmark.pedantic(lambda: [v.copy() for _ in range(3)], rounds=20, warmup_rounds=5)
    benchmark.extra_info["GB_per_s"] = round(4 * 8 * n / benchmark.stats.stats.median / 1e9, 2)
