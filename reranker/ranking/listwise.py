"""PALR select-and-rank: the LLM sees numbered candidates and answers with numbers."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from ..types import Candidate, History, Ranking
from .llm_common import LLMRankerBase, dedupe
from .parsing import ParseResult, borda, parse_ranking


class ListwiseLLMRanker(LLMRankerBase):
    """Generative listwise ranking with strict parsing.

    - `permutations` (P): the candidate list is shown in P orders (the first is the stage-1
      order, the others seeded shuffles) and the parsed rankings are merged with Borda counts,
      against position bias. All P prompts of a window run in one batched `generate`.
    - `window`/`step`: more candidates than `window` are ranked with a sliding window from the
      back of the list to the front (RankGPT style), each window ranked as above.
    - An answer with fewer than half valid numbers is retried once with a stricter prompt.
    """

    name = "llm-listwise"
    template = "rank_listwise"

    def __init__(
        self,
        config=None,
        *,
        permutations: int = 1,
        window: int = 20,
        step: int = 10,
        seed: int = 0,
        max_new_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self.max_new_tokens = max_new_tokens
        if permutations < 1:
            raise ValueError("permutations must be >= 1")
        if window < 2 or not 1 <= step <= window:
            raise ValueError("need window >= 2 and 1 <= step <= window")
        self.permutations = permutations
        self.window = window
        self.step = step
        self.seed = seed

    def _max_new_tokens(self, n: int) -> int:
        """Room for every number and its separator ("12, " is 3 tokens) unless capped."""
        need = 3 * n + 4
        return min(need, self.max_new_tokens) if self.max_new_tokens else need

    def _prompt(self, history: History, shown: list[dict], strict: bool) -> tuple[str, int]:
        tpl = self.prompts.get(self.template)
        context = self.context_view(history)
        views = [dict(v, label=str(i + 1)) for i, v in enumerate(shown)]

        def render(hist: list[dict]) -> str:
            return self.backend.chat_prompt(
                tpl.render(history=hist, candidates=views, context=context, strict=strict, n=len(views))
            )

        return self.fit_history(render, self.history_views(history), self._max_new_tokens(len(views)))

    def _rank_window(
        self, history: History, views: list[dict], rng: random.Random, stats: dict[str, Any]
    ) -> tuple[list[int], list[float] | None]:
        """Rank one window (views in current order). Returns (order of indices, Borda points)."""
        n = len(views)
        perms = [list(range(n))] + [rng.sample(range(n), n) for _ in range(self.permutations - 1)]
        prompts = []
        for perm in perms:
            prompt, kept = self._prompt(history, [views[i] for i in perm], strict=False)
            prompts.append(prompt)
            stats["history_used"] = min(stats.get("history_used", kept), kept)
        gens = self.backend.generate(prompts, self._max_new_tokens(n), seed=self.seed)
        results: list[ParseResult] = []
        retry_idx = []
        for k, (perm, g) in enumerate(zip(perms, gens, strict=True)):
            # fill-in in stage-1 order: shown positions sorted by their window index
            fill = sorted(range(n), key=lambda j, perm=perm: perm[j])
            res = parse_ranking(g.text, n, fill)
            results.append(res)
            stats["tokens_in"] += g.tokens_in
            stats["tokens_out"] += g.tokens_out
            stats["raw"].append(g.text)
            if res.valid < n / 2:
                retry_idx.append(k)
        if retry_idx:
            retry_prompts = [self._prompt(history, [views[i] for i in perms[k]], True)[0] for k in retry_idx]
            regens = self.backend.generate(retry_prompts, self._max_new_tokens(n), seed=self.seed)
            stats["retries"] += len(retry_idx)
            for k, g in zip(retry_idx, regens, strict=True):
                fill = sorted(range(n), key=lambda j, perm=perms[k]: perm[j])
                res = parse_ranking(g.text, n, fill)
                stats["tokens_in"] += g.tokens_in
                stats["tokens_out"] += g.tokens_out
                stats["raw"].append(g.text)
                if res.valid > results[k].valid:
                    results[k] = res
        orders = []
        for perm, res in zip(perms, results, strict=True):
            for key, v in res.counts().items():
                stats[key] += v
            orders.append([perm[j] for j in res.order])  # shown position -> window index
        stats["calls"] += len(perms)
        if len(orders) == 1:
            return orders[0], None
        points = borda(orders, n)
        order = sorted(range(n), key=lambda i: (-points[i], i))
        return order, points

    def rank(self, history: History, candidates: Sequence[Candidate]) -> Ranking:
        t0 = time.perf_counter()
        cands = dedupe(candidates)
        n = len(cands)
        stats: dict[str, Any] = {
            "tokens_in": 0, "tokens_out": 0, "valid": 0, "hallucinated": 0, "duplicate": 0,
            "filled_in": 0, "retries": 0, "calls": 0, "raw": [],
        }
        if n == 0:
            return Ranking((), {**self.base_diagnostics(), **stats})
        items = self.candidate_items(cands)
        views = [self.item_view(it) for it in items]
        rng = random.Random(self.seed)
        current = list(range(n))  # indices into cands, current order
        points_all: list[float] | None = None
        if n <= self.window:
            order, points = self._rank_window(history, views, rng, stats)
            current = order
            if points is not None:
                points_all = points
        else:
            end = n
            while True:
                start = max(0, end - self.window)
                sub = current[start:end]
                order, _ = self._rank_window(history, [views[i] for i in sub], rng, stats)
                current[start:end] = [sub[j] for j in order]
                if start == 0:
                    break
                end -= self.step
        diag = {
            **self.base_diagnostics(),
            **stats,
            "permutations": self.permutations,
            "window": self.window,
            "step": self.step,
            "latency_s": time.perf_counter() - t0,
        }
        ids = [cands[i].item_id for i in current]
        if points_all is not None:
            return Ranking.from_scores(ids, [points_all[i] for i in current], diag)
        return Ranking.from_order(ids, diag)


__all__ = ["ListwiseLLMRanker"]
