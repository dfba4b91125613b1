"""The backend a config names, shared per distinct config within a process: the in-process
transformers model (`reranker.llm.hf.load_backend`) or an OpenAI-compatible server
(`reranker.llm.openai_backend.OpenAIBackend`, one connection pool per config)."""

from __future__ import annotations

import atexit
import threading
from typing import Any

from .base import LLMBackend, LLMConfig

_SERVERS: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_llm(config: LLMConfig | None = None) -> LLMBackend:
    """The shared backend for `config` (default: `LLMConfig()`, the in-process SmolLM2)."""
    cfg = config or LLMConfig()
    if cfg.backend == "openai":
        from .openai_backend import OpenAIBackend

        key = cfg.model_dump_json()
        with _LOCK:
            if key not in _SERVERS:
                _SERVERS[key] = OpenAIBackend(cfg)
            return _SERVERS[key]
    from .hf import load_backend

    return load_backend(cfg)


@atexit.register
def _close_servers() -> None:
    with _LOCK:
        backends = list(_SERVERS.values())
    for b in backends:
        b.close()


__all__ = ["load_llm"]
