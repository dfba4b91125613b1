"""The builders behind the registries (`reranker.registry`): one thin function per component
that turns its validated config (and a `BuildContext`) into the object. Heavy modules are
imported inside each builder, so importing this module costs nothing."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field

from .config import BaseConfig
from .errors import ConfigError
from .registry import RANKERS, BuildContext

log = logging.getLogger(__name__)


class IdentityConfig(BaseConfig):
    """Keeps the stage-1 order; no options."""

    type: Literal["identity"] = "identity"


class RandomConfig(BaseConfig):
    """A seeded shuffle; ``seed`` None takes the experiment's seed."""

    type: Literal["random"] = "random"
    seed: int | None = Field(None, description="None: the experiment's / pipeline's seed")


# ---------------------------------------------------------------------------- stage 1
def _need_fit_data(ctx: BuildContext, what: str) -> Any:
    if ctx.fit_data is None:
        raise ConfigError(f"{what}: needs data to fit on")
    return ctx.fit_data


def build_knn(config: Any, ctx: BuildContext) -> Any:
    """ItemCF / UserCF / T-ItemCF / T-UserCF, fitted on ``ctx.fit_data``."""
    from .retrieval.knn import ItemCF, UserCF

    t = config.type
    data = _need_fit_data(ctx, f"retriever {t!r}")
    if t in ("t-itemcf", "t-usercf"):
        from .retrieval.text_knn import TItemCF, TUserCF

        if ctx.item_embeddings is None:
            raise ConfigError(f"retriever {t!r}: needs item text embeddings (enable the BERT scorer)")
        cls: Any = TItemCF if t == "t-itemcf" else TUserCF
        return cls(config, item_embeddings=ctx.item_embeddings).fit(data)
    return (ItemCF if t == "itemcf" else UserCF)(config).fit(data)


def build_popular(config: Any, ctx: BuildContext) -> Any:
    from .retrieval.popularity import PopularityRetriever

    return PopularityRetriever(config).fit(_need_fit_data(ctx, "retriever 'popular'"))


def build_ease(config: Any, ctx: BuildContext) -> Any:
    from .retrieval.ease import EASE

    return EASE(config).fit(_need_fit_data(ctx, "retriever 'ease'"))


def build_implicit_mf(config: Any, ctx: BuildContext) -> Any:
    """ALS / BPR through the optional `implicit` package."""
    from .retrieval.implicit_models import ALS, BPR

    cls: Any = ALS if config.type == "als" else BPR
    return cls(config).fit(_need_fit_data(ctx, f"retriever {config.type!r}"))


def build_transitions(config: Any, ctx: BuildContext) -> Any:
    from .retrieval.transitions import Transitions

    return Transitions(config).fit(_need_fit_data(ctx, "retriever 'transitions'"))


def build_sasrec(config: Any, ctx: BuildContext) -> Any:
    from .retrieval.sasrec import SASRec

    return SASRec(config).fit(_need_fit_data(ctx, "retriever 'sasrec'"))


def build_union(config: Any, ctx: BuildContext) -> Any:
    """The union retriever; its sources are fitted through the same context (shared)."""
    from .retrieval.union import UnionRetriever

    return UnionRetriever(config, context=ctx).fit(_need_fit_data(ctx, "retriever 'union'"))


# ---------------------------------------------------------------------------- stage 2
def build_identity(config: IdentityConfig, ctx: BuildContext) -> Any:
    from .ranking.base import IdentityRanker

    return IdentityRanker()


def build_random(config: RandomConfig, ctx: BuildContext) -> Any:
    from .ranking.baselines import RandomRanker

    return RandomRanker(seed=ctx.seed if config.seed is None else config.seed, name=ctx.name or "random")


def build_cf_scorer(config: Any, ctx: BuildContext) -> Any:
    """A CF model (fitted on ``ctx.fit_data``, shared between rows asking for the same one) as a
    scorer of the candidates."""
    from .ranking.base import ScorerRanker

    name = ctx.name or config.type
    return ScorerRanker(_retriever_scorer(config, ctx, name), name=name)


def _retriever_scorer(config: Any, ctx: BuildContext, name: str) -> Any:
    """A CF model fitted on ``ctx.fit_data`` (shared between rows asking for the same one) as a
    `Scorer` of candidates."""
    from .data.dataset import Dataset
    from .ranking.baselines import RetrieverScorer

    retriever = ctx.retriever(config)
    n_items = ctx.catalog.n_items if isinstance(ctx.catalog, Dataset) else len(ctx.catalog or ())
    return RetrieverScorer(retriever, n_items, name)


def build_bert(config: Any, ctx: BuildContext) -> Any:
    from .ranking.base import ScorerRanker
    from .ranking.bert import BertScorer

    if ctx.catalog is None:
        raise ConfigError("bert: needs an item catalog")
    return ScorerRanker(BertScorer(ctx.catalog, config), name=ctx.name or "bert")


def llm_backend_for(config: Any, ctx: BuildContext) -> Any:
    """The backend an LLM ranker uses: the context's shared one, a cached one in evaluations,
    or None (the ranker loads its model through `BACKENDS` on first use)."""
    if ctx.backend is not None:
        return ctx.backend
    if ctx.cache is not None and ctx.cache.enabled:
        from .llm.cached import CachedBackend

        return CachedBackend(config.llm_config(), ctx.cache)
    return None


def build_llm(config: Any, ctx: BuildContext) -> Any:
    """The pointwise / listwise / verbalizer LLM ranker a config names."""
    from .ranking.listwise import ListwiseLLMRanker
    from .ranking.pointwise import PointwiseLLMRanker
    from .ranking.verbalizer import VerbalizerLLMRanker

    cls: Any = {"llm-pointwise": PointwiseLLMRanker, "llm-listwise": ListwiseLLMRanker,
                "llm-verbalizer": VerbalizerLLMRanker}[config.type]
    try:
        ranker = cls(config.llm_config(), catalog=ctx.catalog, backend=llm_backend_for(config, ctx),
                     **config.ranker_options())
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{config.type}: {e}") from None
    if ctx.name:
        ranker.name = ctx.name
    scorer = getattr(config, "cf_hint_scorer", None)
    if scorer is not None:  # candidates without stage-1 scores (regime B) get a CF model's first
        from .ranking.hints import Stage1Rescorer

        ranker = Stage1Rescorer(ranker, _retriever_scorer(scorer, ctx, scorer.type), source=scorer.type)
    return ranker


def build_fusion(config: Any, ctx: BuildContext) -> Any:
    """Fixed-weight fusion over rankers built before it: ``weights`` {ranker name: weight}.
    Each named ranker becomes a signal (its scorer when it wraps one, else its ranking)."""
    from .ranking.baselines import as_scorer
    from .ranking.fusion import FusionRanker

    weights = dict(config.weights)
    if not weights:
        raise ConfigError("fusion.weights: give a mapping of ranker name -> weight")
    missing = [n for n in weights if n not in ctx.built]
    if missing:
        raise ConfigError(f"fusion.weights: {missing} must name rankers listed before this one")
    ranker = FusionRanker({n: as_scorer(ctx.built[n]) for n in weights}, config)
    if ctx.name:
        ranker.name = ctx.name
    return ranker


def build_learned(config: Any, ctx: BuildContext) -> Any:
    """The learned head, fitted on the validation stage of ``ctx.split``."""
    from .ranking.learned import LearnedFusionRanker
    from .ranking.learned_build import LearnedParts

    if ctx.split is None:
        raise ConfigError("learned-fusion: needs a leave-one-out split (regimes a/b)")
    name = ctx.name or "learned-fusion"
    bert = RANKERS.build(config.bert, ctx.named(f"{name}.bert")).scorer if config.bert is not None else None
    llm = RANKERS.build(config.llm, ctx.named(f"{name}.llm")) if config.llm is not None else None
    head = config.head
    if not head.use_llm_hidden or llm is None:
        head = head.model_copy(update={"use_llm_hidden": False})

    parts = LearnedParts(config, ctx, bert=bert, llm=llm, use_hidden=head.use_llm_hidden)
    users = config.train_users
    capped = ctx.user_limit is not None and (users is None or users > ctx.user_limit)
    if capped:
        log.info("%s: fitting on the first %d validation users (the run's user limit), not %s",
                 name, ctx.user_limit, users or "all")
        users = ctx.user_limit
    ranker = LearnedFusionRanker.fit(
        ctx.split, parts.builder, head, n_negatives=config.n_negatives, negatives=config.negatives,
        retriever=parts.list_retriever(ctx.split.train), users=users,
        history_cap=config.history_cap, seed=ctx.seed, serve_data=ctx.fit_data,
    )
    if capped:
        ranker.head.fit_report["train_users_capped"] = {"configured": config.train_users, "used": users}
    ranker.name = name
    return ranker


# ---------------------------------------------------------------------------- LLM backends
def build_transformers(config: Any, ctx: BuildContext) -> Any:
    """The in-process transformers backend (one loaded model per distinct config, shared)."""
    from .llm.hf import load_backend

    return load_backend(config)


def build_openai(config: Any, ctx: BuildContext) -> Any:
    """An OpenAI-compatible server (vLLM, llama.cpp, Ollama): one client per distinct config."""
    from .llm.loading import load_llm

    return load_llm(config)


__all__ = [
    "IdentityConfig",
    "RandomConfig",
    "build_bert",
    "build_cf_scorer",
    "build_ease",
    "build_fusion",
    "build_identity",
    "build_implicit_mf",
    "build_knn",
    "build_learned",
    "build_llm",
    "build_openai",
    "build_popular",
    "build_random",
    "build_sasrec",
    "build_transformers",
    "build_transitions",
    "build_union",
    "llm_backend_for",
]
