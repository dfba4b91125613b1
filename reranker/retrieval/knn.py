"""Neighbourhood collaborative filtering: `ItemCF` and `UserCF`.

Both are the same algorithm on a different axis. Call the entities whose similarities we
compute *x* (items for ItemCF, users for UserCF) and the other side *y*. `fit` builds the
x-by-y feedback matrix, computes x-x similarities block-wise with dense/sparse products
(no Python loop over users x items) and keeps

- ``neighbors_``: a sparse CSR matrix with the top-``k`` positive neighbours of every x
  (self excluded) -- used for ItemCF candidate retrieval;
- the full similarity -- used for rating prediction, where the k neighbours are chosen
  among those that rated the target (Surprise's KNNWithMeans semantics).

Up to 5000 x-entities (25M cells) the full matrix is kept dense at fit (it is computed
anyway) and ``neighbors_`` is cut from it on first use. Beyond that, fit keeps only the
sparse ``neighbors_``; the first prediction call computes the full similarity block by block
and stores it as sparse rows (optionally pruned to ``max_neighbors`` per row). UserCF
retrieval computes the query users' similarities on the fly, so ad-hoc histories work.

Similarities (on the fit data):

- ``cosine``: r_x . r_x' / (|r_x| |r_x'|). ``cosine_norm="full"`` takes the norms over all of
  x's ratings (the textbook vector cosine, as in `implicit`'s CosineRecommender);
  ``"co_rated"`` takes them over the co-rated entries only (as in Surprise).
- ``pearson``: correlation over the co-rated entries, each side centred by its mean over
  those entries (Surprise's ``pearson``).
- ``adjusted_cosine`` (ItemCF only): cosine of ratings centred by each user's mean.

Pairs with fewer than ``min_support`` co-ratings get similarity 0; with ``shrinkage`` s > 0
a similarity is multiplied by n_co / (n_co + s).

Rating prediction (explicit feedback):

- UserCF: ``p(a,i) = mean(a) + sum_u (r(u,i) - mean(u)) w(a,u) / sum_u |w(a,u)|`` over the k
  users most similar to a among those who rated i;
- ItemCF: ``p(a,i) = sum_j r(a,j) w(i,j) / sum_j |w(i,j)|`` over the k items most similar to
  i among those a rated (``with_means=True`` gives ``mean(i) + sum_j (r(a,j) - mean(j)) ...``,
  Surprise's item-based KNNWithMeans);

with ``positive_only`` (default, as Surprise) only w > 0 neighbours count. No qualifying
neighbour: the user's mean, else the global mean (``Prediction.fallback`` says which).
Predictions are clipped to the rating scale.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field, ValidationError

from ..config import BaseConfig, format_validation_error
from ..data.dataset import Dataset
from ..errors import ConfigError, DataError, ModelError
from ._fitted import FittedIndex

log = logging.getLogger(__name__)

Fallback = Literal["none", "user_mean", "global_mean"]

# below this many cells, operands are densified and multiplied with BLAS
_DENSE_OPERAND_CELLS = 30_000_000
# the full similarity is kept dense below this many cells (n_x ** 2)
_DENSE_SIM_CELLS = 25_000_000
# similarity rows are computed in blocks of at most this many cells
_BLOCK_CELLS = 8_000_000
# (pair, neighbour) entries processed at once by the vectorised predictor
# similarity quantisation of the top-k neighbour selection: ties below 2**-20 go to the lower index
_Q = ((1 << 20) - 1) / 2.0
_TWO21 = float(1 << 21)
_PAIR_CHUNK = 1 << 19  # chunks stay below 2**21 entries: the packed sort keys need it


class KNNConfig(BaseConfig):
    """Options shared by ItemCF and UserCF."""

    k: int = Field(20, ge=1, description="number of neighbours")
    similarity: Literal["cosine", "pearson", "adjusted_cosine"] = "cosine"
    cosine_norm: Literal["full", "co_rated"] = Field(
        "full", description="cosine norms over all ratings (full) or co-rated entries only"
    )
    shrinkage: float = Field(0.0, ge=0.0, description="sim * n_co / (n_co + shrinkage)")
    feedback: Literal["explicit", "implicit"] = "explicit"
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

    kind: Literal["itemcf"] = "itemcf"
    with_means: bool = False


class UserCFConfig(KNNConfig):
    """UserCF options (cosine or pearson)."""

    kind: Literal["usercf"] = "usercf"
    similarity: Literal["cosine", "pearson"] = "cosine"  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Prediction:
    """A predicted rating, which fallback produced it, and how many neighbours were used."""

    value: float
    fallback: Fallback = "none"
    n_neighbors: int = 0


class BatchPrediction(NamedTuple):
    """Vectorised predictions: values, fallback labels and neighbour counts (arrays)."""

    values: np.ndarray
    fallback: np.ndarray
    n_neighbors: np.ndarray


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


# ---------------------------------------------------------------------------- similarity
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
    cfg: KNNConfig,
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


# ---------------------------------------------------------------------------- base model
class _KNN(FittedIndex):
    """Shared fit / predict / retrieve logic; subclasses fix the axis."""

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
        if cfg.feedback == "implicit" and cfg.similarity in ("pearson", "adjusted_cosine"):
            raise ConfigError(
                f"similarity={cfg.similarity!r} needs ratings (feedback='explicit'); "
                "with implicit feedback use 'cosine'"
            )
        self.fit_index(data, cfg.feedback)
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
        for lo in tqdm(blocks, desc="similarity", disable=len(blocks) < 20, leave=False):
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
        n = S.shape[0]
        key = a.astype(np.int64) * n + b
        pos = np.searchsorted(self._sim_key, key)
        pos = np.minimum(pos, len(self._sim_key) - 1)
        hit = self._sim_key[pos] == key
        return np.where(hit, S.data[pos], 0.0)

    # ------------------------------------------------------------------ prediction
    def _check_explicit(self) -> None:
        self._check_fitted()
        if self.rating_scale is None:
            raise ModelError(
                f"{type(self).__name__} was fitted with implicit feedback; rating prediction "
                "needs feedback='explicit' and a dataset with ratings"
            )

    def _item_indices(self, item_ids: Sequence[str]) -> np.ndarray:
        idx = self.item_index.get_indexer([str(i) for i in item_ids])
        if (idx < 0).any():
            bad = [str(i) for i, j in zip(item_ids, idx, strict=True) if j < 0]
            raise DataError(f"unknown item id {bad[0]!r}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""), column="item_id")
        return idx

    def predict_batch(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> BatchPrediction:
        """Vectorised predictions for pairs (user_ids[k], item_ids[k]).

        Unknown users fall back to the global mean; unknown item ids raise DataError.
        """
        self._check_explicit()
        if len(user_ids) != len(item_ids):
            raise ValueError(f"{len(user_ids)} user ids but {len(item_ids)} item ids")
        u = self.user_index.get_indexer([str(x) for x in user_ids]).astype(np.int64)
        i = self._item_indices(item_ids).astype(np.int64)
        return self._predict_idx(u, i)

    def _predict_idx(self, u: np.ndarray, i: np.ndarray) -> BatchPrediction:
        self._ensure_full()
        xs, ys = (i, u) if self.item_based else (u, i)
        P = len(u)
        values = np.full(P, np.nan)
        used = np.zeros(P, dtype=np.int64)
        valid = np.flatnonzero((xs >= 0) & (ys >= 0))
        if len(valid) and isinstance(self._sim_full, np.ndarray):
            v, k = self._predict_grouped(xs[valid], ys[valid])
            values[valid] = v
            used[valid] = k
        elif len(valid):
            indptr = self.Yt.indptr
            counts = (indptr[ys[valid] + 1] - indptr[ys[valid]]).astype(np.int64)
            csum = np.cumsum(counts)
            # chunk pairs so that the expanded (pair, neighbour) arrays stay bounded
            targets = np.arange(1, int(csum[-1]) // _PAIR_CHUNK + 1, dtype=np.int64) * _PAIR_CHUNK
            cuts = np.searchsorted(csum, targets, side="right")
            bounds = np.unique(np.r_[0, cuts, np.arange(0, len(valid), _PAIR_CHUNK), len(valid)])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                sel = valid[a:b]
                v, k = self._predict_chunk(xs[sel], ys[sel], counts[a:b])
                values[sel] = v
                used[sel] = k
        fallback = np.full(P, "none", dtype=object)
        none = used == 0
        known_user = u >= 0
        fb_user = none & known_user
        fb_glob = none & ~known_user
        values[fb_user] = self.user_means[u[fb_user]]
        values[fb_glob] = self.global_mean
        fallback[fb_user] = "user_mean"
        fallback[fb_glob] = "global_mean"
        lo, hi = self.rating_scale  # type: ignore[misc]
        values = np.clip(values, lo, hi)
        return BatchPrediction(values, fallback, used)

    def _predict_grouped(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense-similarity predictor, fully vectorised: every pair's candidate neighbours
        (the x's that rated its y) form one padded row; pairs are bucketed by neighbour count
        (geometric levels, so padding wastes < 30%) and each bucket is processed as one 2-D
        block: gather similarities, row-wise top-k partition, weighted sums."""
        cfg = self.config
        S = self._sim_full
        k = cfg.k
        pos_only = cfg.positive_only
        with_means = getattr(cfg, "with_means", not self.item_based)
        indptr, indices = self.Yt.indptr, self.Yt.indices
        vals = self.Yt.data - self.x_means[indices] if with_means else self.Yt.data
        base_all = self.x_means if with_means else np.zeros(len(self.x_means))
        if self._pred_key is None:
            # selection key of every x-x pair: quantised similarity (ties below 2**-20 go to the
            # lower neighbour index, as in `_predict_chunk`); non-qualifying pairs -> -inf
            key = np.rint((1.0 - np.clip(S, -1.0, 1.0)) * _Q)
            key *= -_TWO21
            key[(S <= 0) if pos_only else (S == 0)] = -np.inf
            self._pred_key = key
        key_all = self._pred_key
        P = len(xs)
        starts = indptr[ys].astype(np.int64)
        counts = indptr[ys + 1].astype(np.int64) - starts
        num = np.zeros(P)
        den = np.zeros(P)
        cnt = np.zeros(P, dtype=np.int64)
        levels = np.unique(np.ceil(1.3 ** np.arange(0, 80)).astype(np.int64))
        levels = levels[: int(np.searchsorted(levels, max(int(counts.max(initial=0)), 1))) + 1]
        bucket = np.searchsorted(levels, counts)
        order = np.argsort(bucket, kind="stable")
        b_sorted = bucket[order]
        bounds = np.flatnonzero(np.r_[True, b_sorted[1:] != b_sorted[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            width = int(levels[b_sorted[a]])
            if width == 0:
                continue
            step = max(1, _PAIR_CHUNK // width)
            for lo in range(a, b, step):
                sel = order[lo : min(b, lo + step)]
                self._padded_block(sel, xs, starts, counts, width, indices, vals, S, key_all,
                                   k, pos_only, num, den, cnt)
        ok = den > 0
        out_v = np.full(P, np.nan)
        out_v[ok] = base_all[xs[ok]] + num[ok] / den[ok]
        return out_v, np.where(ok, cnt, 0)

    @staticmethod
    def _padded_block(sel, xs, starts, counts, width, indices, vals, S, key_all, k, pos_only,
                      num, den, cnt) -> None:
        """One bucket of pairs `sel`, neighbour lists padded to `width` (see `_predict_grouped`)."""
        ar = np.arange(width)
        cs = counts[sel][:, None]
        valid = ar[None, :] < cs
        pos = starts[sel][:, None] + np.minimum(ar[None, :], cs - 1)  # pad = repeat the last
        nb = indices[pos]
        xcol = xs[sel][:, None]
        if width > k:
            flat = xcol * key_all.shape[1]
            kk = np.take(key_all, flat + nb)  # key_all is C-contiguous: flat indexing
            kk -= ar
            kk[~valid] = -np.inf
            idx = np.argpartition(kk, width - k, axis=1)[:, width - k :]
            rows = np.arange(len(sel))[:, None]
            valid = valid[rows, idx]
            nb = nb[rows, idx]
            pos = pos[rows, idx]
        W = S[xcol, nb]
        W[~valid] = 0.0
        if pos_only:
            np.maximum(W, 0.0, out=W)
        num[sel] = np.einsum("ij,ij->i", W, vals[pos])
        den[sel] = np.abs(W).sum(axis=1)
        cnt[sel] = (W != 0).sum(axis=1)

    def _predict_chunk(self, xs: np.ndarray, ys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        P = len(xs)
        tot = int(counts.sum())
        seg = np.repeat(np.arange(P), counts)
        starts = self.Yt.indptr[ys].astype(np.int64)
        pos = np.arange(tot, dtype=np.int64) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
        nb = self.Yt.indices[pos]
        r = self.Yt.data[pos]
        w = self._lookup(np.repeat(xs, counts), nb)
        # the stored similarity has a zero diagonal, so this also drops x itself
        ok = (w > 0) if cfg.positive_only else (w != 0)
        seg, nb, r, w = seg[ok], nb[ok], r[ok], w[ok]
        lens = np.bincount(seg, minlength=P)
        if len(seg) and lens.max() > cfg.k and (len(seg) >= 1 << 21 or P >= 1 << 21):
            long = np.flatnonzero(lens[seg] > cfg.k)  # oversized chunk: plain stable argsort
            order = long[np.argsort(seg[long] * 4.0 + (1.0 - w[long]), kind="stable")]
            seg, nb, r, w = self._keep_top(order, seg, nb, r, w)
        elif len(seg) and lens.max() > cfg.k:
            # keep the k largest similarities per pair: one int64 sort of packed
            # (pair, quantised similarity desc, entry) keys; ties keep neighbour order
            long = np.flatnonzero(lens[seg] > cfg.k)
            wq = np.rint((1.0 - np.clip(w[long], -1.0, 1.0)) * _Q).astype(np.int64)
            key = (seg[long].astype(np.int64) << 42) | (wq << 21) | np.arange(len(long), dtype=np.int64)
            key.sort()
            order = long[key & ((1 << 21) - 1)]
            seg, nb, r, w = self._keep_top(order, seg, nb, r, w)
        used = np.bincount(seg, minlength=P)
        den = np.bincount(seg, weights=np.abs(w), minlength=P)
        with_means = getattr(cfg, "with_means", not self.item_based)
        if with_means:
            num = np.bincount(seg, weights=w * (r - self.x_means[nb]), minlength=P)
            base = self.x_means[xs]
        else:
            num = np.bincount(seg, weights=w * r, minlength=P)
            base = np.zeros(P)
        with np.errstate(invalid="ignore", divide="ignore"):
            val = np.where(den > 0, base + num / den, np.nan)
        used = np.where(den > 0, used, 0)
        return val, used

    def _keep_top(self, order: np.ndarray, seg, nb, r, w):
        """Drop entries ranked >= k within their pair; `order` lists the long pairs' entries
        sorted by (pair, similarity desc)."""
        s_sorted = seg[order]
        first = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]
        seg_len = np.diff(np.r_[first, len(order)])
        rank = np.arange(len(order)) - np.repeat(first, seg_len)
        keep = np.ones(len(seg), dtype=bool)
        keep[order[rank >= self.config.k]] = False
        return seg[keep], nb[keep], r[keep], w[keep]

    def predict(self, user_id: str, item_id: str) -> Prediction:
        """Predicted rating with the fallback used and the number of neighbours."""
        b = self.predict_batch([user_id], [item_id])
        return Prediction(float(b.values[0]), b.fallback[0], int(b.n_neighbors[0]))

    def predict_rating(self, user_id: str, item_id: str) -> float:
        """Predicted rating, clipped to the rating scale."""
        return self.predict(user_id, item_id).value

    def similarity(self, a: str, b: str) -> float:
        """The stored similarity of two items (ItemCF) or two users (UserCF); an id with
        itself gives 0 (nothing is its own neighbour)."""
        self._check_fitted()
        index, what = (self.item_index, "item") if self.item_based else (self.user_index, "user")
        ia, ib = index.get_indexer([str(a), str(b)])
        for x, i in ((a, ia), (b, ib)):
            if i < 0:
                raise DataError(f"unknown {what} id {x!r}", column=f"{what}_id")
        self._ensure_full()
        return float(self._lookup(np.array([ia]), np.array([ib]))[0])

    def has_rated(self, user_id: str, item_id: str) -> bool:
        """Whether the user rated / interacted with the item in the fit data."""
        self._check_fitted()
        u, i = self.user_idx(user_id), int(self._item_indices([item_id])[0])
        if u < 0:
            return False
        row = self.R.indices[self.R.indptr[u] : self.R.indptr[u + 1]]
        return bool(np.isin(i, row))

    def recommend_if(self, user_id: str, item_id: str, threshold: float) -> bool:
        """The seed paper's rule: recommend when the user has not rated the item and the
        predicted rating is >= threshold."""
        if self.has_rated(user_id, item_id):
            return False
        return self.predict_rating(user_id, item_id) >= threshold


# ---------------------------------------------------------------------------- models
class ItemCF(_KNN):
    """Item-based kNN: candidates score sum_j r(a,j) w(j,i) over the user's items j and
    their top-k neighbours i; ratings by the item-based formula (see module docstring).

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


def make_retriever(model: str, **options) -> FittedIndex:
    """Build a retriever by name (``itemcf``, ``usercf``, ``t-itemcf``, ``t-usercf``,
    ``popular``) from keyword options (the T- models also take ``item_embeddings``)."""
    from .popularity import PopularityRetriever

    if model == "itemcf":
        return ItemCF(**options)
    if model == "usercf":
        return UserCF(**options)
    if model in ("t-itemcf", "t-usercf"):
        from .text_knn import TItemCF, TUserCF

        return (TItemCF if model == "t-itemcf" else TUserCF)(**options)
    if model == "popular":
        if options:
            raise ConfigError(f"the popularity retriever takes no options, got {sorted(options)}")
        return PopularityRetriever()
    raise ConfigError(
        f"unknown retriever model {model!r}; choose itemcf, usercf, t-itemcf, t-usercf or popular"
    )


__all__ = [
    "ItemCF",
    "UserCF",
    "ItemCFConfig",
    "UserCFConfig",
    "KNNConfig",
    "Prediction",
    "BatchPrediction",
    "make_retriever",
]
