"""Ranking, rating and beyond-accuracy metrics, vectorised over users.

Representation
--------------
A batch of rankings is ``rankings``: one ranked list of item ids per user, either a list of
lists (ragged is fine) or a 2-D array ``(n_users, L)``. List entries may also be objects with an
``item_id`` (``Candidate``, ``RankedItem``), and a row may be a ``Ranking``. Ground truth is ``relevant``: one
collection of item ids per user (a set, list or a single id string). Ids are compared as
strings, so ``3`` and ``"3"`` are the same item.

Every relevance metric is computed from a :class:`HitMatrix` built once by
:func:`hits_matrix`: a boolean ``(n_users, K)`` array (``hits[u, r]`` is True when the item at
rank ``r`` of user ``u`` is relevant) plus the number of relevant items per user. Lists shorter
than ``K`` are padded with misses; a duplicated item counts only at its first position.

Conventions
-----------
- Per-user values are returned as float arrays; means and confidence intervals come from
  :func:`summarize` / :func:`bootstrap_ci`.
- A user with no relevant item has no defined relevance metric: every relevance metric is
  ``NaN`` for that user, and :func:`summarize` / :func:`bootstrap_ci` drop NaN (reporting how
  many users were kept), so all relevance metrics average over the same users.
- Precision@K divides by K even if the list is shorter (the list "wasted" the empty slots).
- NDCG@K uses binary gains and the log2 discount ``1 / log2(rank + 1)`` (rank from 1); the ideal
  DCG places ``min(n_relevant, K)`` relevant items first.
- MRR@K is ``1 / rank`` of the first relevant item within the top K, 0 when none.

Layout: this module holds the relevance and rating metrics and re-exports the rest:
:mod:`.hits` (id matrix, hit matrix), :mod:`.beyond_accuracy` (coverage, diversity, novelty),
:mod:`.bootstrap` (confidence intervals, paired differences, summaries).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ..errors import ConfigError
from .beyond_accuracy import (
    category_coverage,
    embedding_diversity,
    intra_list_diversity,
    item_coverage,
    novelty,
    popularity_counts,
)
from .bootstrap import bootstrap_ci, paired_difference_ci, summarize
from .hits import HitMatrix, Rankings, Relevant, as_id_matrix, hits_matrix

__all__ = [
    "HitMatrix",
    "as_id_matrix",
    "hits_matrix",
    "precision",
    "recall",
    "f1",
    "ndcg",
    "hit_rate",
    "mrr",
    "ranking_metrics",
    "mae",
    "rmse",
    "item_coverage",
    "category_coverage",
    "intra_list_diversity",
    "embedding_diversity",
    "popularity_counts",
    "novelty",
    "bootstrap_ci",
    "paired_difference_ci",
    "summarize",
]


# --------------------------------------------------------------------------- relevance metrics
def _undefined_to_nan(values: np.ndarray, h: HitMatrix) -> np.ndarray:
    out = values.astype(np.float64, copy=True)
    out[~h.defined] = np.nan
    return out


def precision(h: HitMatrix) -> np.ndarray:
    """Precision@K per user: relevant items in the top K divided by K."""
    return _undefined_to_nan(h.hits.sum(axis=1) / h.k, h)


def recall(h: HitMatrix) -> np.ndarray:
    """Recall@K per user: relevant items in the top K divided by all relevant items."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _undefined_to_nan(h.hits.sum(axis=1) / h.n_relevant, h)


def f1(h: HitMatrix) -> np.ndarray:
    """F1@K per user: harmonic mean of precision@K and recall@K (0 when both are 0)."""
    p, r = precision(h), recall(h)
    s = p + r
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(s > 0, 2 * p * r / np.where(s > 0, s, 1.0), 0.0)
    return _undefined_to_nan(out, h)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg(h: HitMatrix) -> np.ndarray:
    """NDCG@K per user with binary gains and a log2 discount."""
    disc = _discounts(h.k)
    dcg = h.hits.astype(np.float64) @ disc
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal_cum[np.minimum(h.n_relevant, h.k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _undefined_to_nan(dcg / idcg, h)


def hit_rate(h: HitMatrix) -> np.ndarray:
    """HR@K per user: 1 if any relevant item is in the top K."""
    return _undefined_to_nan(cast(np.ndarray, h.hits.any(axis=1)), h)  # 2-D any(axis=1): an array


def mrr(h: HitMatrix) -> np.ndarray:
    """MRR@K per user: reciprocal rank of the first relevant item in the top K (0 if none)."""
    any_hit = h.hits.any(axis=1)
    first = np.argmax(h.hits, axis=1)
    return _undefined_to_nan(np.where(any_hit, 1.0 / (first + 1), 0.0), h)


_RANKING_FNS = {
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "ndcg": ndcg,
    "hr": hit_rate,
    "mrr": mrr,
}


def ranking_metrics(
    rankings: Rankings,
    relevant: Relevant,
    ks: Sequence[int] = (10,),
    metrics: Sequence[str] = ("precision", "recall", "f1", "ndcg", "hr", "mrr"),
) -> dict[str, np.ndarray]:
    """Per-user arrays keyed ``"<metric>@<k>"`` (e.g. ``"ndcg@10"``) for every metric and k."""
    unknown = [m for m in metrics if m not in _RANKING_FNS]
    if unknown:
        raise ConfigError(f"metrics: unknown metric(s) {unknown}; choose from {sorted(_RANKING_FNS)}")
    if not ks:
        raise ConfigError("ks: name at least one cut-off")
    full = hits_matrix(rankings, relevant, max(ks))
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = full.at(k)
        for m in metrics:
            out[f"{m}@{k}"] = _RANKING_FNS[m](h)
    return out


# --------------------------------------------------------------------------- rating metrics
def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    return t, p


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error (NaN for empty input)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if t.size else float("nan")


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error (NaN for empty input)."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2))) if t.size else float("nan")
