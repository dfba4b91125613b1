"""Shared protocol test suites: one mixin per stage-2 protocol, run against every implementation.

Usage (the pattern of `implicit`'s shared test mixin)::

    from protocol_suites import RankerSuite, ScorerSuite

    class TestMyScorer(ScorerSuite):
        @pytest.fixture
        def scorer(self):                 # required: the instance under test
            return MyScorer(...)

        @pytest.fixture
        def candidates(self):             # optional: override when ids must be in your catalog
            return [Candidate("a", 0.9), Candidate("b", 0.5), Candidate("c", 0.1)]

        @pytest.fixture
        def history(self):                # optional: override likewise
            return History("u1", ["x", "y"])

    class TestMyRanker(RankerSuite):
        @pytest.fixture
        def ranker(self):
            return MyRanker(...)

Fixtures
- ``scorer`` / ``ranker``: the instance (required, no default).
- ``candidates``: >= 3 distinct candidates whose ids your implementation knows. The default uses
  ids "i1".."i5" with decreasing stage-1 scores.
- ``history``: a non-empty history of ids your implementation knows. Default: ("h1", "h2", "h3").
  An empty logged-out ``History()`` is always tested as well.
- ``catalog``: optional; the catalog your instance was built with. When given, passing it per
  call (``catalog=...``) must give exactly what the built-in default gives. Default: None.

Class attributes to tune
- ``atol``: tolerance for "same score" (default 1e-6; raise it for batched LLM forward passes).
- ``permutation_invariant_scores`` (ScorerSuite, default True): shuffling candidates permutes the
  scores. Set False only for a scorer that legitimately looks at the whole list.
- ``monotone_scores`` (RankerSuite, default True): Ranking scores never increase with rank.

Each test calls the implementation a few times; keep the candidate lists small for slow models.
"""

from __future__ import annotations

import numpy as np
import pytest

from reranker.ranking.base import BatchRanker, Ranker, Scorer
from reranker.types import Candidate, History, Ranking


def _shuffle(n: int, seed: int = 12345) -> np.ndarray:
    """A fixed permutation that moves every position when n > 1 (so the test is meaningful)."""
    if n < 2:
        return np.arange(n)
    perm = np.random.default_rng(seed).permutation(n)
    if np.any(perm == np.arange(n)):
        perm = np.roll(np.arange(n), 1)  # a cyclic shift moves everything
    return perm


class _Fixtures:
    atol: float = 1e-6

    @pytest.fixture
    def candidates(self) -> list[Candidate]:
        return [Candidate(f"i{j}", float(6 - j), "test") for j in range(1, 6)]

    @pytest.fixture
    def history(self) -> History:
        return History("u1", ("h1", "h2", "h3"))

    @pytest.fixture
    def catalog(self):
        return None


class ScorerSuite(_Fixtures):
    """Contract of `Scorer.score(history, candidates, catalog=None) -> np.ndarray`."""

    permutation_invariant_scores: bool = True

    def _score(self, scorer, history, candidates) -> np.ndarray:
        out = scorer.score(history, candidates)
        assert isinstance(out, np.ndarray), f"score() must return np.ndarray, got {type(out)}"
        return out

    def test_is_a_scorer(self, scorer):
        assert isinstance(scorer, Scorer)

    def test_one_finite_float_per_candidate(self, scorer, history, candidates):
        s = self._score(scorer, history, candidates)
        assert s.shape == (len(candidates),)
        assert np.issubdtype(s.dtype, np.floating)
        assert np.all(np.isfinite(s))

    def test_deterministic(self, scorer, history, candidates):
        a = self._score(scorer, history, candidates)
        b = self._score(scorer, history, candidates)
        np.testing.assert_allclose(a, b, rtol=0, atol=self.atol)

    def test_order_equivariance(self, scorer, history, candidates):
        if not self.permutation_invariant_scores:
            pytest.skip("this scorer looks at the whole list")
        perm = _shuffle(len(candidates))
        base = self._score(scorer, history, candidates)
        shuffled = self._score(scorer, history, [candidates[i] for i in perm])
        np.testing.assert_allclose(shuffled, base[perm], rtol=0, atol=self.atol)

    def test_empty_candidates(self, scorer, history):
        s = self._score(scorer, history, [])
        assert s.shape == (0,)

    def test_single_candidate(self, scorer, history, candidates):
        s = self._score(scorer, history, candidates[:1])
        assert s.shape == (1,) and np.isfinite(s[0])

    def test_empty_history(self, scorer, candidates):
        s = self._score(scorer, History(), candidates)
        assert s.shape == (len(candidates),)
        assert np.all(np.isfinite(s))

    def test_duplicate_candidates_scored_alike(self, scorer, history, candidates):
        dup = [*candidates, candidates[0]]
        s = self._score(scorer, history, dup)
        assert s.shape == (len(dup),)
        assert abs(s[-1] - s[0]) <= self.atol

    def test_catalog_keyword(self, scorer, history, candidates, catalog):
        """`catalog=None` is the default; the build-time catalog passed per call changes nothing."""
        base = self._score(scorer, history, candidates)
        np.testing.assert_allclose(scorer.score(history, candidates, catalog=None), base, rtol=0, atol=self.atol)
        if catalog is not None:
            got = scorer.score(history, candidates, catalog=catalog)
            np.testing.assert_allclose(got, base, rtol=0, atol=self.atol)


class RankerSuite(_Fixtures):
    """Contract of `Ranker.rank(history, candidates, catalog=None) -> Ranking`: every candidate
    exactly once. A ranker with `rank_many` must be a `BatchRanker` giving what `rank` gives."""

    monotone_scores: bool = True

    def _rank(self, ranker, history, candidates) -> Ranking:
        out = ranker.rank(history, candidates)
        assert isinstance(out, Ranking), f"rank() must return a Ranking, got {type(out)}"
        return out

    @staticmethod
    def assert_complete(ranking: Ranking, candidates) -> None:
        """Every distinct candidate id exactly once, nothing else, ranks 1..n."""
        want = list(dict.fromkeys(c.item_id for c in candidates))
        got = ranking.item_ids
        assert len(got) == len(set(got)), f"duplicates in ranking: {got}"
        assert sorted(got) == sorted(want), f"ranking {got} is not a permutation of {want}"
        assert [r.rank for r in ranking.items] == list(range(1, len(want) + 1))

    def test_is_a_ranker(self, ranker):
        assert isinstance(ranker, Ranker)

    def test_permutation_of_candidates(self, ranker, history, candidates):
        r = self._rank(ranker, history, candidates)
        self.assert_complete(r, candidates)

    def test_scores_finite_and_ordered(self, ranker, history, candidates):
        r = self._rank(ranker, history, candidates)
        s = np.asarray(r.scores, dtype=np.float64)
        assert np.all(np.isfinite(s))
        if self.monotone_scores:
            assert np.all(np.diff(s) <= self.atol), f"scores increase along the ranking: {s}"

    def test_deterministic(self, ranker, history, candidates):
        a = self._rank(ranker, history, candidates)
        b = self._rank(ranker, history, candidates)
        assert a.item_ids == b.item_ids
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=self.atol)

    def test_shuffled_input_same_set(self, ranker, history, candidates):
        perm = _shuffle(len(candidates))
        r = self._rank(ranker, history, [candidates[i] for i in perm])
        self.assert_complete(r, candidates)

    def test_empty_candidates(self, ranker, history):
        r = self._rank(ranker, history, [])
        assert len(r) == 0

    def test_single_candidate(self, ranker, history, candidates):
        r = self._rank(ranker, history, candidates[:1])
        assert r.item_ids == [candidates[0].item_id]
        assert r[0].rank == 1

    def test_empty_history(self, ranker, candidates):
        r = self._rank(ranker, History(), candidates)
        self.assert_complete(r, candidates)

    def test_duplicates_in_input_appear_once(self, ranker, history, candidates):
        dup = [candidates[0], *candidates, candidates[-1], candidates[0]]
        r = self._rank(ranker, history, dup)
        self.assert_complete(r, candidates)

    def test_catalog_keyword(self, ranker, history, candidates, catalog):
        """`catalog=None` is the default; the build-time catalog passed per call changes nothing."""
        base = self._rank(ranker, history, candidates)
        for cat in [None] + ([catalog] if catalog is not None else []):
            r = ranker.rank(history, candidates, catalog=cat)
            assert r.item_ids == base.item_ids
            np.testing.assert_allclose(r.scores, base.scores, rtol=0, atol=self.atol)

    def test_rank_many_matches_rank(self, ranker, history, candidates, catalog):
        if not hasattr(ranker, "rank_many"):
            pytest.skip("no rank_many")
        assert isinstance(ranker, BatchRanker)
        requests = [(history, candidates), (History(), candidates[::-1]), (history, [])]
        many = ranker.rank_many(requests, catalog=catalog)
        assert len(many) == len(requests)
        for got, (h, c) in zip(many, requests, strict=True):
            alone = ranker.rank(h, c, catalog=catalog)
            assert got.item_ids == alone.item_ids
            np.testing.assert_allclose(got.scores, alone.scores, rtol=0, atol=self.atol)
