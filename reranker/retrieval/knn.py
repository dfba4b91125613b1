"""Neighbourhood collaborative filtering: `ItemCF` and `UserCF`.

Both are the same algorithm on a different axis. Call the entities whose similarities we
compute *x* (items for ItemCF, users for UserCF) and the other side *y*. `fit` builds the
x-by-y feedback matrix, computes x-x similarities block-wise with dense/sparse products
(no Python loop over users x items; the formulas, ``min_support`` and ``shrinkage`` are in
`reranker.retrieval.similarity`) and keeps

- ``neighbors_``: a sparse CSR matrix with the top-``k`` positive neighbours of every x
  (self excluded) -- used for ItemCF candidate retrieval;
- the full similarity -- used for rating prediction, where the k neighbours are chosen
  among those that rated the target (Surprise's KNNWithMeans semantics; the formulas and
  fallbacks are in `reranker.retrieval.rating`).

Up to 5000 x-entities (25M cells) the full matrix is kept dense at fit (it is computed
anyway) and ``neighbors_`` is cut from it on first use. Beyond that, fit keeps only the
sparse ``neighbors_``; the first prediction call computes the full similarity block by block
and stores it as sparse rows (optionally pruned to ``max_neighbors`` per row). UserCF
retrieval computes the query users' similarities on the fly, so ad-hoc histories work.

Similarities: ``cosine`` (``cosine_norm`` "full" or "co_rated"), ``pearson`` and, for ItemCF
only, ``adjusted_cosine``. The text-enhanced T-ItemCF / T-UserCF live in
`reranker.retrieval.text_knn`, which builds on this module.
"""

from __future__ import annotations

import logging
from typing import Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, ValidationError

from ..config import BaseConfig, format_validation_error
from ..data.dataset import Dataset
from ..errors import ConfigError, DataError
from ._fitted import FittedIndex
from .rating import BatchPrediction, Prediction, RatingPredictionMixin
from .similarity import Similarity, UserSimilarity, _Operand, _similarity, _top_k_rows

log = logging.getLogger(__name__)

# the full similarity is kept dense below this many cells (n_x ** 2)
_DENSE_SIM_CELLS = 25_000_000
# similarity rows are computed in blocks of at most this many cells
_BLOCK_CELLS = 8_000_000


class KNNConfig(BaseConfig):
    """Options shared by ItemCF and UserCF."""

    k: int = Field(20, ge=1, description="number of neighbours")
    similarity: Similarity = "cosine"
    cosine_norm: Literal["full", "co_rated"] = Field(
        "full", description="cosine norms over all ratings (full) or co-rated entries only"
    )
    shrinkage: float = Field(0.0, ge=0.0, description="sim * n_co / (n_co + shrinkage)")
    feedback: Literal["auto", "explicit", "implicit"] = Field(
        "auto", description="auto: explicit (ratings) when the fit data has ratings, else implicit"
    )
    min_support: int = Field(1, ge=1, description="minimum co-ratings for a nonzero similarity")
    positive_only: bool = Field(True, description="only positive similarities act as neighbours")
    fill_popular: bool = Field(True, description="fill short candidate lists with popular items")
    rating_scale: tuple[float, float] | None = Field(
        None, description="clip predictions to this range (default: the fit data's min/max)"
    )
    max_neighbors: int | None = Field(
        None, ge=1, description="prune the stored full similarity to this many per row (None: keep all)"
    )


class ItemCFConfig(KNNConfig):
    """ItemCF options; ``with_means`` switches to Surprise's item-based KNNWithMeans formula."""

    type: Literal["itemcf"] = "itemcf"
    with_means: bool = False


class UserCFConfig(KNNConfig):
    """UserCF options (cosine or pearson)."""

    type: Literal["usercf"] = "usercf"
    similarity: UserSimilarity = "cosine"


def _make_config(cls: type[KNNConfig], config: KNNConfig | None, kwargs: dict) -> KNNConfig:
    if config is not None:
        if kwargs:
            raise ConfigError("pass either a config object or keyword options, not both")
        if not isinstance(config, cls):
            raise ConfigError(f"expected {cls.__name__}, got {type(config).__name__}")
        return config
    try:
        return cls(**kwargs)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, cls.__name__)) from None


# ---------------------------------------------------------------------------- base model
class _KNN(RatingPredictionMixin, FittedIndex):
    """Shared fit / neighbour / retrieve logic (rating prediction: `RatingPredictionMixin`);
    subclasses fix the axis."""

    config: KNNConfig
    item_based: bool
    source: str

    def __init__(self, config: KNNConfig | None = None, **kwargs) -> None:
        self.config = _make_config(self._config_cls, config, kwargs)
        self.fill_popular = self.config.fill_popular
        self._sim_full: np.ndarray | sp.csr_matrix | None = None
        self._sim_key: np.ndarray | None = None
        self._neighbors: sp.csr_matrix | None = None
        self._pred_key: np.ndarray | None = None

    _config_cls: type[KNNConfig] = KNNConfig

    # ------------------------------------------------------------------ fit
    def fit(self, data: Dataset) -> Self:
        """Index the data and compute the neighbour matrix (and, for UserCF, the full sims)."""
        cfg = self.config
        feedback = cfg.feedback
        if feedback == "auto":
            feedback = "explicit" if data.has_ratings else "implicit"
        if feedback == "implicit" and cfg.similarity in ("pearson", "adjusted_cosine"):
            raise ConfigError(
                f"similarity={cfg.similarity!r} needs ratings (feedback='explicit'); "
                "with implicit feedback use 'cosine'"
            )
        self.feedback_ = feedback
        """The feedback the model was fitted with (``auto`` resolved)."""
        self.fit_index(data, feedback)
        R = self.R
        if self.rating_scale is not None and cfg.rating_scale is not None:
            self.rating_scale = (float(cfg.rating_scale[0]), float(cfg.rating_scale[1]))
        X = (R.T.tocsr() if self.item_based else R).astype(np.float64)
        X.sort_indices()
        self.X = X  # x-by-y feedback
        self.Yt = X.T.tocsr()  # y-by-x: for each y, the x's that rated it
        self.Yt.sort_indices()
        cnt = np.diff(X.indptr)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.x_means = np.where(cnt > 0, np.asarray(X.sum(axis=1)).ravel() / np.maximum(cnt, 1), 0.0)
            ucnt = np.diff(R.indptr)
            self.user_means = np.where(ucnt > 0, np.asarray(R.sum(axis=1)).ravel() / np.maximum(ucnt, 1), self.global_mean)
        vals = X
        if cfg.similarity == "adjusted_cosine":
            # centre every rating by its user's mean (users are the columns for ItemCF)
            vals = X.copy()
            vals.data = vals.data - self.user_means[vals.indices]
            vals.eliminate_zeros()
        self._op = _Operand(vals, np.float32)
        self._sim_full = None
        self._sim_key = None
        self._neighbors = None
        self._pred_key = None
        self._compute(keep_full=False)
        log.info(
            "%s fitted: %d x-entities, k=%d, similarity=%s",
            type(self).__name__, X.shape[0], cfg.k, cfg.similarity,
        )
        return self

    def _compute(self, keep_full: bool) -> None:
        """Block-wise similarities. Small problems keep the full matrix dense (the top-k
        neighbour matrix is then cut from it on first use); large ones keep the top-k
        matrix, plus the full matrix as sparse rows when `keep_full`."""
        from tqdm.auto import tqdm

        cfg, op = self.config, self._op
        self._pred_key = None  # derived from the full similarity: recomputed on demand
        n = op.vals.shape[0]
        step = max(1, _BLOCK_CELLS // max(n, 1))
        dense_full = n * n <= _DENSE_SIM_CELLS
        full = None
        parts_full: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        rows_, cols_, vals_ = [], [], []
        blocks = range(0, n, step)
        from ..progress import bars_enabled

        for lo in tqdm(blocks, desc="similarity", disable=len(blocks) < 20 or not bars_enabled(), leave=False):
            hi = min(n, lo + step)
            sim = self._adjust_similarity(_similarity(op, lo, hi, op, cfg), lo, hi)
            sim[np.arange(hi - lo), np.arange(lo, hi)] = 0.0  # never your own neighbour
            if dense_full:
                if full is None:
                    full = sim if hi - lo == n else np.zeros((n, n), dtype=sim.dtype)
                if full is not sim:
                    full[lo:hi] = sim
                continue
            r, c, v = _top_k_rows(sim, cfg.k)
            rows_.append(r + lo)
            cols_.append(c)
            vals_.append(v)
            if keep_full:
                parts_full.append(self._sparse_rows(sim, lo))
        if dense_full:
            self._sim_full = full
            self._neighbors = None
            return
        self._neighbors = self._csr(rows_, cols_, vals_, n)
        if keep_full:
            S = self._csr([p[0] for p in parts_full], [p[1] for p in parts_full], [p[2] for p in parts_full], n)
            self._sim_full = S
            self._sim_key = np.repeat(np.arange(n, dtype=np.int64), np.diff(S.indptr)) * n + S.indices

    @staticmethod
    def _csr(rows: list, cols: list, vals: list, n: int) -> sp.csr_matrix:
        m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        m.sort_indices()
        return m

    @property
    def neighbors_(self) -> sp.csr_matrix:
        """Top-k positive neighbours of every x (CSR, self excluded)."""
        self._check_fitted()
        if self._neighbors is None:
            S = self._sim_full
            if not isinstance(S, np.ndarray):
                self._compute(keep_full=self._sim_full is not None)
            else:
                n = S.shape[0]
                step = max(1, _BLOCK_CELLS // max(n, 1))
                parts = [_top_k_rows(S[lo : lo + step], self.config.k) for lo in range(0, n, step)]
                self._neighbors = self._csr(
                    [p[0] + lo for p, lo in zip(parts, range(0, n, step), strict=True)],
                    [p[1] for p in parts], [p[2] for p in parts], n,
                )
        return self._neighbors

    def _adjust_similarity(self, sim: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Hook: a block of x-x rating similarities (rows lo:hi, every column), before the
        diagonal is cleared. The plain models return it unchanged; the text-enhanced ones
        (`text_knn`) mix in a text similarity."""
        return sim

    def _adjust_query_similarity(self, sim: np.ndarray, P: sp.csr_matrix) -> np.ndarray:
        """Hook (UserCF retrieval): similarities of query profiles `P` to every training
        user; unchanged here."""
        return sim

    def _sparse_rows(self, sim: np.ndarray, lo: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.config.max_neighbors
        if m is not None and m < sim.shape[1]:
            # keep the m largest |sim| per row
            part = np.argpartition(-np.abs(sim), m - 1, axis=1)[:, :m]
            v = np.take_along_axis(sim, part, axis=1).ravel()
            r = np.repeat(np.arange(sim.shape[0]), m)
            c = part.ravel()
            keep = v != 0
            return r[keep] + lo, c[keep], v[keep]
        r, c = np.nonzero(sim)
        return r + lo, c, sim[r, c]

    def _ensure_full(self) -> None:
        if self._sim_full is None:
            self._compute(keep_full=True)

    def _lookup(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Full similarity of x-pairs (a[k], b[k])."""
        S = self._sim_full
        if isinstance(S, np.ndarray):
            return np.take(S.ravel(), a.astype(np.int64) * S.shape[1] + b)
        assert S is not None and self._sim_key is not None  # callers run `_ensure_full` first
        n = S.shape[0]
        key = a.astype(np.int64) * n + b
        pos = np.searchsorted(self._sim_key, key)
        pos = np.minimum(pos, len(self._sim_key) - 1)
        hit = self._sim_key[pos] == key
        return np.where(hit, S.data[pos], 0.0)

    def similarity(self, a: str, b: str) -> float:
        """The stored similarity of two items (ItemCF) or two users (UserCF); an id with
        itself gives 0 (nothing is its own neighbour)."""
        self._check_fitted()
        index, what = (self.item_index, "item") if self.item_based else (self.user_index, "user")
        ia, ib = index.get_indexer(pd.Index([str(a), str(b)]))
        for x, i in ((a, ia), (b, ib)):
            if i < 0:
                raise DataError(f"unknown {what} id {x!r}", column=f"{what}_id")
        self._ensure_full()
        return float(self._lookup(np.array([ia]), np.array([ib]))[0])


# ---------------------------------------------------------------------------- models
class ItemCF(_KNN):
    """Item-based kNN: candidates score sum_j r(a,j) w(j,i) over the user's items j and
    their top-k neighbours i; ratings by the item-based formula (see `rating`).

    >>> m = ItemCF(k=20, similarity="cosine", feedback="implicit").fit(dataset)
    >>> m.retrieve(History(items=["1", "50"]), n=20)
    """

    item_based = True
    source = "itemcf"
    _config_cls = ItemCFConfig

    def cf_scores(self, P: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray:
        return np.asarray((P @ self.neighbors_).toarray())


class UserCF(_KNN):
    """User-based kNN: the k most similar training users (computed on the fly for ad-hoc
    histories) vote with weight w(a,u) * r(u,i); ratings by the Resnick formula."""

    item_based = False
    source = "usercf"
    _config_cls = UserCFConfig

    def cf_scores(self, P: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray:
        cfg = self.config
        vals = P.astype(np.float64)
        q = _Operand(vals, np.float32)
        sim = self._adjust_query_similarity(_similarity(q, 0, P.shape[0], self._op, cfg), P)
        known = np.flatnonzero(uidx >= 0)
        sim[known, uidx[known]] = 0.0  # a known user is not their own neighbour
        r, c, v = _top_k_rows(sim, cfg.k)
        W = sp.csr_matrix((v, (r, c)), shape=sim.shape)
        return np.asarray((W @ self.R).toarray())


__all__ = [
    "ItemCF",
    "UserCF",
    "ItemCFConfig",
    "UserCFConfig",
    "KNNConfig",
    "Prediction",
    "BatchPrediction",
]
