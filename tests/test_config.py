"""Config base: unknown keys and bad values fail with their dotted path."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from reranker.config import BaseConfig
from reranker.errors import ConfigError


class Weights(BaseConfig):
    llm: float = Field(0.0, ge=0)
    cf: float = Field(1.0, ge=0)


class Fusion(BaseConfig):
    weights: Weights = Weights()


class Ranking(BaseConfig):
    fusion: Fusion = Fusion()
    k: int = Field(10, gt=0)


class Top(BaseConfig):
    ranking: Ranking = Ranking()


def test_bad_value_names_path():
    with pytest.raises(ConfigError, match=r"ranking\.fusion\.weights\.llm: must be >= 0"):
        Top.from_dict({"ranking": {"fusion": {"weights": {"llm": -0.5}}}})


def test_unknown_key_names_path():
    with pytest.raises(ConfigError, match=r"ranking\.fusoin: unknown key"):
        Top.from_dict({"ranking": {"fusoin": {}}})


def test_yaml_roundtrip_and_errors(tmp_path: Path):
    cfg = Top.from_dict({"ranking": {"k": 5}})
    p = tmp_path / "c.yaml"
    cfg.to_yaml(p)
    assert Top.from_yaml(p) == cfg
    bad = tmp_path / "bad.yaml"
    bad.write_text("ranking: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        Top.from_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        Top.from_yaml(tmp_path / "missing.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        Top.from_yaml(lst)
    zero = tmp_path / "zero.yaml"
    zero.write_text("ranking: {k: 0}\n")
    with pytest.raises(ConfigError, match=r"zero.yaml: invalid config\n  ranking\.k: must be > 0"):
        Top.from_yaml(zero)
