"""What the parts of an experiment run read, gathered in two frozen objects.

- :class:`RunContext`: one experiment run (the loaded experiment, the options, the cache, the
  seeds, and the callback that writes the partial results file);
- :class:`SeedContext`: one seed of a ranking regime (A or B): the data and its split, the users,
  their histories, targets and candidate lists, the fit data's fingerprint, the builders'
  context and, in regime A, the stage-1 ceiling.

They replace the long parameter lists the runner's stages used to pass each other; they hold
references, so building one copies nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import protocol as P

if TYPE_CHECKING:
    from ..types import History
    from .cache import KVCache, NullCache
    from .experiment import BuildContext, ExperimentConfig, LoadedExperiment, ProtocolSpec
    from .records import Stage1Ceiling

__all__ = ["RunOptions", "RunContext", "SeedContext", "metric_names"]


@dataclass
class RunOptions:
    """Command-line overrides of an experiment config."""

    users: int | None = None
    seed: int | None = None
    out_dir: str | Path | None = None
    data_path: str | Path | None = None
    use_cache: bool = True
    cache_dir: str | Path | None = None
    progress: bool = True
    flush_every: int = 50
    flush_seconds: float = 30.0
    """Partial results are scored and written every ``flush_every`` users, at most once per
    ``flush_seconds`` (scoring them bootstraps every metric over the users so far)."""
    report: bool = True
    dataset: Any = None
    """A ready Dataset to use instead of loading ``data`` (tests, notebooks)."""


@dataclass(frozen=True)
class RunContext:
    """One experiment run: what every regime reads (and the callback that writes results.json)."""

    loaded: LoadedExperiment
    options: RunOptions
    cache: KVCache | NullCache
    seeds: tuple[int, ...]
    flush: Callable[[], None]
    """Write the results as they stand (partial results survive Ctrl-C)."""

    @property
    def config(self) -> ExperimentConfig:
        return self.loaded.config

    @property
    def protocol(self) -> ProtocolSpec:
        return self.loaded.config.protocol

    @property
    def user_limit(self) -> int | None:
        """``--users`` when given, else ``protocol.users`` (None: all users)."""
        return self.options.users if self.options.users is not None else self.protocol.users

    def select_users(self, candidates: Sequence[str]) -> list[str]:
        """The evaluated users: a seeded order of ``candidates`` (prefixes are nested), limited."""
        order = P.user_order(candidates, seed=0)
        limit = self.user_limit
        return order[:limit] if limit else order


def metric_names(protocol: ProtocolSpec) -> list[str]:
    """The per-user metrics of a ranking regime (regime A adds Recall@n for n candidates)."""
    if protocol.regime == "a":
        names = list(P.REGIME_A_METRICS)
        if protocol.n_candidates != 20 and f"recall@{protocol.n_candidates}" not in names:
            names.append(f"recall@{protocol.n_candidates}")
        return names
    return list(P.REGIME_B_METRICS)


@dataclass(frozen=True)
class SeedContext:
    """One seed of a ranking regime: the lists to rank and everything needed to rank and score them."""

    run: RunContext
    seed: int
    data: Any
    """The full Dataset (the catalog)."""
    split: Any
    """The leave-one-out split."""
    build: BuildContext
    """The builders' context for this seed (fit data, catalog, cache, seed, built rankers)."""
    users: list[str]
    histories: Mapping[str, History]
    targets: Mapping[str, str]
    lists: Mapping[str, Sequence[Any]]
    """Each user's candidate list (Candidates in regime A, item ids in regime B)."""
    fingerprint: str
    """Fingerprint of the fit data (part of every ranking's cache key)."""
    metric_names: list[str]
    ceiling: Stage1Ceiling | None = None
    """Regime A: which users have their target among the stage-1 candidates."""

    @property
    def protocol(self) -> ProtocolSpec:
        return self.run.protocol
