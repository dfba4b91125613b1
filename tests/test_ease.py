"""EASE: the shared retriever suite, the closed form against a float64 reference, the size
guard, l2 tuning (the helper and ``l2_grid`` in fit) and the scorer built through the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from retrieval_suite import RetrieverSuite, suite_dataset

from reranker.data.dataset import Dataset
from reranker.data.splits import leave_one_out
from reranker.errors import ConfigError
from reranker.registry import RANKERS, RETRIEVERS, BuildContext
from reranker.retrieval.ease import EASE, EASEConfig, memory_bytes, tune_ease
from reranker.types import Candidate, History


class TestEASESuite(RetrieverSuite):
    cf_source = "ease"

    def make(self):
        return EASE(l2=10.0)


class TestEASEExplicitSuite(RetrieverSuite):
    cf_source = "ease"

    def make(self):
        return EASE(l2=50.0, feedback="explicit")


class TestEASETunedSuite(RetrieverSuite):
    cf_source = "ease"

    def make(self):
        return EASE(l2_grid=[1.0, 30.0, 300.0])


def _reference_B(X: np.ndarray, l2: float) -> np.ndarray:
    G = X.T @ X + l2 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def test_closed_form_matches_float64_reference():
    ds = suite_dataset()
    m = EASE(l2=7.0).fit(ds)
    X = m.R.toarray()[:, m.active_]
    ref = _reference_B(X, 7.0)
    assert m.B_.dtype == np.float32
    np.testing.assert_allclose(m.B_, ref, atol=2e-5)
    assert np.all(np.diag(m.B_) == 0)
    # a profile's scores are x @ B over the catalogue; the never-touched item i30 scores 0
    h = History(items=["i0", "i4", "i9"])
    x = np.zeros(len(m.item_ids))
    x[m.item_index.get_indexer(list(h.items))] = 1.0
    full = np.zeros(len(m.item_ids))
    full[m.active_] = x[m.active_] @ ref
    got = m.score(h, [Candidate(i) for i in m.item_ids])
    np.testing.assert_allclose(got, full, atol=1e-5)
    assert got[m.item_idx("i30")] == 0.0


def test_retrieve_is_the_full_catalogue_order_of_the_scores():
    ds = suite_dataset()
    m = EASE(l2=5.0).fit(ds)
    h = History(items=["i1", "i2", "i3"])
    cands = m.retrieve(h, n=100)
    assert len(cands) == len(ds.item_ids) - 3  # every unseen item, negative scores included
    assert {c.source for c in cands} == {"ease"}
    s = m.score(h, cands)
    np.testing.assert_allclose([c.score for c in cands], s, rtol=1e-6)
    assert any(c.score < 0 for c in cands)


def test_hand_example():
    # 3 users x 3 items, binary: X^T X = [[2,2,0],[2,3,1],[0,1,1]] (+ l2 = 1 on the diagonal)
    inter = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "y", "z"]})
    inter = pd.concat([inter, pd.DataFrame({"user_id": ["c"], "item_id": ["y"]})], ignore_index=True)
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "title": ["X", "Y", "Z"]})
    m = EASE(l2=1.0).fit(Dataset(inter, items))
    G = np.array([[3.0, 2, 0], [2, 4, 1], [0, 1, 2]])  # X^T X + I
    P = np.linalg.inv(G)
    # B[i, j] = -P[i, j] / P[j, j]: e.g. B[x, y] = -P[0,1] / P[1,1]
    assert m.B_[0, 1] == pytest.approx(-P[0, 1] / P[1, 1], rel=1e-5)
    assert m.B_[2, 0] == pytest.approx(-P[2, 0] / P[0, 0], abs=1e-6)
    assert m.l2_ == 1.0


def test_size_guard_states_memory_and_remedy():
    ds = suite_dataset()
    with pytest.raises(ConfigError) as e:
        EASE(max_items=10).fit(ds)
    msg = str(e.value)
    assert "max_items=10" in msg and "30 items" in msg
    assert "KiB" in msg or "MiB" in msg
    assert "itemcf" in msg
    assert memory_bytes(20_000) == 20_000**2 * 12


def test_config_errors():
    with pytest.raises(ConfigError, match="l2"):
        EASE(l2=0)
    with pytest.raises(ConfigError, match="unknown key"):
        EASE(lambda_=3)
    with pytest.raises(ConfigError, match="tune_metric"):
        EASE(tune_metric="auc")
    with pytest.raises(ConfigError, match="l2_grid"):
        EASE(l2_grid=[1.0, -2.0])
    with pytest.raises(ConfigError):
        EASE(config=EASEConfig(), l2=3.0)
    with pytest.raises(ConfigError, match="rating column"):
        EASE(feedback="explicit").fit(Dataset(pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})))


def test_tune_ease_on_a_split():
    ds = suite_dataset(11)
    split = leave_one_out(ds)
    t = tune_ease(split, grid=[0.5, 5.0, 50.0, 500.0], metric="recall@5")
    assert list(t.scores) == [0.5, 5.0, 50.0, 500.0]
    assert t.l2 in t.scores and t.scores[t.l2] == max(t.scores.values())
    assert t.users == len(split.users) and t.metric == "recall@5"
    # the tuned value, reproduced by hand: fit on train, top-5 for validation histories
    for l2, value in t.scores.items():
        m = EASE(l2=l2).fit(split.train)
        hs = split.histories("validation")
        tg = split.targets("validation")
        hits = [tg[u] in {c.item_id for c in m.retrieve(h, 5)} for u, h in hs.items()]
        assert value == pytest.approx(np.mean(hits))
    with pytest.raises(ConfigError, match="metric"):
        tune_ease(split, metric="auc@3")
    with pytest.raises(ConfigError, match="grid"):
        tune_ease(split, grid=[])


def test_l2_grid_in_fit_holds_out_the_last_interaction():
    ds = suite_dataset(5)
    m = EASE(l2_grid=[0.5, 50.0, 5000.0]).fit(ds)
    assert m.tuning_ is not None and m.l2_ == m.tuning_.l2
    assert m.l2_ in (0.5, 50.0, 5000.0)
    # same as tuning on the leave-one-out split of the fit data's test stage by hand
    inner = leave_one_out(ds)
    best = max(
        (0.5, 50.0, 5000.0),
        key=lambda l2: (_ndcg10(EASE(l2=l2).fit(inner.train_valid()), inner), -l2),
    )
    assert m.l2_ == best
    np.testing.assert_allclose(m.B_, EASE(l2=best).fit(ds).B_)


def _ndcg10(m: EASE, split) -> float:
    out = []
    tg = split.targets("test")
    for u, h in split.histories("test").items():
        ids = [c.item_id for c in m.retrieve(h, 10)]
        out.append(1 / np.log2(ids.index(tg[u]) + 2) if tg[u] in ids else 0.0)
    return float(np.mean(out))


def test_registry_retriever_and_scorer():
    ds = suite_dataset()
    ctx = BuildContext(fit_data=ds, catalog=ds)
    r = RETRIEVERS.build({"type": "ease", "l2": 20.0}, ctx)
    assert isinstance(r, EASE) and r.l2_ == 20.0
    ranker = RANKERS.build({"type": "ease", "l2": 20.0}, ctx.named("ease"))
    h = History(items=["i0", "i5"])
    cands = [Candidate(i) for i in ("i1", "i2", "i3", "i4")]
    ranking = ranker.rank(h, cands)
    want = np.argsort(-r.score(h, cands), kind="stable")
    assert ranking.item_ids == [cands[i].item_id for i in want]
