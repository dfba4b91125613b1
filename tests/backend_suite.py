"""The shared test suite of the `LLMBackend` protocol, run against every backend and test fake.

Usage (the pattern of tests/protocol_suites.py)::

    from backend_suite import BackendSuite

    class TestMyBackend(BackendSuite):
        @pytest.fixture
        def backend(self):              # required: the instance under test
            return MyBackend(...)

Class attributes to tune
- ``atol``: tolerance for "the same logits" (repeated calls, permuted prompts, with and
  without hidden states); 0 by default: the backends here are bit-deterministic.
- ``max_new_tokens``: the generation budget of the generate tests (keep it small for real models).

What is checked: the protocol (`isinstance`), `score_prompts` (shape n_prompts x n_labels,
finite, deterministic, each row follows its prompt when the prompts are permuted, hidden states
(n, hidden_size) or a clear `ModelError` refusal), `generate` (one `Generation` per prompt, in
order, integer token counts, deterministic), `count_tokens` (positive, monotone over prefixes),
`truncate_tokens` (within the budget, a trailing "..." cut marker aside), `chat_prompt` (holds
the user message) and `max_context` (a positive int).
"""

from __future__ import annotations

import numpy as np
import pytest

from reranker.errors import ModelError
from reranker.llm.base import Generation, HiddenStatesBackend, LLMBackend, LLMConfig, ScoreResult

LABELS = ["Yes", "No"]
HISTORY = "The user bought: trail running shoes, a hydration vest and a GPS sports watch.\n"
PRODUCTS = ["running socks", "an espresso machine", "a headlamp for night runs", "a romance novel"]
TEXT = "Lightweight trail running shoes with a grippy sole for muddy trails and a cushioned heel."
PERM = [2, 0, 3, 1]  # moves every position


class BackendSuite:
    """Contract of `reranker.llm.base.LLMBackend`; subclasses provide the `backend` fixture."""

    atol: float = 0.0
    max_new_tokens: int = 8

    @pytest.fixture
    def prompts(self, backend) -> list[str]:
        """Four chat prompts that share a history prefix (as a pointwise ranker sends them)."""
        return [backend.chat_prompt(f"{HISTORY}Would the user buy {p}? Answer Yes or No.") for p in PRODUCTS]

    def _scores(self, backend, prompts, return_hidden: bool = False) -> ScoreResult:
        res = backend.score_prompts(prompts, LABELS, return_hidden=return_hidden)
        assert isinstance(res, ScoreResult)
        logits = np.asarray(res.logits)
        assert logits.shape == (len(prompts), len(LABELS))
        assert np.isfinite(logits).all()
        assert isinstance(res.tokens_in, int | np.integer) and res.tokens_in >= 0
        return res

    # ------------------------------------------------------------------ protocol
    def test_is_an_llm_backend(self, backend):
        assert isinstance(backend, LLMBackend)
        assert isinstance(backend.config, LLMConfig)

    def test_max_context_is_positive(self, backend):
        assert isinstance(backend.max_context, int) and backend.max_context > 0

    def test_chat_prompt_contains_the_user_message(self, backend):
        msg = "Would the user buy running socks? Answer Yes or No."
        for system in (None, "You are a shop assistant."):
            p = backend.chat_prompt(msg, system)
            assert isinstance(p, str) and msg in p

    # ------------------------------------------------------------------ tokens
    def test_count_tokens_positive_and_monotone_over_prefixes(self, backend):
        words = TEXT.split()
        counts = [backend.count_tokens(" ".join(words[:k])) for k in range(1, len(words) + 1)]
        assert all(isinstance(c, int) and c > 0 for c in counts)
        assert counts == sorted(counts) and counts[-1] > counts[0]
        assert backend.count_tokens("") == 0

    def test_truncate_tokens_respects_the_budget(self, backend):
        n_text = backend.count_tokens(TEXT)
        for n in (1, 3, n_text // 2):
            cut = backend.truncate_tokens(TEXT, n)
            assert isinstance(cut, str) and cut != TEXT
            assert 0 < backend.count_tokens(cut.removesuffix("...")) <= n
        assert backend.truncate_tokens(TEXT, n_text) == TEXT
        assert backend.truncate_tokens(TEXT, n_text + 10) == TEXT
        assert backend.truncate_tokens(TEXT, 0) == ""

    # ------------------------------------------------------------------ score_prompts
    def test_score_prompts_shape_and_finite(self, backend, prompts):
        self._scores(backend, prompts)
        self._scores(backend, prompts[:1])
        assert np.asarray(backend.score_prompts([], LABELS).logits).shape == (0, len(LABELS))

    def test_score_prompts_deterministic(self, backend, prompts):
        a = self._scores(backend, prompts)
        b = self._scores(backend, prompts)
        np.testing.assert_allclose(a.logits, b.logits, atol=self.atol, rtol=0)

    def test_score_prompts_order_equivariant(self, backend, prompts):
        a = self._scores(backend, prompts)
        b = self._scores(backend, [prompts[i] for i in PERM])
        np.testing.assert_allclose(np.asarray(a.logits)[PERM], b.logits, atol=self.atol, rtol=0)

    def test_return_hidden_gives_one_row_per_prompt_or_is_refused(self, backend, prompts):
        claims = isinstance(backend, HiddenStatesBackend)
        try:
            res = self._scores(backend, prompts, return_hidden=True)
        except ModelError:
            assert not claims, "a HiddenStatesBackend must return hidden states"
            return
        hidden = np.asarray(res.hidden)
        assert hidden.ndim == 2 and hidden.shape[0] == len(prompts) and hidden.shape[1] > 0
        assert np.isfinite(hidden).all()
        if claims:
            assert hidden.shape[1] == backend.hidden_size
        plain = self._scores(backend, prompts)
        np.testing.assert_allclose(res.logits, plain.logits, atol=self.atol, rtol=0)
        assert plain.hidden is None

    # ------------------------------------------------------------------ generate
    def test_generate_one_generation_per_prompt(self, backend, prompts):
        gens = backend.generate(prompts[:2], max_new_tokens=self.max_new_tokens, seed=0)
        assert isinstance(gens, list) and len(gens) == 2
        for g in gens:
            assert isinstance(g, Generation) and isinstance(g.text, str)
            assert isinstance(g.tokens_in, int) and g.tokens_in > 0
            assert isinstance(g.tokens_out, int) and 0 <= g.tokens_out <= self.max_new_tokens
        assert backend.generate([], max_new_tokens=self.max_new_tokens) == []

    def test_generate_deterministic(self, backend, prompts):
        a = backend.generate(prompts[:2], max_new_tokens=self.max_new_tokens, seed=0)
        b = backend.generate(prompts[:2], max_new_tokens=self.max_new_tokens, seed=0)
        assert [(g.text, g.tokens_in, g.tokens_out) for g in a] == [(g.text, g.tokens_in, g.tokens_out) for g in b]
        if backend.config.temperature == 0:  # greedy: the seed does not matter either
            c = backend.generate(prompts[:2], max_new_tokens=self.max_new_tokens, seed=1)
            assert [g.text for g in c] == [g.text for g in a]

    def test_generate_takes_a_repetition_penalty(self, backend, prompts):
        gens = backend.generate(prompts[:1], self.max_new_tokens, seed=0, repetition_penalty=1.3)
        assert len(gens) == 1 and isinstance(gens[0], Generation)
