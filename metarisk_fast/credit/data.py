"""Credit data in: a table of loans with a binary target (default = 1) and a segment column, and
the fitted, saved transform that turns attributes into learner inputs (numeric columns
standardised, categorical ones one-hot; fitted on the training segments only)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import DataError

DEFAULT_TARGET, DEFAULT_SEGMENT = "creditability", "purpose"
BAD_LABELS = ("bad", "default", "defaulted", "yes", "1", "true")  # the positive class of a text target
GOOD_LABELS = ("good", "non-default", "no", "0", "false")


@dataclass(frozen=True)
class CreditData:
    """Loans: ``frame`` holds the attributes (not the target or the segment), ``y`` is 1 for a
    default, ``segment`` names each loan's segment."""

    frame: pd.DataFrame
    y: np.ndarray
    segment: np.ndarray
    target: str
    segment_column: str
    source: str

    def __len__(self) -> int:
        return len(self.y)

    @property
    def segments(self) -> list[str]:
        return sorted(set(self.segment))

    def take(self, rows) -> "CreditData":
        """The loans at positions ``rows`` (an index array), as a new CreditData."""
        rows = np.asarray(rows)
        return CreditData(self.frame.iloc[rows].reset_index(drop=True), self.y[rows], self.segment[rows], self.target,
                          self.segment_column, self.source)


def read_table(source) -> tuple[pd.DataFrame, str]:
    """(table, its name) from a CSV / Parquet path, a DataFrame (copied) or 'default' (the
    embedded German credit data); an unreadable file is a DataError naming it."""
    if isinstance(source, pd.DataFrame):
        return source.copy(), "<DataFrame>"
    if isinstance(source, str) and source == "default":
        with resources.as_file(resources.files("metarisk_fast.datasets").joinpath("data", "german_credit.csv.gz")) as p:
            return pd.read_csv(p), "german_credit"
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path), str(path)
        return pd.read_csv(path), str(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV or Parquet table ({exc})") from None


def binary_target(values: pd.Series, name: str, source: str) -> np.ndarray:
    """1 for a default, 0 otherwise, from 0/1 numbers, booleans or good/bad-style labels."""
    if values.isna().any():
        raise DataError(f"{source}: target column {name!r} is missing on row {int(np.flatnonzero(values.isna())[0])}")
    if values.dtype == bool:
        return values.to_numpy().astype(np.int64)
    if pd.api.types.is_numeric_dtype(values):
        levels = set(np.unique(values.to_numpy()).tolist())
        if not levels <= {0, 1}:
            raise DataError(f"{source}: target column {name!r} must be binary (0/1 or good/bad), has values "
                            f"{sorted(levels)[:6]}")
        return values.to_numpy().astype(np.int64)
    text = values.astype(str).str.strip().str.lower()
    levels = set(text.unique())
    if not (levels <= set(BAD_LABELS) | set(GOOD_LABELS)) or len(levels & set(BAD_LABELS)) > 1 \
            or len(levels & set(GOOD_LABELS)) > 1:
        raise DataError(f"{source}: target column {name!r} must be binary (0/1 or good/bad), has values "
                        f"{sorted(levels)[:6]}")
    return text.isin(BAD_LABELS).to_numpy().astype(np.int64)


def load_credit(source="default", *, target: str = DEFAULT_TARGET, segment: str = DEFAULT_SEGMENT) -> CreditData:
    """Loans from a CSV / Parquet file, a DataFrame or 'default' (the embedded German credit data)."""
    frame, name = read_table(source)
    for column, option in ((target, "--target"), (segment, "--segment")):
        if column not in frame.columns:
            raise DataError(f"{name}: no column {column!r} ({option}); columns: {', '.join(map(str, frame.columns))}")
    if target == segment:
        raise DataError(f"{name}: the target and the segment must be different columns, both are {target!r}")
    if len(frame) == 0:
        raise DataError(f"{name}: no rows")
    y = binary_target(frame[target], target, name)
    if frame[segment].isna().any():
        raise DataError(f"{name}: segment column {segment!r} is missing on row {int(np.flatnonzero(frame[segment].isna())[0])}")
    seg = frame[segment].astype(str).to_numpy()
    return CreditData(frame.drop(columns=[target, segment]).reset_index(drop=True), y, seg, target, segment, name)


@dataclass
class CreditEncoder:
    """Numeric attributes standardised with the training rows' mean and standard deviation (a
    missing value becomes the mean), categorical ones one-hot over the training rows' levels (an
    unseen level: all zeros). ``names`` are the input columns; ``groups`` map each back to its
    attribute (for the reasons given with each score)."""

    numeric: dict
    categorical: dict

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> "CreditEncoder":
        numeric, categorical = {}, {}
        for col in frame.columns:
            values = frame[col]
            if pd.api.types.is_numeric_dtype(values) and values.dtype != bool:
                x = values.to_numpy(np.float64)
                mean = float(np.nanmean(x)) if np.isfinite(x).any() else 0.0
                std = float(np.nanstd(x)) if np.isfinite(x).any() else 1.0
                numeric[str(col)] = (mean, std if std > 0 else 1.0)
            else:
                categorical[str(col)] = sorted(values.dropna().astype(str).unique().tolist())
        return cls(numeric, categorical)

    @property
    def names(self) -> list[str]:
        return list(self.numeric) + [f"{c}={v}" for c, levels in self.categorical.items() for v in levels]

    @property
    def groups(self) -> list[str]:
        return list(self.numeric) + [c for c, levels in self.categorical.items() for _ in levels]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The model inputs (loans, features) float32 of a frame of loans with the encoder's
        attribute columns; a missing column raises DataError."""
        missing = [c for c in (*self.numeric, *self.categorical) if c not in frame.columns]
        if missing:
            raise DataError(f"the loans lack the model's attribute columns {missing}")
        parts = []
        for col, (mean, std) in self.numeric.items():
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
            parts.append(((np.where(np.isfinite(x), x, mean) - mean) / std)[:, None])
        for col, levels in self.categorical.items():
            x = frame[col].astype(str).to_numpy()
            parts.append((x[:, None] == np.asarray(levels, dtype=object)[None, :]).astype(np.float64))
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    def to_json(self) -> str:
        """The encoder's columns as JSON (what a saved credit model records)."""
        return json.dumps({"numeric": self.numeric, "categorical": self.categorical})

    @classmethod
    def from_json(cls, text: str) -> "CreditEncoder":
        d = json.loads(text)
        return cls({k: tuple(v) for k, v in d["numeric"].items()}, d["categorical"])
