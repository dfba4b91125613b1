"""The LLM backend protocol, its config and result objects (no heavy imports here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from ..config import BaseConfig

if TYPE_CHECKING:
    import numpy as np


class LLMConfig(BaseConfig):
    """How to load and run a local LLM."""

    model: str = "smollm2-135m"
    """Preset name, local folder, `.gguf` file or hub id (`org/name`; only hub ids download)."""
    adapter: Path | None = None
    """A LoRA adapter folder (from `reranker finetune`) applied on top of `model`; the spec
    form `model: base+path/to/adapter` does the same."""
    merge_adapter: bool = False
    """Merge the adapter into the weights at load (a little faster; bf16 rounding makes scores
    differ slightly from the unmerged adapter)."""
    backend: Literal["transformers"] = "transformers"
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """`auto`: bf16 when the CPU has native bf16 support, else fp32."""
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


@dataclass
class ScoreResult:
    """Next-token logits over the label tokens for each suffix (rows) and label (columns)."""

    logits: np.ndarray
    hidden: np.ndarray | None = None
    """Final hidden state at the scoring position, shape (n_suffixes, hidden_size)."""
    tokens_in: int = 0
    """Tokens run through the model (prefix once + all suffixes)."""
    latency_s: float = 0.0


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
    "ScoreResult",
    "Generation",
    "LLMBackend",
    "HiddenStatesBackend",
    "PrefixScoringBackend",
    "TorchBackend",
]
