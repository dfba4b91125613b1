"""Ranking a batch of input rows with a fitted pipeline: the code both engines run.

Per batch: parse the rows; build each history (`Pipeline.history_for`); stage 1 for the rows
without candidates in one `retrieve_batch` call (popular items for an empty history); stage 2
through `Pipeline.rank_many`; top-k; explanations when asked. A bad row (malformed, past a
bound, unknown item, an error of the library on it) becomes an errors-file record and the
others go on; an exception that is not a `RerankerError` is a bug and stops the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..errors import DataError, RerankerError
from ..request_checks import reject_ambiguous_ids
from ..types import Candidate, History, Ranking, to_jsonable
from .config import BatchConfig
from .rows import Request, error_record, parse_line, parse_request

log = logging.getLogger(__name__)


_TIMING_KEYS = frozenset({"latency_s", "signal_seconds"})


def _strip_timings(x: Any) -> Any:
    """Diagnostics without wall-clock fields (the request's time goes to the `latency_s`
    column), so the same input gives the same diagnostics."""
    if isinstance(x, dict):
        return {k: _strip_timings(v) for k, v in x.items() if k not in _TIMING_KEYS}
    if isinstance(x, list):
        return [_strip_timings(v) for v in x]
    return x


class RequestRanker:
    """A fitted pipeline and the job's settings; `run(records)` ranks one batch. Holds no
    per-request state between calls."""

    def __init__(self, pipeline: Any, config: BatchConfig, *, jsonl: bool) -> None:
        self.pipe = pipeline
        self.config = config
        self.jsonl = jsonl
        self.top_k = config.top_k or pipeline.config.top_k
        self._histories: dict[str, History] | None = None
        self.explain = pipeline.config.explain.enabled if config.explain is None else config.explain
        if self.explain and pipeline.llm is None:
            from ..errors import ConfigError

            raise ConfigError("explain: the pipeline has no LLM (ranking.llm is null); turn explain off")

    # ------------------------------------------------------------------ one batch
    def run(self, records: Sequence[tuple[int, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``records``: (row, raw) pairs; raw is a mapping (Parquet) or a line of text (JSONL).
        Returns (output rows, error records), each in row order."""
        t0 = time.perf_counter()
        errors: list[dict[str, Any]] = []
        todo: list[tuple[Request, History]] = []
        for row, raw in records:
            try:
                if self.jsonl:
                    if not raw.strip():
                        continue  # a blank line is no request
                    raw = parse_line(raw)
                req = parse_request(row, raw, self.config.limits)
                todo.append((req, self._history(req)))
            except RerankerError as e:
                errors.append(error_record(row, raw.get("id") if isinstance(raw, dict) else None, e,
                                           jsonl=self.jsonl))
        cands = self._candidates(todo, errors)
        ready = [(req, h, c) for (req, h), c in zip(todo, cands, strict=True) if c is not None]
        rankings = self._rank(ready, errors)
        out = []
        for (req, h, c), ranking in zip(ready, rankings, strict=True):
            if ranking is None:
                continue
            try:
                out.append(self._output(req, h, c, ranking))
            except RerankerError as e:
                errors.append(error_record(req.row, req.id, e, jsonl=self.jsonl))
        per_row = (time.perf_counter() - t0) / max(1, len(out))
        for r in out:
            r["latency_s"] = per_row
        out.sort(key=lambda r: r["row"])
        errors.sort(key=lambda r: r["row"])
        return out, errors

    # ------------------------------------------------------------------ steps
    def _history(self, req: Request) -> History:
        pipe = self.pipe
        data = pipe.data
        for i, item_id in enumerate(req.history or ()):
            if not data.has_item(item_id):
                raise DataError(f"history[{i}]: unknown item id {item_id!r}")
        if req.history:
            h = pipe.history_for(History(req.user_id, req.history), req.context)
        else:
            h = self._known_history(req.user_id, req.context)
        if req.candidates is not None:
            for i, c in enumerate(req.candidates):
                if not data.has_item(c.item_id):
                    raise DataError(f"candidates[{i}]: unknown item id {c.item_id!r}")
            reject_ambiguous_ids(list(h.items), [c.item_id for c in req.candidates])
        return h

    def _known_history(self, user_id: str | None, context: dict[str, Any] | None) -> History:
        """`Pipeline.history_for(user_id, context)`, from every user's history computed once
        (one pass over the fit data instead of a filter and a sort per request)."""
        if user_id is None:
            return self.pipe.history_for(None, context)
        if self._histories is None:
            self._histories = self.pipe.data.histories(cap=self.pipe.config.history_cap)
        h = self._histories.get(user_id)
        if h is None:  # an unknown user: the pipeline's own answer (an empty history)
            return self.pipe.history_for(user_id, context)
        return replace(h, context=dict(context or {}))

    def _candidates(self, todo: list[tuple[Request, History]],
                    errors: list[dict[str, Any]]) -> list[list[Candidate] | None]:
        """Given candidates as they are; stage 1 for the others (one batched call for the
        personal histories; a failing batch is retried row by row to find the bad row)."""
        pipe = self.pipe
        n = pipe.config.ranking.n_candidates
        out: list[list[Candidate] | None] = [list(r.candidates) if r.candidates is not None else None
                                             for r, _ in todo]
        personal = [i for i, (r, h) in enumerate(todo) if r.candidates is None and not h.is_empty]
        if personal:
            try:
                got = pipe.retriever.retrieve_batch([todo[i][1] for i in personal], n)
                for i, cs in zip(personal, got, strict=True):
                    out[i] = list(cs)
            except RerankerError:
                log.debug("stage 1 failed on a batch; retrying row by row", exc_info=True)
        for i, (r, h) in enumerate(todo):
            if out[i] is None:
                try:
                    out[i] = pipe.candidates(h, n)
                except RerankerError as e:
                    errors.append(error_record(r.row, r.id, e, jsonl=self.jsonl))
        return out

    def _rank(self, ready: list[tuple[Request, History, list[Candidate]]],
              errors: list[dict[str, Any]]) -> list[Ranking | None]:
        if not ready:
            return []
        try:
            return list(self.pipe.rank_many([(h, c) for _, h, c in ready]))
        except RerankerError:
            log.debug("stage 2 failed on a batch; retrying row by row", exc_info=True)
        out: list[Ranking | None] = []
        for req, h, c in ready:
            try:
                out.append(self.pipe.rank(h, c))
            except RerankerError as e:
                errors.append(error_record(req.row, req.id, e, jsonl=self.jsonl))
                out.append(None)
        return out

    def _output(self, req: Request, h: History, cands: list[Candidate], ranking: Ranking) -> dict[str, Any]:
        ranking = ranking.top_k(self.top_k)
        if self.explain and not h.is_empty and len(ranking):
            ranking = self.pipe.explain(h, ranking)
        path = "popular" if h.is_empty else "personal"
        diag = dict(ranking.diagnostics)
        diag["pipeline"] = {"user_id": h.user_id, "history_len": len(h), "n_candidates": len(cands),
                            "path": path}
        explanations = [r.explanation for r in ranking.items]
        return {
            "row": req.row,
            "id": req.id,
            "user_id": req.user_id,
            "item_ids": ranking.item_ids,
            "scores": [float(s) for s in ranking.scores],
            "explanations": explanations if any(e is not None for e in explanations) else None,
            "path": path,
            "candidates_from": "given" if req.candidates is not None else "stage1",
            "n_candidates": len(cands),
            "history_len": len(h),
            "diagnostics": json.dumps(_strip_timings(to_jsonable(diag)), sort_keys=True, default=str),
            "latency_s": 0.0,
        }


__all__ = ["RequestRanker"]
