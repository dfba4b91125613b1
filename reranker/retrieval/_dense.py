"""Top-n selection for models that score the whole catalogue (EASE, ALS, BPR).

`FittedIndex._top_n` treats only positive scores as model candidates and fills the rest with
popular items; that suits neighbourhood models, whose zero means "no evidence". A
full-catalogue model scores every item (negative scores included), so `DenseScoresMixin`
ranks every item of a row by its raw score instead. A row without any model signal (an empty
profile: no history, an unknown user, only unknown items; or a row whose scores are all zero)
gets the popular list, marked ``source="popular"`` and scored ``pop_norm`` like every other
retriever's cold-start answer. Ties: lower catalog index first.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._fitted import CandidateBatch, FittedIndex


def top_n_keys(key: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic top-n of every row of `key` (higher first, ties by lower column):
    flat ``(rows, cols, values)`` sorted by row then rank, ``-inf`` entries dropped."""
    q, m = key.shape
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
    return rows, cols, vals


class DenseScoresMixin(FittedIndex):
    """`_top_n` for full-catalogue scores (see the module docstring). Put it before
    `FittedIndex` in the bases of a model whose `cf_scores` scores every item."""

    def _top_n(
        self, scores: np.ndarray | None, P: sp.csr_matrix, n: int, exclude_seen: bool
    ) -> CandidateBatch:
        q, m = P.shape
        if scores is None:
            model_rows = np.zeros(q, dtype=bool)
        else:
            model_rows = (np.diff(P.indptr) > 0) & np.any(scores != 0, axis=1)
        key = np.empty((q, m), dtype=np.float64)
        if scores is not None and model_rows.any():
            key[model_rows] = scores[model_rows]
        key[~model_rows] = self.pop_norm[None, :]
        if exclude_seen:
            r, c = P.nonzero()
            key[r, c] = -np.inf
        rows, cols, vals = top_n_keys(key, n)
        cf = model_rows[rows]
        bounds = np.searchsorted(rows, np.arange(q + 1))
        src = np.where(cf, self.source, "popular")
        return CandidateBatch(self.item_ids[cols], vals.astype(np.float64), src, bounds)


__all__ = ["DenseScoresMixin", "top_n_keys"]
