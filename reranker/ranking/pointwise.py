"""Pointwise LLM scoring: logit(Yes) - logit(No) per candidate over a shared prompt prefix."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..types import Candidate, History, Ranking
from .hints import hint_views
from .llm_common import Catalog, LLMRankerBase, dedupe, label_stats, wants_hidden


class PointwiseLLMRanker(LLMRankerBase):
    """Scores each candidate with one Yes/No question; the instructions and the history form a
    prefix computed once (KV cache), each candidate is only its own short suffix.

    Implements both the Scorer (`score`) and the Ranker (`rank`) protocols;
    `score_with_hidden` also returns the final hidden state at the answer position (the
    `h_LLM` feature of the learned fusion head).
    """

    name = "llm-pointwise"
    template = "score_pointwise"
    labels = ("Yes", "No")

    def build_prompts(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> tuple[list[str], int]:
        """One full chat prompt per candidate (same history, trimmed to fit), and the number of
        history items kept. Items come from `catalog` (None: the ranker's own); with `cf_hint`,
        each candidate's stage-1 rank or band from the candidates' scores."""
        tpl = self.prompts.get(self.template)
        context = self.context_view(history)
        hints, mode = hint_views(candidates, self.cf_hint)
        cand_views = [dict(v, hint=h) for v, h in zip(self.candidate_views(candidates, catalog), hints, strict=True)]
        if not cand_views:
            return [], 0
        longest = max(cand_views, key=lambda v: len(v["title"]) + len(v["text"]) + len(v["attrs"]))

        def render(hist: list[dict], cand: dict = longest) -> str:
            return self.backend.chat_prompt(tpl.render(history=hist, candidate=cand, context=context, cf_hint=mode))

        hist = self.history_views(history, catalog)
        _, kept = self.fit_history(render, hist, reserve_tokens=1)
        hist = hist[len(hist) - kept :] if kept else []
        return [render(hist, v) for v in cand_views], kept

    def score_with_hidden(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """(scores, hidden states (n, hidden_size), diagnostics); the hidden states are None
        when the backend returns none (a server; see `reranker.llm.base.HiddenStatesBackend`).
        From a server's top-k log-probabilities the diagnostics count the labels it left out
        (`labels_missing` of `labels_scored`)."""
        t0 = time.perf_counter()
        prompts, kept = self.build_prompts(history, candidates, catalog)
        if not prompts:
            return np.zeros(0), np.zeros((0, 0)), self.base_diagnostics()
        backend = self.backend
        res = backend.score_prompts(prompts, list(self.labels), return_hidden=wants_hidden(backend))
        scores = res.logits[:, 0] - res.logits[:, 1]
        diag = {
            **self.base_diagnostics(),
            "tokens_in": int(res.tokens_in),
            "tokens_out": 0,
            "history_used": kept,
            "cf_hint": hint_views(candidates, self.cf_hint)[1],
            "latency_s": time.perf_counter() - t0,
            **label_stats(res),
        }
        return scores, res.hidden, diag

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray:
        """logit(Yes) - logit(No) for each candidate, in the given order."""
        prompts, _ = self.build_prompts(history, candidates, catalog)
        if not prompts:
            return np.zeros(0)
        res = self.backend.score_prompts(prompts, list(self.labels))
        return res.logits[:, 0] - res.logits[:, 1]

    def rank(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> Ranking:
        cands = dedupe(candidates)
        scores, _, diag = self.score_with_hidden(history, cands, catalog)
        return Ranking.from_scores([c.item_id for c in cands], list(scores), diag)


__all__ = ["PointwiseLLMRanker"]
