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
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError
from .types import SupportsItem, SupportsToList

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


def _fetch_all(sql: str, params: list[Any]) -> Callable[[sqlite3.Connection], list[Any]]:
    """An operation for `KVCache._run`: every row of one query."""
    return lambda c: c.execute(sql, params).fetchall()


def _json_default(x: Any) -> Any:
    if isinstance(x, SupportsToList):
        return x.tolist()
    if isinstance(x, SupportsItem):
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

    A cache file that sqlite finds corrupt (not a database, a malformed page: a crash of the
    disk, a hand edit) is moved aside as ``<name>.corrupt-<timestamp>`` with a logged warning
    and an empty cache is started in its place, at open or at the first access that finds the
    damage; a stored value that is not valid JSON counts as a miss. A path that cannot hold the
    cache (a file where the folder should be, a folder, no permission) is a ConfigError naming it.
    """

    enabled = True

    def __init__(self, path: str | Path, namespace: str = "") -> None:
        self.path = Path(path).expanduser()
        self.namespace = namespace
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.recovered: list[Path] = []
        """Where corrupt cache files were moved (empty unless the cache was rebuilt)."""
        self._conn = self._open()

    # ------------------------------------------------------------------ opening and recovery
    def _open(self) -> sqlite3.Connection:
        from .paths import ensure_dir

        ensure_dir(self.path.parent, "cache folder")
        if self.path.is_dir():
            raise ConfigError(f"{self.path}: is a folder; the cache needs a file path here")
        for attempt in range(2):
            conn = None
            try:
                conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.commit()
                return conn
            except sqlite3.DatabaseError as e:
                if conn is not None:
                    conn.close()
                if attempt == 0 and _is_corrupt(e):
                    self._move_aside(e)
                    continue
                raise self._error(e) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _move_aside(self, e: BaseException) -> None:
        """Rename the corrupt file (and its -wal / -shm companions) to ``<name>.corrupt-<time>``."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, target)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, target.with_name(target.name + suffix))
        except OSError as err:
            raise ConfigError(
                f"{self.path}: the cache file is corrupt ({e}) and cannot be moved aside: "
                f"{err.strerror or err}; delete it"
            ) from None
        self.recovered.append(target)
        log.warning("%s: cache file is corrupt (%s); moved it to %s and started an empty cache",
                    self.path, e, target.name)

    def _error(self, e: sqlite3.Error) -> ConfigError:
        return ConfigError(f"{self.path}: cannot use the cache file: {e}")

    def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op(connection)`` under the lock; a corrupt file is moved aside and ``op`` runs
        again on the fresh cache; any other sqlite error is a ConfigError naming the file."""
        with self._lock:
            try:
                return op(self._conn)
            except sqlite3.DatabaseError as e:
                if not _is_corrupt(e):
                    raise self._error(e) from None
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._move_aside(e)
                self._conn = self._open()
            try:
                return op(self._conn)
            except sqlite3.Error as e:
                raise self._error(e) from None

    def _loads(self, key: str, text: str) -> Any:
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            log.warning("%s: the value stored under %s is not valid JSON; ignored (recomputed)", self.path, key)
            return _MISSING

    # ------------------------------------------------------------------ the store
    def _k(self, key: str) -> str:
        return f"{self.namespace}:{key}" if self.namespace else key

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value, or ``default`` when the key is absent."""
        full = self._k(key)
        row = self._run(lambda c: c.execute("SELECT value FROM kv WHERE key = ?", (full,)).fetchone())
        value = _MISSING if row is None else self._loads(full, row[0])
        if value is _MISSING:
            self.misses += 1
            return default
        self.hits += 1
        return value

    def __contains__(self, key: str) -> bool:
        full = self._k(key)
        row = self._run(lambda c: c.execute("SELECT 1 FROM kv WHERE key = ?", (full,)).fetchone())
        return row is not None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Stored values for those keys that are present (absent keys are left out)."""
        keys = list(keys)
        out: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            full = {self._k(k): k for k in chunk}
            marks = ",".join("?" * len(chunk))
            rows = self._run(_fetch_all(f"SELECT key, value FROM kv WHERE key IN ({marks})", list(full)))
            for k, v in rows:
                value = self._loads(k, v)
                if value is not _MISSING:
                    out[full[k]] = value
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put(self, key: str, value: Any) -> None:
        """Store (or replace) a value; committed before returning."""
        row = (self._k(key), _dumps(value))

        def op(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", row)
            c.commit()

        self._run(op)

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store several values in one transaction."""
        rows = [(self._k(k), _dumps(v)) for k, v in items.items()]

        def op(c: sqlite3.Connection) -> None:
            c.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", rows)
            c.commit()

        self._run(op)

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
        if self.namespace:
            pattern = f"{self.namespace}:%"
            row = self._run(lambda c: c.execute("SELECT COUNT(*) FROM kv WHERE key LIKE ?", (pattern,)).fetchone())
        else:
            row = self._run(lambda c: c.execute("SELECT COUNT(*) FROM kv").fetchone())
        return int(row[0])

    def clear(self) -> None:
        """Delete every entry of this namespace (all entries without a namespace)."""

        def op(c: sqlite3.Connection) -> None:
            if self.namespace:
                c.execute("DELETE FROM kv WHERE key LIKE ?", (f"{self.namespace}:%",))
            else:
                c.execute("DELETE FROM kv")
            c.commit()

        self._run(op)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> KVCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KVCache({str(self.path)!r}, namespace={self.namespace!r})"


_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


def _is_corrupt(e: sqlite3.DatabaseError) -> bool:
    """Whether sqlite says the file is damaged or not a database (not: locked, full, read-only)."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT_CODES
    msg = str(e)
    return "malformed" in msg or "not a database" in msg


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
