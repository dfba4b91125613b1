"""The stage-2 protocols: scorers give one score per candidate, rankers return a Ranking.

The data of one call travels with the call: every protocol method takes an optional keyword
`catalog` (a dict id -> Item / dict, or a Dataset) holding the items of this request. `None`
means the catalog the object was built with (a Dataset given at build time is a setting, not
request data). A ranker shared by many requests or threads never stores a request's catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..types import Candidate, History, Item, Ranking

Catalog = Any
"""Mapping[str, Item | dict] | Dataset (anything with `.item(id)`, see `ItemLookup`) | None."""


@runtime_checkable
class Named(Protocol):
    """A component that names itself (in diagnostics, signal names and reports)."""

    name: str


@runtime_checkable
class ItemLookup(Protocol):
    """A catalog object that gives items by id (a `Dataset`, a request's chained catalog);
    unknown ids raise (KeyError or a `DataError`)."""

    def item(self, item_id: str) -> Item: ...


@runtime_checkable
class ItemIndex(ItemLookup, Protocol):
    """An `ItemLookup` that also says whether it holds an id (`Dataset.has_item`)."""

    def has_item(self, item_id: str) -> bool: ...


@runtime_checkable
class ItemListing(Protocol):
    """A catalog object that lists all its items at once (`Dataset.catalog()`)."""

    def catalog(self) -> dict[str, Item]: ...


@runtime_checkable
class Scorer(Protocol):
    """One float per candidate, higher is better (BERT cosine, LLM Yes/No logit, CF score)."""

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray: ...


@runtime_checkable
class Ranker(Protocol):
    """Returns a Ranking holding every candidate exactly once."""

    def rank(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> Ranking: ...


@runtime_checkable
class BatchRanker(Ranker, Protocol):
    """A Ranker that ranks several requests at once (e.g. one batched `generate` for all)."""

    def rank_many(
        self, requests: Sequence[tuple[History, Sequence[Candidate]]], catalog: Catalog = None
    ) -> list[Ranking]: ...


@runtime_checkable
class PreferredBatchSize(Protocol):
    """A `BatchRanker` that says how many requests `rank_many` should get at once (listwise
    LLM: the users whose prompts fill one generate batch)."""

    @property
    def users_per_batch(self) -> int: ...


def rank_many_batch_size(ranker: object) -> int:
    """How many requests to rank together through `rank_many`: a `BatchRanker`'s
    `users_per_batch` (`PreferredBatchSize`, at least 1); 1 (one by one) otherwise."""
    if isinstance(ranker, BatchRanker) and isinstance(ranker, PreferredBatchSize):
        return max(1, int(ranker.users_per_batch))
    return 1


def catalog_kwargs(catalog: Catalog) -> dict[str, Any]:
    """`{"catalog": catalog}`, or `{}` when it is None.

    Wrappers forward a request's catalog with ``inner.score(h, c, **catalog_kwargs(catalog))``:
    None means "your own catalog" either way, and components written against the two-argument
    form (e.g. a retriever's `score(history, candidates)`) keep working when no catalog is given.
    """
    return {} if catalog is None else {"catalog": catalog}


class IdentityRanker:
    """Keeps the stage-1 order (the trivial baseline)."""

    name = "identity"

    def rank(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> Ranking:
        from ..types import Ranking

        ids = _unique_ids(candidates)
        return Ranking.from_order(ids, {"ranker": self.name})


class ScorerRanker:
    """Turns any Scorer into a Ranker: sort candidates by score, ties in stage-1 order."""

    def __init__(self, scorer: Scorer, name: str | None = None) -> None:
        self.scorer = scorer
        self.name = name or type(scorer).__name__

    def rank(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> Ranking:
        from ..types import Ranking

        cands = dedupe(candidates)
        scores = self.scorer.score(history, cands, **catalog_kwargs(catalog))
        return Ranking.from_scores([c.item_id for c in cands], list(scores), {"ranker": self.name})


def dedupe(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates with repeated ids removed (first occurrence kept, stage-1 order)."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.item_id not in seen:
            seen.add(c.item_id)
            out.append(c)
    return out


def _unique_ids(candidates: Sequence[Candidate]) -> list[str]:
    return [c.item_id for c in dedupe(candidates)]


__all__ = [
    "BatchRanker",
    "Catalog",
    "IdentityRanker",
    "ItemIndex",
    "ItemListing",
    "ItemLookup",
    "Named",
    "PreferredBatchSize",
    "Ranker",
    "Scorer",
    "ScorerRanker",
    "catalog_kwargs",
    "dedupe",
    "rank_many_batch_size",
]
