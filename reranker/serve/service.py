"""The service's state and request logic, apart from HTTP: the Rerankers (one per served mode),
the fitted pipeline, the feedback store, the metrics. Model work runs in a thread pool, never on
the event loop; a request past its deadline gets the stage-1 order back (`degraded`). Concurrent
rerank requests of a mode with a batched ranking path (listwise) are ranked together
(`micro_batch`, `reranker.serve.batcher`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..api import PreparedRequest, Reranker
from ..errors import RerankerError
from ..types import History, Ranking
from .batcher import MicroBatcher
from .config import ServeConfig
from .feedback import FeedbackStore
from .metrics import Metrics
from .schemas import (
    Document,
    FeedbackRequest,
    FeedbackResponse,
    RecommendItem,
    RecommendRequest,
    RecommendResponse,
    RerankRequest,
    RerankResponse,
    RerankResult,
    Usage,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
#: parse counts a ranker's diagnostics may carry (copied to the response when present)
DIAGNOSTIC_COUNTS = ("valid", "hallucinated", "duplicate", "filled_in", "retries", "calls",
                     "labels_missing", "labels_scored")
_LIB_FIELD = re.compile(r"^(candidates|history)\[(\d+)\]")
_TITLE_CHARS = 300


class ServiceError(Exception):
    """A request the service refuses: the HTTP status, the field and the message (JSON body)."""

    def __init__(self, status: int, field: str | None, message: str, kind: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.kind = kind


def library_error(e: RerankerError) -> ServiceError:
    """A library error as a 4xx naming the request field (`candidates[3]` -> `documents[3]`)."""
    msg = str(e)
    m = _LIB_FIELD.match(msg)
    if m:
        name = "documents" if m.group(1) == "candidates" else "history"
        field = f"{name}[{m.group(2)}]"
        return ServiceError(422, field, field + re.sub(r"\bcandidates\[", "documents[", msg[m.end():]))
    head = msg.split(":", 1)[0]
    named: str | None = head if re.fullmatch(r"[A-Za-z_][\w.\[\]]*", head) else None
    return ServiceError(422, named, msg)


def _document_item(i: int, d: Document) -> dict[str, Any]:
    item_id = d.id if d.id is not None else f"#{i}"
    text = d.text or ""
    title = d.title or ""
    if not title:
        title, text = (text[:_TITLE_CHARS], text[_TITLE_CHARS:]) if text else (item_id, "")
    out: dict[str, Any] = {"id": item_id, "title": title, "text": text}
    if d.category is not None:
        out["category"] = d.category
    if d.attrs:
        out["attrs"] = dict(d.attrs)
    if d.score is not None:
        out["score"] = d.score
    return out


class Service:
    """Everything a request needs; shared by all requests, never mutated by one (the pipeline
    reference is replaced whole, never edited)."""

    def __init__(self, config: ServeConfig, *, backend: Any = None, pipeline: Any = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="reranker-model")
        self.pipeline = pipeline
        self._backend = backend
        self.rerankers: dict[str, Reranker] = {}
        self.batchers: dict[str, MicroBatcher[PreparedRequest, Ranking]] = {}
        self.store = FeedbackStore(config.feedback_db)
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.base_data: Any = None
        """The data the served pipeline was fitted on (refreshes add the feedback to it)."""
        self.version = 0
        """How many times the model was swapped by a refresh."""
        self._refresh_lock = threading.Lock()
        self._refreshing = False
        self._new_events = 0
        self._stop = threading.Event()

    # ------------------------------------------------------------------ start-up
    def load(self) -> None:
        """Load the pipeline (when configured) and the rerankers; warm the models up."""
        try:
            if self.pipeline is None and self.config.pipeline is not None:
                from .loading import load_pipeline

                self.pipeline = load_pipeline(self.config.pipeline, backend=self._backend)
            catalog = self.pipeline.data if self.pipeline is not None else None
            self.base_data = catalog
            for mode, rc in self.config.rerankers.items():
                rr = Reranker(mode=mode, config=rc, catalog=catalog, backend=self._backend)
                if self.config.warm_up:
                    rr.rerank([{"id": "warm-h", "title": "warm up"}], [{"id": "warm-c", "title": "ready"}])
                self.rerankers[mode] = rr
                mb = self.config.micro_batch
                if mb.enabled and rr.batches_requests > 1:
                    self.batchers[mode] = MicroBatcher(
                        rr.rank_prepared, max_batch=mb.max_batch or rr.batches_requests,
                        max_wait_ms=mb.max_wait_ms, pool=self.pool,
                        on_batch=functools.partial(self.metrics.add_batch, mode))
            self.ready.set()
            if self.config.refresh.every_seconds is not None and self.pipeline is not None:
                threading.Thread(target=self._timer, name="reranker-refresh-timer", daemon=True).start()
            log.info("ready: modes %s, pipeline %s", list(self.rerankers), self.pipeline is not None)
        except Exception as e:  # a start-up failure is reported by /readyz and the log
            self.load_error = f"{type(e).__name__}: {e}"
            log.exception("start-up failed")

    def close(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    def _check_ready(self) -> None:
        if not self.ready.is_set():
            raise ServiceError(503, None, self.load_error or "loading the models; retry shortly", "not_ready")

    async def _run(self, fn: Callable[[], T], timeout_ms: int | None) -> T | None:
        """`fn` in the model pool; None when it misses the deadline (it finishes in the
        background; its answer is dropped)."""
        return await self._within_deadline(asyncio.get_running_loop().run_in_executor(self.pool, fn), timeout_ms)

    async def _within_deadline(self, fut: asyncio.Future[T], timeout_ms: int | None) -> T | None:
        """`fut`'s result, or None once `timeout_ms` (else the config's default deadline) has
        passed; a late result is then dropped (a late failure logged)."""
        timeout_ms = timeout_ms if timeout_ms is not None else self.config.default_timeout_ms
        if timeout_ms is None:
            return await fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_ms / 1000)
        except TimeoutError:
            fut.add_done_callback(_drop_result)
            return None

    async def _batched(self, batcher: MicroBatcher[PreparedRequest, Ranking], prepared: PreparedRequest,
                       timeout_ms: int | None) -> Ranking | None:
        """`prepared` ranked in a micro-batch with other requests; None when it misses the
        deadline (its answer is dropped when the batch finishes)."""
        try:
            return await self._within_deadline(asyncio.ensure_future(batcher.submit(prepared)), timeout_ms)
        except RerankerError as e:
            raise library_error(e) from None

    # ------------------------------------------------------------------ rerank
    def _check_rerank(self, req: RerankRequest) -> Reranker:
        lim = self.config.limits
        if len(req.documents) > lim.max_documents:
            raise ServiceError(422, "documents", f"documents: {len(req.documents)} given; at most "
                               f"{lim.max_documents} per request (limits.max_documents)")
        if len(req.history) > lim.max_history:
            raise ServiceError(422, "history", f"history: {len(req.history)} items given; at most "
                               f"{lim.max_history} per request (limits.max_history)")
        mode = req.mode or self.config.default_mode
        if mode not in self.rerankers:
            raise ServiceError(422, "mode", f"mode: {mode!r} is not served (served: {', '.join(self.rerankers)})")
        data = self.pipeline.data if self.pipeline is not None else None
        for i, h in enumerate(req.history):
            if h.is_bare_id and (data is None or not data.has_item(h.id)):
                where = "the served catalog" if data is not None else "a catalog (none is served: send the item object)"
                raise ServiceError(422, f"history[{i}].id", f"history[{i}].id: unknown item id {h.id!r}; not in {where}")
        return self.rerankers[mode]

    async def rerank(self, req: RerankRequest) -> RerankResponse:
        self._check_ready()
        rr = self._check_rerank(req)
        history = [h.id if h.is_bare_id else h.model_dump(exclude_none=True) for h in req.history]
        candidates = [_document_item(i, d) for i, d in enumerate(req.documents)]
        context = dict(req.context or {})
        if req.query:
            context["query"] = req.query
        pipe = self.pipeline
        catalog = pipe.data if pipe is not None else None

        def work() -> Ranking:
            try:
                return rr.rerank(history, candidates, explain=req.explain, catalog=catalog,
                                 context=context or None, user_id=req.user_id, explain_mode=req.explain_mode)
            except RerankerError as e:
                raise library_error(e) from None

        batcher = self.batchers.get(rr.mode)
        if batcher is not None and not req.explain:
            try:
                prepared = rr.prepare(history, candidates, catalog, context or None, req.user_id)
            except RerankerError as e:
                raise library_error(e) from None
            ranking = await self._batched(batcher, prepared, req.timeout_ms)
        else:
            ranking = await self._run(work, req.timeout_ms)
        index = {c["id"]: i for i, c in enumerate(candidates)}
        degraded = ranking is None
        if ranking is None:
            self.metrics.add_degraded("/v1/rerank")
            # the stage-1 order: by the documents' given scores, ties (and no scores) as sent
            ranking = Ranking.from_scores([c["id"] for c in candidates],
                                          [d.score or 0.0 for d in req.documents], {"path": "degraded"})
        diag = ranking.diagnostics
        usage = Usage(tokens_in=int(diag.get("tokens_in", 0) or 0), tokens_out=int(diag.get("tokens_out", 0) or 0))
        self.metrics.add_tokens("in", usage.tokens_in)
        self.metrics.add_tokens("out", usage.tokens_out)
        top = list(ranking.items)[: req.top_n] if req.top_n is not None else list(ranking.items)
        results = []
        for r in top:
            i = index[r.item_id]
            d = req.documents[i]
            doc = None
            if req.return_documents:
                doc = d.model_dump(exclude_none=True) if d.id is not None or d.title is not None else {"text": d.text}
            results.append(RerankResult(index=i, relevance_score=float(r.score),
                                        item_id=d.id, document=doc, explanation=r.explanation))
        counts = {k: int(v) for k, v in diag.items()
                  if k in DIAGNOSTIC_COUNTS and isinstance(v, int) and not isinstance(v, bool)}
        return RerankResponse(id=uuid.uuid4().hex, model=self.config.model_name, mode=rr.mode, results=results,
                              usage=usage, degraded=degraded, diagnostics=counts)

    # ------------------------------------------------------------------ recommend
    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        self._check_ready()
        pipe = self.pipeline
        if pipe is None:
            raise ServiceError(503, "pipeline", "no pipeline is served (set pipeline: in the service config)",
                               "not_configured")
        lim = self.config.limits
        history = [str(x) for x in req.history or []]
        if req.anonymous and (req.user_id is not None or history):
            raise ServiceError(422, "anonymous", "anonymous: a logged-out request has no user_id and no history")
        if not req.anonymous and req.user_id is None and not history:
            raise ServiceError(422, "history", "history: empty and no user_id; send a user_id, a non-empty "
                               "history, or anonymous: true for a logged-out user (popular items)")
        if len(history) > lim.max_history:
            raise ServiceError(422, "history", f"history: {len(history)} items given; at most {lim.max_history}")
        if req.k is not None and req.k > lim.max_k:
            raise ServiceError(422, "k", f"k: {req.k}; at most {lim.max_k} (limits.max_k)")
        for i, item_id in enumerate(history):
            if not pipe.data.has_item(item_id):
                raise ServiceError(422, f"history[{i}]", f"history[{i}]: unknown item id {item_id!r}")
        user: Any = History(req.user_id, history) if history else req.user_id
        context = dict(req.context or {})

        def work() -> Ranking:
            try:
                return pipe.recommend(user, req.k, context=context or None, explain=req.explain,
                                      explain_mode=req.explain_mode)
            except RerankerError as e:
                raise library_error(e) from None

        t0 = time.perf_counter()
        ranking = await self._run(work, req.timeout_ms)
        degraded = ranking is None
        if ranking is None:
            self.metrics.add_degraded("/v1/recommend")
            h = pipe.history_for(user, context or None)
            cands = await asyncio.to_thread(pipe.candidates, h)
            ranking = Ranking.from_scores([c.item_id for c in cands], [c.score for c in cands],
                                          {"pipeline": {"path": "popular" if h.is_empty else "personal"}})
            ranking = ranking.top_k(req.k or pipe.config.top_k)
        info = ranking.diagnostics.get("pipeline", {})
        results = []
        for r in ranking.items:
            title = pipe.data.item(r.item_id).title if pipe.data.has_item(r.item_id) else None
            results.append(RecommendItem(rank=r.rank, item_id=r.item_id, score=float(r.score), title=title,
                                         explanation=r.explanation))
        log.debug("recommend in %.3f s", time.perf_counter() - t0)
        return RecommendResponse(id=uuid.uuid4().hex, model=self.config.model_name, user_id=req.user_id,
                                 path=info.get("path", "personal"), results=results, degraded=degraded)

    # ------------------------------------------------------------------ feedback
    async def feedback(self, req: FeedbackRequest) -> FeedbackResponse:
        lim = self.config.limits
        if len(req.events) > lim.max_feedback_events:
            raise ServiceError(422, "events", f"events: {len(req.events)} given; at most "
                               f"{lim.max_feedback_events} per request (limits.max_feedback_events)")
        rows = [e.model_dump() for e in req.events]
        stored, dup = await asyncio.to_thread(self.store.add, rows)
        every = self.config.refresh.every_events
        with self._refresh_lock:
            self._new_events += stored
            due = every is not None and self._new_events >= every
        if due and self.pipeline is not None:
            self.start_refresh()
        return FeedbackResponse(accepted=stored, duplicates=dup)

    # ------------------------------------------------------------------ refresh
    def start_refresh(self) -> bool:
        """Refresh in a background thread; False when one is already running."""
        with self._refresh_lock:
            if self._refreshing:
                return False
            self._refreshing = True
        threading.Thread(target=self._refresh_guarded, name="reranker-refresh", daemon=True).start()
        return True

    def refresh(self) -> dict[str, Any]:
        """Refit stage 1 and popularity on the fit data plus every stored event, then swap the
        served pipeline (one reference assignment: a request holds the one it started with)."""
        from .refresh import refit_stage1

        if self.pipeline is None or self.base_data is None:
            raise ServiceError(503, "pipeline", "no pipeline is served (set pipeline: in the service config)",
                               "not_configured")
        with self._refresh_lock:
            self._new_events = 0
        new, used = refit_stage1(self.pipeline, self.base_data, self.store.events(), self.config.refresh.events)
        self.pipeline = new
        self.version += 1
        self.metrics.add_refresh()
        return {"version": self.version, "events": used}

    def _refresh_guarded(self) -> None:
        try:
            self.refresh()
        except Exception:
            log.exception("refresh failed; the old model keeps serving")
        finally:
            with self._refresh_lock:
                self._refreshing = False

    def _timer(self) -> None:
        every = float(self.config.refresh.every_seconds or 0)
        while not self._stop.wait(every):
            if self._new_events:
                self.start_refresh()


def _drop_result(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("a late model call failed: %s", fut.exception())


__all__ = ["Service", "ServiceError", "library_error"]
