"""kNN rating prediction (explicit feedback), mixed into the fitted `knn` models.

As in `knn`, the entities whose similarities are computed are *x* (items for ItemCF, users
for UserCF) and the other side *y*. Predictions use the full x-x similarity (not the top-k
neighbour matrix): the k neighbours are chosen among those that rated the target
(Surprise's KNNWithMeans semantics).

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import DataError, ModelError

Fallback = Literal["none", "user_mean", "global_mean"]

# similarity quantisation of the top-k neighbour selection: ties below 2**-20 go to the lower index
_Q = ((1 << 20) - 1) / 2.0
_TWO21 = float(1 << 21)
# (pair, neighbour) entries processed at once by the vectorised predictor
_PAIR_CHUNK = 1 << 19  # chunks stay below 2**21 entries: the packed sort keys need it


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


class RatingPredictionMixin:
    """Rating prediction of a fitted kNN model (`knn._KNN` inherits it).

    It reads what `FittedIndex.fit_index` and `_KNN.fit` set, and the full x-x similarity
    through the model's ``_ensure_full`` / ``_lookup``.
    """

    config: Any  # a knn.KNNConfig: k, positive_only (and with_means for ItemCF)
    item_based: bool
    item_index: pd.Index
    user_index: pd.Index
    R: sp.csr_matrix
    Yt: sp.csr_matrix  # y-by-x: for each y, the x's that rated it
    x_means: np.ndarray
    user_means: np.ndarray
    global_mean: float
    rating_scale: tuple[float, float] | None
    _sim_full: np.ndarray | sp.csr_matrix | None
    _pred_key: np.ndarray | None

    if TYPE_CHECKING:

        def _check_fitted(self) -> None: ...
        def _ensure_full(self) -> None: ...
        def _lookup(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...
        def user_idx(self, user_id: str | None) -> int: ...

    # ------------------------------------------------------------------ prediction
    def _with_means(self) -> bool:
        """Mean-centred predictions: always for UserCF, ItemCF's ``with_means`` option."""
        from .knn import ItemCFConfig

        cfg = self.config
        return cfg.with_means if isinstance(cfg, ItemCFConfig) else not self.item_based

    def _check_explicit(self) -> None:
        self._check_fitted()
        if self.rating_scale is None:
            raise ModelError(
                f"{type(self).__name__} was fitted with implicit feedback; rating prediction "
                "needs feedback='explicit' and a dataset with ratings"
            )

    def _item_indices(self, item_ids: Sequence[str]) -> np.ndarray:
        idx = self.item_index.get_indexer(pd.Index([str(i) for i in item_ids]))
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
        u = self.user_index.get_indexer(pd.Index([str(x) for x in user_ids])).astype(np.int64)
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
        lo, hi = cast(tuple[float, float], self.rating_scale)  # explicit: `_check_explicit` ran
        values = np.clip(values, lo, hi)
        return BatchPrediction(values, fallback, used)

    def _predict_grouped(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense-similarity predictor, fully vectorised: every pair's candidate neighbours
        (the x's that rated its y) form one padded row; pairs are bucketed by neighbour count
        (geometric levels, so padding wastes < 30%) and each bucket is processed as one 2-D
        block: gather similarities, row-wise top-k partition, weighted sums."""
        cfg = self.config
        S = cast(np.ndarray, self._sim_full)  # the dense path: `_predict_idx` checked it
        k = cfg.k
        pos_only = cfg.positive_only
        with_means = self._with_means()
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
        with_means = self._with_means()
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


__all__ = ["BatchPrediction", "Fallback", "Prediction", "RatingPredictionMixin"]
