"""A small on-disk key-value store (one sqlite3 file) for LLM outputs and evaluation results.

It sits at the bottom of the package so that both `reranker.llm` (the cached backend) and
`reranker.evaluation` (the harness's ranking cache) use it without depending on each other.

Two users:

- the cached LLM backend (`reranker.llm.cached.CachedBackend`) stores scores and generations
  keyed by (model id, prompt hash, call options)::

      cache = KVCache("~/.cache/reranker/eval/cache.sqlite")
      text = cache.cached("smollm2-135m", prompt, lambda: backend.generate([prompt])[0])

- the evaluation harness caches one ranking per (ranker fingerprint, user, history, candidate
  list), so a repeated or interrupted run skips what is already done.

Values are JSON (numbers, strings, lists, dicts; numpy arrays and scalars are converted).
Every `put` is committed at once (sqlite makes it atomic), so a crash or Ctrl-C never leaves a
half-written entry. `NullCache` has the same interface and stores nothing (``--no-cache``).
Keys (`make_key`, `prompt_key`) are stable across versions: existing caches stay valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_MISSING = object()

__all__ = ["KVCache", "NullCache", "make_key", "prompt_key"]


def make_key(*parts: Any) -> str:
    """A stable sha256 hex key over JSON-serialised parts (order matters)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=_json_default, separators=(",", ":")).encode())
        h.update(b"\x1f")
    return h.hexdigest()


def prompt_key(model_id: str, prompt: Any, **extra: Any) -> str:
    """The key of an LLM call: model id, prompt (str or any JSON value) and call options."""
    return make_key("llm", str(model_id), prompt, extra)


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, set | frozenset):
        return sorted(x)
    return str(x)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), allow_nan=True)


class KVCache:
    """A persistent string -> JSON-value store in one sqlite3 file (thread-safe).

    ``path`` is the database file; its folder is created. ``namespace`` prefixes every key so
    several users can share one file without collisions.
    """

    enabled = True

    def __init__(self, path: str | Path, namespace: str = "") -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._conn.commit()
        self.hits = 0
        self.misses = 0

    def _k(self, key: str) -> str:
        return f"{self.namespace}:{key}" if self.namespace else key

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value, or ``default`` when the key is absent."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (self._k(key),)).fetchone()
        if row is None:
            self.misses += 1
            return default
        self.hits += 1
        return json.loads(row[0])

    def __contains__(self, key: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM kv WHERE key = ?", (self._k(key),)).fetchone()
        return row is not None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Stored values for those keys that are present (absent keys are left out)."""
        keys = list(keys)
        out: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            full = {self._k(k): k for k in chunk}
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT key, value FROM kv WHERE key IN ({marks})", list(full)
                ).fetchall()
            for k, v in rows:
                out[full[k]] = json.loads(v)
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put(self, key: str, value: Any) -> None:
        """Store (or replace) a value; committed before returning."""
        text = _dumps(value)
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (self._k(key), text))
            self._conn.commit()

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store several values in one transaction."""
        rows = [(self._k(k), _dumps(v)) for k, v in items.items()]
        with self._lock:
            self._conn.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", rows)
            self._conn.commit()

    def cached(self, model_id: str, prompt: Any, fn: Callable[[], T], **extra: Any) -> T:
        """Return the cached result of an LLM call, or run ``fn()`` and store its result."""
        key = prompt_key(model_id, prompt, **extra)
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        value = fn()
        self.put(key, value)
        return value

    def __len__(self) -> int:
        with self._lock:
            if self.namespace:
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM kv WHERE key LIKE ?", (f"{self.namespace}:%",)
                ).fetchone()
            else:
                row = self._conn.execute("SELECT COUNT(*) FROM kv").fetchone()
        return int(row[0])

    def clear(self) -> None:
        """Delete every entry of this namespace (all entries without a namespace)."""
        with self._lock:
            if self.namespace:
                self._conn.execute("DELETE FROM kv WHERE key LIKE ?", (f"{self.namespace}:%",))
            else:
                self._conn.execute("DELETE FROM kv")
            self._conn.commit()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> KVCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KVCache({str(self.path)!r}, namespace={self.namespace!r})"


class NullCache:
    """The cache interface that stores nothing (``--no-cache``)."""

    enabled = False
    hits = 0
    misses = 0

    def get(self, key: str, default: Any = None) -> Any:
        return default

    def __contains__(self, key: str) -> bool:
        return False

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return {}

    def put(self, key: str, value: Any) -> None:
        return None

    def put_many(self, items: Mapping[str, Any]) -> None:
        return None

    def cached(self, model_id: str, prompt: Any, fn: Callable[[], T], **extra: Any) -> T:
        return fn()

    def __len__(self) -> int:
        return 0

    def clear(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NullCache()"
