"""One input row -> a `Request` (or a DataError naming the field), and the output schema.

Input row (a Parquet row or a JSONL line holding a JSON object):

- ``id`` (required): the request id (a string or an integer);
- ``user_id``: a user of the pipeline's data (their history is looked up);
- ``history``: item ids, oldest first (an ad-hoc history; with ``user_id`` it replaces theirs);
- ``candidates``: item ids, or objects ``{"item_id" (or "id"), "score"}``; absent or null:
  stage 1 retrieves them;
- ``context``: an object (or a string holding a JSON object), e.g. ``{"device": "mobile"}``.

A row needs ``user_id``, ``history`` or ``candidates``. Output: one row per request with the
columns of `OUTPUT_SCHEMA`; a bad row goes to the errors file instead (`error_record`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, LimitError
from ..types import Candidate
from .config import BatchLimits

FIELDS = ("id", "user_id", "history", "candidates", "context")
"""The columns / keys an input row may have."""
ROW_COLUMN = "_row"
"""The input position the Ray engine attaches to each row before the workers see it."""


@dataclass(frozen=True)
class Request:
    """One parsed input row."""

    row: int
    id: str
    user_id: str | None
    history: tuple[str, ...] | None
    candidates: tuple[Candidate, ...] | None
    context: dict[str, Any] | None


def _id(value: Any, field: str, limits: BatchLimits) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{field}: expected a string or an integer, got {type(value).__name__}")
    s = str(value)
    if not s.strip():
        raise DataError(f"{field}: empty")
    if len(s) > limits.max_id_chars:
        raise LimitError(f"{field}: {len(s)} characters; at most {limits.max_id_chars} (limits.max_id_chars)")
    return s


def _list(value: Any, field: str, bound: int, bound_name: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise DataError(f"{field}: expected a list, got {type(value).__name__}")
    if len(value) > bound:
        raise LimitError(f"{field}: {len(value)} items; at most {bound} per request (limits.{bound_name})")
    return value


def _candidate(i: int, value: Any, limits: BatchLimits) -> Candidate:
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"item_id", "id", "score"})
        if unknown:
            raise DataError(f"candidates[{i}]: unknown key {unknown[0]!r} (keys: item_id or id, score)")
        item_id = value.get("item_id", value.get("id"))
        if item_id is None:
            raise DataError(f"candidates[{i}]: no item_id")
        score = value.get("score")
        if score is None:
            score = 0.0
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise DataError(f"candidates[{i}].score: expected a finite number, got {score!r}")
        return Candidate(_id(item_id, f"candidates[{i}].item_id", limits), float(score), "given")
    return Candidate(_id(value, f"candidates[{i}]", limits), 0.0, "given")


def _context(value: Any, limits: BatchLimits) -> dict[str, Any]:
    if isinstance(value, str):
        if len(value) > limits.max_context_chars:
            raise LimitError(f"context: {len(value)} characters; at most {limits.max_context_chars} "
                             "(limits.max_context_chars)")
        try:
            value = json.loads(value)
        except ValueError as e:
            raise DataError(f"context: not a JSON object ({e})") from None
    if not isinstance(value, Mapping):
        raise DataError(f"context: expected an object, got {type(value).__name__}")
    try:
        size = len(json.dumps(value, default=str))
    except (ValueError, RecursionError):
        raise DataError("context: not serialisable as JSON") from None
    if size > limits.max_context_chars:
        raise LimitError(f"context: {size} characters of JSON; at most {limits.max_context_chars} "
                         "(limits.max_context_chars)")
    return {str(k): v for k, v in value.items()}


def parse_line(line: str) -> Any:
    """A JSONL line's object (DataError when it is not JSON)."""
    try:
        return json.loads(line)
    except RecursionError:
        raise DataError("not a JSON object: nested too deeply") from None
    except ValueError as e:
        raise DataError(f"not valid JSON ({e})") from None


def parse_request(row: int, raw: Any, limits: BatchLimits) -> Request:
    """Validate one input row (a mapping: a Parquet row or a parsed JSONL line)."""
    if not isinstance(raw, Mapping):
        raise DataError(f"expected a JSON object with the fields {', '.join(FIELDS)}, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        raise DataError(f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    if raw.get("id") is None:
        raise DataError("id: missing (every request needs an id)")
    rid = _id(raw["id"], "id", limits)
    user = raw.get("user_id")
    user_id = _id(user, "user_id", limits) if user is not None else None
    history = None
    if raw.get("history") is not None:
        items = _list(raw["history"], "history", limits.max_history, "max_history")
        history = tuple(_id(x, f"history[{i}]", limits) for i, x in enumerate(items))
    candidates = None
    if raw.get("candidates") is not None:
        given = _list(raw["candidates"], "candidates", limits.max_candidates, "max_candidates")
        if not given:
            raise DataError("candidates: an empty list; leave it out (or null) for stage 1 to retrieve")
        candidates = tuple(_candidate(i, c, limits) for i, c in enumerate(given))
    context = _context(raw["context"], limits) if raw.get("context") is not None else None
    if user_id is None and not history and candidates is None:
        raise DataError("give user_id, history or candidates (all are empty)")
    return Request(row, rid, user_id, history, candidates, context)


def output_schema() -> Any:
    """The Parquet schema of the output (both engines)."""
    import pyarrow as pa

    return pa.schema([
        ("row", pa.int64()),
        ("id", pa.string()),
        ("user_id", pa.string()),
        ("item_ids", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())),
        ("explanations", pa.list_(pa.string())),
        ("path", pa.string()),
        ("candidates_from", pa.string()),
        ("n_candidates", pa.int32()),
        ("history_len", pa.int32()),
        ("diagnostics", pa.string()),
        ("latency_s", pa.float64()),
    ])


def to_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Output rows (dicts with the schema's columns) as a pyarrow Table."""
    import pyarrow as pa

    schema = output_schema()
    return pa.Table.from_pylist(list(rows), schema=schema)


def error_record(row: int, raw_id: Any, e: Exception, *, jsonl: bool) -> dict[str, Any]:
    """One line of the errors file: the row (0-based input position; ``line`` = row + 1 for
    JSONL), the request id when it could be read, the error class and message."""
    rid = raw_id if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else None
    rec: dict[str, Any] = {"row": int(row)}
    if jsonl:
        rec["line"] = int(row) + 1
    rec.update({"id": None if rid is None else str(rid)[:200], "error_type": type(e).__name__, "error": str(e)})
    return rec


__all__ = ["FIELDS", "ROW_COLUMN", "Request", "error_record", "output_schema", "parse_line",
           "parse_request", "to_table"]
