"""File readers behind the loaders: CSV / Parquet / JSONL tables (with the file line of every
row, for error messages), RecBole atomic files, column mappings and column-name aliases.
Bad input raises `DataError` naming the file, the line (or row) and the column.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import pandas as pd

from ..errors import DataError
from .strict import check_header, check_mapping, read_delimited, strict_json_object
from .validate import Source

_GENERIC_EXT = {"csv": (".csv", ".tsv"), "parquet": (".parquet", ".pq"), "jsonl": (".jsonl", ".json", ".jsonl.gz")}
_TITLE_ALIASES = ("title", "movie_title", "name", "item_name", "product_title")
_CATEGORY_ALIASES = ("category", "class", "genre", "genres", "categories", "main_category")
_TEXT_ALIASES = ("text", "description", "desc", "summary")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _first_non_utf8_line(path: Path) -> int | None:
    """1-based number of the first line of `path` that is not valid UTF-8 (None if unknown)."""
    found = _first_non_utf8(path)
    return found[0] if found is not None else None


def _first_non_utf8(path: Path) -> tuple[int, int] | None:
    """(1-based line, 0-based byte offset) of the first byte of `path` that is not valid UTF-8
    (offsets of a ``.gz`` file count its decompressed bytes; None if unknown)."""
    import gzip
    import zlib

    offset = 0
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    return lineno, offset + e.start
                offset += len(raw)
    except (OSError, EOFError, zlib.error):
        return None
    return None


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn the OS and decoding errors of reading a user's file into a DataError naming it
    (and, for text that is not UTF-8, the first bad line)."""
    p = Path(path)
    try:
        yield
    except UnicodeDecodeError as e:
        bad = e.object[e.start] if isinstance(e.object, bytes) and e.start < len(e.object) else None
        byte = f" (byte 0x{bad:02x})" if bad is not None else ""
        found = _first_non_utf8(p) if p.is_file() else None
        at = f" at byte {found[1]}" if found is not None else ""
        raise DataError(
            f"not valid UTF-8 text{at}{byte}; save the file as UTF-8",
            path=str(p),
            line=found[0] if found is not None else None,
        ) from None
    except (EOFError, zlib.error) as e:  # gzip: a truncated or damaged compressed file
        raise DataError(f"truncated or corrupt compressed file ({e})", path=str(p)) from None
    except OSError as e:  # FileNotFoundError, IsADirectoryError, PermissionError, gzip.BadGzipFile ...
        raise DataError(f"cannot read: {e.strerror or e}", path=str(e.filename or p)) from None


def _reads(fn: Callable[Concatenate[Path, _P], _R]) -> Callable[Concatenate[Path, _P], _R]:
    """Run a reader of the file `path` (its first argument) under `reading(path)`."""

    @functools.wraps(fn)
    def wrapper(path: Path, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with reading(path):
            return fn(path, *args, **kwargs)

    return wrapper


def _find(folder: Path, stem: str, fmt: str) -> Path | None:
    for ext in _GENERIC_EXT[fmt]:
        cand = folder / f"{stem}{ext}"
        if cand.is_file():
            return cand
    return None


@_reads
def _read_table(path: Path, fmt: str, sep: str | None = None) -> tuple[pd.DataFrame, Source]:
    if path.stat().st_size == 0:
        raise DataError("file is empty", path=str(path))
    if fmt == "csv":
        if sep is None:
            sep = "\t" if path.suffix == ".tsv" else ","
        # the header is checked for duplicates, every row for extra fields (strict.py)
        df = read_delimited(path, sep=sep, what="CSV")
        return _restore_numbers(df), Source(str(path), first_line=2)
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        except Exception as e:  # pyarrow raises several types
            raise DataError(f"cannot read Parquet: {e}", path=str(path)) from None
        check_header(names, str(path), line=None)
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types
            raise DataError(f"cannot read Parquet: {e}", path=str(path)) from None
        return df, Source(str(path), first_line=None)
    if fmt == "jsonl":
        return _read_jsonl(path)
    raise ValueError(fmt)


def _restore_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """CSV columns are read as strings (ids stay exact); non-id columns that are fully numeric
    become numbers, the rest stay strings. Ratings/timestamps are converted during validation."""
    for c in df.columns:
        if c in ("user_id", "item_id", "rating", "timestamp"):
            continue
        num = pd.to_numeric(df[c], errors="coerce")
        if num.notna().sum() == df[c].notna().sum() and df[c].notna().any():
            df[c] = num
    return df


@_reads
def _read_jsonl(path: Path) -> tuple[pd.DataFrame, Source]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            rec = strict_json_object(line, str(path), lineno)  # a key given twice: DataError
            if not isinstance(rec, dict):
                raise DataError("each line must be a JSON object", path=str(path), line=lineno)
            records.append(rec)
            lines.append(lineno)
    if not records:
        raise DataError("file is empty", path=str(path))
    df = pd.DataFrame.from_records(records)
    # map row positions back to file lines (blank lines skipped)
    return df, Source(str(path), first_line=1, positions=np.asarray(lines) - 1)


def _rename(df: pd.DataFrame, mapping: Mapping[str, str] | None, src: Source) -> pd.DataFrame:
    if not mapping:
        return df
    missing = [v for v in mapping.values() if v not in df.columns]
    if missing:
        from .validate import suggest_column

        close = suggest_column(missing[0], [str(c) for c in df.columns])
        hint = f" (did you mean {close!r}?)" if close else ""
        raise DataError(
            f"column mapping names column(s) {missing} not in the file{hint}; found {list(df.columns)}",
            path=src.path,
            column=missing[0],
        )
    check_mapping(list(df.columns), mapping, src.path)
    return df.rename(columns={v: k for k, v in mapping.items()})


def _alias(df: pd.DataFrame, target: str, aliases: tuple[str, ...]) -> pd.DataFrame:
    if target in df.columns:
        return df
    for a in aliases:
        if a in df.columns:
            return df.rename(columns={a: target})
    return df


@_reads
def _read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    if path.stat().st_size == 0:
        raise DataError("file is empty", path=str(path))
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n\r")
    if not header.strip():
        raise DataError("file is empty (no header)", path=str(path), line=1)
    names, types = [], {}
    for field in header.split("\t"):
        if ":" not in field:
            raise DataError(
                f"RecBole header field {field!r} is not 'name:type'", path=str(path), line=1, column=field
            )
        n, t = field.rsplit(":", 1)
        if t not in ("token", "token_seq", "float", "float_seq"):
            raise DataError(f"unknown RecBole type {t!r}", path=str(path), line=1, column=field)
        names.append(n)
        types[n] = t
    check_header(names, str(path), line=1)
    # rows with more fields than the header: DataError with the line (strict.py)
    df = read_delimited(path, sep="\t", names=names, skiprows=1, quoting=3, what="RecBole file")
    if len(df) == 0:
        raise DataError("file has a header but no rows", path=str(path))
    return df, types
