"""Every estimator against a straightforward NumPy transcription of its formula (1e-10
relative), adversarial inputs, NaN locality, and the streaming twin."""
import numpy as np
import pytest

import metarisk_fast.features as F
from metarisk_fast.reference import features as ref
from metarisk_fast import datasets

RTOL = 1e-10


def assert_matches(got, want):
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=RTOL, atol=0)


@pytest.fixture(scope="module")
def ohlc():
    p = datasets.synthetic_ohlc(n_days=400, n_assets=6, seed=3)
    return p.open, p.high, p.low, p.close


@pytest.fixture(scope="module")
def real_close():
    p = datasets.load_sp500_20(warn_data=False)
    return p.close[-1500:]


@pytest.mark.parametrize("w", [2, 5, 21, 63])
def test_close_to_close(ohlc, real_close, w):
    for c in (ohlc[3], real_close):
        assert_matches(F.close_to_close_vol(c, w), ref.close_to_close_vol(c, w))


def test_log_returns_and_ewma(ohlc, real_close):
    for c in (ohlc[3], real_close):
        assert_matches(F.log_returns(c), ref.log_returns(c))
        assert_matches(F.ewma_vol(c, 0.94), ref.ewma_vol(c, 0.94))
        assert_matches(F.ewma_vol(c, 0.97), ref.ewma_vol(c, 0.97))
        assert_matches(F.downside_vol(c, 0.94), ref.downside_vol(c, 0.94))


def test_downside_vol_is_the_leverage_part_of_the_ewma(real_close):
    """The down parts of c and of 1 / c (the rises of c) add up to c's EWMA (the same start split
    in halves, the same linear recursion); a series of rises leaves the downside EWMA decaying, a
    fall lifts it by (1 - lam) r^2."""
    c = real_close
    both = F.ewma_vol(c, 0.9) ** 2
    down = F.downside_vol(c, 0.9) ** 2
    up = F.downside_vol(1.0 / c, 0.9) ** 2
    np.testing.assert_allclose(down + up, both, rtol=1e-9)
    rises = np.array([100.0, 101.0, 102.0, 103.0, 100.0])
    d = F.downside_vol(rises, 0.9) ** 2
    r = np.diff(np.log(rises))
    np.testing.assert_allclose(d[1:], [0.5 * r[0] ** 2, 0.45 * r[0] ** 2, 0.405 * r[0] ** 2,
                                       0.3645 * r[0] ** 2 + 0.1 * r[3] ** 2], rtol=1e-12)


@pytest.mark.parametrize("w", [5, 21])
def test_range_estimators(ohlc, w):
    o, h, l, c = ohlc
    assert_matches(F.parkinson_vol(h, l, w), ref.parkinson_vol(h, l, w))
    assert_matches(F.garman_klass_vol(o, h, l, c, w), ref.garman_klass_vol(o, h, l, c, w))
    assert_matches(F.rogers_satchell_vol(o, h, l, c, w), ref.rogers_satchell_vol(o, h, l, c, w))
    assert_matches(F.yang_zhang_vol(o, h, l, c, w), ref.yang_zhang_vol(o, h, l, c, w))


def test_yang_zhang_uses_open_to_close_not_close_to_close(ohlc):
    """The common mistake (close-to-close variance as sigma_c) gives a clearly different value
    on data with overnight gaps; the estimator follows the paper."""
    o, h, l, c = ohlc
    w = 21
    k = 0.34 / (1.34 + (w + 1) / (w - 1))
    got = F.yang_zhang_vol(o, h, l, c, w) ** 2
    paper = ref.yang_zhang_vol(o, h, l, c, w) ** 2
    overnight = np.full(c.shape, np.nan)
    overnight[1:] = np.log(o[1:] / c[:-1])
    mistaken = (ref.rolling(overnight, w, lambda v: v.var(-1, ddof=1))
                + k * ref.rolling(ref.log_returns(c), w, lambda v: v.var(-1, ddof=1))
                + (1 - k) * ref.rogers_satchell_vol(o, h, l, c, w) ** 2)
    ok = ~np.isnan(paper)
    np.testing.assert_allclose(got[ok], paper[ok], rtol=RTOL)
    assert np.median(np.abs(mistaken[ok] / paper[ok] - 1)) > 1e-3


def test_feature_set_equals_single_functions_and_1d(ohlc):
    o, h, l, c = ohlc
    fs = F.FeatureSet(cc_windows=(5, 21), ewma_lambdas=(0.94,), range_window=10, downside_lambdas=(0.97,))
    out = fs.compute(c, o, h, l)
    assert list(out) == fs.names
    assert_matches(out["downside_vol_0.97"], F.downside_vol(c, 0.97))
    assert_matches(out["ewma_vol_0.94"], F.ewma_vol(c, 0.94))
    assert_matches(out["cc_vol_21"], F.close_to_close_vol(c, 21))
    assert_matches(out["yang_zhang_vol_10"], F.yang_zhang_vol(o, h, l, c, 10))
    one = fs.compute(c[:, 2], o[:, 2], h[:, 2], l[:, 2])
    for name in fs.names:
        assert one[name].shape == (len(c),)
        np.testing.assert_array_equal(one[name], out[name][:, 2])


def test_constant_prices_give_exact_zero():
    c = np.full((300, 3), 123.456)
    for w in (5, 21, 63):
        v = F.close_to_close_vol(c, w)
        assert np.all(v[w:] == 0.0)
    ones = np.ones((300, 3)) * 50.0
    assert np.all(F.yang_zhang_vol(ones, ones, ones, ones, 21)[21:] == 0.0)
    assert np.all(F.parkinson_vol(ones, ones, 21)[20:] == 0.0)


def test_prices_near_1e9_with_tiny_moves():
    rng = np.random.default_rng(0)
    c = 1e9 * np.exp(np.cumsum(rng.normal(0, 1e-9, (500, 4)), axis=0))
    for w in (5, 21):
        got = F.close_to_close_vol(c, w)
        assert np.all(got[w:] >= 0) and np.isfinite(got[w:]).all()
        assert_matches(got, ref.close_to_close_vol(c, w))


def test_range_estimators_near_1e9_with_tiny_moves():
    """Stable and as accurate as the inputs allow where every log is ~1e-9: the ratios' own
    rounding (1e-16 on a 1e-9 log) then limits any float64 formula to ~1e-8 relative, the NumPy
    transcription included, so the reference here is the same formula in long double."""
    rng = np.random.default_rng(2)
    c = 1e9 * np.exp(np.cumsum(rng.normal(0, 1e-9, (400, 3)), axis=0))
    o = np.r_[c[:1], c[:-1]] * np.exp(rng.normal(0, 1e-9, c.shape))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 1e-9, c.shape)))
    l = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 1e-9, c.shape)))
    o_ld, h_ld, l_ld, c_ld = (x.astype(np.longdouble) for x in (o, h, l, c))
    for got, want in ((F.parkinson_vol(h, l, 21), ref.parkinson_vol(h_ld, l_ld, 21)),
                      (F.rogers_satchell_vol(o, h, l, c, 21), ref.rogers_satchell_vol(o_ld, h_ld, l_ld, c_ld, 21)),
                      (F.yang_zhang_vol(o, h, l, c, 21), ref.yang_zhang_vol(o_ld, h_ld, l_ld, c_ld, 21))):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        assert np.all(got[ok] > 0)
        np.testing.assert_allclose(got[ok], want[ok].astype(float), rtol=1e-7)


def test_spike_leaves_no_residue():
    rng = np.random.default_rng(1)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, 400)))
    c[200:] *= 1e4  # one enormous return at row 200
    for w in (5, 21, 63):
        got = F.close_to_close_vol(c, w)
        want = ref.close_to_close_vol(c[:, None], w)[:, 0]
        after = slice(200 + w, None)  # windows that no longer contain the spike
        np.testing.assert_allclose(got[after], want[after], rtol=1e-10)
        assert np.all(got >= 0, where=~np.isnan(got))


def test_nan_affects_only_windows_that_contain_it(ohlc):
    o, h, l, c = (x.copy() for x in ohlc)
    c[100, 1] = np.nan
    o[200, 2] = np.nan
    got = F.close_to_close_vol(c, 21)
    nan_rows = np.flatnonzero(np.isnan(got[:, 1]))
    # the NaN price breaks returns 100 and 101: windows ending at 100..121 hold one of them
    np.testing.assert_array_equal(nan_rows, np.r_[np.arange(21), np.arange(100, 122)])
    assert_matches(got, ref.close_to_close_vol(c, 21))
    assert_matches(F.yang_zhang_vol(o, h, l, c, 21), ref.yang_zhang_vol(o, h, l, c, 21))
    assert np.isfinite(F.close_to_close_vol(c, 21)[130:, 1]).all()


def test_missing_open_leaves_the_high_low_estimator_and_the_other_assets_alone(ohlc):
    """A NaN open sends that asset's row down the kernel's careful path (libm logs): Parkinson,
    which needs only high and low, stays defined there, the estimators that use the open are
    NaN exactly in the windows that hold it, and the other assets of the row are untouched."""
    o, h, l, c = (x.copy() for x in ohlc)
    o[120, 2] = np.nan
    fs = F.FeatureSet(cc_windows=(5,), ewma_lambdas=(), range_window=21)
    got = fs.compute(c, o, h, l)
    assert_matches(got["parkinson_vol_21"], ref.parkinson_vol(h, l, 21))
    assert_matches(got["garman_klass_vol_21"], ref.garman_klass_vol(o, h, l, c, 21))
    assert_matches(got["rogers_satchell_vol_21"], ref.rogers_satchell_vol(o, h, l, c, 21))
    assert_matches(got["yang_zhang_vol_21"], ref.yang_zhang_vol(o, h, l, c, 21))
    assert np.isnan(got["garman_klass_vol_21"][120:141, 2]).all()
    assert np.isfinite(got["garman_klass_vol_21"][141:, 2]).all()


def test_streaming_twin_agrees_and_resumes(ohlc, tmp_path):
    o, h, l, c = ohlc
    fs = F.FeatureSet(cc_windows=(5, 21, 63), ewma_lambdas=(0.94,), range_window=21, downside_lambdas=(0.97,))
    batch = fs.compute(c, o, h, l)
    stream = fs.stream(c.shape[1])
    rows = [stream.update(c[t], o[t], h[t], l[t]) for t in range(250)]
    stream.save(tmp_path / "state.npz")
    resumed = F.StreamingFeatures.load(fs, tmp_path / "state.npz")
    rows += [resumed.update(c[t], o[t], h[t], l[t]) for t in range(250, len(c))]
    for name in fs.names:
        got = np.array([r[name] for r in rows])
        np.testing.assert_allclose(got, batch[name], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(batch[name]))


def test_nan_free_fast_path_gives_the_bookkept_result(ohlc):
    """The batch kernel skips the NaN counts on rows whose windows hold no NaN; the streaming
    twin always keeps them. Gaps closer together and further apart than the longest window (+2)
    switch the fast path off and on; the two must agree bit for bit."""
    o, h, l, c = (x.copy() for x in ohlc)
    c[:30, 0] = o[:30, 0] = h[:30, 0] = l[:30, 0] = np.nan  # listed late
    c[100, 1] = np.nan
    c[140, 1] = np.nan  # before the first gap has left every window
    o[300, 2] = np.nan  # a range input only
    h[301, 3] = l[301, 3] = np.nan
    fs = F.FeatureSet(cc_windows=(5, 21, 63), ewma_lambdas=(0.94,), range_window=21)
    batch = fs.compute(c, o, h, l)
    stream = fs.stream(c.shape[1])
    rows = [stream.update(c[t], o[t], h[t], l[t]) for t in range(len(c))]
    for name in fs.names:
        np.testing.assert_array_equal(np.array([r[name] for r in rows]), batch[name], err_msg=name)


@pytest.mark.parametrize("bad, match", [
    (lambda c: c.__setitem__((50, 1), -1.0), "non-positive or infinite price at row 50, asset column 1"),
    (lambda c: c.__setitem__((7, 0), 0.0), "row 7, asset column 0"),
    (lambda c: c.__setitem__((9, 2), np.inf), "row 9, asset column 2"),
    (lambda c: c.__setitem__((11, 5), -2.0), "row 11, asset column 5"),  # another asset block
])
def test_bad_prices_are_rejected(ohlc, bad, match):
    c = ohlc[3].copy()
    bad(c)
    with pytest.raises(ValueError, match=match):
        F.close_to_close_vol(c, 5)


def test_bad_open_price_is_located(ohlc):
    o, h, l, c = (x.copy() for x in ohlc)
    o[12, 4] = -1.0
    o[30, 1] = 0.0
    with pytest.raises(ValueError, match="row 12, asset column 4 \\(2 such values\\)"):
        F.garman_klass_vol(o, h, l, c, 5)


def test_vectorised_log_matches_math_log():
    """The kernel's branch-free log: within 1 ulp of libm on normal numbers, and libm's special
    values (0, negative, subnormal, inf, NaN)."""
    import math

    from numba import njit

    from metarisk_fast._intrinsics import _ln

    @njit
    def ln_all(x, out):
        for j in range(x.shape[0]):
            out[j] = _ln(x[j])

    rng = np.random.default_rng(0)
    x = np.concatenate([np.exp(rng.uniform(-700, 700, 20_000)), 1 + rng.normal(0, 1e-9, 1000),
                        [1.0, 2.0, 0.5, np.nextafter(1.0, 0), np.nextafter(1.0, 2), 5e-324, 1e-310,
                         2.2250738585072014e-308, 1.7976931348623157e308, 0.0, -0.0, -1.0, np.inf,
                         -np.inf, np.nan]])
    got = np.empty_like(x)
    ln_all(x, got)
    want = np.array([math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan) for v in x])
    want[x == np.inf] = np.inf
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    ulp = np.spacing(np.abs(want[finite]))
    assert np.all(np.abs(got[finite] - want[finite]) <= ulp)


def test_vectorised_exp_matches_math_exp():
    """The kernels' branch-free exp: within 1 ulp of libm over the whole range (subnormal results
    included), and libm's special values (overflow to inf, underflow to 0, +-inf, NaN)."""
    import math

    from numba import njit

    from metarisk_fast._intrinsics import EXP_OVER, _exp

    @njit(error_model="numpy")
    def exp_all(x, out):
        for j in range(x.shape[0]):
            out[j] = _exp(x[j])

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-745.2, 709.8, 100_000), rng.uniform(-30, 30, 100_000), rng.normal(0, 1e-9, 1000),
                        [0.0, -0.0, 1.0, -1.0, 0.5 * math.log(2), -0.5 * math.log(2), 1.5 * math.log(2), 709.78,
                         709.79, 710.0, 1e308, -708.39, -708.4, -740.0, -745.13, -745.14, -746.0, -1e308, 1e-300,
                         np.inf, -np.inf, np.nan]])
    got = np.empty_like(x)
    exp_all(x, got)
    want = np.array([math.exp(v) if v <= EXP_OVER else (math.inf if v == v else math.nan) for v in x])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    assert (got[x < -745.14] == 0.0).all() and (got[(x > -745.13) & (x < -708.4)] > 0.0).all()
    ulp = np.spacing(np.abs(want[finite]))
    assert np.all(np.abs(got[finite] - want[finite]) <= ulp)


def test_out_buffer_is_filled_and_checked(ohlc):
    o, h, l, c = ohlc
    fs = F.FeatureSet()
    fresh = fs.compute_array(c, o, h, l)
    buf = np.full_like(fresh, -1.0)
    assert fs.compute_array(c, o, h, l, out=buf) is buf
    np.testing.assert_array_equal(buf, fresh)
    for bad in (buf[:-1], buf.astype(np.float32), np.asfortranarray(buf), buf[:, ::2]):
        with pytest.raises(ValueError, match="out must be a writeable C-contiguous float64 array"):
            fs.compute_array(c, o, h, l, out=bad)


def test_bad_arguments(ohlc):
    o, h, l, c = ohlc
    with pytest.raises(ValueError, match=r"window must be an int in \[2, 100000\]"):
        F.close_to_close_vol(c, 1)
    with pytest.raises(ValueError, match=r"lambda must be in \(0, 1\)"):
        F.ewma_vol(c, 1.5)
    with pytest.raises(ValueError, match="high < low at row 3"):
        h2 = h.copy()
        h2[3, 0] = l[3, 0] * 0.5
        F.parkinson_vol(h2, l, 5)
    with pytest.raises(ValueError, match="shape"):
        F.garman_klass_vol(o[:-1], h, l, c, 5)
    with pytest.raises(ValueError, match="need open, high and low"):
        F.FeatureSet().compute(c)
    with pytest.raises(TypeError, match="numbers"):
        F.close_to_close_vol(np.array(["a", "b"]), 2)
    with pytest.raises(ValueError, match="empty"):
        F.close_to_close_vol(np.zeros((0, 3)), 2)


def test_streaming_bad_input(ohlc, tmp_path):
    o, h, l, c = ohlc
    fs = F.FeatureSet(cc_windows=(5,), ewma_lambdas=(), range_features=())
    stream = fs.stream(c.shape[1])
    with pytest.raises(ValueError, match="bar has 3 values, expected 6"):
        stream.update(c[0, :3])
    bad = tmp_path / "state.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="not a saved feature state"):
        F.StreamingFeatures.load(fs, bad)
    stream.save(tmp_path / "ok.npz")
    with pytest.raises(ValueError, match="another feature set"):
        F.StreamingFeatures.load(F.FeatureSet(cc_windows=(21,), ewma_lambdas=(), range_features=()), tmp_path / "ok.npz")


def test_one_day_range_window(ohlc):
    """A range mean over one day is that day's estimator; Yang-Zhang needs two days."""
    o, h, l, c = ohlc
    assert_matches(F.garman_klass_vol(o, h, l, c, 1), ref.garman_klass_vol(o, h, l, c, 1))
    assert_matches(F.parkinson_vol(h, l, 1), ref.parkinson_vol(h, l, 1))
    with pytest.raises(ValueError, match=r"range_window must be an int in \[2, 100000\]"):
        F.FeatureSet(range_window=1)
