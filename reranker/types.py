"""Value objects passed between stages. IDs are strings at every public door."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from .errors import DataError

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Item:
    """A catalog entry as the rankers see it."""

    item_id: str
    title: str
    text: str = ""
    category: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not isinstance(self.item_id, str) or not self.item_id:
            raise ValueError(f"Item.item_id must be a non-empty string, got {self.item_id!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Item:
        """Build from a plain dict: `id` or `item_id`, `title`, optional text/category/attrs."""
        item_id = d.get("item_id", d.get("id"))
        if item_id is None or str(item_id) == "":
            raise DataError(f"item dict has no 'id' (or 'item_id'): {dict(d)!r}")
        if isinstance(item_id, bool | list | tuple | dict | set) or (
            isinstance(item_id, float) and not math.isfinite(item_id)
        ):
            raise DataError(f"item dict: id {item_id!r} is not a string or number")
        known = {"id", "item_id", "title", "text", "category", "attrs", "description"}
        given = d.get("attrs") or {}
        if not isinstance(given, Mapping):
            raise DataError(f"item dict {str(item_id)!r}: 'attrs' must be a mapping, got {type(given).__name__}")
        attrs = dict(given)
        attrs.update({k: v for k, v in d.items() if k not in known})
        return cls(
            item_id=str(item_id),
            title=str(d.get("title") or item_id),
            text=str(d.get("text") or d.get("description") or ""),
            category=None if d.get("category") is None else str(d["category"]),
            attrs=MappingProxyType(attrs),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "title": self.title,
            "text": self.text,
            "category": self.category,
            "attrs": dict(self.attrs),
        }


@dataclass(frozen=True, slots=True)
class History:
    """What we know of one user: item ids oldest first, optional ratings/timestamps and context.

    A logged-out user has `user_id=None` and an empty `items` tuple.
    """

    user_id: str | None = None
    items: Sequence[str] = ()
    ratings: Sequence[float] | None = None
    timestamps: Sequence[float] | None = None
    context: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(str(i) for i in self.items))
        n = len(self.items)
        for name in ("ratings", "timestamps"):
            seq = getattr(self, name)
            if seq is not None:
                seq = tuple(float(x) for x in seq)
                if len(seq) != n:
                    raise ValueError(f"History.{name} has {len(seq)} values for {n} items")
                object.__setattr__(self, name, seq)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def is_empty(self) -> bool:
        return len(self.items) == 0

    def last(self, n: int) -> History:
        """The most recent `n` items (the history cap)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if len(self.items) <= n:
            return self
        sl = slice(len(self.items) - n, None)
        return replace(
            self,
            items=self.items[sl],
            ratings=None if self.ratings is None else self.ratings[sl],
            timestamps=None if self.timestamps is None else self.timestamps[sl],
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stage-1 proposal."""

    item_id: str
    score: float = 0.0
    source: str = "external"


@dataclass(frozen=True, slots=True)
class RankedItem:
    item_id: str
    score: float
    rank: int
    explanation: str | None = None


@dataclass(frozen=True)
class Ranking:
    """An ordered ranking. It always contains every candidate exactly once (rank 1 first).

    `diagnostics` keeps what the ranker saw and did: raw LLM text, parse counts (valid,
    hallucinated, duplicate, filled_in), tokens in/out, latency in seconds.
    """

    items: tuple[RankedItem, ...]
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [r.item_id for r in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("Ranking contains duplicate item ids")

    @classmethod
    def from_scores(
        cls,
        item_ids: Sequence[str],
        scores: Sequence[float],
        diagnostics: Mapping[str, Any] | None = None,
    ) -> Ranking:
        """Sort by score, descending; ties keep the input order (stable)."""
        if len(item_ids) != len(scores):
            raise ValueError(f"{len(item_ids)} item ids but {len(scores)} scores")
        order = sorted(range(len(item_ids)), key=lambda i: -float(scores[i]))
        return cls(
            tuple(
                RankedItem(str(item_ids[i]), float(scores[i]), r + 1)
                for r, i in enumerate(order)
            ),
            dict(diagnostics or {}),
        )

    @classmethod
    def from_order(
        cls, item_ids: Sequence[str], diagnostics: Mapping[str, Any] | None = None
    ) -> Ranking:
        """A ranking in the given order; score = n - position (higher is better)."""
        n = len(item_ids)
        return cls(
            tuple(RankedItem(str(i), float(n - r), r + 1) for r, i in enumerate(item_ids)),
            dict(diagnostics or {}),
        )

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, i: int) -> RankedItem:
        return self.items[i]

    @property
    def item_ids(self) -> list[str]:
        return [r.item_id for r in self.items]

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.items]

    def top_k(self, k: int) -> Ranking:
        """The first k items (all of them if k >= len)."""
        if k < 0:
            raise ValueError("k must be >= 0")
        return Ranking(self.items[:k], self.diagnostics)

    def with_explanations(self, explanations: Mapping[str, str]) -> Ranking:
        return Ranking(
            tuple(replace(r, explanation=explanations.get(r.item_id, r.explanation)) for r in self.items),
            self.diagnostics,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [
                {"item_id": r.item_id, "score": r.score, "rank": r.rank, "explanation": r.explanation}
                for r in self.items
            ],
            "diagnostics": to_jsonable(self.diagnostics),
        }

    def to_dataframe(self):  # -> pandas.DataFrame
        import pandas as pd

        return pd.DataFrame(
            [
                {"rank": r.rank, "item_id": r.item_id, "score": r.score, "explanation": r.explanation}
                for r in self.items
            ]
        )


@runtime_checkable
class SupportsItem(Protocol):
    """A numpy / torch scalar: ``item()`` gives the plain Python value."""

    def item(self) -> Any: ...


@runtime_checkable
class SupportsToList(Protocol):
    """A numpy array (or tensor, pandas index ...): ``tolist()`` gives plain Python lists."""

    def tolist(self) -> Any: ...


def item_id_of(x: Any) -> Any:
    """The ``item_id`` of an `Item`, `Candidate` or `RankedItem`; anything else (an id) as is."""
    return x.item_id if isinstance(x, Item | Candidate | RankedItem) else x


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_jsonable(x: Any) -> Any:
    """Mappings, lists and numpy scalars turned into plain JSON-friendly values."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if type(x) in _PLAIN:  # fast path: protocol checks are slow (np.float64 is a float subclass)
        return x
    if isinstance(x, SupportsItem) and callable(x.item):  # numpy scalar
        return x.item()
    return x


__all__ = ["Item", "History", "Candidate", "RankedItem", "Ranking"]
