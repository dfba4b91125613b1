"""The stage-1 protocol: a retriever proposes candidates for a history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from ..data.dataset import Dataset
    from ..types import Candidate, History


@runtime_checkable
class Retriever(Protocol):
    """Stage 1. `retrieve` returns at most `n` candidates, best first, without duplicates;
    with `exclude_seen` it never returns an item of the history."""

    def fit(self, data: Dataset) -> Self: ...

    def retrieve(self, history: History, n: int, exclude_seen: bool = True) -> list[Candidate]: ...
