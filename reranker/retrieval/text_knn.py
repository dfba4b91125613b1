"""Text-enhanced neighbourhood CF: `TItemCF` and `TUserCF` (the seed paper's T-ItemCF /
T-UserCF, its "LLM-enhanced" collaborative filtering).

The similarity of two x's (items for T-ItemCF, users for T-UserCF) is

    sim(x, x') = (1 - mu) * rating_sim(x, x') + mu * cos(e_x, e_x')

where ``rating_sim`` is exactly the plain model's similarity (cosine / pearson / adjusted
cosine, with its ``min_support`` and ``shrinkage``) and ``e`` are text embeddings:

- T-ItemCF: ``e_i`` is the item's text embedding;
- T-UserCF: ``e_u`` is the user's *profile embedding*, the mean of the embeddings of the items
  in their (training) profile, optionally weighted by rating (``profile_weighting="rating"``).
  Ad-hoc histories get a profile embedding the same way at query time.

Everything else (top-k neighbour selection, the rating-prediction formulas, fallbacks,
candidate retrieval and popular fill) is the plain `ItemCF` / `UserCF` machinery, so
``mu = 0`` gives the plain models exactly and ``mu = 1`` pure text similarity.

Why it helps cold items: an item nobody rated has no rating similarity to anything, so plain
ItemCF can neither predict its rating nor propose it; through the text term it gets
neighbours, a kNN prediction (``fallback == "none"``) and CF candidate scores.

Stage 1 never imports the LLM or ranking packages: the embeddings come from whoever built
them, as ``{item_id: vector}``, as ``(ids, matrix)``, or as an encoder object with
``encode_items(ids) -> (n, d) array`` (e.g. ``reranker.ranking.bert.ItemEncoder``), which is
asked for the fitted catalog's ids at ``fit`` time::

    enc = ItemEncoder(dataset, disk_cache=True)
    m = TItemCF(k=20, mu=0.3, item_embeddings=enc.encode_catalog()).fit(dataset)

Items without an embedding get a zero vector (no text similarity; logged). Sentence
embeddings of short, similar texts share a large common direction, so their cosines are all
high; ``center_embeddings=True`` subtracts the catalog's mean embedding first (an option, off
by default: the seed paper uses the plain cosine). The text term
makes the similarity matrix dense: for catalogs beyond a few thousand items set
``max_neighbors`` to bound the stored full similarity.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ..data.dataset import Dataset
from ..errors import ConfigError, DataError
from .base import ItemTextEncoder
from .knn import ItemCF, ItemCFConfig, UserCF, UserCFConfig

log = logging.getLogger(__name__)

#: ``Mapping[str, array]``, ``(ids, matrix)``, an object with ``encode_items(ids)`` or a
#: callable ``ids -> (n, d) array``
ItemEmbeddings = Any


class TItemCFConfig(ItemCFConfig):
    """T-ItemCF options: the ItemCF ones plus the text weight ``mu``."""

    type: Literal["t-itemcf"] = "t-itemcf"  # type: ignore[assignment]
    mu: float = Field(0.3, ge=0.0, le=1.0, description="weight of the text cosine (0: plain ItemCF)")
    center_embeddings: bool = Field(
        False, description="subtract the catalog's mean embedding before the cosine"
    )


class TUserCFConfig(UserCFConfig):
    """T-UserCF options: the UserCF ones plus ``mu`` and how profile embeddings are pooled."""

    type: Literal["t-usercf"] = "t-usercf"  # type: ignore[assignment]
    mu: float = Field(0.3, ge=0.0, le=1.0, description="weight of the text cosine (0: plain UserCF)")
    center_embeddings: bool = Field(
        False, description="subtract the catalog's mean item embedding before pooling / cosine"
    )
    profile_weighting: Literal["mean", "rating"] = Field(
        "mean", description="profile embedding: plain mean of item embeddings, or rating-weighted"
    )


# ---------------------------------------------------------------------------- embeddings
def _l2_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def align_embeddings(source: ItemEmbeddings, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """An (n_items, d) float32 matrix of L2-normalised embeddings in the order of `item_ids`.

    `source` is a mapping id -> vector, a pair ``(ids, matrix)``, an object with
    ``encode_items(ids)``, or a callable ``ids -> matrix``. Ids missing from a mapping or pair
    get a zero row (logged once).
    """
    ids = [str(i) for i in item_ids]
    is_encoder = isinstance(source, ItemTextEncoder)
    if is_encoder or (callable(source) and not isinstance(source, Mapping | tuple)):
        fn = source.encode_items if is_encoder else source
        mat = np.asarray(fn(ids), dtype=np.float32)
        if mat.ndim != 2 or mat.shape[0] != len(ids):
            raise DataError(
                f"item encoder returned shape {mat.shape} for {len(ids)} items; expected (n, d)",
                column="item_embeddings",
            )
        return _l2_rows(mat)
    if isinstance(source, tuple):
        if len(source) != 2:
            raise ConfigError("item_embeddings as a tuple must be (ids, matrix)")
        src_ids, matrix = source
        matrix = np.asarray(matrix, dtype=np.float32)
        src_ids = [str(i) for i in src_ids]
        if matrix.ndim != 2 or matrix.shape[0] != len(src_ids):
            raise DataError(
                f"item_embeddings matrix has shape {matrix.shape} for {len(src_ids)} ids; "
                "expected one row per id",
                column="item_embeddings",
            )
        lookup = {i: r for r, i in enumerate(src_ids)}
        rows = np.fromiter((lookup.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        d = matrix.shape[1]
        out = np.zeros((len(ids), d), dtype=np.float32)
        out[rows >= 0] = matrix[rows[rows >= 0]]
    elif isinstance(source, Mapping):
        vecs = {str(k): np.asarray(v, dtype=np.float32).reshape(-1) for k, v in source.items()}
        if not vecs:
            raise DataError("item_embeddings is empty", column="item_embeddings")
        dims = {v.shape[0] for v in vecs.values()}
        if len(dims) != 1:
            raise DataError(f"item embeddings have different sizes {sorted(dims)}", column="item_embeddings")
        d = dims.pop()
        out = np.zeros((len(ids), d), dtype=np.float32)
        rows = np.full(len(ids), -1, dtype=np.int64)
        for k, i in enumerate(ids):
            v = vecs.get(i)
            if v is not None:
                out[k] = v
                rows[k] = k
    else:
        raise ConfigError(
            "item_embeddings must be a mapping id -> vector, a pair (ids, matrix), an object "
            f"with encode_items(ids) or a callable; got {type(source).__name__}"
        )
    missing = int((rows < 0).sum())
    if missing:
        log.warning("%d of %d catalog items have no text embedding (text similarity 0)", missing, len(ids))
    return _l2_rows(out)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b.T of unit rows, in float64 rounded to float32: the rounding hides BLAS's
    shape-dependent summation order, so one query alone and the same query in a batch get
    identical values."""
    return (a.astype(np.float64) @ b.astype(np.float64).T).astype(np.float32)


class _TextMixin:
    """The text half of the similarity; mixed in front of ItemCF / UserCF."""

    config: Any
    item_based: bool
    X: sp.csr_matrix
    x_means: np.ndarray
    global_mean: float
    item_ids: np.ndarray
    R: sp.csr_matrix

    def _init_text(self, item_embeddings: ItemEmbeddings | None) -> None:
        self._embedding_source = item_embeddings
        self._pending_text = False  # set by `fit`: the text half is prepared at `_compute`
        self.item_emb_: np.ndarray | None = None  # (n_items, d), catalog order, unit rows
        self.x_emb_: np.ndarray | None = None  # (n_x, d) unit rows: items or user profiles

    def set_embeddings(self, item_embeddings: ItemEmbeddings) -> Self:
        """Replace the embedding source (takes effect at the next `fit`)."""
        self._embedding_source = item_embeddings
        return self

    @property
    def mu(self) -> float:
        return float(self.config.mu)

    def fit(self, data: Dataset) -> Self:
        """Index the data, align the embeddings to the catalog (items, or user profiles for
        T-UserCF) and compute the mixed similarities."""
        self._pending_text = True
        return super().fit(data)  # type: ignore[misc]

    def _compute(self, keep_full: bool) -> None:
        if self._pending_text:
            # fit_index has run: ids and R are known
            self._prepare_text()
            self._pending_text = False
            if self.item_based:
                # items without ratings: mean-centred formulas use the global mean as base
                empty = np.diff(self.X.indptr) == 0
                if empty.any():
                    self.x_means = np.where(empty, self.global_mean, self.x_means)
        super()._compute(keep_full)  # type: ignore[misc]

    def _prepare_text(self) -> None:
        if self._embedding_source is None and self.mu == 0.0:
            self.item_emb_ = self.x_emb_ = None  # plain CF: the text term is never used
            return
        if self._embedding_source is None:
            raise ConfigError(
                f"{type(self).__name__} needs item text embeddings: pass item_embeddings= "
                "(a mapping id -> vector, (ids, matrix), or an encoder with encode_items)"
            )
        emb = align_embeddings(self._embedding_source, self.item_ids)
        if self.config.center_embeddings:
            # sentence embeddings share a large common direction; removing the catalog mean
            # spreads the cosines (items with no embedding stay zero)
            present = np.linalg.norm(emb, axis=1) > 0
            if present.any():
                emb = emb.copy()
                emb[present] -= emb[present].mean(axis=0)
                emb = _l2_rows(emb)
        self.item_emb_ = emb
        self.x_emb_ = self.item_emb_ if self.item_based else self._profile_embeddings(self.R)

    def _profile_embeddings(self, P: sp.csr_matrix) -> np.ndarray:
        """Unit profile embeddings of profile rows (mean or rating-weighted mean)."""
        assert self.item_emb_ is not None
        W = P.astype(np.float64)
        cfg = self.config
        weighting = cfg.profile_weighting if isinstance(cfg, TUserCFConfig) else "mean"
        if weighting == "mean":
            W = W.copy()
            W.data[:] = 1.0
        emb = np.asarray(W @ self.item_emb_.astype(np.float64))
        return _l2_rows(emb).astype(np.float32)

    def text_similarity(self, lo: int, hi: int) -> np.ndarray:
        """Cosines of x's lo:hi with every x (dense float32 block)."""
        assert self.x_emb_ is not None
        return _cosines(self.x_emb_[lo:hi], self.x_emb_)

    def _mix(self, sim: np.ndarray, text: np.ndarray) -> np.ndarray:
        mu = self.mu
        if mu == 0.0:
            return sim
        if mu == 1.0:
            return text.astype(sim.dtype, copy=False)
        out = sim * (1.0 - mu)
        out += (mu * text).astype(sim.dtype, copy=False)
        return out

    # hooks of knn._KNN
    def _adjust_similarity(self, sim: np.ndarray, lo: int, hi: int) -> np.ndarray:
        if self.mu == 0.0:
            return sim
        return self._mix(sim, self.text_similarity(lo, hi))

    def _adjust_query_similarity(self, sim: np.ndarray, P: sp.csr_matrix) -> np.ndarray:
        if self.mu == 0.0:
            return sim
        assert self.x_emb_ is not None
        return self._mix(sim, _cosines(self._profile_embeddings(P), self.x_emb_))


class TItemCF(_TextMixin, ItemCF):
    """Item-based kNN whose item-item similarity mixes ratings and item-text cosine
    (``(1 - mu) * rating_sim + mu * text_cos``); cold items get neighbours through the text.

    >>> m = TItemCF(k=20, mu=0.3, item_embeddings=(ids, emb)).fit(dataset)
    >>> m.predict("u1", "new-item")           # kNN prediction even without ratings
    """

    source = "t-itemcf"
    _config_cls = TItemCFConfig
    config: TItemCFConfig

    def __init__(
        self,
        config: TItemCFConfig | None = None,
        *,
        item_embeddings: ItemEmbeddings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self._init_text(item_embeddings)


class TUserCF(_TextMixin, UserCF):
    """User-based kNN whose user-user similarity mixes ratings and the cosine of the users'
    profile embeddings (mean of their items' text embeddings)."""

    source = "t-usercf"
    _config_cls = TUserCFConfig
    config: TUserCFConfig

    def __init__(
        self,
        config: TUserCFConfig | None = None,
        *,
        item_embeddings: ItemEmbeddings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self._init_text(item_embeddings)


__all__ = ["TItemCF", "TUserCF", "TItemCFConfig", "TUserCFConfig", "align_embeddings"]
