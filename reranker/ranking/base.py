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

    from ..types import Candidate, History, Ranking

Catalog = Any
"""Mapping[str, Item | dict] | Dataset (anything with `.item(id)`) | None."""


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
    "Ranker",
    "Scorer",
    "ScorerRanker",
    "catalog_kwargs",
    "dedupe",
]
