"""Maximal Marginal Relevance (MMR) re-ranking: trade relevance for intra-list diversity.

Greedy selection: the next item maximises ``lam * rel(i) - (1 - lam) * max_{j chosen} sim(i, j)``
with relevance min-max normalised to [0, 1] first. ``lam = 1`` keeps the relevance order (ties in
input order, so a `Ranking` comes back unchanged); ``lam = 0`` takes the top item, then always
the item least similar to those already chosen. Item similarity comes from categories (1 when
two items share a category) or from embeddings (cosine), through a similarity source: any
callable ``ids -> (n, n) matrix``. A request's catalog reaches the built-in sources as the keyword
``catalog`` (only when one is given, so plain one-argument callables keep working).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from pydantic import Field

from ..config import BaseConfig
from ..errors import ConfigError
from ..types import Candidate, History, Item, Ranking
from .base import Catalog, ItemIndex, Ranker, catalog_kwargs

if TYPE_CHECKING:
    from ..data.dataset import Dataset

log = logging.getLogger(__name__)

SimilaritySource = Callable[[Sequence[str]], np.ndarray]


class _Encoder(Protocol):
    def encode_items(self, ids: Sequence[str]) -> np.ndarray: ...  # optional keyword: catalog


# ---------------------------------------------------------------------------- core
def mmr_order(
    relevance: Sequence[float] | np.ndarray,
    similarity: np.ndarray,
    lam: float,
    k: int | None = None,
) -> np.ndarray:
    """Indices chosen by MMR, in order (k of them; all when k is None).

    Relevance is min-max normalised to [0, 1] (a constant list becomes all zeros; non-finite
    values count as the least relevant). Score ties go to the earlier index.
    """
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"lam: must be in [0, 1], got {lam}")
    rel = np.asarray(relevance, dtype=np.float64).reshape(-1)
    n = rel.size
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.shape != (n, n):
        raise ValueError(f"similarity matrix has shape {sim.shape}, expected {(n, n)}")
    k = n if k is None else max(0, min(int(k), n))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    from .fusion_weights import normalize

    rel = normalize(rel, "minmax")
    chosen = np.zeros(n, dtype=bool)
    max_sim = np.zeros(n)  # max similarity to the chosen set (0 while it is empty)
    order = np.empty(k, dtype=np.int64)
    for step in range(k):
        obj = lam * rel - (1.0 - lam) * max_sim
        obj[chosen] = -np.inf
        i = int(np.argmax(obj))  # first maximum: ties keep input order
        order[step] = i
        chosen[i] = True
        max_sim = np.maximum(max_sim, sim[:, i])
    return order


def mmr(
    item_ids: Sequence[str],
    relevance: Sequence[float] | np.ndarray,
    similarity_matrix: np.ndarray,
    lam: float,
    k: int | None = None,
) -> list[str]:
    """The ids MMR picks, in order (k of them; all when k is None). See `mmr_order`."""
    if len(item_ids) != len(np.asarray(relevance).reshape(-1)):
        raise ValueError(f"{len(item_ids)} item ids but {len(relevance)} relevance scores")
    return [item_ids[i] for i in mmr_order(relevance, similarity_matrix, lam, k)]


# ---------------------------------------------------------------------------- similarity sources
class CategorySimilarity:
    """sim(i, j) = 1 when both items have the same category, else 0 (1 on the diagonal).

    With ``sep`` (e.g. ``"|"`` or ``" "``) a category string is a set of labels and the
    similarity is their Jaccard overlap. Items without a category are similar to none.
    """

    def __init__(self, catalog: Mapping[str, Item] | Dataset, sep: str | None = None) -> None:
        self.catalog = catalog
        self.sep = sep

    @staticmethod
    def _category(cat: Catalog, item_id: str, indexed: bool) -> str | None:
        """`indexed`: ``isinstance(cat, ItemIndex)``, checked once per call by the caller."""
        if isinstance(cat, Mapping):
            item = cat.get(item_id)
            if isinstance(item, Mapping):
                return item.get("category") or None
        elif indexed:
            item = cat.item(item_id) if cat.has_item(item_id) else None
        else:  # anything else with .item(id) (e.g. a per-request chain of catalogs)
            try:
                item = cat.item(item_id)
            except (KeyError, LookupError):
                item = None
        return None if item is None else item.category

    def __call__(self, item_ids: Sequence[str], catalog: Catalog = None) -> np.ndarray:
        """Similarity of `item_ids` by the categories in `catalog` (None: this source's own)."""
        n = len(item_ids)
        cat = self.catalog if catalog is None else catalog
        indexed = isinstance(cat, ItemIndex)  # once: runtime protocol checks are slow
        cats = [self._category(cat, i, indexed) for i in item_ids]
        if self.sep is None:
            codes = {c: j for j, c in enumerate(dict.fromkeys(c for c in cats if c))}
            lab = np.array([codes[c] if c else -1 for c in cats], dtype=np.int64)
            sim = ((lab[:, None] == lab[None, :]) & (lab[:, None] >= 0)).astype(np.float64)
        else:
            sets = [frozenset(t for t in (c or "").split(self.sep) if t.strip()) for c in cats]
            vocab = {t: j for j, t in enumerate(dict.fromkeys(t for s in sets for t in s))}
            m = np.zeros((n, max(1, len(vocab))))
            for r, s in enumerate(sets):
                m[r, [vocab[t] for t in s]] = 1.0
            inter = m @ m.T
            size = m.sum(axis=1)
            union = size[:, None] + size[None, :] - inter
            sim = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        np.fill_diagonal(sim, 1.0)
        return sim


class EmbeddingSimilarity:
    """Cosine similarity of item embeddings from an encoder with ``encode_items(ids)``
    (e.g. `reranker.ranking.bert.ItemEncoder`)."""

    def __init__(self, encoder: _Encoder) -> None:
        self.encoder = encoder

    def __call__(self, item_ids: Sequence[str], catalog: Catalog = None) -> np.ndarray:
        return cosine_matrix(self.encoder.encode_items(list(item_ids), **catalog_kwargs(catalog)))


def cosine_matrix(embeddings: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows (zero rows are similar to nothing)."""
    e = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.where(norms > 0, norms, 1.0)
    return np.clip(e @ e.T, -1.0, 1.0)


def intra_list_similarity(similarity: np.ndarray) -> float:
    """Mean pairwise similarity over distinct pairs of a list (0.0 for fewer than 2 items);
    intra-list diversity is 1 minus it."""
    s = np.asarray(similarity, dtype=np.float64)
    n = s.shape[0]
    if n < 2:
        return 0.0
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))


# ---------------------------------------------------------------------------- ranker
class MMRConfig(BaseConfig):
    """MMR settings: ``lam`` (1 = pure relevance, 0 = pure diversity), how many positions `k`
    to fill by MMR (the rest keep their order), and where relevance comes from."""

    lam: float = Field(0.7, ge=0.0, le=1.0)
    k: int | None = Field(None, ge=1)
    relevance: Literal["score", "position"] = "score"


def mmr_rerank(
    ranking: Ranking,
    similarity: SimilaritySource | np.ndarray,
    lam: float,
    k: int | None = None,
    relevance: Literal["score", "position"] = "score",
    catalog: Catalog = None,
) -> Ranking:
    """Re-rank a `Ranking` by MMR; the first k positions are chosen by MMR, the rest follow
    in their original order, so every item stays exactly once. `catalog` (a request's items)
    is passed on to a similarity source, when given.

    Relevance is the ranking's scores, or its positions when asked or when the scores do not
    decrease along the ranking (so ``lam = 1`` always returns the input order). Output scores
    are ``n - position``; the original scores are kept in ``diagnostics["mmr"]``.
    """
    ids = ranking.item_ids
    n = len(ids)
    scores = np.asarray(ranking.scores, dtype=np.float64)
    if relevance == "score" and n > 1 and not (
        np.all(np.isfinite(scores)) and np.all(np.diff(scores) <= 0)
    ):
        log.debug("mmr_rerank: scores are not non-increasing; using positions as relevance")
        relevance = "position"
    rel = np.arange(n, 0, -1, dtype=np.float64) if relevance == "position" else scores
    sim = similarity if isinstance(similarity, np.ndarray) else similarity(ids, **catalog_kwargs(catalog))
    top = mmr_order(rel, sim, lam, k)
    rest = np.setdiff1d(np.arange(n), top, assume_unique=True)  # sorted: original order
    order = np.concatenate([top, rest]).astype(int)
    diag: dict[str, Any] = dict(ranking.diagnostics)
    diag["mmr"] = {
        "lam": lam,
        "k": len(top),
        "relevance": relevance,
        "input_order": ids,
        "input_scores": scores.tolist(),
        "intra_list_similarity_before": intra_list_similarity(sim[: len(top), : len(top)]),
        "intra_list_similarity_after": intra_list_similarity(sim[np.ix_(top, top)]),
    }
    out = Ranking.from_order([ids[i] for i in order], diag)
    if ranking.items and any(r.explanation for r in ranking.items):
        out = out.with_explanations(
            {r.item_id: r.explanation for r in ranking.items if r.explanation}
        )
    return out


class MMRRanker:
    """A `Ranker` that re-ranks another ranker's output (IdentityRanker by default) by MMR."""

    name = "mmr"

    def __init__(
        self,
        similarity: SimilaritySource,
        config: MMRConfig | None = None,
        *,
        base: Ranker | None = None,
        lam: float | None = None,
        k: int | None = None,
    ) -> None:
        cfg = config or MMRConfig()
        updates = {key: v for key, v in (("lam", lam), ("k", k)) if v is not None}
        if updates:
            cfg = MMRConfig.from_dict({**cfg.model_dump(), **updates})
        self.config = cfg
        self.similarity = similarity
        if base is None:
            from .base import IdentityRanker

            base = IdentityRanker()
        self.base = base

    def rank(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> Ranking:
        first = self.base.rank(history, candidates, **catalog_kwargs(catalog))
        return mmr_rerank(
            first, self.similarity, self.config.lam, self.config.k, self.config.relevance, catalog
        )


__all__ = [
    "CategorySimilarity",
    "EmbeddingSimilarity",
    "MMRConfig",
    "MMRRanker",
    "cosine_matrix",
    "intra_list_similarity",
    "mmr",
    "mmr_order",
    "mmr_rerank",
]
