"""Jinja prompt templates: found, checked at load, rendered with StrictUndefined.

Each template starts with a header comment declaring the variables it needs::

    {# requires: history, candidates, context #}

Loading checks the header against the variables the template actually uses
(`jinja2.meta.find_undeclared_variables`): a used-but-undeclared variable (a typo) or a
declared-but-unused one raises `PromptError` naming the template and the variable. Rendering
checks that every declared variable is supplied.

Template folders, first match wins: a user folder (config `prompt_dir`), the `prompts/` package
data shipped in the wheel (`reranker/prompts/`), the repository's top-level `prompts/`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import PromptError

TEMPLATE_NAMES = ("rank_listwise", "score_pointwise", "rank_verbalizer", "explain")
_HEADER = re.compile(r"\{#-?\s*requires:\s*(?P<vars>[^#]*?)\s*-?#\}")


def builtin_prompt_dirs() -> list[Path]:
    """Folders holding the built-in templates (package data first, then the repo checkout)."""
    dirs: list[Path] = []
    try:
        from importlib.resources import files

        pkg = Path(str(files("reranker"))) / "prompts"
        if pkg.is_dir():
            dirs.append(pkg)
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
        from jinja2 import meta

        self.name = name
        self.path = path
        env = env or _make_env()
        m = _HEADER.search(source)
        if not m:
            raise PromptError(
                f"prompt template {name!r} ({path}): missing header comment "
                "'{# requires: var1, var2 #}' declaring its variables"
            )
        declared = {v.strip() for v in m.group("vars").split(",") if v.strip()}
        try:
            ast = env.parse(source)
        except jinja2.TemplateSyntaxError as e:
            raise PromptError(
                f"prompt template {name!r} ({path}): syntax error at line {e.lineno}: {e.message}"
            ) from None
        used = meta.find_undeclared_variables(ast)
        undeclared = sorted(used - declared)
        if undeclared:
            raise PromptError(
                f"prompt template {name!r}: uses undeclared variable {undeclared[0]!r} "
                f"(declared: {', '.join(sorted(declared)) or 'none'})"
            )
        unused = sorted(declared - used)
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
        try:
            return self._template.render(**variables).strip()
        except jinja2.UndefinedError as e:
            raise PromptError(f"prompt template {self.name!r}: {e.message}") from None
        except jinja2.TemplateError as e:
            raise PromptError(f"prompt template {self.name!r}: {e}") from None


def _make_env():
    import jinja2

    return jinja2.Environment(
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
        self._env = _make_env()

    def path_of(self, name: str) -> Path:
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
    "PromptLibrary",
    "PromptTemplate",
    "TEMPLATE_NAMES",
    "builtin_prompt_dirs",
    "get_library",
    "render",
]
