"""MMR diversity re-ranking: hand-checked selections, similarity sources, the Ranker wrapper."""

from __future__ import annotations

import numpy as np
import pytest
from protocol_suites import RankerSuite

from reranker.errors import ConfigError
from reranker.ranking.base import ScorerRanker
from reranker.ranking.diversity import (
    CategorySimilarity,
    EmbeddingSimilarity,
    MMRConfig,
    MMRRanker,
    cosine_matrix,
    intra_list_similarity,
    mmr,
    mmr_order,
    mmr_rerank,
)
from reranker.ranking.fusion import CandidateScoreScorer
from reranker.types import Candidate, History, Item, Ranking

IDS = ["a", "b", "c", "d"]
REL = [1.0, 0.9, 0.8, 0.1]
CATALOG = {
    "a": Item("a", "A", category="X"),
    "b": Item("b", "B", category="X"),
    "c": Item("c", "C", category="Y"),
    "d": Item("d", "D", category="Z"),
}
SIM = CategorySimilarity(CATALOG)(IDS)


def test_category_similarity_matrix():
    np.testing.assert_array_equal(
        SIM, [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    )


def test_lam_one_is_relevance_order():
    assert mmr(IDS, REL, SIM, lam=1.0) == IDS


def test_lam_zero_is_maximally_diverse():
    # a first (ties at 0 keep input order), then c and d (similarity 0 to a), b (same category) last
    assert mmr(IDS, REL, SIM, lam=0.0) == ["a", "c", "d", "b"]


def test_intermediate_lambda_hand_checked():
    # rel -> [1, 8/9, 7/9, 0]; after a: b = .7*8/9 - .3*1 = .322, c = .7*7/9 = .544, d = 0 -> c;
    # then b (.322) beats d (0)
    assert mmr(IDS, REL, SIM, lam=0.7) == ["a", "c", "b", "d"]
    # lam = .5: b = .5*8/9 - .5 < 0 = d, so d comes before b
    assert mmr(IDS, REL, SIM, lam=0.5) == ["a", "c", "d", "b"]


def test_k_limits_the_selection():
    assert mmr(IDS, REL, SIM, lam=0.0, k=2) == ["a", "c"]
    assert mmr_order(REL, SIM, 0.5, k=0).tolist() == []
    assert mmr_order(REL, SIM, 0.5, k=99).shape == (4,)


def test_relevance_is_normalised_first():
    # scaling and shifting relevance does not change the choice
    assert mmr(IDS, np.array(REL) * 100 - 7, SIM, lam=0.7) == mmr(IDS, REL, SIM, lam=0.7)


def test_bad_inputs():
    with pytest.raises(ValueError, match="lam"):
        mmr(IDS, REL, SIM, lam=1.5)
    with pytest.raises(ValueError, match="shape"):
        mmr(IDS, REL, SIM[:3, :3], lam=0.5)


def test_lower_lambda_means_more_diverse_top():
    top1 = mmr_order(REL, SIM, 1.0, k=2)
    top0 = mmr_order(REL, SIM, 0.0, k=2)
    assert intra_list_similarity(SIM[np.ix_(top1, top1)]) == 1.0
    assert intra_list_similarity(SIM[np.ix_(top0, top0)]) == 0.0


def test_multi_label_categories_jaccard():
    cat = {
        "m1": Item("m1", "M1", category="Action Comedy"),
        "m2": Item("m2", "M2", category="Comedy Drama"),
        "m3": Item("m3", "M3"),
    }
    sim = CategorySimilarity(cat, sep=" ")(["m1", "m2", "m3"])
    np.testing.assert_allclose(sim, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]])


class FixedEncoder:
    """Stand-in encoder with hand-set vectors (the real one is tested in test_bert.py)."""

    vectors = {"a": [1.0, 0.0], "b": [1.0, 1.0], "c": [0.0, 2.0]}

    def encode_items(self, ids):
        return np.array([self.vectors[i] for i in ids])


def test_embedding_similarity_is_cosine():
    sim = EmbeddingSimilarity(FixedEncoder())(["a", "b", "c"])
    h = np.sqrt(0.5)
    np.testing.assert_allclose(sim, [[1, h, 0], [h, 1, h], [0, h, 1]])
    np.testing.assert_allclose(cosine_matrix(np.zeros((2, 3))), np.zeros((2, 2)))


# ---------------------------------------------------------------- rankings
def test_mmr_rerank_lam_one_returns_input_order_exactly():
    r = Ranking.from_scores(IDS, REL)
    out = mmr_rerank(r, CategorySimilarity(CATALOG), lam=1.0)
    assert out.item_ids == r.item_ids
    # also when the scores are not sorted (e.g. an LLM listwise order): positions are used
    odd = Ranking.from_order(["d", "a", "c", "b"])
    odd = Ranking(tuple(type(x)(x.item_id, s, x.rank) for x, s in zip(odd, [0.0, 5.0, 1.0, 9.0], strict=True)))
    assert mmr_rerank(odd, CategorySimilarity(CATALOG), lam=1.0).item_ids == ["d", "a", "c", "b"]


def test_mmr_rerank_keeps_every_item_and_records_diagnostics():
    r = Ranking.from_scores(IDS, REL, {"ranker": "x"})
    out = mmr_rerank(r, SIM, lam=0.0, k=2)
    assert out.item_ids == ["a", "c", "b", "d"]  # MMR picks 2, the rest keep their order
    assert out.diagnostics["ranker"] == "x"
    assert out.diagnostics["mmr"]["input_order"] == IDS
    assert out.diagnostics["mmr"]["intra_list_similarity_after"] == 0.0
    assert out.diagnostics["mmr"]["intra_list_similarity_before"] == 1.0


def test_mmr_ranker_on_candidates():
    cands = [Candidate(i, s) for i, s in zip(IDS, REL, strict=True)]
    ranker = MMRRanker(CategorySimilarity(CATALOG), MMRConfig(lam=0.0))
    assert ranker.rank(History(), cands).item_ids == ["a", "c", "d", "b"]
    ranker = MMRRanker(CategorySimilarity(CATALOG), lam=1.0)
    assert ranker.rank(History(), cands).item_ids == IDS


def test_mmr_config_validation():
    with pytest.raises(ConfigError, match="lam: must be <= 1"):
        MMRConfig.from_dict({"lam": 2})
    with pytest.raises(ConfigError, match="k: must be >= 1"):
        MMRConfig.from_dict({"k": 0})


SUITE_CATALOG = {f"i{j}": Item(f"i{j}", f"Item {j}", category="AB"[j % 2]) for j in range(1, 6)}


class TestMMRRanker(RankerSuite):
    @pytest.fixture
    def ranker(self):
        return MMRRanker(
            CategorySimilarity(SUITE_CATALOG), lam=0.3, base=ScorerRanker(CandidateScoreScorer())
        )


class TestMMRRankerTopK(RankerSuite):
    @pytest.fixture
    def ranker(self):
        return MMRRanker(CategorySimilarity(SUITE_CATALOG), MMRConfig(lam=0.0, k=2))


def test_category_similarity_from_the_request_catalog():
    other = {i: Item(i, i.upper(), category="Same") for i in IDS}
    src = CategorySimilarity(CATALOG)
    np.testing.assert_allclose(src(IDS, catalog=other), np.ones((4, 4)))
    np.testing.assert_allclose(src(IDS), SIM)  # its own catalog is untouched
    cands = [Candidate(i, s) for i, s in zip(IDS, REL, strict=True)]
    ranker = MMRRanker(src, MMRConfig(lam=0.0))
    # all alike: MMR has nothing to trade, the relevance order stays
    assert ranker.rank(History(), cands, catalog=other).item_ids == IDS
    assert ranker.rank(History(), cands).item_ids == ["a", "c", "d", "b"]
    # a plain one-argument similarity callable still works when no catalog is given
    assert MMRRanker(lambda ids: SIM, MMRConfig(lam=0.0)).rank(History(), cands).item_ids == ["a", "c", "d", "b"]
