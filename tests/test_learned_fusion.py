"""Learned fusion head: learns the informative feature, uses hidden states, guard, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reranker.ranking.learned import FeatureList, LearnedFusion, LearnedFusionConfig


def toy_lists(n_lists: int = 60, n: int = 10, seed: int = 0, hidden_dim: int = 0) -> list[FeatureList]:
    """Feature 0 is the label; feature 1 is pure noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_lists):
        y = np.zeros(n)
        y[rng.integers(n)] = 1
        trad = np.column_stack([y, rng.normal(size=n)])
        hidden = rng.normal(size=(n, hidden_dim)) if hidden_dim else None
        out.append(FeatureList(trad, y, hidden))
    return out


@pytest.mark.parametrize("kind", ["logistic", "pairwise"])
def test_head_ranks_by_the_label_feature(kind: str):
    head = LearnedFusion(LearnedFusionConfig(kind=kind, use_llm_hidden=False), ["label", "noise"])
    head.fit(toy_lists())
    for fl in toy_lists(seed=1, n_lists=20):
        s = head.score(fl)
        assert np.argmax(s) == np.argmax(fl.labels)  # the labelled item is ranked first
    w = head.weights()
    assert abs(w["label"]) > 5 * abs(w["noise"])


def test_head_learns_from_hidden_state():
    # the signal lives only in the hidden state (a direction in 32-d), traditional features are noise
    rng = np.random.default_rng(3)
    direction = rng.normal(size=32)
    lists = []
    for _ in range(80):
        y = np.zeros(8)
        y[rng.integers(8)] = 1
        H = rng.normal(size=(8, 32)) + 3 * np.outer(y, direction) / np.linalg.norm(direction)
        lists.append(FeatureList(rng.normal(size=(8, 2)), y, H))
    head = LearnedFusion(LearnedFusionConfig(pca_dim=4), ["a", "b"]).fit(lists)
    assert head.uses_hidden and head.fallback_feature is None
    hits = [np.argmax(head.score(fl)) == np.argmax(fl.labels) for fl in lists[:40]]
    assert np.mean(hits) > 0.8


def test_guard_falls_back_when_a_single_feature_beats_the_head():
    # Feature A ranks perfectly within each list but carries a huge per-list offset, so a
    # pointwise logistic head cannot use it globally and leans on the weak feature B instead.
    rng = np.random.default_rng(5)
    lists = []
    for _ in range(100):
        y = np.zeros(10)
        y[rng.integers(10)] = 1
        a = rng.normal(0, 100) + y + rng.uniform(0, 0.5, 10) * (1 - y)
        b = 0.5 * y + rng.normal(size=10)
        lists.append(FeatureList(np.column_stack([a, b]), y))
    cfg = LearnedFusionConfig(use_llm_hidden=False, list_norm=False)  # global features only
    head = LearnedFusion(cfg, ["A", "B"]).fit(lists)
    rep = head.fit_report
    assert rep["guard_k"] == 10
    assert rep["holdout_ndcg@10_single"]["A"] == pytest.approx(1.0)
    assert rep["holdout_ndcg@10_head"] < 1.0
    assert rep["fallback_feature"] == "A"
    assert set(rep["coef"]) == {"A", "B"} and rep["coef"]["B"] > 0  # the head leaned on B
    np.testing.assert_array_equal(head.score(lists[0]), lists[0].trad[:, 0])


def test_save_load_identical(tmp_path: Path):
    lists = toy_lists(hidden_dim=12)
    head = LearnedFusion(LearnedFusionConfig(pca_dim=3, kind="pairwise"), ["label", "noise"]).fit(lists)
    head.save(tmp_path / "h")
    again = LearnedFusion.load(tmp_path / "h")
    for fl in lists[:5]:
        np.testing.assert_array_equal(head.score(fl), again.score(fl))
    assert again.fit_report == head.fit_report


def test_errors(tmp_path: Path):
    with pytest.raises(RuntimeError, match="not fitted"):
        LearnedFusion().score(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="both positive and negative"):
        LearnedFusion(LearnedFusionConfig(holdout=0.0, use_llm_hidden=False)).fit(
            [FeatureList(np.ones((3, 2)), np.zeros(3))]
        )
    from reranker.errors import ConfigError

    with pytest.raises(ConfigError, match="no learned fusion head"):
        LearnedFusion.load(tmp_path)


def test_old_module_path_reexports_the_head():
    from reranker.ranking import learned, learned_head

    assert learned.LearnedFusion is learned_head.LearnedFusion
    assert learned.FeatureList is learned_head.FeatureList


def test_ranker_passes_the_request_catalog_to_the_feature_scorers():
    from reranker.ranking.features import FeatureBuilder
    from reranker.ranking.learned import LearnedFusionRanker
    from reranker.types import Candidate, History

    class TitleLength:
        def __init__(self, catalog):
            self.catalog = catalog

        def score(self, history, candidates, catalog=None):
            cat = self.catalog if catalog is None else catalog
            return np.array([float(len(cat[c.item_id])) for c in candidates])

    head = LearnedFusion(LearnedFusionConfig(use_llm_hidden=False, holdout=0.0), ["title"])
    head.fit([FeatureList(fl.trad[:, :1], fl.labels) for fl in toy_lists()])
    own, other = {"a": "x", "b": "yyyy"}, {"a": "long title", "b": "z"}
    ranker = LearnedFusionRanker(FeatureBuilder({"title": TitleLength(own)}), head)
    cands = [Candidate("a"), Candidate("b")]
    assert ranker.rank(History(), cands).item_ids == ["b", "a"]
    assert ranker.rank(History(), cands, catalog=other).item_ids == ["a", "b"]
    assert ranker.score(History(), cands, catalog=other)[0] > ranker.score(History(), cands, catalog=other)[1]
    assert ranker.rank(History(), cands).item_ids == ["b", "a"]
