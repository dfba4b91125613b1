"""Feedback into the model: refit stage 1 and popularity on the fit data plus the stored
feedback events, as a new pipeline object (the served one is never edited; the caller swaps
the reference, so a request in flight finishes on the model it started with)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..registry import RETRIEVERS, BuildContext

log = logging.getLogger(__name__)


def events_frame(base: Any, events: Sequence[dict[str, Any]], kinds: Sequence[str]) -> pd.DataFrame:
    """The events of the given kinds on items of the catalog, in the fit data's columns: a
    `rating` event keeps its value, the others count as the top of the rating scale."""
    cols = list(base.interactions.columns)
    scale = base.rating_scale if "rating" in cols else None
    top = float(scale[1]) if scale else 1.0
    rows = []
    for e in events:
        if e["event"] not in kinds or not base.has_item(e["item_id"]):
            continue
        rating = float(e["value"]) if e["event"] == "rating" and e.get("value") is not None else top
        rows.append({"user_id": str(e["user_id"]), "item_id": str(e["item_id"]), "rating": rating,
                     "timestamp": float(e["timestamp"])})
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame = frame[[c for c in frame.columns if c in cols]]
    return frame.astype({c: base.interactions[c].dtype for c in frame.columns})


def refit_stage1(pipe: Any, base: Any, events: Sequence[dict[str, Any]], kinds: Sequence[str]) -> tuple[Any, int]:
    """A copy of `pipe` whose data, retriever and popularity are refitted on `base` (the data
    the service started with) plus the events; returns (pipeline, events used)."""
    t0 = time.perf_counter()
    extra = events_frame(base, events, kinds)
    data = base.with_interactions(pd.concat([base.interactions, extra], ignore_index=True)) if len(extra) else base
    new = copy.copy(pipe)
    new.data = data
    new.popular = RETRIEVERS.build({"type": "popular"}, BuildContext(fit_data=data))
    new.retriever = new._retriever(data)
    new.fit_report = {**pipe.fit_report, "refresh": {"events": len(extra), "seconds": time.perf_counter() - t0}}
    log.info("refreshed stage 1 with %d feedback events in %.2f s", len(extra), time.perf_counter() - t0)
    return new, len(extra)


__all__ = ["events_frame", "refit_stage1"]
