"""reranker: PALR-style two-stage recommendation (CF retrieval + local-LLM reranking).

Importing the package is cheap: heavy dependencies (torch, transformers, sentence-transformers)
load only when a model is first used.
"""

from __future__ import annotations

import os
from typing import Any

__version__ = "0.1.0"

# OpenMP threads that spin while waiting burn the CPU they wait for: on a shared 2-core machine
# torch with 2 threads ran 5x slower than with 1. Passive waiting (read when torch loads) fixes it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
