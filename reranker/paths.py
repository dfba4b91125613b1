"""Output and cache paths given by the user: checked before work starts, errors naming the path.

`check_output_dir(folder, what)` says, without creating anything, why a folder cannot be created
or written (a file where a folder should be, no permission); `ensure_dir(folder, what)` also
creates it. Both raise `ConfigError` starting with ``what`` (the option or field, e.g. ``--out``
or ``output_dir``) and naming the path, instead of the `FileExistsError` / `NotADirectoryError`
tracebacks that `mkdir` and `open` give deep inside a run.

`utf8_error(raw, e)` words a `UnicodeDecodeError` of a file's bytes with its byte offset and line.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

__all__ = ["check_output_dir", "ensure_dir", "utf8_error"]


def _problem(folder: Path) -> str | None:
    """Why `folder` cannot be created and written (None when it can, as far as can be told)."""
    cur = folder
    while True:
        if cur.exists() or cur.is_symlink():
            break
        if cur.parent == cur:
            return None
        cur = cur.parent
    if not cur.is_dir():
        return f"{cur}: is a file, not a folder" if cur == folder else (
            f"{folder}: cannot create the folder: {cur} is a file, not a folder")
    if not os.access(cur, os.W_OK | os.X_OK):
        return f"{cur}: no permission to write here"
    return None


def check_output_dir(folder: str | Path, what: str) -> Path:
    """The folder as a Path; ConfigError ``what: <path>: why`` when it cannot be created or
    written. Creates nothing."""
    p = Path(folder).expanduser()
    problem = _problem(p)
    if problem is not None:
        raise ConfigError(f"{what}: {problem}")
    return p


def ensure_dir(folder: str | Path, what: str) -> Path:
    """Create the folder (and its parents); ConfigError naming it when that fails."""
    p = check_output_dir(folder, what)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{what}: {e.filename or p}: cannot create the folder: {e.strerror or e}") from None
    return p


def utf8_error(raw: bytes, e: UnicodeDecodeError) -> str:
    """``not valid UTF-8 at byte N (line L)`` for an error decoding all of `raw`."""
    line = raw.count(b"\n", 0, e.start) + 1
    return f"not valid UTF-8 at byte {e.start} (line {line})"
