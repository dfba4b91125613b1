"""LlamaRec-style verbalizer: lettered candidates, one forward pass, label-token logits."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..types import Candidate, History, Ranking
from .llm_common import LLMRankerBase, dedupe, letter_labels


class VerbalizerLLMRanker(LLMRankerBase):
    """Candidates labelled A, B, C ...; the score of a candidate is the log-probability of its
    letter as the first answer token (softmax over the shown letters).

    `permutations` > 1 averages the log-probabilities over seeded shuffles of the list (the
    first shows the stage-1 order) against position bias; all shuffles share the prompt prefix
    and run in one batched forward. More than 26 candidates are scored in chunks of 26.
    """

    name = "llm-verbalizer"
    template = "rank_verbalizer"
    max_labels = 26

    def __init__(self, config=None, *, permutations: int = 1, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if permutations < 1:
            raise ValueError("permutations must be >= 1")
        self.permutations = permutations
        self.seed = seed

    def _score_chunk(
        self, history: History, views: list[dict], rng: random.Random, stats: dict[str, Any]
    ) -> np.ndarray:
        n = len(views)
        labels = letter_labels(n)
        tpl = self.prompts.get(self.template)
        context = self.context_view(history)
        perms = [list(range(n))] + [rng.sample(range(n), n) for _ in range(self.permutations - 1)]
        prompts = []
        for perm in perms:
            shown = [dict(views[i], label=labels[j]) for j, i in enumerate(perm)]

            def render(hist: list[dict], shown: list[dict] = shown) -> str:
                return self.backend.chat_prompt(
                    tpl.render(history=hist, candidates=shown, context=context)
                )

            prompt, kept = self.fit_history(render, self.history_views(history), 1)
            stats["history_used"] = min(stats.get("history_used", kept), kept)
            prompts.append(prompt)
        res = self.backend.score_prompts(prompts, labels)
        stats["tokens_in"] += res.tokens_in
        logits = res.logits - res.logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        scores = np.zeros(n)
        for row, perm in enumerate(perms):
            scores[np.asarray(perm)] += logp[row]  # shown position j holds candidate perm[j]
        stats["calls"] += 1
        return scores / len(perms)

    def score(self, history: History, candidates: Sequence[Candidate]) -> np.ndarray:
        """Mean log-probability of each candidate's label (in the given order)."""
        return self._score(history, list(candidates), self._stats())[0]

    @staticmethod
    def _stats() -> dict[str, Any]:
        return {"tokens_in": 0, "tokens_out": 0, "calls": 0}

    def _score(self, history, cands, stats) -> tuple[np.ndarray, dict[str, Any]]:
        views = [self.item_view(it) for it in self.candidate_items(cands)]
        rng = random.Random(self.seed)
        parts = [
            self._score_chunk(history, views[s : s + self.max_labels], rng, stats)
            for s in range(0, len(views), self.max_labels)
        ]
        return (np.concatenate(parts) if parts else np.zeros(0)), stats

    def rank(self, history: History, candidates: Sequence[Candidate]) -> Ranking:
        t0 = time.perf_counter()
        cands = dedupe(candidates)
        scores, stats = self._score(history, cands, self._stats())
        diag = {
            **self.base_diagnostics(),
            **stats,
            "permutations": self.permutations,
            "latency_s": time.perf_counter() - t0,
        }
        return Ranking.from_scores([c.item_id for c in cands], list(scores), diag)


__all__ = ["VerbalizerLLMRanker"]
