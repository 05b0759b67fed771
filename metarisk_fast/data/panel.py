"""Market data in: wide or long CSV / Parquet files, or DataFrames, into one validated panel.

Wide: a ``Date`` column (any case; an unnamed first column of dates, as pandas' ``to_csv`` writes
its index, is one) then one close column per asset.
Long: ``date, asset, open, high, low, close[, volume]`` (open/high/low optional together), in any
row order (read in date order per asset, with a note).
CSV fields are comma-separated unless a ``PriceFile`` names another separator.
Missing values (an asset not yet listed, a holiday) are kept as NaN and masked, never filled.
Every rejection names the source, the column and the first bad row.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .._checks import check_separator

LONG_REQUIRED = ("date", "asset", "close")
LONG_ALLOWED = ("date", "asset", "open", "high", "low", "close", "volume")
FIELDS = ("open", "high", "low", "close")


def plain(value) -> str:
    """A value as a user reads it: NumPy scalars as Python numbers and strings (no np.float64(...))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


class DataError(ValueError):
    """Input data that cannot be used as given."""


class QuantisationWarning(UserWarning):
    """Prices so coarsely rounded that daily returns come in visible steps."""


@dataclass(frozen=True)
class PricePanel:
    """Daily prices, dates x assets; NaN marks a missing observation.

    Parameters
    ----------
    dates : numpy.ndarray
        (T,) datetime64[D], strictly increasing.
    assets : tuple of str
        (N,) asset names.
    close : numpy.ndarray
        (T, N) float64 closes, positive or NaN.
    open, high, low : numpy.ndarray, optional
        (T, N) float64, together or not at all.
    source : str
        Where the prices came from (a path, or '<DataFrame>'), for messages.
    """

    dates: np.ndarray  # datetime64[D], strictly increasing
    assets: tuple[str, ...]
    close: np.ndarray  # (T, N) float64
    open: np.ndarray | None = None
    high: np.ndarray | None = None
    low: np.ndarray | None = None
    source: str = "<DataFrame>"

    @property
    def n_days(self) -> int:
        return int(self.close.shape[0])

    @property
    def n_assets(self) -> int:
        return int(self.close.shape[1])

    @property
    def has_ohlc(self) -> bool:
        return self.open is not None

    @property
    def mask(self) -> np.ndarray:
        """True where a close price was observed."""
        return ~np.isnan(self.close)

    def asset_index(self, names) -> np.ndarray:
        """Column positions of assets in this panel.

        Parameters
        ----------
        names : sequence of str
            Asset names; an unknown one raises DataError naming it.

        Returns
        -------
        numpy.ndarray
            (len(names),) int64.
        """
        lookup = {a: i for i, a in enumerate(self.assets)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise DataError(f"{self.source}: unknown assets {missing}; the panel has {list(self.assets)}")
        return np.array([lookup[n] for n in names], dtype=np.int64)

    def row_of(self, date, side: str = "left") -> int:
        """The row of a date, as np.searchsorted on the dates.

        Parameters
        ----------
        date : date-like
            The date.
        side : {'left', 'right'}
            'left': the first row on or after it; 'right': one past the last row on or before it.

        Returns
        -------
        int
            A row in [0, T].
        """
        return int(np.searchsorted(self.dates, np.datetime64(date, "D"), side))

    def select(self, assets=None, start=None, end=None) -> "PricePanel":
        """The sub-panel of some assets and dates start <= date <= end.

        Parameters
        ----------
        assets : sequence of str, optional
            The assets, in the new order (default: all).
        start, end : date-like, optional
            The first and last dates (default: the panel's).

        Returns
        -------
        PricePanel
            A new panel (its arrays copied).
        """
        cols = np.arange(self.n_assets) if assets is None else self.asset_index(list(assets))
        lo = 0 if start is None else self.row_of(start)
        hi = self.n_days if end is None else self.row_of(end, "right")
        if hi <= lo:
            raise DataError(f"{self.source}: no dates between {start} and {end} "
                            f"(data covers {self.dates[0]} to {self.dates[-1]})")
        cut = (lambda a: None if a is None else np.ascontiguousarray(a[lo:hi][:, cols]))
        return replace(self, dates=self.dates[lo:hi], assets=tuple(self.assets[i] for i in cols),
                       close=cut(self.close), open=cut(self.open), high=cut(self.high), low=cut(self.low))



@dataclass(frozen=True)
class PriceFile:
    """A price file whose CSV fields are separated by ``sep`` (e.g. ';', as spreadsheets of
    decimal-comma locales write them); a plain path means ','.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.
    sep : str
        One character: the field separator.
    """

    path: str | Path
    sep: str = ","

    def __post_init__(self):
        check_separator(self.sep)


def _read(path: Path, sep: str = ",") -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    name = path.name.lower()
    try:
        if name.endswith(".parquet") or name.endswith(".pq"):
            return pd.read_parquet(path)
        frame, header = pd.read_csv(path, sep=sep), pd.read_csv(path, sep=sep, header=None, nrows=1).iloc[0]
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as {'Parquet' if 'parq' in name else 'CSV'} "
                        f"(corrupt or not a price file): {exc}") from None
    _check_unique_columns([str(c) for c in header], str(path))
    if frame.shape[1] == 1 and sep == "," and ";" in str(frame.columns[0]):
        raise DataError(f"{path}: one column named {str(frame.columns[0])[:40]!r}: the fields look separated by "
                        "';'; give the separator (`--sep ';'`, or load_prices(PriceFile(path, sep=';')))")
    return frame


def _check_unique_columns(names: list[str], source: str) -> None:
    """The header as written (pandas renames a repeated name 'SPX' to 'SPX.1'): a name twice is
    refused, naming it and its columns."""
    seen: dict[str, int] = {}
    for k, n in enumerate(names):
        if n in seen:
            raise DataError(f"{source}: column '{n}' appears twice (columns {seen[n] + 1} and {k + 1}); each asset "
                            "takes one column")
        seen[n] = k


def _parse_dates(values, source: str, column: str) -> np.ndarray:
    parsed = pd.to_datetime(pd.Series(values), errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{source}: column '{column}', row {i + 1}: cannot parse date {plain(values[i])}")
    return parsed.to_numpy().astype("datetime64[D]")


def _numeric(frame: pd.DataFrame, source: str, row_offset=None) -> np.ndarray:
    out = np.empty(frame.shape, dtype=np.float64)
    for k, col in enumerate(frame.columns):
        s = frame[col]
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna().to_numpy() & s.notna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{source}: column '{col}', row {i + 1 if row_offset is None else row_offset[i]}: "
                            f"not a number: {plain(s.iloc[i])}")
        out[:, k] = num.to_numpy(dtype=np.float64)
    return out


def _check_dates(dates: np.ndarray, source: str, column: str) -> None:
    if len(dates) == 0:
        raise DataError(f"{source}: no rows")
    step = np.diff(dates).astype(np.int64)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0)) + 1
        what = "duplicate date" if step[i - 1] == 0 else "dates not sorted"
        raise DataError(f"{source}: column '{column}', row {i + 1}: {what} "
                        f"({dates[i]} after {dates[i - 1]})")


def _check_prices(arr: np.ndarray, source: str, field: str, assets, dates, rows=None) -> None:
    bad = np.isinf(arr) | (arr <= 0)  # NaN compares False: missing is allowed
    if bad.any():
        t, j = np.argwhere(bad)[0]
        row = t + 1 if rows is None else rows[t, j]
        raise DataError(f"{source}: {field} of '{assets[j]}', row {row} (date {dates[t]}): "
                        f"price {plain(arr[t, j])} is not a positive finite number")


def _from_wide(df: pd.DataFrame, source: str) -> PricePanel:
    date_cols = [c for c in df.columns if str(c).lower() == "date"]
    first = str(df.columns[0]) if df.shape[1] else "date"
    if not date_cols and (first == "" or first.startswith("Unnamed: 0")):  # pandas' to_csv of a date index
        date_cols = [df.columns[0]]
    if date_cols:
        dates = _parse_dates(df[date_cols[0]].to_numpy(), source, date_cols[0])
        df = df.drop(columns=date_cols[0])
        date_col = date_cols[0]
    elif isinstance(df.index, pd.DatetimeIndex):
        dates = df.index.to_numpy().astype("datetime64[D]")
        date_col = "index"
    else:
        raise DataError(f"{source}: no 'Date' column (wide format) and no 'date, asset, close' "
                        f"columns (long format); columns are {list(df.columns)[:8]}")
    if df.shape[1] == 0:
        raise DataError(f"{source}: no asset columns beside '{date_col}'")
    _check_dates(dates, source, date_col)
    assets = tuple(str(c) for c in df.columns)
    _check_unique_columns(list(assets), source)
    close = _numeric(df, source)
    _check_prices(close, source, "close", assets, dates)
    return PricePanel(dates=dates, assets=assets, close=close, source=source)


def _from_long(df: pd.DataFrame, source: str) -> PricePanel:
    cols = {str(c).lower(): c for c in df.columns}
    unknown = [c for c in cols if c not in LONG_ALLOWED]
    if unknown:
        raise DataError(f"{source}: unknown columns {unknown}; long format takes {list(LONG_ALLOWED)}")
    present = [f for f in ("open", "high", "low") if f in cols]
    if present and len(present) != 3:
        raise DataError(f"{source}: open, high and low come together; got only {present}")
    df = df.rename(columns={v: k for k, v in cols.items()})
    if len(df) == 0:
        raise DataError(f"{source}: no rows")
    dates = _parse_dates(df["date"].to_numpy(), source, "date")
    assets_col = df["asset"].astype(str).to_numpy()
    key = pd.DataFrame({"date": dates, "asset": assets_col})
    dup = key.duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise DataError(f"{source}: row {i + 1}: duplicate (date, asset) = ({dates[i]}, {assets_col[i]})")
    unsorted = [a for a, d in key.groupby("asset", sort=False)["date"]
                if (np.diff(d.to_numpy()).astype(np.int64) < 0).any()]
    if unsorted:  # the panel is built by date whatever the row order
        warnings.warn(f"{source}: the rows of {len(unsorted)} asset(s) ({', '.join(unsorted[:3])}"
                      f"{', ...' if len(unsorted) > 3 else ''}) are not in date order; read in date order",
                      DataQualityWarning, stacklevel=3)
    fields = ["close"] + (["open", "high", "low"] if present else [])
    values = _numeric(df[fields], source)
    all_dates = np.unique(dates)
    assets = tuple(pd.unique(assets_col))
    t_idx = np.searchsorted(all_dates, dates)
    a_idx = pd.Index(assets).get_indexer(assets_col)
    rows = np.zeros((len(all_dates), len(assets)), dtype=np.int64)
    rows[t_idx, a_idx] = np.arange(len(df)) + 1
    panel = {}
    for k, f in enumerate(fields):
        arr = np.full((len(all_dates), len(assets)), np.nan)
        arr[t_idx, a_idx] = values[:, k]
        _check_prices(arr, source, f, assets, all_dates, rows)
        panel[f] = arr
    if present:
        bad = panel["high"] < panel["low"]
        if bad.any():
            t, j = np.argwhere(bad)[0]
            raise DataError(f"{source}: row {rows[t, j]} ('{assets[j]}', {all_dates[t]}): "
                            f"high {plain(panel['high'][t, j])} < low {plain(panel['low'][t, j])}")
    return PricePanel(dates=all_dates, assets=assets, source=source, **panel)


def _looks_long(lower_columns: set) -> bool:
    """Long format: an 'asset' column, or at least two of the field names (open, high, low, close,
    volume). A wide file with one asset called 'close' stays wide."""
    return "asset" in lower_columns or len(lower_columns & set(LONG_ALLOWED[2:])) >= 2


def price_source(path, sep: str = ","):
    """What a command hands on for a --prices path and its --sep: the path itself (comma-separated,
    Parquet, or 'default') or a PriceFile."""
    return path if sep == "," or path is None or str(path) == "default" else PriceFile(path, sep)


def load_prices(source, *, warn_data: bool = True) -> PricePanel:
    """Load a price panel from a path (CSV, CSV.gz, Parquet), a PriceFile (a CSV with another
    separator) or a DataFrame, wide or long. With ``warn_data``, what the data checks find is
    warned, one line per kind (data_report lists it).

    Parameters
    ----------
    source : str, os.PathLike, PriceFile, pandas.DataFrame or PricePanel
        A CSV / CSV.gz / Parquet path, a PriceFile, or a DataFrame (wide: dates x assets of
        closes; long: date, asset, close and optionally open, high, low).
    warn_data : bool
        Warn what the data checks find (DataQualityWarning).

    Returns
    -------
    PricePanel
        The prices, dates sorted.
    """
    if isinstance(source, PricePanel):
        return source
    if isinstance(source, pd.DataFrame):
        df, name = source, "<DataFrame>"
    elif isinstance(source, (str, Path)):
        df, name = _read(Path(source)), str(source)
    elif isinstance(source, PriceFile):
        df, name = _read(Path(source.path), source.sep), str(source.path)
    else:
        raise TypeError(f"prices must be a path, a PriceFile or a pandas DataFrame, got {type(source).__name__}")
    if df.shape[0] == 0:
        raise DataError(f"{name}: no rows")
    lower = {str(c).lower() for c in df.columns}
    if _looks_long(lower):
        missing = [c for c in LONG_REQUIRED if c not in lower]
        if missing:
            raise DataError(f"{name}: long format (date, asset, [open, high, low,] close) but no "
                            f"{', '.join(repr(c) for c in missing)} column; columns are {list(df.columns)[:8]}")
        panel = _from_long(df, name)
    else:
        panel = _from_wide(df, name)
    if warn_data:
        warn_coarse_prices(panel)
        warn_gaps(panel)
        warn_data_faults(panel)
    return panel


def price_tick(prices: np.ndarray) -> float | None:
    """The decimal grid the prices lie on (0.001 for 3 decimals), None if none up to 1e-8."""
    p = prices[np.isfinite(prices)]
    if p.size == 0:
        return None
    for d in range(0, 9):
        scaled = p * 10.0 ** d
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-9 * np.maximum(1.0, np.abs(scaled))):
            return 10.0 ** -d
    return None


def coarse_stretches(panel: PricePanel, rel_step: float = 1e-3, min_days: int = 20):
    """(asset, first date, last date, worst step) where tick / price exceeds rel_step for at least
    min_days consecutive days: daily returns there move in steps of that size."""
    out = []
    for j, name in enumerate(panel.assets):
        col = panel.close[:, j]
        tick = price_tick(col)
        if tick is None:
            continue
        coarse = np.nan_to_num(tick / col, nan=0.0) > rel_step
        if not coarse.any():
            continue
        edges = np.diff(np.concatenate([[0], coarse.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for s, e in zip(starts, ends):
            if e - s >= min_days:
                out.append((name, panel.dates[s], panel.dates[e - 1], float(np.nanmax(tick / col[s:e]))))
    return out


MAX_GAP_DAYS = 5  # missing business days after which an asset's history restarts (a long halt or a hole in a file)


class CalendarGapWarning(UserWarning):
    """Dates more than MAX_GAP_DAYS business days apart: every asset restarts after the gap."""


def missing_business_days(before, after) -> np.ndarray:
    """Business days (Monday to Friday) strictly between two dates, elementwise."""
    before, after = np.asarray(before, "datetime64[D]"), np.asarray(after, "datetime64[D]")
    return np.busday_count(before + np.timedelta64(1, "D"), after)


def calendar_breaks(dates: np.ndarray) -> np.ndarray:
    """(T,) True at each date that follows its predecessor after more than MAX_GAP_DAYS missing
    business days: there every asset starts a new stretch, as after a long halt (no return across
    the gap, the features and the support start again). The batch (tasks.bridge_gaps) and the
    streaming engine both take their breaks from here."""
    out = np.zeros(len(dates), dtype=bool)
    if len(dates) > 1:
        out[1:] = missing_business_days(dates[:-1], dates[1:]) > MAX_GAP_DAYS
    return out


def calendar_gaps(panel: PricePanel) -> list[tuple]:
    """(last date before, first date after, missing business days) of every calendar break."""
    rows = np.flatnonzero(calendar_breaks(panel.dates))
    return [(panel.dates[r - 1], panel.dates[r], int(missing_business_days(panel.dates[r - 1], panel.dates[r])))
            for r in rows]


def asset_gaps(panel: PricePanel) -> list[tuple]:
    """(asset, last date before, first date after, missing closes) of every run of more than
    MAX_GAP_DAYS missing closes between two prices of one asset (a halt, a hole in one column):
    the asset restarts after it (tasks.bridge_gaps). Panel-wide calendar gaps are calendar_gaps'."""
    out = []
    for j, name in enumerate(panel.assets):
        rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
        missing = np.diff(rows) - 1
        for k in np.flatnonzero(missing > MAX_GAP_DAYS):
            out.append((name, panel.dates[rows[k]], panel.dates[rows[k + 1]], int(missing[k])))
    return out


def warn_gaps(panel: PricePanel) -> None:
    """One line for one asset's long gaps and one for calendar gaps, each naming the first and the
    count; ``asset_gaps``, ``calendar_gaps`` (and the reports) list them."""
    halts = asset_gaps(panel)
    if halts:
        a, before, after, n = halts[0]
        more = f" and {len(halts) - 1} more" if len(halts) > 1 else ""
        warnings.warn(f"{panel.source}: '{a}' has no price on {n} days from {before} to {after}{more}; an asset "
                      f"restarts after more than {MAX_GAP_DAYS} missing closes (no forecast until it has history "
                      "again)", CalendarGapWarning, stacklevel=3)
    gaps = calendar_gaps(panel)
    if gaps:
        before, after, days = gaps[0]
        more = f" and {len(gaps) - 1} more" if len(gaps) > 1 else ""
        warnings.warn(f"{panel.source}: no prices from {before} to {after} ({days} business days){more}; every "
                      f"asset restarts after a gap of more than {MAX_GAP_DAYS} business days (no forecast until it "
                      "has history again)", CalendarGapWarning, stacklevel=3)


STALE_RUN = 20  # identical closes in a row (a month) that mark a stale price feed
SPLIT_FACTORS = (2.0, 3.0, 4.0, 5.0, 10.0, 1.5)  # common split ratios (and their inverses, reverse splits)


class DataQualityWarning(UserWarning):
    """A price series that loads but looks wrong: a suspected unadjusted split, a stale run, an
    asset without a single price. ``warnings.simplefilter("error", DataQualityWarning)`` (or
    ``python -W error::metarisk_fast.data.DataQualityWarning``) makes them errors."""


def stale_runs(panel: PricePanel, min_days: int = STALE_RUN) -> list[tuple]:
    """(asset, first date, last date, closes) of every run of at least ``min_days`` identical
    closes in a row (missing days inside a run do not break it)."""
    out = []
    for j, name in enumerate(panel.assets):
        rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
        if len(rows) < min_days:
            continue
        col = panel.close[rows, j]
        change = np.concatenate([[True], col[1:] != col[:-1], [True]])
        starts = np.flatnonzero(change[:-1])
        lengths = np.diff(np.flatnonzero(change))
        for s, n in zip(starts, lengths):
            if n >= min_days:
                out.append((name, panel.dates[rows[s]], panel.dates[rows[s + n - 1]], int(n)))
    return out


def suspected_splits(panel: PricePanel, window: int = 63, z: float = 10.0, tolerance: float = 0.03) -> list[tuple]:
    """(asset, date, close ratio) of one-day moves that look like an unadjusted split: more than
    ``z`` robust standard deviations of the asset's previous ``window`` returns (1.4826 x their
    median absolute return) and a ratio within ``tolerance`` of a common split factor (or its
    inverse). Each date judged from the returns before it only."""
    close = panel.close
    if close.shape[0] < 3:
        return []
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = close[1:] / close[:-1]
        r = np.abs(np.log(ratio))
        scale = 1.4826 * pd.DataFrame(r).rolling(window, min_periods=20).median().shift(1).to_numpy()
        near = np.zeros(ratio.shape, dtype=bool)
        for f in SPLIT_FACTORS:
            near |= (np.abs(ratio * f - 1) < tolerance) | (np.abs(ratio / f - 1) < tolerance)
        hit = near & (r > z * scale) & (r > np.log(1.4))
    return [(panel.assets[j], panel.dates[t + 1], float(ratio[t, j])) for t, j in np.argwhere(hit)]


def empty_assets(panel: PricePanel) -> list[str]:
    """Assets (columns) without a single price: they load, and never get a forecast."""
    return [a for a, empty in zip(panel.assets, np.isnan(panel.close).all(axis=0)) if empty]


def data_report(panel: PricePanel) -> dict:
    """What the data checks found, for the reports (JSON-ready): coarsely rounded stretches,
    calendar gaps, one asset's long gaps, suspected splits, stale runs, assets without prices.

    Parameters
    ----------
    panel : PricePanel
        The prices.

    Returns
    -------
    dict
        coarse_stretches, calendar_gaps, asset_gaps, suspected_splits, stale_runs (lists of
        dicts naming the asset and dates) and empty_assets (names).
    """
    return {"coarse_stretches": [{"asset": a, "first": str(f), "last": str(t), "largest_step": round(w, 6)}
                                 for a, f, t, w in coarse_stretches(panel)],
            "calendar_gaps": [{"before": str(b), "after": str(a), "missing_business_days": d}
                              for b, a, d in calendar_gaps(panel)],
            "asset_gaps": [{"asset": a, "before": str(b), "after": str(t), "missing_closes": n}
                           for a, b, t, n in asset_gaps(panel)],
            "suspected_splits": [{"asset": a, "date": str(d), "close_ratio": round(x, 4)}
                                 for a, d, x in suspected_splits(panel)],
            "stale_runs": [{"asset": a, "first": str(f), "last": str(t), "closes": n} for a, f, t, n in stale_runs(panel)],
            "empty_assets": empty_assets(panel)}


def warn_data_faults(panel: PricePanel) -> None:
    """One warning per kind of fault found, naming the first asset and date (data_report lists all)."""
    splits, stale, empty = suspected_splits(panel), stale_runs(panel), empty_assets(panel)
    more = lambda items: f" and {len(items) - 1} more" if len(items) > 1 else ""  # noqa: E731
    if splits:
        a, d, x = splits[0]
        warnings.warn(f"{panel.source}: '{a}' closes at {x:.3f} times the day before on {d}, like an unadjusted "
                      f"split{more(splits)}; check the prices are split-adjusted", DataQualityWarning, stacklevel=3)
    if stale:
        a, f, t, n = stale[0]
        warnings.warn(f"{panel.source}: '{a}' closes unchanged {n} times in a row from {f} to {t}{more(stale)}; a "
                      "stale feed drives its variance towards zero", DataQualityWarning, stacklevel=3)
    if empty:
        warnings.warn(f"{panel.source}: {len(empty)} column(s) without a single price ({', '.join(empty[:5])}"
                      f"{', ...' if len(empty) > 5 else ''}); they get no forecast", DataQualityWarning, stacklevel=3)


def warn_coarse_prices(panel: PricePanel) -> None:
    """One line with counts; ``coarse_stretches`` (and the evaluation report) give the details."""
    stretches = coarse_stretches(panel)
    if stretches:
        assets = {a for a, *_ in stretches}
        worst = max(w for *_, w in stretches)
        warnings.warn(f"{panel.source}: coarsely rounded prices in {len(stretches)} stretches of {len(assets)} "
                      f"assets (daily returns move in steps of up to {worst:.2%}); the report lists them",
                      QuantisationWarning, stacklevel=3)
