"""Fusion: per-list normalisation, the weighted-sum ranker, its config, and the weight search."""

from __future__ import annotations

import numpy as np
import pytest
from protocol_suites import RankerSuite, ScorerSuite

from reranker.config import format_validation_error
from reranker.errors import ConfigError
from reranker.ranking.base import IdentityRanker, ScorerRanker
from reranker.ranking.fusion import (
    CandidateScoreScorer,
    FusionConfig,
    FusionRanker,
    RankerScorer,
    fit_weights,
    fuse,
    normalize,
    simplex_grid,
)
from reranker.types import Candidate, History


class TableScorer:
    """A fixed score per item id (unknown ids score 0): a stand-in content / LLM signal."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.calls = 0

    def score(self, history, candidates):
        self.calls += 1
        return np.array([self.table.get(c.item_id, 0.0) for c in candidates], dtype=float)


CONTENT = {"i1": 0.1, "i2": 0.9, "i3": 0.5, "i4": 0.3, "i5": 0.7}
LLM = {"i1": 5.0, "i2": -1.0, "i3": 2.0, "i4": 4.0, "i5": 0.0}


def make_fusion(**weights: float) -> FusionRanker:
    return FusionRanker(
        {"content": TableScorer(CONTENT), "cf": CandidateScoreScorer(), "llm": TableScorer(LLM)},
        weights=weights or {"content": 1.0, "cf": 1.0, "llm": 0.5},
    )


# ---------------------------------------------------------------- protocol suites
class TestCandidateScoreScorer(ScorerSuite):
    @pytest.fixture
    def scorer(self):
        return CandidateScoreScorer()


class TestRankerScorer(ScorerSuite):
    @pytest.fixture
    def scorer(self):
        return RankerScorer(ScorerRanker(TableScorer(LLM)))


def test_ranker_scorer_position_and_score():
    c = cands()
    pos = RankerScorer(IdentityRanker()).score(History(), [*c, c[1]])
    assert pos.tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 4.0]
    raw = RankerScorer(ScorerRanker(TableScorer(LLM)), use="score").score(History(), c)
    assert raw.tolist() == [LLM[x.item_id] for x in c]


def test_listwise_ranker_fused_as_a_signal():
    # a ranker that reverses stage-1 order, fused with the stage-1 score at equal weight: all tie
    # under rank normalisation, so the stable order is the input order
    class Reverse:
        def rank(self, history, candidates):
            from reranker.types import Ranking

            return Ranking.from_order([x.item_id for x in candidates][::-1])

    c = sorted(cands(), key=lambda x: -x.score)
    f = FusionRanker(
        {"cf": CandidateScoreScorer(), "llm": RankerScorer(Reverse())},
        weights={"cf": 1.0, "llm": 1.0},
        normalize="rank",
    )
    np.testing.assert_allclose(f.score(History(), c), 1.0)
    assert f.rank(History(), c).item_ids == [x.item_id for x in c]


class TestFusionAsScorer(ScorerSuite):
    @pytest.fixture
    def scorer(self):
        return make_fusion()


class TestFusionRanker(RankerSuite):
    @pytest.fixture
    def ranker(self):
        return make_fusion()


class TestFusionRankerMinmax(RankerSuite):
    @pytest.fixture
    def ranker(self):
        return FusionRanker(
            {"content": TableScorer(CONTENT), "cf": CandidateScoreScorer()},
            FusionConfig(weights={"content": 0.3, "cf": 0.7}, normalize="minmax"),
        )


# ---------------------------------------------------------------- normalize
def test_minmax_hand_checked():
    np.testing.assert_allclose(normalize([1, 2, 3], "minmax"), [0.0, 0.5, 1.0])


def test_zscore_hand_checked():
    # mean 2, population std sqrt(2/3)
    np.testing.assert_allclose(normalize([1, 2, 3], "zscore"), np.array([-1, 0, 1]) / np.sqrt(2 / 3))


def test_rank_hand_checked_with_ties():
    # ascending ranks 1, 2.5, 2.5, 4 -> (r - 1) / 3
    np.testing.assert_allclose(normalize([10, 20, 20, 30], "rank"), [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(normalize([3, 1, 2], "rank"), [1.0, 0.0, 0.5])


@pytest.mark.parametrize("method", ["zscore", "minmax", "rank"])
def test_constant_single_and_empty_lists_give_zeros(method):
    assert normalize([4.2, 4.2, 4.2], method).tolist() == [0.0, 0.0, 0.0]
    assert normalize([0.1 + 0.2, 0.3], method).tolist() == [0.0, 0.0]  # float noise is constant
    assert normalize([7.0], method).tolist() == [0.0]
    assert normalize([], method).shape == (0,)


@pytest.mark.parametrize("method", ["zscore", "minmax", "rank"])
def test_nan_safe(method):
    out = normalize([1.0, np.nan, 3.0, np.inf, 2.0], method)
    assert np.all(np.isfinite(out))
    assert out[1] == 0.0 and out[3] == 0.0
    np.testing.assert_allclose(out[[0, 2, 4]], normalize([1.0, 3.0, 2.0], method))


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown method 'softmax'"):
        normalize([1, 2], "softmax")  # type: ignore[arg-type]


# ---------------------------------------------------------------- config
def test_negative_weight_names_the_key():
    with pytest.raises(ConfigError, match=r"weights\.llm: must be >= 0"):
        FusionConfig.from_dict({"weights": {"content": 1.0, "llm": -0.5}})


def test_negative_weight_in_constructor_names_the_key():
    with pytest.raises(ConfigError, match=r"weights\.llm: must be >= 0"):
        make_fusion(content=1.0, llm=-1.0)


def test_unknown_config_key_and_bad_normalize():
    with pytest.raises(ConfigError, match="temperature: unknown key"):
        FusionConfig.from_dict({"weights": {"cf": 1.0}, "temperature": 2})
    with pytest.raises(ConfigError, match="normalize"):
        FusionConfig.from_dict({"weights": {"cf": 1.0}, "normalize": "softmax"})


def test_nan_weight_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        FusionConfig(weights={"cf": float("nan")})
    assert "weights.cf" in format_validation_error(e.value)


def test_weight_without_signal_is_a_config_error():
    f = FusionRanker({"cf": CandidateScoreScorer()}, weights={"cf": 1.0, "bert": 0.5})
    with pytest.raises(ConfigError, match="weights.bert"):
        f.rank(History(), [Candidate("a", 1.0), Candidate("b", 0.0)])


# ---------------------------------------------------------------- fusion behaviour
def cands() -> list[Candidate]:
    return [Candidate(f"i{j}", float(s), "itemcf") for j, s in zip(range(1, 6), [5, 1, 4, 2, 3], strict=True)]


def test_fused_scores_are_the_weighted_sum_of_normalised_signals():
    f = make_fusion(content=0.2, cf=0.5, llm=0.3)
    c = cands()
    content = np.array([CONTENT[x.item_id] for x in c])
    cf = np.array([x.score for x in c])
    llm = np.array([LLM[x.item_id] for x in c])
    want = 0.2 * normalize(content) + 0.5 * normalize(cf) + 0.3 * normalize(llm)
    np.testing.assert_allclose(f.score(History("u"), c), want)
    r = f.rank(History("u"), c)
    assert r.item_ids == [c[i].item_id for i in np.argsort(-want, kind="stable")]
    assert r.diagnostics["weights"] == {"content": 0.2, "cf": 0.5, "llm": 0.3}


def test_gamma_zero_equals_content_plus_cf_and_never_calls_the_llm():
    llm = TableScorer(LLM)
    three = FusionRanker(
        {"content": TableScorer(CONTENT), "cf": CandidateScoreScorer(), "llm": llm},
        weights={"content": 0.3, "cf": 0.7, "llm": 0.0},
    )
    two = FusionRanker(
        {"content": TableScorer(CONTENT), "cf": CandidateScoreScorer()},
        weights={"content": 0.3, "cf": 0.7},
    )
    c = cands()
    a, b = three.rank(History("u"), c), two.rank(History("u"), c)
    assert a.item_ids == b.item_ids
    np.testing.assert_allclose(a.scores, b.scores)
    assert llm.calls == 0
    # hand-checked with s = sqrt(2): z(content) = [-s, s, 0, -s/2, s/2], z(cf) = [s, -s, s/2, -s/2, 0]
    # fused 0.3 z(content) + 0.7 z(cf) = s * [0.4, -0.4, 0.35, -0.5, 0.15]
    assert a.item_ids == ["i1", "i3", "i5", "i2", "i4"]
    np.testing.assert_allclose(a.scores, np.sqrt(2) * np.array([0.4, 0.35, 0.15, -0.4, -0.5]))


def test_single_signal_weight_reproduces_that_signal_order():
    c = cands()
    r = make_fusion(cf=1.0).rank(History(), c)
    assert r.item_ids == ["i1", "i3", "i5", "i4", "i2"]  # stage-1 score order 5, 4, 3, 2, 1


def test_precomputed_signal_arrays_replace_scorers():
    c = cands()
    f = FusionRanker({"cf": CandidateScoreScorer()}, weights={"cf": 0.0, "llm": 1.0})
    r = f.rank(History(), c, precomputed={"llm": [0.0, 0.0, 0.0, 9.0, 1.0]})
    assert r.item_ids[:2] == ["i4", "i5"]
    with pytest.raises(ValueError, match="has 2 scores for 5 candidates"):
        f.rank(History(), c, precomputed={"llm": [1.0, 2.0]})


def test_precomputed_aligned_before_deduplication():
    c = cands()
    dup = [*c, c[0]]
    f = FusionRanker(weights={"llm": 1.0})
    r = f.rank(History(), dup, precomputed={"llm": [0, 1, 2, 3, 4, 99]})
    assert r.item_ids == ["i5", "i4", "i3", "i2", "i1"]  # the duplicate's 99 is ignored


def test_compute_signals_all_for_validation_collection():
    f = make_fusion(content=1.0, cf=0.0, llm=0.0)
    sig = f.compute_signals(History(), cands(), all_signals=True)
    assert set(sig) == {"content", "cf", "llm"}
    assert set(f.compute_signals(History(), cands())) == {"content"}


def test_fuse_function_matches_hand_computation():
    out = fuse({"a": [1, 2, 3], "b": [3, 3, 3]}, {"a": 2.0, "b": 5.0}, "minmax")
    np.testing.assert_allclose(out, [0.0, 1.0, 2.0])


# ---------------------------------------------------------------- grid search
def test_simplex_grid():
    g = simplex_grid(2, 0.5)
    np.testing.assert_allclose(g, [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert simplex_grid(3, 0.1).shape == (66, 3)
    np.testing.assert_allclose(simplex_grid(3, 0.1).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="divide 1"):
        simplex_grid(2, 0.3)


def _toy_lists(n_lists=40, n_cands=8, seed=0, a_first=True):
    rng = np.random.default_rng(seed)
    lists, targets = [], []
    for _ in range(n_lists):
        t = int(rng.integers(n_cands))
        label = np.zeros(n_cands)
        label[t] = 1.0
        noise = rng.normal(size=n_cands)
        lists.append({"A": label, "B": noise} if a_first else {"B": noise, "A": label})
        targets.append(t)
    return lists, targets


@pytest.mark.parametrize("a_first", [True, False])
def test_grid_search_finds_the_label_signal(a_first):
    lists, targets = _toy_lists(a_first=a_first)
    res = fit_weights(lists, targets, grid_step=0.1, metric="ndcg@10")
    assert res.weights == {"A": 1.0, "B": 0.0} or res.weights == {"B": 0.0, "A": 1.0}
    assert res.score == pytest.approx(1.0)
    assert len(res.table) == 11
    df = res.to_dataframe()
    assert list(df.columns) == [*lists[0].keys(), "ndcg@10"]
    # pure noise B is worse than pure label A
    only_b = df[df["B"] == 1.0]["ndcg@10"].item()
    assert only_b < 1.0


def test_grid_search_hand_checked_two_lists():
    # list 0: target 0; A ranks it 1st, B ranks it last. list 1: target 2; A last, B first.
    lists = [
        {"A": [3.0, 2.0, 1.0], "B": [1.0, 2.0, 3.0]},
        {"A": [3.0, 2.0, 1.0], "B": [1.0, 2.0, 3.0]},
    ]
    res = fit_weights(lists, [0, 0], grid_step=0.5, metric="mrr@3")
    assert res.weights == {"A": 1.0, "B": 0.0}
    assert res.score == 1.0
    # at (0.5, 0.5) the signals cancel: all tie, stable order keeps index 0 first -> mrr 1 too,
    # and the tie goes to the sparser point (A alone)
    table = {(row["A"], row["B"]): row["mrr@3"] for row in res.table}
    assert table == {(1.0, 0.0): 1.0, (0.5, 0.5): 1.0, (0.0, 1.0): pytest.approx(1 / 3)}


def test_grid_search_multiple_relevant_and_recall():
    lists = [{"A": [0.0, 1.0, 2.0, 3.0], "B": [3.0, 2.0, 1.0, 0.0]}]
    res = fit_weights(lists, [[0, 1]], grid_step=1.0, metric="recall@2")
    assert res.weights == {"A": 0.0, "B": 1.0}
    assert res.score == 1.0
    res = fit_weights(lists, [[0, 1]], grid_step=1.0, metric="ndcg@2")
    assert res.weights == {"A": 0.0, "B": 1.0}


def test_grid_search_lists_of_different_lengths_and_empty_targets():
    lists = [
        {"A": [1.0, 0.0], "B": [0.0, 1.0]},
        {"A": [0.0, 1.0, 0.5], "B": [1.0, 0.0, 0.5]},
        {"A": [0.2, 0.1], "B": [0.1, 0.2]},
    ]
    res = fit_weights(lists, [0, 1, []], grid_step=1.0, metric="hr@1")
    assert res.weights == {"A": 1.0, "B": 0.0}
    assert res.score == pytest.approx(2 / 3)  # the third list has no relevant item


def test_grid_search_errors():
    with pytest.raises(ValueError, match="metric"):
        fit_weights([{"A": [1.0]}], [0], metric="auc")
    with pytest.raises(ValueError, match="out of range"):
        fit_weights([{"A": [1.0, 2.0]}], [5])
    with pytest.raises(ValueError, match="no signal 'B'"):
        fit_weights([{"A": [1.0], "B": [1.0]}, {"A": [1.0]}], [0, 0])


def test_fitted_weights_plug_into_the_ranker():
    lists, targets = _toy_lists()
    res = fit_weights(lists, targets)
    f = FusionRanker(weights=res.weights)
    c = [Candidate(f"x{j}") for j in range(8)]
    r = f.rank(History(), c, precomputed=lists[0])
    assert r.item_ids[0] == f"x{targets[0]}"


# ---------------------------------------------------------------- the request's catalog
class CatalogScorer:
    """Scores a candidate by the `score` attribute of its item in the catalog of the call."""

    def __init__(self, catalog: dict) -> None:
        self.catalog = catalog

    def score(self, history, candidates, catalog=None):
        cat = self.catalog if catalog is None else catalog
        return np.array([float(cat[c.item_id]["score"]) for c in candidates])


def test_fusion_passes_the_request_catalog_to_its_signals_and_stays_unchanged():
    own = {"a": {"score": 1.0}, "b": {"score": 2.0}}
    other = {"a": {"score": 5.0}, "b": {"score": 0.0}}
    inner = ScorerRanker(CatalogScorer(own))
    fr = FusionRanker({"content": CatalogScorer(own), "llm": RankerScorer(inner, use="score")},
                      weights={"content": 1.0, "llm": 1.0})
    cands = [Candidate("a"), Candidate("b")]
    assert fr.rank(History(), cands).item_ids == ["b", "a"]
    assert fr.rank(History(), cands, catalog=other).item_ids == ["a", "b"]
    np.testing.assert_allclose(fr.score(History(), cands, catalog=other), [2.0, -2.0])  # z-scores summed
    np.testing.assert_allclose(fr.score(History(), cands), [-2.0, 2.0])
    assert fr.rank(History(), cands).item_ids == ["b", "a"]
    # precomputed stays the third positional argument
    assert fr.rank(History(), cands, {"llm": [0.0, 9.0]}, catalog=other).diagnostics["signals"]["llm"] == [0.0, 9.0]


def test_fusion_without_a_catalog_calls_two_argument_scorers_as_before():
    assert make_fusion().rank(History(), [Candidate("i1", 1.0), Candidate("i2", 0.5)]).item_ids


def test_old_module_paths_still_export_the_split_names():
    from reranker.ranking import fusion, fusion_weights

    for name in ("normalize", "fuse", "fit_weights", "simplex_grid", "WeightSearch", "NORMALIZE_METHODS"):
        assert getattr(fusion, name) is getattr(fusion_weights, name)
