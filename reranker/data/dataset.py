"""`Dataset`: interactions + item catalog, validated on construction.

Canonical columns
-----------------
interactions: ``user_id`` (str), ``item_id`` (str), optional ``rating`` (float),
optional ``timestamp`` (float, unix seconds), optional ``event`` (str).
items: ``item_id`` (str), ``title`` (str), optional ``text`` (str), optional ``category`` (str);
any other column is kept and exposed as ``Item.attrs``.

Validation (in :mod:`.validate`) names the source file, the line (or row) and the column of
the first bad value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from ..errors import UnknownIdError
from ..types import History, Item
from .ordering import TieOrder, TieRule, chronological
from .validate import (
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    LoadReport,
    OnUnknownItem,
    Source,
    _check_columns,
    _clean_ids,
    _missing,
    validate_interactions,
    validate_items,
)

if TYPE_CHECKING:
    from pandas.api.extensions import ExtensionArray

# re-exported: these lived here before validation moved to validate.py
__all__ = [
    "Dataset", "LoadReport", "OnUnknownItem", "Source", "INTERACTION_COLUMNS", "ITEM_COLUMNS",
    "validate_items", "validate_interactions",
]


class Dataset:
    """Interactions plus an item catalog, validated on construction.

    Build one with a loader (``reranker.data.load``) or directly from two frames.

    ``tie_order`` (a :class:`~.ordering.TieOrder`; default seeded random ties, seed 0) is a
    property of the dataset: how a user's interactions in the same second are ordered. Every
    ordering in time reads it (``sorted_interactions``, ``history``, ``histories``, the
    leave-one-out split and its stage histories, models fitted on the data), and derived
    datasets (``with_interactions``, split parts) inherit it, so callers set it once with
    ``with_tie_order`` right after loading (the evaluation harness does so from
    ``protocol.ties`` / ``protocol.tie_seed``, ``reranker finetune`` from its config).
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
        tie_order: TieOrder | None = None,
    ) -> None:
        self.name = name
        self.tie_order: TieOrder = tie_order or TieOrder()
        self.report = report or LoadReport()
        if validate:
            if items is None:  # the catalog is the interactions' item ids: check their columns first
                _check_columns(interactions, ("user_id", "item_id"),
                               interactions_source or Source(first_line=None), "interactions")
                ids: np.ndarray | ExtensionArray | list[str] = pd.unique(_clean_ids(interactions["item_id"], interactions_source or Source(first_line=None), "item_id", "interactions")) if "item_id" in interactions.columns else []
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

    def _n_categories(self) -> int:
        """Distinct categories; with a ``genres`` column (``A|B`` lists) every listed value counts."""
        cats = set(self.items["category"].dropna().astype(str))
        if "genres" in self.items.columns:
            for g in self.items["genres"].dropna().astype(str):
                cats.update(x for x in g.split("|") if x)
        return len(cats)

    # ------------------------------------------------------------------ basic facts
    @property
    def has_ratings(self) -> bool:
        return "rating" in self.interactions.columns

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions.columns

    @property
    def user_ids(self) -> np.ndarray | ExtensionArray:
        """Distinct user ids in first-seen order (a pandas string array for a `str` column)."""
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
            "categories": self._n_categories(),
            "dropped_unknown_items": self.report.dropped_unknown_items,
        }
        if self.has_ratings:
            lo, hi = cast(tuple[float, float], self.rating_scale)  # has_ratings: not None
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
        """The catalog entry as an `Item` (`UnknownIdError`, a DataError and a KeyError, naming
        the id if unknown)."""
        try:
            pos = cast(int, self.item_index.get_loc(str(item_id)))  # ids are unique
        except KeyError:
            raise UnknownIdError(f"unknown item id {item_id!r}", column="item_id") from None
        return self._row_to_item(self.items.iloc[int(pos)])

    def catalog(self) -> dict[str, Item]:
        """All items as a dict id -> Item."""
        return {
            cast(str, row.item_id): self._row_to_item(row)
            for row in self.items.itertuples(index=False)
        }

    @staticmethod
    def _row_to_item(row: Any) -> Item:
        # a row of `items.iloc` (a Series) or of `items.itertuples` (a namedtuple)
        d = cast(dict[str, Any], row.to_dict()) if isinstance(row, pd.Series) else row._asdict()
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
    def with_tie_order(self, ties: TieRule = "random", seed: int = 0) -> Dataset:
        """The same data with another rule for ties in time (``"random"`` with ``seed``, or
        ``"item_id"``); shares the frames, copies nothing."""
        order = TieOrder(ties, seed)
        if order == self.tie_order:
            return self
        return Dataset(
            self.interactions, self.items, name=self.name, report=self.report, validate=False, tie_order=order
        )

    def sorted_interactions(self) -> pd.DataFrame:
        """Interactions sorted by user, then time, ties broken by ``tie_order`` (without
        timestamps: file order within a user); stable. See :mod:`.ordering`."""
        return chronological(self.interactions, self.tie_order)

    def history(self, user_id: str, cap: int | None = None, context: Mapping[str, Any] | None = None) -> History:
        """The user's history, oldest first, in the order of ``sorted_interactions`` (an
        unknown user gets an empty history)."""
        rows = self.interactions[self.interactions["user_id"] == str(user_id)]
        return _history_from_rows(str(user_id), chronological(rows, self.tie_order), cap, context)

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
            tie_order=self.tie_order,
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

