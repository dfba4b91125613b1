"""Durable feedback events: SQLite in WAL mode with `synchronous=FULL`, so a commit is on disk
before `/v1/feedback` answers 2xx; an event's `id` is unique (sent again: stored once)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL,
    value REAL,
    timestamp REAL NOT NULL,
    received_at REAL NOT NULL
)
"""


class FeedbackStore:
    """One SQLite connection behind a lock (writes are serialised; WAL lets readers run)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def add(self, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Store a batch in one transaction; returns (stored, duplicates by id)."""
        now = time.time()
        rows = [(e.get("id"), e["user_id"], e["item_id"], e["event"], e.get("value"),
                 e.get("timestamp") if e.get("timestamp") is not None else now, now) for e in events]
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO events (id, user_id, item_id, event, value, timestamp, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            stored = self._db.total_changes - before
        return stored, len(rows) - stored

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM events WHERE id IS NOT NULL")}

    def events(self) -> list[dict[str, Any]]:
        """Every stored event, oldest first."""
        with self._lock:
            cur = self._db.execute("SELECT user_id, item_id, event, value, timestamp FROM events ORDER BY seq")
            return [dict(zip(("user_id", "item_id", "event", "value", "timestamp"), r, strict=True)) for r in cur]

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["FeedbackStore"]
