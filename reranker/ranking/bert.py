"""BERT (sentence-transformers) content scorer.

`BertScorer` implements the `Scorer` protocol: the user profile is the recency-weighted mean of
the history items' embeddings (exponential decay, half-life counted in items, the most recent
item has weight 1) and each candidate's score is its cosine with that profile. An empty history
(or one with no item in the catalog) gives all-zero scores (all ties), never an error.

The item embeddings come from `ItemEncoder` (reranker.ranking.encoder: rendered text, model
loading, in-memory and on-disk caches); its names are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from ..config import BaseConfig
from ..errors import ConfigError
from ..types import Candidate, History, Item
from .base import Catalog
from .encoder import ItemEncoder, Renderer, render_item  # noqa: F401  (re-exported)
from .sentence_model import (  # noqa: F401  (re-exported: the public names of this module)
    MINILM_PRESET,
    cache_root,
    clear_embedding_cache,
    load_sentence_model,
    resolve_sentence_model,
)

if TYPE_CHECKING:
    from ..data.dataset import Dataset

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- configuration
class BertScorerConfig(BaseConfig):
    """Settings of `BertScorer` / `ItemEncoder`."""

    model: str = Field(MINILM_PRESET, min_length=1, description="preset name or local folder")
    batch_size: int = Field(64, ge=1)
    half_life: float = Field(5.0, gt=0, description="recency half-life, in history items")
    max_chars: int = Field(400, ge=16, description="item text is truncated to this many chars")
    device: str = "cpu"
    disk_cache: bool | None = Field(
        None,
        description="cache the whole catalog's embeddings as .npy under $RERANKER_CACHE "
        "(None: on for catalogs of at most 20,000 items, off above)",
    )


def recency_weights(n: int, half_life: float) -> np.ndarray:
    """Weights for n history items, oldest first: the newest gets 1, one half-life older 0.5."""
    if half_life <= 0:
        raise ConfigError(f"half_life: must be > 0, got {half_life}")
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.power(0.5, age / float(half_life))


# ---------------------------------------------------------------------------- scorer
class BertScorer:
    """Content scorer: cosine between the user's recency-weighted profile and each candidate.

    Build it with a catalog (``dict[str, Item]`` or a `Dataset`) and optionally a config,
    a renderer ``Item -> str`` and a shared `ItemEncoder`::

        scorer = BertScorer(dataset, BertScorerConfig(half_life=3))
        scores = scorer.score(history, candidates)   # np.ndarray, one cosine per candidate

    History items missing from the catalog are skipped; a candidate missing from the catalog
    raises `DataError`.
    """

    name = "bert"

    def __init__(
        self,
        catalog: Mapping[str, Item] | Dataset,
        config: BertScorerConfig | None = None,
        *,
        render: Renderer | None = None,
        encoder: ItemEncoder | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.config = config or BertScorerConfig()
        self.encoder = encoder or ItemEncoder.from_config(
            catalog, self.config, render=render, cache_dir=cache_dir
        )

    def profile(self, history: History, catalog: Catalog = None) -> np.ndarray | None:
        """The user's L2-normalised profile vector, or None when no history item is known.
        Items come from `catalog` (None: the scorer's own)."""
        known = [i for i in history.items if self.encoder.has_item(i, catalog)]
        if len(known) < len(history.items):
            log.debug(
                "BertScorer: %d history item(s) not in the catalog skipped",
                len(history.items) - len(known),
            )
        if not known:
            return None
        emb = self.encoder.encode_items(known, catalog).astype(np.float64)
        w = recency_weights(len(known), self.config.half_life)
        prof = w @ emb
        norm = float(np.linalg.norm(prof))
        return prof / norm if norm > 0 else None

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray:
        """Cosine of each candidate with the profile (zeros for an empty history). Items come
        from `catalog` (a request's items; None: the catalog the scorer was built with)."""
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.float64)
        cand = self.encoder.encode_items([c.item_id for c in candidates], catalog).astype(np.float64)
        prof = self.profile(history, catalog)
        if prof is None:
            return np.zeros(len(candidates), dtype=np.float64)
        return np.clip(cand @ prof, -1.0, 1.0)


__all__ = [
    "BertScorer",
    "BertScorerConfig",
    "ItemEncoder",
    "MINILM_PRESET",
    "cache_root",
    "clear_embedding_cache",
    "load_sentence_model",
    "recency_weights",
    "render_item",
    "resolve_sentence_model",
]
