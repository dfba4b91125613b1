"""One registry per stage: name -> config class -> builder.

Every component the library can build from a config is registered here, once:

- ``RETRIEVERS`` (stage 1: ``itemcf``, ``usercf``, ``t-itemcf``, ``t-usercf``, ``popular``,
  ``ease``, ``als``, ``bpr``, ``transitions``, ``union``),
- ``RANKERS`` (stage 2 scorers and rankers: ``identity``, ``random``, the CF models as scorers,
  ``bert``, ``llm-pointwise`` / ``llm-listwise`` / ``llm-verbalizer``, ``fusion``,
  ``learned-fusion``),
- ``BACKENDS`` (LLM backends: ``transformers``, ``openai``).

A component's config class is a `BaseConfig` (``extra="forbid"``) with a ``type`` literal, so
configs embed them as a discriminated union on ``type`` (`Registry.union`): every field of every
component can be set from any YAML and is validated with its dotted path. The pipeline config,
experiment configs, the Python API, the CLI and training all build through `Registry.build`.

Entries name their modules as strings and import them only when used, so importing this module
stays cheap and a component whose optional dependency is missing fails with a clear
`ConfigError` when it is asked for, not at start-up.

>>> from reranker.registry import RETRIEVERS, BuildContext
>>> retriever = RETRIEVERS.build({"type": "itemcf", "k": 20}, BuildContext(fit_data=dataset))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import Discriminator, Tag, ValidationError

from .build_context import BuildContext
from .config import BaseConfig, validation_lines
from .errors import ConfigError

Builder = Callable[[Any, "BuildContext"], Any]


@dataclass(frozen=True)
class Component:
    """One registered component: its name, config class and builder (both as
    ``"module:attribute"`` strings or objects, resolved on first use)."""

    stage: str
    name: str
    config: str | type[BaseConfig]
    builder: str | Builder
    summary: str = ""
    aliases: tuple[str, ...] = ()

    key: str = "type"

    def config_class(self) -> type[BaseConfig]:
        """The config class, with a ``key`` literal field naming this component (added by a
        subclass when the class does not declare it, so any BaseConfig can be registered)."""
        cls = _resolve(self.config, f"{self.stage} {self.name!r}")
        if not (isinstance(cls, type) and issubclass(cls, BaseConfig)):
            raise TypeError(f"{self.stage} {self.name!r}: config must be a BaseConfig subclass")
        return _tagged(cls, self.key, self.name)

    def build_function(self) -> Builder:
        return _resolve(self.builder, f"{self.stage} {self.name!r}")


_TAGGED: dict[tuple[type, str, str], type[BaseConfig]] = {}


def _tagged(cls: type[BaseConfig], key: str, name: str) -> type[BaseConfig]:
    """`cls` itself when its ``key`` field is already ``Literal[name]``, else a subclass adding
    ``key: Literal[name] = name`` (cached, so one class per component)."""
    f = cls.model_fields.get(key)
    if f is not None and get_args(f.annotation) == (name,):
        return cls
    if (cls, key, name) not in _TAGGED:
        from pydantic import create_model

        sub = create_model(cls.__name__, __base__=cls, __module__=cls.__module__,
                           **{key: (Literal[name], name)})  # type: ignore[call-overload]
        sub.__qualname__ = cls.__qualname__
        sub.__doc__ = cls.__doc__
        _TAGGED[(cls, key, name)] = sub
    return _TAGGED[(cls, key, name)]


def _resolve(target: Any, what: str) -> Any:
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what}: not available in this installation ({module}: {e})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ConfigError(f"{what}: {module}.{attr} does not exist") from None


class Registry:
    """Components of one stage by name. `register` adds one; `config` validates a mapping into
    its config object; `build` makes the component; `union` is the discriminated union type of
    every registered config for embedding in other configs."""

    def __init__(self, stage: str, key: str = "type") -> None:
        self.stage = stage
        self.key = key
        """The config field that names the component (the union's discriminator)."""
        self._entries: dict[str, Component] = {}
        self._aliases: dict[str, str] = {}
        self._builtin: set[str] = set()
        self.default: str | None = None
        """The component a mapping without the key means (None: the key is required)."""

    # ------------------------------------------------------------------ registration
    def register(
        self,
        name: str,
        config: str | type[BaseConfig],
        builder: str | Builder,
        *,
        summary: str = "",
        aliases: tuple[str, ...] = (),
        builtin: bool = False,
        replace: bool = False,
    ) -> Component:
        """Add a component. Built-in names cannot be replaced; a user's can with ``replace``."""
        for n in (name, *aliases):
            if n in self._builtin:
                raise ConfigError(f"{self.stage} type {n!r} is built in and cannot be re-registered")
            if not replace and (n in self._entries or n in self._aliases):
                raise ConfigError(f"{self.stage} type {n!r} is already registered")
        comp = Component(self.stage, name, config, builder, summary, aliases, self.key)
        self._entries[name] = comp
        for a in aliases:
            self._aliases[a] = name
        if builtin:
            self._builtin.update((name, *aliases))
        return comp

    def unregister(self, name: str) -> None:
        """Remove a user-registered component (built-ins stay)."""
        if name in self._builtin:
            raise ConfigError(f"{self.stage} type {name!r} is built in and cannot be removed")
        comp = self._entries.pop(name, None)
        if comp is not None:
            for a in comp.aliases:
                self._aliases.pop(a, None)

    # ------------------------------------------------------------------ lookup
    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise ConfigError(f"unknown {self.stage} type {name!r}; choose one of {', '.join(self.names())}")

    def get(self, name: str) -> Component:
        return self._entries[self.canonical(name)]

    def names(self, with_aliases: bool = False) -> list[str]:
        out = list(self._entries)
        return out + list(self._aliases) if with_aliases else out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[Component]:
        return iter(list(self._entries.values()))

    # ------------------------------------------------------------------ configs
    def config(self, spec: BaseConfig | Mapping[str, Any] | str, where: str = "") -> BaseConfig:
        """Validate `spec` (a config object, a mapping with ``type``, or a bare type name) into
        the component's config object; errors name ``where.field``."""
        if isinstance(spec, BaseConfig):
            return spec
        if isinstance(spec, str):
            spec = {self.key: spec}
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where or self.stage}: expected a mapping with 'type', got {type(spec).__name__}")
        data = dict(spec)
        t = data.get(self.key, self.default)
        if not isinstance(t, str):
            raise ConfigError(f"{_join(where, self.key)}: give the {self.stage} {self.key} ({', '.join(self.names())})")
        try:
            comp = self.get(t)
        except ConfigError as e:
            raise ConfigError(f"{_join(where, self.key)}: {e}") from None
        data[self.key] = comp.name
        return validate(comp.config_class(), data, where)

    def config_for(self, name: str, params: Mapping[str, Any] | None, where: str = "") -> BaseConfig:
        """Validate ``params`` (without ``type``) as the config of component `name`."""
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError(f"{where or name}: expected a mapping, got {type(params).__name__}")
        data = dict(params or {})
        if self.key in data:
            raise ConfigError(f"{_join(where, self.key)}: the {self.key} is given outside the parameters")
        comp = self.get(name)
        return validate(comp.config_class(), {**data, self.key: comp.name}, where)

    def union(self, names: Sequence[str] | None = None) -> Any:
        """The discriminated union (on ``key``) of the configs of `names` (default: all), for
        embedding in other configs. Aliases are accepted; error paths leave the tag out."""
        comps = [self.get(n) for n in (names or self.names())]
        if len(comps) == 1:
            return comps[0].config_class()
        members = tuple(Annotated[c.config_class(), Tag(_tag(c.name))] for c in comps)
        names = [n for c in comps for n in (c.name, *c.aliases)]
        msg = f"{self.key}: missing or unknown {self.stage} {self.key}; choose one of {', '.join(names)}"
        return Annotated[Union[members], Discriminator(  # noqa: UP007
            self._discriminate, custom_error_type="unknown_component", custom_error_message=msg)]

    def _discriminate(self, value: Any) -> str | None:
        t = value.get(self.key) if isinstance(value, Mapping) else getattr(value, self.key, None)
        if not isinstance(t, str) or t not in self:
            return None
        return _tag(self.canonical(t))

    def type_of(self, cfg: BaseConfig) -> str:
        """The component name a config object belongs to (its discriminator field)."""
        t = cfg.model_dump(include={self.key}).get(self.key)
        if isinstance(t, str):
            return t
        # a config class registered without the key field (e.g. BertScorerConfig): by its class
        owners = [c.name for c in self if _resolve(c.config, c.name) is type(cfg)]
        if len(owners) != 1:
            raise ConfigError(f"{type(cfg).__name__} is not the config of exactly one {self.stage} "
                              f"(matches: {owners or 'none'}); give a mapping with {self.key!r}")
        return owners[0]

    # ------------------------------------------------------------------ building
    def build(self, spec: BaseConfig | Mapping[str, Any] | str, ctx: BuildContext | None = None,
              where: str = "") -> Any:
        """Build the component `spec` describes (a config object or mapping with ``type``)."""
        cfg = self.config(spec, where)
        comp = self.get(self.type_of(cfg))
        return comp.build_function()(cfg, ctx or BuildContext())

    def describe(self) -> list[dict[str, Any]]:
        """Every component with its config fields, types and defaults (``reranker components``)."""
        out: list[dict[str, Any]] = []
        for comp in self:
            try:
                cls = comp.config_class()
            except ConfigError as e:
                out.append({"name": comp.name, "summary": comp.summary, "error": str(e), "fields": []})
                continue
            fields = []
            for fname, f in cls.model_fields.items():
                if fname == self.key:
                    continue
                default = None if f.is_required() else f.get_default(call_default_factory=True)
                if isinstance(default, BaseConfig):
                    default = default.model_dump(mode="json")
                fields.append({
                    "name": fname,
                    "type": _type_name(f.annotation),
                    "default": "(required)" if f.is_required() else _plain(default),
                    "doc": (f.description or "").strip(),
                })
            out.append({"name": comp.name, "aliases": list(comp.aliases), "summary": comp.summary,
                        "config": f"{cls.__module__}.{cls.__qualname__}", "fields": fields})
        return out


def validate(cls: type[BaseConfig], data: Mapping[str, Any], where: str = "") -> BaseConfig:
    """``cls.model_validate(data)``; errors become a ConfigError with ``where.field: message``."""
    try:
        return cls.model_validate(dict(data))
    except ValidationError as e:
        lines = [("" if p == "<root>" else p, m) for p, m in validation_lines(e)]
        lines = [(".".join(x for x in (where, p) if x), m) for p, m in lines]
        err = ConfigError("\n".join(f"{p or '<root>'}: {m}" for p, m in lines))
        err.lines = lines
        raise err from None


def _tag(name: str) -> str:
    """The union tag of a component (`reranker.config.validation_lines` drops it from paths)."""
    return f"<{name}>"


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}.{rest}" if prefix else rest


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None")


def _plain(x: Any) -> Any:
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return str(x)


# ============================================================================ the registries
RETRIEVERS = Registry("retriever")
RANKERS = Registry("ranker")
BACKENDS = Registry("backend", key="backend")
BACKENDS.default = "transformers"

_B = "reranker.components"  # the builders (thin functions over the component classes)

RETRIEVERS.register("itemcf", "reranker.retrieval.knn:ItemCFConfig", f"{_B}:build_knn", builtin=True,
                    summary="item-based kNN collaborative filtering")
RETRIEVERS.register("usercf", "reranker.retrieval.knn:UserCFConfig", f"{_B}:build_knn", builtin=True,
                    summary="user-based kNN collaborative filtering")
RETRIEVERS.register("t-itemcf", "reranker.retrieval.text_knn:TItemCFConfig", f"{_B}:build_knn", builtin=True,
                    summary="ItemCF with item similarities mixed with text-embedding cosines (mu)")
RETRIEVERS.register("t-usercf", "reranker.retrieval.text_knn:TUserCFConfig", f"{_B}:build_knn", builtin=True,
                    summary="UserCF with user similarities mixed with profile-embedding cosines (mu)")
RETRIEVERS.register("popular", "reranker.retrieval.popularity:PopularityConfig", f"{_B}:build_popular",
                    aliases=("pop",), builtin=True,
                    summary="most-interacted items (the cold-start fallback)")
RETRIEVERS.register("ease", "reranker.retrieval.ease:EASEConfig", f"{_B}:build_ease", builtin=True,
                    summary="EASE closed-form item-item autoencoder (l2 tunable on validation)")
RETRIEVERS.register("als", "reranker.retrieval.implicit_models:ALSConfig", f"{_B}:build_implicit_mf",
                    builtin=True, summary="implicit-feedback ALS via the implicit library")
RETRIEVERS.register("bpr", "reranker.retrieval.implicit_models:BPRConfig", f"{_B}:build_implicit_mf",
                    builtin=True, summary="BPR matrix factorisation via the implicit library")
RETRIEVERS.register("transitions", "reranker.retrieval.transitions:TransitionsConfig",
                    f"{_B}:build_transitions", builtin=True,
                    summary="item-to-item next-item transitions from the recent history")
RETRIEVERS.register("union", "reranker.retrieval.union:UnionConfig", f"{_B}:build_union", builtin=True,
                    summary="round-robin union of several retrievers' lists with per-source quotas")
RETRIEVERS.register("sasrec", "reranker.retrieval.sasrec:SASRecConfig", f"{_B}:build_sasrec", builtin=True,
                    summary="SASRec: causal self-attention over the item sequence (torch)")

RANKERS.register("identity", f"{_B}:IdentityConfig", f"{_B}:build_identity", builtin=True,
                 summary="keeps the stage-1 order")
RANKERS.register("random", f"{_B}:RandomConfig", f"{_B}:build_random", builtin=True,
                 summary="a seeded random order (the chance baseline)")
for _name in ("popular", "itemcf", "usercf", "ease", "als", "bpr", "transitions", "union"):
    RANKERS.register(_name, RETRIEVERS.get(_name).config, f"{_B}:build_cf_scorer", builtin=True,
                     aliases=("pop",) if _name == "popular" else (),
                     summary=f"the {_name} model's own score of each candidate")
RANKERS.register("sasrec", RETRIEVERS.get("sasrec").config, f"{_B}:build_cf_scorer", builtin=True,
                 summary="the sasrec model's own score of each candidate")
RANKERS.register("bert", "reranker.ranking.bert:BertScorerConfig", f"{_B}:build_bert", builtin=True,
                 summary="cosine of a sentence encoder's item embedding with the user's profile")
RANKERS.register("llm-pointwise", "reranker.ranking.configs:PointwiseConfig", f"{_B}:build_llm", builtin=True,
                 summary="LLM Yes/No logit per candidate over a shared prompt prefix")
RANKERS.register("llm-listwise", "reranker.ranking.configs:ListwiseConfig", f"{_B}:build_llm", builtin=True,
                 summary="PALR select-and-rank: the LLM writes the candidates' numbers in order")
RANKERS.register("llm-verbalizer", "reranker.ranking.configs:VerbalizerConfig", f"{_B}:build_llm",
                 builtin=True, summary="LlamaRec verbalizer: log-probability of each candidate's letter")
RANKERS.register("fusion", "reranker.ranking.fusion:FusionConfig", f"{_B}:build_fusion", builtin=True,
                 summary="fixed-weight sum of other rankers' per-list normalised scores")
RANKERS.register("learned-fusion", "reranker.ranking.configs:LearnedFusionParams", f"{_B}:build_learned",
                 builtin=True, summary="learned head over CF / popularity / recency / BERT / LLM features")

BACKENDS.register("transformers", "reranker.llm.base:LLMConfig", f"{_B}:build_transformers", builtin=True,
                  summary="in-process Hugging Face transformers (bf16/fp32 on CPU)")
BACKENDS.register("openai", "reranker.llm.base:LLMConfig", f"{_B}:build_openai", builtin=True,
                  summary="an OpenAI-compatible server (vLLM, llama.cpp, Ollama): model openai:MODEL@URL")

LLM_RANKER_TYPES: tuple[str, ...] = ("llm-pointwise", "llm-listwise", "llm-verbalizer")
MODE_TO_TYPE: dict[str, str] = {"pointwise": "llm-pointwise", "listwise": "llm-listwise",
                                "verbalizer": "llm-verbalizer"}

__all__ = [
    "BACKENDS",
    "BuildContext",
    "Component",
    "LLM_RANKER_TYPES",
    "MODE_TO_TYPE",
    "RANKERS",
    "RETRIEVERS",
    "Registry",
    "validate",
]
