"""IdentityRanker and ScorerRanker against the shared protocol suites, plus their own behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from protocol_suites import RankerSuite, ScorerSuite

from reranker.ranking.base import IdentityRanker, ScorerRanker
from reranker.types import Candidate, History


class LengthScorer:
    """A toy scorer for exercising ScorerRanker: the score is the length of the item id."""

    def score(self, history, candidates):
        return np.array([float(len(c.item_id)) for c in candidates])


class TestIdentityRanker(RankerSuite):
    @pytest.fixture
    def ranker(self):
        return IdentityRanker()


class TestScorerRanker(RankerSuite):
    @pytest.fixture
    def ranker(self):
        return ScorerRanker(LengthScorer())


class TestLengthScorer(ScorerSuite):
    """The toy scorer itself satisfies the scorer suite (keeps the suite honest)."""

    @pytest.fixture
    def scorer(self):
        return LengthScorer()


def test_identity_keeps_stage1_order_and_drops_duplicates():
    cands = [Candidate("b"), Candidate("a"), Candidate("b"), Candidate("c")]
    r = IdentityRanker().rank(History(), cands)
    assert r.item_ids == ["b", "a", "c"]
    assert r.scores == [3.0, 2.0, 1.0]


def test_scorer_ranker_sorts_by_score_ties_in_stage1_order():
    cands = [Candidate("xx"), Candidate("a"), Candidate("yyy"), Candidate("zz")]
    r = ScorerRanker(LengthScorer()).rank(History(), cands)
    assert r.item_ids == ["yyy", "xx", "zz", "a"]
    assert r.scores == [3.0, 2.0, 2.0, 1.0]
    assert r.diagnostics["ranker"] == "LengthScorer"
