"""reranker: PALR-style two-stage recommendation (CF retrieval + local-LLM reranking).

Importing the package is cheap: heavy dependencies (torch, transformers, sentence-transformers)
load only when a model is first used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Pipeline": ("reranker.pipeline", "Pipeline"),
    "PipelineConfig": ("reranker.pipeline", "PipelineConfig"),
    "Reranker": ("reranker.api", "Reranker"),
    "Dataset": ("reranker.data.dataset", "Dataset"),
    "load": ("reranker.data.loaders", "load"),
}

from .types import Candidate, History, Item, RankedItem, Ranking  # noqa: E402


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'reranker' has no attribute {name!r}")


__all__ = ["__version__", "Candidate", "History", "Item", "RankedItem", "Ranking", *_LAZY]
