"""The LLM backend protocol, its config and result objects (no heavy imports here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

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
    """Suffixes per forward in score_options (KV-cache path), prompts per batch in generate."""
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
    """What the rankers need from a model: label scoring, generation, tokens, chat formatting."""

    config: LLMConfig

    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        """The model's chat template applied to one user turn, ready for the assistant reply."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def truncate_tokens(self, text: str, n_tokens: int) -> str: ...

    @property
    def max_context(self) -> int: ...

    def score_options(
        self,
        prompt_prefix: str,
        suffixes: Sequence[str],
        labels: Sequence[str],
        return_hidden: bool = False,
    ) -> ScoreResult: ...

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        seed: int = 0,
        repetition_penalty: float | None = None,
    ) -> list[Generation]: ...


__all__ = ["LLMConfig", "ScoreResult", "Generation", "LLMBackend"]
