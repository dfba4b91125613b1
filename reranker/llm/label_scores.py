"""Reading label log-probabilities out of OpenAI-compatible completion answers.

- `top_logprobs(answer)`: the next-token top-k of a `max_tokens: 1, logprobs: k` call (the
  OpenAI legacy dict form, or chat-style lists of `{"token", "logprob"}`); works with vLLM,
  llama.cpp and OpenAI itself; a label outside the top-k is not known exactly.
- `prompt_logprob(answer, token_id)`: vLLM's `prompt_logprobs` extension: for a prompt sent as
  token ids ending in the label's token, the exact log-probability of that last token
  (`label_scores: prompt_logprobs`; one request per label, the prefix cached by the server).
"""

from __future__ import annotations

import math
from typing import Any


def top_logprobs(answer: Any) -> dict[str, float]:
    """token text -> log-probability at the first generated position; empty when the answer
    carries none."""
    try:
        lp = answer["choices"][0]["logprobs"]
    except (KeyError, IndexError, TypeError):
        return {}
    if not isinstance(lp, dict):
        return {}
    first: Any = None
    if isinstance(lp.get("top_logprobs"), list) and lp["top_logprobs"]:
        first = lp["top_logprobs"][0]
    elif isinstance(lp.get("content"), list) and lp["content"]:
        first = lp["content"][0].get("top_logprobs") if isinstance(lp["content"][0], dict) else None
    out: dict[str, float] = {}
    if isinstance(first, dict):
        out = {str(k): float(v) for k, v in first.items() if isinstance(v, int | float)}
    elif isinstance(first, list):
        for e in first:
            if isinstance(e, dict) and "token" in e and isinstance(e.get("logprob"), int | float):
                out.setdefault(str(e["token"]), float(e["logprob"]))
    return {k: v for k, v in out.items() if math.isfinite(v)}


def prompt_logprob(answer: Any, token_id: int) -> float | None:
    """The log-probability of the prompt's last token `token_id` from vLLM's
    `choices[0].prompt_logprobs` (a list with one `{token id: {"logprob", ...}}` per prompt
    position); None when the answer has no such entry."""
    try:
        entries = answer["choices"][0]["prompt_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(entries, list) or not entries or not isinstance(entries[-1], dict):
        return None
    last: dict[Any, Any] = entries[-1]
    entry = last.get(str(token_id), last.get(token_id))
    value = entry.get("logprob") if isinstance(entry, dict) else entry
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


__all__ = ["prompt_logprob", "top_logprobs"]
