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
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

Rankings = Sequence[Sequence[Any]] | np.ndarray
Relevant = Sequence[Collection[Any] | str]

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


# --------------------------------------------------------------------------- representation
def as_id_matrix(rankings: Rankings, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad rankings to a ``(n_users, k)`` object array of str ids plus a validity mask.

    ``k=None`` uses the longest list. Entries past the end of a list are ``None`` with mask False.
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if isinstance(rankings, np.ndarray):
        if rankings.ndim != 2:
            raise ValueError(f"rankings array must be 2-D (n_users, L), got shape {rankings.shape}")
        kk = rankings.shape[1] if k is None else k
        n, width = rankings.shape[0], min(rankings.shape[1], kk)
        out = np.full((n, kk), None, dtype=object)
        mask = np.zeros((n, kk), dtype=bool)
        if width:
            out[:, :width] = rankings[:, :width].astype(str)
            mask[:, :width] = True
        return out, mask
    lists = [_as_list(r) for r in rankings]
    n = len(lists)
    kk = k if k is not None else max((len(r) for r in lists), default=0)
    lengths = np.fromiter((min(len(r), kk) for r in lists), dtype=np.int64, count=n)
    out = np.full((n, kk), None, dtype=object)
    mask = np.zeros((n, kk), dtype=bool)
    total = int(lengths.sum())
    if total:
        flat = np.fromiter(
            (str(getattr(x, "item_id", x)) for x in chain.from_iterable(r[:kk] for r in lists)),
            dtype=object,
            count=total,
        )
        rows = np.repeat(np.arange(n), lengths)
        starts = np.cumsum(lengths) - lengths
        cols = np.arange(total) - np.repeat(starts, lengths)
        out[rows, cols] = flat
        mask[rows, cols] = True
    return out, mask


def _as_list(row: Any) -> list[Any]:
    """A ranked row as a list: a `Ranking` gives its items, anything else is iterated."""
    items = getattr(row, "items", None)
    return list(items) if isinstance(items, tuple) else list(row)


def _relevant_sets(relevant: Relevant) -> list[set[str]]:
    out = []
    for r in relevant:
        if isinstance(r, str):
            out.append({r})
        elif r is None:
            out.append(set())
        else:
            out.append({str(x) for x in r})
    return out


@dataclass(frozen=True)
class HitMatrix:
    """Which top-K positions hold a relevant item, per user.

    ``hits``: bool ``(n_users, k)``; ``n_relevant``: int ``(n_users,)``; ``list_len``: how many
    real (non-padding) entries each list has within the top k.
    """

    hits: np.ndarray
    n_relevant: np.ndarray
    list_len: np.ndarray

    @property
    def k(self) -> int:
        return int(self.hits.shape[1])

    @property
    def n_users(self) -> int:
        return int(self.hits.shape[0])

    @property
    def defined(self) -> np.ndarray:
        """Users for whom relevance metrics are defined (at least one relevant item)."""
        return self.n_relevant > 0

    def at(self, k: int) -> HitMatrix:
        """The same hits truncated to a smaller cut-off ``k``."""
        if not 1 <= k <= self.k:
            raise ValueError(f"cannot cut a HitMatrix@{self.k} at k={k}")
        return HitMatrix(self.hits[:, :k], self.n_relevant, np.minimum(self.list_len, k))


def hits_matrix(rankings: Rankings, relevant: Relevant, k: int) -> HitMatrix:
    """Build the ``(n_users, k)`` hit matrix (vectorised membership test via joint keys)."""
    ids, mask = as_id_matrix(rankings, k)
    rel = _relevant_sets(relevant)
    n = ids.shape[0]
    if len(rel) != n:
        raise ValueError(f"{n} rankings but {len(rel)} relevant sets: one per user is required")
    n_rel = np.fromiter((len(s) for s in rel), dtype=np.int64, count=n)
    hits = np.zeros((n, k), dtype=bool)
    rel_flat = np.fromiter(chain.from_iterable(rel), dtype=object, count=int(n_rel.sum()))
    ranked_flat = ids[mask]
    if ranked_flat.size and rel_flat.size:
        codes, _ = pd.factorize(np.concatenate([ranked_flat, rel_flat]))
        vocab = int(codes.max()) + 1
        r_codes, g_codes = codes[: ranked_flat.size], codes[ranked_flat.size :]
        r_users = np.nonzero(mask)[0]
        g_users = np.repeat(np.arange(n), n_rel)
        r_keys = r_users * vocab + r_codes
        g_keys = g_users * vocab + g_codes
        is_hit = np.isin(r_keys, g_keys)
        # a duplicated id counts once, at its first position (row-major order = rank order)
        _, first = np.unique(r_keys, return_index=True)
        first_mask = np.zeros(r_keys.size, dtype=bool)
        first_mask[first] = True
        hits[mask] = is_hit & first_mask
    return HitMatrix(hits=hits, n_relevant=n_rel, list_len=mask.sum(axis=1))


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
    return _undefined_to_nan(h.hits.any(axis=1), h)


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
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(_RANKING_FNS)}")
    if not ks:
        raise ValueError("ks must name at least one cut-off")
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


# --------------------------------------------------------------------------- uncertainty
_BOOT_CELLS = 5_000_000  # resample indices drawn per chunk (bounds memory)


def _check_boot(n_boot: int, alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def _boot_means(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap means ``(n_boot, m)`` of the columns of ``v (n, m)``, users resampled jointly.

    The draws depend only on ``n``, ``n_boot`` and ``seed``, so a metric gets the same interval
    alone (:func:`bootstrap_ci`) or next to others (:func:`summarize`).
    """
    rng = np.random.default_rng(seed)
    n = v.shape[0]
    chunk = max(1, min(n_boot, _BOOT_CELLS // n))
    means = np.empty((n_boot, v.shape[1]), dtype=np.float64)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        idx += (np.arange(m) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=m * n).reshape(m, n)
        means[start : start + m] = (counts @ v) / n
    return means


def bootstrap_ci(
    values: Any, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap ``(1 - alpha)`` interval over users: ``(mean, lo, hi)``.

    NaN values (users for whom the metric is undefined) are dropped; no values gives NaNs.
    """
    _check_boot(n_boot, alpha)
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = _boot_means(v[:, None], n_boot, seed)[:, 0]
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(v.mean()), float(lo), float(hi)


def paired_difference_ci(
    a: Any, b: Any, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Mean per-user difference ``a - b`` with its bootstrap interval (paired over users).

    Use it to compare two systems on the same users: an interval excluding 0 is a difference
    that the user sample supports. Users where either value is NaN are dropped.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"a has {x.size} users but b has {y.size}: pair them first")
    return bootstrap_ci(x - y, n_boot=n_boot, seed=seed, alpha=alpha)


def summarize(
    per_user: Mapping[str, Any], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per metric: ``mean``, ``ci_lo``, ``ci_hi`` (bootstrap over users) and ``n``.

    ``n`` counts the users with a defined (non-NaN) value. Metrics defined on the same users
    are resampled jointly (one set of draws), which is faster and keeps them paired; each row
    equals ``bootstrap_ci`` of that metric alone with the same seed.
    """
    _check_boot(n_boot, alpha)
    names = list(per_user)
    arrays = [np.asarray(per_user[k], dtype=np.float64).ravel() for k in names]
    rows: dict[str, dict[str, float]] = {}
    groups: dict[tuple[int, bytes], list[int]] = {}
    for j, v in enumerate(arrays):
        ok = ~np.isnan(v)
        groups.setdefault((v.size, np.packbits(ok).tobytes()), []).append(j)
    for members in groups.values():
        ok = ~np.isnan(arrays[members[0]])
        v = np.stack([arrays[j][ok] for j in members], axis=1)
        if v.shape[0] == 0:
            for j in members:
                rows[names[j]] = {"mean": np.nan, "ci_lo": np.nan, "ci_hi": np.nan, "n": 0}
            continue
        means = _boot_means(v, n_boot, seed)
        lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
        for c, j in enumerate(members):
            rows[names[j]] = {
                "mean": float(v[:, c].mean()),
                "ci_lo": float(lo[c]),
                "ci_hi": float(hi[c]),
                "n": int(v.shape[0]),
            }
    df = pd.DataFrame([{"metric": k, **rows[k]} for k in names], columns=["metric", "mean", "ci_lo", "ci_hi", "n"])
    return df.set_index("metric")
