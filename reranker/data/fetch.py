"""`reranker data fetch NAME [DEST]`: download a public data set into a folder the loaders read.

Each data set names its files (URL + checksum where the file is fixed), the format the loaders
use and how to unpack. A download goes to ``<RERANKER_DATA>/downloads/<url hash>-<file>.part`` with a
progress bar; an interrupted one resumes with an HTTP ``Range`` request on the next call. The
checksum is checked before anything is unpacked; the archive is unpacked into a temporary
folder beside DEST and moved into place with one rename, so DEST is either absent or complete.
A ``reranker-dataset.json`` written into DEST records the source, the format and the SHA-256 of
what was downloaded; `reranker.data.loaders.load(DEST, format="auto")` reads the format from it.

The cache folder is ``$RERANKER_DATA``, else ``$XDG_CACHE_HOME/reranker/data`` (default
``~/.cache/reranker/data``); ``data_path("ml-100k")`` fetches on first use, which is what a
config's ``data: {name: ml-100k}`` calls. Offline: ``fetch(name, source=FILE)`` (CLI ``--from``)
takes an archive downloaded elsewhere (checked against the same checksum).

    >>> from reranker.data.fetch import fetch
    >>> folder = fetch("ml-100k")          # ~/.cache/reranker/data/ml-100k
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import FetchError
from .unpack import unpack

if TYPE_CHECKING:
    from .dataset import Dataset

log = logging.getLogger(__name__)

MARKER = "reranker-dataset.json"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: where it is, how to check it, how to unpack it."""

    url: str
    sha256: str | None = None
    md5: str | None = None
    unpack: Literal["zip", "gunzip", "copy"] = "zip"

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RemoteDataset:
    """A fetchable data set: its files, the loader format of the unpacked folder, and where its
    checksums come from (``checksum_note``)."""

    name: str
    format: str
    files: tuple[RemoteFile, ...]
    description: str = ""
    checksum_note: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    shape: tuple[int, int, int] | None = None
    """(users, items, interactions) of a fixed release: what a local copy given as a folder
    (``--from FOLDER``) is checked against, as it has no archive checksum."""


_GL = "https://files.grouplens.org/datasets/movielens/"
# Checksums: GroupLens publishes an MD5 per archive (``<archive>.md5`` next to it, e.g.
# https://files.grouplens.org/datasets/movielens/ml-100k.zip.md5); the values below are those
# MD5s as quoted by several independent public repositories (this repository's build machine has
# no internet access, so they were not re-downloaded here). No SHA-256 is published and none was
# verified here: after a download, `reranker-dataset.json` in the folder records the SHA-256 of
# what was fetched, to pin it. ml-latest-small is re-released in place ("latest"), so it has
# no fixed checksum and is fetched unverified.
_ML_NOTE_FIXED = "MD5 published by GroupLens (<archive>.md5), quoted from public code; SHA-256 not published, not verified here"
_ML_NOTE_LATEST = "no fixed checksum: GroupLens replaces the 'latest' archive in place"

DATASETS: dict[str, RemoteDataset] = {
    "ml-100k": RemoteDataset(
        "ml-100k", "movielens",
        (RemoteFile(_GL + "ml-100k.zip", md5="0e33842e24a9c977be4e0107933c0723"),),
        "MovieLens 100K (1998): 100,000 ratings, 943 users, 1,682 movies (u.data / u.item)",
        _ML_NOTE_FIXED, shape=(943, 1682, 100_000),
    ),
    "ml-1m": RemoteDataset(
        "ml-1m", "movielens",
        (RemoteFile(_GL + "ml-1m.zip", md5="c4d9eecfca2ab87c1945afe126590906"),),
        "MovieLens 1M (2003): 1,000,209 ratings, 6,040 users, 3,706 movies (ratings.dat / movies.dat)",
        _ML_NOTE_FIXED, shape=(6040, 3706, 1_000_209),
    ),
    "ml-latest-small": RemoteDataset(
        "ml-latest-small", "movielens",
        (RemoteFile(_GL + "ml-latest-small.zip"),),
        "MovieLens latest-small: about 100,000 ratings, 610 users, 9,700 movies (ratings.csv / movies.csv)",
        _ML_NOTE_LATEST,
    ),
}

_AMAZON = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/"
AMAZON_PREFIX = "amazon2023:"


def _amazon(category: str) -> RemoteDataset:
    """Amazon Reviews 2023 (McAuley Lab): ``amazon2023:<Category>``, e.g. ``amazon2023:All_Beauty``
    (review_categories/<C>.jsonl.gz + meta_categories/meta_<C>.jsonl.gz). URL layout from the data
    set's page (amazon-reviews-2023.github.io); no checksums are published."""
    if not category or "/" in category or category.startswith("."):
        raise FetchError(f"{AMAZON_PREFIX}{category}: not a category name (e.g. {AMAZON_PREFIX}All_Beauty)")
    return RemoteDataset(
        f"{AMAZON_PREFIX}{category}", "amazon2023",
        (RemoteFile(f"{_AMAZON}review_categories/{category}.jsonl.gz", unpack="gunzip"),
         RemoteFile(f"{_AMAZON}meta_categories/meta_{category}.jsonl.gz", unpack="gunzip")),
        f"Amazon Reviews 2023, category {category} (reviews + item metadata, JSONL)",
        "no checksums published by the McAuley Lab; fetched unverified",
    )


def register_dataset(spec: RemoteDataset, *, replace: bool = False) -> None:
    """Make `spec.name` fetchable (a mirror, a private set). Built-in names need ``replace=True``."""
    if spec.name in DATASETS and not replace:
        raise FetchError(f"data set {spec.name!r} is already registered (pass replace=True)")
    DATASETS[spec.name] = spec


def dataset_spec(name: str) -> RemoteDataset:
    """The RemoteDataset of `name`; FetchError listing the known names (with a close match)."""
    if name.startswith(AMAZON_PREFIX):
        return _amazon(name[len(AMAZON_PREFIX):])
    if name in DATASETS:
        return DATASETS[name]
    import difflib

    close = difflib.get_close_matches(name, list(DATASETS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise FetchError(
        f"unknown data set {name!r}{hint} Known: {', '.join(sorted(DATASETS))}, "
        f"{AMAZON_PREFIX}<Category> (e.g. {AMAZON_PREFIX}All_Beauty)"
    )


def data_home() -> Path:
    """The cache folder: ``$RERANKER_DATA``, else ``$XDG_CACHE_HOME/reranker/data``
    (``~/.cache/reranker/data``; ``%LOCALAPPDATA%\\reranker\\data`` on Windows)."""
    env = os.environ.get("RERANKER_DATA")
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "reranker" / "data"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "reranker" / "data"


def default_dest(name: str) -> Path:
    return data_home() / name.replace(":", "-")


def read_marker(folder: str | Path) -> dict[str, object] | None:
    """The ``reranker-dataset.json`` of a fetched folder (None when there is none)."""
    p = Path(folder) / MARKER
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def data_path(name: str, *, progress: bool = True) -> tuple[Path, str]:
    """(folder, format) of data set `name` in the cache, fetched on first use."""
    spec = dataset_spec(name)
    dest = default_dest(name)
    marker = read_marker(dest)
    if marker is None:
        log.info("data set %s is not in %s yet: fetching it", name, data_home())
        fetch(name, dest, progress=progress)
        marker = read_marker(dest) or {}
    fmt = marker.get("format")  # a copy installed from a folder keeps its own layout
    return dest, fmt if isinstance(fmt, str) and fmt else spec.format


def load_named(name: str, fmt: str | None = None, *, progress: bool = True) -> Dataset:
    """The Dataset of data set `name` from the cache (fetched on first use), read in `fmt` or,
    when None, in the cache copy's own format (`data_path`). What a config's data-set name
    (`data: {name: ...}`, `pipeline.data_name`) loads."""
    from .loaders import load

    folder, fetched_format = data_path(name, progress=progress)
    return load(folder, format=fmt or fetched_format)


def fetch(
    name: str | RemoteDataset,
    dest: str | Path | None = None,
    *,
    source: str | Path | Sequence[str | Path] | None = None,
    force: bool = False,
    progress: bool = True,
    timeout_s: float = 60.0,
) -> Path:
    """Download (or take from `source`), verify and unpack data set `name` into `dest`
    (default: the cache folder). Returns the folder. A folder already fetched is kept unless
    ``force``; a non-empty folder that was not fetched is never overwritten without ``force``."""
    spec = name if isinstance(name, RemoteDataset) else dataset_spec(name)
    out = Path(dest).expanduser() if dest is not None else default_dest(spec.name)
    if isinstance(source, str | Path) and Path(source).expanduser().is_dir():
        return _fetch_folder(spec, Path(source).expanduser(), out, force=force)
    sources = _sources(spec, source)
    with _locked(out):  # a second process fetching into the same folder waits, then finds it done
        if out.exists() and not force:
            marker = read_marker(out)
            if marker is not None and marker.get("name") == spec.name:
                log.info("%s is already in %s (use --force to fetch again)", spec.name, out)
                return out
            if marker is not None:
                raise FetchError(f"{out} holds data set {marker.get('name')!r}, not {spec.name!r}; "
                                 "choose another DEST or pass --force")
            if not out.is_dir() or any(out.iterdir()):
                raise FetchError(f"{out} exists and is not a fetched data set; choose another DEST or pass --force")
        downloads = data_home() / "downloads"
        archives: list[Path] = []
        for rf, src in zip(spec.files, sources, strict=True):
            if src is not None:
                _verify(rf, src, delete=False)
                archives.append(src)
            else:
                archives.append(_download_verified(rf, downloads, progress=progress, timeout_s=timeout_s))
        ours = [a for src, a in zip(sources, archives, strict=True) if src is None]
        try:
            sha = {rf.filename: _digest(a, "sha256") for rf, a in zip(spec.files, archives, strict=True)}
            _install(spec, archives, out, sha)
        finally:  # our own downloads: the unpacked folder is what is kept (a bad archive goes too)
            for a in ours:
                a.unlink(missing_ok=True)
    log.info("%s is ready in %s (format %s)", spec.name, out, spec.format)
    return out


def _fetch_folder(spec: RemoteDataset, folder: Path, out: Path, *, force: bool) -> Path:
    """Install a copy of `spec` that is already unpacked in `folder` (any layout the loaders
    read: the GroupLens files, RecBole's atomic files, ...). There is no archive to checksum, so
    the copy must load and, where the release is fixed, have its (users, items, interactions)."""
    from .loaders import detect_format, load

    if folder.resolve() == out.resolve():
        raise FetchError(f"--from {folder}: that is the destination folder itself")
    fmt = detect_format(folder)
    data = load(folder, format=fmt)
    got = (data.n_users, data.n_items, data.n_interactions)
    if spec.shape is not None and got != spec.shape:
        raise FetchError(
            f"--from {folder}: holds {got[0]:,} users, {got[1]:,} items and {got[2]:,} interactions, but "
            f"{spec.name} has {spec.shape[0]:,} / {spec.shape[1]:,} / {spec.shape[2]:,}; is it the right data set?"
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != MARKER)
    with _locked(out):
        if out.exists() and not force:
            marker = read_marker(out)
            if marker is not None and marker.get("name") == spec.name:
                log.info("%s is already in %s (use --force to install again)", spec.name, out)
                return out
            raise FetchError(f"{out} exists; choose another DEST or pass --force")

        def fill(tmp: Path) -> dict[str, object]:
            for f in files:
                shutil.copyfile(f, tmp / f.name)
            return {"name": spec.name, "format": fmt, "source": f"local folder {folder.resolve()}",
                    "files": [{"file": f.name, "sha256": _digest(f, "sha256")} for f in files],
                    "checksums": "copied from a local folder, not an archive: checked by loading it"
                    + (f" and by its shape {list(spec.shape)} (users, items, interactions)" if spec.shape else "")}

        _build_in_place(out, fill)
    log.info("%s is ready in %s (copied from %s, format %s)", spec.name, out, folder, fmt)
    return out


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive lock per destination folder (``<RERANKER_DATA>/locks``; POSIX flock, none on
    Windows), so concurrent fetches neither share a partial download nor race the rename."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    locks = data_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(out.resolve()).encode("utf-8")).hexdigest()[:16]
    with open(locks / f"{key}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------- sources
def _sources(spec: RemoteDataset, source: str | Path | Sequence[str | Path] | None) -> list[Path | None]:
    if source is None:
        return [None] * len(spec.files)
    given = [Path(source)] if isinstance(source, str | Path) else [Path(s) for s in source]
    for g in given:
        if not g.is_file():
            raise FetchError(f"--from {g}: no such file")
    if len(spec.files) == 1:
        if len(given) != 1:
            raise FetchError(f"{spec.name} is one file ({spec.files[0].filename}); give one --from")
        return [given[0].expanduser()]
    by_name = {g.name: g for g in given}
    missing = [rf.filename for rf in spec.files if rf.filename not in by_name]
    if missing:
        raise FetchError(f"{spec.name} needs the files {[rf.filename for rf in spec.files]}; "
                         f"--from lacks {missing} (give each file once, named as downloaded)")
    return [by_name[rf.filename] for rf in spec.files]


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(rf: RemoteFile, path: Path, *, delete: bool) -> None:
    """Check `path` against the file's SHA-256 (else MD5); a mismatch deletes our own download."""
    for algo, want in (("sha256", rf.sha256), ("md5", rf.md5)):
        if want is None:
            continue
        got = _digest(path, algo)
        if got != want.lower():
            if delete:
                path.unlink(missing_ok=True)
            what = "the download was deleted; run the command again" if delete else "is it the right file?"
            raise FetchError(f"{path.name}: {algo} checksum mismatch for {rf.url}: expected {want}, got {got}; {what}")
        return
    log.warning("%s: no published checksum; not verified", rf.url)


def _download_verified(rf: RemoteFile, folder: Path, *, progress: bool, timeout_s: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(rf.url.encode("utf-8")).hexdigest()[:12]  # one partial file per URL
    part = folder / f"{tag}-{rf.filename}.part"
    _download(rf.url, part, progress=progress, timeout_s=timeout_s)
    _verify(rf, part, delete=True)
    done = folder / f"{tag}-{rf.filename}"
    os.replace(part, done)
    return done


def _download(url: str, part: Path, *, progress: bool, timeout_s: float) -> None:
    """GET `url` into `part`, resuming from its current size with a Range request."""
    import httpx
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    hint = "download it elsewhere and pass the file with --from"
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout_s, follow_redirects=True) as r:
            if r.status_code == 416 and have:  # nothing after what we have: the file is complete
                return
            if r.status_code >= 400:
                raise FetchError(f"{url}: HTTP {r.status_code} {r.reason_phrase}; check the name or URL, or {hint}")
            resumed = have > 0 and r.status_code == 206
            if not resumed:
                have = 0
            length = r.headers.get("Content-Length")
            total = have + int(length) if length is not None and length.isdigit() else None
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=url.rsplit("/", 1)[-1], disable=not progress, leave=False,
            ) as bar:
                for chunk in r.iter_bytes():  # as received: a broken connection keeps what came
                    f.write(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPError as e:
        size = part.stat().st_size if part.exists() else 0
        if size and isinstance(e, httpx.RemoteProtocolError | httpx.ReadError | httpx.ReadTimeout):
            raise FetchError(
                f"{url}: download interrupted after {size:,} bytes ({e}); the partial file {part} is kept "
                "and the next fetch resumes it"
            ) from None
        raise FetchError(f"{url}: cannot download ({type(e).__name__}: {e}); no network? {hint}") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise FetchError(f"{url}: download truncated at {size:,} of {total:,} bytes; the partial file {part} "
                         "is kept and the next fetch resumes it")


# ---------------------------------------------------------------------------- unpacking
def _install(spec: RemoteDataset, archives: list[Path], out: Path, sha: dict[str, str]) -> None:
    """Unpack the archives into `out` (see `_build_in_place`)."""

    def fill(tmp: Path) -> dict[str, object]:
        for rf, a in zip(spec.files, archives, strict=True):
            unpack(rf.unpack, a, tmp, rf.filename)
        return {"name": spec.name, "format": spec.format, "files": [
            {"url": rf.url, "sha256": sha[rf.filename], "md5_expected": rf.md5, "sha256_expected": rf.sha256}
            for rf in spec.files], "checksums": spec.checksum_note}

    _build_in_place(out, fill)


def _build_in_place(out: Path, fill: Callable[[Path], dict[str, object]]) -> None:
    """`fill(tmp)` writes the data set into a temporary folder beside `out` and returns its marker;
    the marker is written and the folder moved into place with one rename (an old `out` is
    replaced); on any failure the temporary folder goes and `out` is untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        marker = fill(tmp)
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = [
    "DATASETS", "FetchError", "RemoteDataset", "RemoteFile", "data_home", "data_path",
    "dataset_spec", "default_dest", "fetch", "load_named", "read_marker", "register_dataset",
]
