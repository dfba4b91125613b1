"""Strict checks of timestamps in hostile input files (issue 19), split from `strict`.

- negative timestamps (before 1970), numbers in another unit than the format's (13-digit
  milliseconds read as seconds land in year 52311) or several units in one column;
- columns mixing unix numbers and date strings, dates outside the range pandas can hold;
- day/month dates that can be read both ways (``03/04/2020``) or mix the two orders.

Every failure is a `DataError` naming the file, the line (or row) and the column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import DataError

if TYPE_CHECKING:  # validate.py imports this module
    from .validate import Source

__all__ = [
    "check_date_forms",
    "check_date_range",
    "check_timestamps",
    "date_order_to_iso",
    "shown",
]


def shown(v: Any, limit: int = 60) -> str:
    """`repr` of a value for a message: numpy scalars as plain Python values, capped."""
    if isinstance(v, np.generic):
        v = v.item()
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


# --------------------------------------------------------------------------- timestamps
_UNITS = ("seconds", "milliseconds", "microseconds", "nanoseconds")
_UNIT_FACTOR = {"s": 0, "ms": 1, "us": 2, "ns": 3}


def _unit_classes(v: np.ndarray) -> np.ndarray:
    """Per value: 0 seconds, 1 ms, 2 us, 3 ns (by magnitude from 1e8, i.e. from 1973 on in
    seconds), -1 for smaller values (no unit can be told: sequence numbers, early dates)."""
    out = np.full(v.shape, -1, dtype=np.int64)
    big = np.isfinite(v) & (v >= 1e8)
    out[big] = np.minimum(3, np.floor((np.log10(v[big]) - 8) / 3)).astype(np.int64)
    return out


def check_timestamps(
    values: pd.Series,
    raw: pd.Series,
    src: Source,
    column: str = "timestamp",
    what: str = "interactions",
    unit: str = "s",
) -> None:
    """Check numeric timestamps (`values`, positions as in `raw`, the values as written): no
    negative one (before 1970), and one unit in the whole column, the expected `unit`."""
    v = values.to_numpy(dtype=np.float64)
    neg = v < 0
    if neg.any():
        pos = int(np.flatnonzero(neg)[0])
        raise DataError(
            f"{what}: timestamp {shown(raw.iloc[pos])} is before 1970-01-01 (negative unix time); "
            "interaction times must be unix time >= 0 or dates from 1970 on",
            path=src.path, column=column, **src.locate(pos),
        )
    classes = _unit_classes(v)
    present = [int(k) for k in np.unique(classes) if k >= 0]
    if len(present) > 1:
        counts = {k: int((classes == k).sum()) for k in present}
        major = max(present, key=lambda k: (counts[k], -k))
        minor = next(k for k in present if k != major)
        p_major = int(np.flatnonzero(classes == major)[0])
        p_minor = int(np.flatnonzero(classes == minor)[0])
        unit_major = next(iter(src.locate(p_major).items()))
        raise DataError(
            f"{what}: timestamp {shown(raw.iloc[p_minor])} looks like {_UNITS[minor]} but "
            f"{shown(raw.iloc[p_major])} ({unit_major[0]} {unit_major[1]}) like {_UNITS[major]}: "
            "the column mixes time units; convert them to one",
            path=src.path, column=column, **src.locate(p_minor),
        )
    want = _UNIT_FACTOR[unit]
    if present and present[0] != want:
        pos = int(np.flatnonzero(classes == present[0])[0])
        factor = 1000 ** abs(present[0] - want)
        fix = f"divide by {factor:,}" if present[0] > want else f"multiply by {factor:,}"
        raise DataError(
            f"{what}: timestamp {shown(raw.iloc[pos])} looks like {_UNITS[present[0]]}, but this "
            f"format's timestamps are unix {_UNITS[want]} ({fix})",
            path=src.path, column=column, **src.locate(pos),
        )


def check_date_forms(s: pd.Series, numeric: pd.Series, src: Source, column: str = "timestamp",
                     what: str = "interactions") -> None:
    """A DataError when a timestamp column mixes numbers (unix time) and date strings: pandas
    would read the number ``1000`` as the year 1000."""
    is_num = numeric.notna().to_numpy()
    is_date = (s.notna() & numeric.isna()).to_numpy()
    if is_num.any() and is_date.any():
        p_num, p_date = int(np.flatnonzero(is_num)[0]), int(np.flatnonzero(is_date)[0])
        first, later = sorted((p_num, p_date))
        where = next(iter(src.locate(first).items()))
        raise DataError(
            f"{what}: timestamp {shown(s.iloc[p_num])} is a number (unix time) but "
            f"{shown(s.iloc[p_date])} a date (the other at {where[0]} {where[1]}); use one form",
            path=src.path, column=column, **src.locate(later),
        )


_LATEST = pd.Timestamp("2262-04-11", tz="UTC")  # datetime64[ns] ends here


def check_date_range(parsed: pd.Series, raw: pd.Series, src: Source, column: str = "timestamp",
                     what: str = "interactions") -> None:
    """Parsed (UTC) dates must lie in [1970-01-01, 2262-04-11): interaction times are unix
    time >= 0, and later dates overflow nanoseconds."""
    early = (parsed < pd.Timestamp(0, tz="UTC")).to_numpy(dtype=bool)
    late = (parsed >= _LATEST).to_numpy(dtype=bool)
    for bad, msg in ((early, "is before 1970-01-01; interaction times must be dates from 1970 on"),
                     (late, "is after 2262-04-11 (out of range)")):
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(f"{what}: timestamp {shown(raw.iloc[pos])} {msg}",
                            path=src.path, column=column, **src.locate(pos))


_DMY = r"^\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?!\d)(.*)$"


def date_order_to_iso(s: pd.Series, src: Source, column: str = "timestamp", what: str = "interactions") -> pd.Series:
    """Rewrite the ``dd/mm/yyyy`` / ``mm/dd/yyyy`` dates of a string column (separators ``/``,
    ``.``, ``-``; 2-digit years as POSIX ``%y``) as ISO ``yyyy-mm-dd``, so pandas never guesses
    an order per row. A date that reads both ways (``03/04/2020``) is a DataError, and so is a
    column mixing day-first (``25/04/2020``) and month-first (``04/25/2020``) dates."""
    text = s.astype(str)
    parts = text.str.extract(_DMY)
    matched = parts[0].notna().to_numpy()
    if not matched.any():
        return s
    a = pd.to_numeric(parts[0], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    b = pd.to_numeric(parts[2], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    ambiguous = matched & (a <= 12) & (b <= 12) & (a != b)
    day_first = matched & (a > 12) & (b <= 12)
    month_first = matched & (b > 12) & (a <= 12)
    if ambiguous.any():
        pos = int(np.flatnonzero(ambiguous)[0])
        v = text.iloc[pos].strip()
        raise DataError(
            f"{what}: date {v!r} is ambiguous (day {a[pos]} of month {b[pos]}, or month {a[pos]} "
            f"day {b[pos]}?); write dates as YYYY-MM-DD (ISO 8601) or unix seconds",
            path=src.path, column=column, **src.locate(pos),
        )
    if day_first.any() and month_first.any():
        pd_, pm = int(np.flatnonzero(day_first)[0]), int(np.flatnonzero(month_first)[0])
        first, later = sorted((pd_, pm))
        where = next(iter(src.locate(first).items()))
        raise DataError(
            f"{what}: dates mix day-first {text.iloc[pd_].strip()!r} and month-first "
            f"{text.iloc[pm].strip()!r} (the other at {where[0]} {where[1]}); write dates as "
            "YYYY-MM-DD (ISO 8601)",
            path=src.path, column=column, **src.locate(later),
        )
    dayfirst = bool(day_first.any())
    out = text.copy()
    rows = np.flatnonzero(matched)
    sub = parts.iloc[rows]
    iso = []
    for x, y, year, rest in zip(sub[0], sub[2], sub[3], sub[4], strict=True):
        d, m = (int(x), int(y)) if dayfirst else (int(y), int(x))
        yr = int(year)
        if len(year) == 2:
            yr += 2000 if yr < 69 else 1900
        iso.append(f"{yr:04d}-{m:02d}-{d:02d}{rest}")
    out.iloc[rows] = iso  # type: ignore[call-overload]  # pandas-stubs: no list value for iloc
    return out.where(s.notna(), s)
