"""SASRec: the shared retriever suite (tiny config), learning a deterministic next-item chain,
determinism with the seed, the scorer, the sequence handling and the registry entries."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from retrieval_suite import RetrieverSuite, suite_dataset

from reranker.data.dataset import Dataset
from reranker.errors import ConfigError
from reranker.registry import RANKERS, RETRIEVERS, BuildContext
from reranker.retrieval.sasrec import SASRec, SASRecConfig
from reranker.types import Candidate, History

TINY = {"epochs": 2, "hidden": 16, "max_len": 10}


class TestSASRecSuite(RetrieverSuite):
    cf_source = "sasrec"

    def make(self):
        return SASRec(**TINY)


@pytest.fixture(scope="module")
def fitted_tiny():
    ds = suite_dataset()
    return ds, SASRec(**TINY).fit(ds)


# ---------------------------------------------------------------------------- learning
def chain_dataset(n_users: int = 200, n_items: int = 24, seed: int = 0) -> Dataset:
    """Each user walks i -> i+1 -> ... from a random start, for 2 to 6 steps (users that stop
    early are what teaches the model that i+2 does not come right after i)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        length = int(rng.integers(2, 7))
        start = int(rng.integers(0, n_items - length + 1))
        for t in range(length):
            rows.append({"user_id": f"u{u}", "item_id": f"c{start + t}", "timestamp": t})
    items = pd.DataFrame({"item_id": [f"c{i}" for i in range(n_items)],
                          "title": [f"Chain {i}" for i in range(n_items)]})
    return Dataset(pd.DataFrame(rows), items, name="chain")


def test_learns_a_deterministic_chain():
    ds = chain_dataset()
    m = SASRec(epochs=10, hidden=32, max_len=8, dropout=0.1, lr=5e-3, batch_size=32, seed=1).fit(ds)
    assert m.losses_[-1] < m.losses_[0] / 2
    hits = []
    for k in (1, 2, 3, 5):  # ad-hoc histories c_s .. c_{s+k-1}; the next item is c_{s+k}
        for start in range(0, 23 - k):
            h = History(items=[f"c{start + j}" for j in range(k)])
            top = m.retrieve(h, n=1)[0]
            hits.append(top.item_id == f"c{start + k}")
            assert top.source == "sasrec"
    assert np.mean(hits) >= 0.9, np.mean(hits)


def test_same_seed_same_scores_other_seed_differs():
    ds = suite_dataset()
    h = History(items=["i1", "i2", "i3"])
    cands = [Candidate(f"i{i}") for i in range(31)]
    a = SASRec(**TINY, seed=3).fit(ds).score(h, cands)
    b = SASRec(**TINY, seed=3).fit(ds).score(h, cands)
    c = SASRec(**TINY, seed=4).fit(ds).score(h, cands)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_leaves_global_torch_state_alone():
    import torch

    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    SASRec(**TINY, threads=1).fit(suite_dataset())
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


# ---------------------------------------------------------------------------- scoring
def test_score_is_dot_of_hidden_state_and_item_embedding(fitted_tiny):
    _, m = fitted_tiny
    h = History(items=["i4", "nope", "i7"])
    seq = m.query_sequences([h], np.array([-1]))
    assert seq[0, -2:].tolist() == [m.item_idx("i4") + 1, m.item_idx("i7") + 1]  # unknown skipped
    assert (seq[0, :-2] == 0).all()
    H = m.hidden_states(seq)[0]
    E = m.item_embeddings()
    s = m.score(h, [Candidate("i2"), Candidate("zz"), Candidate("i30")])
    np.testing.assert_allclose(s, [E[m.item_idx("i2")] @ H, 0.0, E[m.item_idx("i30")] @ H], rtol=1e-5)
    # the retriever ranks by the same score
    got = m.retrieve(h, n=31, exclude_seen=False)
    full = m.score(h, [Candidate(c.item_id) for c in got])
    np.testing.assert_allclose([c.score for c in got], full, rtol=1e-5)
    # an empty query scores 0
    assert not m.score(History(items=["zz"]), [Candidate("i2")]).any()


def test_sequence_order_matters_and_known_user_uses_training_window(fitted_tiny):
    ds, m = fitted_tiny
    a = m.score(History(items=["i1", "i2", "i3"]), [Candidate("i5")])
    b = m.score(History(items=["i3", "i2", "i1"]), [Candidate("i5")])
    assert a[0] != pytest.approx(b[0])
    # a known user without items: the training sequence in the dataset's order
    full = ds.history("u6")
    by_id = m.score(History(user_id="u6"), [Candidate("i5")])
    by_items = m.score(History(items=full.items), [Candidate("i5")])
    np.testing.assert_allclose(by_id, by_items, rtol=1e-5)


def test_training_windows_follow_sorted_interactions():
    # two interactions at the same time: the dataset's tie order decides, not the model
    inter = pd.DataFrame({"user_id": ["u", "u", "u", "v", "v"], "item_id": ["a", "b", "c", "c", "a"],
                          "timestamp": [1, 2, 2, 1, 2]})
    items = pd.DataFrame({"item_id": list("abcd"), "title": list("ABCD")})
    ds = Dataset(inter, items)
    m = SASRec(**TINY).fit(ds)
    for uid in ("u", "v"):
        seq = m.user_seqs_[m.user_idx(uid)]
        expected = [m.item_idx(i) + 1 for i in ds.history(uid).items]
        assert seq[seq > 0].tolist() == expected


def test_config_errors():
    with pytest.raises(ConfigError, match="divisible"):
        SASRec(hidden=10, heads=3)
    with pytest.raises(ConfigError, match="dropout"):
        SASRec(dropout=1.5)
    with pytest.raises(ConfigError, match="device"):
        SASRec(device="tpu")
    with pytest.raises(ConfigError):
        SASRec(SASRecConfig(), epochs=3)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            SASRec(**TINY, device="cuda").fit(suite_dataset())


def test_import_does_not_load_torch():
    import subprocess

    code = "import sys, reranker.retrieval.sasrec, reranker.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------- registry
def test_built_through_the_registries():
    ds = suite_dataset()
    ctx = BuildContext(fit_data=ds, catalog=ds)
    r = RETRIEVERS.build({"type": "sasrec", **TINY}, ctx)
    assert isinstance(r, SASRec) and r.config.hidden == 16
    ranker = RANKERS.build({"type": "sasrec", **TINY}, ctx.named("sasrec"))
    h = History(items=["i1", "i2"])
    cands = [Candidate("i5"), Candidate("i9")]
    ranking = ranker.rank(h, cands, ds)
    assert {ri.item_id for ri in ranking.items} == {"i5", "i9"}
    np.testing.assert_allclose(sorted(ri.score for ri in ranking.items), sorted(r.score(h, cands)), rtol=1e-5)
