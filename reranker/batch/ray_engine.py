"""The Ray engine: Ray Data reads the requests (``read_parquet``; JSONL through ``read_text``,
so a malformed line is a bad row, not a failed read), cuts them into the local engine's shards
(`shard_rows` rows in input order, each row numbered), ranks each shard with ``map_batches`` on
an actor pool (each actor builds the pipeline once, with the same code as the local engine and
`reranker serve`, and cuts the shard into the same batches, so both engines give the same
numbers) and writes them with ``write_parquet``. ``address="auto"`` (or ``ray://...``) joins a running cluster; None starts a
local one for the job (or uses the one this process already started).

With the in-process ``transformers`` backend every actor holds a model (give each actor
``num_cpus`` cores); with the ``openai`` backend the actors only send requests, so many actors
on few cores keep a vLLM server busy. The output folder (and the pipeline's files) must be on
storage every node sees. Ray is optional: ``pip install 'reranker[ray]'``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LimitError, ModelError
from .config import BatchConfig, limit_threads
from .io import (
    ERRORS_DIR,
    ERRORS_FILE,
    SUMMARY_FILE,
    atomic_write_bytes,
    check_parquet_columns,
    input_files,
    job_identity,
    jsonl_bytes,
    merge_errors,
    prepare_output,
    release_output,
)
from .local import BatchSummary
from .rows import ROW_COLUMN, to_table

log = logging.getLogger(__name__)
MAX_ACTORS = 10_000
"""Bound on `concurrency` (actors in the pool)."""


def import_ray() -> Any:
    """`ray` (with Ray Data), or a ModelError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ModelError(f"--engine ray needs Ray Data ({e}); install it with: pip install 'reranker[ray]'") from None
    return ray


class RankWorker:
    """A Ray Data actor: builds the pipeline once, then ranks shards (pyarrow Tables with the
    `ROW_COLUMN` and the request columns, or ``text`` for JSONL lines) in batches of
    `batch_size` rows. Bad rows are appended to its own file under ``OUT/_errors/`` (merged by
    the driver at the end)."""

    def __init__(self, config: dict[str, Any], jsonl: bool, errors_dir: str, cwd: str | None) -> None:
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths in the pipeline's config mean what they mean to the driver
        from ..serve.loading import load_pipeline
        from .process import RequestRanker

        cfg = BatchConfig.from_dict(config, source="batch config")
        self._limits = limit_threads(cfg.threads)  # held for the actor's life
        self.jsonl = jsonl
        self.ranker = RequestRanker(load_pipeline(cfg.pipeline), cfg, jsonl=jsonl)
        self.errors_path = Path(errors_dir) / f"ray-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"

    def __call__(self, shard: Any) -> Any:
        rows = shard.column(ROW_COLUMN).to_pylist()
        raws = (shard.column("text").to_pylist() if self.jsonl
                else shard.drop_columns([ROW_COLUMN]).to_pylist())
        records = list(zip(rows, raws, strict=True))
        size = self.ranker.config.batch_size
        out, errors = [], []
        for start in range(0, len(records), size):  # the local engine's batches, for the same numbers
            o, e = self.ranker.run(records[start:start + size])
            out.extend(o)
            errors.extend(e)
        if errors:
            with open(self.errors_path, "ab") as fh:
                fh.write(jsonl_bytes(errors))
                fh.flush()
                os.fsync(fh.fileno())
        return to_table(out)


def run_ray(config: BatchConfig, input_path: str | Path, output: str | Path, *, address: str | None = None,
            concurrency: int = 1, num_cpus: float = 1.0, overwrite: bool = False, progress: bool = True,
            init_kwargs: dict[str, Any] | None = None) -> BatchSummary:
    """Rank every request of `input_path` into the folder `output` on Ray Data (module doc)."""
    t0 = time.perf_counter()
    config.check_sizes()
    if not 1 <= concurrency <= MAX_ACTORS:
        raise LimitError(f"--concurrency: {concurrency} actors; between 1 and {MAX_ACTORS}")
    if num_cpus <= 0:
        raise ConfigError(f"--num-cpus: {num_cpus}; must be > 0")
    ray = import_ray()
    out = Path(output).resolve()
    files, fmt = input_files(input_path)
    if fmt == "parquet":
        check_parquet_columns(files)
    cfg = config.absolute()
    existed = out.exists()
    prepare_output(out, job_identity(files, fmt, cfg.model_dump(mode="json"), "ray"), overwrite=overwrite,
                   resume=False)
    (out / ERRORS_DIR).mkdir(exist_ok=True)
    started = False
    try:
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=True, **(init_kwargs or {}))
            started = True
        elif address is not None:
            log.info("Ray is already initialised in this process; --address %s is not used", address)
        n_rows = _rank_on_ray(ray, cfg, files, fmt, out, concurrency, num_cpus, progress)
    except BaseException:
        # a job that failed before it wrote anything (its pipeline did not build in the actors,
        # Ray did not start) leaves no claim on the folder, as in the local engine
        release_output(out, existed=existed)
        raise
    finally:
        if started:
            ray.shutdown()
    n_errors = merge_errors(out)
    ranked_rows = _count_output_rows(out)
    summary = BatchSummary("ray", n_rows, ranked_rows, n_errors, time.perf_counter() - t0, str(out),
                           str(out / ERRORS_FILE), workers=concurrency)
    atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=2).encode("utf-8"))
    return summary


def _rank_on_ray(ray: Any, cfg: BatchConfig, files: list[Path], fmt: str, out: Path, concurrency: int,
                 num_cpus: float, progress: bool) -> int:
    """Read the input as a Ray dataset, rank it shard by shard on an actor pool, write the
    parquet parts into `out`; returns the number of input rows."""
    import ray.data as rd

    ctx = rd.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # row numbers follow the input order
    ctx.enable_progress_bars = progress
    paths = [str(f.resolve()) for f in files]
    ds = rd.read_parquet(paths) if fmt == "parquet" else rd.read_text(paths, drop_empty_lines=False)
    sharded, n_rows = _sharded(ray, ds, cfg.shard_rows)
    if n_rows:
        ranked = sharded.map_batches(
            RankWorker,
            fn_constructor_kwargs={"config": cfg.model_dump(mode="json"), "jsonl": fmt == "jsonl",
                                   "errors_dir": str(out / ERRORS_DIR), "cwd": os.getcwd()},
            batch_size=None,  # one call per shard, cut into batches as the local engine cuts it
            batch_format="pyarrow",
            compute=rd.ActorPoolStrategy(size=concurrency),
            num_cpus=num_cpus,
        )
        ranked.write_parquet(str(out))
    return int(n_rows)


def _sharded(ray: Any, ds: Any, shard_rows: int) -> tuple[Any, int]:
    """The dataset cut into blocks of `shard_rows` rows in input order (the local engine's
    shards), each row with its input position as `ROW_COLUMN`; and the row count. The input is
    read first (materialised: the actors later take every CPU they reserve, and a read still
    waiting for one would never run)."""
    import ray.data as rd

    refs = ds.materialize().to_arrow_refs()
    counts = ray.get([_num_rows.remote(r) for r in refs])
    n = int(sum(counts))
    starts = [sum(counts[:i]) for i in range(len(counts))]
    shards, first = [], 0
    for lo in range(0, n, shard_rows):
        hi = min(n, lo + shard_rows)
        while starts[first] + counts[first] <= lo:
            first += 1
        spans, parts, i = [], [], first
        while i < len(refs) and starts[i] < hi:
            a, b = max(lo, starts[i]), min(hi, starts[i] + counts[i])
            if a < b:
                spans.append((a - starts[i], b - a))
                parts.append(refs[i])
            i += 1
        shards.append(_shard_block.remote(lo, spans, *parts))
    return (rd.from_arrow_refs(shards) if shards else None), n


def _remote(fn: Any) -> Any:
    """`ray.remote(fn)` on first use (Ray is imported only when the engine runs)."""
    holder: dict[str, Any] = {}

    class _Lazy:
        def remote(self, *args: Any) -> Any:
            if "f" not in holder:
                import ray

                holder["f"] = ray.remote(num_cpus=0.1)(fn)
            return holder["f"].remote(*args)

    return _Lazy()


def _num_rows_fn(table: Any) -> int:
    return int(table.num_rows)


def _shard_block_fn(offset: int, spans: list[tuple[int, int]], *tables: Any) -> Any:
    """One shard: the given (start, length) slices of the input blocks, with the row numbers."""
    import pyarrow as pa

    table = pa.concat_tables([t.slice(a, n) for t, (a, n) in zip(tables, spans, strict=True)],
                             promote_options="default")
    rows = pa.array(range(offset, offset + table.num_rows), type=pa.int64())
    return table.add_column(0, ROW_COLUMN, rows)


_num_rows = _remote(_num_rows_fn)
_shard_block = _remote(_shard_block_fn)


def _count_output_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("*.parquet"))


__all__ = ["MAX_ACTORS", "RankWorker", "import_ray", "run_ray"]
