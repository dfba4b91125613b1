"""Shared plumbing of the LLM rankers: catalog lookup, item views for prompts, history fitting."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import DataError, ModelError
from ..llm.base import LLMBackend, LLMConfig
from ..llm.prompts import PromptLibrary, get_library
from ..types import Candidate, History, Item
from .base import dedupe  # noqa: F401  (re-exported for the LLM rankers)

log = logging.getLogger(__name__)

Catalog = Any  # Mapping[str, Item | dict] | Dataset (anything with .item(id)) | None


def make_lookup(catalog: Catalog) -> Callable[[str], Item]:
    """A function id -> Item over a dict of Items/dicts or a Dataset (`.item(id)`)."""
    if catalog is None:

        def missing(item_id: str) -> Item:
            raise DataError(
                f"item {item_id!r}: no catalog given; pass catalog=... (dict id -> Item, or a Dataset)"
            )

        return missing
    if hasattr(catalog, "item") and callable(catalog.item):

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


def letter_labels(n: int) -> list[str]:
    if n > 26:
        raise ValueError("at most 26 letter labels")
    return [chr(ord("A") + i) for i in range(n)]


class LLMRankerBase:
    """Base of the LLM rankers: owns the backend (loaded lazily), prompts and item views.

    `max_history` caps the history shown (most recent items); `max_prompt_tokens` caps the
    prompt below the model's context (history is trimmed oldest-first to fit, never candidates).
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
    ) -> None:
        self.config = config or (backend.config if backend is not None else LLMConfig())
        self.max_prompt_tokens = max_prompt_tokens
        self._backend = backend
        self.catalog = catalog
        self.lookup = make_lookup(catalog)
        self.prompts = prompts or get_library(self.config.prompt_dir)
        if self.template:
            self.prompts.get(self.template)  # fail at start-up on a broken template
        self.max_history = max_history
        self._text_cache: dict[str, str] = {}

    @property
    def backend(self) -> LLMBackend:
        if self._backend is None:
            from ..llm.hf import load_backend

            self._backend = load_backend(self.config)
        return self._backend

    def with_catalog(self, catalog: Catalog) -> LLMRankerBase:
        """Point the ranker at another catalog (keeps the loaded model)."""
        self.catalog = catalog
        self.lookup = make_lookup(catalog)
        self._text_cache.clear()
        return self

    # ---------------------------------------------------------------- views
    def item_view(self, item: Item, label: str | None = None, with_text: bool = True) -> dict:
        """What the LLM sees of an item: title, category, a few attributes, truncated text.

        `attrs` spells the attributes as `key: value`; `details` is the compact form the
        built-in templates show in brackets after the title: category and attribute values
        (`Drama, 1995`), which costs about a quarter fewer tokens per item."""
        attrs, values = [], []
        for k, v in list(item.attrs.items()):
            if len(attrs) >= self.config.max_attrs:
                break
            if v is None or v == "" or isinstance(v, (dict, list, tuple)):
                continue
            sv = str(v)
            attrs.append(f"{k}: {sv[:40]}")
            values.append(sv[:40])
        text = ""
        if with_text and item.text and self.config.item_text_tokens > 0:
            key = item.item_id
            if key not in self._text_cache:
                self._text_cache[key] = self.backend.truncate_tokens(
                    " ".join(item.text.split()), self.config.item_text_tokens
                )
            text = self._text_cache[key]
        return {
            "id": item.item_id,
            "label": label or "",
            "title": item.title,
            "category": item.category or "",
            "attrs": "; ".join(attrs),
            "details": ", ".join([item.category, *values] if item.category else values),
            "text": text,
            "rating": None,
        }

    def history_views(self, history: History) -> list[dict]:
        """The most recent `max_history` history items, oldest first (without descriptions)."""
        h = history.last(self.max_history)
        views = []
        for i, item_id in enumerate(h.items):
            v = self.item_view(self.lookup(item_id), with_text=False)
            if h.ratings is not None:
                v["rating"] = f"{h.ratings[i]:g}"
            views.append(v)
        return views

    @staticmethod
    def context_view(history: History) -> dict[str, str]:
        """History.context (time, device, session intent ...) as strings for the prompt."""
        return {str(k): str(v) for k, v in (history.context or {}).items() if v not in (None, "")}

    def candidate_items(self, candidates: Sequence[Candidate]) -> list[Item]:
        return [self.lookup(c.item_id) for c in candidates]

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
        return {"ranker": self.name, "model": self.config.model}


__all__ = ["LLMRankerBase", "make_lookup", "dedupe", "letter_labels", "Catalog"]
