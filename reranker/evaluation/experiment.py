"""Experiment configs (YAML, pydantic, extra="forbid") and the factory that builds their parts.

An experiment names its data, the protocol (regime A / B / rating), the stage-1 retriever and a
list of rankers. Rankers are built lazily by type, importing their module only when used, so a
type whose module is missing gives a clear `ConfigError` instead of an ImportError at start-up.

Ranker types
------------
``identity`` (stage-1 order), ``random`` (seeded shuffle), ``pop``, ``itemcf``, ``usercf`` (the
CF model's own score of each candidate), ``bert`` (BertScorer), ``llm-pointwise``,
``llm-listwise``, ``llm-verbalizer``, ``fusion`` (fixed weights over other rankers' scores) and
``learned-fusion``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..config import BaseConfig, nested_config_error
from ..errors import ConfigError
from ..ranking.baselines import RandomRanker, RankerAsScorer, RetrieverScorer
from ..registry import LLM_RANKER_TYPES, RANKERS, RETRIEVERS, BuildContext
from .specs import MAX_LIST, ColdSpec, DataSpec, PositionBiasSpec, RatingSpec, SyntheticSpec
from .specs import MAX_POSITIONS as MAX_POSITIONS  # re-exported (moved to specs)
from .specs import field_error as _field_error

if TYPE_CHECKING:
    from ..data.dataset import Dataset

log = logging.getLogger(__name__)

class CustomParams(BaseConfig):
    """The parameters of a ranker type registered with `register_ranker_type`: free-form (its
    builder validates them)."""

    model_config = ConfigDict(extra="allow")


def register_ranker_type(name: str, builder: Callable[[RankerSpec, BuildContext], Any]) -> None:
    """Make ``type: name`` usable in experiment configs; ``builder(spec, ctx)`` returns a Ranker
    (or a Scorer, which is wrapped in ScorerRanker). Built-in types cannot be replaced.
    (Components with a typed config register with `reranker.registry.RANKERS.register`.)"""

    def build(config: Any, ctx: BuildContext) -> Any:
        params = {k: v for k, v in config.model_dump().items() if k != "type"}
        return builder(RankerSpec(name=ctx.name or name, type=name, params=params), ctx)

    RANKERS.register(name, CustomParams, build, replace=True, summary="user-registered ranker")


def unregister_ranker_type(name: str) -> None:
    RANKERS.unregister(name)


def ranker_types() -> list[str]:
    """Every ranker type a config may name (built-in and registered)."""
    return RANKERS.names(with_aliases=True)


TRADITIONAL_TYPES = frozenset({"identity", "random", "pop", "popular", "itemcf", "usercf"})
LLM_TYPES = frozenset(LLM_RANKER_TYPES)
DATA_FORMATS = ("csv", "parquet", "jsonl", "movielens", "recbole", "amazon2023")

__all__ = [
    "SyntheticSpec",
    "DataSpec",
    "ColdSpec",
    "PositionBiasSpec",
    "InjectionSpec",
    "RatingSpec",
    "ProtocolSpec",
    "RetrieverSpec",
    "RankerSpec",
    "ExperimentConfig",
    "load_experiment",
    "register_ranker_type",
    "unregister_ranker_type",
    "ranker_types",
    "build_retriever",
    "build_ranker",
    "BuildContext",
    "RetrieverScorer",
    "RandomRanker",
    "RankerAsScorer",
]


# ============================================================================ config models
class InjectionSpec(BaseConfig):
    """Injection susceptibility (`reranker.evaluation.injection`): an instruction planted in one
    non-target candidate's title, in ``orders`` shuffles of ``n_candidates``-item lists of the
    first ``users`` users; how far it moves that item, against a benign length-matched control.
    ``suffixes`` (name -> text, ``{label}``: the item's own label) replaces the built-in set;
    ``rankers`` names the rows measured (default: every LLM row)."""

    enabled: bool = False
    users: int = Field(20, ge=1)
    orders: int = Field(3, ge=1, le=100)
    n_candidates: int = Field(10, ge=2, le=MAX_LIST)
    suffixes: dict[str, str] | None = None
    rankers: list[str] | None = None


class ProtocolSpec(BaseConfig):
    """How the rankers are evaluated: regime ``a`` (stage-1 top-n reranked), ``b`` (target +
    sampled negatives), ``c`` (cold start: ``cold`` says which kind) or ``rating``."""

    regime: Literal["a", "b", "c", "rating"] = "a"
    stage: Literal["validation", "test"] = "test"
    n_candidates: int = Field(20, ge=2, le=MAX_LIST)
    """Stage-1 candidates per user in regime A (at most 1000)."""
    n_negatives: int = Field(19, ge=1, le=MAX_LIST - 1)
    """Sampled negatives per user in regimes B and C (the list holds n_negatives + 1 <= 1000
    items; regime C cold items: other cold items)."""
    cold: ColdSpec = Field(default_factory=ColdSpec)
    """Regime C: cold items or cold users (`reranker.evaluation.cold_start`)."""
    history_cap: int = Field(20, ge=1)
    users: int | None = Field(None, ge=1)
    """Evaluate the first N users of a seeded order (None: all; a larger N than the data holds
    means all)."""
    seeds: list[int] = Field(default_factory=lambda: [0])
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20])
    n_boot: int = Field(1000, ge=10, le=100_000)
    """Bootstrap resamples of every confidence interval."""
    compare_to: str | None = "usercf"
    pairs: list[tuple[str, str]] = Field(default_factory=list)
    """Extra paired comparisons ``[a, b]``: the per-user difference a - b with a bootstrap CI
    (e.g. a fine-tuned model against its zero-shot base)."""
    position_bias: PositionBiasSpec = Field(default_factory=PositionBiasSpec)
    injection: InjectionSpec = Field(default_factory=InjectionSpec)
    rating: RatingSpec = Field(default_factory=RatingSpec)
    ties: Literal["random", "item_id"] = "random"
    """How a user's interactions in the same second are ordered (the split's targets, every
    history, the sequences models fit on): ``random``, a seeded random permutation keyed by
    (tie_seed, user, item); ``item_id``, by item id (the rule before issue 17; it makes the test
    item the highest id of the user's last second). The runner applies it with
    ``Dataset.with_tie_order``; see ``reranker.data.ordering``."""
    tie_seed: int = Field(0, ge=0)
    """The seed of ``ties: random`` (ignored for ``item_id``)."""

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("seeds must name at least one seed")
        return v

    @model_validator(mode="after")
    def _regime_c(self) -> ProtocolSpec:
        if self.regime != "c" and "cold" in self.model_fields_set:
            raise _field_error("cold", f"applies to regime c only (regime is {self.regime!r})")
        if self.regime == "c" and self.stage != "test":
            raise _field_error("stage", "regime c evaluates the test stage only (the cold targets); "
                               "remove stage or set it to test")
        return self




class RetrieverSpec(BaseConfig):
    """The stage-1 retriever of regime A: a registered retriever type (`reranker components`)
    and its config fields as ``params``, validated with their path (``retriever.params.k``)."""

    type: str = "itemcf"
    params: dict[str, Any] = Field(default_factory=dict)
    @model_validator(mode="after")
    def _validate_params(self) -> RetrieverSpec:
        try:
            RETRIEVERS.config_for(self.type, self.params, where="params")
        except ConfigError as e:
            raise nested_config_error(e) from None
        return self

    @property
    def config(self) -> BaseConfig:
        """The typed config of this retriever (``params`` validated now, so a `model_copy` with
        other params gets their config)."""
        return RETRIEVERS.config_for(self.type, self.params, where="params")


class RankerSpec(BaseConfig):
    """One row of the results: a named ranker of a type with its parameters.

    ``users`` limits this ranker to the first N evaluated users (the same users as the other
    rows, a prefix of the seeded user order), for expensive rankers.
    """

    name: str = Field(min_length=1)
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    """The component's config fields (`reranker components` lists them), validated with their
    path (``rankers.3.params.k``). The cache fingerprint hashes them as written."""
    users: int | None = Field(None, ge=1)

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in RANKERS:
            raise ValueError(f"unknown ranker type {v!r}; choose from {', '.join(ranker_types())}")
        return v

    @model_validator(mode="after")
    def _validate_params(self) -> RankerSpec:
        try:
            RANKERS.config_for(self.type, self.params, where="params")
        except ConfigError as e:
            raise nested_config_error(e) from None
        return self

    @property
    def config(self) -> BaseConfig:
        """The typed config of this row's component (``params`` validated now, so a
        `model_copy` with other params gets their config)."""
        return RANKERS.config_for(self.type, self.params, where="params")


class ExperimentConfig(BaseConfig):
    """A whole experiment, loaded from YAML."""

    name: str = "experiment"
    description: str = ""
    data: DataSpec
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)
    retriever: RetrieverSpec = Field(default_factory=RetrieverSpec)
    rankers: list[RankerSpec] = Field(default_factory=list)
    output_dir: str = "eval/results/experiment"
    cache_dir: str | None = ".cache/eval"

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        names = [r.name for r in self.rankers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ranker names must be unique; repeated: {dup}")
        if not self.rankers:
            raise ValueError("rankers: name at least one ranker")
        unknown = sorted({n for pair in self.protocol.pairs for n in pair if n not in names})
        if unknown:
            raise ValueError(f"protocol.pairs: {unknown} are not ranker names (rankers: {names})")
        _check_ranker_names(self.protocol, names)
        if self.protocol.regime == "rating":
            bad = [r.name for r in self.rankers if r.type not in ("itemcf", "usercf")]
            if bad:
                raise ValueError(f"regime 'rating' evaluates kNN predictors only (itemcf/usercf); not: {bad}")
        return self


def _check_ranker_names(protocol: ProtocolSpec, names: list[str]) -> None:
    """Fields of `protocol` that name rankers must name rankers of the experiment (a typo would
    otherwise drop the comparison silently). ``compare_to`` is checked when it was given: its
    default, ``usercf``, applies only where such a row exists."""
    def fail(field: str, msg: str) -> Exception:  # reported as `protocol.<field>: msg`
        error = ConfigError(f"protocol.{field}: {msg}")
        error.lines = [(f"protocol.{field}", msg)]
        return nested_config_error(error)

    ref = protocol.compare_to
    if ref is not None and "compare_to" in protocol.model_fields_set and ref not in names:
        raise fail("compare_to", f"{ref!r} is not a ranker name (rankers: {names}); name one of "
                   "them, or null for no paired comparison")
    for field, listed in (("position_bias.rankers", protocol.position_bias.rankers),
                          ("injection.rankers", protocol.injection.rankers)):
        unknown = sorted({n for n in listed or [] if n not in names})
        if unknown:
            raise fail(field, f"{unknown} are not ranker names (rankers: {names})")


@dataclass
class LoadedExperiment:
    """A validated config plus the folder its relative paths are resolved against."""

    config: ExperimentConfig
    source: Path | None
    base_dirs: list[Path]

    def resolve(self, path: str, must_exist: bool = False, what: str = "data.path") -> Path:
        """Resolve a relative path against the config folder, the repo root, then the CWD."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        for base in self.base_dirs:
            cand = (base / p).resolve()
            if cand.exists():
                return cand
        if must_exist:
            tried = ", ".join(str((b / p).resolve()) for b in self.base_dirs)
            raise ConfigError(f"{what}: {path!r} not found (tried {tried})")
        return (self.base_dirs[0] / p).resolve() if self.base_dirs else p.resolve()

    def output_base(self) -> Path:
        """Relative output / cache folders are relative to the repo root (the folder above
        ``configs/``), else to the config folder."""
        return self.base_dirs[1] if len(self.base_dirs) > 1 else Path.cwd()


def load_experiment(path: str | Path) -> LoadedExperiment:
    """Load and validate an experiment YAML (ConfigError naming the field on any problem)."""
    p = Path(path)
    cfg = ExperimentConfig.from_yaml(p)
    cfg_dir = p.resolve().parent
    repo = _repo_root(cfg_dir)
    bases = [cfg_dir, repo, Path.cwd()]
    uniq: list[Path] = []
    for b in bases:
        if b not in uniq:
            uniq.append(b)
    if len(uniq) == 1:
        uniq.append(uniq[0])
    return LoadedExperiment(cfg, p, uniq)


def _repo_root(start: Path) -> Path:
    for d in (start, *start.parents):
        if (d / "pyproject.toml").is_file():
            return d
    return start.parent if start.name == "configs" else start


# ============================================================================ factory
def build_retriever(rtype: str, params: Mapping[str, Any], data: Dataset) -> Any:
    """Build and fit a registered retriever on `data` (``params``: its config fields)."""
    return RETRIEVERS.build(RETRIEVERS.config_for(rtype, params, where=f"retriever {rtype!r}.params"),
                            BuildContext(fit_data=data))


def build_ranker(spec: RankerSpec, ctx: BuildContext) -> Any:
    """Build the ranker a spec names through the registry (Scorers come back wrapped in a
    ScorerRanker)."""
    from ..ranking.base import Ranker, Scorer, ScorerRanker

    what = f"ranker {spec.name!r} (type {spec.type})"
    try:
        obj = RANKERS.build(spec.config, ctx.named(spec.name), where=f"{what}.params")
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(what) else f"{what}: {msg}") from None
    if not isinstance(obj, Ranker) and isinstance(obj, Scorer):
        obj = ScorerRanker(obj, name=spec.name)
    return obj


def ranker_fingerprint(spec: RankerSpec, data_fingerprint: str, seed: int, extra: Any = None) -> str:
    """A short hash of what determines a ranker's output (type, params, fit data, seed; for a
    row that prompts an LLM -- an LLM type, a learned head with ``llm``, fusion -- also the
    prompt version, so rankings cached under older prompts are not reused)."""
    from .cache import make_key

    if spec.type == "learned-fusion":
        # v2: the head's training users are a prefix of the fixed user order, each user's list
        # drawn from its own generator (rankings cached under v1's random subset are not reused)
        extra = {"head_lists": 2, "extra": extra}
    if uses_prompts(spec):
        from ..llm.prompts import PROMPT_VERSION

        extra = {"prompt_version": PROMPT_VERSION, "extra": extra}
        if spec.type == "llm-listwise" and "decoding" not in spec.params:
            # the default became `auto` (select-only where the backend can, issue 18): rankings
            # cached under the free-decoding default are not reused for rows that do not say
            extra["decoding"] = "auto"
        adapters = adapter_hashes(spec.params)
        if adapters:
            # the params name an adapter folder, not its weights: an adapter retrained in place
            # must not be served the rankings of the one it replaced
            extra["adapters"] = adapters
    return make_key("ranker-v1", spec.type, spec.params, data_fingerprint, seed, extra)[:24]


def adapter_hashes(params: Any) -> list[str]:
    """The weight hashes (`adapter_weights_sha`) of every adapter a row's params name, nested
    parts included: a `model` spec `base+path/to/adapter` or an `adapter` folder (relative paths
    from the working directory, as the LLM loader reads them). A folder without weights counts
    as ``"missing"``; loading it fails later with its own message."""
    from ..errors import ModelError
    from ..llm.models import adapter_weights_sha, split_adapter

    folders: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, Mapping):
            for key, value in obj.items():
                if key == "model" and isinstance(value, str):
                    try:
                        ad = split_adapter(value)[1]
                    except ModelError:  # the adapter folder is missing
                        ad = value.split("+", 1)[1].strip()
                    if ad:
                        folders.append(ad)
                elif key == "adapter" and isinstance(value, str) and value:
                    folders.append(value)
                else:
                    walk(value)
        elif isinstance(obj, list | tuple):
            for value in obj:
                walk(value)

    walk(params)
    return [adapter_weights_sha(folder) or "missing" for folder in folders]


def uses_prompts(spec: RankerSpec) -> bool:
    """Whether a row's rankings depend on the LLM prompts (an LLM type, a learned head with an
    ``llm`` part, or fusion, whose components may be LLM rows)."""
    return spec.type in LLM_TYPES or spec.type == "fusion" or (
        spec.type == "learned-fusion" and bool(spec.params.get("llm"))
    )


def data_fingerprint(data: Dataset) -> str:
    """A hash of a dataset's interactions and catalog ids (`Dataset.fingerprint`) and of its
    order of ties in time: with ``ties: random`` the rule and seed are hashed in; with
    ``ties: item_id`` the fingerprint is `Dataset.fingerprint` unchanged (the key every cache
    entry was written under before the rule existed)."""
    from .cache import make_key

    fp = data.fingerprint()
    token = data.tie_order.cache_token()
    return fp if token is None else make_key("data-v1", fp, token)[:16]
