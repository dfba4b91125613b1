"""The stage-2 protocols: scorers give one score per candidate, rankers return a Ranking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..types import Candidate, History, Ranking


@runtime_checkable
class Scorer(Protocol):
    """One float per candidate, higher is better (BERT cosine, LLM Yes/No logit, CF score)."""

    def score(self, history: History, candidates: Sequence[Candidate]) -> np.ndarray: ...


@runtime_checkable
class Ranker(Protocol):
    """Returns a Ranking holding every candidate exactly once."""

    def rank(self, history: History, candidates: Sequence[Candidate]) -> Ranking: ...


class IdentityRanker:
    """Keeps the stage-1 order (the trivial baseline)."""

    name = "identity"

    def rank(self, history: History, candidates: Sequence[Candidate]) -> Ranking:
        from ..types import Ranking

        ids = _unique_ids(candidates)
        return Ranking.from_order(ids, {"ranker": self.name})


class ScorerRanker:
    """Turns any Scorer into a Ranker: sort candidates by score, ties in stage-1 order."""

    def __init__(self, scorer: Scorer, name: str | None = None) -> None:
        self.scorer = scorer
        self.name = name or type(scorer).__name__

    def rank(self, history: History, candidates: Sequence[Candidate]) -> Ranking:
        from ..types import Ranking

        cands = dedupe(candidates)
        scores = self.scorer.score(history, cands)
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
