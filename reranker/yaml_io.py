"""Reading the user's YAML files (configs): one strict loader for every YAML the library reads.

`load_yaml(path)` is `yaml.safe_load` of a file plus the checks a hostile or hand-edited file
needs, each a `ConfigError` naming the file (and the line where there is one):

- anchors and aliases (``&a`` / ``*a``, and so ``<<:`` merge keys) are refused: a config never
  needs them, and a few lines of nested aliases ("billion laughs") expand to billions of
  values once validated or dumped;
- a key given twice in one mapping is refused (plain PyYAML keeps the last silently);
- text that is not UTF-8 is reported with its byte offset and line; a file over
  `MAX_YAML_BYTES` is refused before it is read; a folder, a missing file or an unreadable one
  are named as such.

    >>> data = load_yaml("configs/demo.yaml")        # dict | list | scalar | None
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import yaml
from yaml.error import Mark
from yaml.events import AliasEvent, CollectionStartEvent, Event, ScalarEvent
from yaml.nodes import MappingNode, Node

from .errors import ConfigError

__all__ = ["MAX_YAML_BYTES", "StrictSafeLoader", "dump_yaml", "load_yaml", "parse_yaml", "yaml_problem"]

MAX_YAML_BYTES = 10 * 2**20
"""The largest config file read (10 MiB; the committed configs are a few KiB)."""


class _Refused(yaml.MarkedYAMLError):
    """A construct the strict loader refuses (an alias, an anchor, a duplicate key)."""


def _mark(event: Event) -> Mark | None:
    # the pure-Python loader's events carry `yaml.error.Mark`s; the stubs also allow the
    # C extension's Mark, which `MarkedYAMLError` is not typed to take
    return cast("Mark | None", event.start_mark)


class StrictSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses anchors, aliases and duplicate mapping keys."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise _Refused(None, None, f"alias *{event.anchor} is not allowed in a config "
                           "(anchors and aliases are refused; write the values out)", _mark(event))
        if isinstance(event, ScalarEvent | CollectionStartEvent) and event.anchor is not None:
            raise _Refused(None, None, f"anchor &{event.anchor} is not allowed in a config "
                           "(anchors and aliases are refused; write the values out)", _mark(event))
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: let PyYAML report it
                continue
            if first is not None:
                raise _Refused(None, None, f"duplicate key {key!r} (first given at line {first})",
                               key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _NoAliasDumper(yaml.SafeDumper):
    """`yaml.SafeDumper` that writes a value seen twice out again instead of an anchor + alias
    (what `StrictSafeLoader` refuses)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """YAML text of plain data (no anchors or aliases, keys in their order): what `load_yaml` reads back."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


def yaml_problem(e: Exception) -> str:
    """One line for a YAML parse error: `` at line L, column C: what (context)``."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None)
    if mark is None or problem is None:
        return ": " + " ".join(str(e).split())
    ctx, ctx_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    more = f" ({ctx} at line {ctx_mark.line + 1})" if ctx and ctx_mark is not None else ""
    return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}{more}"


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text with `StrictSafeLoader`; a ConfigError names `source` and the line."""
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else None
        where = f": line {line}" if line is not None else ""
        raise ConfigError(f"{source}{where}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML{yaml_problem(e)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None


def load_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file strictly (see the module docstring); None for an empty file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a YAML config file")
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{p}: {size:,} bytes; a config file may hold at most {MAX_YAML_BYTES:,}")
        raw = p.read_bytes()
    except OSError as e:  # PermissionError, ...
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{p}: line {line}: not valid UTF-8 at byte {e.start}; save the file as UTF-8"
        ) from None
    return parse_yaml(text, str(p))
