"""IdentityRanker and ScorerRanker against the shared protocol suites, plus their own behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from protocol_suites import RankerSuite, ScorerSuite

from reranker.ranking.base import (
    BatchRanker,
    IdentityRanker,
    Ranker,
    Scorer,
    ScorerRanker,
    catalog_kwargs,
)
from reranker.types import Candidate, History, Item


class LengthScorer:
    """A toy scorer for exercising ScorerRanker: the score is the length of the item id."""

    def score(self, history, candidates, catalog=None):
        return np.array([float(len(c.item_id)) for c in candidates])


class TitleScorer:
    """Scores by the length of each candidate's title in the catalog of the call (or its own)."""

    def __init__(self, catalog):
        self.catalog = catalog

    def score(self, history, candidates, catalog=None):
        cat = self.catalog if catalog is None else catalog
        return np.array([float(len(cat[c.item_id].title)) for c in candidates])


class TwoArgScorer:
    """A scorer written against the old two-argument protocol (e.g. a retriever's `score`)."""

    def score(self, history, candidates):
        return np.arange(len(candidates), dtype=np.float64)


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


def test_scorer_ranker_passes_the_request_catalog_on():
    own = {"a": Item("a", "x"), "b": Item("b", "yyy")}
    other = {"a": Item("a", "long title"), "b": Item("b", "z")}
    ranker = ScorerRanker(TitleScorer(own))
    cands = [Candidate("a"), Candidate("b")]
    assert ranker.rank(History(), cands).item_ids == ["b", "a"]
    assert ranker.rank(History(), cands, catalog=other).item_ids == ["a", "b"]
    assert ranker.rank(History(), cands).item_ids == ["b", "a"]  # nothing stuck to the ranker


def test_no_catalog_is_not_forwarded_to_two_argument_scorers():
    assert catalog_kwargs(None) == {} and catalog_kwargs({"a": 1}) == {"catalog": {"a": 1}}
    r = ScorerRanker(TwoArgScorer()).rank(History(), [Candidate("a"), Candidate("b")])
    assert r.item_ids == ["b", "a"]


def test_protocols_are_runtime_checkable():
    class Many:
        def rank(self, history, candidates, catalog=None): ...

        def rank_many(self, requests, catalog=None): ...

    assert isinstance(IdentityRanker(), Ranker) and not isinstance(IdentityRanker(), BatchRanker)
    assert isinstance(Many(), BatchRanker) and isinstance(Many(), Ranker)
    assert isinstance(LengthScorer(), Scorer) and not isinstance(IdentityRanker(), Scorer)
