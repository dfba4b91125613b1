"""The LLM backend protocol, its config and result objects (no heavy imports here)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import Field, field_validator, model_validator

from ..config import BaseConfig

if TYPE_CHECKING:
    import numpy as np

    from .constrained import LabelList


DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
"""Where the `openai` backend looks when neither the model spec nor `server.base_url` gives a URL."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ServerConfig(BaseConfig):
    """How the `openai` backend talks to an OpenAI-compatible server (vLLM, llama.cpp, Ollama).

    Only operational settings live here; which model runs where is the `model` spec
    (`openai:MODEL@http://host:port/v1`) or `base_url` with a plain served model name."""

    base_url: str | None = None
    """The server's OpenAI API root, e.g. `http://127.0.0.1:8000/v1` (None: the URL of the
    `openai:MODEL@URL` model spec, else `DEFAULT_BASE_URL`, where vLLM and llama-cpp-python
    listen by default)."""
    api_key_env: str | None = None
    """NAME of the environment variable holding the API key (sent as a Bearer token). The key
    itself is never written into configs, caches or reports."""
    tokenizer: str | None = None
    """Model spec (preset, local folder, `.gguf`, hub id) whose tokenizer and chat template render
    prompts locally; None: the served model name (works when it is a preset, folder or hub id)."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Seconds one HTTP request may take (connect + answer) before it is retried."""
    max_concurrency: int = Field(default=4, ge=1, le=1024)
    """Most requests in flight at once, over every call sharing this backend."""
    retries: int = Field(default=3, ge=0, le=20)
    """Extra tries after a timeout, a connection error, a 429 or a 5xx (exponential backoff)."""
    backoff_s: float = Field(default=0.5, ge=0)
    """Delay before the first retry; doubled on each further one."""
    top_logprobs: int = Field(default=20, ge=1, le=100)
    """Next-token alternatives requested per scoring call (`logprobs`); a label outside them gets
    a floor below the smallest returned log-probability and is counted in the diagnostics. vLLM
    caps this with `--max-logprobs` (default 20)."""
    label_scores: Literal["top_logprobs", "prompt_logprobs"] = "top_logprobs"
    """`top_logprobs`: one `max_tokens: 1` call per prompt, labels read from the top-k (any
    server with logprobs). `prompt_logprobs` (vLLM): one call per prompt and label, sent as
    token ids ending in the label's token, reading its exact log-probability from vLLM's
    `prompt_logprobs` (no label is ever missing; the server's prefix cache makes the extra
    calls cheap)."""

    constrained_decoding: Literal["grammar", "vllm", "vllm-guided", "none"] = "none"
    """How the server holds a listwise answer to the candidates' labels (the listwise ranker's
    `decoding: constrained`): `grammar`, a GBNF grammar in the `grammar` field of
    /v1/completions (llama.cpp's server, llama-cpp-python); `vllm`, a regex in
    `structured_outputs` (vLLM >= 0.10.2; the only form from 0.12); `vllm-guided`, the same
    regex as `guided_regex` (vLLM before 0.12); `none`, the server has no such mechanism
    (constrained decoding is then an error: use `decoding: free`). The grammar and the regex
    enforce the format, the label range and the count; repeated labels are left to the
    parser (counted as duplicates, the missing candidates filled in)."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {v!r}")
        return v.rstrip("/") if v else v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("give the NAME of an environment variable holding the key (letters, digits, "
                             "underscores), never the key itself")
        return v


class LLMConfig(BaseConfig):
    """How to load and run an LLM: in process (`backend: transformers`) or behind an
    OpenAI-compatible server (`backend: openai`, chosen by an `openai:MODEL@URL` model spec)."""

    model: str = "smollm2-135m"
    """Preset name, local folder, `.gguf` file, hub id (`org/name`; only hub ids download), or
    an OpenAI-compatible server: `openai:MODEL@http://host:port/v1`."""
    adapter: Path | None = None
    """A LoRA adapter folder (from `reranker finetune`) applied on top of `model`; the spec
    form `model: base+path/to/adapter` does the same."""
    merge_adapter: bool = False
    """Merge the adapter into the weights at load (a little faster; bf16 rounding makes scores
    differ slightly from the unmerged adapter)."""
    backend: Literal["transformers", "openai"] = "transformers"
    """`openai`: an OpenAI-compatible server (set by an `openai:...` model spec)."""
    server: ServerConfig | None = Field(default=None, exclude_if=lambda v: v is None)
    """Settings of the `openai` backend (left out of dumps when unset, so the cache keys of
    in-process configs stay what they were)."""
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """`auto`: the faster of bf16 and fp32 on this machine, measured once on GEMMs of the
    model's MLP shape and cached per CPU, torch version and thread count
    (`$RERANKER_CACHE/dtype-calibration.json`); `bf16` / `fp32` force one."""
    threads: int | None = Field(default=None, ge=1)
    """torch intra-op threads; None keeps torch's default."""
    batch_size: int = Field(default=16, ge=1)
    """Suffixes per forward on the KV-cache scoring path, prompts per batch in generate."""
    scoring: Literal["packed", "cache"] = "packed"
    """How shared-prefix scoring runs: `packed` puts all suffixes in one unpadded sequence with
    a prefix-aware attention (fastest on CPU; models whose attention transformers dispatches
    through its AttentionInterface, others fall back); `cache` expands the prefix KV cache over
    padded batches of suffixes."""
    max_context: int | None = Field(default=2048, ge=128)
    """Token budget of one prompt (capped by the model's own maximum)."""
    max_new_tokens: int = Field(default=96, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    """0 = greedy decoding."""
    system_prompt: str | None = None
    """Replaces the chat template's default system message when given."""
    prompt_dir: Path | None = None
    """A folder of user `*.j2` templates that override the built-in ones by name."""
    item_text_tokens: int = Field(default=48, ge=0)
    """Token budget for an item's description in prompts (0 = title, category, attrs only)."""
    max_attrs: int = Field(default=3, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _backend_from_spec(cls, data: Any) -> Any:
        """An `openai:` model spec selects the openai backend unless one is named."""
        if isinstance(data, dict) and str(data.get("model", "")).startswith("openai:") and "backend" not in data:
            return {**data, "backend": "openai"}
        return data

    @model_validator(mode="after")
    def _server_settings_fit(self) -> LLMConfig:
        spec = self.model.startswith("openai:")
        if self.backend == "transformers" and (spec or self.server is not None):
            raise ValueError("an openai: model spec or server settings need backend: openai")
        if self.backend == "openai":
            from .models import parse_server_spec

            parse_server_spec(self.model)  # a malformed URL fails here
            if self.adapter is not None or "+" in self.model:
                raise ValueError("a LoRA adapter cannot be applied through a server; load it into the server")
        return self


@dataclass
class ScoreResult:
    """Next-token logits over the label tokens for each suffix (rows) and label (columns)."""

    logits: np.ndarray
    hidden: np.ndarray | None = None
    """Final hidden state at the scoring position, shape (n_suffixes, hidden_size)."""
    tokens_in: int = 0
    """Tokens run through the model (prefix once + all suffixes)."""
    latency_s: float = 0.0
    meta: dict = field(default_factory=dict)
    """Backend notes on the scores, e.g. `labels_missing` / `labels_scored` from a server that
    returned only its top-k next tokens (empty for exact backends)."""


@dataclass
class Generation:
    """One generated completion."""

    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float = 0.0
    meta: dict = field(default_factory=dict)


@runtime_checkable
class LLMBackend(Protocol):
    """What the rankers, the explainer and the harness use of a model: chat formatting, token
    counting, label scoring and generation. Every backend (in-process transformers, the on-disk
    cache, test fakes) implements exactly this and passes the shared suite
    (`tests/backend_suite.py`). Abilities only some backends have are the small protocols below,
    checked with `isinstance`."""

    config: LLMConfig

    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        """The model's chat template applied to one user turn, ready for the assistant reply."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` (no special tokens added)."""
        ...

    def truncate_tokens(self, text: str, n_tokens: int) -> str:
        """`text` cut to at most `n_tokens` tokens (a marker such as "..." may follow a cut)."""
        ...

    @property
    def max_context(self) -> int:
        """Token budget of one prompt."""
        ...

    def score_prompts(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        """Next-token logits over `labels` after each full prompt: `logits` (n_prompts, n_labels);
        with `return_hidden`, `hidden` (n_prompts, hidden_size), or a `ModelError` when the
        backend has no hidden states (see `HiddenStatesBackend`)."""
        ...

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        seed: int = 0,
        repetition_penalty: float | None = None,
    ) -> list[Generation]:
        """One `Generation` per prompt, in order (greedy unless `config.temperature` > 0)."""
        ...


@runtime_checkable
class ConstrainedListBackend(Protocol):
    """A backend that can hold a generation to a list of labels (select-only listwise decoding,
    `reranker.llm.constrained`): in process with a logits processor (distinct labels by
    construction), behind a server with its grammar or guided decoding."""

    @property
    def can_constrain(self) -> bool:
        """Whether `generate_label_list` can run here (a server: `server.constrained_decoding`
        names its mechanism; a cache: its backend can)."""
        ...

    def generate_label_list(
        self,
        prompts: Sequence[str],
        answer: LabelList,
        max_new_tokens: int | None = None,
        seed: int = 0,
    ) -> list[Generation]: ...


@runtime_checkable
class HiddenStatesBackend(Protocol):
    """A backend whose `score_prompts(..., return_hidden=True)` returns the final hidden state
    at the scoring position (the learned fusion head's `h_LLM`)."""

    @property
    def hidden_size(self) -> int: ...


@runtime_checkable
class PrefixScoringBackend(Protocol):
    """A backend that scores suffixes after a shared string prefix (the prefix and each suffix
    tokenized separately); `score_prompts` is what the rankers use."""

    def score_options(
        self,
        prompt_prefix: str,
        suffixes: Sequence[str],
        labels: Sequence[str],
        return_hidden: bool = False,
    ) -> ScoreResult: ...


@runtime_checkable
class TorchBackend(Protocol):
    """An in-process torch model (what fine-tuning needs): the causal LM, its decoder stack
    (hidden states without the LM head), the device it sits on and its tokenizer."""

    tokenizer: Any

    @property
    def model(self) -> Any: ...

    @property
    def decoder(self) -> Any: ...

    @property
    def device(self) -> Any: ...

    def encode(self, text: str) -> list[int]: ...

    def label_token_ids(self, labels: Sequence[str]) -> list[int]: ...


__all__ = [
    "LLMConfig",
    "ServerConfig",
    "ScoreResult",
    "Generation",
    "LLMBackend",
    "ConstrainedListBackend",
    "HiddenStatesBackend",
    "PrefixScoringBackend",
    "TorchBackend",
]
