"""Similarities of the neighbourhood models (`knn`), computed block-wise with dense/sparse
products (no Python loop over users x items).

As in `knn`, call the entities whose similarities we compute *x* (items for ItemCF, users
for UserCF) and the other side *y*; the input is the x-by-y feedback matrix.

Similarities (on the fit data):

- ``cosine``: r_x . r_x' / (|r_x| |r_x'|). ``cosine_norm="full"`` takes the norms over all of
  x's ratings (the textbook vector cosine, as in `implicit`'s CosineRecommender);
  ``"co_rated"`` takes them over the co-rated entries only (as in Surprise).
- ``pearson``: correlation over the co-rated entries, each side centred by its mean over
  those entries (Surprise's ``pearson``).
- ``adjusted_cosine`` (ItemCF only): cosine of ratings centred by each user's mean (the
  centring happens in `knn` before the matrix reaches this module).

Pairs with fewer than ``min_support`` co-ratings get similarity 0; with ``shrinkage`` s > 0
a similarity is multiplied by n_co / (n_co + s).
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args

import numpy as np
import scipy.sparse as sp

#: a similarity name (the `KNNConfig.similarity` field)
Similarity = Literal["cosine", "pearson", "adjusted_cosine"]
#: the similarities of the user-based models
UserSimilarity = Literal["cosine", "pearson"]
#: every similarity name: ("cosine", "pearson", "adjusted_cosine")
SIMILARITIES: tuple[str, ...] = get_args(Similarity)
#: the similarities only the item-based models support: ("adjusted_cosine",)
ITEM_ONLY_SIMILARITIES: tuple[str, ...] = tuple(
    s for s in SIMILARITIES if s not in get_args(UserSimilarity)
)

# below this many cells, operands are densified and multiplied with BLAS
_DENSE_OPERAND_CELLS = 30_000_000


class SimilarityOptions(Protocol):
    """The config fields the similarity formulas read (`knn.KNNConfig` has them all)."""

    @property
    def similarity(self) -> str: ...
    @property
    def cosine_norm(self) -> str: ...
    @property
    def min_support(self) -> int: ...
    @property
    def shrinkage(self) -> float: ...


class _Operand:
    """The x-by-y matrix in the forms the similarity products need (sparse and, when small,
    dense), with values, 0/1 pattern and squares."""

    def __init__(self, vals: sp.csr_matrix, dtype: type) -> None:
        self.vals = vals.astype(dtype)
        self.bin = self.vals.copy()
        self.bin.data[:] = 1.0
        self.sq = self.vals.multiply(self.vals).tocsr()
        self.dense = vals.shape[0] * vals.shape[1] <= _DENSE_OPERAND_CELLS
        self._cache: dict[str, np.ndarray] = {}
        self.norms = np.sqrt(np.asarray(self.sq.sum(axis=1)).ravel())
        inv = np.divide(1.0, self.norms, out=np.zeros_like(self.norms), where=self.norms > 0)
        self.normed = sp.diags(inv.astype(dtype)) @ self.vals  # unit rows: cosine = dot product

    def get(self, what: str) -> np.ndarray | sp.csr_matrix:
        m = getattr(self, what)
        if not self.dense:
            return m
        if what not in self._cache:
            self._cache[what] = m.toarray()
        return self._cache[what]


def _rows(m: np.ndarray | sp.csr_matrix, lo: int, hi: int) -> np.ndarray | sp.csr_matrix:
    return m[lo:hi]


def _mm(a: np.ndarray | sp.spmatrix, b: np.ndarray | sp.spmatrix) -> np.ndarray:
    """a @ b.T as a dense array."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a @ b.T
    if isinstance(b, np.ndarray):
        return np.asarray(sp.csr_matrix(a) @ b.T)
    if isinstance(a, np.ndarray):
        return np.asarray((sp.csr_matrix(b) @ a.T).T)
    return (a @ b.T).toarray()


def _similarity(
    q: _Operand,
    lo: int,
    hi: int,
    ref: _Operand,
    cfg: SimilarityOptions,
) -> np.ndarray:
    """Dense similarities (hi-lo) x n_ref of rows lo:hi of `q` to every row of `ref`.

    Products run in float32 (exact for integer ratings); the similarity formulas combine
    them in float64, except the plain full-norm cosine, which stays float32.
    """
    kind, norm = cfg.similarity, cfg.cosine_norm
    sym = q is ref and lo == 0 and hi == ref.vals.shape[0]  # the whole square: reuse transposes
    need_freq = kind == "pearson" or cfg.min_support > 1 or cfg.shrinkage > 0
    if kind != "pearson" and norm == "full" and not need_freq:
        # plain vector cosine: one product of row-normalised matrices
        return _mm(_rows(q.get("normed"), lo, hi), ref.get("normed"))
    Vq, V = _rows(q.get("vals"), lo, hi), ref.get("vals")
    Bq, B = _rows(q.get("bin"), lo, hi), ref.get("bin")
    f64 = kind == "pearson"  # pearson's n*sum(xy) - sum(x)sum(y) cancels: combine in float64
    prods = _mm(Vq, V)
    if f64:
        prods = prods.astype(np.float64)
    freq = _mm(Bq, B).astype(np.float64) if need_freq else None
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "pearson":
            assert freq is not None  # pearson always needs the co-rating counts
            si = _mm(Vq, B).astype(np.float64)
            sj = si.T if sym else _mm(Bq, V).astype(np.float64)
            sqi = _mm(_rows(q.get("sq"), lo, hi), B).astype(np.float64)
            sqj = sqi.T if sym else _mm(Bq, ref.get("sq")).astype(np.float64)
            num = freq * prods - si * sj
            den = np.maximum(freq * sqi - si * si, 0.0) * np.maximum(freq * sqj - sj * sj, 0.0)
            sim = num / np.sqrt(den)
            sim[~(den > 1e-12)] = 0.0
        elif norm == "co_rated":
            sqi = _mm(_rows(q.get("sq"), lo, hi), B)
            sqj = sqi.T if sym else _mm(Bq, ref.get("sq"))
            den = sqi * sqj
            np.sqrt(den, out=den)
            sim = prods
            sim /= den
            sim[~(den > 0)] = 0.0
        else:
            den = np.outer(q.norms[lo:hi], ref.norms).astype(prods.dtype)
            sim = prods
            sim /= den
            sim[~(den > 0)] = 0.0
    if freq is not None:
        if cfg.min_support > 1:
            sim[freq < cfg.min_support] = 0.0
        if cfg.shrinkage > 0:
            sim *= (freq / (freq + cfg.shrinkage)).astype(sim.dtype)
    return sim


def _top_k_rows(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, vals) of the top-k positive entries per row (ties: lower column first)."""
    c, n = sim.shape
    if n == 0 or c == 0:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    kk = min(k, n)
    if kk < n:
        part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), (c, n))
    vals = np.take_along_axis(sim, part, axis=1)
    rows = np.repeat(np.arange(c), kk)
    cols, vals = part.ravel(), vals.ravel()
    keep = vals > 0
    return rows[keep], cols[keep], vals[keep]


__all__ = [
    "ITEM_ONLY_SIMILARITIES",
    "SIMILARITIES",
    "Similarity",
    "SimilarityOptions",
    "UserSimilarity",
]
