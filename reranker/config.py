"""Configuration models. Every component's config subclasses `BaseConfig` (extra="forbid"),
so an unknown key or a bad value fails at load time with its dotted path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

C = TypeVar("C", bound="BaseConfig")


class BaseConfig(BaseModel):
    """Base of all configs: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, source: str | None = None) -> C:
        """Validate a plain dict; errors become one ConfigError listing `path: message` lines."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, source)) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        """Load and validate a YAML file."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data, source=str(p))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML (and write it when a path is given)."""
        import yaml

        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def format_validation_error(e: ValidationError, source: str | None = None) -> str:
    """`a.b.c: message` per error, e.g. `ranking.fusion.weights.llm: must be >= 0`."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "greater_than_equal":
            msg = f"must be >= {_num(err['ctx']['ge'])}"
        elif err["type"] == "greater_than":
            msg = f"must be > {_num(err['ctx']['gt'])}"
        elif err["type"] == "less_than_equal":
            msg = f"must be <= {_num(err['ctx']['le'])}"
        lines.append(f"{loc}: {msg}")
    head = f"{source}: invalid config" if source else "invalid config"
    return head + "\n  " + "\n  ".join(lines)


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


__all__ = ["BaseConfig", "format_validation_error"]
