"""The Ray engine: Ray Data reads the requests (``read_parquet``; JSONL through ``read_text``,
so a malformed line is a bad row, not a failed read), numbers them in input order (``zip`` with
``range``), ranks them with ``map_batches`` on an actor pool (each actor builds the pipeline
once, with the same code as the local engine and `reranker serve`) and writes them with
``write_parquet``. ``address="auto"`` (or ``ray://...``) joins a running cluster; None starts a
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
from .config import BatchConfig
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
    """A Ray Data actor: builds the pipeline once, then ranks batches (pyarrow Tables with the
    `ROW_COLUMN` and the request columns, or ``text`` for JSONL lines). Bad rows are appended to
    its own file under ``OUT/_errors/`` (merged by the driver at the end)."""

    def __init__(self, config: dict[str, Any], jsonl: bool, errors_dir: str, cwd: str | None) -> None:
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths in the pipeline's config mean what they mean to the driver
        from ..serve.loading import load_pipeline
        from .process import RequestRanker

        cfg = BatchConfig.from_dict(config, source="batch config")
        self.jsonl = jsonl
        self.ranker = RequestRanker(load_pipeline(cfg.pipeline), cfg, jsonl=jsonl)
        self.errors_path = Path(errors_dir) / f"ray-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"

    def __call__(self, batch: Any) -> Any:
        rows = batch.column(ROW_COLUMN).to_pylist()
        raws = (batch.column("text").to_pylist() if self.jsonl
                else batch.drop_columns([ROW_COLUMN]).to_pylist())
        out, errors = self.ranker.run(list(zip(rows, raws, strict=True)))
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
    prepare_output(out, job_identity(files, fmt, cfg.model_dump(mode="json"), "ray"), overwrite=overwrite,
                   resume=False)
    (out / ERRORS_DIR).mkdir(exist_ok=True)
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True, **(init_kwargs or {}))
        started = True
    elif address is not None:
        log.info("Ray is already initialised in this process; --address %s is not used", address)
    try:
        import ray.data as rd

        ctx = rd.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # row numbers follow the input order
        ctx.enable_progress_bars = progress
        paths = [str(f.resolve()) for f in files]
        ds = rd.read_parquet(paths) if fmt == "parquet" else rd.read_text(paths, drop_empty_lines=False)
        numbered, n_rows = _numbered(ray, ds)
        if n_rows:
            ranked = numbered.map_batches(
                RankWorker,
                fn_constructor_kwargs={"config": cfg.model_dump(mode="json"), "jsonl": fmt == "jsonl",
                                       "errors_dir": str(out / ERRORS_DIR), "cwd": os.getcwd()},
                batch_size=config.batch_size,
                batch_format="pyarrow",
                compute=rd.ActorPoolStrategy(size=concurrency),
                num_cpus=num_cpus,
            )
            ranked.write_parquet(str(out))
    finally:
        if started:
            ray.shutdown()
    n_errors = merge_errors(out)
    ranked_rows = _count_output_rows(out)
    summary = BatchSummary("ray", n_rows, ranked_rows, n_errors, time.perf_counter() - t0, str(out),
                           str(out / ERRORS_FILE), workers=concurrency)
    atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=2).encode("utf-8"))
    return summary


def _numbered(ray: Any, ds: Any) -> tuple[Any, int]:
    """The dataset with its input position as `ROW_COLUMN`, and its row count. The input is
    read (materialised: the actors later take every CPU they reserve, and a read still waiting
    for one would never run) into blocks in input order; each block gets its offset."""
    import ray.data as rd

    refs = ds.materialize().to_arrow_refs()
    counts = ray.get([_num_rows.remote(r) for r in refs])
    offsets = [sum(counts[:i]) for i in range(len(counts))]
    numbered = [_with_rows.remote(r, o) for r, o in zip(refs, offsets, strict=True)]
    return (rd.from_arrow_refs(numbered) if numbered else None), int(sum(counts))


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


def _with_rows_fn(table: Any, offset: int) -> Any:
    import pyarrow as pa

    rows = pa.array(range(offset, offset + table.num_rows), type=pa.int64())
    return table.add_column(0, ROW_COLUMN, rows)


_num_rows = _remote(_num_rows_fn)
_with_rows = _remote(_with_rows_fn)


def _count_output_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("*.parquet"))


__all__ = ["MAX_ACTORS", "RankWorker", "import_ray", "run_ray"]
