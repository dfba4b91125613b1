"""Shared plumbing of the LLM rankers: catalog lookup, item views for prompts, history fitting."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import ConfigError, DataError, ModelError
from ..llm.base import LLMBackend, LLMConfig, ScoreResult
from ..llm.prompts import PromptLibrary, get_library
from ..types import Candidate, History, Item
from .base import Catalog, ItemLookup, dedupe  # noqa: F401  (re-exported for the LLM rankers)
from .item_text import CONTEXT_CHARS, KEY_CHARS, VALUE_CHARS, clean_field, clean_text, clean_title

log = logging.getLogger(__name__)

#: distinct (item text, token budget) pairs whose truncation a ranker remembers
TEXT_CACHE_SIZE = 8192

#: fields a request may send with a candidate that describe the request, not the item: never
#: shown as item attributes
REQUEST_ONLY_FIELDS = frozenset({"score", "source"})


def make_lookup(catalog: Catalog) -> Callable[[str], Item]:
    """A function id -> Item over a dict of Items/dicts or a Dataset (`.item(id)`)."""
    if catalog is None:

        def missing(item_id: str) -> Item:
            raise DataError(
                f"item {item_id!r}: no catalog given; pass catalog=... (dict id -> Item, or a Dataset)"
            )

        return missing
    if isinstance(catalog, ItemLookup):

        def from_dataset(item_id: str) -> Item:
            try:
                return catalog.item(item_id)
            except KeyError:
                raise DataError(f"item {item_id!r} is not in the catalog") from None

        return from_dataset
    if isinstance(catalog, Mapping):

        def from_mapping(item_id: str) -> Item:
            it = catalog.get(item_id)
            if it is None:
                raise DataError(f"item {item_id!r} is not in the catalog")
            return it if isinstance(it, Item) else Item.from_dict({"id": item_id, **dict(it)})

        return from_mapping
    raise DataError(f"catalog must be a dict id -> Item or a Dataset, got {type(catalog).__name__}")


def details_text(category: str, values: Sequence[str]) -> str:
    """The compact item details: category and attribute values, comma-separated; a value that
    repeats the category (ml-100k's genre) is shown once (prompt version 2)."""
    if not category:
        return ", ".join(values)
    return ", ".join([category, *(v for v in values if v.lower() != category.lower())])


def wants_hidden(backend: LLMBackend) -> bool:
    """Whether a ranker asks `backend` for hidden states: every backend but a server (`openai`),
    which has none (asking a caching proxy would load the model behind it)."""
    return getattr(backend.config, "backend", "transformers") != "openai"


def label_stats(res: ScoreResult) -> dict[str, int]:
    """How many label scores a server's top-k left out (`labels_missing` of `labels_scored`),
    for the diagnostics; empty for exact backends."""
    return {k: int(res.meta[k]) for k in ("labels_missing", "labels_scored") if k in res.meta}


def letter_labels(n: int) -> list[str]:
    if n > 26:
        raise ValueError("at most 26 letter labels")
    return [chr(ord("A") + i) for i in range(n)]


def permutation_orders(n: int, permutations: int, rng: random.Random) -> list[list[int]]:
    """The orders a list is shown in: the stage-1 order first, then `permutations - 1` seeded
    shuffles drawn from `rng`."""
    return [list(range(n))] + [rng.sample(range(n), n) for _ in range(permutations - 1)]


@dataclass(frozen=True)
class RankPrompts:
    """The prompts a list-wise LLM ranker sends for one candidate list, one per shown order.

    `orders[k][j]` is the index (into the candidates given) of the candidate shown at position
    j of prompt k, under the label `labels[j]` (the same labels in every prompt);
    `history_used[k]` is how many history items prompt k kept (oldest are trimmed to fit).
    """

    prompts: tuple[str, ...]
    orders: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...]
    history_used: tuple[int, ...]

    def label_of(self, k: int, i: int) -> str:
        """The label candidate `i` carries in prompt `k`."""
        return self.labels[self.orders[k].index(i)]


class LLMRankerBase:
    """Base of the LLM rankers: owns the backend (loaded lazily), prompts and item views.

    `max_history` caps the history shown (most recent items); `max_prompt_tokens` caps the
    prompt below the model's context (history is trimmed oldest-first to fit, never candidates).
    `cf_hint` (`none`, `rank`, `band`; rankers whose template declares `cf_hint`) shows each
    candidate's stage-1 rank or score band, computed from the call's candidates' scores
    (`reranker.ranking.hints`).

    Stateless per request: `catalog` given here is the default; every scoring / ranking / prompt
    method takes a request's own `catalog` and nothing of a request is stored on the ranker, so
    one instance serves many threads. Each ranker's public `build_prompts` is the one place its
    prompts are rendered (its own scoring code and fine-tuning examples use it).
    """

    name = "llm"
    template = ""

    def __init__(
        self,
        config: LLMConfig | None = None,
        *,
        backend: LLMBackend | None = None,
        catalog: Catalog = None,
        prompts: PromptLibrary | None = None,
        max_history: int = 20,
        max_prompt_tokens: int | None = None,
        cf_hint: str = "none",
    ) -> None:
        self.config = config or (backend.config if backend is not None else LLMConfig())
        self.max_prompt_tokens = max_prompt_tokens
        self._backend = backend
        self.catalog = catalog  # the default catalog (a setting); a request may pass its own
        self._lookup = make_lookup(catalog)
        self.prompts = prompts or get_library(self.config.prompt_dir)
        if self.template:
            tpl = self.prompts.get(self.template)  # fail at start-up on a broken template
            if cf_hint != "none" and "cf_hint" not in tpl.variables:
                raise ConfigError(f"cf_hint: {cf_hint!r} needs a {self.template} template that declares and "
                                  f"shows the variable cf_hint; {tpl.path} does not")
        if cf_hint not in ("none", "rank", "band"):
            raise ConfigError(f"cf_hint: must be none, rank or band, got {cf_hint!r}")
        self.cf_hint = cf_hint
        self.max_history = max_history
        # keyed by (text, budget): items of different catalogs can never collide; thread-safe
        self._truncate = lru_cache(maxsize=TEXT_CACHE_SIZE)(self._truncate_text)

    @property
    def backend(self) -> LLMBackend:
        if self._backend is None:
            from ..llm.loading import load_llm

            self._backend = load_llm(self.config)
        return self._backend

    def lookup(self, item_id: str, catalog: Catalog = None) -> Item:
        """The item `item_id` of `catalog` (None: the ranker's own catalog)."""
        return (self._lookup if catalog is None else make_lookup(catalog))(item_id)

    def _truncate_text(self, text: str, n_tokens: int) -> str:
        return self.backend.truncate_tokens(text, n_tokens)

    # ---------------------------------------------------------------- views
    def item_view(self, item: Item, label: str | None = None, with_text: bool = True) -> dict:
        """What the LLM sees of an item: title, category, a few attributes, truncated text,
        each cleaned and length-capped (`reranker.ranking.item_text`: item text is untrusted).

        `attrs` spells the attributes as `key: value`; `details` is the compact form the
        built-in templates show in brackets after the title: category and attribute values
        (`Drama, 1995`), which costs about a quarter fewer tokens per item. Request-only fields
        (`REQUEST_ONLY_FIELDS`: a candidate's stage-1 `score` given with its item) are never
        shown as attributes; `candidate_views` carries the score as `score` for a template
        that asks for it."""
        attrs: list[str] = []
        values: list[str] = []
        for k, v in list(item.attrs.items()):
            if len(attrs) >= self.config.max_attrs:
                break
            if v is None or v == "" or isinstance(v, (dict, list, tuple)) or str(k) in REQUEST_ONLY_FIELDS:
                continue
            key, sv = clean_field(k, KEY_CHARS), clean_field(v, VALUE_CHARS)
            if not key or not sv:
                continue
            attrs.append(f"{key}: {sv}")
            values.append(sv)
        text = ""
        if with_text and item.text and self.config.item_text_tokens > 0:
            text = self._truncate(clean_text(item.text), self.config.item_text_tokens)
        category = clean_field(item.category, VALUE_CHARS)
        return {
            "id": item.item_id,
            "label": label or "",
            "title": clean_title(item.title) or clean_title(item.item_id),
            "category": category,
            "attrs": "; ".join(attrs),
            "details": details_text(category, values),
            "text": text,
            "rating": None,
        }

    def history_views(self, history: History, catalog: Catalog = None) -> list[dict]:
        """The most recent `max_history` history items, oldest first (without descriptions)."""
        h = history.last(self.max_history)
        lookup = self._lookup if catalog is None else make_lookup(catalog)
        views = []
        for i, item_id in enumerate(h.items):
            v = self.item_view(lookup(item_id), with_text=False)
            if h.ratings is not None:
                v["rating"] = f"{h.ratings[i]:g}"
            views.append(v)
        return views

    @staticmethod
    def context_view(history: History) -> dict[str, str]:
        """History.context (time, device, session intent ...) as cleaned, capped strings for
        the prompt (a caller's context is untrusted too)."""
        out: dict[str, str] = {}
        for k, v in (history.context or {}).items():
            key, val = clean_field(k, KEY_CHARS), clean_field(v, CONTEXT_CHARS)
            if key and val:
                out[key] = val
        return out

    def candidate_items(self, candidates: Sequence[Candidate], catalog: Catalog = None) -> list[Item]:
        """The candidates' items from `catalog` (None: the ranker's own), in order."""
        lookup = self._lookup if catalog is None else make_lookup(catalog)
        return [lookup(c.item_id) for c in candidates]

    def candidate_views(self, candidates: Sequence[Candidate], catalog: Catalog = None) -> list[dict]:
        """`item_view` of each candidate (with its truncated description), in order, plus its
        stage-1 `score` (which no built-in template shows)."""
        items = self.candidate_items(candidates, catalog)
        return [dict(self.item_view(it), score=c.score) for c, it in zip(candidates, items, strict=True)]

    def fit_history(
        self,
        render: Callable[[list[dict]], str],
        history: list[dict],
        reserve_tokens: int = 0,
    ) -> tuple[str, int]:
        """Render with as much history as fits the context, dropping the oldest items first.

        Returns (prompt, number of history items kept). Candidates are never trimmed: if the
        prompt does not fit even with no history, a ModelError says so.
        """
        limit = self.backend.max_context
        if self.max_prompt_tokens is not None:
            limit = min(limit, self.max_prompt_tokens)
        budget = limit - reserve_tokens
        kept = list(history)
        prompt = render(kept)
        n_tokens = self.backend.count_tokens(prompt)
        while n_tokens > budget and kept:
            kept = kept[1:]  # oldest first
            prompt = render(kept)
            n_tokens = self.backend.count_tokens(prompt)
        if n_tokens > budget:
            raise ModelError(
                f"{self.name}: the candidates alone need {n_tokens} tokens, more than the context "
                f"budget of {budget}; use fewer candidates, a sliding window, or a larger max_context"
            )
        if len(kept) < len(history):
            log.debug("%s: history trimmed from %d to %d items", self.name, len(history), len(kept))
        return prompt, len(kept)

    def base_diagnostics(self) -> dict[str, Any]:
        """Who produced a ranking: ranker, model and the version of its prompt template (the
        template's ``{# version: N #}``; None for a user template without one)."""
        version = self.prompts.get(self.template).version if self.template else None
        return {"ranker": self.name, "model": self.config.model, "prompt_version": version}


__all__ = [
    "Catalog",
    "LLMRankerBase",
    "REQUEST_ONLY_FIELDS",
    "RankPrompts",
    "dedupe",
    "label_stats",
    "letter_labels",
    "make_lookup",
    "permutation_orders",
    "wants_hidden",
]
