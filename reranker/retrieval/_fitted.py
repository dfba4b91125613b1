"""Shared machinery of the fitted retrievers: id <-> index maps, the interaction matrix,
popularity, user profiles built from `History` objects, and deterministic top-n selection.

Integer indices live only in here and in the fitted models; every public method speaks
string ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..errors import ConfigError, ModelError
from ..types import Candidate, History

log = logging.getLogger(__name__)

Feedback = Literal["explicit", "implicit"]

# dense (q x n_items) score blocks are processed in chunks of at most this many cells
_BLOCK_CELLS = 8_000_000


class FittedIndex:
    """What every fitted retriever knows about the training data.

    Attributes (all set by `fit_index`):
    ``item_ids`` (catalog order), ``user_ids`` (first-seen order in the interactions),
    ``R`` users x items CSR of feedback values (ratings, or 1.0 for implicit feedback; a
    repeated (user, item) pair keeps the mean of its ratings), ``pop_counts`` (distinct users
    per item), ``pop_norm`` (counts / max count) and ``pop_order`` (most popular first,
    ties by catalog order).
    """

    item_ids: np.ndarray
    user_ids: np.ndarray
    item_index: pd.Index
    user_index: pd.Index
    R: sp.csr_matrix
    pop_counts: np.ndarray
    pop_norm: np.ndarray
    pop_order: np.ndarray
    global_mean: float
    rating_scale: tuple[float, float] | None
    _fitted: bool = False

    def fit_index(self, data: Dataset, feedback: Feedback) -> None:
        if not isinstance(data, Dataset):
            raise TypeError(f"fit() expects a reranker Dataset, got {type(data).__name__}")
        inter = data.interactions
        if len(inter) == 0:
            raise ModelError("cannot fit on a dataset without interactions")
        if feedback == "explicit" and "rating" not in inter.columns:
            raise ConfigError(
                f"feedback='explicit' needs a rating column, but dataset {data.name!r} has none; "
                "use feedback='implicit'"
            )
        self.item_index = pd.Index(data.items["item_id"].astype(str))
        self.item_ids = self.item_index.to_numpy()
        ucodes, uniques = pd.factorize(inter["user_id"], sort=False)
        self.user_index = pd.Index(np.asarray(uniques, dtype=object).astype(str))
        self.user_ids = self.user_index.to_numpy()
        icodes_local, iuniq = pd.factorize(inter["item_id"], sort=False)
        icodes = self.item_index.get_indexer(iuniq)[icodes_local]
        if (icodes < 0).any():
            bad = inter["item_id"].to_numpy()[icodes < 0][0]
            raise ModelError(f"interaction item id {bad!r} is not in the catalog")
        shape = (len(self.user_ids), len(self.item_ids))
        ones = np.ones(len(inter), dtype=np.float64)
        counts = sp.csr_matrix((ones, (ucodes, icodes)), shape=shape)
        counts.sum_duplicates()
        if feedback == "explicit":
            ratings = inter["rating"].to_numpy(dtype=np.float64)
            sums = sp.csr_matrix((ratings, (ucodes, icodes)), shape=shape)
            sums.sum_duplicates()
            R = counts.copy()
            R.data = sums.data / counts.data  # same pattern: both built from the same coordinates
            self.rating_scale = (float(ratings.min()), float(ratings.max()))
            self.global_mean = float(R.data.mean())
        else:
            R = counts.copy()
            R.data[:] = 1.0
            self.rating_scale = None
            self.global_mean = 1.0
        R.sort_indices()
        self.R = R
        self.pop_counts = np.diff(R.tocsc().indptr).astype(np.float64)
        top = self.pop_counts.max() if len(self.pop_counts) else 0.0
        self.pop_norm = self.pop_counts / top if top > 0 else np.zeros_like(self.pop_counts)
        self.pop_order = np.lexsort((np.arange(len(self.pop_counts)), -self.pop_counts))
        self._fitted = True

    # ------------------------------------------------------------------ lookups
    def _check_fitted(self) -> None:
        if not self._fitted:
            raise ModelError(f"{type(self).__name__} is not fitted; call fit(dataset) first")

    def user_idx(self, user_id: str | None) -> int:
        """Internal index of a training user, -1 when unknown (or None)."""
        if user_id is None:
            return -1
        loc = self.user_index.get_indexer(pd.Index([str(user_id)]))[0]
        return int(loc)

    def item_idx(self, item_id: str) -> int:
        """Internal index of a catalog item, -1 when unknown."""
        return int(self.item_index.get_indexer(pd.Index([str(item_id)]))[0])

    def knows_user(self, user_id: str) -> bool:
        self._check_fitted()
        return self.user_idx(user_id) >= 0

    def knows_item(self, item_id: str) -> bool:
        self._check_fitted()
        return self.item_idx(item_id) >= 0

    # ------------------------------------------------------------------ profiles
    def profiles(self, histories: Sequence[History]) -> tuple[sp.csr_matrix, np.ndarray]:
        """Profile matrix (q x items) and the training-user index of each history (-1: ad hoc).

        A known user's profile is their training row merged with the history's items (the
        history's own values win); an ad-hoc history is just its items. Items not in the
        catalog are ignored. Without ratings in the history, explicit feedback uses the
        training row's value or the global mean.
        """
        q = len(histories)
        uidx = self.user_index.get_indexer(
            pd.Index([str(h.user_id) if h.user_id is not None else "\0" for h in histories])
        )
        uidx = np.where(np.array([h.user_id is None for h in histories], dtype=bool), -1, uidx)
        lens = np.fromiter((len(h.items) for h in histories), dtype=np.int64, count=q)
        all_items = [i for h in histories for i in h.items]
        hcols = self.item_index.get_indexer(pd.Index(all_items)) if all_items else np.zeros(0, np.int64)
        hrows = np.repeat(np.arange(q), lens)
        explicit = self.rating_scale is not None
        if explicit:
            hvals = np.concatenate(
                [
                    np.asarray(h.ratings, dtype=np.float64)
                    if h.ratings is not None
                    else np.full(len(h.items), np.nan)
                    for h in histories
                ]
            ) if all_items else np.zeros(0)
        else:
            hvals = np.ones(len(all_items))
        ok = hcols >= 0
        if not ok.all():
            log.debug("ignoring %d history item(s) not in the catalog", int((~ok).sum()))
        hrows, hcols, hvals = hrows[ok], hcols[ok], hvals[ok]
        # training rows of known users
        known = np.flatnonzero(uidx >= 0)
        starts, ends = self.R.indptr[uidx[known]], self.R.indptr[uidx[known] + 1]
        tl = ends - starts
        tpos = np.repeat(starts, tl) + (np.arange(tl.sum()) - np.repeat(np.cumsum(tl) - tl, tl))
        trows = np.repeat(known, tl)
        tcols = self.R.indices[tpos]
        tvals = self.R.data[tpos]
        if explicit and np.isnan(hvals).any():
            # missing history ratings: the training value if any, else the global mean
            fill = np.full(len(hvals), self.global_mean)
            if len(trows):
                tkey = trows.astype(np.int64) * len(self.item_ids) + tcols
                hkey = hrows.astype(np.int64) * len(self.item_ids) + hcols
                order = np.argsort(tkey)
                p = np.searchsorted(tkey[order], hkey)
                p = np.minimum(p, len(tkey) - 1)
                hit = tkey[order][p] == hkey
                fill[hit] = tvals[order][p[hit]]
            hvals = np.where(np.isnan(hvals), fill, hvals)
        rows = np.concatenate([trows, hrows])
        cols = np.concatenate([tcols, hcols])
        vals = np.concatenate([tvals, hvals])
        # de-duplicate (row, col), keeping the last occurrence (history after training)
        key = rows.astype(np.int64) * len(self.item_ids) + cols
        _, first_rev = np.unique(key[::-1], return_index=True)
        keep = len(key) - 1 - first_rev
        P = sp.csr_matrix(
            (vals[keep], (rows[keep], cols[keep])), shape=(q, len(self.item_ids))
        )
        P.sort_indices()
        return P, uidx

    # ------------------------------------------------------------------ selection
    def cf_scores(self, P: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray | None:
        """Dense (q x items) neighbour scores for profile rows; None: no CF (popularity)."""
        return None

    source: str = "cf"
    fill_popular: bool = True

    def select(self, P: sp.csr_matrix, uidx: np.ndarray, n: int, exclude_seen: bool) -> CandidateBatch:
        """Top-n candidates per profile row (chunked); see `_top_n` for the rules."""
        q, m = P.shape
        step = max(1, _BLOCK_CELLS // max(m, 1))
        if q <= step:
            return self._top_n(self.cf_scores(P, uidx), P, n, exclude_seen)
        parts = []
        for lo in range(0, q, step):
            hi = min(q, lo + step)
            Pc = P[lo:hi]
            parts.append(self._top_n(self.cf_scores(Pc, uidx[lo:hi]), Pc, n, exclude_seen))
        return CandidateBatch.concat(parts)

    def _top_n(
        self, scores: np.ndarray | None, P: sp.csr_matrix, n: int, exclude_seen: bool
    ) -> CandidateBatch:
        """Deterministic top-n per row.

        Items with a positive neighbour score come first (best first). When fewer than n
        qualify and `fill_popular` is on, the rest is filled with popular items
        (``source="popular"``), scored below the row's weakest neighbour candidate:
        ``pop_norm * min_cf / 2`` (``pop_norm`` alone when the row has no CF candidate).
        Seen items (the profile) are excluded with `exclude_seen`. Ties: lower catalog index
        first.
        """
        q, m = P.shape
        if scores is None:
            key = np.broadcast_to(-2.0 + self.pop_norm, (q, m)).copy()
        else:
            fill = (-2.0 + self.pop_norm) if self.fill_popular else np.full(m, -np.inf)
            key = np.where(scores > 0, scores, fill[None, :].astype(scores.dtype))
        if exclude_seen:
            r, c = P.nonzero()
            key[r, c] = -np.inf
        n_eff = min(n, m)
        if n_eff < m:
            part = np.argpartition(-key, n_eff - 1, axis=1)[:, :n_eff]
        else:
            part = np.broadcast_to(np.arange(m), (q, m)).copy()
        vals = np.take_along_axis(key, part, axis=1)
        if n_eff < m:
            # rows where ties straddle the cut: redo them by (score desc, index asc)
            kth = vals.min(axis=1)
            n_eq_all = (key == kth[:, None]).sum(axis=1)
            n_eq_sel = (vals == kth[:, None]).sum(axis=1)
            for row in np.flatnonzero(n_eq_all > n_eq_sel):
                o = np.lexsort((np.arange(m), -key[row]))[:n_eff]
                part[row] = o
                vals[row] = key[row, o]
        rows = np.repeat(np.arange(q), n_eff)
        cols, vals = part.ravel(), vals.ravel()
        order = np.lexsort((cols, -vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        finite = np.isfinite(vals)
        if not finite.all():
            rows, cols, vals = rows[finite], cols[finite], vals[finite]
        cf = vals > 0 if scores is not None else np.zeros(len(vals), dtype=bool)
        # per-row minimum CF score (for scaling the popular fill)
        min_cf = np.full(q, np.inf)
        np.minimum.at(min_cf, rows[cf], vals[cf])
        scale = np.where(np.isfinite(min_cf), min_cf / 2.0, 1.0)
        final = np.where(cf, vals, self.pop_norm[cols] * scale[rows]).astype(np.float64)
        bounds = np.searchsorted(rows, np.arange(q + 1))
        src = np.where(cf, self.source, "popular")
        return CandidateBatch(self.item_ids[cols], final, src, bounds)

    # ------------------------------------------------------------------ public retrieval
    def retrieve(self, history: History, n: int, exclude_seen: bool = True) -> list[Candidate]:
        """Top-n candidates for one history, best first (see `retrieve_batch`)."""
        return self.retrieve_arrays([history], n, exclude_seen).to_candidates()[0]

    def retrieve_batch(
        self,
        histories: Sequence[History] | Mapping[str, History],
        n: int,
        exclude_seen: bool = True,
    ) -> list[list[Candidate]] | dict[str, list[Candidate]]:
        """Top-n candidates for many histories at once (sparse products, chunked).

        A mapping in gives a dict out (same keys); a sequence gives a list in the same order.
        """
        if isinstance(histories, Mapping):
            keys = list(histories.keys())
            res = self.retrieve_arrays([histories[k] for k in keys], n, exclude_seen)
            return dict(zip(keys, res.to_candidates(), strict=True))
        return self.retrieve_arrays(histories, n, exclude_seen).to_candidates()

    def retrieve_arrays(
        self, histories: Sequence[History], n: int, exclude_seen: bool = True
    ) -> CandidateBatch:
        """Like `retrieve_batch`, returned as flat arrays (no per-candidate objects)."""
        self._check_fitted()
        check_n(n)
        hs = list(histories)
        for h in hs:
            if not isinstance(h, History):
                raise TypeError(f"expected History objects, got {type(h).__name__}")
        if not hs:
            return CandidateBatch.empty()
        P, uidx = self.profiles(hs)
        return self.select(P, uidx, int(n), exclude_seen)

    def score_items(self, histories: Sequence[History], item_ids: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """This model's own score of given items for each history (Scorer use, e.g. CF features
        of the learned fusion head): the neighbour score (0 without neighbours), or the
        popularity score for models without CF. Items not in the catalog score 0."""
        self._check_fitted()
        if len(histories) != len(item_ids):
            raise ValueError(f"{len(histories)} histories but {len(item_ids)} item lists")
        if not histories:
            return []
        P, uidx = self.profiles(list(histories))
        full = self.cf_scores(P, uidx)
        out = []
        for row, ids in enumerate(item_ids):
            idx = self.item_index.get_indexer(pd.Index([str(i) for i in ids]))
            vals = self.pop_norm if full is None else full[row]
            out.append(np.where(idx >= 0, vals[np.maximum(idx, 0)], 0.0).astype(np.float64))
        return out

    def score(self, history: History, candidates: Sequence[Candidate]) -> np.ndarray:
        """Scorer protocol: `score_items` for one history and its candidates."""
        return self.score_items([history], [[c.item_id for c in candidates]])[0]

    def retrieve_users(
        self, user_ids: Sequence[str], n: int, exclude_seen: bool = True
    ) -> CandidateBatch:
        """Top-n for users seen at fit time, straight from their fit-time rows (unknown users
        get an empty profile, i.e. popular items)."""
        self._check_fitted()
        check_n(n)
        uidx = self.user_index.get_indexer(pd.Index([str(u) for u in user_ids])).astype(np.int64)
        if len(uidx) == 0:
            return CandidateBatch.empty()
        rows = self.R[np.maximum(uidx, 0)]
        if (uidx < 0).any():
            rows = sp.diags((uidx >= 0).astype(np.float64)) @ rows
            rows.eliminate_zeros()
        return self.select(rows.tocsr(), uidx, int(n), exclude_seen)


@dataclass(frozen=True)
class CandidateBatch:
    """Candidates of many rows as flat arrays: row k is ``[bounds[k], bounds[k+1])``."""

    item_ids: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    bounds: np.ndarray

    @classmethod
    def empty(cls) -> CandidateBatch:
        return cls(np.zeros(0, object), np.zeros(0), np.zeros(0, object), np.zeros(1, np.int64))

    @classmethod
    def concat(cls, parts: Sequence[CandidateBatch]) -> CandidateBatch:
        offs = np.cumsum([0] + [p.bounds[-1] for p in parts[:-1]])
        return cls(
            np.concatenate([p.item_ids for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.sources for p in parts]),
            np.concatenate([parts[0].bounds[:1]] + [p.bounds[1:] + o for p, o in zip(parts, offs, strict=True)]),
        )

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def row_ids(self, k: int) -> np.ndarray:
        return self.item_ids[self.bounds[k] : self.bounds[k + 1]]

    def to_candidates(self) -> list[list[Candidate]]:
        ids, sc, src = self.item_ids.tolist(), self.scores.tolist(), self.sources.tolist()
        b = self.bounds.tolist()
        return [
            [Candidate(ids[j], sc[j], src[j]) for j in range(b[k], b[k + 1])]
            for k in range(len(b) - 1)
        ]


def check_n(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
