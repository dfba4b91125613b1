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
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..config import BaseConfig
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..data.dataset import Dataset
    from ..types import Candidate, History, Ranking

log = logging.getLogger(__name__)

BUILTIN_RANKER_TYPES: tuple[str, ...] = (
    "identity",
    "random",
    "pop",
    "itemcf",
    "usercf",
    "bert",
    "llm-pointwise",
    "llm-listwise",
    "llm-verbalizer",
    "fusion",
    "learned-fusion",
)
_CUSTOM_RANKERS: dict[str, Callable[[RankerSpec, BuildContext], Any]] = {}


def register_ranker_type(name: str, builder: Callable[[RankerSpec, BuildContext], Any]) -> None:
    """Make ``type: name`` usable in experiment configs; ``builder(spec, ctx)`` returns a Ranker
    (or a Scorer, which is wrapped in ScorerRanker). Built-in types cannot be replaced."""
    if name in BUILTIN_RANKER_TYPES:
        raise ConfigError(f"ranker type {name!r} is built in and cannot be re-registered")
    _CUSTOM_RANKERS[name] = builder


def unregister_ranker_type(name: str) -> None:
    _CUSTOM_RANKERS.pop(name, None)


def ranker_types() -> list[str]:
    """Every ranker type a config may name (built-in and registered)."""
    return [*BUILTIN_RANKER_TYPES, *_CUSTOM_RANKERS]
RetrieverType = Literal["pop", "itemcf", "usercf"]
TRADITIONAL_TYPES = frozenset({"identity", "random", "pop", "itemcf", "usercf"})
LLM_TYPES = frozenset({"llm-pointwise", "llm-listwise", "llm-verbalizer"})
DATA_FORMATS = ("csv", "parquet", "jsonl", "movielens", "recbole", "amazon2023")

__all__ = [
    "SyntheticSpec",
    "DataSpec",
    "PositionBiasSpec",
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
]


# ============================================================================ config models
class SyntheticSpec(BaseConfig):
    """The generated demo world (reranker.data.synthetic.generate_world)."""

    seed: int = 0
    n_users: int = Field(300, ge=3)
    n_items: int = Field(200, ge=8)


class DataSpec(BaseConfig):
    """Where the interactions come from: a path + format, or a generated world."""

    path: str | None = None
    format: Literal["csv", "parquet", "jsonl", "movielens", "recbole", "amazon2023"] = "recbole"
    synthetic: SyntheticSpec | None = None
    min_interactions: int = Field(3, ge=3)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("give exactly one of data.path or data.synthetic")
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
        return v


class RatingSpec(BaseConfig):
    """Rating prediction on a seeded random split: MAE / RMSE for each kNN model and K."""

    test_ratio: float = Field(0.2, gt=0.0, lt=1.0)
    k_values: list[int] = Field(default_factory=lambda: [5, 10, 15, 20, 25, 30])
    k_param: str = "k"


class ProtocolSpec(BaseConfig):
    """How the rankers are evaluated."""

    regime: Literal["a", "b", "rating"] = "a"
    stage: Literal["validation", "test"] = "test"
    n_candidates: int = Field(20, ge=2)
    n_negatives: int = Field(19, ge=1)
    history_cap: int = Field(20, ge=1)
    users: int | None = Field(None, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0])
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20])
    n_boot: int = Field(1000, ge=10)
    compare_to: str | None = "usercf"
    pairs: list[tuple[str, str]] = Field(default_factory=list)
    """Extra paired comparisons ``[a, b]``: the per-user difference a - b with a bootstrap CI
    (e.g. a fine-tuned model against its zero-shot base)."""
    position_bias: PositionBiasSpec = Field(default_factory=PositionBiasSpec)
    rating: RatingSpec = Field(default_factory=RatingSpec)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("seeds must name at least one seed")
        return v


class RetrieverSpec(BaseConfig):
    """The stage-1 retriever of regime A."""

    type: RetrieverType = "itemcf"
    params: dict[str, Any] = Field(default_factory=dict)


class RankerSpec(BaseConfig):
    """One row of the results: a named ranker of a type with its parameters.

    ``users`` limits this ranker to the first N evaluated users (the same users as the other
    rows, a prefix of the seeded user order), for expensive rankers.
    """

    name: str = Field(min_length=1)
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    users: int | None = Field(None, ge=1)

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in ranker_types():
            raise ValueError(f"unknown ranker type {v!r}; choose from {', '.join(ranker_types())}")
        return v


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
        if self.protocol.regime == "rating":
            bad = [r.name for r in self.rankers if r.type not in ("itemcf", "usercf")]
            if bad:
                raise ValueError(f"regime 'rating' evaluates kNN predictors only (itemcf/usercf); not: {bad}")
        return self


@dataclass
class LoadedExperiment:
    """A validated config plus the folder its relative paths are resolved against."""

    config: ExperimentConfig
    source: Path | None
    base_dirs: list[Path]

    def resolve(self, path: str, must_exist: bool = False) -> Path:
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
            raise ConfigError(f"data.path: {path!r} not found (tried {tried})")
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
@dataclass
class BuildContext:
    """What the factory needs: the data to fit on, the full catalog, the cache, the seed."""

    fit_data: Dataset
    catalog: Dataset
    cache: Any = None
    seed: int = 0
    split: Any = None
    """The leave-one-out split (learned fusion fits its head on the validation stage)."""
    built: dict[str, Any] = field(default_factory=dict)
    _retrievers: dict[str, Any] = field(default_factory=dict)

    def retriever(self, rtype: str, params: Mapping[str, Any]) -> Any:
        """A fitted retriever, shared between rankers that ask for the same one."""
        key = f"{rtype}:{sorted(params.items())!r}"
        if key not in self._retrievers:
            self._retrievers[key] = build_retriever(rtype, params, self.fit_data)
        return self._retrievers[key]


def _instantiate(cls: Any, config_cls: Any, params: Mapping[str, Any], what: str) -> Any:
    """Build ``cls`` from params, through its config model when it has one."""
    try:
        if config_cls is not None:
            cfg = config_cls.from_dict(dict(params)) if hasattr(config_cls, "from_dict") else config_cls(**params)
            return cls(cfg)
        return cls(**params)
    except ConfigError as e:
        raise ConfigError(f"{what}.params: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}.params: {e}") from None


def _import(module: str, names: Sequence[str], what: str) -> list[Any]:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what}: not available in this installation ({module}: {e})") from None
    out = []
    for n in names:
        if not hasattr(mod, n):
            out.append(None)
        else:
            out.append(getattr(mod, n))
    if out and out[0] is None:
        raise ConfigError(f"{what}: {module}.{names[0]} is not implemented yet")
    return out


def build_retriever(rtype: str, params: Mapping[str, Any], data: Dataset) -> Any:
    """Build and fit a retriever of type pop / itemcf / usercf."""
    what = f"retriever {rtype!r}"
    if rtype == "pop":
        cls, cfg = _import("reranker.retrieval.popularity", ["PopularityRetriever", "PopularityConfig"], what)
    elif rtype == "itemcf":
        cls, cfg = _import("reranker.retrieval.knn", ["ItemCF", "ItemCFConfig"], what)
    elif rtype == "usercf":
        cls, cfg = _import("reranker.retrieval.knn", ["UserCF", "UserCFConfig"], what)
    else:
        raise ConfigError(f"retriever.type: unknown retriever type {rtype!r}")
    model = _instantiate(cls, cfg, params, what)
    return model.fit(data)


class RetrieverScorer:
    """A fitted retriever used as a Scorer: its own score for each candidate.

    Uses the retriever's ``score`` method when it has one; otherwise asks it for the whole
    catalog once per call and looks candidates up (items it does not propose score lowest).
    """

    def __init__(self, retriever: Any, n_items: int, name: str) -> None:
        self.retriever = retriever
        self.n_items = n_items
        self.name = name

    def score(self, history: History, candidates: Sequence[Candidate]) -> np.ndarray:
        if hasattr(self.retriever, "score"):
            return np.asarray(self.retriever.score(history, candidates), dtype=np.float64)
        got = self.retriever.retrieve(history, self.n_items, exclude_seen=False)
        table = {c.item_id: float(c.score) for c in got}
        low = min(table.values(), default=0.0) - 1.0
        return np.array([table.get(c.item_id, low) for c in candidates], dtype=np.float64)


class RandomRanker:
    """A seeded random order of the candidates (the chance baseline)."""

    def __init__(self, seed: int = 0, name: str = "random") -> None:
        self.seed = seed
        self.name = name

    def rank(self, history: History, candidates: Sequence[Candidate]) -> Ranking:
        from ..types import Ranking

        ids = list(dict.fromkeys(c.item_id for c in candidates))
        user = zlib.crc32(str(history.user_id).encode())
        items = zlib.crc32("|".join(ids).encode())
        rng = np.random.default_rng([self.seed, user, items])
        order = rng.permutation(len(ids))
        return Ranking.from_order([ids[i] for i in order], {"ranker": self.name})


def build_ranker(spec: RankerSpec, ctx: BuildContext) -> Any:
    """Build the ranker a spec names (a Ranker; Scorers are wrapped in ScorerRanker)."""
    from ..ranking.base import IdentityRanker, ScorerRanker

    what = f"ranker {spec.name!r} (type {spec.type})"
    t = spec.type
    params = dict(spec.params)
    if t == "identity":
        return IdentityRanker()
    if t == "random":
        return RandomRanker(seed=int(params.get("seed", ctx.seed)), name=spec.name)
    if t in ("pop", "itemcf", "usercf"):
        retr = ctx.retriever(t, params)
        return ScorerRanker(RetrieverScorer(retr, ctx.catalog.n_items, spec.name), name=spec.name)
    if t == "bert":
        cls, cfg = _import("reranker.ranking.bert", ["BertScorer", "BertScorerConfig"], what)
        try:
            scorer = cls(ctx.catalog, cfg.from_dict(params) if cfg is not None else None)
        except ConfigError as e:
            raise ConfigError(f"{what}.params: {e}") from None
        return ScorerRanker(scorer, name=spec.name)
    if t in LLM_TYPES:
        return _build_llm_ranker(spec, ctx, what)
    if t == "fusion":
        return _build_fusion(spec, ctx, what)
    if t == "learned-fusion":
        return _build_learned_fusion(spec, ctx, what)
    if t in _CUSTOM_RANKERS:
        obj = _CUSTOM_RANKERS[t](spec, ctx)
        if not callable(getattr(obj, "rank", None)) and callable(getattr(obj, "score", None)):
            obj = ScorerRanker(obj, name=spec.name)
        return obj
    raise ConfigError(f"{what}: unknown ranker type")


_LLM_CLASSES = {
    "llm-pointwise": ("reranker.ranking.pointwise", "PointwiseLLMRanker"),
    "llm-listwise": ("reranker.ranking.listwise", "ListwiseLLMRanker"),
    "llm-verbalizer": ("reranker.ranking.verbalizer", "VerbalizerLLMRanker"),
}


def split_llm_params(params: Mapping[str, Any], what: str) -> tuple[Any, dict[str, Any]]:
    """Split ranker params into an `LLMConfig` (model, dtype, threads ...) and ranker kwargs."""
    (cfg_cls,) = _import("reranker.llm.base", ["LLMConfig"], what)
    fields = set(cfg_cls.model_fields)
    try:
        cfg = cfg_cls.from_dict({k: v for k, v in params.items() if k in fields})
    except ConfigError as e:
        raise ConfigError(f"{what}.params: {e}") from None
    return cfg, {k: v for k, v in params.items() if k not in fields}


def _build_llm_ranker(spec: RankerSpec, ctx: BuildContext, what: str) -> Any:
    module, cls_name = _LLM_CLASSES[spec.type]
    (cls,) = _import(module, [cls_name], what)
    cfg, kwargs = split_llm_params(spec.params, what)
    backend = None
    if ctx.cache is not None and getattr(ctx.cache, "enabled", False):
        from .llm_cache import CachedBackend

        backend = CachedBackend(cfg, ctx.cache)
    try:
        ranker = cls(cfg, catalog=ctx.catalog, backend=backend, **kwargs)
    except TypeError as e:
        raise ConfigError(f"{what}.params: {e}") from None
    except ValueError as e:
        raise ConfigError(f"{what}.params: {e}") from None
    ranker.name = spec.name
    return ranker


def _build_fusion(spec: RankerSpec, ctx: BuildContext, what: str) -> Any:
    """Fixed-weight fusion over other rankers of the experiment: params.weights {name: w}.

    Each named ranker becomes a signal (its scorer when it wraps one, else its ranking scores).
    """
    params = dict(spec.params)
    weights = params.get("weights")
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError(f"{what}.params.weights: give a mapping of ranker name -> weight")
    missing = [n for n in weights if n not in ctx.built]
    if missing:
        raise ConfigError(f"{what}.params.weights: {missing} must name rankers listed before this one")
    cls, cfg = _import("reranker.ranking.fusion", ["FusionRanker", "FusionConfig"], what)
    signals = {n: _as_scorer(ctx.built[n]) for n in weights}
    try:
        config = cfg.from_dict(params)
    except ConfigError as e:
        raise ConfigError(f"{what}.params: {e}") from None
    ranker = cls(signals, config)
    ranker.name = spec.name
    return ranker


class RankerAsScorer:
    """Any Ranker as a Scorer: the score it gives each candidate in its Ranking."""

    def __init__(self, ranker: Any) -> None:
        self.ranker = ranker

    def score(self, history: History, candidates: Sequence[Candidate]) -> np.ndarray:
        ranking = self.ranker.rank(history, candidates)
        table = {ri.item_id: ri.score for ri in ranking.items}
        return np.array([table.get(c.item_id, -np.inf) for c in candidates], dtype=np.float64)


def _as_scorer(ranker: Any) -> Any:
    inner = getattr(ranker, "scorer", None)
    if inner is not None and callable(getattr(inner, "score", None)):
        return inner
    if callable(getattr(ranker, "score", None)):
        return ranker
    return RankerAsScorer(ranker)


_LEARNED_KEYS = {"itemcf", "usercf", "popularity", "recency_days", "bert", "llm", "head", "train_users",
                 "negatives", "n_negatives", "history_cap"}


def _build_learned_fusion(spec: RankerSpec, ctx: BuildContext, what: str) -> Any:
    """The learned head over CF / popularity / recency / BERT (and optionally the pointwise LLM's
    logit + hidden state), fitted on the validation stage of the experiment's split.

    params: ``itemcf`` / ``usercf`` (kNN options or null), ``popularity`` (bool), ``recency_days``,
    ``bert`` (BertScorer params or null), ``llm`` (pointwise LLM params or null), ``head``
    (LearnedFusionConfig), ``train_users`` (validation users used to fit), ``negatives``,
    ``n_negatives``, ``history_cap``.
    """
    cls, cfg_cls = _import("reranker.ranking.learned", ["LearnedFusionRanker", "LearnedFusionConfig"], what)
    (fb_cls, build_components) = _import("reranker.ranking.features", ["FeatureBuilder", "build_components"], what)
    p = dict(spec.params)
    unknown = sorted(set(p) - _LEARNED_KEYS)
    if unknown:
        raise ConfigError(f"{what}.params: unknown key(s) {unknown}; allowed: {sorted(_LEARNED_KEYS)}")
    if ctx.split is None:
        raise ConfigError(f"{what}: learned fusion needs a leave-one-out split (regimes a/b)")
    try:
        head_cfg = cfg_cls.from_dict(dict(p.get("head") or {}))
    except ConfigError as e:
        raise ConfigError(f"{what}.params.head: {e}") from None
    bert = None
    if p.get("bert") is not None:
        bspec = RankerSpec(name=f"{spec.name}.bert", type="bert", params=dict(p["bert"] or {}))
        bert = build_ranker(bspec, ctx).scorer
    llm = None
    if p.get("llm") is not None:
        lspec = RankerSpec(name=f"{spec.name}.llm", type="llm-pointwise", params=dict(p["llm"] or {}))
        llm = build_ranker(lspec, ctx)
    if not head_cfg.use_llm_hidden or llm is None:
        head_cfg = head_cfg.model_copy(update={"use_llm_hidden": False})

    def make_builder(fit_data: Dataset) -> Any:
        comps = build_components(
            fit_data, ctx.catalog, itemcf=p.get("itemcf", {"k": 20, "feedback": "implicit"}),
            usercf=p.get("usercf", {"k": 20, "feedback": "implicit"}),
            popularity=bool(p.get("popularity", True)), recency_days=p.get("recency_days", 30.0), bert=bert,
        )
        return fb_cls(comps, llm=llm, use_hidden=head_cfg.use_llm_hidden)

    serve = ctx.fit_data
    ranker = cls.fit(
        ctx.split, make_builder, head_cfg, n_negatives=int(p.get("n_negatives", 19)),
        negatives=p.get("negatives", "random"), users=p.get("train_users"),
        history_cap=int(p.get("history_cap", 20)), seed=ctx.seed, serve_data=serve,
    )
    ranker.name = spec.name
    return ranker


def ranker_fingerprint(spec: RankerSpec, data_fingerprint: str, seed: int, extra: Any = None) -> str:
    """A short hash of what determines a ranker's output (type, params, fit data, seed)."""
    from .cache import make_key

    return make_key("ranker-v1", spec.type, spec.params, data_fingerprint, seed, extra)[:24]


def data_fingerprint(data: Dataset) -> str:
    """A hash of a dataset's interactions and catalog ids (`Dataset.fingerprint`)."""
    return data.fingerprint()
