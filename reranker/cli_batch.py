"""The `reranker batch` command (registered on the top-level group by `reranker.cli`)."""

from __future__ import annotations

import sys
from typing import Any, Literal

import click


@click.command("batch")
@click.option("--config", "config_path", required=True, type=click.Path(),
              help="A batch YAML (with a pipeline: section), a pipeline YAML (with --data) or a saved pipeline folder.")
@click.option("--input", "input_path", required=True, type=click.Path(),
              help="Requests: a .parquet file (or a folder of them) or a .jsonl file.")
@click.option("--output", "output", required=True, type=click.Path(file_okay=False),
              help="Output folder (Parquet files, _errors.jsonl, _summary.json).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", default=None,
              help="Ray: 'auto' joins the running cluster (ray start --head), ray://host:10001 a remote one; "
                   "none starts a local Ray for the job.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray: actors in the pool (each builds the pipeline once).")
@click.option("--num-cpus", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Ray: CPUs reserved per actor.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Rows ranked together (default 16).")
@click.option("--shard-rows", type=click.IntRange(min=1), default=None,
              help="Local: input rows per output shard, the unit a rerun skips (default 1000).")
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="The dataset to fit a pipeline YAML on.")
@click.option("--format", "data_format", default="auto", show_default=True, help="The format of --data.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="BLAS/OpenMP threads per worker (default: the process's; a Ray actor's: its --num-cpus).")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Items kept per request (default: the pipeline's top_k).")
@click.option("--explain/--no-explain", default=None, help="Explain the top items (default: the pipeline's explain.enabled).")
@click.option("--overwrite", is_flag=True, help="Replace the batch output already in --output.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def batch_cmd(config_path: str, input_path: str, output: str, engine: Literal["local", "ray"], address: str | None,
              concurrency: int, num_cpus: float, batch_size: int | None, shard_rows: int | None,
              data_path: str | None, data_format: str, threads: int | None, top_k: int | None, explain: bool | None,
              overwrite: bool, no_progress: bool) -> None:
    """Rerank a file of requests offline (Parquet or JSONL rows: id, user_id or history, optional
    candidates and context) into Parquet. Bad rows go to OUTPUT/_errors.jsonl and the run goes
    on; the local engine resumes an interrupted run when the same command is run again."""
    from .progress import quiet_progress

    click.get_current_context().call_on_close(quiet_progress(no_progress))  # restored when the command ends
    from .batch.config import load_batch_config
    from .errors import ConfigError
    from .termination import exit_code

    overrides: dict[str, Any] = {"batch_size": batch_size, "shard_rows": shard_rows, "top_k": top_k,
                                 "explain": explain, "threads": threads}
    cfg = load_batch_config(config_path, data=data_path, data_format=data_format, overrides=overrides)
    try:
        if engine == "local":
            if concurrency != 1 or address is not None:
                raise ConfigError("--concurrency / --address: the local engine runs in this process; "
                                  "use --engine ray for a pool of workers")
            from .batch.local import run_local

            summary = run_local(cfg, input_path, output, overwrite=overwrite, progress=not no_progress)
        else:
            from .batch.ray_engine import run_ray

            summary = run_ray(cfg, input_path, output, address=address, concurrency=concurrency,
                              num_cpus=num_cpus, overwrite=overwrite, progress=not no_progress)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see cli._Group)
        hint = "run the same command again to continue" if engine == "local" else "rerun with --overwrite"
        click.echo(f"interrupted; finished shards are in {output} ({hint})", err=True)
        sys.exit(exit_code())
    rate = summary.ranked / summary.seconds if summary.seconds > 0 else 0.0
    skipped = f", {summary.shards_skipped} shards already done" if summary.shards_skipped else ""
    click.echo(f"{summary.ranked} of {summary.rows} requests ranked in {summary.seconds:.1f} s "
               f"({rate:.2f}/s, engine {summary.engine}{skipped})")
    click.echo(f"  output  {summary.output}")
    click.echo(f"  errors  {summary.errors_file} ({summary.errors} bad rows)")
