"""The pipeline's config (YAML: configs/pipeline-*.yaml). Component configs are embedded, not
copied: ``retriever`` is any registered retriever's config (a union on ``type``), ``ranking.llm``
any LLM ranker's (``type: llm-pointwise | llm-listwise | llm-verbalizer``), ``ranking.bert`` the
BERT scorer's, so every field of every component can be set here and is validated with its
dotted path. ``null`` switches a component off.

Files written before the registry keep loading: ``llm.mode`` becomes ``llm.type``,
``enabled: false`` becomes ``null``, and the retriever keys the old fixed section always
wrote (``mu: null``; ``k``/``similarity``/... for ``popular``) are dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, field_validator

from ..config import BaseConfig
from ..explain import ExplainerConfig
from ..ranking.bert import BertScorerConfig
from ..ranking.configs import PointwiseConfig
from ..ranking.fusion import FusionConfig, NonNegWeight
from ..ranking.learned import LearnedFusionConfig
from ..registry import LLM_RANKER_TYPES, MODE_TO_TYPE, RANKERS, RETRIEVERS

if TYPE_CHECKING:
    # the type checker's view of the registries' unions (built at run time): any registered
    # retriever's config (its name: `RETRIEVERS.type_of`), one of the three LLM rankers'
    from ..ranking.configs import ListwiseConfig, VerbalizerConfig

    RetrieverConfig: TypeAlias = BaseConfig
    LLMRankerConfig: TypeAlias = PointwiseConfig | ListwiseConfig | VerbalizerConfig
else:
    RetrieverConfig = RETRIEVERS.union()
    LLMRankerConfig = RANKERS.union(LLM_RANKER_TYPES)

_OLD_RETRIEVER_KEYS = ("k", "similarity", "feedback", "shrinkage", "min_support")


class FusionSection(FusionConfig):
    """Fixed-weight fusion of the per-list-normalised signals ``content`` (BERT), ``cf`` (the
    retriever's score) and ``llm``; weights from here or fitted on the validation split."""

    weights: dict[str, NonNegWeight] = Field(default_factory=lambda: {"content": 0.3, "cf": 0.5, "llm": 0.2})
    fit_weights: bool = False
    grid_step: float = Field(0.1, gt=0, le=0.5)
    fit_users: int | None = Field(None, ge=1)

    @field_validator("weights")
    @classmethod
    def _signals(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(set(v) - {"content", "cf", "llm"})
        if bad:
            raise ValueError(f"unknown signal(s) {bad}; the pipeline's signals are content, cf, llm")
        return {"content": 0.0, "cf": 0.0, "llm": 0.0, **v} if v else v


class LearnedSection(LearnedFusionConfig):
    """The learned head (replaces fixed fusion when enabled)."""

    enabled: bool = False
    users: int | None = Field(None, ge=1, description="validation users to fit on (None: all)")
    n_negatives: int = Field(19, ge=1, le=999)
    negatives: Literal["random", "retrieved", "mixed"] = "random"


class DiversitySection(BaseConfig):
    """MMR re-rank of the fused list (lam = 1: off)."""

    enabled: bool = False
    lam: float = Field(0.7, ge=0, le=1)
    similarity: Literal["category", "embedding"] = "category"


class ExplainSection(ExplainerConfig):
    """Explanations of the top ``top_k`` recommendations (the explainer's settings)."""

    enabled: bool = False
    top_k: int = Field(3, ge=1)


def _switch(v: Any, convert: Any = None) -> Any:
    """Old ``{enabled: false, ...}`` -> None; ``{enabled: true, ...}`` -> the rest."""
    if isinstance(v, dict) and "enabled" in v:
        v = dict(v)
        if not v.pop("enabled"):
            return None
    return convert(v) if convert is not None and isinstance(v, dict) else v


def _llm_type(v: dict[str, Any]) -> dict[str, Any]:
    v = dict(v)
    mode = v.pop("mode", None)
    if mode is not None:
        if "type" in v:
            raise ValueError("give type (llm-pointwise | llm-listwise | llm-verbalizer), not mode as well")
        if mode not in MODE_TO_TYPE:
            raise ValueError(f"mode: must be one of {', '.join(MODE_TO_TYPE)}, got {mode!r}")
        v["type"] = MODE_TO_TYPE[mode]
    v.setdefault("type", "llm-pointwise")
    return v


class RankingSection(BaseConfig):
    """Stage 2: candidates per user, the scorers (``null`` switches one off), their fusion or
    the learned head, diversity."""

    n_candidates: int = Field(20, ge=1, le=1000)
    """Stage-1 candidates reranked per request (at most 1000)."""
    llm: LLMRankerConfig | None = Field(default_factory=PointwiseConfig)
    bert: BertScorerConfig | None = Field(default_factory=BertScorerConfig)
    fusion: FusionSection = Field(default_factory=FusionSection)
    learned: LearnedSection = Field(default_factory=LearnedSection)
    diversity: DiversitySection = Field(default_factory=DiversitySection)

    @field_validator("llm", mode="before")
    @classmethod
    def _old_llm(cls, v: Any) -> Any:
        return _switch(v, _llm_type)

    @field_validator("bert", mode="before")
    @classmethod
    def _old_bert(cls, v: Any) -> Any:
        return _switch(v)


class PipelineConfig(BaseConfig):
    """A whole pipeline (YAML: configs/pipeline-*.yaml)."""

    name: str = "pipeline"
    retriever: RetrieverConfig = Field(default_factory=lambda: RETRIEVERS.config({"type": "itemcf"}))
    ranking: RankingSection = Field(default_factory=RankingSection)
    explain: ExplainSection = Field(default_factory=ExplainSection)
    top_k: int = Field(10, ge=1)
    history_cap: int = Field(20, ge=1)
    seed: int = 0

    @field_validator("retriever", mode="before")
    @classmethod
    def _old_retriever(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        v = dict(v)
        v.setdefault("type", "itemcf")
        if v["type"] == "pop":
            v["type"] = "popular"
        if v.get("mu", 0) is None:
            v.pop("mu")
        if v["type"] == "popular":
            for k in _OLD_RETRIEVER_KEYS:
                v.pop(k, None)
        return v


__all__ = [
    "DiversitySection",
    "ExplainSection",
    "FusionSection",
    "LearnedSection",
    "PipelineConfig",
    "RankingSection",
]
