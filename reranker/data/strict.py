"""Strict checks of hostile input files (issue 19): what pandas would otherwise accept silently.

- column headers given twice (pandas renames the second ``a.1`` or keeps only one) and column
  mappings that collide with a column already in the file;
- rows with more fields than the header (pandas moves the first field into the index, shifting
  every column, or drops the extra silently);
- ids that are not scalars (lists / dicts / booleans in JSONL or Parquet) or spell a missing
  value (``NaN``, ``NULL``, ``None``, ``N/A``, ... in any case): read as the string id "NULL";
- timestamps: negative ones (before 1970), numbers in another unit than the format's (13-digit
  milliseconds read as seconds land in year 52311) or several units in one column, and
  day/month dates that can be read both ways (``03/04/2020``) or mix the two orders;
- ratings outside the scale a format declares (MovieLens and Amazon: 1 to 5 stars).

Every failure is a `DataError` naming the file, the line (or row) and the column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from .strict_time import (  # timestamp/date checks, re-exported
    check_date_forms,
    check_date_range,
    check_timestamps,
    date_order_to_iso,
    shown,
)

if TYPE_CHECKING:  # validate.py imports this module
    from .validate import Source

__all__ = [
    "MISSING_ID_TOKENS",
    "check_date_forms",
    "check_date_range",
    "check_header",
    "check_ids",
    "check_mapping",
    "check_rating_range",
    "check_timestamps",
    "shown",
    "date_order_to_iso",
    "read_delimited",
    "strict_json_object",
]

Quoting = Literal[0, 1, 2, 3]
"""A `csv` quoting mode: QUOTE_MINIMAL, QUOTE_ALL, QUOTE_NONNUMERIC or QUOTE_NONE."""

MISSING_ID_TOKENS: frozenset[str] = frozenset(
    {"nan", "-nan", "null", "none", "na", "n/a", "<na>", "nat", "#n/a", "#n/a n/a", "#na",
     "1.#ind", "-1.#ind", "1.#qnan", "-1.#qnan", "undefined"}
)
"""Lower-cased spellings of a missing value (pandas' default NA strings, plus ``none``,
``nat`` and ``undefined``): an id spelled like this is refused, whatever its case."""


# --------------------------------------------------------------------------- headers
def check_header(names: Sequence[Any], path: str | None, line: int | None = 1) -> None:
    """A DataError for the first column header given twice (pandas would rename or drop it)."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        key = str(name)
        if key in first:
            raise DataError(
                f"duplicate column header {key!r} (columns {first[key] + 1} and {i + 1}); "
                "pandas would rename or drop one of them: rename or remove a column",
                path=path, line=line, column=key,
            )
        first[key] = i


def check_mapping(columns: Sequence[Any], mapping: Mapping[str, str], path: str | None) -> None:
    """A DataError when a column mapping (canonical -> source) would give two columns one name:
    its target already names another column of the file, or two targets share a source."""
    present = {str(c) for c in columns}
    sources = set(mapping.values())
    for target, source in mapping.items():
        if target != source and target in present and target not in sources:
            raise DataError(
                f"column mapping renames {source!r} to {target!r}, but the file already has a "
                f"column {target!r}; map or rename that one too",
                path=path, column=target,
            )
    seen: dict[str, str] = {}
    for target, source in mapping.items():
        if source in seen:
            raise DataError(
                f"column mapping maps {source!r} to both {seen[source]!r} and {target!r}",
                path=path, column=source,
            )
        seen[source] = target


# --------------------------------------------------------------------------- delimited text
def _first_overlong_record(
    path: Path, sep: str, quoting: Quoting, encoding: str, skip: int, expected: int | None
) -> tuple[int, int, int] | None:
    """(line, fields, expected) of the first record with more fields than `expected` (None:
    the first record's count), scanning with the csv module; None if there is none."""
    try:
        with open(path, encoding=encoding, newline="") as f:
            for _ in range(skip):
                f.readline()
            reader = csv.reader(f, delimiter=sep, quoting=quoting)
            end = skip  # the last line read so far
            for record in reader:
                start, end = end + 1, skip + reader.line_num
                if not record:  # a blank line (pandas skips these)
                    continue
                if expected is None:
                    expected = len(record)
                elif len(record) > expected:
                    return start, len(record), expected
    except (csv.Error, OSError, UnicodeDecodeError):
        return None
    return None


def _too_many_fields(
    path: Path, found: tuple[int, int, int], sep: str, quoting: Quoting, header: bool
) -> DataError:
    line, n, expected = found
    if n - expected > 1:  # "one tab too many" reads wrong for several
        return DataError(f"{n} fields, but {'the header' if header else 'the format'} has {expected}; pandas would "
                         "shift the columns or drop the extra fields", path=str(path), line=line)
    name = {"\t": "tab", ",": "comma", "|": "pipe", ";": "semicolon"}.get(sep, repr(sep))
    quote = "" if quoting == csv.QUOTE_NONE else f"; a value holding a {name} must be quoted"
    has = "the header has" if header else "the format has"
    return DataError(
        f"{n} fields, but {has} {expected} (one {name} too many{quote}); pandas "
        "would shift the columns or drop the extra fields",
        path=str(path), line=line,
    )


def read_delimited(
    path: Path,
    *,
    sep: str,
    names: Sequence[str] | None = None,
    skiprows: int = 0,
    quoting: Quoting = csv.QUOTE_MINIMAL,
    encoding: str = "utf-8",
    keep_default_na: bool = False,
    what: str = "CSV",
) -> pd.DataFrame:
    """`pd.read_csv` of every field as a string, strictly.

    With ``names=None`` the first line is the header (checked for duplicates), else the file has
    no header and `names` name its fields. A row with more fields than the header is a DataError
    naming its line; a row with fewer gets missing values (as pandas does).
    """
    na: dict[str, Any] = {"keep_default_na": keep_default_na}
    if not keep_default_na:
        na["na_values"] = [""]
    expected = len(names) if names is not None else None
    try:
        df = pd.read_csv(path, sep=sep, header=None, dtype=str, quoting=quoting, encoding=encoding,
                         skiprows=skiprows, **na)
    except pd.errors.EmptyDataError:
        if names is not None:  # nothing after the skipped lines: no rows
            return pd.DataFrame({n: pd.Series(dtype=object) for n in names})
        raise DataError("file is empty", path=str(path)) from None
    except pd.errors.ParserError as e:
        found = _first_overlong_record(path, sep, quoting, encoding, skiprows, expected)
        if found is not None:
            raise _too_many_fields(path, found, sep, quoting, names is None or skiprows > 0) from None
        m = re.search(r"line (\d+)", str(e))
        line = int(m.group(1)) + skiprows if m else None
        msg = " ".join(str(e).split())
        raise DataError(f"malformed {what}: {msg}", path=str(path), line=line) from None
    if names is None:
        header = [f"Unnamed: {i}" if pd.isna(v) else str(v) for i, v in enumerate(df.iloc[0].tolist())]
        check_header(header, str(path), line=None if skiprows else 1)
        df = df.iloc[1:].reset_index(drop=True)
        df.columns = pd.Index(header)
        return df
    if df.shape[1] > len(names):
        found = _first_overlong_record(path, sep, quoting, encoding, skiprows, len(names))
        if found is not None:
            raise _too_many_fields(path, found, sep, quoting, skiprows > 0)
        raise DataError(f"rows have {df.shape[1]} fields, expected {len(names)}", path=str(path))
    for i in range(df.shape[1], len(names)):  # short rows everywhere: missing values (pandas' way)
        df[i] = pd.Series([np.nan] * len(df), index=df.index, dtype=df[0].dtype if len(df.columns) else object)
    df.columns = pd.Index(list(names))
    return df


# --------------------------------------------------------------------------- JSON
class _Duplicated(dict[str, Any]):
    """A JSON object that gave a key twice (`duplicate` is the first such key)."""

    duplicate: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out and not isinstance(out, _Duplicated):
            out = _Duplicated(out)
            out.duplicate = k
        out[k] = v
    return out


def strict_json_object(line: str, path: str, lineno: int) -> Any:
    """`json.loads` of one JSONL line; a top-level key given twice is a DataError (plain
    `json.loads` keeps the last value silently). Nested objects keep the last value."""
    import json

    try:
        rec = json.loads(line, object_pairs_hook=_pairs)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", path=path, line=lineno) from None
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", path=path, line=lineno) from None
    if isinstance(rec, _Duplicated):
        raise DataError(f"key {rec.duplicate!r} given twice in one object", path=path, line=lineno,
                        column=rec.duplicate)
    return rec


# --------------------------------------------------------------------------- ids
_NOT_SCALAR = (list, tuple, dict, set, frozenset, np.ndarray, bytes, bytearray)


def _type_name(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "a boolean"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list | tuple | np.ndarray):
        return "a list"
    return f"a {type(v).__name__}"


def check_ids(s: pd.Series, src: Source, column: str, what: str) -> None:
    """A DataError for the first id that is not a scalar string/number (a list, an object, a
    boolean), that is a non-finite number, or, in a frame read from a file (`src.path` set),
    that spells a missing value (``NULL``, ``NaN``, ``None``, ...)."""
    if pd.api.types.is_bool_dtype(s):
        if len(s):
            raise DataError(f"{what}: id {shown(s.iloc[0])} is a boolean, not a string or number",
                            path=src.path, column=column, **src.locate(0))
        return
    if pd.api.types.is_float_dtype(s):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(v)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(f"{what}: id {shown(v[pos])} is not a finite number",
                            path=src.path, column=column, **src.locate(pos))
        return
    if pd.api.types.is_numeric_dtype(s):
        return
    if s.dtype == object:
        kinds = s.map(lambda v: isinstance(v, _NOT_SCALAR + (bool, np.bool_))).to_numpy(dtype=bool)
        if kinds.any():
            pos = int(np.flatnonzero(kinds)[0])
            val = s.iloc[pos]
            raise DataError(f"{what}: id {shown(val)} is {_type_name(val)}, not a string or number",
                            path=src.path, column=column, **src.locate(pos))
        floats = s.map(lambda v: isinstance(v, float) and not np.isfinite(v) and not np.isnan(v))
        if floats.to_numpy(dtype=bool).any():
            pos = int(np.flatnonzero(floats.to_numpy(dtype=bool))[0])
            raise DataError(f"{what}: id {shown(s.iloc[pos])} is not a finite number",
                            path=src.path, column=column, **src.locate(pos))
    if src.path is None:  # frames built in code: "none" is the caller's own id, not a reader's
        return
    text = s.astype(str).str.strip().str.lower()
    tokens = (text.isin(MISSING_ID_TOKENS) & s.notna()).to_numpy(dtype=bool)
    if tokens.any():
        pos = int(np.flatnonzero(tokens)[0])
        raise DataError(
            f"{what}: id {shown(s.iloc[pos])} spells a missing value; give the real id or drop the row",
            path=src.path, column=column, **src.locate(pos),
        )


# --------------------------------------------------------------------------- ratings
def check_rating_range(
    ratings: pd.Series, src: Source, lo: float, hi: float, fmt: str, column: str = "rating", what: str = "interactions"
) -> None:
    """A DataError for the first rating outside ``[lo, hi]``, the scale `fmt` declares (values
    that are not numbers are left to validation, which names them)."""
    v = pd.to_numeric(ratings, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isfinite(v) & ((v < lo) | (v > hi))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{what}: rating {shown(ratings.iloc[pos])} is outside the {lo:g} to {hi:g} scale of {fmt} data",
            path=src.path, column=column, **src.locate(pos),
        )

