"""PALR select-and-rank: the LLM sees numbered candidates and answers with numbers."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, Literal

from ..errors import ConfigError, ModelError
from ..llm.base import ConstrainedListBackend
from ..llm.constrained import LabelList
from ..types import Candidate, History, Ranking
from .hints import hint_views
from .llm_common import Catalog, LLMRankerBase, RankPrompts, dedupe, permutation_orders
from .parsing import ParseResult, borda, parse_ranking


class ListwiseLLMRanker(LLMRankerBase):
    """Generative listwise ranking with strict parsing.

    - `permutations` (P): the candidate list is shown in P orders (the first is the stage-1
      order, the others seeded shuffles) and the parsed rankings are merged with Borda counts,
      against position bias. All P prompts of a window run in one batched `generate`.
    - `window`/`step`: more candidates than `window` are ranked with a sliding window from the
      back of the list to the front (RankGPT style), each window ranked as above.
    - An answer with fewer than half valid numbers is retried once with a stricter prompt.
    - `decoding`: `constrained` (select-only) holds the generation to the answer format: only
      the labels not yet used, the separator, and end-of-answer once all n are placed
      (`reranker.llm.constrained`; in process a logits processor, behind a server its grammar or
      guided decoding, `server.constrained_decoding`). `free` generates freely and repairs the
      answer with the strict parser (out-of-range and repeated numbers dropped, missing
      candidates filled in in stage-1 order). `auto` (the default): constrained where the
      backend can hold the answer (`ConstrainedListBackend.can_constrain`: in process always,
      a server when `server.constrained_decoding` names its mechanism), free otherwise; the
      diagnostics' `decoding` says which ran.
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
        decoding: Literal["auto", "constrained", "free"] = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self.max_new_tokens = max_new_tokens
        if decoding not in ("auto", "constrained", "free"):
            raise ConfigError(f"decoding: must be 'auto', 'constrained' or 'free', got {decoding!r}")
        self.decoding = decoding
        if permutations < 1:
            raise ConfigError(f"permutations: must be >= 1, got {permutations}")
        if window < 2 or not 1 <= step <= window:
            raise ConfigError(f"window/step: need window >= 2 and 1 <= step <= window, got window {window}, step {step}")
        self.permutations = permutations
        self.window = window
        self.step = step
        self.seed = seed

    def decoding_used(self) -> str:
        """`constrained` or `free`: what `decoding` means with this ranker's backend (`auto`:
        constrained where the backend can hold the answer to the labels)."""
        if self.decoding == "free":
            return "free"
        backend = self.backend
        able = isinstance(backend, ConstrainedListBackend) and backend.can_constrain
        if self.decoding == "constrained" and not able:
            raise ModelError(f"{self.name}: decoding: constrained needs a backend that can hold an answer to a "
                             f"label list; {type(backend).__name__} cannot (through a server: set "
                             "server.constrained_decoding; else use decoding: free or auto)")
        return "constrained" if able else "free"

    def _max_new_tokens(self, n: int) -> int:
        """The answer budget unless capped. Free: room for every number and its separator
        ("12, " taken as 3 tokens; SmolLM2 spells it in 4, so a complete 20-item answer needs
        70 and is cut at 64: the free budget is kept as it was measured). Constrained: one token
        per character of the longest complete answer, plus end-of-text (always enough)."""
        if self.decoding_used() == "constrained":
            need = len(", ".join(str(i + 1) for i in range(n))) + 1
        else:
            need = 3 * n + 4
        return min(need, self.max_new_tokens) if self.max_new_tokens else need

    def build_prompts(
        self,
        history: History,
        candidates: Sequence[Candidate],
        catalog: Catalog = None,
        *,
        strict: bool = False,
        orders: Sequence[Sequence[int]] | None = None,
    ) -> RankPrompts:
        """The prompts for ranking one window of candidates: one per shown order, candidates
        numbered 1..n in the order shown, history trimmed oldest-first to leave room for the
        answer. `orders` default to what `rank` shows a list that fits one window (the stage-1
        order, then `permutations - 1` shuffles seeded with `seed`); `strict` is the retry
        prompt. Lists longer than `window` are ranked window by window, each through here.
        Items come from `catalog` (None: the ranker's own)."""
        hints, mode = hint_views(candidates, self.cf_hint)
        views = [dict(v, hint=h) for v, h in zip(self.candidate_views(candidates, catalog), hints, strict=True)]
        n = len(views)
        if orders is None:
            orders = permutation_orders(n, self.permutations, random.Random(self.seed))
        tpl = self.prompts.get(self.template)
        context = self.context_view(history)
        hist = self.history_views(history, catalog)
        labels = tuple(str(i + 1) for i in range(n))
        prompts, kept = [], []
        for order in orders:
            shown = [dict(views[i], label=labels[j]) for j, i in enumerate(order)]

            def render(h: list[dict], shown: list[dict] = shown) -> str:
                return self.backend.chat_prompt(
                    tpl.render(history=h, candidates=shown, context=context, strict=strict, n=n, cf_hint=mode)
                )

            prompt, k = self.fit_history(render, hist, self._max_new_tokens(n))
            prompts.append(prompt)
            kept.append(k)
        return RankPrompts(tuple(prompts), tuple(tuple(o) for o in orders), labels, tuple(kept))

    def _rank_window(
        self, history: History, cands: list[Candidate], rng: random.Random, stats: dict[str, Any],
        catalog: Catalog,
    ) -> tuple[list[int], list[float] | None]:
        """Rank one window (candidates in current order). Returns (order of indices, Borda points)."""
        return self._rank_windows([(history, cands, rng, stats)], catalog)[0]

    def _rank_windows(
        self, jobs: Sequence[tuple[History, list[Candidate], random.Random, dict[str, Any]]], catalog: Catalog
    ) -> list[tuple[list[int], list[float] | None]]:
        """Rank several windows (one per job: history, candidates, rng, stats) with one batched
        `generate` for all their prompts and one for all their strict retries."""
        perms_of: list[list[list[int]]] = []
        prompts: list[str] = []
        owner: list[tuple[int, int]] = []  # prompt -> (job, permutation)
        for j, (history, cands, rng, stats) in enumerate(jobs):
            perms = permutation_orders(len(cands), self.permutations, rng)
            perms_of.append(perms)
            built = self.build_prompts(history, cands, catalog, orders=perms)
            for k, (prompt, kept) in enumerate(zip(built.prompts, built.history_used, strict=True)):
                prompts.append(prompt)
                owner.append((j, k))
                stats["history_used"] = min(stats.get("history_used", kept), kept)
        sizes = [len(jobs[j][1]) for j, _ in owner]
        gens = self._generate(prompts, [self._max_new_tokens(k) for k in sizes], sizes)
        results: list[list[ParseResult | None]] = [[None] * len(p) for p in perms_of]
        retry: list[tuple[int, int]] = []
        for (j, k), g in zip(owner, gens, strict=True):
            n, stats = len(jobs[j][1]), jobs[j][3]
            res = self._parse(g, perms_of[j][k], stats)
            results[j][k] = res
            if res.valid < n / 2:
                retry.append((j, k))
        if retry:
            retry_prompts = [
                self.build_prompts(jobs[j][0], jobs[j][1], catalog, strict=True, orders=[perms_of[j][k]]).prompts[0]
                for j, k in retry
            ]
            sizes = [len(jobs[j][1]) for j, _ in retry]
            regens = self._generate(retry_prompts, [self._max_new_tokens(k) for k in sizes], sizes)
            for (j, k), g in zip(retry, regens, strict=True):
                jobs[j][3]["retries"] += 1
                res = self._parse(g, perms_of[j][k], jobs[j][3])
                old = results[j][k]
                if old is None or res.valid > old.valid:
                    results[j][k] = res
        out: list[tuple[list[int], list[float] | None]] = []
        for j, (_, cands, _, stats) in enumerate(jobs):
            n = len(cands)
            orders = []
            for perm, parsed in zip(perms_of[j], results[j], strict=True):
                assert parsed is not None
                for key, v in parsed.counts().items():
                    stats[key] += v
                orders.append([perm[i] for i in parsed.order])  # shown position -> window index
            stats["calls"] += len(perms_of[j])
            if len(orders) == 1:
                out.append((orders[0], None))
                continue
            points = borda(orders, n)
            out.append(([i for _, i in sorted((-points[i], i) for i in range(n))], points))
        return out

    def _generate(self, prompts: list[str], max_new: list[int], sizes: list[int]) -> list[Any]:
        """One batched `generate` per distinct list size and answer budget (windows of the same
        size share one), answers in prompt order; held to the label list of its size when
        `decoding` is constrained."""
        out: list[Any] = [None] * len(prompts)
        backend: Any = self.backend
        constrained = self.decoding_used() == "constrained"
        for n, budget in sorted(set(zip(sizes, max_new, strict=True))):
            idx = [i for i, (k, m) in enumerate(zip(sizes, max_new, strict=True)) if (k, m) == (n, budget)]
            batch = [prompts[i] for i in idx]
            if constrained:
                gens = backend.generate_label_list(batch, LabelList.numbered(n), budget, seed=self.seed)
            else:
                gens = backend.generate(batch, budget, seed=self.seed)
            for i, g in zip(idx, gens, strict=True):
                out[i] = g
        return out

    def _parse(self, g: Any, perm: list[int], stats: dict[str, Any]) -> ParseResult:
        """Parse one generation; missing candidates are filled in in stage-1 order (the shown
        positions sorted by their window index)."""
        n = len(perm)
        fill = sorted(range(n), key=lambda j: perm[j])
        stats["tokens_in"] += g.tokens_in
        stats["tokens_out"] += g.tokens_out
        stats["raw"].append(g.text)
        return parse_ranking(g.text, n, fill)

    @property
    def users_per_batch(self) -> int:
        """How many users `rank_many` should get at once: one generate batch of prompts."""
        return max(1, self.backend.config.batch_size // self.permutations)

    def _start(self, candidates: Sequence[Candidate], catalog: Catalog) -> tuple[list[Candidate], dict[str, Any]]:
        cands = dedupe(candidates)
        stats: dict[str, Any] = {
            "tokens_in": 0, "tokens_out": 0, "valid": 0, "hallucinated": 0, "duplicate": 0,
            "filled_in": 0, "retries": 0, "calls": 0, "raw": [],
        }
        self.candidate_items(cands, catalog)  # an unknown id fails before any generation
        return cands, stats

    def _finish(
        self, cands: list[Candidate], current: list[int], points: list[float] | None,
        stats: dict[str, Any], seconds: float,
    ) -> Ranking:
        diag = {
            **self.base_diagnostics(),
            **stats,
            "permutations": self.permutations,
            "decoding": self.decoding_used(),
            "window": self.window,
            "step": self.step,
            "latency_s": seconds,
        }
        ids = [cands[i].item_id for i in current]
        if points is not None:
            return Ranking.from_scores(ids, [points[i] for i in current], diag)
        return Ranking.from_order(ids, diag)

    def rank(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> Ranking:
        t0 = time.perf_counter()
        return self._rank_started(history, *self._start(candidates, catalog), t0, catalog)

    def _rank_started(
        self, history: History, cands: list[Candidate], stats: dict[str, Any], t0: float, catalog: Catalog
    ) -> Ranking:
        n = len(cands)
        if n == 0:
            return Ranking((), {**self.base_diagnostics(), **stats})
        rng = random.Random(self.seed)
        if n <= self.window:
            order, points = self._rank_window(history, cands, rng, stats, catalog)
            return self._finish(cands, order, points, stats, time.perf_counter() - t0)
        current = list(range(n))  # indices into cands, current order
        end = n
        while True:
            start = max(0, end - self.window)
            sub = current[start:end]
            order, _ = self._rank_window(history, [cands[i] for i in sub], rng, stats, catalog)
            current[start:end] = [sub[j] for j in order]
            if start == 0:
                break
            end -= self.step
        return self._finish(cands, current, None, stats, time.perf_counter() - t0)

    def rank_many(
        self, requests: Sequence[tuple[History, Sequence[Candidate]]], catalog: Catalog = None
    ) -> list[Ranking]:
        """`rank` for several users at once: the prompts of every user whose list fits one
        window go through one batched `generate` (decoding a small model on a CPU is
        memory-bound: a step for 16 prompts costs a few times one prompt's step, not 16 times),
        then one for all their strict retries. Empty lists and lists longer than the window are
        ranked one by one (their `latency_s` is their own); the batched users' `latency_s` is
        the whole call's wall time divided by the number of requests. `catalog` holds the items
        of every request (None: the ranker's own)."""
        t0 = time.perf_counter()
        out: list[Ranking | None] = [None] * len(requests)
        batch: list[int] = []
        started = []
        for i, (history, candidates) in enumerate(requests):
            t1 = time.perf_counter()
            cands, stats = self._start(candidates, catalog)
            if 0 < len(cands) <= self.window:
                batch.append(i)
                started.append((cands, stats))
            else:
                out[i] = self._rank_started(history, cands, stats, t1, catalog)
        if batch:
            jobs = [
                (requests[i][0], cands, random.Random(self.seed), stats)
                for i, (cands, stats) in zip(batch, started, strict=True)
            ]
            ranked = self._rank_windows(jobs, catalog)
            per_user = (time.perf_counter() - t0) / len(requests)
            for i, (cands, stats), (order, points) in zip(batch, started, ranked, strict=True):
                out[i] = self._finish(cands, order, points, stats, per_user)
        return [r for r in out if r is not None]


__all__ = ["ListwiseLLMRanker"]
