"""Packed-suffix scoring (reranker.llm.packed): layout arithmetic, and on the real SmolLM2 the
packed path equals the naive one-prompt-per-candidate path and the KV-cache path (fp32)."""

from __future__ import annotations

import numpy as np
import pytest

from reranker.llm.base import LLMConfig
from reranker.llm.packed import layout

FP32 = {"model": "smollm2-135m", "dtype": "fp32", "batch_size": 4, "threads": 1}


def test_layout_positions_grid_and_ends():
    pos, pad, unpad, m, ends = layout(5, [2, 3, 1])
    assert pos.tolist() == [[5, 6, 5, 6, 7, 5]]  # positions restart after the prefix
    assert m == 3
    assert ends.tolist() == [1, 4, 5]
    # unpad: slot of each packed token in the (3 suffixes x 3) grid; pad: the inverse map
    assert unpad.tolist() == [0, 1, 3, 4, 5, 6]
    assert pad[unpad].tolist() == list(range(6))


def _prompts(b, n: int, long: bool = False):
    head = "Items the user liked:\n" + "\n".join(f"- Movie {i}" for i in range(7)) + "\n"
    tail = " a long title with many words" * (3 if long else 0)
    return [b.chat_prompt(head + f"Will the user like Film {c}{tail}{'!' * c}? Yes or No.") for c in range(n)]


@pytest.mark.parametrize("pack_tokens", [1024, 40])
def test_packed_equals_naive_and_cache_paths_fp32(monkeypatch, pack_tokens):
    from reranker.llm import hf, hf_scoring

    monkeypatch.setattr(hf_scoring, "_PACK_TOKENS", pack_tokens)  # 40: several packed chunks
    packed = hf.load_backend(LLMConfig(**FP32))
    cache = hf.load_backend(LLMConfig(**FP32, scoring="cache"))
    assert packed._packed and not cache._packed
    prompts = _prompts(packed, 9, long=True)
    a = packed.score_prompts(prompts, ["Yes", "No"], return_hidden=True)
    b = cache.score_prompts(prompts, ["Yes", "No"], return_hidden=True)
    c = packed.score_full(prompts, ["Yes", "No"], return_hidden=True)
    for other in (b, c):
        np.testing.assert_allclose(a.logits, other.logits, atol=1e-3, rtol=0)
        np.testing.assert_allclose(a.hidden, other.hidden, atol=1e-3, rtol=0)
    assert a.tokens_in == b.tokens_in < c.tokens_in


def test_packed_backend_still_generates_like_stock_attention():
    """Without the packed keyword the registered attention delegates to SDPA: generation of
    the packed-scoring backend equals that of the KV-cache-scoring one."""
    from reranker.llm.hf import load_backend

    packed = load_backend(LLMConfig(**FP32))
    cache = load_backend(LLMConfig(**FP32, scoring="cache"))
    prompts = [packed.chat_prompt("Name a fruit."), packed.chat_prompt("Count: 1, 2,")]
    assert [g.text for g in packed.generate(prompts, max_new_tokens=6)] == [
        g.text for g in cache.generate(prompts, max_new_tokens=6)
    ]
