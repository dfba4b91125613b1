"""Checks of a public rerank request's ids (the request door: `reranker.api.normalize_request`).

A request whose candidate list names an item twice, or names an item of the user's history,
has no single correct ranking: the public door rejects it with a DataError naming the index.
The library-level rankers keep de-duplicating silently (`ranking.base.dedupe`) for internal
callers such as the evaluation harness, whose candidates come from stage 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import DataError
from .types import Candidate, Item

#: keys of a candidate dict that describe the stage-1 proposal, not the product (never attrs)
CANDIDATE_META_KEYS = frozenset({"score"})


def given_id(x: Any) -> Any:
    """The id as the caller wrote it (before it became a string): an Item's / a Candidate's
    `item_id`, a dict's `item_id` or `id`, or the value itself."""
    if isinstance(x, (Item, Candidate)):
        return x.item_id
    if isinstance(x, Mapping):
        return x.get("item_id", x.get("id"))
    return x


def product_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate dict without its stage-1 metadata (`score`): what describes the product."""
    return {k: v for k, v in d.items() if k not in CANDIDATE_META_KEYS}


def _as_strings(a: Any, b: Any) -> str:
    if type(a) is type(b):
        return ""
    return f"; ids are compared as strings: {a!r} and {b!r}"


def reject_ambiguous_ids(
    history: Sequence[str],
    candidates: Sequence[str],
    *,
    given_history: Sequence[Any] | None = None,
    given_candidates: Sequence[Any] | None = None,
) -> None:
    """Raise DataError at the first candidate (by index) whose id repeats an earlier
    candidate's (`candidates[3]: duplicate id '7' (also at candidates[1])`) or is in the
    history (`candidates[2]: id 'p101' is also in the history (history[0])`). Ids compare as
    strings, so `7` and `"7"` collide (the message then says so); `given_*` are the ids as the
    caller wrote them, for that note. A history may repeat an id (a re-bought item)."""
    in_history: dict[str, int] = {}
    for k, item_id in enumerate(history):
        in_history.setdefault(item_id, k)
    first: dict[str, int] = {}
    for i, cid in enumerate(candidates):
        if cid in first:
            j = first[cid]
            note = _as_strings(given_candidates[j], given_candidates[i]) if given_candidates is not None else ""
            raise DataError(f"candidates[{i}]: duplicate id {cid!r} (also at candidates[{j}]{note})")
        if cid in in_history:
            h = in_history[cid]
            note = _as_strings(given_history[h], given_candidates[i]) if (
                given_history is not None and given_candidates is not None
            ) else ""
            raise DataError(f"candidates[{i}]: id {cid!r} is also in the history (history[{h}]{note})")
        first[cid] = i


__all__ = ["CANDIDATE_META_KEYS", "given_id", "product_fields", "reject_ambiguous_ids"]
