"""Loaders: generic CSV / Parquet / JSONL with a column mapping, MovieLens raw, RecBole atomic,
Amazon Reviews 2023. Every loader returns a validated `Dataset`; bad input raises `DataError`
naming the file, the line (or row) and the column. The file readers are in `readers.py`.

Strict about what pandas would accept silently (`strict.py`): a column header given twice, a
row with more fields than the header, an id that is a list / object / boolean or spells a
missing value (``NULL``, ``NaN``, ``None``, ``N/A``), a timestamp before 1970, in another unit
than the format's (seconds; Amazon: milliseconds) or mixing units, numbers mixed with dates, a
day/month date that reads both ways (``03/04/2020``: write ISO ``2020-04-03``), a rating that is
not finite or (MovieLens, Amazon: 1-5 stars) outside the format's scale. Generic formats accept
any finite rating (e.g. -10..10); ``Dataset.describe()["rating_scale"]`` reports the range seen.

    >>> from reranker.data import load
    >>> ds = load("../shared/data/ml-100k", format="recbole")
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import Dataset, LoadReport, OnUnknownItem, Source
from .movielens import detect_format, load_movielens_files, movielens_layout
from .readers import (
    _CATEGORY_ALIASES,
    _GENERIC_EXT,
    _TEXT_ALIASES,
    _TITLE_ALIASES,
    _alias,
    _find,
    _read_atomic,
    _read_jsonl,
    _read_table,
    _rename,
    reading,
)
from .strict import check_rating_range, check_timestamps, read_delimited

log = logging.getLogger(__name__)

Format = Literal["csv", "parquet", "jsonl", "movielens", "recbole", "amazon2023", "auto"]
FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl", "movielens", "recbole", "amazon2023")


def load(
    path: str | Path,
    format: Format | str = "csv",
    *,
    items: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    item_columns: Mapping[str, str] | None = None,
    on_unknown_item: OnUnknownItem = "error",
    name: str | None = None,
    sep: str | None = None,
    category_sep: str | None = "|",
) -> Dataset:
    """Load a dataset.

    Args:
        path: a folder, or for csv/parquet/jsonl/amazon2023 the interactions (reviews) file.
        format: one of ``csv, parquet, jsonl, movielens, recbole, amazon2023``, or ``auto``
            (the format `reranker data fetch` recorded, else told from the file names).
        items: the catalog file (csv/parquet/jsonl/amazon2023 meta) when `path` is a file.
        columns: mapping canonical -> source column for interactions, e.g. ``{"user_id": "uid"}``.
        item_columns: the same for the catalog.
        on_unknown_item: ``"error"`` (default) or ``"drop"`` (drop and count interactions whose
            item has no catalog row; the count is in ``Dataset.report``).
        sep: the field separator of csv files (default ``,``; ``.tsv``: tab).
        category_sep: a catalog ``category`` holding several values (``Animation|Children``)
            is split on it: ``category`` is the first, ``genres`` the list joined by ``|``
            (as the MovieLens loaders do); None keeps the values whole. csv/parquet/jsonl.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or folder", path=str(p))
    if format == "auto":  # reranker-dataset.json of a fetched folder, else the file names
        format = detect_format(p)
    with reading(p):  # OS / decoding errors the readers did not locate: name the file
        if format in ("csv", "parquet", "jsonl"):
            return load_table(p, format, items=items, columns=columns, item_columns=item_columns,
                              on_unknown_item=on_unknown_item, name=name, sep=sep, category_sep=category_sep)
        if format == "movielens":
            return load_movielens(p, on_unknown_item=on_unknown_item, name=name)
        if format == "recbole":
            return load_recbole(p, on_unknown_item=on_unknown_item, name=name)
        if format == "amazon2023":
            return load_amazon2023(p, meta=items, on_unknown_item=on_unknown_item, name=name)
    raise DataError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}", path=str(p))


# --------------------------------------------------------------------------- generic tables
def load_table(
    path: Path,
    fmt: str,
    *,
    items: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    item_columns: Mapping[str, str] | None = None,
    on_unknown_item: OnUnknownItem = "error",
    name: str | None = None,
    sep: str | None = None,
    category_sep: str | None = "|",
) -> Dataset:
    """Generic CSV / Parquet / JSONL: a folder holding ``interactions.<ext>`` (+ optional
    ``items.<ext>``), or an interactions file plus an optional `items` file."""
    if path.is_dir():
        inter_path = _find(path, "interactions", fmt)
        if inter_path is None:
            raise DataError(
                f"folder has no interactions{_GENERIC_EXT[fmt][0]} (format {fmt})", path=str(path)
            )
        items_path = Path(items) if items is not None else _find(path, "items", fmt)
    else:
        inter_path = path
        items_path = Path(items) if items is not None else None
    if items_path is None:
        log.warning("%s: no catalogue (items file) given or found: titles will be the item ids; "
                    "pass items= (CLI --items, config data.items)", path)
    inter, isrc = _read_table(inter_path, fmt, sep=sep)
    inter = _rename(inter, columns, isrc)
    item_df, tsrc = None, None
    if items_path is not None:
        if not items_path.is_file():
            raise DataError("no such file", path=str(items_path))
        item_df, tsrc = _read_table(items_path, fmt, sep=sep)
        item_df = _rename(item_df, item_columns, tsrc)
        for target, aliases in (("title", _TITLE_ALIASES), ("category", _CATEGORY_ALIASES), ("text", _TEXT_ALIASES)):
            item_df = _alias(item_df, target, aliases)
        item_df = split_categories(item_df, category_sep)
    return Dataset(
        inter,
        item_df,
        name=name or (path.name if path.is_dir() else path.stem),
        on_unknown_item=on_unknown_item,
        interactions_source=isrc,
        items_source=tsrc,
    )


def split_categories(items: pd.DataFrame, sep: str | None) -> pd.DataFrame:
    """A ``category`` column with several values per item (``A|B``): ``category`` becomes the
    first value and ``genres`` the whole list (``A|B``, blanks dropped); JSON lists likewise.
    Unchanged when no value holds `sep` (or a list), or when the catalog has ``genres`` already."""
    if "category" not in items.columns or "genres" in items.columns:
        return items
    col = items["category"]

    def parts(v: Any) -> list[str]:
        if isinstance(v, list | tuple | np.ndarray):
            return [str(x).strip() for x in v if x is not None and str(x).strip()]
        if isinstance(v, str) and sep:
            return [x.strip() for x in v.split(sep) if x.strip()]
        return [] if v is None or (isinstance(v, float) and np.isnan(v)) else [str(v)]

    def is_multi(v: Any) -> bool:
        return isinstance(v, list | tuple | np.ndarray) or (sep is not None and isinstance(v, str) and sep in v)

    if not any(is_multi(v) for v in col.tolist()):
        return items
    lists = col.map(parts)
    out = items.copy()
    out["category"] = lists.map(lambda g: g[0] if g else None)
    out["genres"] = lists.map("|".join)
    return out


# --------------------------------------------------------------------------- MovieLens raw
ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)


def load_movielens(path: Path, *, on_unknown_item: OnUnknownItem = "error", name: str | None = None) -> Dataset:
    """MovieLens 100K raw files: ``u.data`` (tab: user, item, rating, timestamp) and ``u.item``
    (pipe-separated, latin-1: id|title|release date|video date|url|19 genre flags); a folder
    (or rating file) of the later layouts, ``ratings.dat`` (1M, 10M) or ``ratings.csv``
    (latest, 20M, 25M, 32M), is read by `reranker.data.movielens`."""
    layout = movielens_layout(path)
    if layout in ("dat", "csv"):
        folder = path if path.is_dir() else path.parent
        return load_movielens_files(folder, layout, on_unknown_item=on_unknown_item, name=name)
    data_path = path / "u.data" if path.is_dir() else path
    item_path = data_path.parent / "u.item"
    for f in (data_path, item_path):
        if not f.is_file():
            raise DataError("missing MovieLens file", path=str(f))
        if f.stat().st_size == 0:
            raise DataError("file is empty", path=str(f))
    # a row with an extra field is a DataError naming its line (strict.py)
    inter = read_delimited(data_path, sep="\t", names=["user_id", "item_id", "rating", "timestamp"],
                           keep_default_na=True, what="u.data")
    if inter.shape[1] != 4 or inter["timestamp"].isna().any():
        bad = int(np.flatnonzero(inter["timestamp"].isna().to_numpy())[0])
        raise DataError("expected 4 tab-separated fields", path=str(data_path), line=bad + 1, column="timestamp")
    gpath = data_path.parent / "u.genre"
    genres = list(ML_GENRES)
    if gpath.is_file():
        g = pd.read_csv(gpath, sep="|", header=None, names=["genre", "idx"], encoding="latin-1").dropna()
        genres = g.sort_values("idx")["genre"].tolist()
    cols = ["item_id", "title", "release_date", "video_release_date", "url", *genres]
    items = read_delimited(item_path, sep="|", names=cols, encoding="latin-1", keep_default_na=True,
                           what="u.item")
    flags = items[genres].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(dtype=np.int8)
    names = np.asarray(genres, dtype=object)
    genre_lists = [list(names[row.astype(bool)]) for row in flags]
    items = pd.DataFrame({
        "item_id": items["item_id"],
        "title": items["title"],
        "text": "",
        "category": [g[0] if g else None for g in genre_lists],
        "genres": ["|".join(g) for g in genre_lists],
        "release_date": items["release_date"].fillna(""),
    })
    # MovieLens ratings are 1 to 5 stars (ml-latest: half stars from 0.5)
    check_rating_range(inter["rating"], Source(str(data_path), first_line=1), 0.5, 5.0, "MovieLens")
    return Dataset(
        inter, items, name=name or "movielens",
        on_unknown_item=on_unknown_item,
        interactions_source=Source(str(data_path), first_line=1),
        items_source=Source(str(item_path), first_line=1),
    )


# --------------------------------------------------------------------------- RecBole atomic
def _atomic_files(path: Path) -> tuple[Path, Path | None]:
    if path.is_file():
        inter = path
    else:
        found = sorted(path.glob("*.inter"))
        if not found:
            raise DataError("folder has no *.inter file (RecBole atomic format)", path=str(path))
        if len(found) > 1:
            raise DataError(f"folder has several *.inter files: {[f.name for f in found]}", path=str(path))
        inter = found[0]
    item = inter.with_suffix(".item")
    return inter, (item if item.is_file() else None)


def load_recbole(path: Path, *, on_unknown_item: OnUnknownItem = "error", name: str | None = None) -> Dataset:
    """RecBole atomic files ``<name>.inter`` (+ ``<name>.item``), tab-separated, header
    ``field:type``; ``token_seq`` values are space-separated."""
    inter_path, item_path = _atomic_files(path)
    inter, _ = _read_atomic(inter_path)
    items = None
    if item_path is not None:
        items, types = _read_atomic(item_path)
        items = _alias(items, "title", _TITLE_ALIASES)
        items = _alias(items, "category", _CATEGORY_ALIASES)
        items = _alias(items, "text", _TEXT_ALIASES)
        cat_col = "category"
        if cat_col in items.columns and types.get(_orig_name(types, cat_col)) == "token_seq":
            seqs = items["category"].fillna("").str.split()
            items["genres"] = seqs.str.join("|")
            items["category"] = seqs.map(lambda s: s[0] if s else None)
    src_i = Source(str(inter_path), first_line=2)
    src_t = Source(str(item_path), first_line=2) if item_path is not None else None
    return Dataset(
        inter, items, name=name or inter_path.stem,
        on_unknown_item=on_unknown_item, interactions_source=src_i, items_source=src_t,
    )


def _orig_name(types: dict[str, str], canonical: str) -> str:
    aliases = {"category": _CATEGORY_ALIASES, "title": _TITLE_ALIASES, "text": _TEXT_ALIASES}[canonical]
    for a in (canonical, *aliases):
        if a in types:
            return a
    return canonical


# --------------------------------------------------------------------------- Amazon 2023
def _amazon_files(path: Path, meta: str | Path | None) -> tuple[Path, Path]:
    if path.is_file():
        if meta is None:
            guess = path.with_name("meta_" + path.name)
            if not guess.is_file():
                raise DataError("no meta file given and meta_<name> not found beside it", path=str(path))
            return path, guess
        return path, Path(meta)
    metas = sorted(p for p in path.iterdir() if p.name.startswith("meta_") and ".jsonl" in p.name)
    if len(metas) != 1:
        raise DataError(f"expected exactly one meta_*.jsonl file, found {[m.name for m in metas]}", path=str(path))
    reviews = path / metas[0].name[len("meta_"):]
    if not reviews.is_file():
        raise DataError(f"reviews file {reviews.name} not found beside {metas[0].name}", path=str(path))
    return reviews, metas[0]


def _join_text(x: Any) -> str:
    if isinstance(x, list | tuple | np.ndarray):
        return " ".join(str(v) for v in x if v is not None)
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return str(x)


def load_amazon2023(
    path: Path, *, meta: str | Path | None = None, on_unknown_item: OnUnknownItem = "error", name: str | None = None
) -> Dataset:
    """Amazon Reviews 2023 JSONL: a review file (``user_id``, ``parent_asin``, ``rating``,
    ``timestamp`` in ms) and a meta file (``parent_asin``, ``title``, ``categories``,
    ``description``, ``features``, ...). Pass a folder holding ``X.jsonl`` + ``meta_X.jsonl``,
    or the review file and ``meta=``."""
    rpath, mpath = _amazon_files(path, meta)
    reviews, rsrc = _read_jsonl(rpath)
    for col in ("user_id", "parent_asin", "rating", "timestamp"):
        if col not in reviews.columns:
            raise DataError(f"reviews: missing required field {col!r}", path=str(rpath), column=col)
    ts = pd.to_numeric(reviews["timestamp"], errors="coerce")
    bad = ts.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"reviews: timestamp {reviews['timestamp'].iloc[pos]!r} is not a number (ms)",
            path=str(rpath), column="timestamp", **rsrc.locate(pos),
        )
    # Amazon 2023 timestamps are unix milliseconds; ratings 1 to 5 stars (strict.py)
    check_timestamps(ts, reviews["timestamp"], rsrc, "timestamp", "reviews", unit="ms")
    check_rating_range(reviews["rating"], rsrc, 1.0, 5.0, "Amazon Reviews 2023", what="reviews")
    inter = pd.DataFrame({
        "user_id": reviews["user_id"],
        "item_id": reviews["parent_asin"],
        "rating": reviews["rating"],
        "timestamp": ts / 1000.0,
    })
    m, msrc = _read_jsonl(mpath)
    for col in ("parent_asin", "title"):
        if col not in m.columns:
            raise DataError(f"meta: missing required field {col!r}", path=str(mpath), column=col)

    def _category(row_cats: Any, main: Any) -> str | None:
        if isinstance(row_cats, list | tuple | np.ndarray) and len(row_cats):
            return str(row_cats[-1])
        return None if main is None or (isinstance(main, float) and np.isnan(main)) else str(main)

    cats = m["categories"] if "categories" in m.columns else pd.Series([None] * len(m))
    main = m["main_category"] if "main_category" in m.columns else pd.Series([None] * len(m))
    desc = m["description"].map(_join_text) if "description" in m.columns else ""
    feats = m["features"].map(_join_text) if "features" in m.columns else ""
    items = pd.DataFrame({
        "item_id": m["parent_asin"],
        "title": m["title"],
        "text": (desc + " " + feats).str.strip() if isinstance(desc, pd.Series) else "",
        "category": [_category(c, mc) for c, mc in zip(cats, main, strict=True)],
    })
    for extra in ("store", "price", "main_category", "average_rating", "rating_number"):
        if extra in m.columns:
            items[extra] = m[extra].map(lambda v: None if isinstance(v, list | dict) else v)
    return Dataset(
        inter, items, name=name or rpath.stem.replace(".jsonl", ""),
        on_unknown_item=on_unknown_item, interactions_source=rsrc, items_source=msrc,
    )


__all__ = ["split_categories", "load", "load_table", "load_movielens", "load_recbole", "load_amazon2023", "FORMATS", "LoadReport"]
