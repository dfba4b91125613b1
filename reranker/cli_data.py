"""The `reranker data fetch` / `reranker data list` commands and the options that describe a
user's own data (`--items`, `--column`, `--item-column`, `--sep`), shared by the commands that
load a data set. Registered on the `data` group by `reranker.cli`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from .errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

LOAD_FORMATS = ["auto", "csv", "parquet", "jsonl", "movielens", "recbole", "amazon2023"]


def parse_mapping(pairs: Sequence[str], option: str) -> dict[str, str] | None:
    """``["user_id=userId", ...]`` -> ``{"user_id": "userId"}``; ConfigError naming the option."""
    out: dict[str, str] = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ConfigError(f"{option}: expected CANONICAL=SOURCE (e.g. user_id=userId), got {p!r}")
        out[key.strip()] = value.strip()
    return out or None


def _sep(value: str | None) -> str | None:
    return {"\\t": "\t", "tab": "\t"}.get(value, value) if value is not None else None


def source_options(fn: F) -> F:
    """``--items``, ``--column``, ``--item-column``, ``--sep``, ``--category-sep`` (own data:
    see the README)."""
    fn = click.option("--category-sep", default="|", show_default=True,
                      help="Split a catalog category holding several values (A|B): first = category, "
                           "all = genres; '' keeps values whole.")(fn)
    fn = click.option("--sep", default=None,
                      help="Field separator of CSV files (default ',' or tab for .tsv; 'tab' or '\\t' for tab).")(fn)
    fn = click.option("--item-column", "item_column", multiple=True, metavar="CANONICAL=SOURCE",
                      help="Catalog column mapping, e.g. item_id=movieId, title=name, category=genres.")(fn)
    fn = click.option("--column", "column", multiple=True, metavar="CANONICAL=SOURCE",
                      help="Interactions column mapping, e.g. user_id=userId (repeat for each column).")(fn)
    fn = click.option("--items", "items_path", type=click.Path(), default=None,
                      help="The catalog file, when PATH is an interactions file.")(fn)
    return fn


def load_with_options(path: str, fmt: str, *, items_path: str | None, column: Sequence[str],
                      item_column: Sequence[str], sep: str | None, category_sep: str = "|", **kwargs: Any) -> Any:
    """`reranker.data.load` with the `source_options` values."""
    from .data.loaders import load

    return load(path, format=fmt, items=items_path, columns=parse_mapping(column, "--column"),
                item_columns=parse_mapping(item_column, "--item-column"), sep=_sep(sep),
                category_sep=category_sep or None, **kwargs)


@click.command("fetch")
@click.argument("name")
@click.argument("dest", type=click.Path(file_okay=False), required=False)
@click.option("--from", "sources", multiple=True, type=click.Path(),
              help="An archive already downloaded (offline machines); checked like a download. "
                   "Repeat for data sets of several files. Or a folder holding a copy already "
                   "unpacked in a layout the loaders read (GroupLens, RecBole atomic files, ...): "
                   "copied after checking that it loads and has the release's size.")
@click.option("--force", is_flag=True, help="Fetch again and replace DEST.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def fetch_cmd(name: str, dest: str | None, sources: tuple[str, ...], force: bool, no_progress: bool) -> None:
    """Download data set NAME (see `reranker data list`) into DEST (default: the cache folder
    $RERANKER_DATA/NAME), verify it and unpack it to the layout the loaders read."""
    from .data.fetch import dataset_spec, fetch, read_marker

    spec = dataset_spec(name)
    source: Any = list(sources) or None
    if source is not None and len(source) == 1:
        source = source[0]
    folder = fetch(spec, dest, source=source, force=force, progress=not no_progress)
    fmt = (read_marker(folder) or {}).get("format") or spec.format
    click.echo(f"{spec.name} is in {folder} (format {fmt}); "
               f"`reranker data describe {folder}` summarises it")


@click.command("list")
def list_cmd() -> None:
    """The data sets `reranker data fetch` knows, and the cache folder."""
    from .data.fetch import AMAZON_PREFIX, DATASETS, data_home, read_marker

    click.echo(f"cache folder: {data_home()} (set RERANKER_DATA to move it)")
    for name, spec in DATASETS.items():
        have = "fetched" if read_marker(data_home() / name) is not None else "not fetched"
        click.echo(f"  {name:<18} {spec.description} [{have}]")
        click.echo(f"  {'':<18} checksum: {spec.checksum_note or 'SHA-256'}")
    click.echo(f"  {AMAZON_PREFIX + '<Category>':<18} Amazon Reviews 2023, one category "
               f"(e.g. {AMAZON_PREFIX}All_Beauty): reviews + metadata JSONL, no published checksums")


__all__ = ["LOAD_FORMATS", "fetch_cmd", "list_cmd", "load_with_options", "parse_mapping", "source_options"]
