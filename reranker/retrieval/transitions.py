"""Item-to-item transitions: what users interact with next.

`fit` walks every user's training interactions in the dataset's chronological order
(`Dataset.sorted_interactions`, the order the leave-one-out split and the histories use, ties
in time included) and counts, for every item i and each of the next ``window`` positions,
the item j that follows, weighted by ``decay ** (gap - 1)`` (gap 1 = the very next item).
A repeat of the same item (i followed by i) is not counted. The counts C are normalised per
source item:

    T[i, j] = C[i, j] / (sum_j' C[i, j']) ** beta

``beta = 1`` (the default) makes T row-stochastic (the decayed next-item distribution of i);
``beta = 0`` keeps raw decayed counts; values between damp popular source items less.

A history scores candidates from its last ``last_n`` distinct catalogue items (most recent
first, weights ``recency_decay ** k`` for the k-th most recent, k = 0, 1, ...):

    score(j | history) = sum_k recency_decay ** k * T[i_k, j]

Only items that follow something in the recent history score above zero; like ItemCF the rest
of a list is filled with popular items (``source="popular"``), and empty histories / unknown
users get popular items. Which items: the history's own items when it has any (oldest
first, as `History` holds them); a known user's training sequence when the history is just
a user id. Seen items (training row + history) are excluded as everywhere else. Everything
is sparse: T has at most ``window`` x interactions non-zeros.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, ValidationError

from ..config import BaseConfig, format_validation_error
from ..data.dataset import Dataset
from ..errors import ConfigError
from ..types import History
from ._fitted import _BLOCK_CELLS, CandidateBatch, FittedIndex, check_n

log = logging.getLogger(__name__)


class TransitionsConfig(BaseConfig):
    """Transition window and decays (see `reranker.retrieval.transitions`)."""

    type: Literal["transitions"] = "transitions"
    window: int = Field(3, ge=1, description="count j when it comes within this many positions after i")
    decay: float = Field(0.5, gt=0.0, le=1.0, description="weight decay ** (gap - 1) of a transition")
    beta: float = Field(
        1.0, ge=0.0, le=1.0,
        description="normalise row i by its total weight ** beta (1: row-stochastic, 0: raw counts)",
    )
    last_n: int = Field(5, ge=1, description="score from this many most recent history items")
    recency_decay: float = Field(
        0.7, gt=0.0, le=1.0, description="weight recency_decay ** k of the k-th most recent item (k = 0 newest)"
    )
    fill_popular: bool = Field(True, description="fill short candidate lists with popular items")


def _make_config(config: TransitionsConfig | None, kwargs: dict) -> TransitionsConfig:
    if config is not None:
        if kwargs:
            raise ConfigError("pass either a config object or keyword options, not both")
        if not isinstance(config, TransitionsConfig):
            raise ConfigError(f"expected TransitionsConfig, got {type(config).__name__}")
        return config
    try:
        return TransitionsConfig(**kwargs)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, "TransitionsConfig")) from None


class Transitions(FittedIndex):
    """Next-item transition retriever and scorer (see the module docstring).

    >>> m = Transitions(window=3, decay=0.5).fit(dataset)
    >>> m.retrieve(History(items=["1", "50", "181"]), n=20)

    After `fit`: ``T_`` (items x items CSR, row = the earlier item), ``tails_`` (users x items
    CSR: the recency weights of each training user's last ``last_n`` items).
    """

    source = "transitions"

    def __init__(self, config: TransitionsConfig | None = None, **kwargs: object) -> None:
        self.config = _make_config(config, kwargs)
        self.fill_popular = self.config.fill_popular

    # ------------------------------------------------------------------ fit
    def fit(self, data: Dataset) -> Self:
        """Count decayed transitions over the chronologically ordered training sequences."""
        cfg = self.config
        self.fit_index(data, "implicit")
        df = data.sorted_interactions()
        users = df["user_id"].astype(str).to_numpy()
        items = self.item_index.get_indexer(pd.Index(df["item_id"].astype(str)))
        uidx = self.user_index.get_indexer(pd.Index(users))
        m = len(self.item_ids)
        # the sorted frame holds each user's interactions contiguously, so positions p and p + gap
        # belong to the same user exactly when their user codes agree
        rows_, cols_, vals_ = [], [], []
        for gap in range(1, cfg.window + 1):
            if gap >= len(items):
                break
            a, b = items[:-gap], items[gap:]
            ok = (uidx[:-gap] == uidx[gap:]) & (a != b) & (a >= 0) & (b >= 0)
            rows_.append(a[ok])
            cols_.append(b[ok])
            vals_.append(np.full(int(ok.sum()), cfg.decay ** (gap - 1)))
        C = sp.csr_matrix(
            (np.concatenate(vals_), (np.concatenate(rows_), np.concatenate(cols_))), shape=(m, m)
        ) if rows_ else sp.csr_matrix((m, m))
        C.sum_duplicates()
        tot = np.asarray(C.sum(axis=1)).ravel()
        with np.errstate(divide="ignore"):
            scale = np.where(tot > 0, tot ** -cfg.beta, 0.0)
        T = sp.diags(scale) @ C
        T = T.tocsr()
        T.sort_indices()
        self.T_ = T
        self.tails_ = self._tails(uidx, items)
        log.info("Transitions fitted: %d items, %d transitions (window=%d)", m, T.nnz, cfg.window)
        return self

    def _tails(self, uidx: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
        """Recency weights of each training user's last `last_n` distinct items."""
        return self._recent(uidx, items, len(self.user_ids))

    def _recent(self, rows: np.ndarray, items: np.ndarray, n_rows: int) -> sp.csr_matrix:
        """(n_rows x items) recency weights from (row, item) pairs given oldest first within
        each row: the last `last_n` distinct known items of a row, the most recent weighted 1,
        the next `recency_decay`, ... (vectorised: no loop over rows)."""
        df = pd.DataFrame({"r": rows, "i": items})[::-1]  # newest first within each row
        df = df[(df["i"] >= 0) & (df["r"] >= 0)].drop_duplicates(["r", "i"], keep="first")
        k = df.groupby("r", sort=False).cumcount().to_numpy()
        keep = k < self.config.last_n
        w = self.config.recency_decay ** k[keep].astype(np.float64)
        out = sp.csr_matrix((w, (df["r"].to_numpy()[keep], df["i"].to_numpy()[keep])),
                            shape=(n_rows, len(self.item_ids)))
        out.sort_indices()
        return out

    # ------------------------------------------------------------------ queries
    def queries(self, histories: Sequence[History], uidx: np.ndarray) -> sp.csr_matrix:
        """The recency-weighted query rows (q x items) of histories: their own items, or the
        known user's training tail when the history has no item."""
        q = len(histories)
        lens = np.fromiter((len(h.items) for h in histories), dtype=np.int64, count=q)
        all_items = [i for h in histories for i in h.items]
        cols = self.item_index.get_indexer(pd.Index(all_items)) if all_items else np.zeros(0, np.int64)
        Q = self._recent(np.repeat(np.arange(q), lens), cols, q)
        tail = np.flatnonzero((lens == 0) & (uidx >= 0))
        if len(tail):
            sel = sp.csr_matrix((np.ones(len(tail)), (tail, uidx[tail])), shape=(q, len(self.user_ids)))
            Q = (Q + sel @ self.tails_).tocsr()
            Q.sort_indices()
        return Q

    def cf_scores(self, P: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray:
        """Scores from profile rows alone (`retrieve_users`): a known user's training tail; an
        ad-hoc profile has no order, so its items weigh equally."""
        q = P.shape[0]
        known = uidx >= 0
        sel = sp.csr_matrix(
            (np.ones(int(known.sum())), (np.flatnonzero(known), uidx[known])), shape=(q, len(self.user_ids))
        )
        Q = sel @ self.tails_
        unknown = (sp.diags((~known).astype(np.float64)) @ P).tocsr()
        unknown.eliminate_zeros()
        unknown.data[:] = 1.0
        return np.asarray(((Q + unknown) @ self.T_).toarray())

    # ------------------------------------------------------------------ public retrieval
    def retrieve_arrays(
        self, histories: Sequence[History], n: int, exclude_seen: bool = True
    ) -> CandidateBatch:
        """Top-n per history from its ordered items (see the module docstring)."""
        self._check_fitted()
        check_n(n)
        hs = list(histories)
        for h in hs:
            if not isinstance(h, History):
                raise TypeError(f"expected History objects, got {type(h).__name__}")
        if not hs:
            return CandidateBatch.empty()
        P, uidx = self.profiles(hs)
        S = self.queries(hs, uidx) @ self.T_
        q, m = P.shape
        step = max(1, _BLOCK_CELLS // max(m, 1))
        parts = [
            self._top_n(np.asarray(S[lo: lo + step].toarray()), P[lo: lo + step], int(n), exclude_seen)
            for lo in range(0, q, step)
        ]
        return parts[0] if len(parts) == 1 else CandidateBatch.concat(parts)

    def score_items(self, histories: Sequence[History], item_ids: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """The transition score of given items for each history (0: never follows its recent
        items; items not in the catalog score 0)."""
        self._check_fitted()
        if len(histories) != len(item_ids):
            raise ValueError(f"{len(histories)} histories but {len(item_ids)} item lists")
        if not histories:
            return []
        hs = list(histories)
        _, uidx = self.profiles(hs)
        S = (self.queries(hs, uidx) @ self.T_).tocsr()
        out = []
        for row, ids in enumerate(item_ids):
            idx = self.item_index.get_indexer(pd.Index([str(i) for i in ids]))
            vals = np.asarray(S[row].toarray()).ravel()
            out.append(np.where(idx >= 0, vals[np.maximum(idx, 0)], 0.0).astype(np.float64))
        return out

    def transition(self, a: str, b: str) -> float:
        """T[a, b]: the normalised weight of `b` following `a` (0 for unknown ids)."""
        self._check_fitted()
        ia, ib = self.item_idx(a), self.item_idx(b)
        if ia < 0 or ib < 0:
            return 0.0
        return float(self.T_[ia, ib])


__all__ = ["Transitions", "TransitionsConfig"]
