"""Rankings as a padded id matrix and the per-user hit matrix every relevance metric reads.

The representation (``rankings``, ``relevant``) and the conventions are described in
:mod:`reranker.evaluation.metrics`, which re-exports everything public here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..types import Ranking, item_id_of

Rankings = Sequence[Sequence[Any]] | np.ndarray
Relevant = Sequence[Collection[Any] | str]

__all__ = ["Rankings", "Relevant", "HitMatrix", "as_id_matrix", "hits_matrix"]


# --------------------------------------------------------------------------- representation
def as_id_matrix(rankings: Rankings, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad rankings to a ``(n_users, k)`` object array of str ids plus a validity mask.

    ``k=None`` uses the longest list. Entries past the end of a list are ``None`` with mask False.
    """
    if k is not None and k < 1:
        raise ConfigError(f"k: the cut-off must be >= 1, got {k}")
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
            (str(item_id_of(x)) for x in chain.from_iterable(r[:kk] for r in lists)),
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
    return list(row.items) if isinstance(row, Ranking) else list(row)


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
