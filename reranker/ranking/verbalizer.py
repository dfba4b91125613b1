"""LlamaRec-style verbalizer: lettered candidates, one forward pass, label-token logits."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..types import Candidate, History, Ranking
from .llm_common import (
    Catalog,
    LLMRankerBase,
    RankPrompts,
    dedupe,
    label_stats,
    letter_labels,
    permutation_orders,
)


class VerbalizerLLMRanker(LLMRankerBase):
    """Candidates labelled A, B, C ...; the score of a candidate is the log-probability of its
    letter as the first answer token (softmax over the shown letters).

    `permutations` > 1 averages the log-probabilities over seeded shuffles of the list (the
    first shows the stage-1 order) against position bias; all shuffles share the prompt prefix
    and run in one batched forward.

    More than 26 candidates (one letter each; SmolLM2's tokenizer has no single token for many
    two-letter labels, e.g. AJ, AO, AZ, so labels stop at Z) are scored on one scale by anchored
    chunks: the first 26 candidates are scored exactly as a list of 26 (their scores are the
    reference scale); the `anchors` best of them (by that score, ties by stage-1 position) are
    shown again in every further chunk, before the next `26 - anchors` candidates (stage-1
    order). A chunk's softmax differs from the first chunk's only by its normaliser, so its
    scores are shifted by `logsumexp(anchor scores in chunk 1) - logsumexp(anchor scores in the
    chunk)`: for a model whose label logits depend on the item alone, every candidate then gets
    exactly the log-probability it would have had in one softmax with the first chunk, and the
    order is the true one for any list length. Lists of at most 26 are unchanged (same prompts,
    same scores); a chunked ranking's diagnostics carry `anchors`.
    """

    name = "llm-verbalizer"
    template = "rank_verbalizer"
    max_labels = 26

    def __init__(
        self, config=None, *, permutations: int = 1, seed: int = 0, anchors: int = 8, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        if permutations < 1:
            raise ConfigError(f"permutations: must be >= 1, got {permutations}")
        if not 1 <= anchors < self.max_labels:
            raise ConfigError(f"anchors: must be between 1 and {self.max_labels - 1}, got {anchors}")
        self.permutations = permutations
        self.seed = seed
        self.anchors = anchors

    def build_prompts(
        self,
        history: History,
        candidates: Sequence[Candidate],
        catalog: Catalog = None,
        *,
        orders: Sequence[Sequence[int]] | None = None,
    ) -> RankPrompts:
        """The prompts scoring one chunk of at most `max_labels` candidates: one per shown
        order, candidates lettered A, B, ... in the order shown, history trimmed oldest-first to
        fit. `orders` default to what `score` shows a list of at most `max_labels` candidates
        (the stage-1 order, then `permutations - 1` shuffles seeded with `seed`). Items come
        from `catalog` (None: the ranker's own)."""
        views = self.candidate_views(candidates, catalog)
        n = len(views)
        labels = tuple(letter_labels(n))
        if orders is None:
            orders = permutation_orders(n, self.permutations, random.Random(self.seed))
        tpl = self.prompts.get(self.template)
        context = self.context_view(history)
        hist = self.history_views(history, catalog)
        prompts, kept = [], []
        for order in orders:
            shown = [dict(views[i], label=labels[j]) for j, i in enumerate(order)]

            def render(h: list[dict], shown: list[dict] = shown) -> str:
                return self.backend.chat_prompt(tpl.render(history=h, candidates=shown, context=context))

            prompt, k = self.fit_history(render, hist, 1)
            prompts.append(prompt)
            kept.append(k)
        return RankPrompts(tuple(prompts), tuple(tuple(o) for o in orders), labels, tuple(kept))

    def _score_chunk(
        self, history: History, cands: list[Candidate], rng: random.Random, stats: dict[str, Any],
        catalog: Catalog,
    ) -> np.ndarray:
        n = len(cands)
        perms = permutation_orders(n, self.permutations, rng)
        built = self.build_prompts(history, cands, catalog, orders=perms)
        for kept in built.history_used:
            stats["history_used"] = min(stats.get("history_used", kept), kept)
        res = self.backend.score_prompts(list(built.prompts), list(built.labels))
        stats["tokens_in"] += res.tokens_in
        for key, value in label_stats(res).items():  # a server's top-k: labels it left out
            stats[key] = stats.get(key, 0) + value
        logits = res.logits - res.logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        scores = np.zeros(n)
        for row, perm in enumerate(perms):
            scores[np.asarray(perm)] += logp[row]  # shown position j holds candidate perm[j]
        stats["calls"] += 1
        return scores / len(perms)

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray:
        """Mean log-probability of each candidate's label (in the given order)."""
        return self._score(history, list(candidates), self._stats(), catalog)[0]

    @staticmethod
    def _stats() -> dict[str, Any]:
        return {"tokens_in": 0, "tokens_out": 0, "calls": 0}

    def _score(
        self, history: History, cands: list[Candidate], stats: dict[str, Any], catalog: Catalog
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self.candidate_items(cands, catalog)  # an unknown id fails before any forward pass
        if not cands:
            return np.zeros(0), stats
        rng = random.Random(self.seed)
        m, n = self.max_labels, len(cands)
        first = self._score_chunk(history, cands[:m], rng, stats, catalog)
        if n <= m:
            return first, stats
        # anchored chunks (see the class docstring): one scale for every candidate
        k = self.anchors
        anchors = sorted(sorted(range(m), key=lambda i: -first[i])[:k])
        reference = _logsumexp(first[anchors])
        scores = np.empty(n)
        scores[:m] = first
        for start in range(m, n, m - k):
            new = list(range(start, min(start + m - k, n)))
            part = self._score_chunk(history, [cands[i] for i in anchors + new], rng, stats, catalog)
            scores[new] = part[k:] + (reference - _logsumexp(part[:k]))
        stats["anchors"] = k
        return scores, stats

    def rank(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> Ranking:
        t0 = time.perf_counter()
        cands = dedupe(candidates)
        scores, stats = self._score(history, cands, self._stats(), catalog)
        diag = {
            **self.base_diagnostics(),
            **stats,
            "permutations": self.permutations,
            "latency_s": time.perf_counter() - t0,
        }
        return Ranking.from_scores([c.item_id for c in cands], list(scores), diag)


def _logsumexp(x: np.ndarray) -> float:
    top = float(np.max(x))
    return top + float(np.log(np.exp(x - top).sum()))


__all__ = ["VerbalizerLLMRanker"]
