"""`Dataset`: interactions + item catalog, validated on construction.

Canonical columns
-----------------
interactions: ``user_id`` (str), ``item_id`` (str), optional ``rating`` (float),
optional ``timestamp`` (float, unix seconds), optional ``event`` (str).
items: ``item_id`` (str), ``title`` (str), optional ``text`` (str), optional ``category`` (str);
any other column is kept and exposed as ``Item.attrs``.

Validation names the source file, the line (or row) and the column of the first bad value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from ..types import History, Item

log = logging.getLogger(__name__)

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


def _check_columns(df: pd.DataFrame, required: tuple[str, ...], src: Source, what: str) -> None:
    if len(df.columns) == 0:
        raise DataError(f"{what}: file is empty", path=src.path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{what}: missing required column(s) {missing}; found {list(df.columns)}",
            path=src.path,
            column=missing[0],
        )


def _clean_ids(s: pd.Series, src: Source, column: str, what: str) -> pd.Series:
    """String ids; NaN / empty / whitespace-only ids are errors. Float ids like 3.0 become '3'."""
    if pd.api.types.is_float_dtype(s):
        bad = s.isna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise _error(f"{what}: missing id", src, pos, column)
        if np.all(np.mod(s.to_numpy(), 1) == 0):
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
        raise _error(f"{what}: {column} value {s.iloc[pos]!r} is not a number", src, pos, column)
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
            raise _error(f"{what}: missing timestamp", src, pos, column)
        return out
    else:
        numeric = pd.to_numeric(s, errors="coerce")
        if numeric.notna().all():
            return _to_unix_seconds(numeric, src, column, what)
        parsed = pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise _error(
            f"{what}: cannot parse timestamp {s.iloc[pos]!r}", src, pos, column
        )
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize("UTC")
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
                raise ValueError(f"on_unknown_item must be 'error' or 'drop', got {on_unknown_item!r}")
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


class Dataset:
    """Interactions plus an item catalog, validated on construction.

    Build one with a loader (``reranker.data.load``) or directly from two frames.
    """

    def __init__(
        self,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        *,
        name: str = "dataset",
        on_unknown_item: OnUnknownItem = "error",
        interactions_source: Source | None = None,
        items_source: Source | None = None,
        report: LoadReport | None = None,
        validate: bool = True,
    ) -> None:
        self.name = name
        self.report = report or LoadReport()
        if validate:
            if items is None:
                ids = pd.unique(_clean_ids(interactions["item_id"], interactions_source or Source(first_line=None), "item_id", "interactions")) if "item_id" in interactions.columns else []
                items = pd.DataFrame({"item_id": ids})
            self.items = validate_items(items, items_source)
            self.interactions = validate_interactions(
                interactions,
                pd.Index(self.items["item_id"]),
                interactions_source,
                on_unknown_item,
                self.report,
            )
        else:
            assert items is not None
            self.items = items
            self.interactions = interactions
        self._item_index: pd.Index | None = None

    # ------------------------------------------------------------------ basic facts
    @property
    def has_ratings(self) -> bool:
        return "rating" in self.interactions.columns

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions.columns

    @property
    def user_ids(self) -> np.ndarray:
        """Distinct user ids in first-seen order."""
        return pd.unique(self.interactions["user_id"])

    @property
    def item_ids(self) -> np.ndarray:
        """Catalog item ids in catalog order."""
        return self.items["item_id"].to_numpy()

    @property
    def n_users(self) -> int:
        return int(self.interactions["user_id"].nunique())

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def rating_scale(self) -> tuple[float, float] | None:
        if not self.has_ratings:
            return None
        r = self.interactions["rating"]
        return float(r.min()), float(r.max())

    def describe(self) -> dict[str, Any]:
        """Counts, density, rating scale and time span (as JSON-friendly values)."""
        n_u, n_i, n_x = self.n_users, self.n_items, self.n_interactions
        out: dict[str, Any] = {
            "name": self.name,
            "users": n_u,
            "items": n_i,
            "interactions": n_x,
            "items_with_interactions": int(self.interactions["item_id"].nunique()),
            "density": n_x / (n_u * n_i) if n_u and n_i else 0.0,
            "interactions_per_user": {
                "min": int(self.interactions.groupby("user_id").size().min()),
                "median": float(self.interactions.groupby("user_id").size().median()),
                "max": int(self.interactions.groupby("user_id").size().max()),
            },
            "rating_scale": None,
            "mean_rating": None,
            "time_span": None,
            "categories": int(self.items["category"].dropna().nunique()),
            "dropped_unknown_items": self.report.dropped_unknown_items,
        }
        if self.has_ratings:
            lo, hi = self.rating_scale  # type: ignore[misc]
            out["rating_scale"] = [lo, hi]
            out["mean_rating"] = float(self.interactions["rating"].mean())
        if self.has_timestamps:
            ts = self.interactions["timestamp"]
            start = pd.Timestamp(float(ts.min()), unit="s", tz="UTC")
            end = pd.Timestamp(float(ts.max()), unit="s", tz="UTC")
            out["time_span"] = {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "days": round((float(ts.max()) - float(ts.min())) / 86400.0, 1),
            }
        return out

    # ------------------------------------------------------------------ catalog access
    @property
    def item_index(self) -> pd.Index:
        if self._item_index is None:
            self._item_index = pd.Index(self.items["item_id"])
        return self._item_index

    def has_item(self, item_id: str) -> bool:
        return str(item_id) in self.item_index

    def item(self, item_id: str) -> Item:
        """The catalog entry as an `Item` (KeyError naming the id if unknown)."""
        try:
            pos = self.item_index.get_loc(str(item_id))
        except KeyError:
            raise KeyError(f"unknown item id {item_id!r}") from None
        return self._row_to_item(self.items.iloc[int(pos)])

    def catalog(self) -> dict[str, Item]:
        """All items as a dict id -> Item."""
        return {row.item_id: self._row_to_item(row) for row in self.items.itertuples(index=False)}

    @staticmethod
    def _row_to_item(row: Any) -> Item:
        d = row._asdict() if hasattr(row, "_asdict") else row.to_dict()
        attrs = {
            k: v
            for k, v in d.items()
            if k not in ITEM_COLUMNS and not _missing(v)
        }
        return Item(
            item_id=str(d["item_id"]),
            title=str(d["title"]),
            text=str(d.get("text") or ""),
            category=None if _missing(d.get("category")) else str(d["category"]),
            attrs=attrs,
        )

    # ------------------------------------------------------------------ user access
    def sorted_interactions(self) -> pd.DataFrame:
        """Interactions sorted by user, then time (ties broken by item id), stable."""
        keys = ["user_id"] + (["timestamp"] if self.has_timestamps else []) + ["item_id"]
        if not self.has_timestamps:
            # no clock: keep the file order within a user
            df = self.interactions.assign(_pos=np.arange(len(self.interactions)))
            return df.sort_values(["user_id", "_pos"], kind="stable").drop(columns="_pos")
        return self.interactions.sort_values(keys, kind="stable")

    def history(self, user_id: str, cap: int | None = None, context: Mapping[str, Any] | None = None) -> History:
        """The user's history, oldest first (an unknown user gets an empty history)."""
        rows = self.interactions[self.interactions["user_id"] == str(user_id)]
        if self.has_timestamps:
            rows = rows.sort_values(["timestamp", "item_id"], kind="stable")
        return _history_from_rows(str(user_id), rows, cap, context)

    def histories(self, cap: int | None = None) -> dict[str, History]:
        """Every user's history, oldest first."""
        df = self.sorted_interactions()
        return {
            str(uid): _history_from_rows(str(uid), rows, cap, None)
            for uid, rows in df.groupby("user_id", sort=False)
        }

    def iter_users(self) -> Iterator[str]:
        yield from (str(u) for u in self.user_ids)

    def with_interactions(self, interactions: pd.DataFrame, name: str | None = None) -> Dataset:
        """A dataset with the same catalog and another (already canonical) interaction frame."""
        return Dataset(
            interactions.reset_index(drop=True),
            self.items,
            name=name or self.name,
            report=self.report,
            validate=False,
        )

    def fingerprint(self) -> str:
        """A short hash of the interactions and the catalog ids (cheap, vectorised)."""
        import hashlib

        h = hashlib.sha256()
        h.update(pd.util.hash_pandas_object(self.interactions, index=False).to_numpy().tobytes())
        h.update(pd.util.hash_pandas_object(self.items["item_id"], index=False).to_numpy().tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={self.n_interactions})"
        )


def _history_from_rows(
    user_id: str, rows: pd.DataFrame, cap: int | None, context: Mapping[str, Any] | None
) -> History:
    h = History(
        user_id=user_id,
        items=tuple(rows["item_id"].tolist()),
        ratings=tuple(rows["rating"].tolist()) if "rating" in rows.columns else None,
        timestamps=tuple(rows["timestamp"].tolist()) if "timestamp" in rows.columns else None,
        context=dict(context or {}),
    )
    return h.last(cap) if cap is not None else h

