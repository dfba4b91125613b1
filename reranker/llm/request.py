"""Reading a rerank request file (the CLI's `--input`), validated with located errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

MAX_REQUEST_BYTES = 64 * 2**20
"""The largest request file read (64 MiB)."""


@dataclass
class RerankRequest:
    """One parsed request: item dicts (history oldest first, candidates in stage-1 order)."""

    history: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    context: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None


def load_request(path: str | Path) -> RerankRequest:
    """Parse `{"history": [item dicts], "candidates": [item dicts], "context": {..}, "user_id"}`.

    Items need an `id` (or `item_id`); a missing/invalid field raises DataError naming the file
    and the JSON path.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("request file not found", path=str(p))
    size = p.stat().st_size
    if size > MAX_REQUEST_BYTES:
        raise DataError(f"{size:,} bytes; a request file may hold at most {MAX_REQUEST_BYTES:,}", path=str(p))
    try:
        raw = p.read_bytes()
        req = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"not valid UTF-8 text at byte {e.start}; save the file as UTF-8",
                        path=str(p), line=line) from None
    except OSError as e:  # PermissionError, ...
        raise DataError(f"cannot read: {e.strerror or e}", path=str(p)) from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=str(p), line=e.lineno) from None
    except RecursionError:  # e.g. [[[[...]]]] 100k deep
        raise DataError("invalid JSON: nested too deeply", path=str(p)) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise DataError(f"invalid JSON: {e}", path=str(p)) from None
    if not isinstance(req, dict):
        raise DataError("the request must be a JSON object with 'history' and 'candidates'", path=str(p))
    unknown = set(req) - {"history", "candidates", "context", "user_id"}
    if unknown:
        raise DataError(f"unknown key {sorted(unknown)[0]!r} (allowed: history, candidates, context, user_id)", path=str(p))
    for key in ("history", "candidates"):
        if key not in req:
            raise DataError(f"missing key {key!r}", path=str(p))
        if not isinstance(req[key], list):
            raise DataError(f"{key!r} must be a list of item objects", path=str(p), column=key)
        for i, it in enumerate(req[key]):
            if not isinstance(it, dict):
                raise DataError(f"{key}[{i}] must be an object like {{\"id\": ..., \"title\": ...}}",
                                path=str(p), column=key)
            if it.get("id", it.get("item_id")) in (None, ""):
                raise DataError(f"{key}[{i}] has no 'id'", path=str(p), column=key)
            if "title" in it and not isinstance(it["title"], str):
                raise DataError(f"{key}[{i}].title must be a string", path=str(p), column=key)
    if not req["candidates"]:
        raise DataError("'candidates' is empty", path=str(p), column="candidates")
    context = req.get("context") or {}
    if not isinstance(context, dict):
        raise DataError("'context' must be an object", path=str(p), column="context")
    user = req.get("user_id")
    return RerankRequest(req["history"], req["candidates"], context, None if user is None else str(user))
