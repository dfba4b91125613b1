"""The `reranker` command line: a thin layer over the library.

Each command imports what it needs inside its body so `reranker --help` stays fast.
Usage errors (bad ids, bad values, malformed files) exit with code 2 and a one-line message.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Literal, NoReturn

import click

from .cli_batch import batch_cmd
from .cli_data import LOAD_FORMATS, fetch_cmd, list_cmd, load_with_options, source_options
from .errors import RerankerError
from .progress import quiet_progress
from .types import SupportsItem, SupportsToList


def fail(message: str) -> NoReturn:
    """Print a clean error to stderr and exit with code 2 (usage / input error)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(x: Any) -> Any:
    if isinstance(x, SupportsItem):
        return x.item()
    if isinstance(x, SupportsToList):
        return x.tolist()
    return str(x)


class _Group(click.Group):
    """Turns RerankerError (bad input, config, model) into exit code 2 with a clear message, and
    so the OS errors naming a path (missing file, folder for a file, no permission) and input
    that is not UTF-8, which the library did not locate itself. Any other exception is a bug and
    keeps its traceback; `-vv` logs the traceback of these too.

    The top-level group turns SIGTERM into KeyboardInterrupt while a command runs
    (`reranker.termination`), so the Ctrl-C paths of long commands run (partial results,
    checkpoints); a command stopped by SIGTERM exits with 143."""

    def invoke(self, ctx: click.Context) -> Any:
        from contextlib import nullcontext

        from .termination import EXIT_SIGTERM, sigterm_as_interrupt, terminated

        with sigterm_as_interrupt() if ctx.parent is None else nullcontext():
            try:
                return self._invoke(ctx)
            except KeyboardInterrupt:
                if not terminated():
                    raise
                click.echo("terminated (SIGTERM)", err=True)
                sys.exit(EXIT_SIGTERM)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RerankerError as e:
            fail(str(e))
        except OSError as e:  # FileNotFoundError, PermissionError, FileExistsError, read-only disk, ...
            if e.filename is None:  # not about a path: let it show where it came from
                raise
            logging.getLogger(__name__).debug("%s", type(e).__name__, exc_info=True)
            fail(f"{e.filename}: {e.strerror or e}")
        except UnicodeDecodeError as e:
            logging.getLogger(__name__).debug("%s", type(e).__name__, exc_info=True)
            fail(f"an input file is not valid UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="reranker")
def main(verbose: int) -> None:
    """reranker: CF retrieval + local-LLM reranking for e-commerce recommendation."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------------------- data
FORMATS = ["csv", "parquet", "jsonl", "movielens", "recbole", "amazon2023"]  # = data.loaders.FORMATS (+ "auto": cli_data.LOAD_FORMATS)


@main.group(cls=_Group)
def data() -> None:
    """Fetch, inspect and generate datasets."""


data.add_command(fetch_cmd)
data.add_command(list_cmd)


@data.command("describe")
@click.argument("path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(LOAD_FORMATS), default="auto", show_default=True,
              help="auto: the format `data fetch` recorded, else told from the file names.")
@source_options
@click.option("--on-unknown-item", type=click.Choice(["error", "drop"]), default="error", show_default=True,
              help="Interactions whose item has no catalog row: fail, or drop and count them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def data_describe(path: str, fmt: str, on_unknown_item: Literal["error", "drop"], as_json: bool,
                  **source: Any) -> None:
    """Users, items, interactions, density, rating scale and time span of a dataset."""
    stats = load_with_options(path, fmt, on_unknown_item=on_unknown_item, **source).describe()
    if as_json:
        emit_json(stats)
        return
    click.echo(f"dataset       {stats['name']}")
    click.echo(f"users         {stats['users']:,}")
    click.echo(f"items         {stats['items']:,} ({stats['items_with_interactions']:,} with interactions)")
    click.echo(f"interactions  {stats['interactions']:,}")
    click.echo(f"density       {stats['density']:.4%}")
    ipu = stats["interactions_per_user"]
    click.echo(f"per user      min {ipu['min']}, median {ipu['median']:g}, max {ipu['max']}")
    if stats["rating_scale"]:
        lo, hi = stats["rating_scale"]
        click.echo(f"ratings       {lo:g} to {hi:g} (mean {stats['mean_rating']:.3f})")
    else:
        click.echo("ratings       none (implicit feedback)")
    ts = stats["time_span"]
    click.echo(f"time span     {ts['start'][:10]} to {ts['end'][:10]} ({ts['days']:g} days)" if ts else "time span     none")
    click.echo(f"categories    {stats['categories']}")
    if stats["dropped_unknown_items"]:
        click.echo(f"dropped       {stats['dropped_unknown_items']} interactions with unknown items")


@data.command("generate")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--users", "n_users", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--items", "n_items", type=click.IntRange(min=8), default=400, show_default=True)
def data_generate(out_dir: str, seed: int, n_users: int, n_items: int) -> None:
    """Generate the synthetic demo world (seeded) and write it as CSV files to OUT_DIR."""
    from .data.synthetic import generate_world

    world = generate_world(seed=seed, n_users=n_users, n_items=n_items)
    folder = world.to_csv(out_dir)
    ds = world.dataset
    click.echo(
        f"wrote {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions "
        f"and {len(world.reviews)} reviews to {folder} (seed {seed}); read it back with "
        f"`reranker data describe {folder} --format csv`"
    )


# ---------------------------------------------------------------------------- retrieval
_RETRIEVAL_MODELS = ["itemcf", "usercf", "popular"]
_SIMILARITIES = ["cosine", "pearson", "adjusted_cosine"]


@main.command("candidates")
@click.option("--data", "data_path", required=True, type=click.Path(), help="Dataset path.")
@click.option("--format", "fmt", type=click.Choice(LOAD_FORMATS), default="auto", show_default=True)
@source_options
@click.option("--model", type=click.Choice(_RETRIEVAL_MODELS), default="itemcf", show_default=True)
@click.option("--similarity", type=click.Choice(_SIMILARITIES), default=None, help="kNN similarity (default cosine).")
@click.option("--k", type=click.IntRange(min=1), default=20, show_default=True, help="Neighbours.")
@click.option("--n", type=click.IntRange(min=1), default=20, show_default=True, help="Candidates.")
@click.option("--feedback", type=click.Choice(["auto", "explicit", "implicit"]), default="auto", show_default=True)
@click.option("--user", default=None, help="A user id seen in the data.")
@click.option("--history", default=None, help="Ad-hoc history: comma-separated item ids (or id:rating).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def candidates_cmd(data_path: str, fmt: str, model: str, similarity: str | None, k: int, n: int,
                   feedback: str, user: str | None, history: str | None, as_json: bool, **source: Any) -> None:
    """Stage-1 candidates for a user (--user) or an ad-hoc history (--history)."""
    from .retrieval.commands import candidates

    if (user is None) == (history is None):
        fail("give exactly one of --user or --history")
    ds = load_with_options(data_path, fmt, **source)
    out = candidates(ds, model, n, user=user, history=history.split(",") if history is not None else None,
                     similarity=similarity, k=k, feedback=feedback)
    if as_json:
        emit_json(out)
        return
    for c in out["candidates"]:
        click.echo(f"{c['rank']:>4}  {c['item_id']:<12} {c['score']:>10.4f}  {c['source']:<8} {c['title']}")


@main.command("predict")
@click.option("--data", "data_path", required=True, type=click.Path(), help="Dataset path.")
@click.option("--format", "fmt", type=click.Choice(LOAD_FORMATS), default="auto", show_default=True)
@source_options
@click.option("--model", type=click.Choice(_RETRIEVAL_MODELS), default="usercf", show_default=True)
@click.option("--similarity", type=click.Choice(_SIMILARITIES), default=None, help="kNN similarity (default cosine).")
@click.option("--k", type=click.IntRange(min=1), default=20, show_default=True, help="Neighbours.")
@click.option("--user", required=True, help="User id.")
@click.option("--item", required=True, help="Item id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict_cmd(data_path: str, fmt: str, model: str, similarity: str | None, k: int, user: str,
                item: str, as_json: bool, **source: Any) -> None:
    """Predicted rating of an item for a user (kNN), with the fallback used."""
    from .retrieval.commands import predict

    out = predict(load_with_options(data_path, fmt, **source), model, user, item, similarity=similarity, k=k)
    if as_json:
        emit_json(out)
        return
    click.echo(f"{out['prediction']:.4f}  (user {user}, item {item}, {model}/{out['similarity']}, k={k}, "
               f"neighbours {out['n_neighbors']}, fallback {out['fallback']})")


# ---------------------------------------------------------------------------- eval
@main.command("eval")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Experiment YAML (configs/*.yaml).")
@click.option("--users", type=click.IntRange(min=1), default=None, help="Evaluate the first N users only.")
@click.option("--seed", type=int, default=None, help="Run this seed only (overrides protocol.seeds).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Output folder.")
@click.option("--data", "data_path", type=click.Path(), default=None, help="Override data.path.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the evaluation cache.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def eval_cmd(config_path: str, users: int | None, seed: int | None, out_dir: str | None,
             data_path: str | None, no_cache: bool, no_progress: bool) -> None:
    """Run an offline evaluation experiment; writes results.json, report.md and PNG plots."""
    click.get_current_context().call_on_close(quiet_progress(no_progress))  # restored when the command ends
    from .evaluation.experiment import load_experiment
    from .evaluation.runner import ExperimentRunner, RunOptions

    loaded = load_experiment(config_path)
    opts = RunOptions(users=users, seed=seed, out_dir=out_dir, data_path=data_path,
                      use_cache=not no_cache, progress=not no_progress)
    runner = ExperimentRunner(loaded, opts)
    from .termination import exit_code

    try:  # SIGTERM arrives as KeyboardInterrupt too (see _Group): partial results, exit 143
        res = runner.run()
    except KeyboardInterrupt:
        click.echo(f"interrupted; partial results in {runner.results_path}", err=True)
        sys.exit(exit_code())
    click.echo(f"{res['experiment']}: {res['status']} in {res['wall_time_s']:.1f} s")
    click.echo(f"  results  {runner.results_path}")
    click.echo(f"  report   {runner.out_dir / 'report.md'}")


# ---------------------------------------------------------------------------- components
@main.command("components")
@click.argument("stage", required=False, type=click.Choice(["retriever", "ranker", "backend"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def components_cmd(stage: str | None, as_json: bool) -> None:
    """List the registered components (retrievers, rankers, LLM backends) with every field of
    their configs and its default: what a pipeline or experiment YAML may set."""
    from .registry import BACKENDS, RANKERS, RETRIEVERS

    stages = {"retriever": RETRIEVERS, "ranker": RANKERS, "backend": BACKENDS}
    chosen = {stage: stages[stage]} if stage else stages
    described = {name: reg.describe() for name, reg in chosen.items()}
    if as_json:
        emit_json(described)
        return
    for name, comps in described.items():
        key = chosen[name].key
        click.echo(f"{name}s ({key}: ...)")
        for c in comps:
            alias = f" (alias {', '.join(c['aliases'])})" if c.get("aliases") else ""
            click.echo(f"  {c['name']}{alias}: {c['summary']}")
            if c.get("error"):
                click.echo(f"      unavailable: {c['error']}")
            for f in c["fields"]:
                doc = f"  # {f['doc'].splitlines()[0]}" if f["doc"] else ""
                click.echo(f"      {f['name']}: {json.dumps(f['default'])}  [{f['type']}]{doc}")
        click.echo("")


# ---------------------------------------------------------------------------- models
@main.group(cls=_Group)
def models() -> None:
    """Resolve and prepare local models."""


@models.command("prepare")
@click.argument("specs", nargs=-1)
def models_prepare(specs: tuple[str, ...]) -> None:
    """Resolve model specs and convert GGUF files to the bf16 safetensors cache (once).

    With no SPECS, prepares the default LLM (smollm2-135m)."""
    from .llm.models import materialize

    for spec in specs or ("smollm2-135m",):
        m = materialize(spec)
        click.echo(f"{spec}: {m.kind} {m.path}")


# ---------------------------------------------------------------------------- finetune
@main.group("finetune", cls=_Group, invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Fine-tuning YAML (configs/finetune-*.yaml).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: output_dir of the config).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in the output folder.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.pass_context
def finetune_cmd(ctx: click.Context, config_path: str | None, out_dir: str | None, resume: bool,
                 no_progress: bool) -> None:
    """Fine-tune the LLM with LoRA on the training split (PALR); `finetune merge` merges an adapter."""
    if ctx.invoked_subcommand is not None:
        return
    if config_path is None:
        fail("give --config FILE (e.g. configs/finetune-demo.yaml)")
    click.get_current_context().call_on_close(quiet_progress(no_progress))  # restored when the command ends
    from .termination import exit_code
    from .training.trainer import Trainer

    trainer = Trainer(config_path, out_dir=out_dir, progress=not no_progress)
    try:  # SIGTERM arrives as KeyboardInterrupt too (see _Group): checkpoint, exit 143
        res = trainer.train(resume=resume)
    except KeyboardInterrupt:
        click.echo(f"interrupted; checkpoint in {trainer.ckpt_dir} (continue with --resume)", err=True)
        sys.exit(exit_code())
    best = f", best validation NDCG@10 {res.best_ndcg:.4f}" if res.best_ndcg is not None else ""
    click.echo(f"{res.steps} steps on {res.sequences} sequences ({res.examples} examples){best}")
    click.echo(f"  adapter  {res.adapter}   (use as model spec {trainer.config.model}+{res.adapter})")
    if res.best is not None:
        click.echo(f"  best     {res.best}")
    click.echo(f"  log      {res.out_dir / 'train_log.jsonl'}")


@finetune_cmd.command("merge")
@click.argument("adapter", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--base", default=None, help="Base model spec (default: the one recorded in the adapter).")
@click.option("--dtype", type=click.Choice(["bf16", "fp32"]), default="bf16", show_default=True,
              help="Weights of the merged model (bf16 rounds part of the LoRA delta away).")
def finetune_merge(adapter: str, out: str, base: str | None, dtype: str) -> None:
    """Merge ADAPTER into its base model and write a standalone model folder OUT."""
    from .training.lora import merge_adapter

    path = merge_adapter(adapter, out, base=base, dtype=dtype)
    click.echo(f"merged model written to {path} (use it as a model spec)")


# ---------------------------------------------------------------------------- demo
@main.command("demo")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Pipeline YAML (default: configs/pipeline-demo.yaml when present, else built-in defaults).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--users", "n_users", type=click.IntRange(min=10), default=500, show_default=True)
@click.option("--items", "n_items", type=click.IntRange(min=20), default=400, show_default=True)
@click.option("--eval-users", type=click.IntRange(min=1), default=20, show_default=True,
              help="Held-out users for the traditional-vs-hybrid table (each costs about 2 s of SmolLM2 "
                   "scoring on 2 cores; 20 keeps the demo near a minute, use 200+ for a table you can read).")
@click.option("--no-explain", is_flag=True, help="Skip the explanations.")
@click.option("--explain-mode", type=click.Choice(["llm", "template"]), default=None,
              help="llm: SmolLM2 phrases the evidence (checked; else the template sentence); template: the "
                   "template sentence from the evidence, no LLM. Default: the config's explain.mode.")
def demo_cmd(config_path: str | None, seed: int, n_users: int, n_items: int, eval_users: int, no_explain: bool,
             explain_mode: str | None) -> None:
    """Generate a shop, recommend with ItemCF + SmolLM2 + MiniLM, explain, and compare."""
    from pathlib import Path

    from .demo import format_demo, run_demo

    if config_path is None:
        default = Path(__file__).resolve().parent.parent / "configs" / "pipeline-demo.yaml"
        config_path = str(default) if default.is_file() else None
    res = run_demo(config_path, seed=seed, n_users=n_users, n_items=n_items,
                   eval_users=eval_users, explain=not no_explain, explain_mode=explain_mode)
    click.echo(format_demo(res))


# ---------------------------------------------------------------------------- rerank
@main.command("rerank")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help='Request JSON: {"history": [item dicts], "candidates": [item dicts], "context": {...}}.')
@click.option("--model", default="smollm2-135m", show_default=True,
              help="Preset, folder, .gguf, hub id, or a server: openai:MODEL@http://host:port/v1.")
@click.option("--api-key-env", default=None, help="With an openai: model, the environment variable holding its key.")
@click.option("--mode", type=click.Choice(["pointwise", "listwise", "verbalizer"]), default="pointwise",
              show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Return the first K only.")
@click.option("--explain", is_flag=True, help="Explain the top items (from evidence shared with the history).")
@click.option("--explain-mode", type=click.Choice(["llm", "template"]), default="llm", show_default=True,
              help="llm: the model phrases the evidence, checked (else the template sentence); template: the "
                   "template sentence from the evidence alone, no generation.")
@click.option("--permutations", type=click.IntRange(min=1), default=1, show_default=True,
              help="Listwise/verbalizer shuffles averaged against position bias.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the Ranking as JSON.")
def rerank_cmd(input_path: str, model: str, api_key_env: str | None,
               mode: Literal["pointwise", "listwise", "verbalizer"],
               top_k: int | None, explain: bool, explain_mode: str,
               permutations: int, threads: int | None, as_json: bool) -> None:
    """Rerank the candidates of one request with a local LLM."""
    from .llm.request import load_request

    req = load_request(input_path)
    from .api import Reranker

    if mode == "pointwise" and permutations != 1:
        fail("--permutations applies to the listwise and verbalizer modes (pointwise scores do not depend on order)")
    options: dict[str, Any] = {"permutations": permutations} if mode != "pointwise" else {}
    if api_key_env:
        options["server"] = {"api_key_env": api_key_env}
    ranking = Reranker(model=model, mode=mode, threads=threads, **options).rerank(
        req.history, req.candidates, top_k=top_k, explain=explain, context=req.context, user_id=req.user_id,
        explain_mode=explain_mode,
    )
    if as_json:
        emit_json(ranking.to_dict())
        return
    titles = {str(c.get("id", c.get("item_id"))): c.get("title", "") for c in req.candidates}
    for r in ranking:
        click.echo(f"{r.rank:>3}  {r.score:>9.3f}  {r.item_id:<12} {titles.get(r.item_id, '')}")
        if r.explanation:
            click.echo(f"       {' '.join(r.explanation.split())}")


main.add_command(batch_cmd)


@main.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Service config (configs/serve.yaml); default: pointwise SmolLM2, no pipeline.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (not loopback: needs the API key).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def serve_cmd(config_path: str | None, host: str, port: int) -> None:
    """Run the HTTP ranking service (rerank, recommend, feedback; /docs for the API)."""
    from .serve.run import serve

    serve(config_path, host, port)


if __name__ == "__main__":  # pragma: no cover
    main()
