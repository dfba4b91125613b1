"""The service's config (YAML: configs/serve.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..api import RerankerConfig
from ..config import BaseConfig

Mode = Literal["pointwise", "listwise", "verbalizer"]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SyntheticData(BaseConfig):
    """The generated demo world (`reranker data generate`): no files needed."""

    seed: int = 0
    users: int = Field(500, ge=10, le=100_000)
    items: int = Field(400, ge=20, le=100_000)


class PipelineSource(BaseConfig):
    """Where `/v1/recommend`'s pipeline comes from: a saved folder (`path`), or a pipeline
    config (a YAML path or an inline mapping) fitted at start on `data` (a dataset path with
    its `format`), `data_name` (a data set `reranker data fetch` knows: its cache copy, fetched
    on first use) or `synthetic`."""

    path: Path | None = None
    config: Path | dict[str, Any] | None = None
    data: Path | None = None
    data_name: str | None = Field(None, min_length=1, max_length=200)
    format: str = "csv"
    """The format of `data`; with `data_name`, the cache copy's own format unless given."""
    synthetic: SyntheticData | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PipelineSource:
        if (self.path is None) == (self.config is None):
            raise ValueError("give either path (a saved pipeline) or config (fitted at start)")
        given = [k for k in ("data", "data_name", "synthetic") if getattr(self, k) is not None]
        if self.config is not None and len(given) != 1:
            raise ValueError("with config, give one of data (a dataset path), data_name (a data set "
                             f"`reranker data fetch` knows) or synthetic; got {', '.join(given) or 'none'}")
        return self


class LimitsConfig(BaseConfig):
    """Bounds of one request (each refused with a 4xx naming the field)."""

    max_body_bytes: int = Field(2_000_000, ge=1_000, le=100_000_000)
    max_documents: int = Field(200, ge=1, le=10_000)
    max_history: int = Field(200, ge=0, le=10_000)
    max_feedback_events: int = Field(1000, ge=1, le=100_000)
    max_k: int = Field(100, ge=1, le=1000)


def _default_rerankers() -> dict[Mode, RerankerConfig]:
    return {"pointwise": RerankerConfig()}


class RefreshConfig(BaseConfig):
    """Feedback into the model: refit stage 1 and popularity on the fit data plus the stored
    events, in the background, then swap the model (also on `POST /v1/admin/refresh`)."""

    every_events: int | None = Field(None, ge=1)
    """Refresh after this many new events (None: not on a count)."""
    every_seconds: float | None = Field(None, ge=1)
    """Refresh this often when new events came in (None: not on a timer)."""
    events: tuple[Literal["view", "click", "purchase", "rating"], ...] = ("click", "purchase", "rating")
    """The event kinds that count as interactions."""


class MicroBatchConfig(BaseConfig):
    """Concurrent rerank requests of a mode with a batched ranking path (listwise: one batched
    `generate`) are ranked together (`reranker.serve.batcher`). Pointwise and the verbalizer
    score one request per forward either way; requests that ask for explanations run alone."""

    enabled: bool = True
    max_batch: int | None = Field(None, ge=1, le=256)
    """Requests per batch (None: the ranker's preferred number, the users whose prompts fill
    one generate batch)."""
    max_wait_ms: float = Field(10.0, ge=0, le=5_000)
    """How long the first waiting request waits for others before its batch runs."""


class ServeConfig(BaseConfig):
    """`reranker serve --config configs/serve.yaml`."""

    model_name: str = Field("reranker", max_length=200)
    """The `model` the responses name."""
    rerankers: dict[Mode, RerankerConfig] = Field(default_factory=_default_rerankers)
    """One Reranker per served mode; the first is the default `mode`."""
    pipeline: PipelineSource | None = None
    """The fitted pipeline behind `/v1/recommend` (and the catalog for history ids); None: the
    route answers 503."""
    feedback_db: Path = Path("runs/serve/feedback.sqlite3")
    """SQLite file (WAL mode) holding the feedback events."""
    api_key_env: str | None = "RERANKER_API_KEY"
    """Environment variable holding the Bearer key. When set in the environment, every /v1/
    route needs `Authorization: Bearer <key>`; bound to a non-loopback host it must be set."""
    workers: int = Field(2, ge=1, le=64)
    """Threads running model work (off the event loop)."""
    default_timeout_ms: int | None = Field(None, ge=1, le=600_000)
    """A request's deadline when it gives no `timeout_ms`: past it the stage-1 order comes back
    with `degraded: true`."""
    warm_up: bool = True
    """Load the models at start (then /readyz says ready); false: on the first request."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)
    micro_batch: MicroBatchConfig = Field(default_factory=MicroBatchConfig)

    @model_validator(mode="after")
    def _some_mode(self) -> ServeConfig:
        if not self.rerankers:
            raise ValueError("rerankers: serve at least one mode")
        for mode, rc in self.rerankers.items():
            if rc.ranker.type != f"llm-{mode}":
                raise ValueError(f"rerankers.{mode}.ranker.type: must be llm-{mode}, got {rc.ranker.type}")
        return self

    @property
    def default_mode(self) -> str:
        return next(iter(self.rerankers))


__all__ = ["LOOPBACK_HOSTS", "LimitsConfig", "MicroBatchConfig", "PipelineSource", "RefreshConfig", "ServeConfig", "SyntheticData"]
