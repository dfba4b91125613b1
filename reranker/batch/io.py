"""Input files, the output folder and its bookkeeping.

Input: a ``.parquet`` file, a folder of ``.parquet`` files (in name order), or a JSONL file
(``.jsonl`` / ``.ndjson`` / ``.json``; lines split as `str.splitlines` splits them, like Ray's
``read_text``). A row's number is its 0-based position in that order (for JSONL, its line - 1).

Output folder ``OUT``: the Parquet files (local engine: ``part-00000.parquet`` per shard of
``shard_rows`` input rows; Ray engine: the files ``write_parquet`` names), ``_job.json`` (what
the job is: input, config; a rerun must match it), ``_errors.jsonl`` (one record per bad row,
in row order) and ``_summary.json`` (counts, written last). Names starting with ``_`` are
skipped by Parquet readers, so ``pandas.read_parquet(OUT)`` reads the results only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, DataError
from .rows import FIELDS, ROW_COLUMN

InputFormat = Literal["parquet", "jsonl"]
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
JOB_FILE = "_job.json"
ERRORS_FILE = "_errors.jsonl"
ERRORS_DIR = "_errors"
SUMMARY_FILE = "_summary.json"


# ---------------------------------------------------------------------------- input
def input_files(path: str | Path) -> tuple[list[Path], InputFormat]:
    """The input's files in row order and their format; DataError naming the path otherwise."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix == ".parquet" and not f.name.startswith((".", "_")))
        if not files:
            raise DataError(f"{p}: a folder with no .parquet files")
        return files, "parquet"
    if not p.is_file():
        raise DataError(f"{p}: input not found")
    if p.suffix == ".parquet":
        return [p], "parquet"
    if p.suffix in JSONL_SUFFIXES:
        return [p], "jsonl"
    raise DataError(f"{p}: unknown input format; use .parquet (a file or a folder of them) or .jsonl")


def check_parquet_columns(files: list[Path]) -> None:
    """Every file's columns are request fields and include ``id`` (DataError naming the file
    and the column)."""
    import pyarrow.parquet as pq

    for f in files:
        try:
            names = pq.read_schema(f).names
        except Exception as e:  # pyarrow raises its own ArrowInvalid / OSError for a broken file
            raise DataError(f"{f}: not a readable Parquet file ({e})") from None
        unknown = [c for c in names if c not in FIELDS]
        if unknown:
            raise DataError(f"unknown column (columns: {', '.join(FIELDS)})", path=str(f), column=unknown[0])
        if "id" not in names:
            raise DataError("missing column (every request needs an id)", path=str(f), column="id")


def _lines(f: Path) -> Iterator[str]:
    """The lines of a text file, split as `str.splitlines` does (Ray's `read_text`); bytes
    that are not UTF-8 are replaced (the row then fails to parse or names a strange id)."""
    with open(f, "rb") as fh:
        for raw in fh:
            text = raw.decode("utf-8", errors="replace")
            yield from text.splitlines() or [""]


def count_rows(files: list[Path], fmt: InputFormat) -> int:
    """Rows of the input (Parquet: from the footers; JSONL: lines)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return sum(sum(1 for _ in _lines(f)) for f in files)


def iter_shards(files: list[Path], fmt: InputFormat, shard_rows: int,
                skip: set[int] | None = None) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
    """``(shard index, [(row, raw), ...])`` for consecutive runs of `shard_rows` input rows;
    shards in `skip` are passed over without converting their rows (they yield an empty list)."""
    skip = skip or set()
    if fmt == "jsonl":
        yield from _chunked(((i, line) for i, line in enumerate(x for f in files for x in _lines(f))),
                            shard_rows, skip)
        return
    import pyarrow.parquet as pq

    shard, row = 0, 0
    buf: list[tuple[int, Any]] = []
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=min(shard_rows, 65536)):
            start = 0
            while start < batch.num_rows:
                take = min(batch.num_rows - start, (shard + 1) * shard_rows - row)
                if shard not in skip:
                    part = batch.slice(start, take).to_pylist()
                    buf.extend((row + j, r) for j, r in enumerate(part))
                row += take
                start += take
                if row == (shard + 1) * shard_rows:
                    yield shard, buf
                    shard, buf = shard + 1, []
    if row > shard * shard_rows:
        yield shard, buf


def _chunked(rows: Iterator[tuple[int, Any]], size: int, skip: set[int]) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
    shard, n = 0, 0
    buf: list[tuple[int, Any]] = []
    for row, raw in rows:
        if shard not in skip:
            buf.append((row, raw))
        n += 1
        if n == size:
            yield shard, buf
            shard, buf, n = shard + 1, [], 0
    if n:
        yield shard, buf


# ---------------------------------------------------------------------------- output
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then `os.replace` it in: a
    reader (or a rerun after a crash) sees the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_table(path: Path, table: Any) -> None:
    """A pyarrow Table as a Parquet file, written atomically (see `atomic_write_bytes`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode("utf-8")


def job_identity(files: list[Path], fmt: InputFormat, config: dict[str, Any], engine: str) -> dict[str, Any]:
    """What a rerun must match to continue in the same folder: the input files (path, size,
    modification time), the format and the config (without `batch_size`, which does not change
    the shards)."""
    cfg = {k: v for k, v in config.items() if k != "batch_size"}
    return {
        "format_version": 1,
        "engine": engine,
        "input": [{"path": str(f.resolve()), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns}
                  for f in files],
        "input_format": fmt,
        "config": cfg,
    }


def prepare_output(out: Path, identity: dict[str, Any], *, overwrite: bool, resume: bool) -> bool:
    """Create or check the output folder. Returns True when it holds a matching earlier job to
    continue (`resume`). A folder of another job, or one that is not a batch output, is refused
    (ConfigError) unless `overwrite`, which empties a batch output folder first."""
    job = out / JOB_FILE
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output: {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        if not job.is_file():
            raise ConfigError(f"--output: {out} is not empty and holds no {JOB_FILE}: not a batch output "
                              "folder; give a new or empty folder")
        try:
            earlier = json.loads(job.read_text(encoding="utf-8"))
        except ValueError:
            earlier = None
        if overwrite:
            clear_output(out)
        elif resume and earlier == identity:
            return True
        else:
            why = ("the Ray engine does not resume" if identity["engine"] == "ray" and earlier == identity
                   else _difference(earlier, identity))
            raise ConfigError(f"--output: {out} holds another batch job ({why}); give a new folder, or "
                              "--overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(job, json.dumps(identity, indent=2, sort_keys=True).encode("utf-8"))
    return False


def release_output(out: Path, *, existed: bool) -> None:
    """Undo `prepare_output` for a new job that failed before it wrote anything (its pipeline
    did not build: bad data, a bad model spec): the job file goes, and the folder too when this
    job created it, so the corrected command is not refused as "another batch job". A folder
    holding anything else (shards, errors) is left as it is; an empty errors folder counts as
    nothing written."""
    job, errors = out / JOB_FILE, out / ERRORS_DIR
    if not out.is_dir() or any(p != job and not (p == errors and p.is_dir() and not any(p.iterdir()))
                               for p in out.iterdir()):
        return
    if errors.is_dir():
        errors.rmdir()
    job.unlink(missing_ok=True)
    if not existed:
        out.rmdir()


def _difference(earlier: Any, now: dict[str, Any]) -> str:
    if not isinstance(earlier, dict):
        return f"an unreadable {JOB_FILE}"
    for key in ("engine", "input", "input_format", "config"):
        if earlier.get(key) != now.get(key):
            what = {"input": "the input file changed or differs"}.get(key, f"its {key} differs")
            return what
    return "a different job"


def clear_output(out: Path) -> None:
    """Remove what a batch job writes into `out` (only its own kinds of files)."""
    for f in out.iterdir():
        if f.is_dir() and f.name == ERRORS_DIR:
            shutil.rmtree(f)
        elif f.is_file() and (f.suffix == ".parquet" or f.name in (JOB_FILE, ERRORS_FILE, SUMMARY_FILE)
                              or f.name.endswith(".tmp")):
            f.unlink()


def merge_errors(out: Path) -> int:
    """Collect the per-shard / per-worker error files of ``OUT/_errors/`` into
    ``OUT/_errors.jsonl`` in row order (one record per row: a retried Ray task may have written
    a row twice); returns the number of bad rows."""
    by_row: dict[int, dict[str, Any]] = {}
    folder = out / ERRORS_DIR
    if folder.is_dir():
        for f in sorted(folder.glob("*.jsonl")):
            for line in f.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    by_row.setdefault(int(rec["row"]), rec)
    atomic_write_bytes(out / ERRORS_FILE, jsonl_bytes([by_row[r] for r in sorted(by_row)]))
    return len(by_row)


__all__ = ["ERRORS_DIR", "ERRORS_FILE", "JOB_FILE", "ROW_COLUMN", "SUMMARY_FILE", "atomic_write_bytes",
           "atomic_write_table", "check_parquet_columns", "clear_output", "count_rows", "input_files",
           "iter_shards", "job_identity", "jsonl_bytes", "merge_errors", "prepare_output", "release_output"]
