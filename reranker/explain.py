"""Natural-language explanations for the top of a ranking, with a grounding check.

An explanation is grounded when every product it names (a catalog title) is either in the
user's history or the recommended item itself. Ungrounded explanations are regenerated once
with a stricter prompt; if still ungrounded they are kept but visibly marked
(`[ungrounded] ...` in the explanation and `grounded: false` in the diagnostics).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from .config import BaseConfig
from .llm.base import LLMBackend, LLMConfig
from .llm.prompts import PromptLibrary, get_library
from .ranking.base import ItemListing
from .ranking.llm_common import Catalog, LLMRankerBase, make_lookup
from .types import History, Item, Ranking

log = logging.getLogger(__name__)

UNGROUNDED_MARK = "[ungrounded]"
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_ARTICLE = re.compile(r"^(?P<body>.+),\s*(?P<art>the|a|an)$", re.IGNORECASE)


class ExplainerConfig(BaseConfig):
    """Explanation settings."""

    top_k: int = Field(default=3, ge=0)
    max_new_tokens: int = Field(default=40, ge=8)
    anchor: bool = True
    """Start the answer with 'Because you chose "<history title>", you may like "<item>" because
    it' (the history item most related to the recommendation: same category, most recent), so
    even a small model's explanation cites the user's history; the model writes the reason."""
    repetition_penalty: float = Field(default=1.1, ge=1.0)
    """Small models loop on titles under greedy decoding; > 1 discourages repeats."""
    max_sentences: int = Field(default=2, ge=1)
    """The explanation is cut to its first line and at most this many sentences."""
    min_title_chars: int = Field(default=5, ge=1)
    """Shorter title variants are not matched (avoids flagging common words)."""


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", s.lower()).split())


def title_variants(title: str) -> set[str]:
    """Normalised forms a text may use for a title: as is, without a trailing year, and with a
    trailing article moved to the front ("Birdcage, The (1996)" -> "the birdcage")."""
    out = set()
    base = _YEAR.sub("", title).strip()
    for t in (title, base):
        out.add(_norm(t))
    m = _ARTICLE.match(base)
    if m:
        out.add(_norm(f"{m.group('art')} {m.group('body')}"))
        out.add(_norm(m.group("body")))
    out.discard("")
    return out


def _mentions(text_norm: str, variant: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(variant)}(?!\w)", text_norm) is not None


@dataclass
class GroundingCheck:
    """Which known products an explanation names, and whether all of them are allowed."""

    grounded: bool
    ungrounded: list[str]
    cited_history: list[str]


class TitleIndex:
    """Catalog titles, normalised, for finding product names in free text."""

    def __init__(self, items: Iterable[Item], min_chars: int = 5) -> None:
        self.variants: dict[str, set[str]] = {}  # variant -> item ids
        for it in items:
            for v in title_variants(it.title):
                if len(v) >= min_chars:
                    self.variants.setdefault(v, set()).add(it.item_id)

    def check(self, text: str, history: Sequence[Item], candidate: Item) -> GroundingCheck:
        allowed_ids = {it.item_id for it in history} | {candidate.item_id}
        allowed_variants = set().union(*(title_variants(it.title) for it in [*history, candidate]))
        t = _norm(text)
        bad, cited = [], []
        for v, ids in self.variants.items():
            if v not in t or not _mentions(t, v):
                continue
            if ids & allowed_ids or any(v in a for a in allowed_variants):
                if ids & {it.item_id for it in history}:
                    cited.append(v)
                continue
            bad.append(v)
        # a name that is part of a longer allowed/flagged mention is not a separate product
        bad = [b for b in bad if not any(b != o and b in o for o in bad)]
        for it in history:
            if any(_mentions(t, v) for v in title_variants(it.title) if len(v) >= 3):
                cited.append(_norm(it.title))
        return GroundingCheck(not bad, sorted(set(bad)), sorted(set(cited)))


def _join(anchor: str, continuation: str) -> str:
    """Anchor + generated text (generations come stripped: restore the word break)."""
    c = continuation.strip()
    if not anchor or not c or anchor.endswith(" ") or c[0] in "'’,.;:!?":
        return anchor + c
    return f"{anchor} {c}"


class Explainer:
    """One short LLM explanation per top-k item, grounded in the user's history.

    Stateless per request: `explain` and `build_prompts` take the request's `catalog`
    (None: the catalog given at construction), so one explainer serves many threads."""

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
        self._index: TitleIndex | None = None  # of the default catalog, built on first use
        self._index_lock = threading.Lock()

    @property
    def backend(self) -> LLMBackend:
        if self._backend is None:
            from .llm.loading import load_llm

            self._backend = load_llm(self.config)
        return self._backend

    def title_index(self, catalog: Catalog = None) -> TitleIndex:
        """The titles of `catalog` (None: the default catalog, indexed once and kept)."""
        if catalog is not None:
            return self._build_index(catalog)
        with self._index_lock:
            if self._index is None:
                self._index = self._build_index(self.catalog)
            return self._index

    def _build_index(self, cat: Catalog) -> TitleIndex:
        if cat is None:
            items: Iterable[Item] = []
        elif isinstance(cat, ItemListing):
            items = cat.catalog().values()
        elif isinstance(cat, Mapping):
            lookup = make_lookup(cat)
            items = [lookup(k) for k in cat]
        else:
            items = []
        return TitleIndex(items, self.settings.min_title_chars)

    def _view(self, it: Item, with_text: bool) -> dict:
        """What the explain prompt shows of an item: cleaned, capped text (item text is untrusted,
        `reranker.ranking.item_text`)."""
        from .ranking.item_text import VALUE_CHARS, clean_field, clean_text, clean_title

        text = ""
        if with_text and it.text:
            text = self.backend.truncate_tokens(clean_text(it.text), self.config.item_text_tokens)
        return {"id": it.item_id, "label": "", "title": clean_title(it.title) or clean_title(it.item_id),
                "category": clean_field(it.category, VALUE_CHARS), "attrs": "", "text": text, "rating": None}

    def tidy(self, text: str) -> str:
        """First line only, at most `max_sentences` sentences, whitespace collapsed."""
        first = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
        parts = re.split(r"(?<=[.!?])\s+", " ".join(first.split()))
        return " ".join(parts[: self.settings.max_sentences]).strip()

    def anchor_text(self, history: Sequence[Item], cand: Item) -> str:
        """The answer prefix citing one history item ('' when anchoring is off or no history)."""
        if not self.settings.anchor or not history:
            return ""
        same = [h for h in history if cand.category and h.category == cand.category]
        pick = (same or list(history))[-1]
        from .ranking.item_text import clean_title

        return f'Because you chose "{clean_title(pick.title)}", you may like "{clean_title(cand.title)}" because it'

    def _render(self, history: Sequence[Item], cand: Item, context: dict, strict: bool) -> str:
        tpl = self.prompts.get(self.template)
        hist = [self._view(h, False) for h in history]
        while True:
            p = self.backend.chat_prompt(
                tpl.render(history=hist, candidate=self._view(cand, True), context=context, strict=strict)
            ) + self.anchor_text(history, cand)
            if self.backend.count_tokens(p) + self.settings.max_new_tokens <= self.backend.max_context or not hist:
                return p
            hist = hist[1:]  # oldest first

    def _items(self, history: History, item_ids: Sequence[str], catalog: Catalog) -> tuple[list[Item], list[Item]]:
        lookup = self._lookup if catalog is None else make_lookup(catalog)
        return [lookup(i) for i in history.last(self.max_history).items], [lookup(i) for i in item_ids]

    def build_prompts(
        self, history: History, item_ids: Sequence[str], catalog: Catalog = None, *, strict: bool = False
    ) -> list[str]:
        """The prompt explaining each of `item_ids` to this user (the last `max_history` history
        items, trimmed oldest-first to fit, then the anchor when enabled); `strict` is the retry
        prompt. Items come from `catalog` (None: the explainer's own)."""
        hist_items, cands = self._items(history, item_ids, catalog)
        context = LLMRankerBase.context_view(history)
        return [self._render(hist_items, c, context, strict) for c in cands]

    def explain(
        self, history: History, ranking: Ranking, top_k: int | None = None, catalog: Catalog = None
    ) -> Ranking:
        """The ranking with explanations on its first `top_k` items; per-item grounding results
        go to `diagnostics["explanations"]`. Items come from `catalog` (None: the explainer's
        own)."""
        t0 = time.perf_counter()
        k = self.settings.top_k if top_k is None else top_k
        targets = ranking.items[:k]
        if not targets:
            return ranking
        hist_items, cands = self._items(history, [r.item_id for r in targets], catalog)
        index = self.title_index(catalog)
        gens = self.backend.generate(
            self.build_prompts(history, [c.item_id for c in cands], catalog), self.settings.max_new_tokens,
            repetition_penalty=self.settings.repetition_penalty,
        )
        anchors = [self.anchor_text(hist_items, c) for c in cands]
        texts = [self.tidy(_join(a, g.text)) for a, g in zip(anchors, gens, strict=True)]
        tokens_in = sum(g.tokens_in for g in gens)
        tokens_out = sum(g.tokens_out for g in gens)
        checks = [index.check(t, hist_items, c) for t, c in zip(texts, cands, strict=True)]
        redo = [i for i, ch in enumerate(checks) if not ch.grounded]
        if redo:
            regens = self.backend.generate(
                self.build_prompts(history, [cands[i].item_id for i in redo], catalog, strict=True),
                self.settings.max_new_tokens,
                repetition_penalty=self.settings.repetition_penalty,
            )
            for i, g in zip(redo, regens, strict=True):
                texts[i] = self.tidy(_join(anchors[i], g.text))
                checks[i] = index.check(texts[i], hist_items, cands[i])
                tokens_in += g.tokens_in
                tokens_out += g.tokens_out
        out: dict[str, str] = {}
        details: dict[str, Any] = {}
        for i, (c, text, ch) in enumerate(zip(cands, texts, checks, strict=True)):
            out[c.item_id] = text if ch.grounded else f"{UNGROUNDED_MARK} {text}"
            details[c.item_id] = {
                "grounded": ch.grounded,
                "regenerated": i in redo,
                "ungrounded_mentions": ch.ungrounded,
                "cited_history": ch.cited_history,
            }
            if not ch.grounded:
                log.info("explanation for %s still ungrounded after retry: %s", c.item_id, ch.ungrounded)
        diag = dict(ranking.diagnostics)
        diag["explanations"] = details
        diag["explain"] = {
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "regenerated": len(redo),
            "ungrounded": sum(not ch.grounded for ch in checks),
            "latency_s": time.perf_counter() - t0,
        }
        return Ranking(ranking.with_explanations(out).items, diag)


__all__ = ["Explainer", "ExplainerConfig", "TitleIndex", "GroundingCheck", "title_variants", "UNGROUNDED_MARK"]
