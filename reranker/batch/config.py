"""The settings of one `reranker batch` job (YAML, or built from the command line).

``--config`` names one of three things:

- a batch YAML (a top-level ``pipeline:`` mapping): `BatchConfig`, whose ``pipeline`` is the
  service's `PipelineSource` (a saved folder ``path``, or ``config`` fitted at start on ``data``
  / ``synthetic``): the pipeline is built by the same code as `reranker serve`'s;
- a pipeline YAML (configs/pipeline-*.yaml), fitted at start on ``--data``;
- a saved pipeline folder (`Pipeline.save`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from ..config import BaseConfig
from ..errors import ConfigError, LimitError
from ..serve.config import PipelineSource

MAX_BATCH_ROWS = 4096
"""Default bound on `batch_size` (the rows ranked together in one worker call)."""


class BatchLimits(BaseConfig):
    """Bounds of what the input controls. A row past `max_history` / `max_candidates` /
    `max_context_chars` is a bad row (in the errors file, the run goes on); a `batch_size` past
    `max_batch_rows` or `shard_rows` past `max_shard_rows` is refused at start."""

    max_batch_rows: int = Field(MAX_BATCH_ROWS, ge=1, le=1_000_000)
    max_shard_rows: int = Field(1_000_000, ge=1, le=100_000_000)
    max_history: int = Field(1000, ge=0, le=100_000)
    """History items one row may carry (the pipeline then keeps its last `history_cap`)."""
    max_candidates: int = Field(1000, ge=1, le=100_000)
    """Candidates one row may carry."""
    max_context_chars: int = Field(10_000, ge=0, le=10_000_000)
    """Characters of one row's context (as JSON)."""
    max_id_chars: int = Field(512, ge=1, le=100_000)
    """Characters of a request / user / item id."""


class BatchConfig(BaseConfig):
    """One batch job: where the pipeline comes from and how the requests are cut and ranked."""

    pipeline: PipelineSource
    batch_size: int = Field(16, ge=1)
    """Rows ranked together (one batched stage-1 call; a listwise LLM's batched generate)."""
    shard_rows: int = Field(1000, ge=1)
    """Input rows per output shard of the local engine (the unit a rerun skips when done)."""
    top_k: int | None = Field(None, ge=1, le=100_000)
    """Items kept per request (None: the pipeline's `top_k`)."""
    explain: bool | None = None
    """Explain the top items (None: the pipeline's `explain.enabled`)."""
    threads: int | None = Field(None, ge=1, le=1024)
    """BLAS / OpenMP threads of each worker while it fits and ranks (None: the process default;
    a Ray actor's default is its `num_cpus`). Fitted float32 models differ in the last digits
    with the thread count: give the same number to compare engines. The LLM's own `threads`
    sets its torch threads."""
    limits: BatchLimits = Field(default_factory=BatchLimits)

    def check_sizes(self) -> None:
        """LimitError when `batch_size` / `shard_rows` pass their bounds."""
        lim = self.limits
        if self.batch_size > lim.max_batch_rows:
            raise LimitError(f"batch_size: {self.batch_size} rows; at most {lim.max_batch_rows} "
                             "(limits.max_batch_rows)")
        if self.shard_rows > lim.max_shard_rows:
            raise LimitError(f"shard_rows: {self.shard_rows} rows; at most {lim.max_shard_rows} "
                             "(limits.max_shard_rows)")

    def absolute(self) -> BatchConfig:
        """A copy whose pipeline paths are absolute (workers may run in another folder)."""
        src = self.pipeline
        upd: dict[str, Any] = {}
        for name in ("path", "data"):
            v = getattr(src, name)
            if v is not None:
                upd[name] = Path(os.path.abspath(v))
        if isinstance(src.config, Path):
            upd["config"] = Path(os.path.abspath(src.config))
        return self.model_copy(update={"pipeline": src.model_copy(update=upd)})


def limit_threads(threads: int | None) -> Any:
    """`threadpoolctl.threadpool_limits(threads)` (a context manager; also in force until its
    `restore_original_limits()`), or None when `threads` is None."""
    if threads is None:
        return None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def load_batch_config(path: str | Path, *, data: str | Path | None = None, data_format: str = "auto",
                      overrides: dict[str, Any] | None = None) -> BatchConfig:
    """The job's config from ``--config`` (see the module doc), with command-line `overrides`
    (``batch_size``, ``top_k``, ``explain``, ...; None values are ignored)."""
    from ..yaml_io import load_yaml

    p = Path(path)
    over = {k: v for k, v in (overrides or {}).items() if v is not None}
    if p.is_dir():
        if data is not None:
            raise ConfigError(f"--data: {p} is a saved pipeline (it holds its data); give no --data")
        raw: dict[str, Any] = {"pipeline": {"path": str(p)}}
    else:
        loaded = load_yaml(p) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(loaded).__name__}")
        if "pipeline" in loaded:  # a batch YAML
            raw = dict(loaded)
            if data is not None:
                if not isinstance(raw["pipeline"], dict) or "path" in raw["pipeline"]:
                    raise ConfigError(f"--data: {p}'s pipeline is not fitted at start; give no --data")
                raw["pipeline"] = {**raw["pipeline"], "data": str(data), "format": data_format}
                raw["pipeline"].pop("synthetic", None)
                raw["pipeline"].pop("data_name", None)
        else:  # a pipeline YAML
            if data is None:
                raise ConfigError(f"{p} is a pipeline config: give --data DATASET to fit it on "
                                  "(or a batch config with a pipeline: section, or a saved pipeline folder)")
            raw = {"pipeline": {"config": str(p), "data": str(data), "format": data_format}}
    cfg = BatchConfig.from_dict({**raw, **over}, source=str(p))
    cfg.check_sizes()
    return cfg


__all__ = ["BatchConfig", "BatchLimits", "MAX_BATCH_ROWS", "limit_threads", "load_batch_config"]
