"""Config models of the stage-2 components that have no module-level config of their own:
the LLM rankers (an `LLMConfig` plus the ranker's own options, one flat mapping as in every
YAML so far) and the learned-fusion row of an experiment. Light: pydantic only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ..config import BaseConfig
from ..llm.base import LLMConfig
from ..registry import RETRIEVERS
from ..retrieval.knn import ItemCFConfig, UserCFConfig
from .bert import BertScorerConfig
from .learned import LearnedFusionConfig

RetrieverConfigs = RETRIEVERS.union()
"""Any registered retriever's config (a discriminated union on ``type``)."""

if TYPE_CHECKING:  # a runtime union: type checkers see its base (the LLM configs inherit the field)
    _HintScorer = BaseConfig
else:
    _HintScorer = RetrieverConfigs


class LLMRankerConfig(LLMConfig):
    """The model settings (`LLMConfig`, inherited field by field) plus what every LLM ranker
    takes: how much history it shows and an optional prompt-token cap."""

    max_history: int = Field(20, ge=0, le=1000, description="most recent history items shown")
    max_prompt_tokens: int | None = Field(
        None, ge=16, description="cap on a prompt's tokens below the model's context (None: the context)"
    )

    def llm_config(self) -> LLMConfig:
        """The `LLMConfig` part (what loads and runs the model; the LLM cache keys on it)."""
        return LLMConfig(**{k: getattr(self, k) for k in LLMConfig.model_fields})

    def ranker_options(self) -> dict[str, object]:
        """The ranker's own keyword options (everything that is not an `LLMConfig` field)."""
        skip = {*LLMConfig.model_fields, "type", "cf_hint_scorer"}
        return {k: getattr(self, k) for k in type(self).model_fields if k not in skip}


class CFHintOptions(BaseConfig):
    """CF hints in the prompt (RecRanker's "another recommender suggests ..."): each candidate
    shown with its stage-1 rank or score band (`reranker.ranking.hints`)."""

    cf_hint: Literal["none", "rank", "band"] = Field(
        "none", description="show each candidate's stage-1 rank ('3 of 20') or score band (high / medium / low "
        "thirds of the list's score range), from the candidates' own scores; none: the prompt as without",
    )
    cf_hint_scorer: _HintScorer | None = Field(
        None, description="a CF model (fitted like a CF row) that scores the candidates before the LLM sees them, "
        "for candidates that come without stage-1 scores (regime B); null: the candidates' own scores",
    )


class PointwiseConfig(LLMRankerConfig, CFHintOptions):
    """Pointwise Yes/No scoring: logit(Yes) - logit(No) per candidate."""

    type: Literal["llm-pointwise"] = "llm-pointwise"


class VerbalizerConfig(LLMRankerConfig):
    """LlamaRec-style verbalizer over lettered candidates."""

    type: Literal["llm-verbalizer"] = "llm-verbalizer"
    permutations: int = Field(1, ge=1, le=20, description="seeded shuffles averaged against position bias")
    seed: int = 0
    anchors: int = Field(
        8, ge=1, le=25, description="more than 26 candidates: the first chunk's best candidates shown again in "
        "every further chunk to put its scores on the first chunk's scale",
    )


class ListwiseConfig(LLMRankerConfig, CFHintOptions):
    """PALR select-and-rank with strict parsing, permutation bootstrapping, sliding windows."""

    type: Literal["llm-listwise"] = "llm-listwise"
    permutations: int = Field(1, ge=1, le=20, description="orders shown per window, merged with Borda counts")
    window: int = Field(20, ge=2, le=50, description="candidates per window (RankGPT-style sliding window; "
                        "a small LLM cannot order more than a few dozen numbered items in one answer)")
    step: int = Field(10, ge=1, description="window step")
    seed: int = 0
    decoding: Literal["auto", "constrained", "free"] = Field(
        "auto", description="constrained: select-only decoding, the answer held to the unused candidate labels "
        "(in process: a logits processor; a server: server.constrained_decoding); free: generate freely, "
        "repair with the strict parser; auto: constrained where the backend can, else free",
    )

    @model_validator(mode="after")
    def _step_in_window(self) -> ListwiseConfig:
        if self.step > self.window:
            raise ValueError(f"step ({self.step}) must be <= window ({self.window})")
        return self


LLMRankerConfigs = PointwiseConfig | ListwiseConfig | VerbalizerConfig


class LearnedFusionParams(BaseConfig):
    """A learned-fusion row of an experiment: the head over CF / popularity / recency / BERT
    (and optionally the pointwise LLM's logit + hidden state), fitted on the validation stage.
    ``itemcf`` / ``usercf`` / ``bert`` / ``llm`` null switch that feature off."""

    type: Literal["learned-fusion"] = "learned-fusion"
    itemcf: ItemCFConfig | None = Field(default_factory=lambda: ItemCFConfig(k=20, feedback="implicit"))
    usercf: UserCFConfig | None = Field(default_factory=lambda: UserCFConfig(k=20, feedback="implicit"))
    popularity: bool = True
    recency_days: float | None = Field(30.0, ge=0, description="recency feature window (0 or null: off)")
    bert: BertScorerConfig | None = None
    llm: PointwiseConfig | None = None
    head: LearnedFusionConfig = Field(default_factory=LearnedFusionConfig)
    train_users: int | None = Field(None, ge=1, description="validation users the head is fitted on (None: all)")
    negatives: Literal["random", "retrieved", "mixed"] = "random"
    n_negatives: int = Field(19, ge=1, le=999)
    history_cap: int = Field(20, ge=1)
    extra: dict[str, RetrieverConfigs] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="more features: named stage-1 models (e.g. transitions, ease) fitted like the CF "
        "features, each scoring the candidates; a retriever with per-source features (the union) adds "
        "each source's score and rank (<name>.<source>_score / _rank)",
    )
    candidates_from: RetrieverConfigs | None = Field(  # type: ignore[valid-type]
        None,
        description="the retriever (fitted on the train split) whose top n_negatives + 1 candidates make "
        "the fit lists for negatives 'retrieved' / 'mixed' (the hard candidates, as in regime A)",
    )
    ranks: bool = Field(False, description="add each scorer's within-list rank (<name>_rank, 1 = best)")
    trend_days: float | None = Field(
        None, gt=0, description="popularity trend feature: an item's share of interactions in the last "
        "trend_days of the fit data vs overall (null: off)"
    )
    history_length: bool = Field(False, description="add the history length as a feature")

    @model_validator(mode="after")
    def _retriever_for_negatives(self) -> LearnedFusionParams:
        if self.negatives != "random" and self.candidates_from is None:
            raise ValueError(f"negatives {self.negatives!r} needs candidates_from (the retriever to take them from)")
        return self


__all__ = [
    "CFHintOptions",
    "LLMRankerConfig",
    "LLMRankerConfigs",
    "LearnedFusionParams",
    "ListwiseConfig",
    "PointwiseConfig",
    "RetrieverConfigs",
    "VerbalizerConfig",
]
