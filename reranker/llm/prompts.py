"""Jinja prompt templates: found, checked at load, rendered with StrictUndefined.

Each template starts with a header comment declaring the variables it needs::

    {# requires: history, candidates, context #}

Loading checks the header against the variables the template actually uses
(`jinja2.meta.find_undeclared_variables`, followed through every `{% include %}`d partial): a
used-but-undeclared variable (a typo, also one inside a partial) or a declared-but-unused one
raises `PromptError` naming the template and the variable. Rendering checks that every declared
variable is supplied.

Partials: files whose name starts with `_` (`_context.j2`, `_history.j2`) hold blocks shared by
several templates; they are included with constant names, render with the including template's
variables, and are not templates on their own (`PromptLibrary.get("_context")` is an error).

Template folders, first match wins (for templates and partials alike): a user folder (config
`prompt_dir`), the `prompts/` package data shipped in the wheel (`reranker/_prompts/`), the
repository's top-level `prompts/`. Templates render in Jinja's immutable sandbox.

Sandbox: a user folder is code we run, so a template that reaches for Python internals
(``{{ ''.__class__.__mro__ }}``, ``{{ cycler.__init__.__globals__ }}``,
``{{ self._TemplateReference__context }}``, ``x|attr('__class__')``, ``x['__class__']``) is
refused at load (`PromptError` naming the template or partial and the attribute); what only
shows at render (a computed attribute name, a mutating method such as ``list.append``, a range
over `MAX_RANGE`) is stopped by the sandbox and raised as a `PromptError` naming the template.

Versions: the built-in templates carry a ``{# version: N #}`` comment equal to `PROMPT_VERSION`,
the version of the prompts as a whole (templates and the item-text cleaning of
`reranker.ranking.item_text`); rankers record it in their diagnostics, evaluation reports in
results.json, and the evaluation cache key of LLM rows includes it. `PromptTemplate.version` is
a template's own header value (None for a user template without one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import PromptError

TEMPLATE_NAMES = ("rank_listwise", "score_pointwise", "rank_verbalizer", "explain")
PARTIAL_PREFIX = "_"
_HEADER = re.compile(r"\{#-?\s*requires:\s*(?P<vars>[^#]*?)\s*-?#\}")
_VERSION = re.compile(r"\{#-?\s*version:\s*(?P<v>[^\s#]+)\s*-?#\}")

PROMPT_VERSION = 2
"""Version of the built-in prompts (templates + item-text cleaning). 1: the prompts before issue
19 (raw item text, instructions first); 2: cleaned, delimited item text, instructions after it."""

#: attributes refused at load even though they do not start with "_" (the sandbox refuses them too)
_UNSAFE_NAMES = frozenset({"mro", "func_globals", "func_code", "f_globals", "f_locals", "f_builtins",
                           "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code",
                           "tb_frame", "f_back"})


def builtin_prompt_dirs() -> list[Path]:
    """Folders holding the built-in templates (package data first, then the repo checkout)."""
    dirs: list[Path] = []
    try:
        from importlib.resources import files

        root = Path(str(files("reranker")))
        # the wheel ships the top-level prompts/ as the package `reranker._prompts`
        dirs.extend(d for d in (root / "_prompts", root / "prompts") if d.is_dir())
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        pass
    repo = Path(__file__).resolve().parents[2] / "prompts"
    if repo.is_dir() and repo not in dirs:
        dirs.append(repo)
    return dirs


class PromptTemplate:
    """One checked template. `render(**variables)` needs exactly the declared variables."""

    def __init__(self, name: str, source: str, path: Path | None = None, env=None) -> None:
        import jinja2

        self.name = name
        self.path = path
        env = env or _make_env(builtin_prompt_dirs())
        m = _HEADER.search(source)
        if not m:
            raise PromptError(
                f"prompt template {name!r} ({path}): missing header comment "
                "'{# requires: var1, var2 #}' declaring its variables"
            )
        declared = {v.strip() for v in m.group("vars").split(",") if v.strip()}
        vm = _VERSION.search(source)
        self.version: str | None = vm.group("v") if vm else None
        try:
            ast = env.parse(source)
        except jinja2.TemplateSyntaxError as e:
            raise PromptError(
                f"prompt template {name!r} ({path}): syntax error at line {e.lineno}: {e.message}"
            ) from None
        _check_safe(ast, f"prompt template {name!r} ({path})")
        used = _used_variables(env, ast, name, set())
        undeclared = sorted(used.keys() - declared)
        if undeclared:
            where = used[undeclared[0]]
            inside = f" in partial {where!r}" if where else ""
            raise PromptError(
                f"prompt template {name!r}: uses undeclared variable {undeclared[0]!r}{inside} "
                f"(declared: {', '.join(sorted(declared)) or 'none'})"
            )
        unused = sorted(declared - used.keys())
        if unused:
            raise PromptError(
                f"prompt template {name!r}: declares variable {unused[0]!r} but never uses it"
            )
        self.variables = frozenset(declared)
        self._template = env.from_string(source)

    def render(self, **variables: Any) -> str:
        import jinja2

        missing = sorted(self.variables - variables.keys())
        if missing:
            raise PromptError(f"prompt template {self.name!r}: missing variable {missing[0]!r}")
        from jinja2.sandbox import SecurityError

        try:
            return self._template.render(**variables).strip()
        except SecurityError as e:
            raise PromptError(
                f"prompt template {self.name!r} ({self.path}): blocked by the sandbox: {e}"
            ) from None
        except jinja2.UndefinedError as e:
            raise PromptError(f"prompt template {self.name!r}: {e.message}") from None
        except jinja2.TemplateError as e:
            raise PromptError(f"prompt template {self.name!r}: {e}") from None
        except (OverflowError, TypeError, ValueError, ArithmeticError, LookupError) as e:
            # e.g. the sandbox's range limit, calling a string: a broken template, not a crash
            raise PromptError(
                f"prompt template {self.name!r} ({self.path}): {type(e).__name__}: {e}"
            ) from None


def _check_safe(ast: Any, where: str) -> None:
    """Refuse, at load, attribute access that only serves to escape the sandbox: a constant
    attribute or item name starting with "_" (``x.__class__``, ``x['__globals__']``,
    ``x|attr('__init__')``, ``self._TemplateReference__context``) or one of `_UNSAFE_NAMES`."""
    from jinja2 import nodes

    def bad(attr: Any) -> bool:
        return isinstance(attr, str) and (attr.startswith("_") or attr in _UNSAFE_NAMES)

    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        attr = None
        if isinstance(node, nodes.Getattr):
            attr = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            attr = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            arg = node.args[0]
            attr = arg.value if isinstance(arg, nodes.Const) else None
        if bad(attr):
            raise PromptError(
                f"{where}: line {node.lineno}: access to {attr!r} is not allowed in a prompt "
                "template (the sandbox refuses Python internals)"
            )


def _used_variables(env: Any, ast: Any, name: str, seen: set[str]) -> dict[str, str | None]:
    """Variables a parsed template reads from its context, following its includes through the
    environment's loader: variable -> the partial it was first found in (None: the template)."""
    import jinja2
    from jinja2 import meta

    used: dict[str, str | None] = dict.fromkeys(meta.find_undeclared_variables(ast))
    for ref in meta.find_referenced_templates(ast):
        if ref is None:
            raise PromptError(f"prompt template {name!r}: include a partial by a constant name")
        if ref in seen:
            continue
        seen.add(ref)
        if env.loader is None:
            raise PromptError(f"prompt template {name!r}: cannot include {ref!r} (no template folder)")
        try:
            source, filename, _ = env.loader.get_source(env, ref)
        except jinja2.TemplateNotFound:
            raise PromptError(f"prompt template {name!r}: included partial {ref!r} not found") from None
        try:
            sub = env.parse(source, ref, filename)
        except jinja2.TemplateSyntaxError as e:
            raise PromptError(
                f"prompt partial {ref!r} ({filename}): syntax error at line {e.lineno}: {e.message}"
            ) from None
        _check_safe(sub, f"prompt partial {ref!r} ({filename}, included by {name!r})")
        for var, where in _used_variables(env, sub, ref, seen).items():
            used.setdefault(var, where or ref)
    return used


def _make_env(dirs: Sequence[Path] = ()):
    """The Jinja environment: immutable sandbox, StrictUndefined, partials from `dirs`."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs]) if dirs else None,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class PromptLibrary:
    """Loads and checks templates by name from the user folder, then the built-in folders."""

    def __init__(self, prompt_dir: str | Path | None = None) -> None:
        self.user_dir = Path(prompt_dir).expanduser() if prompt_dir else None
        if self.user_dir is not None and not self.user_dir.is_dir():
            raise PromptError(f"prompt folder {self.user_dir} does not exist")
        self.dirs = ([self.user_dir] if self.user_dir else []) + builtin_prompt_dirs()
        if not self.dirs:
            raise PromptError("no prompt folder found (the package data 'prompts/' is missing)")
        self._cache: dict[str, PromptTemplate] = {}
        self._env = _make_env(self.dirs)

    def path_of(self, name: str) -> Path:
        if name.startswith(PARTIAL_PREFIX):
            raise PromptError(
                f"prompt template {name!r} is a partial: names starting with {PARTIAL_PREFIX!r} are "
                "included by templates, not rendered on their own"
            )
        for d in self.dirs:
            p = d / f"{name}.j2"
            if p.is_file():
                return p
        raise PromptError(
            f"prompt template {name!r} not found in {', '.join(str(d) for d in self.dirs)}"
        )

    def get(self, name: str) -> PromptTemplate:
        if name not in self._cache:
            path = self.path_of(name)
            self._cache[name] = PromptTemplate(
                name, path.read_text(encoding="utf-8"), path, self._env
            )
        return self._cache[name]

    def check(self, names: tuple[str, ...] = TEMPLATE_NAMES) -> None:
        """Load every named template now (fail at start-up, not mid-run)."""
        for n in names:
            self.get(n)

    def render(self, name: str, **variables: Any) -> str:
        return self.get(name).render(**variables)


@lru_cache(maxsize=8)
def _library(prompt_dir: str | None) -> PromptLibrary:
    return PromptLibrary(prompt_dir)


def get_library(prompt_dir: str | Path | None = None) -> PromptLibrary:
    """A cached PromptLibrary per folder."""
    return _library(str(prompt_dir) if prompt_dir else None)


def render(name: str, variables: Mapping[str, Any], prompt_dir: str | Path | None = None) -> str:
    return get_library(prompt_dir).render(name, **variables)


__all__ = [
    "PARTIAL_PREFIX",
    "PROMPT_VERSION",
    "PromptLibrary",
    "PromptTemplate",
    "TEMPLATE_NAMES",
    "builtin_prompt_dirs",
    "get_library",
    "render",
]
