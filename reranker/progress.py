"""`--no-progress` for a whole process: no progress bar from this package or the libraries it
calls (transformers' "Loading weights", Hugging Face downloads, Ray Data)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
"""tqdm reads TQDM_DISABLE when it is first imported; the Hugging Face libraries and Ray Data
read theirs when they are; processes started later (Ray workers) inherit them."""


def quiet_progress(no_progress: bool) -> Callable[[], None]:
    """With `no_progress`, switch every progress bar off for this process and the processes it
    starts; returns the function that puts the environment back (the CLI calls it when the
    command ends, so a program that runs several commands in process is not left silenced).
    Call it before the command imports its heavy modules (the CLI imports them inside each
    command); where tqdm was imported already, library bars that do not take the command's
    `progress` flag may still show, and a debug line says so."""
    if not no_progress:
        return lambda: None
    saved = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    if "tqdm" in sys.modules:
        log.debug("--no-progress: tqdm was imported before the command; library bars may still show")

    def restore() -> None:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    return restore


def bars_enabled() -> bool:
    """False under `--no-progress` (or TQDM_DISABLE set by the user). A bar created with an
    explicit ``disable=False`` ignores TQDM_DISABLE, so the package's own bars also ask this."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("1", "true", "yes")


__all__ = ["QUIET_ENV", "bars_enabled", "quiet_progress"]
