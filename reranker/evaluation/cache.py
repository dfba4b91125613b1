"""The evaluation harness's cache: where it lives, and the store itself (re-exported).

The key-value store (`KVCache`, `NullCache`, `make_key`, `prompt_key`) lives in
`reranker.cache`, below both `reranker.llm` and `reranker.evaluation`; this module re-exports it
and adds the harness's choice of location (`default_cache_dir`, `open_cache`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..cache import KVCache, NullCache, make_key, prompt_key

__all__ = ["KVCache", "NullCache", "make_key", "prompt_key", "default_cache_dir", "open_cache"]


def default_cache_dir() -> Path:
    """``$RERANKER_CACHE/eval`` (default ``~/.cache/reranker/eval``)."""
    root = os.environ.get("RERANKER_CACHE") or str(Path.home() / ".cache" / "reranker")
    return Path(root).expanduser() / "eval"


def open_cache(cache_dir: str | Path | None, enabled: bool = True, name: str = "cache.sqlite") -> KVCache | NullCache:
    """A `KVCache` in ``cache_dir`` (default `default_cache_dir()`), or a `NullCache`."""
    if not enabled:
        return NullCache()
    from ..paths import check_output_dir

    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    check_output_dir(folder, "cache_dir")
    return KVCache(folder / name)
