"""The stage-1 protocols: a retriever proposes candidates for a history; some retrievers can
also score given candidates (`CandidateScorer`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..data.dataset import Dataset
    from ..types import Candidate, History


@runtime_checkable
class Retriever(Protocol):
    """Stage 1. `retrieve` returns at most `n` candidates, best first, without duplicates;
    with `exclude_seen` it never returns an item of the history. `retrieve_batch` does the
    same for many histories at once (a list in, a list out; a mapping user -> History in, a
    mapping user -> candidates out)."""

    def fit(self, data: Dataset) -> Self: ...

    def retrieve(self, history: History, n: int, exclude_seen: bool = True) -> list[Candidate]: ...

    def retrieve_batch(
        self, histories: Sequence[History] | Mapping[str, History], n: int, exclude_seen: bool = True
    ) -> list[list[Candidate]] | dict[str, list[Candidate]]: ...


@runtime_checkable
class CandidateScorer(Protocol):
    """A fitted stage-1 model that scores given candidates directly (one float each, in order)."""

    def score(self, history: History, candidates: Sequence[Candidate]) -> np.ndarray: ...


__all__ = ["CandidateScorer", "Retriever"]
