"""`BuildContext`: what a component's builder may need besides its own config (the data to
fit on, the catalog, the evaluation cache, a shared LLM backend, the split, the rankers built
before it). Used by the registries in `reranker.registry`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import BaseConfig

if TYPE_CHECKING:
    from .cache import KVCache, NullCache
    from .data.dataset import Dataset


@dataclass
class BuildContext:
    """What builders may need besides the component's own config. All optional: a retriever
    needs ``fit_data``; content and LLM rankers a ``catalog``; fusion the rankers ``built``
    before it; the learned head the leave-one-out ``split``."""

    fit_data: Dataset | None = None
    """Interactions stage-1 models and CF scorers are fitted on."""
    catalog: Any = None
    """The item catalog (a Dataset or a mapping id -> Item) for content and LLM rankers."""
    cache: KVCache | NullCache | None = None
    """The evaluation cache (`KVCache`); LLM rankers then run through a `CachedBackend`."""
    backend: Any = None
    """An LLM backend to use instead of loading one (shared model, test fakes)."""
    seed: int = 0
    split: Any = None
    """The leave-one-out split (the learned head fits on its validation stage)."""
    item_embeddings: Any = None
    """Item text embeddings for the T- retrievers (``(ids, matrix)`` or a callable)."""
    name: str | None = None
    """The row / component name the built object reports in its diagnostics."""
    user_limit: int | None = None
    """The run's bound on users (``reranker eval --users N``): a learned head fits on at most
    this many validation users (the first N of the same fixed order), so a small run stays small."""
    built: dict[str, Any] = field(default_factory=dict)
    """Rankers already built in this config, by name (fusion's signals refer to them)."""
    _retrievers: dict[str, Any] = field(default_factory=dict)

    def retriever(self, config: BaseConfig | Mapping[str, Any] | str,
                  params: Mapping[str, Any] | None = None) -> Any:
        """A fitted retriever (on ``fit_data``) for a config, or a type name and its params;
        shared by every caller asking for the same one."""
        if isinstance(config, str):
            cfg = _retrievers().config_for(config, params, where=f"retriever {config!r}")
        else:
            cfg = _retrievers().config(config)
        key = cfg.model_dump_json()
        if key not in self._retrievers:
            self._retrievers[key] = _retrievers().build(cfg, self)
        return self._retrievers[key]

    def named(self, name: str | None) -> BuildContext:
        """A context for building the component called `name` (shares everything else)."""
        from dataclasses import replace

        return replace(self, name=name)


def _retrievers() -> Any:
    from .registry import RETRIEVERS

    return RETRIEVERS


__all__ = ["BuildContext"]
