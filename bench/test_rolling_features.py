"""Rolling volatility features (W4 in bench/WORKLOADS.md) on 2,000 assets x 5,000 days of OHLC, float64.
close_to_close_vol against pandas rolling().std(), bottleneck move_std and polars rolling_std on
the same feature (the peers start from the same log returns, computed outside their timing; a
second line times them from prices too), and the whole feature set in points per second and
GB/s of bytes read + written."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import metarisk_fast.features as F
from metarisk_fast import datasets

T, N, W = 5000, 2000, 21


@pytest.fixture(scope="module")
def panel():
    p = datasets.synthetic_ohlc(n_days=T, n_assets=N, seed=0)
    r = np.full((T, N), np.nan)
    r[1:] = np.log(p.close[1:] / p.close[:-1])
    return p, r


def _bandwidth(benchmark, n_in, n_out):
    sec = benchmark.stats.stats.median
    benchmark.extra_info["Mpoints_per_s"] = round(T * N / sec / 1e6, 1)
    benchmark.extra_info["GB_per_s"] = round((n_in + n_out) * 8 * T * N / sec / 1e9, 2)


def test_metarisk_fast_cc_vol(benchmark, panel):
    benchmark.group = "features cc vol 21"
    p, _ = panel
    out = benchmark.pedantic(F.close_to_close_vol, (p.close, W), rounds=5, warmup_rounds=1)
    _bandwidth(benchmark, 1, 1)
    assert out.shape == (T, N)


def test_bottleneck_move_std(benchmark, panel):
    bn = pytest.importorskip("bottleneck")
    benchmark.group = "features cc vol 21"
    _, r = panel
    benchmark.pedantic(bn.move_std, (r, W), {"axis": 0, "ddof": 1}, rounds=5, warmup_rounds=1)
    _bandwidth(benchmark, 1, 1)


def test_bottleneck_move_std_from_prices(benchmark, panel):
    bn = pytest.importorskip("bottleneck")
    benchmark.group = "features cc vol 21"
    p, _ = panel
    benchmark.pedantic(lambda c: bn.move_std(np.log(c[1:] / c[:-1]), W, axis=0, ddof=1), (p.close,),
                       rounds=5, warmup_rounds=1)
    _bandwidth(benchmark, 1, 1)


def test_bottleneck_move_std_fortran_order(benchmark, panel):
    bn = pytest.importorskip("bottleneck")
    benchmark.group = "features cc vol 21"
    rf = np.asfortranarray(panel[1])
    benchmark.pedantic(bn.move_std, (rf, W), {"axis": 0, "ddof": 1}, rounds=5, warmup_rounds=1)
    _bandwidth(benchmark, 1, 1)


def test_pandas_rolling_std(benchmark, panel):
    pd = pytest.importorskip("pandas")
    benchmark.group = "features cc vol 21"
    df = pd.DataFrame(panel[1])
    benchmark.pedantic(lambda: df.rolling(W).std(), rounds=3, warmup_rounds=1)
    _bandwidth(benchmark, 1, 1)


def test_polars_rolling_std(benchmark, panel):
    pl = pytest.importorskip("polars")
    benchmark.group = "features cc vol 21"
    df = pl.DataFrame(panel[1], schema=[f"a{j}" for j in range(N)])
    benchmark.pedantic(lambda: df.select(pl.all().rolling_std(W)), rounds=3, warmup_rounds=1)
    _bandwidth(benchmark, 1, 1)


FULL_SET = F.FeatureSet(cc_windows=(5, 21, 63), ewma_lambdas=(0.94,), range_window=21)


def test_metarisk_fast_full_feature_set(benchmark, panel):
    """Into fresh output arrays (720 MB: the first touch of every page is part of the time)."""
    benchmark.group = "features full set"
    p, _ = panel
    out = benchmark.pedantic(FULL_SET.compute_array, (p.close, p.open, p.high, p.low), rounds=3, warmup_rounds=1)
    _bandwidth(benchmark, 4, len(FULL_SET.names))
    assert out.shape == (len(FULL_SET.names), T, N)


def test_metarisk_fast_full_feature_set_into_buffer(benchmark, panel):
    """Into a reused output buffer (compute_array(out=...)), as a backtest that recomputes does."""
    benchmark.group = "features full set"
    p, _ = panel
    buf = np.empty((len(FULL_SET.names), T, N))
    benchmark.pedantic(FULL_SET.compute_array, (p.close, p.open, p.high, p.low), {"out": buf},
                       rounds=7, warmup_rounds=1)
    _bandwidth(benchmark, 4, len(FULL_SET.names))


def _copy_reference(benchmark, panel, fresh):
    """The physical limit: the four OHLC arrays copied into nine outputs' worth, into fresh arrays
    (one thread; page faults included) or into reused buffers by two threads (np.copyto releases
    the GIL): the machine's copy bandwidth at the thread count of the feature set."""
    benchmark.group = "features full set"
    p, _ = panel
    src = [p.open.reshape(-1), p.high.reshape(-1), p.low.reshape(-1), p.close.reshape(-1)]
    dst = [np.empty(T * N) for _ in range(9)]

    def copy_half(h):
        lo, hi = h * T * N // 2, (h + 1) * T * N // 2
        for k in range(9):
            np.copyto(dst[k][lo:hi], src[k % 4][lo:hi])

    with ThreadPoolExecutor(2) as pool:
        def copy():
            if fresh:
                return [src[k % 4].copy() for k in range(9)]
            list(pool.map(copy_half, (0, 1)))

        # the VM's copy rate wanders between runs (40-64 GB/s seen in one session): more rounds
        benchmark.pedantic(copy, rounds=3 if fresh else 9, warmup_rounds=1)
    _bandwidth(benchmark, 4, 9)
    # a copy's own count: each of the nine copies reads and writes its 80 MB
    benchmark.extra_info["copy_read_write_GB_per_s"] = round(18 * 8 * T * N / benchmark.stats.stats.median / 1e9, 2)


def test_copy_bandwidth_reference_fresh(benchmark, panel):
    _copy_reference(benchmark, panel, fresh=True)


def test_copy_bandwidth_reference_two_threads(benchmark, panel):
    _copy_reference(benchmark, panel, fresh=False)
