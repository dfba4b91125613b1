"""Baseline rankers and adapters between the two stage-2 protocols: a seeded random order, a
fitted retriever used as a scorer, any ranker used as a scorer."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Scorer

if TYPE_CHECKING:
    from ..types import Candidate, History, Ranking


class RetrieverScorer:
    """A fitted retriever used as a Scorer: its own score for each candidate.

    Uses the retriever's ``score`` method when it has one (the `CandidateScorer` protocol);
    otherwise asks it for the whole catalog once per call and looks candidates up (items it
    does not propose score lowest).
    """

    def __init__(self, retriever: Any, n_items: int, name: str) -> None:
        self.retriever = retriever
        self.n_items = n_items
        self.name = name

    def score(self, history: History, candidates: Sequence[Candidate], catalog: Any = None) -> np.ndarray:
        from ..retrieval.base import CandidateScorer

        if isinstance(self.retriever, CandidateScorer):
            return np.asarray(self.retriever.score(history, candidates), dtype=np.float64)
        got = self.retriever.retrieve(history, self.n_items, exclude_seen=False)
        table = {c.item_id: float(c.score) for c in got}
        low = min(table.values(), default=0.0) - 1.0
        return np.array([table.get(c.item_id, low) for c in candidates], dtype=np.float64)


class RandomRanker:
    """A seeded random order of the candidates (the chance baseline)."""

    def __init__(self, seed: int = 0, name: str = "random") -> None:
        self.seed = seed
        self.name = name

    def rank(self, history: History, candidates: Sequence[Candidate], catalog: Any = None) -> Ranking:
        from ..types import Ranking

        ids = list(dict.fromkeys(c.item_id for c in candidates))
        user = zlib.crc32(str(history.user_id).encode())
        items = zlib.crc32("|".join(ids).encode())
        rng = np.random.default_rng([self.seed, user, items])
        order = rng.permutation(len(ids))
        return Ranking.from_order([ids[i] for i in order], {"ranker": self.name})


class RankerAsScorer:
    """Any Ranker as a Scorer: the score it gives each candidate in its Ranking."""

    def __init__(self, ranker: Any) -> None:
        self.ranker = ranker

    def score(self, history: History, candidates: Sequence[Candidate], catalog: Any = None) -> np.ndarray:
        ranking = self.ranker.rank(history, candidates, catalog=catalog)
        table = {ri.item_id: ri.score for ri in ranking.items}
        return np.array([table.get(c.item_id, -np.inf) for c in candidates], dtype=np.float64)


def as_scorer(ranker: Any) -> Any:
    """The Scorer behind a ranker: the scorer it wraps (`ScorerRanker`), the ranker itself when
    it is a Scorer, else `RankerAsScorer`."""
    from .base import ScorerRanker

    if isinstance(ranker, ScorerRanker):
        return ranker.scorer
    if isinstance(ranker, Scorer):
        return ranker
    return RankerAsScorer(ranker)


__all__ = ["RandomRanker", "RankerAsScorer", "RetrieverScorer", "as_scorer"]
