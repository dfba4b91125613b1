"""Natural-language explanations for the top of a ranking, built from evidence and checked.

For each explained item the explainer computes the **evidence** (:mod:`reranker.explain_evidence`):
the history item to cite, what the two items share (categories and genres, attribute values,
description words) and, when the call passes interactions (the fitted stage-1 / training
data), how many other users chose both. Then, by ``mode``:

- ``llm`` (default): the model phrases the evidence (``prompts/explain.j2``: the evidence as
  cleaned, delimited data, the instruction last). The **faithfulness check**
  (:mod:`reranker.explain_check`) flags every category, attribute value, product or
  price/quality claim the text says of an item that is neither in the shared evidence nor in
  that item's own text (a genre of the cited item said of the recommended one is flagged),
  and every title, name or year in neither item's text. A flagged text is
  regenerated once with a stricter prompt; still flagged, it is replaced by the template
  sentence. So what is shown has passed the check or is the template.
- ``template``: no LLM; the template sentence built from the evidence alone
  (``You may like "Y" because you chose "X": both are Comedy; 12 other users who chose "X"
  also chose it.``).

Per-item details go to ``diagnostics["explanations"]`` (the evidence, whether the text was
regenerated or fell back, the flagged mentions of each attempt), totals to
``diagnostics["explain"]``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from .config import BaseConfig
from .errors import ConfigError
from .explain_check import ClaimVocabulary, FaithfulnessCheck, title_forms
from .explain_evidence import (
    CoChoices,
    Evidence,
    choose_evidence,
    display_title,
    item_attributes,
    item_categories,
)
from .llm.base import LLMBackend, LLMConfig
from .llm.prompts import PromptLibrary, get_library
from .ranking.llm_common import Catalog, LLMRankerBase, make_lookup
from .types import History, Item, Ranking

log = logging.getLogger(__name__)

ExplainMode = Literal["llm", "template"]
EXPLAIN_MODES: tuple[str, ...] = ("llm", "template")


class ExplainerConfig(BaseConfig):
    """Explanation settings."""

    mode: ExplainMode = "llm"
    """llm: the model phrases the evidence, checked, regenerated once, else the template
    sentence; template: the template sentence from the evidence alone (no LLM)."""
    top_k: int = Field(default=3, ge=0)
    max_new_tokens: int = Field(default=40, ge=8)
    anchor: bool = True
    """Start the answer with 'Because you chose "<cited history title>", you may like "<item>"
    because it', so even a small model's explanation cites the evidence's history item."""
    repetition_penalty: float = Field(default=1.1, ge=1.0)
    """Small models loop on titles under greedy decoding; > 1 discourages repeats."""
    max_sentences: int = Field(default=2, ge=1)
    """The explanation is cut to its first line and at most this many sentences."""
    min_title_chars: int = Field(default=5, ge=1)
    """Shorter titles are not matched by the check (avoids flagging common words)."""


def title_variants(title: str) -> set[str]:
    """Lower-cased forms a text may use for a title (see `reranker.explain_check.title_forms`)."""
    return {" ".join(re.sub(r"[^\w\s']", " ", f.lower()).split()) for f in title_forms(title)} - {""}


def _join(anchor: str, continuation: str) -> str:
    """Anchor + generated text (generations come stripped: restore the word break)."""
    c = continuation.strip()
    if not anchor or not c or anchor.endswith(" ") or c[0] in "'’,.;:!?":
        return anchor + c
    return f"{anchor} {c}"


class Explainer:
    """One short explanation per top-k item, built from evidence and checked (module doc).

    Stateless per request: `explain` and `build_prompts` take the request's `catalog` (None: the
    catalog given at construction) and `interactions`, so one explainer serves many threads."""

    template = "explain"

    def __init__(
        self,
        config: LLMConfig | None = None,
        *,
        explain_config: ExplainerConfig | None = None,
        backend: LLMBackend | None = None,
        catalog: Catalog = None,
        prompts: PromptLibrary | None = None,
        max_history: int = 10,
    ) -> None:
        self.config = config or (backend.config if backend is not None else LLMConfig())
        self.settings = explain_config or ExplainerConfig()
        self._backend = backend
        self.prompts = prompts or get_library(self.config.prompt_dir)
        self.prompts.get(self.template)
        self.max_history = max_history
        self.catalog = catalog  # the default catalog (a setting); a request may pass its own
        self._lookup = make_lookup(catalog)
        self._vocab: ClaimVocabulary | None = None  # of the default catalog, built on first use
        self._vocab_lock = threading.Lock()

    @property
    def backend(self) -> LLMBackend:
        if self._backend is None:
            from .llm.loading import load_llm

            self._backend = load_llm(self.config)
        return self._backend

    # ------------------------------------------------------------------ the check
    def vocabulary(self, catalog: Catalog = None) -> ClaimVocabulary:
        """The claim vocabulary of `catalog` (None: the default catalog, built once and kept)."""
        if catalog is not None:
            return ClaimVocabulary.from_catalog(catalog, min_title_chars=self.settings.min_title_chars)
        with self._vocab_lock:
            if self._vocab is None:
                self._vocab = ClaimVocabulary.from_catalog(self.catalog, min_title_chars=self.settings.min_title_chars)
            return self._vocab

    # ------------------------------------------------------------------ evidence
    def _items(self, history: History, item_ids: Sequence[str], catalog: Catalog) -> tuple[list[Item], list[Item]]:
        lookup = self._lookup if catalog is None else make_lookup(catalog)
        return [lookup(i) for i in history.last(self.max_history).items], [lookup(i) for i in item_ids]

    def evidence(
        self, history: History, item_ids: Sequence[str], catalog: Catalog = None, interactions: Any = None
    ) -> list[Evidence | None]:
        """The evidence for each of `item_ids` (None where the history is empty). `interactions`
        (a Dataset, a frame with user_id / item_id, or a `CoChoices`) gives the co-choice
        counts; None leaves them out."""
        hist_items, cands = self._items(history, item_ids, catalog)
        co = None
        if interactions is not None:
            co = CoChoices.from_data(interactions, [*(h.item_id for h in hist_items), *item_ids])
        return [choose_evidence(hist_items, c, co, history.user_id) for c in cands]

    # ------------------------------------------------------------------ prompts
    def _view(self, it: Item, with_text: bool) -> dict:
        """What the explain prompt shows of an item: cleaned, capped text (item text is untrusted,
        `reranker.ranking.item_text`)."""
        from .ranking.item_text import VALUE_CHARS, clean_field, clean_text

        text = ""
        if with_text and it.text and self.config.item_text_tokens > 0:
            text = self.backend.truncate_tokens(clean_text(it.text), self.config.item_text_tokens)
        category = clean_field(it.category, VALUE_CHARS)
        details = [*item_categories(it), *item_attributes(it).values()]
        return {"id": it.item_id, "label": "", "title": display_title(it), "category": category,
                "details": ", ".join(dict.fromkeys(details)), "attrs": "", "text": text, "rating": None}

    def tidy(self, text: str, anchor: str = "") -> str:
        """`anchor` + the first line of `text`, at most `max_sentences` sentences, whitespace
        collapsed (a "!" or "." inside the anchor's titles ends no sentence)."""
        first = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
        parts = re.split(r"(?<=[.!?])\s+", " ".join(first.split()))
        if not anchor:
            return " ".join(parts[: self.settings.max_sentences]).strip()
        return _join(anchor, " ".join(parts[: self.settings.max_sentences]).strip()).strip()

    def anchor_text(self, ev: Evidence) -> str:
        """The answer prefix citing the evidence's history item ('' when anchoring is off)."""
        if not self.settings.anchor:
            return ""
        return f'Because you chose "{ev.cited_title}", you may like "{ev.candidate_title}" because it'

    def _render(self, history: Sequence[Item], ev: Evidence, context: dict, strict: bool) -> str:
        tpl = self.prompts.get(self.template)
        hist = [self._view(h, False) for h in history]
        evidence = {"cited": self._view(ev.cited, False), "facts": ev.facts()}
        with_text = True
        while True:
            body = tpl.render(history=hist, candidate=self._view(ev.candidate, with_text), context=context,
                              strict=strict, evidence=evidence)
            p = self.backend.chat_prompt(body) + self.anchor_text(ev)
            if self.backend.count_tokens(p) + self.settings.max_new_tokens <= self.backend.max_context:
                return p
            if hist:
                hist = hist[1:]  # oldest first (for a user template that shows the history)
            elif with_text:
                with_text = False
            else:
                return p

    def build_prompts(
        self, history: History, item_ids: Sequence[str], catalog: Catalog = None, *, strict: bool = False,
        interactions: Any = None, evidence: Sequence[Evidence | None] | None = None,
    ) -> list[str]:
        """The prompt explaining each of `item_ids` to this user (the evidence as data, then the
        anchor when enabled); `strict` is the retry prompt. Items come from `catalog` (None: the
        explainer's own). An item without evidence (empty history) gets no prompt ('')."""
        hist_items, _ = self._items(history, item_ids, catalog)
        evs = list(evidence) if evidence is not None else self.evidence(history, item_ids, catalog, interactions)
        context = LLMRankerBase.context_view(history)
        return ["" if ev is None else self._render(hist_items, ev, context, strict) for ev in evs]

    # ------------------------------------------------------------------ explain
    def explain(
        self, history: History, ranking: Ranking, top_k: int | None = None, catalog: Catalog = None, *,
        interactions: Any = None, mode: str | None = None,
    ) -> Ranking:
        """The ranking with explanations on its first `top_k` items (module doc). Items come
        from `catalog` (None: the explainer's own); `interactions` (the fitted / training data of
        this call) gives the co-choice counts; `mode` overrides the configured one."""
        return self.explain_many([(history, ranking)], top_k, catalog, interactions=interactions, mode=mode)[0]

    def explain_many(
        self, requests: Sequence[tuple[History, Ranking]], top_k: int | None = None, catalog: Catalog = None, *,
        interactions: Any = None, mode: str | None = None,
    ) -> list[Ranking]:
        """`explain` for several (history, ranking) pairs: in ``llm`` mode the first answers of
        every pair go to the backend in one `generate` call and the retries in a second, so a
        batching backend decodes them together (same texts as one pair at a time, up to the
        batch's padding). Each result's ``diagnostics["explain"]["latency_s"]`` is the whole
        call's time."""
        t0 = time.perf_counter()
        mode = mode or self.settings.mode
        if mode not in EXPLAIN_MODES:
            raise ConfigError(f"explain mode: must be one of {', '.join(EXPLAIN_MODES)}, got {mode!r}")
        k = self.settings.top_k if top_k is None else top_k
        id_lists = [[r.item_id for r in ranking.items[:k]] for _, ranking in requests]
        if interactions is not None and len(requests) > 1:
            # the co-choice counts of every request's items from one pass over the interactions
            # (each request then takes its own items from it, as it would from the full data)
            interactions = CoChoices.from_data(interactions, {
                i for (history, _), ids in zip(requests, id_lists, strict=True) if ids
                for i in (*history.last(self.max_history).items, *ids)})
        jobs: list[tuple[list[str], list[Evidence | None]]] = [
            (ids, self.evidence(history, ids, catalog, interactions) if ids else [])
            for (history, _), ids in zip(requests, id_lists, strict=True)
        ]
        texts: list[dict[str, str]] = [{} for _ in requests]
        details: list[dict[str, Any]] = [{} for _ in requests]
        totals = [{"tokens_in": 0, "tokens_out": 0, "regenerated": 0, "fallback": 0, "template": 0} for _ in requests]
        todo = [(r, i, ev) for r, (ids, evs) in enumerate(jobs) for i, ev in zip(ids, evs, strict=True)
                if ev is not None]
        if mode == "template":
            for r, i, ev in todo:
                texts[r][i] = ev.sentence()
                details[r][i] = {"mode": "template", "source": "template", "regenerated": False, "fallback": False,
                                 "unsupported": [], "evidence": ev.to_dict()}
                totals[r]["template"] += 1
        elif todo:
            self._explain_llm([h for h, _ in requests], todo, catalog, texts, details, totals)
        latency = time.perf_counter() - t0
        out = []
        for r, (_, ranking) in enumerate(requests):
            ids, evs = jobs[r]
            if not ids:
                out.append(ranking)
                continue
            for i, maybe in zip(ids, evs, strict=True):
                if maybe is None:  # an empty history: nothing to cite, no explanation
                    details[r][i] = {"mode": mode, "source": None, "evidence": None}
            diag = dict(ranking.diagnostics)
            diag["explanations"] = details[r]
            diag["explain"] = {"mode": mode, **totals[r], "latency_s": latency}
            out.append(Ranking(ranking.with_explanations(texts[r]).items, diag))
        return out

    def _explain_llm(
        self, histories: Sequence[History], todo: list[tuple[int, str, Evidence]], catalog: Catalog,
        texts: list[dict[str, str]], details: list[dict[str, Any]], totals: list[dict[str, int]],
    ) -> None:
        """`todo`: (request index, item id, evidence); results go to the request's dicts."""
        vocab = self.vocabulary(catalog)
        views = {r: (self._items(histories[r], [], catalog)[0], LLMRankerBase.context_view(histories[r]))
                 for r in dict.fromkeys(r for r, _, _ in todo)}

        def attempt(jobs: list[tuple[int, str, Evidence]], strict: bool) -> list[tuple[str, FaithfulnessCheck]]:
            prompts = [self._render(views[r][0], ev, views[r][1], strict) for r, _, ev in jobs]
            gens = self.backend.generate(prompts, self.settings.max_new_tokens,
                                         repetition_penalty=self.settings.repetition_penalty)
            out = []
            for (r, _, ev), g in zip(jobs, gens, strict=True):
                totals[r]["tokens_in"] += g.tokens_in
                totals[r]["tokens_out"] += g.tokens_out
                text = self.tidy(g.text, self.anchor_text(ev))
                out.append((text, vocab.check(text, ev)))
            return out

        first = attempt(todo, strict=False)
        redo = [j for j, (_, ch) in enumerate(first) if not ch.faithful]
        second = dict(zip(redo, attempt([todo[j] for j in redo], strict=True), strict=True)) if redo else {}
        for j, (r, item_id, ev) in enumerate(todo):
            text, ch = first[j]
            d: dict[str, Any] = {"mode": "llm", "source": "llm", "regenerated": j in second, "fallback": False,
                                 "unsupported": [], "first_unsupported": ch.unsupported, "evidence": ev.to_dict()}
            if j in second:
                totals[r]["regenerated"] += 1
                text, ch2 = second[j]
                d["retry_unsupported"] = ch2.unsupported
                d["source"] = "llm-retry"
                if not ch2.faithful:
                    log.info("explanation for %s still unsupported after the retry (%s): template sentence",
                             item_id, ", ".join(ch2.unsupported))
                    text = ev.sentence()
                    d["source"] = "template"
                    d["fallback"] = True
                    totals[r]["fallback"] += 1
            texts[r][item_id] = text
            details[r][item_id] = d


__all__ = ["Explainer", "ExplainerConfig", "ExplainMode", "EXPLAIN_MODES", "title_variants"]
