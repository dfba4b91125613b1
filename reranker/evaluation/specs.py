"""Experiment config sections with no registry lookups (YAML, pydantic, extra="forbid"):
the data source and the protocol's position-bias sweep and rating split. Split from
`reranker.evaluation.experiment`, which re-exports every name here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import BaseConfig, nested_config_error
from ..errors import ConfigError

__all__ = [
    "MAX_LIST",
    "MAX_POSITIONS",
    "ColdSpec",
    "DataSpec",
    "PositionBiasSpec",
    "RatingSpec",
    "SyntheticSpec",
]

MAX_LIST = 1000
"""The largest candidate list an experiment ranks (regime A ``n_candidates``, regime B
``n_negatives + 1``, injection lists): an LLM ranker sees every item of it in its prompts."""
MAX_POSITIONS = 100
"""The most positions a position-bias sweep may name."""


class SyntheticSpec(BaseConfig):
    """The generated demo world (reranker.data.synthetic.generate_world)."""

    seed: int = 0
    n_users: int = Field(300, ge=3, le=1_000_000)
    n_items: int = Field(200, ge=8, le=1_000_000)


class DataSpec(BaseConfig):
    """Where the interactions come from: a path + format, a data set name that
    `reranker data fetch` knows (fetched into the cache on first use), or a generated world.

    Own data: ``items`` (the catalog file when ``path`` is a file), ``columns`` /
    ``item_columns`` (canonical -> source column, e.g. ``{user_id: userId}``), ``sep`` (the
    CSV field separator) and ``category_sep`` (a category holding several values, ``A|B``: the
    first is the category, all are ``genres``; null keeps values whole). ``format`` defaults to ``recbole`` for a path (as before) and to the
    data set's own format for a name."""

    path: str | None = None
    name: str | None = None
    format: Literal["csv", "parquet", "jsonl", "movielens", "recbole", "amazon2023", "auto"] = "recbole"
    items: str | None = None
    columns: dict[str, str] | None = None
    item_columns: dict[str, str] | None = None
    sep: str | None = None
    category_sep: str | None = "|"
    synthetic: SyntheticSpec | None = None
    min_interactions: int = Field(3, ge=3)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if sum(x is not None for x in (self.path, self.name, self.synthetic)) != 1:
            raise ValueError("give exactly one of data.path, data.name or data.synthetic")
        return self


class PositionBiasSpec(BaseConfig):
    """Position-bias sweep: the target is forced to each position of the candidate list.

    ``bootstrap_params`` maps a ranker type to parameter overrides that switch on permutation
    bootstrapping for it; such rankers are swept twice (``plain`` and ``bootstrap``).
    """

    enabled: bool = True
    positions: list[int] = Field(default_factory=lambda: [0, 5, 10, 15, 19])
    users: int = Field(50, ge=1)
    rankers: list[str] | None = None
    bootstrap_params: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("positions")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if not v or any(p < 0 for p in v):
            raise ValueError("positions must be a non-empty list of integers >= 0")
        if len(v) > MAX_POSITIONS or any(p >= MAX_LIST for p in v):
            raise ValueError(f"at most {MAX_POSITIONS} positions, each < {MAX_LIST} (the largest candidate list)")
        return v



class ColdSpec(BaseConfig):
    """Regime C (cold start), `reranker.evaluation.cold_start`.

    ``kind: items``: the ``item_share`` newest items by first interaction (``item_select:
    random``: a seeded random share) lose every interaction from training and from the fit
    catalog; each user who interacted with one is tested on the first one (in time) against
    ``n_negatives`` other cold items the user never touched, with the warm items before it as
    history (users with fewer than ``min_history`` such items are not evaluated).

    ``kind: users``: a seeded ``user_share`` of the users (those with more than
    ``max(history_cuts)`` interactions) lose every interaction from training; each is tested on
    the last item against ``n_negatives`` warm items never touched, once per cut of the
    history to its last k items (each cut a block of its own in the results)."""

    kind: Literal["items", "users"] = "items"
    item_share: float = Field(0.1, gt=0.0, lt=1.0)
    """Share of the items with interactions that become cold (kind items)."""
    item_select: Literal["newest", "random"] = "newest"
    """Which items become cold: the newest by first interaction (ties in time by a seeded
    order), or a seeded random share (kind items; ``newest`` needs timestamps)."""
    min_history: int = Field(1, ge=1)
    """Warm items a user must have before the cold target to be evaluated (kind items)."""
    user_share: float = Field(0.2, gt=0.0, lt=1.0)
    """Share of the eligible users that become cold (kind users)."""
    history_cuts: list[int] = Field(default_factory=lambda: [1, 3, 5])
    """History lengths the cold users are evaluated with, one block each (kind users)."""
    seed: int = Field(0, ge=0)
    """Seed of the cold set (ties among the newest items, the random item share, the users)."""

    @field_validator("history_cuts")
    @classmethod
    def _cuts(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v) or len(set(v)) != len(v):
            raise ValueError("give one or more distinct history lengths >= 1, e.g. [1, 3, 5]")
        return sorted(v)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ColdSpec:
        own = {"items": {"item_share", "item_select", "min_history"}, "users": {"user_share", "history_cuts"}}
        other = own["users" if self.kind == "items" else "items"]
        wrong = sorted(other & self.model_fields_set)
        if wrong:
            raise field_error(wrong[0], f"not used with kind {self.kind!r} (remove it, or set kind)")
        return self


def field_error(field: str, msg: str) -> Exception:
    """Raised inside a model validator: reported as ``<model's path>.<field>: msg``."""
    error = ConfigError(f"{field}: {msg}")
    error.lines = [(field, msg)]
    return nested_config_error(error)


class RatingSpec(BaseConfig):
    """Rating prediction on a seeded random split: MAE / RMSE for each kNN model and K."""

    test_ratio: float = Field(0.2, gt=0.0, lt=1.0)
    k_values: list[int] = Field(default_factory=lambda: [5, 10, 15, 20, 25, 30])
    k_param: str = "k"

