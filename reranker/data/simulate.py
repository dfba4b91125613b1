"""Simulated clicks on the generated world: a position-based model over the true affinities.

An item shown at rank r is examined with probability ``1 / log2(r + 1)`` and clicked, if
examined, with probability ``sigmoid(click_slope * (z - click_offset))``, z the user-standardised
affinity (:meth:`World.affinity_z`). Mixed into :class:`reranker.data.synthetic.World`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .synthetic import WorldConfig


class ClickModel:
    """Click-model methods of :class:`~reranker.data.synthetic.World` (a mixin)."""

    config: WorldConfig

    if TYPE_CHECKING:  # provided by World

        def affinity_z(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray: ...

        def _user_pos(self, user_id: str) -> int: ...

    def click_probability(self, user_id: str, ranked_item_ids: Sequence[str]) -> np.ndarray:
        """P(click) per position: examination ``1/log2(rank+1)`` x ``sigmoid`` of affinity."""
        if len(ranked_item_ids) == 0:
            return np.zeros(0)
        z = self.affinity_z(user_id, ranked_item_ids)
        attract = 1.0 / (1.0 + np.exp(-self.config.click_slope * (z - self.config.click_offset)))
        exam = 1.0 / np.log2(np.arange(2, len(ranked_item_ids) + 2))
        return exam * attract

    def simulate_clicks(self, user_id: str, ranked_item_ids: Sequence[str], seed: int = 0) -> np.ndarray:
        """Sampled clicks (bool per position) for one shown list; same seed, same clicks."""
        p = self.click_probability(user_id, ranked_item_ids)
        rng = np.random.default_rng([int(seed), self._user_pos(user_id)])  # a stream per user
        return rng.random(p.size) < p

    def ctr(
        self, rankings: Mapping[str, Sequence[str]], seed: int = 0, k: int | None = None
    ) -> np.ndarray:
        """Per-user click-through rate (clicks / shown items) of ``{user_id: ranked ids}``.

        Lists are cut to the top ``k`` when given; an empty list gets NaN.
        """
        out = np.empty(len(rankings), dtype=np.float64)
        for j, (uid, ranked) in enumerate(rankings.items()):
            shown = list(ranked)[:k] if k is not None else list(ranked)
            clicks = self.simulate_clicks(uid, shown, seed=seed)
            out[j] = clicks.mean() if clicks.size else np.nan
        return out
