"""Transitions: the shared retriever suite, the counts / decay / normalisation against a loop
reference over `Dataset.sorted_interactions`, the recency-weighted score, and the scorer built
through the registry."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from retrieval_suite import RetrieverSuite, suite_dataset

from reranker.data.dataset import Dataset
from reranker.errors import ConfigError
from reranker.registry import RANKERS, RETRIEVERS, BuildContext
from reranker.retrieval.transitions import Transitions
from reranker.types import Candidate, History


class TestTransitionsSuite(RetrieverSuite):
    cf_source = "transitions"

    def make(self):
        return Transitions()


class TestTransitionsRawCountsSuite(RetrieverSuite):
    cf_source = "transitions"

    def make(self):
        return Transitions(window=1, beta=0.0, last_n=2, fill_popular=True)


def _reference(ds: Dataset, window: int, decay: float, beta: float) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for _, rows in ds.sorted_interactions().groupby("user_id", sort=False):
        seq = rows["item_id"].astype(str).tolist()
        for t, a in enumerate(seq):
            for gap in range(1, window + 1):
                if t + gap < len(seq) and seq[t + gap] != a:
                    counts[(a, seq[t + gap])] += decay ** (gap - 1)
    tot: dict[str, float] = defaultdict(float)
    for (a, _), v in counts.items():
        tot[a] += v
    return {k: v / tot[k[0]] ** beta for k, v in counts.items()}


@pytest.mark.parametrize(("window", "decay", "beta"), [(3, 0.5, 1.0), (1, 1.0, 0.0), (4, 0.8, 0.5)])
def test_matrix_matches_loop_reference(window, decay, beta):
    ds = suite_dataset(2)
    m = Transitions(window=window, decay=decay, beta=beta).fit(ds)
    ref = _reference(ds, window, decay, beta)
    T = m.T_.tocoo()
    got = {(str(m.item_ids[i]), str(m.item_ids[j])): v for i, j, v in zip(T.row, T.col, T.data, strict=True)}
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v)
    if beta == 1.0:  # row-stochastic
        sums = np.asarray(m.T_.sum(axis=1)).ravel()
        assert np.allclose(sums[sums > 0], 1.0)


def test_hand_example_and_score():
    # one user: a b c a d (timestamps 1..5). window 2, decay .5, raw counts (beta 0):
    # gap 1: a->b, b->c, c->a, a->d (1 each); gap 2: a->c, b->a, c->d (.5 each)
    inter = pd.DataFrame({"user_id": ["u"] * 5, "item_id": list("abcad"), "timestamp": [1, 2, 3, 4, 5]})
    items = pd.DataFrame({"item_id": list("abcde"), "title": list("ABCDE")})
    ds = Dataset(inter, items)
    m = Transitions(window=2, decay=0.5, beta=0.0, last_n=2, recency_decay=0.5).fit(ds)
    assert m.transition("a", "b") == 1.0 and m.transition("a", "c") == 0.5
    assert m.transition("a", "d") == 1.0 and m.transition("b", "a") == 0.5
    assert m.transition("c", "d") == 0.5 and m.transition("d", "a") == 0.0
    # history oldest first: [c, b, a] -> last 2 distinct, newest first: a (w=1), b (w=.5)
    # score(j) = T[a, j] + .5 T[b, j]: b: 1, c: .5 + .5*1 = 1, d: 1, a: .5*.5 (seen)
    h = History(items=["c", "b", "a"])
    s = m.score(h, [Candidate(x) for x in "abcde"])
    np.testing.assert_allclose(s, [0.25, 1.0, 1.0, 1.0, 0.0])
    cands = m.retrieve(History(items=["a"]), n=4)
    # T[a, .]: b 1, d 1, c .5; then popular fill (e, scored below)
    assert [c.item_id for c in cands] == ["b", "d", "c", "e"]
    assert [c.source for c in cands] == ["transitions"] * 3 + ["popular"]
    # a known user with no items in the history: their training tail (d, a)
    assert m.retrieve(History(user_id="u"), n=1, exclude_seen=False)[0].item_id == "b"


def test_follows_the_datasets_chronological_order_with_ties():
    # same-second interactions: the order is whatever Dataset.sorted_interactions says
    inter = pd.DataFrame({"user_id": ["u"] * 4 + ["v"] * 3,
                          "item_id": ["x", "y", "z", "w", "z", "y", "x"],
                          "timestamp": [1, 1, 1, 2, 5, 5, 6]})
    items = pd.DataFrame({"item_id": list("wxyz"), "title": list("WXYZ")})
    ds = Dataset(inter, items)
    m = Transitions(window=1, beta=0.0).fit(ds)
    ref = _reference(ds, 1, 1.0, 0.0)
    got = {(str(m.item_ids[i]), str(m.item_ids[j])) for i, j in zip(*m.T_.nonzero(), strict=True)}
    assert got == set(ref)


def test_retrieve_users_uses_the_training_tail():
    ds = suite_dataset()
    m = Transitions().fit(ds)
    users = ["u0", "u7", "nobody"]
    batch = m.retrieve_users(users, 8)
    for k, u in enumerate(users):
        want = [c.item_id for c in m.retrieve(History(user_id=u), 8)]
        assert batch.row_ids(k).tolist() == want


def test_fit_and_retrieve_are_vectorised(monkeypatch):
    """No per-interaction Python loop: a 200k-interaction log fits in well under a few seconds."""
    import time

    rng = np.random.default_rng(0)
    n = 200_000
    inter = pd.DataFrame({"user_id": rng.integers(0, 5000, n).astype(str),
                          "item_id": rng.integers(0, 3000, n).astype(str),
                          "timestamp": rng.integers(0, 10**6, n)})
    items = pd.DataFrame({"item_id": np.arange(3000).astype(str), "title": "t"})
    ds = Dataset(inter, items)
    t = time.perf_counter()
    m = Transitions().fit(ds)
    m.retrieve_users([str(u) for u in range(1000)], 50)
    assert time.perf_counter() - t < 20


def test_config_errors():
    with pytest.raises(ConfigError, match="window"):
        Transitions(window=0)
    with pytest.raises(ConfigError, match="beta"):
        Transitions(beta=2.0)
    with pytest.raises(ConfigError, match="unknown key"):
        Transitions(windows=3)


def test_registry_retriever_and_scorer():
    ds = suite_dataset()
    ctx = BuildContext(fit_data=ds, catalog=ds)
    r = RETRIEVERS.build({"type": "transitions", "window": 2}, ctx)
    assert isinstance(r, Transitions)
    ranker = RANKERS.build({"type": "transitions", "window": 2}, ctx.named("transitions"))
    h = History(items=["i0", "i5", "i7"])
    cands = [Candidate(f"i{k}") for k in range(10, 20)]
    want = np.argsort(-r.score(h, cands), kind="stable")
    assert ranker.rank(h, cands).item_ids == [cands[i].item_id for i in want]
