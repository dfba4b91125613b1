"""Offline batch reranking (`reranker batch`): the pipeline over Parquet / JSONL requests, in
process (`local`: sharded, resumable) or on Ray Data (`ray_engine`: an actor pool).

    >>> from reranker.batch import load_batch_config, run_local
    >>> cfg = load_batch_config("configs/pipeline-demo.yaml", data="shop/")
    >>> run_local(cfg, "requests.jsonl", "runs/batch-out")

Row format and output columns: `reranker.batch.rows`; the output folder: `reranker.batch.io`.
"""

from typing import Any

from .config import BatchConfig, BatchLimits, load_batch_config
from .local import BatchSummary, run_local


def run_ray(*args: Any, **kwargs: Any) -> Any:
    """`reranker.batch.ray_engine.run_ray` (imported on use: Ray is optional)."""
    from .ray_engine import run_ray as run

    return run(*args, **kwargs)


__all__ = ["BatchConfig", "BatchLimits", "BatchSummary", "load_batch_config", "run_local", "run_ray"]
