"""The local engine: one process, the input cut into shards of `shard_rows` rows in input order,
each ranked in batches of `batch_size` and written atomically as ``OUT/part-NNNNN.parquet``
(its bad rows first, as ``OUT/_errors/part-NNNNN.jsonl``). A rerun of the same job (same input,
same config) skips the shards already written, so after Ctrl-C or a crash it finishes with the
output an uninterrupted run gives."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import BatchConfig, limit_threads
from .io import (
    ERRORS_DIR,
    ERRORS_FILE,
    SUMMARY_FILE,
    InputFormat,
    atomic_write_bytes,
    atomic_write_table,
    check_parquet_columns,
    count_rows,
    input_files,
    iter_shards,
    job_identity,
    jsonl_bytes,
    merge_errors,
    prepare_output,
    release_output,
)
from .rows import to_table

log = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    """What a finished job did (also written as ``OUT/_summary.json``)."""

    engine: str
    rows: int
    ranked: int
    errors: int
    seconds: float
    output: str
    errors_file: str
    shards_skipped: int = 0
    workers: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shard_path(out: Path, shard: int) -> Path:
    return out / f"part-{shard:05d}.parquet"


def run_local(config: BatchConfig, input_path: str | Path, output: str | Path, *, overwrite: bool = False,
              progress: bool = True, pipeline: Any = None) -> BatchSummary:
    """Rank every request of `input_path` into the folder `output` (see the module doc).
    `pipeline`: an already fitted pipeline to use instead of building the config's."""
    t0 = time.perf_counter()
    config.check_sizes()
    out = Path(output)
    files, fmt = input_files(input_path)
    if fmt == "parquet":
        check_parquet_columns(files)
    identity = job_identity(files, fmt, config.absolute().model_dump(mode="json"), "local")
    existed = out.exists()
    resumed = prepare_output(out, identity, overwrite=overwrite, resume=True)
    for stale in [*out.glob(".*.tmp"), *(out / ERRORS_DIR).glob(".*.tmp")]:
        stale.unlink(missing_ok=True)  # a temporary file of a killed run
    n_rows = count_rows(files, fmt)
    n_shards = -(-n_rows // config.shard_rows)
    done = {k for k in range(n_shards) if shard_path(out, k).is_file()} if resumed else set()
    if done:
        log.info("%s: %d of %d shards already written; continuing", out, len(done), n_shards)
    limits = limit_threads(config.threads)
    try:
        try:
            ranker = _ranker(config, fmt, pipeline) if len(done) < n_shards else None
        except BaseException:
            if not resumed:
                release_output(out, existed=existed)
            raise
        summary = _run(config, files, fmt, out, n_rows, n_shards, done, progress, ranker, t0)
    finally:
        if limits is not None:
            limits.restore_original_limits()
    return summary


def _run(config: BatchConfig, files: list[Path], fmt: InputFormat, out: Path, n_rows: int, n_shards: int,
         done: set[int], progress: bool, ranker: Any, t0: float) -> BatchSummary:
    from tqdm.auto import tqdm

    (out / ERRORS_DIR).mkdir(exist_ok=True)
    skipped_rows = sum(min(config.shard_rows, n_rows - k * config.shard_rows) for k in done)
    bar = tqdm(total=n_rows, initial=skipped_rows, desc="batch", unit="req", disable=not progress)
    try:
        for shard, records in iter_shards(files, fmt, config.shard_rows, skip=done):
            if shard in done:
                continue
            assert ranker is not None
            rows, errors = [], []
            for start in range(0, len(records), config.batch_size):
                chunk = records[start:start + config.batch_size]
                r, e = ranker.run(chunk)
                rows.extend(r)
                errors.extend(e)
                bar.update(len(chunk))
            # the errors first: the shard's Parquet file is what marks it done
            atomic_write_bytes(out / ERRORS_DIR / f"part-{shard:05d}.jsonl", jsonl_bytes(errors))
            atomic_write_table(shard_path(out, shard), to_table(rows))
    finally:
        bar.close()
    n_errors = merge_errors(out)
    ranked = _count_output_rows(out)
    summary = BatchSummary("local", n_rows, ranked, n_errors, time.perf_counter() - t0, str(out),
                           str(out / ERRORS_FILE), shards_skipped=len(done))
    atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=2).encode("utf-8"))
    return summary


def _ranker(config: BatchConfig, fmt: str, pipeline: Any) -> Any:
    from .process import RequestRanker

    if pipeline is None:
        from ..serve.loading import load_pipeline

        pipeline = load_pipeline(config.pipeline)
    return RequestRanker(pipeline, config, jsonl=fmt == "jsonl")


def _count_output_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("*.parquet"))


__all__ = ["BatchSummary", "run_local", "shard_path"]
