"""Beyond-accuracy metrics: catalog and category coverage, intra-list diversity (categories or
embeddings), popularity counts and novelty. Re-exported by :mod:`reranker.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .hits import Rankings, as_id_matrix

__all__ = [
    "item_coverage",
    "category_coverage",
    "intra_list_diversity",
    "embedding_diversity",
    "popularity_counts",
    "novelty",
]


# --------------------------------------------------------------------------- beyond accuracy
def _catalog_size(catalog: int | Collection[Any]) -> int:
    n = catalog if isinstance(catalog, int | np.integer) else len(catalog)
    if n <= 0:
        raise ValueError("catalog must hold at least one item")
    return int(n)


def item_coverage(rankings: Rankings, catalog: int | Collection[Any], k: int) -> float:
    """Fraction of the catalog that appears in at least one top-k list.

    ``catalog`` is the catalog size or the collection of catalog ids.
    """
    ids, mask = as_id_matrix(rankings, k)
    return len(pd.unique(ids[mask])) / _catalog_size(catalog)


def _category_codes(
    ids: np.ndarray, mask: np.ndarray, item_category: Mapping[str, Any]
) -> tuple[np.ndarray, int]:
    """Category code per cell (-1 for padding or items without a category)."""
    keys = pd.Index([str(x) for x in item_category.keys()])
    cats = pd.Series(list(item_category.values()), dtype=object)
    cat_codes, uniques = pd.factorize(cats, use_na_sentinel=True)
    pos = keys.get_indexer(ids[mask])
    codes = np.full(ids.shape, -1, dtype=np.int64)
    codes[mask] = np.where(pos >= 0, cat_codes[np.maximum(pos, 0)], -1)
    return codes, len(uniques)


def category_coverage(
    rankings: Rankings,
    item_category: Mapping[str, Any],
    k: int,
    n_categories: int | None = None,
) -> float:
    """Fraction of categories present in at least one top-k list.

    ``item_category`` maps item id -> category; the number of categories defaults to the
    distinct non-missing values of that mapping.
    """
    ids, mask = as_id_matrix(rankings, k)
    codes, n_cat = _category_codes(ids, mask, item_category)
    total = n_categories if n_categories is not None else n_cat
    if total <= 0:
        raise ValueError("no categories to cover")
    present = np.unique(codes[codes >= 0])
    return present.size / total


def _pair_mean(dissim: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over i<j of dissim[u, i, j] where both positions are valid; NaN if < 2 valid."""
    kk = dissim.shape[1]
    upper = np.triu(np.ones((kk, kk), dtype=bool), k=1)
    pair_ok = valid[:, :, None] & valid[:, None, :] & upper[None]
    n_pairs = pair_ok.sum(axis=(1, 2))
    total = np.where(pair_ok, dissim, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pairs > 0, total / np.maximum(n_pairs, 1), np.nan)


def intra_list_diversity(
    rankings: Rankings, item_category: Mapping[str, Any], k: int
) -> np.ndarray:
    """Per-user mean pairwise category dissimilarity in the top k (1 if categories differ).

    Items whose category is unknown are skipped; a list with fewer than two categorised items
    gets NaN.
    """
    ids, mask = as_id_matrix(rankings, k)
    codes, _ = _category_codes(ids, mask, item_category)
    dissim = (codes[:, :, None] != codes[:, None, :]).astype(np.float64)
    return _pair_mean(dissim, codes >= 0)


def embedding_diversity(
    rankings: Rankings,
    embeddings: np.ndarray,
    item_ids: Sequence[Any],
    k: int,
    chunk_users: int = 4096,
) -> np.ndarray:
    """Per-user mean pairwise ``1 - cosine`` between item embeddings in the top k.

    ``embeddings[i]`` belongs to ``item_ids[i]``. Items without an embedding are skipped; a list
    with fewer than two embedded items gets NaN. Users are processed in chunks to bound memory.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(item_ids):
        raise ValueError(
            f"embeddings must be (n_items, dim) with one row per id; got {emb.shape} for "
            f"{len(item_ids)} ids"
        )
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.where(norms > 0, norms, 1.0)
    ids, mask = as_id_matrix(rankings, k)
    pos = np.full(ids.shape, -1, dtype=np.int64)
    pos[mask] = pd.Index([str(x) for x in item_ids]).get_indexer(ids[mask])
    out = np.empty(ids.shape[0], dtype=np.float64)
    for start in range(0, ids.shape[0], chunk_users):
        p = pos[start : start + chunk_users]
        vec = unit[np.maximum(p, 0)]  # (c, k, d)
        cos = np.einsum("ukd,ujd->ukj", vec, vec)
        out[start : start + chunk_users] = _pair_mean(1.0 - cos, p >= 0)
    return out


def popularity_counts(item_ids: Sequence[Any] | pd.Series) -> dict[str, int]:
    """Interaction count per item id (e.g. from the training interactions' ``item_id``)."""
    s = pd.Series(np.asarray(item_ids, dtype=object)).astype(str)
    return {str(k): int(v) for k, v in s.value_counts(sort=False).items()}


def novelty(
    rankings: Rankings,
    popularity: Mapping[str, float],
    k: int,
    total: float | None = None,
) -> np.ndarray:
    """Per-user mean self-information ``-log2(count_i / total)`` of the top-k items.

    ``popularity`` maps item id -> interaction count; ``total`` defaults to the sum of counts.
    Items with no (or zero) count are treated as seen once, so novelty stays finite. Empty
    lists get NaN.
    """
    tot = float(sum(popularity.values())) if total is None else float(total)
    if tot <= 0:
        raise ValueError("popularity counts must sum to a positive total")
    ids, mask = as_id_matrix(rankings, k)
    keys = pd.Index([str(x) for x in popularity.keys()])
    counts = np.asarray(list(popularity.values()), dtype=np.float64)
    pos = keys.get_indexer(ids[mask])
    c = np.where(pos >= 0, counts[np.maximum(pos, 0)], 0.0)
    info = np.zeros(ids.shape, dtype=np.float64)
    info[mask] = -np.log2(np.maximum(c, 1.0) / tot)
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, info.sum(axis=1) / np.maximum(n, 1), np.nan)
