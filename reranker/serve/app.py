"""The FastAPI app: routes, the Bearer key, the body-size limit, JSON errors naming the field
(no traceback ever reaches a client) and the request metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import RerankerError
from .config import ServeConfig
from .schemas import (
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    RecommendRequest,
    RecommendResponse,
    RerankRequest,
    RerankResponse,
)
from .service import Service, ServiceError, library_error

log = logging.getLogger(__name__)
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 413, 422, 503)
}


#: the names pydantic gives the members of a union in an error's location (not request fields)
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "constrained-str", "dict", "list"})


def _field(loc: tuple[Any, ...]) -> str:
    """``("body", "documents", 3, "id")`` -> ``documents[3].id`` (union-member tags dropped)."""
    out = ""
    parts = loc[1:] if loc and loc[0] == "body" else loc
    for k, part in enumerate(parts):
        if isinstance(part, str) and k == len(parts) - 1 and k > 0 and (part in _UNION_TAGS or "[" in part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _error(status: int, kind: str, field: str | None, message: str, more: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    first = {"type": kind, "field": field, "message": message}
    return JSONResponse({"error": first, "errors": more or [first]}, status_code=status, headers=headers)


def create_app(config: ServeConfig, *, backend: Any = None, pipeline: Any = None,
               load_in_background: bool = True) -> FastAPI:
    """The service's app. `backend` / `pipeline` replace what the config would build (tests,
    embedding). The models load at start-up (in a thread when `load_in_background`: /healthz
    answers at once, /readyz once they are loaded)."""
    service = Service(config, backend=backend, pipeline=pipeline)
    api_key = os.environ.get(config.api_key_env) if config.api_key_env else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_in_background:
            threading.Thread(target=service.load, name="reranker-load", daemon=True).start()
        else:
            service.load()
        yield
        service.close()

    app = FastAPI(title="reranker", version="1", lifespan=lifespan,
                  description="Second-stage ranking: rerank, recommend, feedback (see the README).")
    app.state.service = service

    def require_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ServiceError(401, "Authorization", "Authorization: a valid 'Bearer <key>' header is required",
                               "unauthorized")

    auth = [Depends(require_key)]

    # ------------------------------------------------------------------ errors
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, e: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return _error(e.status, e.kind, e.field, e.message, headers=headers)

    @app.exception_handler(RerankerError)
    async def _library_error(request: Request, e: RerankerError) -> JSONResponse:
        se = library_error(e)
        return _error(se.status, se.kind, se.field, se.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errs: list[dict[str, Any]] = []
        by_field: dict[str, dict[str, Any]] = {}
        for err in e.errors()[:50]:
            field = _field(tuple(err.get("loc", ())))
            msg = str(err.get("msg", "invalid"))
            if field in by_field:  # one line per field (a union's members each fail)
                by_field[field]["message"] += f"; or {msg}"
                continue
            by_field[field] = {"type": "invalid_request", "field": field, "message": f"{field}: {msg}"}
            errs.append(by_field[field])
        if not errs:
            errs = [{"type": "invalid_request", "field": "body", "message": "body: invalid"}]
        return JSONResponse({"error": errs[0], "errors": errs}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, "http_error", None, str(e.detail), headers=getattr(e, "headers", None))

    # ------------------------------------------------------------------ middleware
    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Response:
        t0 = time.perf_counter()
        response: Response
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            limit = config.limits.max_body_bytes
            chunked = "transfer-encoding" in request.headers
            if (length is None and chunked) or (length is not None and not length.isdigit()):
                response = _error(411, "length_required", "Content-Length",
                                  "Content-Length: a body needs a valid Content-Length (chunked bodies are refused)")
            elif length is not None and int(length) > limit:
                response = _error(413, "body_too_large", "body",
                                  f"body: {int(length):,} bytes; at most {limit:,} (limits.max_body_bytes)")
            else:
                response = await _call(request, call_next)
        else:
            response = await _call(request, call_next)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        service.metrics.observe(request.method, path, response.status_code, time.perf_counter() - t0)
        return response

    # ------------------------------------------------------------------ routes
    @app.post("/v1/rerank", response_model=RerankResponse, responses=_ERRORS, dependencies=auth)
    async def rerank(req: RerankRequest) -> RerankResponse:
        return await service.rerank(req)

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=_ERRORS, dependencies=auth)
    async def recommend(req: RecommendRequest) -> RecommendResponse:
        return await service.recommend(req)

    @app.post("/v1/feedback", response_model=FeedbackResponse, responses=_ERRORS, dependencies=auth)
    async def feedback(req: FeedbackRequest) -> FeedbackResponse:
        return await service.feedback(req)

    @app.post("/v1/admin/refresh", status_code=202, responses=_ERRORS, dependencies=auth)
    async def refresh(wait: bool = False) -> dict[str, Any]:
        """Refit stage 1 and popularity with the stored feedback and swap the model; in the
        background (202), or before answering with `?wait=true`."""
        service._check_ready()
        if wait:
            return await asyncio.to_thread(service.refresh)
        if service.pipeline is None:
            raise ServiceError(503, "pipeline", "no pipeline is served", "not_configured")
        return {"started": service.start_refresh(), "version": service.version}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        if service.ready.is_set():
            return JSONResponse({"status": "ready", "modes": list(service.rerankers),
                                 "pipeline": service.pipeline is not None, "version": service.version})
        if service.load_error:
            return _error(503, "load_failed", None, service.load_error)
        return _error(503, "not_ready", None, "loading the models")

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    return app


async def _call(request: Request, call_next: Any) -> Response:
    """The route; an unexpected exception is logged with its traceback and answered with a
    plain 500 (the client never sees the traceback)."""
    try:
        response: Response = await call_next(request)
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", None, "internal error (logged on the server)")


__all__ = ["create_app"]
