"""The arithmetic of score fusion: per-list normalisation, the weighted sum, and the grid search
of fusion weights on validation lists (`fit_weights`). `reranker.ranking.fusion` builds the
`FusionRanker` on top and re-exports every name defined here.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)

NormalizeMethod = Literal["zscore", "minmax", "rank", "none"]
NORMALIZE_METHODS: tuple[str, ...] = ("zscore", "minmax", "rank", "none")


# ---------------------------------------------------------------------------- normalisation
def normalize(scores: Sequence[float] | np.ndarray, method: NormalizeMethod = "zscore") -> np.ndarray:
    """Normalise one list of scores.

    - ``zscore``: (x - mean) / std (population std);
    - ``minmax``: (x - min) / (max - min), in [0, 1];
    - ``rank``: average rank scaled to [0, 1] (highest score -> 1, lowest -> 0, ties share);
    - ``none``: unchanged.

    NaN-safe: non-finite values are ignored when computing the statistics and come out as 0.0
    (the neutral value for z-score, the bottom for min-max and rank). A constant list (spread
    within float noise of its magnitude), a one-element list and an empty list give zeros.
    """
    x = np.asarray(scores, dtype=np.float64).reshape(-1)
    out = np.zeros_like(x)
    ok = np.isfinite(x)
    if method not in NORMALIZE_METHODS:
        raise ConfigError(f"normalize: unknown method {method!r}; use one of {NORMALIZE_METHODS}")
    if method == "none":
        out[ok] = x[ok]
        return out
    v = x[ok]
    if v.size < 2:
        return out
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        return out
    if method == "zscore":
        std = float(v.std())
        out[ok] = (v - v.mean()) / std
    elif method == "minmax":
        out[ok] = (v - lo) / (hi - lo)
    else:  # rank
        out[ok] = (_average_ranks(v) - 1.0) / (v.size - 1)
    return out


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """1-based ranks, ascending, ties get their average rank (like scipy's rankdata)."""
    order = np.argsort(v, kind="stable")
    sv = v[order]
    new_group = np.concatenate([[True], sv[1:] != sv[:-1]])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], sv.size)
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty_like(v)
    ranks[order] = avg[group]
    return ranks


def fuse(
    signals: Mapping[str, Sequence[float] | np.ndarray],
    weights: Mapping[str, float],
    method: NormalizeMethod = "zscore",
) -> np.ndarray:
    """sum_s weights[s] * normalize(signals[s]) over the signals with a non-zero weight."""
    used = [s for s, w in weights.items() if w != 0]
    missing = [s for s in used if s not in signals]
    if missing:
        raise ConfigError(
            f"fusion: no signal named {missing[0]!r} (weights.{missing[0]}); "
            f"available: {sorted(signals)}"
        )
    n = None
    total: np.ndarray | None = None
    for s in used:
        arr = np.asarray(signals[s], dtype=np.float64).reshape(-1)
        if n is None:
            n = arr.size
        elif arr.size != n:
            raise ValueError(f"fusion: signal {s!r} has {arr.size} scores, expected {n}")
        part = float(weights[s]) * normalize(arr, method)
        total = part if total is None else total + part
    if total is None:
        sizes = {np.asarray(v).size for v in signals.values()}
        return np.zeros(sizes.pop() if len(sizes) == 1 else 0)
    return total


# ---------------------------------------------------------------------------- weight fitting
_METRIC = re.compile(r"^(ndcg|recall|hr|mrr)@(\d+)$")


@dataclass
class WeightSearch:
    """Result of `fit_weights`: the best weights, their metric and every tried point."""

    weights: dict[str, float]
    score: float
    metric: str
    table: list[dict[str, float]] = field(default_factory=list)

    def to_dataframe(self):  # -> pandas.DataFrame
        import pandas as pd

        return pd.DataFrame(self.table)


def simplex_grid(n_signals: int, step: float = 0.1) -> np.ndarray:
    """All weight vectors on the simplex with coordinates multiple of `step` (rows sum to 1).

    Ordered from the first signal's vertex onwards (lexicographically descending).
    """
    if n_signals < 1:
        raise ValueError("simplex_grid: need at least one signal")
    if not (0 < step <= 1):
        raise ConfigError(f"grid_step: must be in (0, 1], got {step}")
    m = round(1.0 / step)
    if abs(m * step - 1.0) > 1e-9:
        raise ConfigError(f"grid_step: must divide 1 (e.g. 0.1, 0.05, 0.25), got {step}")
    n_points = math.comb(m + n_signals - 1, n_signals - 1)
    if n_points > 200_000:
        raise ConfigError(f"grid_step: a grid of {n_points} points is too large; use a coarser grid_step")
    rows = [
        c
        for c in itertools.product(range(m, -1, -1), repeat=n_signals - 1)
        if sum(c) <= m
    ]
    grid = np.array([[*c, m - sum(c)] for c in rows], dtype=np.float64) / m
    return grid


def _metric_per_list(ranks: np.ndarray, rel: np.ndarray, kind: str, k: int) -> np.ndarray:
    """ranks (lists, L, P) 0-based rank of each slot; rel (lists, L) bool -> (lists, P)."""
    hit = (ranks < k) & rel[:, :, None]
    n_rel = rel.sum(axis=1)
    if kind == "ndcg":
        gains = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).sum(axis=1)
        ideal_n = np.minimum(n_rel, k)
        disc = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
        idcg = disc[ideal_n]
        return np.where(idcg[:, None] > 0, gains / np.where(idcg > 0, idcg, 1.0)[:, None], 0.0)
    if kind == "recall":
        return np.where(n_rel[:, None] > 0, hit.sum(axis=1) / np.maximum(n_rel, 1)[:, None], 0.0)
    if kind == "hr":
        return hit.any(axis=1).astype(np.float64)
    # mrr: reciprocal rank of the first relevant item within k
    rr = np.where(hit, 1.0 / (ranks + 1.0), 0.0)
    return rr.max(axis=1)


def fit_weights(
    lists: Sequence[Mapping[str, Sequence[float] | np.ndarray]],
    targets: Sequence[int | Sequence[int]],
    grid_step: float = 0.1,
    metric: str = "ndcg@10",
    normalize: NormalizeMethod = "zscore",
    signals: Sequence[str] | None = None,
) -> WeightSearch:
    """Grid-search fusion weights on the simplex over the signals, on validation lists.

    ``lists[j]`` maps each signal name to its scores for list j's candidates; ``targets[j]`` is
    the index (or indices) of the relevant candidate(s) in that list (empty: none among them;
    such lists count as 0, like users whose target the retriever missed). Metrics: ``ndcg@k``,
    ``recall@k``, ``hr@k``, ``mrr@k``; ranks break score ties by list order, as `Ranking` does.
    Ties between grid points go to the one with the fewest non-zero weights (cheapest to run),
    then to the earlier point of `simplex_grid`.
    """
    m = _METRIC.match(metric.strip().lower())
    if not m:
        raise ConfigError(f"metric: must look like ndcg@10, recall@20, hr@10 or mrr@10, got {metric!r}")
    kind, k = m.group(1), int(m.group(2))
    if len(lists) != len(targets):
        raise ValueError(f"fit_weights: {len(lists)} lists but {len(targets)} targets")
    if not lists:
        raise ValueError("fit_weights: no validation lists")
    names = list(signals) if signals is not None else list(lists[0])
    if not names:
        raise ValueError("fit_weights: lists have no signals")
    lengths = np.array([len(np.asarray(lst[names[0]]).reshape(-1)) for lst in lists])
    n, L, S = len(lists), int(lengths.max()), len(names)
    X = np.zeros((n, L, S))
    rel = np.zeros((n, L), dtype=bool)
    valid = np.arange(L)[None, :] < lengths[:, None]
    for j, lst in enumerate(lists):
        for s, name in enumerate(names):
            if name not in lst:
                raise ValueError(f"fit_weights: list {j} has no signal {name!r}")
            arr = np.asarray(lst[name], dtype=np.float64).reshape(-1)
            if arr.size != lengths[j]:
                raise ValueError(
                    f"fit_weights: list {j}: signal {name!r} has {arr.size} scores, "
                    f"expected {lengths[j]}"
                )
            X[j, : arr.size, s] = _norm(arr, normalize)
        t = targets[j]
        # np.isscalar also accepts numpy integers; anything else is a sequence of indices
        idx = [int(cast(int, t))] if np.isscalar(t) else [int(x) for x in cast(Sequence[int], t)]
        for i in idx:
            if not 0 <= i < lengths[j]:
                raise ValueError(f"fit_weights: list {j}: target index {i} out of range")
            rel[j, i] = True
    grid = simplex_grid(S, grid_step)  # (P, S)
    fused = X @ grid.T  # (n, L, P)
    fused = np.where(valid[:, :, None], fused, -np.inf)
    # 0-based rank of slot i: #greater + #equal before it (stable, like Ranking.from_scores)
    ranks = np.empty(fused.shape, dtype=np.int64)
    for i in range(L):
        col = fused[:, i : i + 1, :]
        ranks[:, i, :] = (fused > col).sum(axis=1) + (fused[:, :i, :] == col).sum(axis=1)
    per_list = _metric_per_list(ranks, rel & valid, kind, k)  # (n, P)
    values = per_list.mean(axis=0)
    nnz = (grid > 0).sum(axis=1)
    best_val = values.max()
    tied = np.flatnonzero(values >= best_val - 1e-12)
    best = int(tied[np.lexsort((tied, nnz[tied]))][0])
    table = [
        {**{nm: float(round(grid[p, s], 10)) for s, nm in enumerate(names)}, metric: float(values[p])}
        for p in range(grid.shape[0])
    ]
    weights = {nm: float(round(grid[best, s], 10)) for s, nm in enumerate(names)}
    log.info("fit_weights: best %s=%.4f at %s over %d points", metric, best_val, weights, len(grid))
    return WeightSearch(weights=weights, score=float(values[best]), metric=metric, table=table)


def _norm(arr: np.ndarray, method: NormalizeMethod) -> np.ndarray:
    return normalize(arr, method)


__all__ = [
    "NORMALIZE_METHODS",
    "NormalizeMethod",
    "WeightSearch",
    "fit_weights",
    "fuse",
    "normalize",
    "simplex_grid",
]
