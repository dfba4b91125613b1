"""Test stand-ins for an LLM backend. Each implements `reranker.llm.base.LLMBackend` and passes
the shared `BackendSuite` (tests/test_backends.py); the library itself holds no fakes.

- `ScriptedBackend`: answers `generate` from a script (the Explainer's logic is what is tested);
  words are tokens; no hidden states (`score_prompts(..., return_hidden=True)` is refused).
- `CountingBackend`: deterministic toy answers, counts its calls (stands in for the transformers
  backend behind `CachedBackend`); characters are tokens; 4-wide hidden states.

Scores are a stable hash of (prompt, label): deterministic, and each row depends only on its
own prompt (order-equivariant, as the real backends are).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from reranker.errors import ModelError
from reranker.llm.base import Generation, LLMConfig, ScoreResult


def _unit(*parts: str) -> float:
    """A stable pseudo-random number in [-1, 1) from strings."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1.0


class FakeBackend:
    """Shared parts of the fakes: hash-based scores, a plain chat format, token counting over
    `tokens()` (whitespace words here; subclasses may count otherwise)."""

    hidden_width: int | None = None
    """Width of the hidden states; None: `return_hidden=True` raises ModelError."""

    def __init__(self, config: LLMConfig | None = None, max_context: int = 2048) -> None:
        self.config = config or LLMConfig()
        self.max_context = max_context

    # ------------------------------------------------------------------ tokens
    def tokens(self, text: str) -> list[str]:
        return text.split()

    def join(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.tokens(text))

    def truncate_tokens(self, text: str, n_tokens: int) -> str:
        if n_tokens <= 0:
            return ""
        toks = self.tokens(text)
        return text if len(toks) <= n_tokens else self.join(toks[:n_tokens]) + "..."

    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        return f"{system}\n\n{user_message}" if system else user_message

    # ------------------------------------------------------------------ scoring
    def score_prompts(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        if return_hidden and self.hidden_width is None:
            raise ModelError(f"{type(self).__name__} has no hidden states")
        # float32 values in a float64 array, as the transformers backend computes them (and as
        # CachedBackend stores them: a cache hit then equals the miss bit for bit)
        logits = np.array([[_unit(p, lab) * 5.0 for lab in labels] for p in prompts], dtype=np.float32)
        logits = logits.reshape(len(prompts), len(labels)).astype(np.float64)
        hidden = None
        if return_hidden:
            width = int(self.hidden_width or 0)
            hidden = np.array([[_unit(p, "h", str(j)) for j in range(width)] for p in prompts], dtype=np.float32)
            hidden = hidden.reshape(len(prompts), width)
        return ScoreResult(logits=logits, hidden=hidden, tokens_in=sum(self.count_tokens(p) for p in prompts))


class ScriptedBackend(FakeBackend):
    """A stand-in LLM that answers from a script, in call order (records every prompt). When
    the script runs out it answers `default`, or fails when no default was given."""

    def __init__(self, answers: Sequence[str], default: str | None = None) -> None:
        super().__init__()
        self.answers = list(answers)
        self.default = default
        self.prompts: list[str] = []

    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        return user_message

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        seed: int = 0,
        repetition_penalty: float | None = None,
    ) -> list[Generation]:
        self.prompts.extend(prompts)
        out = []
        for _ in prompts:
            if self.answers:
                out.append(Generation(self.answers.pop(0), 10, 5))
            elif self.default is not None:
                out.append(Generation(self.default, 10, 5))
            else:
                raise AssertionError("ScriptedBackend: the script ran out of answers")
        return out


class CountingBackend(FakeBackend):
    """A deterministic toy backend that counts its calls (stands in for the transformers one):
    one token per character, answers `[len(prompt)]`, hidden states 4 wide."""

    hidden_width = 4

    def __init__(self) -> None:
        super().__init__()
        self.generated = 0
        self.scored = 0

    @property
    def hidden_size(self) -> int:
        return int(self.hidden_width)

    def tokens(self, text: str) -> list[str]:
        return list(text)

    def join(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        seed: int = 0,
        repetition_penalty: float | None = None,
    ) -> list[Generation]:
        self.generated += len(prompts)
        return [Generation(text=f"[{len(p)}]", tokens_in=len(p), tokens_out=3) for p in prompts]

    def score_prompts(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        self.scored += 1
        return super().score_prompts(prompts, labels, return_hidden)


__all__ = ["FakeBackend", "ScriptedBackend", "CountingBackend"]
