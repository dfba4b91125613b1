"""The stage-1 protocols: a retriever proposes candidates for a history; some retrievers can
also score given candidates (`CandidateScorer`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..data.dataset import Dataset
    from ..types import Candidate, History
    from ._fitted import CandidateBatch
    from .rating import BatchPrediction


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


@runtime_checkable
class BatchCandidateScorer(Protocol):
    """A fitted stage-1 model that scores given items for many histories at once: one float
    array per history, in the order of its item ids (the CF features of the learned head)."""

    def score_items(
        self, histories: Sequence[History], item_ids: Sequence[Sequence[str]]
    ) -> list[np.ndarray]: ...


@runtime_checkable
class BatchRetriever(Protocol):
    """Anything with the batched form of `Retriever.retrieve` (a list of histories in, a list
    of candidate lists out; a mapping user -> History in, a mapping out)."""

    def retrieve_batch(
        self, histories: Sequence[History] | Mapping[str, History], n: int, exclude_seen: bool = True
    ) -> list[list[Candidate]] | dict[str, list[Candidate]]: ...


@runtime_checkable
class ArrayRetriever(Protocol):
    """A retriever that returns a batch of candidate lists as flat arrays (`CandidateBatch`:
    no per-candidate objects), like the fitted CF models' `retrieve_arrays`."""

    def retrieve_arrays(
        self, histories: Sequence[History], n: int, exclude_seen: bool = True
    ) -> CandidateBatch: ...


@runtime_checkable
class ItemTextEncoder(Protocol):
    """A source of item text embeddings for the T- models, asked for the fitted catalog's ids
    (e.g. `reranker.ranking.encoder.ItemEncoder`): one (n, d) row per id, in order."""

    def encode_items(self, ids: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class BatchRatingPredictor(Protocol):
    """A fitted model that predicts explicit ratings of many (user, item) pairs at once (the
    kNN models): ``values[k]`` predicts (``user_ids[k]``, ``item_ids[k]``)."""

    def predict_batch(
        self, user_ids: Sequence[str], item_ids: Sequence[str]
    ) -> BatchPrediction: ...


__all__ = [
    "ArrayRetriever",
    "BatchCandidateScorer",
    "BatchRatingPredictor",
    "BatchRetriever",
    "CandidateScorer",
    "ItemTextEncoder",
    "Retriever",
]
