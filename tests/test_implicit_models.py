"""ALS / BPR through `implicit`: the shared retriever suite, determinism with a seed, the user
vectors (trained for known users, recalculated / folded in for ad-hoc histories), the missing
package error and the scorers built through the registry."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from retrieval_suite import RetrieverSuite, suite_dataset

from reranker.errors import ConfigError
from reranker.registry import RANKERS, RETRIEVERS, BuildContext
from reranker.retrieval.implicit_models import ALS, BPR, ALSConfig, BPRConfig
from reranker.types import Candidate, History

pytest.importorskip("implicit")


class TestALSSuite(RetrieverSuite):
    cf_source = "als"

    def make(self):
        return ALS(factors=8, iterations=5)


class TestBPRSuite(RetrieverSuite):
    cf_source = "bpr"

    def make(self):
        return BPR(factors=8, iterations=20)


@pytest.mark.parametrize("cls", [ALS, BPR])
def test_seeded_fit_is_deterministic_and_the_seed_matters(cls):
    ds = suite_dataset()
    a, b = cls(factors=8, iterations=5, seed=3).fit(ds), cls(factors=8, iterations=5, seed=3).fit(ds)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    c = cls(factors=8, iterations=5, seed=4).fit(ds)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


@pytest.mark.parametrize("cls", [ALS, BPR])
def test_known_user_uses_trained_factors(cls):
    ds = suite_dataset()
    m = cls(factors=8, iterations=5).fit(ds)
    uid = "u3"
    u = m.user_idx(uid)
    scores = m.score(History(user_id=uid), [Candidate(i) for i in m.item_ids])
    np.testing.assert_allclose(scores, m.user_factors_[u] @ m.item_factors_.T, rtol=1e-5, atol=1e-6)
    # a capped history of training items is the same profile: same vector
    capped = ds.history(uid).last(2)
    np.testing.assert_allclose(m.score(capped, [Candidate(i) for i in m.item_ids]), scores, rtol=1e-6)


def test_als_ad_hoc_history_is_implicits_recalculate_user():
    ds = suite_dataset()
    m = ALS(factors=8, iterations=5).fit(ds)
    items = ["i0", "i4", "i9"]
    cols = m.item_index.get_indexer(items)
    import scipy.sparse as sp

    X = sp.csr_matrix((np.ones(3, np.float32), ([0, 0, 0], cols)), shape=(1, len(m.item_ids)))
    u = m.model_.recalculate_user(0, X)
    got = m.score(History(items=items), [Candidate(i) for i in m.item_ids])
    np.testing.assert_allclose(got, u @ m.item_factors_.T, rtol=1e-4, atol=1e-6)
    # implicit's own recommend(..., recalculate_user=True) agrees on the top items
    ids, _ = m.model_.recommend(0, X, N=5, recalculate_user=True, filter_already_liked_items=True)
    ours = [c.item_id for c in m.retrieve(History(items=items), n=5)]
    assert ours == [str(m.item_ids[i]) for i in ids]


def test_bpr_ad_hoc_history_is_the_mean_item_vector_plus_bias():
    ds = suite_dataset()
    m = BPR(factors=8, iterations=20).fit(ds)
    items = ["i0", "i4", "i9"]
    V = m.item_factors_
    u = np.r_[V[m.item_index.get_indexer(items), :-1].mean(axis=0), 1.0]
    got = m.score(History(items=items), [Candidate(i) for i in m.item_ids])
    np.testing.assert_allclose(got, V @ u, rtol=1e-4, atol=1e-6)
    # a known user with a new item is folded in too (training row + the new item)
    extra = next(i for i in m.item_ids if i not in set(ds.history("u1").items))
    h = History(user_id="u1", items=[extra])
    prof = list(ds.history("u1").items) + [extra]
    u2 = np.r_[V[np.unique(m.item_index.get_indexer(prof)), :-1].mean(axis=0), 1.0]
    np.testing.assert_allclose(m.score(h, [Candidate(i) for i in m.item_ids]), V @ u2, rtol=1e-4, atol=1e-6)


def test_missing_package_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "implicit" or name.startswith("implicit."):
            raise ImportError("No module named 'implicit'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match=r"pip install 'reranker\[implicit\]'"):
        ALS().fit(suite_dataset())


def test_config_errors():
    with pytest.raises(ConfigError, match="factors"):
        ALS(factors=0)
    with pytest.raises(ConfigError, match="learning_rate"):
        ALS(learning_rate=0.1)  # a BPR option
    with pytest.raises(ConfigError, match="alpha"):
        BPR(alpha=3.0)
    assert ALS(config=ALSConfig(factors=4)).config.factors == 4
    assert BPR(config=BPRConfig(learning_rate=0.05)).config.learning_rate == 0.05


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_registry_retriever_and_scorer(name):
    ds = suite_dataset()
    ctx = BuildContext(fit_data=ds, catalog=ds)
    cfg = {"type": name, "factors": 8, "iterations": 5}
    r = RETRIEVERS.build(cfg, ctx)
    assert type(r).__name__ == name.upper()
    ranker = RANKERS.build(cfg, ctx.named(name))
    h = History(user_id="u2")
    cands = [Candidate(i) for i in ("i1", "i2", "i3", "i4", "i30")]
    want = np.argsort(-r.score(h, cands), kind="stable")
    assert ranker.rank(h, cands).item_ids == [cands[i].item_id for i in want]
