"""The HTTP side of the `openai` backend: one event loop thread and one `httpx.AsyncClient` per
server connection, at most `max_concurrency` requests in flight (over every thread and every
event loop using it), retries with exponential backoff on timeouts, connection errors, 429 and
5xx, and `ModelError`s that quote the server and name the setting to change.

Sync callers block on `ServerClient.run(coro)`; async callers `await ServerClient.arun(coro)`
from any event loop (the request itself always runs on the client's own loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..errors import ModelError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: longest server message quoted in an error
QUOTE_CHARS = 500


class ServerError(ModelError):
    """A ModelError from a server's answer; `status` is its HTTP status (None: no answer) and
    `detail` the server's own message."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def server_message(status: int, text: str) -> str:
    """The server's own error message from an error body (OpenAI `{"error": {"message"}}`,
    FastAPI `{"detail"}`, Ollama `{"error": "..."}`, or the raw text), shortened."""
    msg: Any = text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            msg = err
    msg = msg if isinstance(msg, str) else json.dumps(msg)
    msg = " ".join(msg.split())
    return (msg[:QUOTE_CHARS] + "...") if len(msg) > QUOTE_CHARS else (msg or f"HTTP {status}")


def _advice(status: int) -> str:
    if status in (401, 403):
        return "set server.api_key_env to the NAME of the environment variable holding the server's key"
    if status == 404:
        return "check the URL in the model spec / server.base_url (the API root, ending in /v1) and the served model name"
    return ("check the model name and the request settings (server.top_logprobs must not exceed what the "
            "server allows, e.g. vLLM's --max-logprobs; max_context / max_new_tokens must fit its context)")


class ServerClient:
    """Requests to one OpenAI-compatible server (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        max_concurrency: int,
        retries: int,
        backoff_s: float,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff_s = backoff_s
        self._api_key = api_key  # held in memory only; never part of a config, key or report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.requests = 0
        """HTTP requests sent (retries included)."""
        self.retried = 0

    # ------------------------------------------------------------------ loop
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's loop thread is not here
                self._loop = self._thread = self._client = self._sem = None
                self._pid = os.getpid()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"reranker-http {self.base_url}",
                                          daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the client's loop and wait for it (from any thread but the loop's own)."""
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("ServerClient.run called from its own event loop thread; await arun() instead")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` run on the client's loop, from any other event loop."""
        loop = self._ensure_loop()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def close(self) -> None:
        """Close the connections and stop the loop thread (a later call starts them again)."""
        with self._lock:
            loop, thread, client = self._loop, self._thread, self._client
            self._loop = self._thread = self._client = None
            self._sem = None
        if loop is None:
            return
        if client is not None:
            try:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
            except Exception:  # pragma: no cover - best effort at shutdown
                log.debug("closing the HTTP client failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()

    # ------------------------------------------------------------------ requests (on the loop)
    def _http(self) -> Any:
        if self._client is None:
            import httpx

            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), limits=limits, headers=headers)
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._client

    async def get(self, path: str, what: str) -> Any:
        return await self.request("GET", path, None, what)

    async def post(self, path: str, body: dict[str, Any], what: str) -> Any:
        return await self.request("POST", path, body, what)

    async def request(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> Any:
        """One API call with retries; the parsed JSON answer, or a ModelError that says what
        happened, quotes the server and names the setting to change."""
        import httpx

        client = self._http()
        assert self._sem is not None
        url = f"{self.base_url}{path}"
        attempt = 0
        while True:
            problem: str
            detail = ""
            delay = self.backoff_s * 2**attempt
            try:
                async with self._sem:
                    self.requests += 1
                    r = await client.request(method, url, json=body)
            except httpx.TimeoutException:
                problem = f"no answer within server.timeout_s={self.timeout_s:g} s"
                kind = "timeout"
            except httpx.TransportError as e:
                problem = f"cannot connect ({type(e).__name__}: {e})"
                kind = "connect"
            else:
                if r.status_code < 400:
                    try:
                        return r.json()
                    except ValueError:
                        raise ModelError(f"{what}: {url} answered HTTP {r.status_code} with a body that is not "
                                         f"JSON: {r.text[:200]!r}; is base_url the API root (ending in /v1)?") from None
                msg = server_message(r.status_code, r.text)
                if r.status_code != 429 and r.status_code < 500:
                    raise ServerError(f"{what}: the server at {self.base_url} refused the request with HTTP "
                                      f"{r.status_code}: {msg!r}; {_advice(r.status_code)}", r.status_code, msg)
                problem = f"HTTP {r.status_code}: {msg!r}"
                kind = "status"
                detail = msg
                retry_after = r.headers.get("retry-after")
                if r.status_code == 429 and retry_after and retry_after.replace(".", "", 1).isdigit():
                    delay = max(delay, min(float(retry_after), 60.0))
            if attempt >= self.retries:
                status = r.status_code if kind == "status" else None
                raise ServerError(self._final(what, url, problem, kind, attempt + 1), status, detail)
            attempt += 1
            self.retried += 1
            log.warning("%s: %s; retry %d/%d in %.1f s", what, problem, attempt, self.retries, delay)
            await asyncio.sleep(delay)

    def _final(self, what: str, url: str, problem: str, kind: str, tries: int) -> str:
        head = f"{what}: {url}: {problem} ({tries} {'try' if tries == 1 else 'tries'})"
        if kind == "connect":
            return (f"{head}; is the server running and is the URL right? Set it in the model spec "
                    "openai:MODEL@http://host:port/v1 or server.base_url (server.retries adds tries)")
        if kind == "timeout":
            return (f"{head}; raise server.timeout_s, lower server.max_concurrency, or give the server more "
                    "capacity (server.retries adds tries)")
        return f"{head}; the server is overloaded or failing (server.retries / server.backoff_s retry longer)"


__all__ = ["ServerClient", "ServerError", "server_message"]
