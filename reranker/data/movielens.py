"""MovieLens layouts after 100K, and telling a folder's format from its files.

- ``ratings.dat`` / ``movies.dat`` (1M, 10M): ``::``-separated, no header, latin-1;
- ``ratings.csv`` / ``movies.csv`` (latest-small, latest, 20M, 25M, 32M, and 1M re-saved as CSV):
  header ``userId,movieId,rating,timestamp`` and ``movieId,title,genres``.

Genres are ``|``-separated lists: ``category`` is the first genre, ``genres`` keeps the whole
list as ``A|B`` (as the 100K loader does); ``(no genres listed)`` is no genre. A missing or
misnamed column is a DataError naming the file and the column, with the closest header name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .dataset import Dataset, OnUnknownItem, Source
from .strict import check_rating_range, read_delimited
from .validate import suggest_column

_NO_GENRE = "(no genres listed)"


def require_columns(df: pd.DataFrame, needed: Sequence[str], path: str | Path, what: str) -> None:
    """DataError naming the first of `needed` missing from `df`, with the closest column name."""
    have = [str(c) for c in df.columns]
    for col in needed:
        if col in have:
            continue
        close = suggest_column(col, have)
        hint = f"; did you mean {close!r}?" if close else ""
        raise DataError(f"{what}: missing column {col!r}{hint} (the header has {have})",
                        path=str(path), line=1, column=col)


def movielens_layout(path: Path) -> str | None:
    """``"100k"``, ``"dat"`` or ``"csv"`` for a MovieLens folder (or one of its rating files)."""
    folder = path if path.is_dir() else path.parent
    name = None if path.is_dir() else path.name
    for layout, fname in (("100k", "u.data"), ("dat", "ratings.dat"), ("csv", "ratings.csv")):
        if (name is None or name == fname) and (folder / fname).is_file():
            return layout
    return None


def _genres(series: pd.Series) -> tuple[list[str | None], list[str]]:
    lists = [[g for g in str(v).split("|") if g and g != _NO_GENRE] if isinstance(v, str) else []
             for v in series]
    return [g[0] if g else None for g in lists], ["|".join(g) for g in lists]


def _items_frame(ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    category, joined = _genres(genres)
    return pd.DataFrame({"item_id": ids, "title": titles, "text": "", "category": category, "genres": joined})


def load_movielens_files(folder: Path, layout: str, *, on_unknown_item: OnUnknownItem = "error",
                         name: str | None = None) -> Dataset:
    """The ``dat`` or ``csv`` layout of `folder` (see the module docstring)."""
    if layout == "dat":
        rpath, mpath = folder / "ratings.dat", folder / "movies.dat"
        if not mpath.is_file():
            raise DataError("missing MovieLens file (movies.dat beside ratings.dat)", path=str(mpath))
        inter = _read_dat(rpath, ["user_id", "item_id", "rating", "timestamp"])
        movies = _read_dat(mpath, ["item_id", "title", "genres"])
        items = _items_frame(movies["item_id"], movies["title"], movies["genres"])
        first = 1
    else:
        rpath, mpath = folder / "ratings.csv", folder / "movies.csv"
        if not mpath.is_file():
            raise DataError("missing MovieLens file (movies.csv beside ratings.csv)", path=str(mpath))
        raw = read_delimited(rpath, sep=",", what="MovieLens ratings.csv")
        require_columns(raw, ["userId", "movieId", "rating", "timestamp"], rpath, "MovieLens ratings.csv")
        inter = raw.rename(columns={"userId": "user_id", "movieId": "item_id"})[
            ["user_id", "item_id", "rating", "timestamp"]]
        movies = read_delimited(mpath, sep=",", what="MovieLens movies.csv")
        require_columns(movies, ["movieId", "title", "genres"], mpath, "MovieLens movies.csv")
        items = _items_frame(movies["movieId"], movies["title"], movies["genres"])
        first = 2
    if len(inter) == 0:
        raise DataError("file has no ratings", path=str(rpath))
    src = Source(str(rpath), first_line=first)
    check_rating_range(inter["rating"], src, 0.5, 5.0, "MovieLens")
    return Dataset(
        inter, items, name=name or folder.name or "movielens",
        on_unknown_item=on_unknown_item,
        interactions_source=src,
        items_source=Source(str(mpath), first_line=first),
    )


def _read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    """A ``::``-separated MovieLens file (latin-1, no header); a row with another number of
    fields is a DataError naming its line."""
    if path.stat().st_size == 0:
        raise DataError("file is empty", path=str(path))
    rows: list[list[str]] = []
    with open(path, encoding="latin-1", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("::")
            if len(fields) != len(names):
                raise DataError(f"expected {len(names)} '::'-separated fields ({', '.join(names)}), "
                                f"found {len(fields)}", path=str(path), line=lineno)
            rows.append(fields)
    return pd.DataFrame(rows, columns=names, dtype=object)


def detect_format(path: Path) -> str:
    """The loader format of a file or folder: from ``reranker-dataset.json`` (written by
    `reranker data fetch`), else from the file names. DataError when it cannot tell."""
    from .fetch import read_marker

    if path.is_dir():
        marker = read_marker(path)
        if marker is not None and isinstance(marker.get("format"), str):
            return str(marker["format"])
        if movielens_layout(path) is not None:
            return "movielens"
        if any(path.glob("*.inter")):
            return "recbole"
        if any(path.glob("meta_*.jsonl*")):
            return "amazon2023"
        for fmt, exts in (("csv", (".csv", ".tsv")), ("parquet", (".parquet", ".pq")),
                          ("jsonl", (".jsonl", ".json", ".jsonl.gz"))):
            if any((path / f"interactions{e}").is_file() for e in exts):
                return fmt
    else:
        if movielens_layout(path) is not None:
            return "movielens"
        n = path.name.lower()
        kinds: dict[str, tuple[str, ...]] = {
            "recbole": (".inter",), "csv": (".csv", ".tsv"), "parquet": (".parquet", ".pq"),
            "jsonl": (".jsonl", ".json", ".jsonl.gz")}
        for kind, suffixes in kinds.items():
            if n.endswith(suffixes):
                return kind
    looked = (" (the folder has none of interactions.csv / .tsv / .parquet / .jsonl, u.data, ratings.csv, "
              "ratings.dat, *.inter, meta_*.jsonl)") if path.is_dir() else ""
    raise DataError(f"cannot tell the format from the file names{looked}; pass --format "
                    "(csv, parquet, jsonl, movielens, recbole, amazon2023)", path=str(path))


__all__ = ["detect_format", "load_movielens_files", "movielens_layout", "require_columns"]
