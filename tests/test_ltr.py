"""The LightGBM LambdaRank head and its LTR features: learns the informative feature, the guard,
identical scores after save/load (head and pipeline), fitted on validation-stage lists only,
per-source union features through `SourceFeatures`, ranks / trend / history length, config and
report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lightgbm")

from reranker.data.dataset import Dataset  # noqa: E402
from reranker.data.splits import leave_one_out  # noqa: E402
from reranker.data.synthetic import generate_world  # noqa: E402
from reranker.errors import ConfigError  # noqa: E402
from reranker.ranking.features import (  # noqa: E402
    FeatureBuilder,
    PopularityTrend,
    SourceFeatures,
    build_components,
    within_list_rank,
)
from reranker.ranking.learned import FeatureList, LearnedFusion, LearnedFusionConfig  # noqa: E402
from reranker.ranking.learned_head import _ndcg_at_k  # noqa: E402
from reranker.registry import RANKERS, BuildContext  # noqa: E402
from reranker.types import Candidate, History  # noqa: E402


def toy_lists(n_lists: int = 60, n: int = 10, seed: int = 0) -> list[FeatureList]:
    """Feature 0 is the label; feature 1 is pure noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_lists):
        y = np.zeros(n)
        y[rng.integers(n)] = 1
        out.append(FeatureList(np.column_stack([y, rng.normal(size=n)]), y))
    return out


def ltr_config(**kw) -> LearnedFusionConfig:
    return LearnedFusionConfig(kind="lambdarank", use_llm_hidden=False, **kw)


# ------------------------------------------------------------------ the head
def test_lambdarank_ranks_by_the_label_feature():
    head = LearnedFusion(ltr_config(), ["label", "noise"]).fit(toy_lists())
    ndcg = [_ndcg_at_k(head.score(fl), fl.labels, 10) for fl in toy_lists(seed=1, n_lists=30)]
    assert np.mean(ndcg) == pytest.approx(1.0)
    rep = head.fit_report
    assert rep["kind"] == "lambdarank" and rep["fallback_feature"] is None
    assert rep["holdout_ndcg@10_head"] == pytest.approx(1.0)
    assert rep["early_stopping_iteration"] >= 1 and rep["rounds"] == rep["early_stopping_iteration"]
    gain = rep["importance_gain"]
    assert set(gain) == {"label", "noise"} and gain["label"] > 100 * max(gain["noise"], 1e-9)
    assert "coef" not in rep and head.weights() == {}


def test_lambdarank_is_deterministic_and_without_holdout_trains_all_rounds():
    a = LearnedFusion(ltr_config(), ["label", "noise"]).fit(toy_lists())
    b = LearnedFusion(ltr_config(), ["label", "noise"]).fit(toy_lists())
    fl = toy_lists(seed=4, n_lists=1)[0]
    np.testing.assert_array_equal(a.score(fl), b.score(fl))
    c = LearnedFusion(ltr_config(holdout=0.0, lambdarank={"n_estimators": 7}), ["label", "noise"])
    c.fit(toy_lists())
    assert c.fit_report["rounds"] == 7 and c.fit_report["early_stopping_iteration"] is None


def test_guard_falls_back_to_a_rank_feature_lower_is_better():
    # "x_rank" (1 = best) orders every list perfectly; the head may only use the first 2 rounds
    # of shallow trees with big leaves, so it cannot match it; the fallback negates the rank.
    rng = np.random.default_rng(2)
    lists = []
    for _ in range(80):
        y = np.zeros(12)
        y[rng.integers(12)] = 1
        rank = np.empty(12)
        rank[np.argsort(-(y + rng.uniform(0, 0.5, 12)))] = np.arange(1, 13)
        lists.append(FeatureList(np.column_stack([rank + rng.normal(0, 100), rng.normal(size=12)]), y))
    cfg = ltr_config(lambdarank={"n_estimators": 1, "num_leaves": 2, "min_data_in_leaf": 400})
    head = LearnedFusion(cfg, ["x_rank", "noise"]).fit(lists)
    rep = head.fit_report
    # per-list offsets make the raw rank useless globally, but within a list it is perfect
    assert rep["holdout_ndcg@10_single"]["x_rank"] == pytest.approx(1.0)
    assert rep["fallback_feature"] == "x_rank"
    np.testing.assert_array_equal(head.score(lists[0]), -lists[0].trad[:, 0])


def test_save_load_identical_scores(tmp_path: Path):
    lists = toy_lists()
    for fl in lists:  # a third, weakly informative feature so the trees have several splits
        fl.trad = np.column_stack([fl.trad, fl.labels * 0.3 + np.random.default_rng(0).normal(size=len(fl.labels))])
    head = LearnedFusion(ltr_config(), ["label", "noise", "weak"]).fit(lists)
    head.save(tmp_path / "h")
    assert (tmp_path / "h" / "booster.txt").read_text().startswith("tree")
    again = LearnedFusion.load(tmp_path / "h")
    assert again.config == head.config and again.fit_report == head.fit_report
    rng = np.random.default_rng(9)
    for _ in range(5):
        X = rng.normal(size=(15, 3))
        np.testing.assert_array_equal(head.score(X), again.score(X))
    # a linear head saved into the same folder drops the stale booster
    LearnedFusion(LearnedFusionConfig(use_llm_hidden=False), ["label", "noise", "weak"]).fit(lists).save(tmp_path / "h")
    assert not (tmp_path / "h" / "booster.txt").exists()
    assert LearnedFusion.load(tmp_path / "h").booster is None


def test_missing_lightgbm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'reranker\[ltr\]'"):
        LearnedFusion(ltr_config(), ["label", "noise"]).fit(toy_lists())


def test_pipeline_save_load_with_a_lambdarank_head(tmp_path: Path):
    from reranker.pipeline import Pipeline, PipelineConfig

    world = generate_world(seed=3, n_users=120, n_items=80)
    cfg = PipelineConfig.from_dict({
        "ranking": {"llm": {"enabled": False}, "bert": {"enabled": False},
                    "learned": {"enabled": True, "kind": "lambdarank", "use_llm_hidden": False, "users": 80,
                                "lambdarank": {"n_estimators": 30, "min_data_in_leaf": 5}}},
        "retriever": {"k": 20},
    })
    pipe = Pipeline(cfg).fit(world.dataset)
    assert pipe.learned.head.booster is not None
    pipe.save(tmp_path / "p")
    again = Pipeline.load(tmp_path / "p")
    for u in [str(x) for x in world.dataset.user_ids[:6]]:
        a, b = pipe.recommend(u, k=10), again.recommend(u, k=10)
        assert a.item_ids == b.item_ids
        np.testing.assert_array_equal(a.scores, b.scores)


# ------------------------------------------------------------------ features
class FakeUnion:
    """A stand-in for the union retriever: two sources, each with a score and a rank."""

    def __init__(self) -> None:
        self.calls = 0

    def source_features(self, history, candidates):
        self.calls += 1
        a = np.array([float(len(c.item_id)) for c in candidates])
        return {"itemcf": (a, within_list_rank(a)), "pop": {"score": -a, "rank": within_list_rank(-a)}}


def test_source_features_become_per_source_score_and_rank_columns():
    union = FakeUnion()
    assert isinstance(union, SourceFeatures)

    class Const:
        def score(self, history, candidates, catalog=None):
            return np.arange(len(candidates), dtype=float)

    b = FeatureBuilder({"const": Const(), "union": union}, ranks=["const"])
    assert b.names == ["const", "const_rank", "union.itemcf_score", "union.itemcf_rank",
                       "union.pop_score", "union.pop_rank"]
    cands = [Candidate("a"), Candidate("bbb"), Candidate("cc")]
    fl, _ = b.build(History("u", ("x",)), cands)
    np.testing.assert_array_equal(fl.trad[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(fl.trad[:, 1], [3, 2, 1])
    np.testing.assert_array_equal(fl.trad[:, 2], [1, 3, 2])
    np.testing.assert_array_equal(fl.trad[:, 3], [3, 1, 2])
    np.testing.assert_array_equal(fl.trad[:, 5], [1, 3, 2])
    with pytest.raises(ValueError, match="not plain scorers"):
        FeatureBuilder({"union": union}, ranks=["union"])


def test_within_list_rank_ties_share_the_best_rank():
    np.testing.assert_array_equal(within_list_rank(np.array([0.5, 2.0, 0.5, -1.0])), [2, 1, 2, 4])


def test_popularity_trend_and_history_length():
    day = 86400.0
    inter = pd.DataFrame({
        "user_id": ["u1", "u2", "u3", "u4", "u1", "u2", "u3", "u4"],
        "item_id": ["old", "old", "old", "old", "new", "new", "old", "mix"],
        "timestamp": [0, 1, 2, 3, 100 * day, 100 * day, 100 * day, 50 * day],
    })
    items = pd.DataFrame({"item_id": ["old", "new", "mix", "none"], "title": ["o", "n", "m", "x"]})
    data = Dataset(inter, items)
    trend = PopularityTrend(data, window_days=30, prior=0.0).score(
        History(), [Candidate(i) for i in ("old", "new", "mix", "none")])
    share = 3 / 8  # interactions in the last 30 days overall
    np.testing.assert_allclose(trend, [(1 / 5) / share, 1 / share, 0.0, 1.0])
    comps = build_components(data, data, popularity=False, recency_days=None, trend_days=30, history_length=True)
    assert list(comps) == ["trend", "history_len"]
    fl, _ = FeatureBuilder(comps).build(History("u1", ("old", "new")), [Candidate("old"), Candidate("new")])
    np.testing.assert_array_equal(fl.trad[:, 1], [2, 2])


def test_default_features_are_unchanged():
    """The logistic head's feature set (and order) when no LTR feature is asked for."""
    world = generate_world(seed=5, n_users=40, n_items=30)
    comps = build_components(world.dataset, world.dataset, itemcf={"k": 5}, usercf={"k": 5})
    assert FeatureBuilder(comps).names == ["itemcf", "usercf", "popularity", "recency"]


# ------------------------------------------------------------------ through the registry
@pytest.fixture(scope="module")
def world_split():
    world = generate_world(seed=5, n_users=80, n_items=50)
    return world.dataset, leave_one_out(world.dataset)


def test_fit_sees_only_validation_stage_lists(world_split, monkeypatch):
    ds, split = world_split
    seen: list[tuple[History, list[str], list[float]]] = []
    fitted_on: list[int] = []
    build_batch = FeatureBuilder.build_batch
    fit = LearnedFusion.fit

    def spy_build(self, histories, candidate_lists, labels=None, **kw):
        if labels is not None:  # the fit lists (serving builds carry no labels)
            for h, cands, y in zip(histories, candidate_lists, labels, strict=True):
                seen.append((h, [c.item_id for c in cands], list(y)))
        return build_batch(self, histories, candidate_lists, labels, **kw)

    def spy_fit(self, lists):
        fitted_on.append(len(lists))
        return fit(self, lists)

    monkeypatch.setattr(FeatureBuilder, "build_batch", spy_build)
    monkeypatch.setattr(LearnedFusion, "fit", spy_fit)
    params = {
        "type": "learned-fusion", "negatives": "mixed", "n_negatives": 9,
        "candidates_from": {"type": "itemcf", "k": 10}, "extra": {"pop2": {"type": "popular"}},
        "ranks": True, "trend_days": 30, "history_length": True,
        "head": {"kind": "lambdarank", "lambdarank": {"n_estimators": 20, "min_data_in_leaf": 5}},
    }
    ctx = BuildContext(fit_data=split.train_valid(), catalog=ds, seed=0, split=split)
    ranker = RANKERS.build(params, ctx.named("ltr"))

    val_t, test_t = split.targets("validation"), split.targets("test")
    val_h = split.histories("validation")
    assert seen and fitted_on == [len(seen)]
    for h, ids, y in seen:
        u = str(h.user_id)
        positives = [i for i, lab in zip(ids, y, strict=True) if lab > 0]
        assert positives == [val_t[u]]  # one positive: the validation target
        assert tuple(h.items) == tuple(val_h[u].items)  # the validation-stage history
        assert val_t[u] not in h.items
        if test_t[u] != val_t[u]:
            assert test_t[u] not in positives
    names = ranker.head.feature_names
    assert names == ["itemcf", "itemcf_rank", "usercf", "usercf_rank", "popularity", "popularity_rank",
                     "recency", "recency_rank", "trend", "trend_rank", "pop2", "pop2_rank", "history_len"]
    assert set(ranker.head.fit_report["importance_gain"]) == set(names)
    # serving: the same features, from components refitted on the serving data
    cands = [Candidate(str(i)) for i in ds.item_ids[:8]]
    r = ranker.rank(History(str(ds.user_ids[0]), tuple(str(i) for i in ds.item_ids[10:13])), cands)
    assert sorted(r.item_ids) == sorted(c.item_id for c in cands)


def test_retrieved_negatives_need_a_retriever():
    with pytest.raises(ConfigError, match="candidates_from"):
        RANKERS.config({"type": "learned-fusion", "negatives": "retrieved"})


def test_ltr_config_round_trips():
    cfg = RANKERS.config({
        "type": "learned-fusion", "negatives": "retrieved", "candidates_from": {"type": "usercf", "k": 7},
        "extra": {"pop": {"type": "popular"}, "icf": {"type": "itemcf", "k": 3}}, "ranks": True,
        "trend_days": 14, "history_length": True,
        "head": {"kind": "lambdarank", "holdout": 0.3,
                 "lambdarank": {"num_leaves": 15, "learning_rate": 0.1, "early_stopping_rounds": None, "seed": 3}},
    })
    assert cfg.head.lambdarank.num_leaves == 15 and cfg.extra["icf"].k == 3
    assert RANKERS.config(cfg.model_dump(mode="json")) == cfg
    with pytest.raises(ConfigError, match=r"head\.lambdarank\.num_leaves"):
        RANKERS.config({"type": "learned-fusion", "head": {"kind": "lambdarank", "lambdarank": {"num_leaves": 1}}})


def test_report_renders_importances():
    from reranker.evaluation.report_markdown import _fit_lines

    fit = {"n_lists": 40, "kind": "lambdarank", "guard_k": 10, "holdout_ndcg@10_head": 0.5,
           "holdout_ndcg@10_single": {"a": 0.4, "b": 0.2}, "best_single": "a", "fallback_feature": None,
           "rounds": 12, "importance_gain": {"a": 30.0, "b": 10.0}}
    text = "\n".join(_fit_lines({"ltr": {"fit_report": fit}}))
    assert "LambdaRank, 12 trees" in text
    assert "| a | 30.0 | 75.0% |" in text and "| b | 10.0 | 25.0% |" in text
    linear = {"n_lists": 40, "guard_k": 10, "holdout_ndcg@10_head": 0.5, "holdout_ndcg@10_single": {"a": 0.4},
              "best_single": "a", "fallback_feature": None, "coef": {"a": 1.0}}
    assert "importance" not in "\n".join(_fit_lines({"lin": {"fit_report": linear}}))
