"""Score fusion: ``R(u, i) = alpha * S_content + beta * S_CF + gamma * S_LLM``, generalised.

Each signal is a `Scorer` (or an array computed beforehand) giving one score per candidate. The
signals are normalised per list (`normalize`: z-score, min-max or rank) and summed with
non-negative weights. A signal whose weight is 0 is never computed, so ``gamma = 0`` costs no LLM
call and gives exactly the content + CF ranking.

`fit_weights` grid-searches the weight simplex on validation lists (per-signal score arrays plus
the index of the relevant item(s)) and returns the best weights with the table of every point.
`CandidateScoreScorer` exposes the stage-1 `Candidate.score` (the CF score) as a signal.
The normalisation and the weight search live in `reranker.ranking.fusion_weights` (re-exported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ..config import BaseConfig
from ..errors import ConfigError
from ..types import Candidate, History, Ranking
from .base import Catalog, Named, Scorer, catalog_kwargs
from .fusion_weights import (  # noqa: F401  (re-exported: the public names of this module)
    NORMALIZE_METHODS,
    NormalizeMethod,
    WeightSearch,
    fit_weights,
    fuse,
    normalize,
    simplex_grid,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- config
NonNegWeight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class FusionConfig(BaseConfig):
    """Fusion weights per signal name (each >= 0) and the per-list normalisation."""

    weights: dict[str, NonNegWeight] = Field(
        default_factory=lambda: {"content": 1.0, "cf": 1.0, "llm": 0.0}
    )
    normalize: NormalizeMethod = "zscore"


# ---------------------------------------------------------------------------- scorers / ranker
class CandidateScoreScorer:
    """The stage-1 score carried by each `Candidate` (e.g. the ItemCF score) as a signal."""

    name = "cf"

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray:
        return np.array([float(c.score) for c in candidates], dtype=np.float64)


class RankerScorer:
    """Any `Ranker` as a signal (e.g. a listwise LLM ranker): each candidate gets its position
    score ``n - rank + 1`` (``use="position"``, the default) or the Ranking's own score
    (``use="score"``). Duplicated candidates get the score of their one ranked entry."""

    def __init__(self, ranker: Any, use: Literal["position", "score"] = "position") -> None:
        if use not in ("position", "score"):
            raise ConfigError(f"use: must be 'position' or 'score', got {use!r}")
        self.ranker = ranker
        self.use = use
        self.name = ranker.name if isinstance(ranker, Named) else type(ranker).__name__

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray:
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.float64)
        ranking = self.ranker.rank(history, candidates, **catalog_kwargs(catalog))
        return self.position_scores(ranking, candidates, self.use, self.name)

    @staticmethod
    def position_scores(
        ranking: Ranking, candidates: Sequence[Candidate], use: Literal["position", "score"] = "position",
        name: str = "ranker",
    ) -> np.ndarray:
        """A ranking of these candidates as one score per candidate, in their order (see the
        class doc): how a ranking computed beforehand (`rank_many`) becomes a fusion signal."""
        n = len(ranking)
        by_id = {
            r.item_id: float(r.score) if use == "score" else float(n - r.rank + 1)
            for r in ranking.items
        }
        missing = [c.item_id for c in candidates if c.item_id not in by_id]
        if missing:
            raise ValueError(f"ranker {name!r} left candidate {missing[0]!r} out of its ranking")
        return np.array([by_id[c.item_id] for c in candidates], dtype=np.float64)


class FusionRanker:
    """Weighted sum of per-list-normalised signals; also usable as a `Scorer` (`score`).

    ``signals`` maps a name to a `Scorer`; weights name the signals to use. A weight whose
    signal is neither a scorer here nor passed as a precomputed array to `rank`/`score` is a
    `ConfigError` naming it. Zero-weight signals are not computed. Ties keep stage-1 order.
    The third positional argument of `rank`/`score` is `precomputed`; pass a request's
    `catalog` by keyword (it is forwarded to every signal).
    """

    name = "fusion"

    def __init__(
        self,
        signals: Mapping[str, Scorer] | None = None,
        config: FusionConfig | None = None,
        *,
        weights: Mapping[str, float] | None = None,
        normalize: NormalizeMethod | None = None,
    ) -> None:
        cfg = config or FusionConfig()
        updates: dict[str, Any] = {}
        if weights is not None:
            updates["weights"] = dict(weights)
        if normalize is not None:
            updates["normalize"] = normalize
        if updates:
            cfg = FusionConfig.from_dict({**cfg.model_dump(), **updates})
        self.config = cfg
        self.signals: dict[str, Scorer] = dict(signals or {})
        for name, sc in self.signals.items():
            if not isinstance(sc, Scorer) or not callable(sc.score):
                raise ConfigError(f"fusion: signal {name!r} is not a Scorer (no score method)")

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.config.weights)

    def compute_signals(
        self,
        history: History,
        candidates: Sequence[Candidate],
        precomputed: Mapping[str, Sequence[float] | np.ndarray] | None = None,
        *,
        all_signals: bool = False,
        catalog: Catalog = None,
        timings: dict[str, float] | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw per-signal scores for these candidates (only non-zero weights unless all_signals).

        Use ``all_signals=True`` to collect validation lists for `fit_weights`. `timings`, when
        given, receives the seconds each signal computed here took (precomputed ones: none).
        """
        pre = dict(precomputed or {})
        names = list(self.signals) + [s for s in pre if s not in self.signals]
        if not all_signals:
            names = [s for s in names if self.config.weights.get(s, 0.0) != 0]
            for s, w in self.config.weights.items():
                if w != 0 and s not in self.signals and s not in pre:
                    raise ConfigError(
                        f"fusion: weights.{s} is set but there is no signal {s!r}; "
                        f"signals: {sorted(set(self.signals) | set(pre))}"
                    )
        out: dict[str, np.ndarray] = {}
        n = len(candidates)
        for s in names:
            if s in pre:
                arr = pre[s]
            else:
                t0 = time.perf_counter()
                arr = self.signals[s].score(history, candidates, **catalog_kwargs(catalog))
                if timings is not None:
                    timings[s] = time.perf_counter() - t0
            arr = np.asarray(arr, dtype=np.float64).reshape(-1)
            if arr.size != n:
                raise ValueError(f"fusion: signal {s!r} gave {arr.size} scores for {n} candidates")
            out[s] = arr
        return out

    def score(
        self,
        history: History,
        candidates: Sequence[Candidate],
        precomputed: Mapping[str, Sequence[float] | np.ndarray] | None = None,
        *,
        catalog: Catalog = None,
    ) -> np.ndarray:
        """Fused score of each candidate (duplicates scored like their first occurrence)."""
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.float64)
        sig = self.compute_signals(history, candidates, precomputed, catalog=catalog)
        return fuse(sig, self.config.weights, self.config.normalize) if sig else np.zeros(
            len(candidates)
        )

    def rank(
        self,
        history: History,
        candidates: Sequence[Candidate],
        precomputed: Mapping[str, Sequence[float] | np.ndarray] | None = None,
        *,
        catalog: Catalog = None,
    ) -> Ranking:
        """Every candidate once, by fused score; ties in stage-1 order.

        Precomputed arrays must be aligned with `candidates` as given (before de-duplication).
        """
        cands = list(candidates)
        keep = _first_occurrences(cands)
        uniq = [cands[i] for i in keep]
        pre: dict[str, np.ndarray] = {}
        for k, v in (precomputed or {}).items():
            arr = np.asarray(v, dtype=np.float64).reshape(-1)
            if arr.size != len(cands):
                raise ValueError(
                    f"fusion: precomputed signal {k!r} has {arr.size} scores "
                    f"for {len(cands)} candidates"
                )
            pre[k] = arr[keep]
        seconds: dict[str, float] = {}
        sig = self.compute_signals(history, uniq, pre, catalog=catalog, timings=seconds) if uniq else {}
        fused = (
            fuse(sig, self.config.weights, self.config.normalize)
            if sig
            else np.zeros(len(uniq))
        )
        diag = {
            "ranker": self.name,
            "weights": self.weights,
            "normalize": self.config.normalize,
            "signals": {k: v.tolist() for k, v in sig.items()},
            "signal_seconds": seconds,
        }
        return Ranking.from_scores([c.item_id for c in uniq], fused.tolist(), diag)


def _first_occurrences(cands: Sequence[Candidate]) -> list[int]:
    seen: set[str] = set()
    keep = []
    for i, c in enumerate(cands):
        if c.item_id not in seen:
            seen.add(c.item_id)
            keep.append(i)
    return keep


__all__ = [
    "CandidateScoreScorer",
    "FusionConfig",
    "FusionRanker",
    "NORMALIZE_METHODS",
    "RankerScorer",
    "WeightSearch",
    "fit_weights",
    "fuse",
    "normalize",
    "simplex_grid",
]
