"""Where the package's data files live (prompt templates), installed or in a source checkout."""

from __future__ import annotations

from pathlib import Path


def prompts_dir() -> Path:
    """The folder holding the built-in `*.j2` prompt templates.

    In a wheel they are the package `reranker._prompts`; in a source checkout (editable
    install) they are the repository's top-level `prompts/` folder.
    """
    try:
        import importlib.resources as resources

        path = Path(str(resources.files("reranker._prompts")))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "prompts"


__all__ = ["prompts_dir"]
