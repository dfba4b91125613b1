"""Re-export of the cached LLM backend, which lives in `reranker.llm.cached` (it is a backend)."""

from __future__ import annotations

from ..llm.cached import CachedBackend

__all__ = ["CachedBackend"]
