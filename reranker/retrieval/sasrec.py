"""SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation") in torch.

A small causal transformer over a user's item sequence: item embedding (scaled by
sqrt(hidden)) + a learned positional embedding, ``blocks`` self-attention blocks (pre-norm
attention with a residual, then a point-wise feed-forward with a residual, as in the
reference implementation), a final layer norm. The hidden state at position t predicts the
item at t + 1; the score of item j after a sequence is ``dot(h_last, E[j])`` with the same
item embedding table E as the input (shared weights).

Training follows the paper: each training user contributes their last ``max_len + 1`` items
in the dataset's chronological order (`Dataset.sorted_interactions`: the order the
leave-one-out split and the histories use, ties in time included); every position gets its
next item as the positive and one negative sampled uniformly from the catalogue items the
user never interacted with; binary cross-entropy on both logits; Adam (betas 0.9 / 0.98).
Sequences are left-padded; positions count from the first item of the window (so a k-item
query sees exactly what the first k positions of a training window saw); padding never
enters attention.

Queries: a history's own catalogue items (oldest first, unknown ids skipped, the last
``max_len``); a known user's training sequence when the history has no catalogue item. The
whole catalogue is ranked by the score (`DenseScoresMixin`); seen items (training row +
history) are excluded as everywhere else; an empty query (no history, unknown user, only
unknown items) gets popular items. `score` / `score_items` give the raw dot products
(0 for items not in the catalogue and for empty queries).

Determinism: ``seed`` seeds the weights, dropout (torch, inside a forked RNG, so the
caller's global torch state is untouched) and the negatives (numpy); with ``threads=1`` on
the CPU two fits give identical weights. torch is imported only inside `fit` and scoring
(the network and training loop are in `sasrec_net`).

Measured on ml-100k (chronological leave-one-out, full catalogue, seen items excluded, the
last 50 items as input; eval/bench_sasrec.py, eval/results/sasrec.md): the defaults (hidden 64,
100 epochs, chosen on the validation stage, where hidden 64 plateaus from about 90 epochs) fit
in 2.5-3.5 minutes on one CPU thread and reach test NDCG@10 0.087, Recall@100 0.635.

Persistence: the trained weights are not saved (pipelines refit on load); ``state_dict()``
of ``net_`` and the fitted id maps are all a future save/load needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, ValidationError

from ..config import BaseConfig, format_validation_error
from ..data.dataset import Dataset
from ..errors import ConfigError, ModelError
from ..types import History
from ._dense import DenseScoresMixin
from ._fitted import _BLOCK_CELLS, CandidateBatch, FittedIndex, check_n
from .sasrec_net import _build_net, _device, _torch_threads, _windows, negatives, train_net

log = logging.getLogger(__name__)


class SASRecConfig(BaseConfig):
    """SASRec architecture and training options (see `reranker.retrieval.sasrec`)."""

    type: Literal["sasrec"] = "sasrec"
    hidden: int = Field(64, ge=1, description="embedding / hidden size (divisible by heads)")
    blocks: int = Field(2, ge=1, description="self-attention blocks")
    heads: int = Field(1, ge=1, description="attention heads per block")
    max_len: int = Field(50, ge=1, description="sequence window: the last max_len items of a history")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout rate (embeddings, attention, feed-forward)")
    epochs: int = Field(
        100, ge=1,
        description="training epochs (one window per training user each; ml-100k plateaus near 100)",
    )
    batch_size: int = Field(128, ge=1, description="sequences per Adam step")
    lr: float = Field(1e-3, gt=0.0, description="Adam learning rate")
    l2: float = Field(0.0, ge=0.0, description="L2 weight decay on the item embeddings")
    seed: int = Field(0, description="seeds the weights, dropout and negative sampling")
    threads: int = Field(
        1, ge=0, description="torch CPU threads while fitting / scoring (0: torch's default); 1 is deterministic"
    )
    device: str = Field(
        "cpu", pattern=r"^(cpu|cuda(:[0-9]+)?|mps)$", description="torch device: cpu, cuda, cuda:N or mps"
    )


def _make_config(config: SASRecConfig | None, kwargs: dict) -> SASRecConfig:
    if config is not None:
        if kwargs:
            raise ConfigError("pass either a config object or keyword options, not both")
        if not isinstance(config, SASRecConfig):
            raise ConfigError(f"expected SASRecConfig, got {type(config).__name__}")
        return config
    try:
        cfg = SASRecConfig(**kwargs)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, "SASRecConfig")) from None
    return cfg


def _check_heads(cfg: SASRecConfig) -> None:
    if cfg.hidden % cfg.heads:
        raise ConfigError(f"SASRecConfig: hidden ({cfg.hidden}) must be divisible by heads ({cfg.heads})")


class SASRec(DenseScoresMixin, FittedIndex):
    """SASRec retriever and scorer (see the module docstring).

    >>> m = SASRec(epochs=100).fit(dataset)
    >>> m.retrieve(History(items=["1", "50", "181"]), n=20)

    After `fit`: ``net_`` (the torch module, eval mode), ``user_seqs_`` (each training user's
    last ``max_len`` items, 1-based catalogue indices, left-padded), ``losses_`` (mean training
    loss per epoch), ``fit_seconds_``.
    """

    source = "sasrec"

    def __init__(self, config: SASRecConfig | None = None, **kwargs: object) -> None:
        self.config = _make_config(config, kwargs)
        _check_heads(self.config)
        self.losses_: list[float] = []

    # ------------------------------------------------------------------ fit
    def fit(self, data: Dataset, *, on_epoch: Callable[[int, SASRec], None] | None = None) -> Self:
        """Train on each training user's chronological sequence (see the module docstring).

        `on_epoch(epoch, self)`, when given, is called after every epoch (1-based) with the
        model usable for scoring (eval mode), e.g. to follow a validation metric over epochs;
        it does not change the training (no random state is consumed by scoring)."""
        import torch

        cfg = self.config
        t0 = time.perf_counter()
        self.fit_index(data, "implicit")
        df = data.sorted_interactions()
        items = self.item_index.get_indexer(pd.Index(df["item_id"].astype(str))).astype(np.int64) + 1
        uidx = self.user_index.get_indexer(pd.Index(df["user_id"].astype(str)))
        # sorted_interactions keeps each user's rows contiguous; user_index is first-seen order
        order = np.argsort(uidx, kind="stable")
        uidx, items = uidx[order], items[order]
        bounds = np.searchsorted(uidx, np.arange(len(self.user_ids) + 1))
        seqs = [items[bounds[u]: bounds[u + 1]] for u in range(len(self.user_ids))]
        self.user_seqs_ = _windows(seqs, cfg.max_len)
        train = _windows([s for s in seqs if len(s) >= 2], cfg.max_len + 1)
        train_users = np.array([u for u, s in enumerate(seqs) if len(s) >= 2], dtype=np.int64)
        if len(train) == 0:
            raise ModelError("SASRec: no training user has two or more interactions")
        self._device = _device(cfg.device)
        m = len(self.item_ids)
        try:
            with _torch_threads(cfg.threads), torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                net = _build_net(m, cfg).to(self._device)
                self.losses_ = self._train(net, train, train_users, m, on_epoch)
        except BaseException:
            self._fitted = False
            raise
        net.eval()
        self.net_ = net
        self.fit_seconds_ = time.perf_counter() - t0
        log.info("SASRec fitted: %d users, %d items, %d epochs, final loss %.4f, %.1f s",
                 len(train), m, cfg.epochs, self.losses_[-1], self.fit_seconds_)
        return self

    def _train(self, net: Any, train: np.ndarray, train_users: np.ndarray, m: int,
               on_epoch: Callable[[int, SASRec], None] | None) -> list[float]:
        return train_net(self, net, train, train_users, m, on_epoch)

    _negatives = staticmethod(negatives)

    # ------------------------------------------------------------------ queries
    def _check_histories(self, histories: Sequence[History]) -> list[History]:
        hs = list(histories)
        for h in hs:
            if not isinstance(h, History):
                raise TypeError(f"expected History objects, got {type(h).__name__}")
        return hs

    def query_sequences(self, histories: Sequence[History], uidx: np.ndarray) -> np.ndarray:
        """(q, max_len) left-padded 1-based item indices: each history's own catalogue items
        (unknown ids skipped), or a known user's training window when it has none."""
        q = len(histories)
        lens = np.fromiter((len(h.items) for h in histories), dtype=np.int64, count=q)
        all_items = [i for h in histories for i in h.items]
        cols = (self.item_index.get_indexer(pd.Index(all_items)) + 1) if all_items else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum(lens)])
        seqs = []
        for r in range(q):
            s = cols[starts[r]: starts[r + 1]]
            seqs.append(s[s > 0])
        out = _windows(seqs, self.config.max_len)
        tail = np.flatnonzero(~(out > 0).any(axis=1) & (uidx >= 0))
        if len(tail):
            out[tail] = self.user_seqs_[uidx[tail]]
        return out

    def hidden_states(self, seqs: np.ndarray) -> np.ndarray:
        """(q, hidden) final hidden state of each query window (zeros for an empty one)."""
        import torch

        out = np.zeros((len(seqs), self.config.hidden), dtype=np.float32)
        nonempty = np.flatnonzero((seqs > 0).any(axis=1))
        if not len(nonempty):
            return out
        with _torch_threads(self.config.threads), torch.no_grad():
            for lo in range(0, len(nonempty), 1024):
                rows = nonempty[lo: lo + 1024]
                x = torch.from_numpy(np.ascontiguousarray(seqs[rows])).to(self._device)
                out[rows] = self.net_(x)[:, -1, :].float().cpu().numpy()
        return out

    def item_embeddings(self) -> np.ndarray:
        """(items, hidden) item embeddings in catalogue order (float32)."""
        self._check_fitted()
        return self.net_.item_emb.weight.detach()[1:].float().cpu().numpy()

    def _scores(self, seqs: np.ndarray) -> np.ndarray:
        H = self.hidden_states(seqs)
        return (H @ self.item_embeddings().T).astype(np.float64)

    # ------------------------------------------------------------------ FittedIndex hook
    def cf_scores(self, P: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray:
        """Scores from profile rows alone (`retrieve_users`): a known user's training window;
        an ad-hoc profile has no order, so its items enter in catalogue order."""
        seqs = np.where((uidx >= 0)[:, None], self.user_seqs_[np.maximum(uidx, 0)], 0)
        unknown = np.flatnonzero(uidx < 0)
        if len(unknown):
            prof = [P.indices[P.indptr[r]: P.indptr[r + 1]] + 1 for r in unknown]
            seqs[unknown] = _windows(prof, self.config.max_len)
        return self._scores(seqs)

    # ------------------------------------------------------------------ public retrieval
    def retrieve_arrays(
        self, histories: Sequence[History], n: int, exclude_seen: bool = True
    ) -> CandidateBatch:
        """Top-n of the whole catalogue per history, by the model's next-item score."""
        self._check_fitted()
        check_n(n)
        hs = self._check_histories(histories)
        if not hs:
            return CandidateBatch.empty()
        P, uidx = self.profiles(hs)
        seqs = self.query_sequences(hs, uidx)
        q, m = P.shape
        step = max(1, _BLOCK_CELLS // max(m, 1))
        parts = [
            self._top_n(self._scores(seqs[lo: lo + step]), P[lo: lo + step], int(n), exclude_seen)
            for lo in range(0, q, step)
        ]
        return parts[0] if len(parts) == 1 else CandidateBatch.concat(parts)

    def score_items(self, histories: Sequence[History], item_ids: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """``dot(final hidden state, item embedding)`` of given items for each history (0 for
        items not in the catalogue and for histories without a known item or user)."""
        self._check_fitted()
        if len(histories) != len(item_ids):
            raise ValueError(f"{len(histories)} histories but {len(item_ids)} item lists")
        hs = self._check_histories(histories)
        if not hs:
            return []
        _, uidx = self.profiles(hs)
        H = self.hidden_states(self.query_sequences(hs, uidx))
        E = self.item_embeddings()
        out = []
        for row, ids in enumerate(item_ids):
            idx = self.item_index.get_indexer(pd.Index([str(i) for i in ids]))
            vals = E[np.maximum(idx, 0)] @ H[row]
            out.append(np.where(idx >= 0, vals, 0.0).astype(np.float64))
        return out


__all__ = ["SASRec", "SASRecConfig"]
