"""CF hints in the LLM prompts (RecRanker's "another recommender suggests ..."): each candidate
shown with its stage-1 rank or a coarse band of its stage-1 score.

The hint is computed from the call's own data, the candidates' `Candidate.score` (what stage 1
gave them), never from state on the ranker:

- `rank`: the candidate's place when the list is sorted by stage-1 score, best first (ties keep
  the list order), "3 of 20";
- `band`: the score's place between the list's lowest and highest score, in thirds: `high`
  (top third of the range), `medium`, `low`. Non-finite scores count as the lowest.

A list whose scores are all equal (no stage-1 scores: regime B's sampled candidates, a request
without scores) carries no information, so no hint is shown for it (`hint_shown` False).
`Stage1Rescorer` gives such candidates scores from a CF model first (what the evaluation's
regime B rows use: `cf_hint_scorer`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..types import Candidate, History, Ranking
from .base import BatchRanker, Catalog, Scorer, catalog_kwargs, rank_many_batch_size

CFHint = Literal["none", "rank", "band"]
HINT_MODES: tuple[str, ...] = ("none", "rank", "band")
BANDS = ("low", "medium", "high")


@dataclass(frozen=True)
class Stage1Hint:
    """One candidate's hint: its stage-1 rank (1 = best) of `of`, and its score band."""

    rank: int
    of: int
    band: str

    def view(self) -> dict[str, Any]:
        return {"rank": self.rank, "of": self.of, "band": self.band}


def stage1_hints(candidates: Sequence[Candidate]) -> list[Stage1Hint] | None:
    """Each candidate's rank and band by `Candidate.score` within the list (module docstring);
    None when the scores are all equal (or the list is empty)."""
    n = len(candidates)
    if n == 0:
        return None
    raw = [float(c.score) for c in candidates]
    finite = [s for s in raw if math.isfinite(s)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    scores = [s if math.isfinite(s) else -math.inf for s in raw]
    if high == low and all(math.isfinite(s) for s in scores):
        return None
    order = sorted(range(n), key=lambda i: -scores[i])  # stable: ties keep the list order
    rank = [0] * n
    for r, i in enumerate(order):
        rank[i] = r + 1
    span = high - low
    hints = []
    for i, s in enumerate(scores):
        x = (s - low) / span if span > 0 and math.isfinite(s) else (1.0 if math.isfinite(s) else 0.0)
        band = BANDS[2] if x >= 2 / 3 else BANDS[1] if x >= 1 / 3 else BANDS[0]
        hints.append(Stage1Hint(rank[i], n, band))
    return hints


def hint_views(candidates: Sequence[Candidate], mode: str) -> tuple[list[dict[str, Any] | None], str]:
    """The template's `hint` per candidate and the mode actually shown: ("none" and Nones)
    when `mode` is none or the list's scores carry no information."""
    if mode == "none":
        return [None] * len(candidates), "none"
    hints = stage1_hints(candidates)
    if hints is None:
        return [None] * len(candidates), "none"
    return [h.view() for h in hints], mode


class Stage1Rescorer:
    """Hands a ranker the candidates with stage-1 scores from `scorer` (a CF model), so a
    ranker with `cf_hint` has something to show where the candidates came without scores
    (regime B). The new scores travel in the call's candidates; nothing is stored."""

    def __init__(self, ranker: Any, scorer: Scorer, source: str = "stage1") -> None:
        self.ranker = ranker
        self.scorer = scorer
        self.source = source
        self.name = getattr(ranker, "name", type(ranker).__name__)

    @property
    def config(self) -> Any:
        """The wrapped ranker's model settings (what an explainer sharing its model reads)."""
        return self.ranker.config

    @property
    def backend(self) -> Any:
        return self.ranker.backend

    @property
    def prompts(self) -> Any:
        return self.ranker.prompts

    def rescored(self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None) -> list[Candidate]:
        if not candidates:
            return []
        scores = np.asarray(self.scorer.score(history, list(candidates), **catalog_kwargs(catalog)), dtype=float)
        return [Candidate(c.item_id, float(s), self.source) for c, s in zip(candidates, scores, strict=True)]

    def score(self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None) -> np.ndarray:
        return self.ranker.score(history, self.rescored(history, candidates, catalog), **catalog_kwargs(catalog))

    def rank(self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None) -> Ranking:
        return self.ranker.rank(history, self.rescored(history, candidates, catalog), **catalog_kwargs(catalog))

    def rank_many(
        self, requests: Sequence[tuple[History, Sequence[Candidate]]], catalog: Catalog = None
    ) -> list[Ranking]:
        moved = [(h, self.rescored(h, c, catalog)) for h, c in requests]
        if isinstance(self.ranker, BatchRanker):
            return self.ranker.rank_many(moved, **catalog_kwargs(catalog))
        return [self.ranker.rank(h, c, **catalog_kwargs(catalog)) for h, c in moved]

    @property
    def users_per_batch(self) -> int:
        return rank_many_batch_size(self.ranker)


__all__ = ["BANDS", "CFHint", "HINT_MODES", "Stage1Hint", "Stage1Rescorer", "hint_views", "stage1_hints"]
