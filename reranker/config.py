"""Configuration models. Every component's config subclasses `BaseConfig` (extra="forbid"),
so an unknown key or a bad value fails at load time with its dotted path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

C = TypeVar("C", bound="BaseConfig")


class BaseConfig(BaseModel):
    """Base of all configs: unknown keys are errors, values are validated on assignment, and
    no float field takes an infinity or NaN (``lr: .inf`` is a ConfigError, not a diverging run)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              use_attribute_docstrings=True, allow_inf_nan=False)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, source: str | None = None) -> C:
        """Validate a plain dict; errors become one ConfigError listing `path: message` lines."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, source)) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        """Load and validate a YAML file (read by `reranker.yaml_io.load_yaml`: anchors, aliases
        and duplicate keys are refused with the file and line)."""
        from .yaml_io import load_yaml

        p = Path(path)
        data = load_yaml(p)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data, source=str(p))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML (and write it when a path is given)."""
        from .yaml_io import dump_yaml

        text = dump_yaml(self.model_dump(mode="json"))
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def yaml_problem(e: Exception) -> str:
    """One line for a YAML parse error (kept here for callers; see `reranker.yaml_io`)."""
    from .yaml_io import yaml_problem as problem

    return problem(e)


def validation_lines(e: ValidationError) -> list[tuple[str, str]]:
    """``(dotted path, message)`` per error, e.g. ``("ranking.fusion.weights.llm", "must be >= 0")``.
    A nested component config validated by a model validator (an experiment row's ``params``)
    reports its own paths under the row's (error type ``nested_config``)."""
    out: list[tuple[str, str]] = []
    for err in e.errors():
        parts = list(err["loc"])
        # a discriminated union's member tag (`<itemcf>`, see `reranker.registry`) is not a field
        parts = [x for x in parts if not (isinstance(x, str) and x.startswith("<") and x.endswith(">"))]
        loc = ".".join(str(x) for x in parts)
        if err["type"] == "nested_config":
            for path, msg in err["ctx"]["lines"]:
                out.append((".".join(p for p in (loc, path) if p) or "<root>", msg))
            continue
        msg = err["msg"]
        if err["type"] == "unknown_component":  # "type: missing or unknown ..." (reranker.registry)
            field, _, msg = msg.partition(": ")
            out.append((".".join(p for p in (loc, field) if p), msg))
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "greater_than_equal":
            msg = f"must be >= {_num(err['ctx']['ge'])}"
        elif err["type"] == "greater_than":
            msg = f"must be > {_num(err['ctx']['gt'])}"
        elif err["type"] == "less_than_equal":
            msg = f"must be <= {_num(err['ctx']['le'])}"
        elif err["type"] == "finite_number":
            msg = "must be a finite number (not .inf or .nan)"
        elif err["type"] == "value_error" and msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append((loc or "<root>", msg))
    return out


def format_validation_error(e: ValidationError, source: str | None = None) -> str:
    """`a.b.c: message` per error, e.g. `ranking.fusion.weights.llm: must be >= 0`."""
    lines = [f"{loc}: {msg}" for loc, msg in validation_lines(e)]
    head = f"{source}: invalid config" if source else "invalid config"
    return head + "\n  " + "\n  ".join(lines)


def nested_config_error(error: ConfigError) -> Exception:
    """Re-raise a component's ConfigError inside a pydantic validator so its paths end up
    under the enclosing field's (see `validation_lines`)."""
    from pydantic_core import PydanticCustomError

    lines = error.lines or [("", str(error))]
    return PydanticCustomError("nested_config", "{detail}", {"lines": lines, "detail": str(error)})


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


__all__ = ["BaseConfig", "format_validation_error", "nested_config_error", "validation_lines"]
