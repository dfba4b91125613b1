"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

A linear item-item model with a closed form: with X the users x items feedback matrix
(binary by default) and G = X^T X,

    P = (G + l2 * I)^-1,    B = I - P / diag(P)   (column j divided by P[j, j]), diag(B) = 0,

and a user's score of item j is ``sum_i x_i B[i, j]`` over the profile x (training row merged
with the history, like ItemCF). Every catalogue item gets a score (negative ones included), so
`EASE` ranks the whole catalogue by it (`DenseScoresMixin`); empty histories and unknown users
get popular items, like every retriever here.

Memory: B is a dense float32 items x items matrix. Only items with at least one training
interaction enter it (the others have zero weights); computing it holds about three such
matrices (G, its inverse in place, B), i.e. ``n_items**2 * 4 bytes * 3``. Above ``max_items``
the fit refuses with a ConfigError instead of exhausting the machine.

The ridge strength ``l2`` is the one hyper-parameter. `tune_ease` picks it on a leave-one-out
split's validation targets; ``l2_grid`` in the config does the same inside `fit`, holding out
the last interaction of each user of the fit data.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field, ValidationError, field_validator

from ..config import BaseConfig, format_validation_error
from ..data.dataset import Dataset
from ..errors import ConfigError, ModelError
from ._dense import DenseScoresMixin
from ._fitted import FittedIndex

if TYPE_CHECKING:
    from ..data.splits import LeaveOneOutSplit
    from ..types import History

log = logging.getLogger(__name__)

DEFAULT_L2_GRID: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 3000.0)
"""The grid `tune_ease` searches when none is given (wide: ml-100k's best is in the hundreds,
larger catalogues often want thousands)."""

_METRIC = re.compile(r"^(ndcg|recall|hr|mrr)@([1-9][0-9]*)$")


class EASEConfig(BaseConfig):
    """EASE options: the ridge strength ``l2`` (or a grid to tune it on), the feedback used for
    X and the size guard."""

    type: Literal["ease"] = "ease"
    l2: float = Field(100.0, gt=0.0, description="ridge strength lambda of (X^T X + lambda I)^-1")
    l2_grid: list[Annotated[float, Field(gt=0.0)]] | None = Field(
        None, min_length=1,
        description="tune l2 over these values at fit time (each user's last fit interaction held "
        "out; full-catalogue ranking); None: use l2 as given",
    )
    tune_metric: str = Field("ndcg@10", description="metric l2_grid maximises: ndcg@K, recall@K, hr@K or mrr@K")
    feedback: Literal["auto", "explicit", "implicit"] = Field(
        "implicit", description="X values: implicit = 1 per interacted item (default); explicit = "
        "ratings; auto: explicit when the fit data has ratings",
    )
    max_items: int = Field(
        20_000, ge=1,
        description="refuse to fit above this many items (dense items x items float32 matrices)",
    )

    @field_validator("tune_metric")
    @classmethod
    def _check_metric(cls, v: str) -> str:
        return _check_metric(v)


def _check_metric(v: str) -> str:
    if not isinstance(v, str) or not _METRIC.match(v):
        raise ValueError(f"must look like ndcg@10, recall@20, hr@10 or mrr@10; got {v!r}")
    return v


def _make_config(config: EASEConfig | None, kwargs: dict) -> EASEConfig:
    if config is not None:
        if kwargs:
            raise ConfigError("pass either a config object or keyword options, not both")
        if not isinstance(config, EASEConfig):
            raise ConfigError(f"expected EASEConfig, got {type(config).__name__}")
        return config
    try:
        return EASEConfig(**kwargs)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, "EASEConfig")) from None


def memory_bytes(n_items: int) -> int:
    """Peak memory EASE needs for `n_items` items: three dense float32 items x items matrices."""
    return int(n_items) ** 2 * 4 * 3


def _human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"  # pragma: no cover


@dataclass
class EASETuning:
    """What `tune_ease` found: the chosen ``l2``, the metric per grid value (grid order), and
    the seconds each fit + evaluation took."""

    l2: float
    metric: str
    scores: dict[float, float] = field(default_factory=dict)
    seconds: dict[float, float] = field(default_factory=dict)
    users: int = 0


class EASE(DenseScoresMixin, FittedIndex):
    """EASE retriever and scorer (see the module docstring).

    >>> m = EASE(l2=200.0).fit(dataset)
    >>> m.retrieve(History(items=["1", "50"]), n=20)

    After `fit`: ``l2_`` (the value used; the tuned one with ``l2_grid``), ``tuning_`` (an
    `EASETuning` or None), ``B_`` (float32 weights over the active items), ``active_`` (their
    catalog indices).
    """

    source = "ease"

    def __init__(self, config: EASEConfig | None = None, **kwargs: object) -> None:
        self.config = _make_config(config, kwargs)
        self.tuning_: EASETuning | None = None

    # ------------------------------------------------------------------ fit
    def fit(self, data: Dataset) -> Self:
        """Tune ``l2`` when ``l2_grid`` is set, then compute B on all of `data`."""
        cfg = self.config
        l2 = cfg.l2
        self.tuning_ = None
        if cfg.l2_grid:
            self.tuning_ = _tune_on_fit_data(data, cfg)
            l2 = self.tuning_.l2
        self._fit_index(data)
        self._set_weights(self._gram(), l2)
        return self

    def _fit_index(self, data: Dataset) -> None:
        feedback = self.config.feedback
        if feedback == "auto":
            feedback = "explicit" if data.has_ratings else "implicit"
        self.feedback_ = feedback
        self.fit_index(data, feedback)
        active = np.flatnonzero(self.pop_counts > 0)
        n_act = len(active)
        if n_act > self.config.max_items:
            need = memory_bytes(n_act)
            raise ConfigError(
                f"EASE: {n_act:,} items have interactions, above max_items={self.config.max_items:,}. "
                f"EASE keeps dense float32 items x items matrices: about {_human(need)} "
                f"({n_act:,}^2 items x 4 bytes x ~3 for the Gram matrix, its inverse and B). "
                "Raise max_items if the machine has that memory, filter rare items out of the data, "
                "or use a sparse model (itemcf, als)."
            )
        self.active_ = active
        self._all_active = n_act == len(self.item_ids)

    def _gram(self) -> np.ndarray:
        """G = X^T X over the active items (dense float32)."""
        X = self.R[:, self.active_] if not self._all_active else self.R
        X = X.astype(np.float32)
        return np.asarray((X.T @ X).toarray(), dtype=np.float32)

    def _set_weights(self, G: np.ndarray, l2: float) -> None:
        self.l2_ = float(l2)
        self.B_ = ease_weights(G, l2)
        log.info("EASE fitted: %d active items, l2=%g", len(self.active_), l2)

    # ------------------------------------------------------------------ scores
    def cf_scores(self, P: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray:
        P32 = P.astype(np.float32)
        if self._all_active:
            return np.asarray(P32 @ self.B_, dtype=np.float64)
        out = np.zeros(P.shape, dtype=np.float64)
        out[:, self.active_] = P32[:, self.active_] @ self.B_
        return out


def ease_weights(G: np.ndarray, l2: float) -> np.ndarray:
    """B = I - P / diag(P) with P = (G + l2 I)^-1, diag(B) = 0 (float32; `G` is not modified).

    Uses a Cholesky factorisation (G + l2 I is symmetric positive definite) and falls back to
    a float64 inverse if float32 loses definiteness."""
    from scipy.linalg import get_lapack_funcs

    A = np.array(G, dtype=np.float32, order="F", copy=True)
    A[np.diag_indices_from(A)] += np.float32(l2)
    potrf, potri = get_lapack_funcs(("potrf", "potri"), (A,))
    c, info = potrf(A, lower=False, overwrite_a=True, clean=False)
    if info == 0:
        inv, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        log.warning("EASE: float32 Cholesky failed (info=%d); inverting in float64", info)
        A64 = np.asarray(G, dtype=np.float64) + l2 * np.eye(G.shape[0])
        Pm = np.linalg.inv(A64).astype(np.float32)
    else:
        # potri fills the upper triangle: mirror it
        Pm = np.triu(inv)
        del inv, c, A
        Pm += np.triu(Pm, 1).T
    d = np.diag(Pm).copy()
    if not np.all(d > 0):
        raise ModelError("EASE: the inverse has a non-positive diagonal; increase l2")
    Pm /= -d[None, :]
    Pm[np.diag_indices_from(Pm)] = 0.0
    return Pm


# ---------------------------------------------------------------------------- tuning
def _metric_value(pos: np.ndarray, metric: str) -> np.ndarray:
    """Per-user value of `metric` from the 0-based position of the target (-1: not in top-k)."""
    m = _METRIC.match(metric)
    assert m is not None
    kind = m.group(1)
    hit = pos >= 0
    out = np.zeros(len(pos))
    if kind == "ndcg":
        out[hit] = 1.0 / np.log2(pos[hit] + 2.0)
    elif kind == "mrr":
        out[hit] = 1.0 / (pos[hit] + 1.0)
    else:  # recall / hr: one target per user
        out[hit] = 1.0
    return out


def _evaluate(model: EASE, histories: Sequence[History], targets: Sequence[str], metric: str) -> float:
    k = int(metric.split("@")[1])
    batch = model.retrieve_arrays(histories, k, exclude_seen=True)
    pos = np.full(len(targets), -1)
    for row, t in enumerate(targets):
        ids = batch.row_ids(row)
        where = np.flatnonzero(ids == t)
        if len(where):
            pos[row] = int(where[0])
    return float(_metric_value(pos, metric).mean()) if len(pos) else math.nan


def _tune(
    fit_data: Dataset,
    histories: Mapping[str, History],
    targets: Mapping[str, str],
    grid: Sequence[float],
    metric: str,
    config: EASEConfig,
) -> EASETuning:
    import time

    if not histories:
        raise ConfigError("EASE l2 tuning: no user to evaluate (every user needs >= 3 interactions)")
    users = sorted(histories)
    hs = [histories[u] for u in users]
    ts = [targets[u] for u in users]
    base = EASE(config.model_copy(update={"l2_grid": None}))
    base._fit_index(fit_data)
    G = base._gram()
    out = EASETuning(l2=float("nan"), metric=metric, users=len(users))
    for l2 in grid:
        t0 = time.perf_counter()
        base._set_weights(G, float(l2))
        out.scores[float(l2)] = _evaluate(base, hs, ts, metric)
        out.seconds[float(l2)] = time.perf_counter() - t0
        log.info("EASE tuning: l2=%g %s=%.4f", l2, metric, out.scores[float(l2)])
    # best value; ties go to the smaller l2 (grid order after sorting)
    best = max(sorted(out.scores), key=lambda v: (out.scores[v], -v))
    out.l2 = best
    return out


def tune_ease(
    split: LeaveOneOutSplit,
    grid: Sequence[float] | None = None,
    metric: str = "ndcg@10",
    *,
    config: EASEConfig | None = None,
    cap: int | None = 20,
) -> EASETuning:
    """Pick ``l2`` on a leave-one-out split: fit on ``split.train``, rank the full catalogue
    (seen items excluded) for the validation histories (capped at `cap`, as the protocol
    does) and keep the grid value with the best `metric` (``ndcg@K``, ``recall@K``, ``hr@K``,
    ``mrr@K``; ties: the smaller l2). `config` sets the other EASE options (feedback, guard).

    >>> tuning = tune_ease(split)            # DEFAULT_L2_GRID, ndcg@10
    >>> model = EASE(l2=tuning.l2).fit(split.train_valid())
    """
    cfg = config or EASEConfig()
    try:
        cfg = cfg.model_copy(update={"tune_metric": _check_metric(metric)})
    except ValueError as e:
        raise ConfigError(f"tune_ease metric: {e}") from None
    g = list(DEFAULT_L2_GRID if grid is None else grid)
    if not g or any(not (float(v) > 0) for v in g):
        raise ConfigError(f"tune_ease grid: give positive l2 values, got {g!r}")
    return _tune(split.train, split.histories("validation", cap=cap), split.targets("validation"),
                 g, metric, cfg)


def _tune_on_fit_data(data: Dataset, cfg: EASEConfig) -> EASETuning:
    """``l2_grid`` inside fit: hold out each user's last interaction of `data` (chronological
    leave-one-out), fit on the rest, score the held-out items."""
    from ..data.splits import leave_one_out

    inner = leave_one_out(data)
    assert cfg.l2_grid is not None
    return _tune(inner.train_valid(), inner.histories("test"), inner.targets("test"),
                 cfg.l2_grid, cfg.tune_metric, cfg)


__all__ = ["DEFAULT_L2_GRID", "EASE", "EASEConfig", "EASETuning", "ease_weights", "memory_bytes", "tune_ease"]
