"""The union retriever: the shared retriever suite, the merge order (round-robin, quotas,
fill, scaling), best sources, the per-source features, config validation and the registry."""

from __future__ import annotations

import numpy as np
import pytest
from retrieval_suite import RetrieverSuite, suite_dataset

from reranker.errors import ConfigError
from reranker.registry import RANKERS, RETRIEVERS, BuildContext
from reranker.retrieval.union import MISSING_RANK, UnionConfig, UnionRetriever
from reranker.types import Candidate, History

SOURCES = [{"type": "ease", "l2": 10.0}, {"type": "itemcf", "k": 5, "feedback": "implicit"},
           {"type": "transitions"}]


class TestUnionSuite(RetrieverSuite):
    cf_source = "union"
    names = {"ease", "itemcf", "transitions"}

    def make(self):
        return UnionRetriever(sources=SOURCES, quotas=[5, 3, 2], n=10)

    def test_known_user_excludes_seen_sorted_unique(self, fitted, data):
        # as the suite's, but a candidate's source is the name of its best source
        catalog = set(data.item_ids)
        for uid in ["u0", "u5", "u17"]:
            seen = set(data.history(uid).items)
            cands = fitted.retrieve(History(user_id=uid), n=10)
            self._check_list(cands, 10, seen, catalog)
            assert len(cands) == 10
            assert {c.source for c in cands} <= self.names | {"popular"}


class TestUnionWithPopularSuite(TestUnionSuite):
    names = {"itemcf", "pop"}

    def make(self):
        return UnionRetriever(sources=[{"type": "itemcf", "k": 3}, {"type": "popular"}],
                              quotas=[6, 2], n=10, names=["itemcf", "pop"])


class _Fixed:
    """A fake source: fixed lists per history length (ids only), for the merge order."""

    def __init__(self, ids: list[str], source: str = "x") -> None:
        self.ids, self.src = ids, source

    def retrieve_batch(self, hs, n, exclude_seen=True):
        return [[Candidate(i, 1.0 - k / 100, self.src) for k, i in enumerate(self.ids[:n])] for _ in hs]

    def retrieve(self, h, n, exclude_seen=True):
        return self.retrieve_batch([h], n, exclude_seen)[0]

    def score_items(self, hs, ids):
        return [np.array([1.0 - self.ids.index(i) / 100 if i in self.ids else 0.0 for i in row]) for row in ids]


def _union(lists: dict[str, list[str]], quotas, n, sources=None):
    cfg = UnionConfig(sources=[{"type": "popular"}] * len(lists), quotas=quotas, n=n, names=list(lists))
    u = UnionRetriever(cfg)
    u.sources_ = {k: _Fixed(v, (sources or {}).get(k, k)) for k, v in lists.items()}
    return u


def test_round_robin_with_quotas_and_dedup():
    u = _union({"a": ["1", "2", "3", "4", "5", "6"], "b": ["2", "7", "8", "9"], "c": ["1", "10", "11"]},
               quotas=[3, 2, 1], n=6)
    got = u.retrieve(History(), 6)
    # round 1: a->1, b->2, c->10 (1 taken); round 2: a->3, b->7; round 3: a->4 (b, c at quota)
    assert [c.item_id for c in got] == ["1", "2", "10", "3", "7", "4"]
    assert [c.score for c in got] == pytest.approx([1 / (1 + p) for p in range(6)])
    # best source: the best own rank; "1" is rank 0 in a and c -> a (config order)
    assert [c.source for c in got] == ["a", "b", "c", "a", "b", "a"]


def test_fill_when_quotas_sum_below_n_and_when_a_source_runs_dry():
    u = _union({"a": ["1", "2", "3", "4", "5"], "b": ["6"]}, quotas=[1, 2], n=5)
    # quotas: a 1, b 2 (b has only one item) -> 1, 6; then fill round-robin: a 2, a 3, ...
    assert [c.item_id for c in u.retrieve(History(), 5)] == ["1", "6", "2", "3", "4"]


def test_quotas_scale_with_the_request():
    u = _union({"a": [f"a{i}" for i in range(50)], "b": [f"b{i}" for i in range(50)]}, quotas=[6, 2], n=8)
    assert u.quotas_for(8) == [6, 2]
    assert u.quotas_for(4) == [3, 1]
    assert u.quotas_for(16) == [12, 4]
    got = [c.item_id for c in u.retrieve(History(), 4)]
    assert got == ["a0", "b0", "a1", "a2"]
    big = [c.item_id[0] for c in u.retrieve(History(), 16)]
    assert big.count("a") == 12 and big.count("b") == 4


def test_only_popular_fills_give_source_popular():
    u = _union({"a": ["1", "2"], "b": ["2", "3"]}, quotas=[1, 1], n=2, sources={"a": "popular", "b": "b"})
    got = u.retrieve(History(), 3)
    assert [(c.item_id, c.source) for c in got] == [("1", "popular"), ("2", "b"), ("3", "b")]


def test_source_features():
    ds = suite_dataset()
    u = UnionRetriever(sources=SOURCES, quotas=[5, 3, 2], n=10).fit(ds)
    h = History(user_id="u4")
    cands = u.retrieve(h, 10) + [Candidate("i30"), Candidate("not-an-item")]
    f = u.source_features(h, cands)
    assert set(f) == {f"{n}.{k}" for n in ("ease", "itemcf", "transitions") for k in ("score", "rank")}
    assert all(len(v) == len(cands) for v in f.values())
    for name, r in u.sources_.items():
        np.testing.assert_allclose(f[f"{name}.score"], r.score(h, cands))
        own = [c.item_id for c in r.retrieve(h, 10)]
        want = [own.index(c.item_id) + 1 if c.item_id in own else MISSING_RANK for c in cands]
        assert f[f"{name}.rank"].tolist() == want
    # every merged candidate was proposed by at least one source within depth n
    ranks = np.vstack([f[f"{n}.rank"] for n in u.names])[:, :10]
    assert (ranks.min(axis=0) < MISSING_RANK).all()
    # its source is the best-ranked own-model source
    for k, c in enumerate(cands[:10]):
        if c.source != "popular":
            assert f[f"{c.source}.rank"][k] == ranks[:, k].min()
    assert u.source_features(h, [c.item_id for c in cands], depth=3)["ease.rank"].min() == 1


def test_sources_are_shared_through_the_context():
    ds = suite_dataset()
    ctx = BuildContext(fit_data=ds, catalog=ds)
    itemcf = ctx.retriever({"type": "itemcf", "k": 5, "feedback": "implicit"})
    u = RETRIEVERS.build({"type": "union", "sources": SOURCES, "quotas": [5, 3, 2], "n": 10}, ctx)
    assert u.sources_["itemcf"] is itemcf
    # fitted on other data: its own sources
    u2 = UnionRetriever(sources=SOURCES, quotas=[5, 3, 2], n=10, context=ctx).fit(suite_dataset(3))
    assert u2.sources_["itemcf"] is not itemcf


def test_config_validation_and_defaults():
    cfg = RETRIEVERS.config({"type": "union"})
    assert cfg.source_names() == ["ease", "itemcf", "transitions"] and cfg.quotas == [30, 20, 50]
    twice = UnionConfig(sources=[{"type": "itemcf"}, {"type": "itemcf", "k": 5}], quotas=None, n=9)
    assert twice.source_names() == ["itemcf", "itemcf-2"] and twice.base_quotas() == [5, 4]
    with pytest.raises(ConfigError, match="sources.1.k: must be >= 1"):
        RETRIEVERS.config({"type": "union", "sources": [{"type": "ease"}, {"type": "itemcf", "k": 0}],
                           "quotas": [1, 1]})
    with pytest.raises(ConfigError, match="sources.0.type"):
        RETRIEVERS.config({"type": "union", "sources": [{"type": "union"}], "quotas": [1]})
    with pytest.raises(ConfigError, match="one per source"):
        RETRIEVERS.config({"type": "union", "sources": [{"type": "ease"}], "quotas": [1, 2]})
    with pytest.raises(ConfigError, match="above n=10"):
        RETRIEVERS.config({"type": "union", "sources": [{"type": "ease"}], "quotas": [11], "n": 10})
    with pytest.raises(ConfigError, match="distinct"):
        UnionRetriever(sources=[{"type": "ease"}, {"type": "pop"}], quotas=[1, 1], names=["a", "a"])
    # round trip keeps the nested source configs
    full = RETRIEVERS.config({"type": "union", "sources": SOURCES, "quotas": [5, 3, 2], "n": 10})
    assert RETRIEVERS.config(full.model_dump(mode="json")) == full


def test_registry_ranker_is_the_merged_order():
    ds = suite_dataset()
    ctx = BuildContext(fit_data=ds, catalog=ds)
    cfg = {"type": "union", "sources": SOURCES, "quotas": [5, 3, 2], "n": 10}
    ranker = RANKERS.build(cfg, ctx.named("union"))
    u = ctx.retriever(cfg)
    h = History(items=["i0", "i5"])
    full = [c.item_id for c in u.retrieve(h, len(ds.item_ids), exclude_seen=False)]
    cands = [Candidate(i) for i in ("i9", "i1", "i3", "i20", "i0")]
    want = sorted((c.item_id for c in cands), key=full.index)
    assert ranker.rank(h, cands).item_ids == want


def test_own_sources_without_quotas_get_equal_shares():
    cfg = RETRIEVERS.config({"type": "union", "sources": [{"type": "ease"}, {"type": "popular"}], "n": 7})
    assert cfg.quotas is None and cfg.base_quotas() == [4, 3]
