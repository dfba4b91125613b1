"""Validation of the interaction and catalog frames behind :class:`~reranker.data.Dataset`.

Canonical columns are listed in :mod:`reranker.data.dataset`. Every check names the source
file, the line (or row) and the column of the first bad value (:class:`Source`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .strict import (
    check_date_forms,
    check_date_range,
    check_ids,
    check_timestamps,
    date_order_to_iso,
    shown,
)

# the name these messages had before validation moved out of dataset.py (CLI logs show it)
log = logging.getLogger(f"{__package__}.dataset")

OnUnknownItem = Literal["error", "drop"]

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp", "event")
ITEM_COLUMNS = ("item_id", "title", "text", "category")


@dataclass(frozen=True)
class Source:
    """Where a frame came from, so errors can point at the file and line.

    ``line_of(pos)`` maps a 0-based data-row position to the 1-based line in the file
    (``None``: the file has no lines, e.g. Parquet, and rows are reported instead).
    """

    path: str | None = None
    first_line: int | None = 2  # CSV with a header: data row 0 is on line 2
    positions: np.ndarray | None = None  # row position -> original position (after filtering)

    def locate(self, pos: int) -> dict[str, int]:
        orig = int(self.positions[pos]) if self.positions is not None else int(pos)
        if self.first_line is None:
            return {"row": orig + 1}
        return {"line": orig + self.first_line}


@dataclass
class LoadReport:
    """What loading did besides reading: counts of what was dropped and why (never silent)."""

    dropped_unknown_items: int = 0
    notes: list[str] = field(default_factory=list)


def _error(msg: str, src: Source, pos: int | None, column: str | None) -> DataError:
    where = src.locate(pos) if pos is not None else {}
    return DataError(msg, path=src.path, column=column, **where)


def suggest_column(col: str, have: list[str]) -> str | None:
    """The header name closest to `col` (``userId`` for ``user_id``), or None."""
    import difflib

    squash = {h.lower().replace("_", "").replace(" ", ""): h for h in have}
    hit = squash.get(col.lower().replace("_", ""))
    if hit is not None:
        return hit
    close = difflib.get_close_matches(col, have, n=1, cutoff=0.6)
    return close[0] if close else None


def _check_columns(df: pd.DataFrame, required: tuple[str, ...], src: Source, what: str) -> None:
    if len(df.columns) == 0:
        raise DataError(f"{what}: file is empty", path=src.path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        have = [str(c) for c in df.columns]
        close = suggest_column(missing[0], have)
        hint = (f"; did you mean {close!r}? map it with --column {missing[0]}={close} "
                f"(config: data.columns: {{{missing[0]}: {close}}})") if close else ""
        raise DataError(
            f"{what}: missing required column(s) {missing}{hint}; found {have}",
            path=src.path,
            column=missing[0],
        )


def _clean_ids(s: pd.Series, src: Source, column: str, what: str) -> pd.Series:
    """String ids; NaN / empty / whitespace-only ids are errors, and so are lists, objects,
    booleans, infinities and strings spelling a missing value (``NULL``, ``NaN``, ``None``: see
    `strict.check_ids`). Float ids like 3.0 become '3'."""
    check_ids(s, src, column, what)
    if pd.api.types.is_float_dtype(s):
        bad = s.isna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise _error(f"{what}: missing id", src, pos, column)
        v = s.to_numpy()
        if np.all(np.mod(v, 1) == 0):
            if not np.all(np.abs(v) < 2.0**63):  # beyond int64 (astype would wrap around)
                return pd.Series([str(int(x)) for x in v], index=s.index).astype(str)
            s = s.astype(np.int64)
    if pd.api.types.is_integer_dtype(s):
        return s.astype(str)
    na = s.isna().to_numpy()
    out = s.astype(str).str.strip()
    bad = na | (out == "").to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise _error(f"{what}: missing or empty id", src, pos, column)
    return out


def _to_float(s: pd.Series, src: Source, column: str, what: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        out = s.astype(np.float64)
        bad = ~np.isfinite(out.to_numpy())
    else:
        out = pd.to_numeric(s, errors="coerce").astype(np.float64)
        bad = ~np.isfinite(out.to_numpy())
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise _error(f"{what}: {column} value {shown(s.iloc[pos])} is not a number", src, pos, column)
    return out


def _to_unix_seconds(s: pd.Series, src: Source, column: str, what: str) -> pd.Series:
    """Numbers are unix seconds; strings are parsed as dates (ISO 8601 and friends)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        parsed = s
    elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        out = s.astype(np.float64)
        bad = ~np.isfinite(out.to_numpy())
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise _error(f"{what}: missing timestamp ({shown(s.iloc[pos])})", src, pos, column)
        return out
    else:
        numeric = pd.to_numeric(s, errors="coerce")
        if numeric.notna().all():
            return _to_unix_seconds(numeric, src, column, what)
        check_date_forms(s, numeric, src, column, what)  # "1000" next to "2020-01-02" (strict.py)
        # dd/mm vs mm/dd dates: one order per column, none that reads both ways (strict.py)
        parsed = pd.to_datetime(date_order_to_iso(s, src, column, what), errors="coerce", utc=True,
                                format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise _error(
            f"{what}: cannot parse timestamp {s.iloc[pos]!r}", src, pos, column
        )
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize("UTC")
    check_date_range(parsed, s, src, column, what)  # 1970 .. 2262 (strict.py)
    return (parsed.astype("datetime64[ns, UTC]").astype(np.int64) / 1e9).astype(np.float64)


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA


def validate_items(items: pd.DataFrame, src: Source | None = None) -> pd.DataFrame:
    """Return a canonical copy of the catalog frame, or raise DataError."""
    src = src or Source(first_line=None)
    _check_columns(items, ("item_id",), src, "items")
    if len(items) == 0:
        raise DataError("items: file has a header but no rows", path=src.path)
    df = items.copy()
    df["item_id"] = _clean_ids(df["item_id"], src, "item_id", "items")
    dup = df["item_id"].duplicated().to_numpy()
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((df["item_id"] == df["item_id"].iloc[pos]).to_numpy())[0])
        where_first = src.locate(first)
        unit, num = next(iter(where_first.items()))
        raise _error(
            f"items: duplicate item id {df['item_id'].iloc[pos]!r} (first seen at {unit} {num})",
            src,
            pos,
            "item_id",
        )
    if "title" not in df.columns:
        df["title"] = df["item_id"]
    else:
        df["title"] = df["title"].fillna("").astype(str)
        empty = df["title"].str.strip() == ""
        df.loc[empty, "title"] = df.loc[empty, "item_id"]
    df["text"] = df["text"].fillna("").astype(str) if "text" in df.columns else ""
    if "category" in df.columns:
        values = [None if _missing(x) or str(x).strip() == "" else str(x) for x in df["category"].tolist()]
    else:
        values = [None] * len(df)
    df["category"] = pd.Series(values, index=df.index, dtype=object)
    front = list(ITEM_COLUMNS)
    df = df[front + [c for c in df.columns if c not in front]]
    return df.reset_index(drop=True)


def validate_interactions(
    interactions: pd.DataFrame,
    item_ids: pd.Index | None,
    src: Source | None = None,
    on_unknown_item: OnUnknownItem = "error",
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """Return a canonical copy of the interactions frame, or raise DataError."""
    src = src or Source(first_line=None)
    _check_columns(interactions, ("user_id", "item_id"), src, "interactions")
    if len(interactions) == 0:
        raise DataError("interactions: file has a header but no rows", path=src.path)
    df = interactions.copy()
    df["user_id"] = _clean_ids(df["user_id"], src, "user_id", "interactions")
    df["item_id"] = _clean_ids(df["item_id"], src, "item_id", "interactions")
    if "rating" in df.columns:
        df["rating"] = _to_float(df["rating"], src, "rating", "interactions")
    if "timestamp" in df.columns:
        df["timestamp"] = _to_unix_seconds(df["timestamp"], src, "timestamp", "interactions")
        # none before 1970, one unit (seconds) in the whole column (strict.py)
        check_timestamps(df["timestamp"], interactions["timestamp"], src, "timestamp", "interactions")
    if "event" in df.columns:
        df["event"] = df["event"].fillna("").astype(str)
    if item_ids is not None:
        known = df["item_id"].isin(item_ids).to_numpy()
        if not known.all():
            n_bad = int((~known).sum())
            pos = int(np.flatnonzero(~known)[0])
            if on_unknown_item == "error":
                raise _error(
                    f"interactions: item id {df['item_id'].iloc[pos]!r} has no row in the catalog "
                    f"({n_bad} interaction(s) affected; pass on_unknown_item='drop' to skip them)",
                    src,
                    pos,
                    "item_id",
                )
            if on_unknown_item != "drop":
                raise ConfigError(f"on_unknown_item: must be 'error' or 'drop', got {on_unknown_item!r}")
            log.warning(
                "%s: dropped %d interaction(s) whose item has no catalog row",
                src.path or "interactions",
                n_bad,
            )
            if report is not None:
                report.dropped_unknown_items += n_bad
                report.notes.append(f"dropped {n_bad} interactions with unknown item ids")
            df = df.loc[known]
    keep = [c for c in INTERACTION_COLUMNS if c in df.columns]
    return df[keep].reset_index(drop=True)
