"""SIGTERM handled like Ctrl-C by the command line (`reranker.cli`).

A long command (`reranker eval`, `finetune`, `demo`) stopped by a service manager, a batch
scheduler or ``docker stop`` gets SIGTERM. Inside `sigterm_as_interrupt()` that signal raises
`KeyboardInterrupt` in the main thread, so the code that already handles Ctrl-C runs (the
evaluation writes its partial results.json with ``"status": "interrupted"``, fine-tuning writes
a checkpoint), and the command then exits with `exit_code()`: 143 (128 + SIGTERM) after SIGTERM,
130 after Ctrl-C. A second SIGTERM while that clean-up runs is ignored (logged), so it is not
cut short; SIGKILL remains the way to stop at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["EXIT_SIGINT", "EXIT_SIGTERM", "exit_code", "sigterm_as_interrupt", "terminated"]

EXIT_SIGINT = 130
EXIT_SIGTERM = 143

log = logging.getLogger(__name__)
_received = threading.Event()


def terminated() -> bool:
    """Whether SIGTERM arrived inside the current `sigterm_as_interrupt()` block."""
    return _received.is_set()


def exit_code() -> int:
    """The exit status of an interrupted command: 143 after SIGTERM, else 130 (Ctrl-C)."""
    return EXIT_SIGTERM if terminated() else EXIT_SIGINT


def _handler(signum: int, frame: FrameType | None) -> None:
    if _received.is_set():
        log.warning("SIGTERM again: still writing what was done so far")
        return
    _received.set()
    raise KeyboardInterrupt("SIGTERM")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread; the previous
    handler is restored afterwards. Outside the main thread (where handlers cannot be set)
    it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    _received.clear()
    signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
