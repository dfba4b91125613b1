"""Unpacking the files of a fetched data set (`reranker.data.fetch`): zip archives (a single
top folder dropped, members outside the target refused), gzip files, plain copies. Every
problem is a `FetchError` naming the archive."""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

from ..errors import FetchError

_CHUNK = 1 << 16


def unpack(how: str, archive: Path, into: Path, filename: str) -> None:
    """Unpack `archive` (downloaded as `filename`) into the folder `into`: ``zip`` (see `unzip`),
    ``gunzip`` (to `filename` without ``.gz``) or ``copy``."""
    if how == "zip":
        unzip(archive, into)
    elif how == "gunzip":
        target = into / filename.removesuffix(".gz")
        try:
            with gzip.open(archive, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        except (OSError, EOFError) as e:
            raise FetchError(f"{archive}: not a complete gzip file ({e})") from None
    else:
        shutil.copyfile(archive, into / filename)


def unzip(archive: Path, into: Path) -> None:
    """Extract `archive` into `into`, dropping a single top folder (``ml-100k/u.data`` ->
    ``u.data``); member paths that would land outside `into` are refused."""
    try:
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if not n.startswith("__MACOSX/")]
            tops = {n.split("/", 1)[0] for n in names}
            strip = len(tops) == 1 and all("/" in n for n in names)
            root = into.resolve()
            for info in z.infolist():
                if info.filename.startswith("__MACOSX/") or info.is_dir():
                    continue
                rel = info.filename.split("/", 1)[1] if strip else info.filename
                target = (into / rel).resolve()
                if not target.is_relative_to(root):
                    raise FetchError(f"{archive}: member {info.filename!r} points outside the folder; refused")
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except (zipfile.BadZipFile, EOFError) as e:
        raise FetchError(f"{archive}: not a complete zip archive ({e})") from None


__all__ = ["unpack", "unzip"]
