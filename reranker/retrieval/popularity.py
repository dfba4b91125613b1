"""Popularity retriever: the most-interacted items, and the cold-start fallback of every
neighbour-based retriever (empty history or unknown user -> popular items; too few
neighbour candidates -> filled up with popular items marked ``source="popular"``)."""

from __future__ import annotations

import logging
from typing import Literal, Self

import numpy as np

from ..config import BaseConfig
from ..data.dataset import Dataset
from ._fitted import FittedIndex

log = logging.getLogger(__name__)


class PopularityConfig(BaseConfig):
    """Popularity = number of distinct users who interacted with the item in the fit data."""

    type: Literal["popular"] = "popular"


class PopularityRetriever(FittedIndex):
    """Most popular unseen items first; score = count / max count (in (0, 1], 0 for items
    nobody interacted with). Ties are broken by catalog order. Deterministic.

    >>> r = PopularityRetriever().fit(dataset)
    >>> r.retrieve(History(), n=10)   # a logged-out user
    """

    source = "popular"

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()

    def fit(self, data: Dataset) -> Self:
        self.fit_index(data, "implicit")
        log.info("PopularityRetriever fitted on %d interactions", data.n_interactions)
        return self

    def popular(self, n: int) -> list[str]:
        """The n most popular item ids (nothing excluded)."""
        self._check_fitted()
        return self.item_ids[self.pop_order[:n]].tolist()

    def scores(self) -> np.ndarray:
        """Popularity score of every catalog item (catalog order)."""
        self._check_fitted()
        return self.pop_norm.copy()


__all__ = ["PopularityConfig", "PopularityRetriever"]
