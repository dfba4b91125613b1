"""Request and response bodies (pydantic, extra="forbid", bounded sizes).

`/v1/rerank` takes the common rerank API's body (Cohere, Jina, vLLM, llama.cpp:
``{model?, query?, documents: [str | object], top_n?, return_documents?}``) plus `history`,
`user_id`, `context`, `mode`, `explain` and `timeout_ms`. A string document or history entry
is read as ``{"text": ...}`` / ``{"id": ...}`` before validation, so an error's location is
always ``documents[3].id``-shaped."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
Scalar = Annotated[str, StringConstraints(max_length=2_000)] | int | float | bool | None
ContextMap = Annotated[dict[Annotated[str, StringConstraints(max_length=100)], Scalar], Field(max_length=50)]
MAX_LIST = 10_000
"""The hard cap of any list in a body; the configured limits (`limits.*`) are lower."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _id_of(v: Any) -> Any:
    # ids are strings at the public door; an integer id is read as its decimal string
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class Document(_Strict):
    """A candidate: a plain string (its text) or an object. `id` is echoed back as `item_id`;
    `score` is its stage-1 score (the degraded answer's order), never shown to the LLM."""

    id: Id | None = None
    title: Text | None = None
    text: Text | None = None
    category: Annotated[str, StringConstraints(max_length=200)] | None = None
    attrs: ContextMap | None = None
    score: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"text": v}
        if isinstance(v, dict) and "id" in v:
            return {**v, "id": _id_of(v["id"])}
        return v


class HistoryItem(_Strict):
    """One history entry: an item id (looked up in the served catalog) or an item object."""

    id: Id
    title: Text | None = None
    text: Text | None = None
    category: Annotated[str, StringConstraints(max_length=200)] | None = None
    attrs: ContextMap | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, v: Any) -> Any:
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            return {"id": _id_of(v)}
        if isinstance(v, dict) and "id" in v:
            return {**v, "id": _id_of(v["id"])}
        return v

    @property
    def is_bare_id(self) -> bool:
        return self.title is None and self.text is None and self.category is None and not self.attrs


class RerankRequest(_Strict):
    model: Annotated[str, StringConstraints(max_length=200)] | None = None
    query: Text | None = None
    documents: Annotated[list[Document], Field(min_length=1, max_length=MAX_LIST)]
    top_n: int | None = Field(None, ge=1, le=MAX_LIST)
    return_documents: bool = False
    history: Annotated[list[HistoryItem], Field(max_length=MAX_LIST)] = Field(default_factory=list)
    user_id: Id | None = None
    context: ContextMap | None = None
    mode: Literal["pointwise", "listwise", "verbalizer"] | None = None
    explain: bool = False
    explain_mode: Literal["llm", "template"] | None = None
    """llm: the model phrases the evidence (checked, else the template sentence); template: the
    template sentence from the evidence alone; None: the served configuration's."""
    timeout_ms: int | None = Field(None, ge=1, le=600_000)


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    item_id: str | None = None
    document: dict[str, Any] | None = None
    explanation: str | None = None


class Usage(BaseModel):
    tokens_in: int = 0
    tokens_out: int = 0


class RerankResponse(BaseModel):
    id: str
    model: str
    mode: str
    results: list[RerankResult]
    usage: Usage
    degraded: bool = False
    diagnostics: dict[str, int] = Field(default_factory=dict)
    """Parse counts (valid / hallucinated / duplicate / filled_in ...), when the ranker has them."""


class RecommendRequest(_Strict):
    user_id: Id | None = None
    history: Annotated[list[Id | int], Field(max_length=MAX_LIST)] | None = None
    anonymous: bool = False
    """A logged-out user: no user_id, no history; popular items come back."""
    context: ContextMap | None = None
    k: int | None = Field(None, ge=1, le=1000)
    explain: bool = False
    explain_mode: Literal["llm", "template"] | None = None
    timeout_ms: int | None = Field(None, ge=1, le=600_000)


class RecommendItem(BaseModel):
    rank: int
    item_id: str
    score: float
    title: str | None = None
    explanation: str | None = None


class RecommendResponse(BaseModel):
    id: str
    model: str
    user_id: str | None
    path: Literal["personal", "popular"]
    results: list[RecommendItem]
    degraded: bool = False


class FeedbackEvent(_Strict):
    user_id: Id
    item_id: Id
    event: Literal["view", "click", "purchase", "rating"]
    value: float | None = None
    timestamp: float | None = Field(None, ge=0, le=1e11)
    """Unix seconds; the server's clock when absent."""
    id: Id | None = None
    """Idempotency key: an event sent again with the same id is stored once."""

    @model_validator(mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (_id_of(x) if k in ("user_id", "item_id", "id") else x) for k, x in v.items()}
        return v


class FeedbackRequest(_Strict):
    events: Annotated[list[FeedbackEvent], Field(min_length=1, max_length=MAX_LIST)]


class FeedbackResponse(BaseModel):
    accepted: int
    """Events stored by this request."""
    duplicates: int
    """Events whose `id` was already stored (not stored again)."""


class ErrorBody(BaseModel):
    type: str
    field: str | None = None
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
    errors: list[ErrorBody] = Field(default_factory=list)
