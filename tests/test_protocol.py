"""Protocols of the evaluation harness on tiny hand-computed cases."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from reranker.data.dataset import Dataset
from reranker.data.splits import leave_one_out
from reranker.evaluation import protocol as P
from reranker.evaluation.cache import NullCache
from reranker.evaluation.experiment import (
    BuildContext,
    ExperimentConfig,
    LoadedExperiment,
    RankerSpec,
    register_ranker_type,
    unregister_ranker_type,
)
from reranker.evaluation.runner import ExperimentRunner, RunOptions, rank_users
from reranker.ranking.base import IdentityRanker
from reranker.types import Candidate, History, Ranking


# ----------------------------------------------------------------------------- toy rankers
class OracleRanker:
    """Puts the user's target first (knows the answers), others in stage-1 order."""

    def __init__(self, targets: dict[str, str]) -> None:
        self.targets = targets

    def rank(self, history: History, candidates) -> Ranking:
        ids = [c.item_id for c in candidates]
        t = self.targets[history.user_id]
        order = ([t] if t in ids else []) + [i for i in ids if i != t]
        return Ranking.from_order(order)


class ReversedRanker:
    """Stage-1 order reversed."""

    def rank(self, history: History, candidates) -> Ranking:
        return Ranking.from_order([c.item_id for c in candidates][::-1])


class FirstSlotRanker:
    """Always prefers whatever sits first in the list it is given (maximal position bias)."""

    def rank(self, history: History, candidates) -> Ranking:
        return Ranking.from_order([c.item_id for c in candidates])


# ----------------------------------------------------------------------------- metrics
def test_known_ranking_gives_known_ndcg_mrr_hr():
    ranked = [["a", "b", "t", "c"], ["t", "x"], ["x", "y"]]
    m = P.per_user_metrics(ranked, ["t", "t", "t"], ["ndcg@10", "mrr@10", "hr@1", "hr@5", "ndcg@1"])
    assert m["ndcg@10"][0] == pytest.approx(1 / math.log2(4))  # rank 3 -> 1/log2(3+1) = 0.5
    assert m["ndcg@10"][1] == pytest.approx(1.0)
    assert m["ndcg@10"][2] == 0.0
    assert m["mrr@10"].tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    assert m["hr@1"].tolist() == [0.0, 1.0, 0.0]
    assert m["hr@5"].tolist() == [1.0, 1.0, 0.0]
    assert m["ndcg@1"].tolist() == [0.0, 1.0, 0.0]


def test_unknown_metric_name_is_an_error():
    with pytest.raises(ValueError, match="unknown metric"):
        P.per_user_metrics([["a"]], ["a"], ["auc@3"])


def test_pr_curve_is_per_k_mean():
    c = P.pr_curve([["t", "a"], ["a", "t"]], ["t", "t"], max_k=2)
    assert c["k"] == [1, 2]
    assert c["recall"] == pytest.approx([0.5, 1.0])
    assert c["precision"] == pytest.approx([0.5, 0.5])


def test_target_in_is_the_stage1_ceiling():
    lists = [[Candidate("a"), Candidate("t")], [Candidate("b")], ["t"]]
    assert P.target_in(lists, ["t", "t", "t"]).tolist() == [1.0, 0.0, 1.0]


# ----------------------------------------------------------------------------- sampling
def test_negative_sampler_never_samples_seen_items_or_the_target():
    items = np.array([str(i) for i in range(30)], dtype=object)
    known = {str(i) for i in range(0, 20, 2)}  # 10 seen items
    for seed in range(50):
        rng = np.random.default_rng(seed)
        neg = P.sample_negatives(known, "1", items, 19, rng)
        assert len(neg) == len(set(neg)) == 19
        assert not set(neg) & known
        assert "1" not in neg
    # exactly 19 eligible: 30 - 10 seen - 1 target
    assert set(P.sample_negatives(known, "1", items, 19, np.random.default_rng(0))) == (
        set(items) - known - {"1"}
    )
    with pytest.raises(ValueError, match="unseen items"):
        P.sample_negatives(known, "1", items, 20, np.random.default_rng(0))


def test_regime_b_lists_are_seeded_shuffled_and_subset_invariant():
    items = [str(i) for i in range(100)]
    targets = {"u1": "5", "u2": "7", "u3": "9"}
    known = {"u1": {"5", "6"}, "u2": {"1"}, "u3": set()}
    a = P.regime_b_lists(["u1", "u2", "u3"], targets, known, items, 19, seed=3)
    b = P.regime_b_lists(["u3", "u1"], targets, known, items, 19, seed=3)
    assert a["u1"] == b["u1"] and a["u3"] == b["u3"]
    for u, lst in a.items():
        assert len(lst) == 20 and lst.count(targets[u]) == 1
        assert not (set(lst) - {targets[u]}) & known[u]
    c = P.regime_b_lists(["u1"], targets, known, items, 19, seed=4)
    assert c["u1"] != a["u1"]
    # the target is not always in the same slot (shuffled)
    many = P.regime_b_lists([f"x{i}" for i in range(40)], {f"x{i}": "0" for i in range(40)}, {}, items, 19, 0)
    assert len({lst.index("0") for lst in many.values()}) > 5


# ----------------------------------------------------------------------------- position bias
@pytest.mark.parametrize("pos", [0, 5, 10, 15, 19])
def test_place_target_puts_the_target_where_it_says(pos):
    ids = [f"i{k}" for k in range(20)]
    ids[7] = "t"
    out = P.place_target(ids, "t", pos)
    assert out.index("t") == pos
    assert len(out) == 20 and sorted(out) == sorted(ids)
    assert [i for i in out if i != "t"] == [i for i in ids if i != "t"]


def test_place_target_inserts_a_missing_target_by_dropping_the_last():
    ids = [f"i{k}" for k in range(20)]
    out = P.place_target(ids, "t", 10)
    assert out.index("t") == 10 and len(out) == 20 and "i19" not in out


def test_bias_sweep_measures_a_first_slot_ranker_as_maximally_biased():
    ids = [f"i{k}" for k in range(20)]
    hs = {"u": History("u", ["h"])}
    for pos in (0, 5, 19):
        lists = {"u": P.place_target(ids, "t", pos)}
        run = rank_users(FirstSlotRanker(), "first", "fp", ["u"], hs, lists, NullCache(), progress=False)
        cell = P.bias_metrics(run.ranked, ["t"])
        assert cell["mean_rank"] == pos + 1
        assert cell["hr@1"] == (1.0 if pos == 0 else 0.0)


# ----------------------------------------------------------------------------- summaries
def test_paired_difference_uses_common_users_only():
    a = {"u1": 1.0, "u2": 0.5, "u3": 0.0}
    b = {"u1": 0.5, "u2": 0.5, "u4": 1.0}
    d = P.paired_difference(a, b, n_boot=200)
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.25)
    assert d["ci_lo"] <= 0.25 <= d["ci_hi"]


def test_summarize_per_user_drops_nan():
    s = P.summarize_per_user({"m": [1.0, 0.0, float("nan")]}, n_boot=100)
    assert s["m"]["n"] == 2 and s["m"]["mean"] == pytest.approx(0.5)


def test_parse_stats_and_tokens_from_diagnostics():
    d = {"valid": 18, "hallucinated": 2, "duplicate": 1, "filled_in": 2, "tokens_in": 300, "tokens_out": 40}
    assert P.parse_stats(d) == {"valid": 18.0, "hallucinated": 2.0, "duplicate": 1.0, "filled_in": 2.0}
    assert P.token_count(d) == (300.0, 40.0)
    assert P.parse_stats({"ranker": "x"}) is None and P.token_count({}) is None


def test_user_order_prefixes_are_nested():
    users = [f"u{i}" for i in range(50)]
    o = P.user_order(users, seed=0)
    assert sorted(o) == sorted(users) and o != sorted(users)
    assert P.user_order(list(reversed(users)), seed=0) == o


# ----------------------------------------------------------------------------- regime A end to end
def _tiny_dataset() -> Dataset:
    """6 users x 8 items with timestamps; users 'a'..'f' share tastes in pairs."""
    rows = []
    tastes = {
        "a": ["1", "2", "3", "4"], "b": ["1", "2", "3", "5"],
        "c": ["4", "5", "6", "7"], "d": ["4", "5", "6", "8"],
        "e": ["1", "3", "6", "7"], "f": ["2", "3", "7", "8"],
    }
    for u, its in tastes.items():
        for t, i in enumerate(its):
            rows.append({"user_id": u, "item_id": i, "rating": 4.0, "timestamp": 1000.0 + t})
    items = pd.DataFrame({"item_id": [str(i) for i in range(1, 9)], "title": [f"item {i}" for i in range(1, 9)]})
    return Dataset(pd.DataFrame(rows), items, name="tiny")


def test_regime_a_ceiling_and_oracle_on_a_tiny_dataset(tmp_path):
    ds = _tiny_dataset()
    split = leave_one_out(ds)
    targets = split.targets("test")
    register_ranker_type("oracle-test", lambda spec, ctx: OracleRanker(targets))
    register_ranker_type("reversed-test", lambda spec, ctx: ReversedRanker())
    try:
        cfg = ExperimentConfig.from_dict(
            {
                "name": "tiny",
                "data": {"synthetic": {"seed": 0}},
                "protocol": {"regime": "a", "n_candidates": 3, "n_boot": 50, "position_bias": {"enabled": False}},
                "retriever": {"type": "pop"},
                "rankers": [
                    {"name": "stage1", "type": "identity"},
                    {"name": "oracle", "type": "oracle-test"},
                    {"name": "reversed", "type": "reversed-test"},
                ],
            }
        )
        loaded = LoadedExperiment(cfg, None, [tmp_path, tmp_path])
        opts = RunOptions(out_dir=tmp_path / "out", use_cache=False, progress=False, report=False, dataset=ds)
        res = ExperimentRunner(loaded, opts).run()
    finally:
        unregister_ranker_type("oracle-test")
        unregister_ranker_type("reversed-test")
    run = res["runs"][0]
    # hand-computed ceiling: popularity top-3 unseen items per user vs the test target
    from reranker.retrieval.popularity import PopularityRetriever

    pop = PopularityRetriever().fit(split.train_valid())
    hist = split.histories("test", cap=20)
    expected = np.mean([targets[u] in {c.item_id for c in pop.retrieve(hist[u], 3)} for u in targets])
    assert run["stage1"]["recall@n"]["recall@3"]["mean"] == pytest.approx(expected)
    oracle = run["rankers"]["oracle"]
    # the oracle reaches the ceiling: NDCG@10 = Recall@20 = ceiling, and 1.0 on users with the target
    assert oracle["summary"]["ndcg@10"]["mean"] == pytest.approx(expected)
    assert oracle["summary"]["recall@20"]["mean"] == pytest.approx(expected)
    if expected > 0:
        assert oracle["summary_target_in_candidates"]["ndcg@10"]["mean"] == pytest.approx(1.0)
    # reranking never changes Recall@n (same candidate set)
    for name in ("stage1", "reversed"):
        assert run["rankers"][name]["summary"]["recall@20"]["mean"] == pytest.approx(expected)
    assert res["status"] == "complete"


def test_rank_users_with_identity_keeps_stage1_order():
    hs = {"u": History("u", ["x"])}
    lists = {"u": [Candidate("a", 3.0), Candidate("b", 2.0), Candidate("c", 1.0)]}
    run = rank_users(IdentityRanker(), "id", "fp", ["u"], hs, lists, NullCache(), progress=False)
    assert run.ranked == [["a", "b", "c"]] and run.cache_hits == 0


def test_build_context_shares_fitted_retrievers():
    ds = _tiny_dataset()
    ctx = BuildContext(fit_data=ds, catalog=ds)
    assert ctx.retriever("pop", {}) is ctx.retriever("pop", {})
    assert RankerSpec(name="x", type="pop").type == "pop"


class _LazyModelRanker(IdentityRanker):
    """An identity ranker whose `backend` loads slowly on first access (like an LLM ranker)."""

    def __init__(self) -> None:
        self.loads = 0

    @property
    def backend(self) -> object:
        if self.loads == 0:
            time.sleep(1.0)
        self.loads += 1
        return object()


def test_rank_users_loads_lazy_models_outside_the_first_users_timing():
    hs = {u: History(u, ["x"]) for u in ("u1", "u2")}
    lists = {u: [Candidate("a", 2.0), Candidate("b", 1.0)] for u in hs}
    ranker = _LazyModelRanker()
    run = rank_users(ranker, "lazy", "fp", ["u1", "u2"], hs, lists, NullCache(), progress=False)
    assert ranker.loads >= 1 and run.ranked == [["a", "b"], ["a", "b"]]
    assert max(run.seconds) < 0.5  # the 1 s load is not the first user's latency


def test_rank_users_loads_nothing_when_every_ranking_is_cached(tmp_path):
    from reranker.evaluation.cache import open_cache

    hs = {"u": History("u", ["x"])}
    lists = {"u": [Candidate("a", 2.0), Candidate("b", 1.0)]}
    cache = open_cache(tmp_path)
    rank_users(IdentityRanker(), "lazy", "fp", ["u"], hs, lists, cache, progress=False)
    ranker = _LazyModelRanker()
    run = rank_users(ranker, "lazy", "fp", ["u"], hs, lists, cache, progress=False)
    assert run.cache_hits == 1 and ranker.loads == 0
