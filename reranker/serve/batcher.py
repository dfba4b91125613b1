"""Micro-batching of concurrent rerank requests into shared LLM calls.

A `MicroBatcher` belongs to one served mode. A request `submit`s its prepared form and awaits
its own future; the batcher collects what arrives within ``max_wait_ms`` of the first waiting
request (or until ``max_batch`` wait) and ranks them with one `Reranker.rank_prepared` call in
the model pool: for the listwise ranker, one batched `generate` for all of their prompts
(decoding a small model on a CPU is memory-bound: a step for 16 prompts costs a few times one
prompt's step). Each request gets its own ranking or its own error; a request that stops
waiting (its deadline passed) is still ranked, and its answer dropped.

Everything runs on the event loop except the ranking itself; the batcher holds no state of a
request after answering it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collects items and runs ``run_batch(items) -> results`` (one result per item, in order;
    an exception instance as a result is raised to that item's caller) in `pool`.
    `on_batch(size)` is told the size of every batch run (for the metrics)."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R | BaseException]],
        *,
        max_batch: int,
        max_wait_ms: float,
        pool: Executor,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: must be >= 1, got {max_batch}")
        self.run_batch = run_batch
        self.max_batch = int(max_batch)
        self.max_wait_s = max(0.0, float(max_wait_ms)) / 1000
        self.pool = pool
        self.on_batch = on_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, item: T) -> R:
        """Queue `item`; its result once its batch has run (the exception, if it failed)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, fut))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._start(batch)

    def _start(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        if self.on_batch is not None:
            self.on_batch(len(batch))
        work = loop.run_in_executor(self.pool, self.run_batch, [item for item, _ in batch])

        def done(f: asyncio.Future[Sequence[R | BaseException]]) -> None:
            exc = f.exception() if not f.cancelled() else asyncio.CancelledError()
            results: Sequence[Any] = [exc] * len(batch) if exc is not None else f.result()
            if len(results) != len(batch):
                results = [RuntimeError(f"batch of {len(batch)} gave {len(results)} results")] * len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():  # (only a cancelled waiter)
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

        work.add_done_callback(done)


__all__ = ["MicroBatcher"]
