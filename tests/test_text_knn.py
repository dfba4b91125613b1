"""T-ItemCF / T-UserCF: the shared retriever suite, mu = 0 equals plain CF exactly, mu = 1
equals pure text similarity, cold items get neighbours, embedding inputs, config errors."""

from __future__ import annotations

import numpy as np
import pytest
from retrieval_suite import N_ITEMS, RetrieverSuite, suite_dataset

from reranker.errors import ConfigError, DataError
from reranker.registry import RETRIEVERS, BuildContext
from reranker.retrieval import ItemCF, UserCF
from reranker.retrieval.text_knn import TItemCF, TItemCFConfig, TUserCF, align_embeddings
from reranker.types import History

COLD = f"i{N_ITEMS}"  # the suite's item that nobody rated


def embeddings(dim: int = 8, seed: int = 3) -> dict[str, np.ndarray]:
    """Random text embeddings for the suite catalog; the cold item is a near copy of i3."""
    rng = np.random.default_rng(seed)
    emb = {f"i{i}": rng.normal(size=dim) for i in range(N_ITEMS + 1)}
    emb[COLD] = emb["i3"] + rng.normal(scale=0.05, size=dim)
    return emb


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------- the suite
class TestTItemCFSuite(RetrieverSuite):
    cf_source = "t-itemcf"

    def make(self):
        return TItemCF(k=5, mu=0.3, feedback="implicit", item_embeddings=embeddings())


class TestTItemCFExplicitSuite(RetrieverSuite):
    cf_source = "t-itemcf"

    def make(self):
        return TItemCF(k=8, mu=0.5, similarity="adjusted_cosine", item_embeddings=embeddings())


class TestTUserCFSuite(RetrieverSuite):
    cf_source = "t-usercf"

    def make(self):
        return TUserCF(k=5, mu=0.3, feedback="implicit", item_embeddings=embeddings())


class TestTUserCFPearsonRatingWeightedSuite(RetrieverSuite):
    cf_source = "t-usercf"

    def make(self):
        return TUserCF(
            k=10, mu=0.5, similarity="pearson", profile_weighting="rating", item_embeddings=embeddings()
        )


# ---------------------------------------------------------------------------- mu = 0
HISTORIES = [History(user_id="u4"), History(), History(items=["i5", "i6", COLD]), History(user_id="u9")]


def all_pairs(data):
    users = [str(u) for u in data.user_ids]
    items = [str(i) for i in data.item_ids]
    return [u for u in users for _ in items], items * len(users)


@pytest.mark.parametrize(
    ("plain", "text"),
    [
        (lambda: ItemCF(k=5), lambda e: TItemCF(k=5, mu=0.0, item_embeddings=e)),
        (
            lambda: ItemCF(k=6, similarity="adjusted_cosine", with_means=True),
            lambda e: TItemCF(k=6, similarity="adjusted_cosine", with_means=True, mu=0.0, item_embeddings=e),
        ),
        (lambda: UserCF(k=5, similarity="pearson"), lambda e: TUserCF(k=5, similarity="pearson", mu=0.0, item_embeddings=e)),
        (lambda: UserCF(k=4, feedback="implicit"), lambda e: TUserCF(k=4, feedback="implicit", mu=0.0, item_embeddings=e)),
    ],
)
def test_mu_zero_equals_plain_cf_exactly(plain, text):
    data = suite_dataset()
    a, b = plain().fit(data), text(embeddings()).fit(data)
    assert (a.neighbors_ != b.neighbors_).nnz == 0
    for ca, cb in zip(a.retrieve_batch(HISTORIES, n=12), b.retrieve_batch(HISTORIES, n=12), strict=True):
        assert [(c.item_id, c.score) for c in ca] == [(c.item_id, c.score) for c in cb]
        assert [c.source == "popular" for c in ca] == [c.source == "popular" for c in cb]
    if a.rating_scale is not None:
        users, items = all_pairs(data)
        pa, pb = a.predict_batch(users, items), b.predict_batch(users, items)
        np.testing.assert_array_equal(pa.values, pb.values)
        np.testing.assert_array_equal(pa.fallback, pb.fallback)
        np.testing.assert_array_equal(pa.n_neighbors, pb.n_neighbors)


# ---------------------------------------------------------------------------- mu = 1
def test_mu_one_titemcf_is_item_text_cosine():
    data, emb = suite_dataset(), embeddings()
    m = TItemCF(k=5, mu=1.0, item_embeddings=emb).fit(data)
    ids = [f"i{i}" for i in (0, 3, 7, 12, N_ITEMS)]
    for a in ids:
        for b in ids:
            want = 0.0 if a == b else float(unit(emb[a]) @ unit(emb[b]))
            assert m.similarity(a, b) == pytest.approx(want, abs=1e-5)
    # the stored neighbours of an item are its k best text matches
    row = m.neighbors_[m.item_idx("i3")]
    cos = {j: float(unit(emb["i3"]) @ unit(emb[j])) for j in emb if j != "i3"}
    best = sorted(cos, key=cos.get, reverse=True)[:5]
    assert {str(m.item_ids[c]) for c in row.indices} == {j for j in best if cos[j] > 0}


@pytest.mark.parametrize("weighting", ["mean", "rating"])
def test_mu_one_tusercf_is_profile_cosine(weighting):
    data, emb = suite_dataset(), embeddings()
    m = TUserCF(k=5, mu=1.0, profile_weighting=weighting, item_embeddings=emb).fit(data)

    def profile(uid: str) -> np.ndarray:
        h = data.history(uid)
        w = np.asarray(h.ratings, dtype=float) if weighting == "rating" else np.ones(len(h.items))
        return unit(sum(wi * unit(emb[i]) for wi, i in zip(w, h.items, strict=True)))

    for a, b in [("u0", "u1"), ("u3", "u17"), ("u5", "u39")]:
        assert m.similarity(a, b) == pytest.approx(float(profile(a) @ profile(b)), abs=1e-5)


def test_mixture_is_linear_in_mu():
    data, emb = suite_dataset(), embeddings()
    plain = ItemCF(k=5).fit(data)
    text = TItemCF(k=5, mu=1.0, item_embeddings=emb).fit(data)
    mixed = TItemCF(k=5, mu=0.3, item_embeddings=emb).fit(data)
    for a, b in [("i0", "i1"), ("i4", "i9"), ("i2", COLD)]:
        want = 0.7 * plain.similarity(a, b) + 0.3 * text.similarity(a, b)
        assert mixed.similarity(a, b) == pytest.approx(want, abs=1e-5)


# ---------------------------------------------------------------------------- cold items
def test_titemcf_finds_neighbours_for_an_item_with_no_ratings():
    data, emb = suite_dataset(), embeddings()
    assert COLD not in set(data.interactions["item_id"])
    plain = ItemCF(k=5).fit(data)
    text = TItemCF(k=5, mu=0.5, item_embeddings=emb).fit(data)
    # neighbours: plain ItemCF has none for the cold item, T-ItemCF finds i3 (its text twin)
    assert plain.neighbors_[plain.item_idx(COLD)].nnz == 0
    row = text.neighbors_[text.item_idx(COLD)]
    assert row.nnz > 0
    assert str(text.item_ids[row.indices[np.argmax(row.data)]]) == "i3"
    # rating prediction for a user who rated i3: a fallback for plain ItemCF, kNN for T-ItemCF
    raters = data.interactions.loc[data.interactions["item_id"] == "i3", "user_id"].tolist()
    user = str(raters[0])
    p_plain, p_text = plain.predict(user, COLD), text.predict(user, COLD)
    assert p_plain.fallback == "user_mean" and p_plain.n_neighbors == 0
    assert p_text.fallback == "none" and p_text.n_neighbors > 0
    # candidates: the cold item is a CF candidate (not popular fill) only for T-ItemCF
    def source_of(model, h):
        got = {c.item_id: c.source for c in model.retrieve(h, n=N_ITEMS + 1)}
        return got.get(COLD)

    h = History(user_id=None, items=["i3"])
    assert source_of(plain, h) == "popular"
    assert source_of(text, h) == "t-itemcf"
    # and it is i3's best-scoring candidate
    assert text.retrieve(h, n=1)[0].item_id == COLD


def test_tusercf_helps_a_user_with_one_rating():
    """A user whose only item has no co-raters gets no rating neighbours in UserCF but text
    neighbours in T-UserCF."""
    data, emb = suite_dataset(), embeddings()
    rows = data.interactions
    import pandas as pd

    extra = pd.DataFrame([{"user_id": "newbie", "item_id": COLD, "rating": 5, "timestamp": 10**6}])
    data2 = data.with_interactions(pd.concat([rows, extra], ignore_index=True))
    plain = UserCF(k=5).fit(data2)
    text = TUserCF(k=5, mu=0.5, item_embeddings=emb).fit(data2)
    assert plain.predict("newbie", "i3").fallback == "user_mean"
    assert text.predict("newbie", "i3").fallback == "none"
    assert {c.source for c in plain.retrieve(History(user_id="newbie"), n=5)} == {"popular"}
    assert "t-usercf" in {c.source for c in text.retrieve(History(user_id="newbie"), n=5)}


# ---------------------------------------------------------------------------- inputs
class _Encoder:
    def __init__(self, emb):
        self.emb = emb
        self.calls = 0

    def encode_items(self, ids):
        self.calls += 1
        return np.stack([self.emb[i] for i in ids])


def test_embedding_sources_are_equivalent():
    data, emb = suite_dataset(), embeddings()
    ids = list(emb)
    pair = (ids[::-1], np.stack([emb[i] for i in ids[::-1]]))
    enc = _Encoder(emb)
    models = [TItemCF(k=5, mu=0.4, item_embeddings=src).fit(data) for src in (emb, pair, enc)]
    assert enc.calls == 1
    for m in models[1:]:
        np.testing.assert_allclose(m.neighbors_.toarray(), models[0].neighbors_.toarray(), atol=1e-6)


def test_missing_embedding_is_a_zero_row():
    emb = embeddings()
    mat = align_embeddings({k: v for k, v in emb.items() if k != "i2"}, ["i1", "i2", "i3"])
    assert mat.shape == (3, 8)
    assert np.allclose(np.linalg.norm(mat, axis=1), [1.0, 0.0, 1.0])


def test_bad_embeddings_and_config():
    data = suite_dataset()
    with pytest.raises(ConfigError, match="item_embeddings"):
        TItemCF(k=5, mu=0.3).fit(data)
    with pytest.raises(ConfigError, match="mu"):
        TItemCF(k=5, mu=1.5, item_embeddings=embeddings())
    with pytest.raises(ConfigError):
        TUserCF(mu=0.2, nonsense=1, item_embeddings=embeddings())
    with pytest.raises(DataError):
        TItemCF(mu=0.2, item_embeddings=(["i1", "i2"], np.zeros((3, 4)))).fit(data)
    # mu = 0 needs no embeddings at all
    TItemCF(k=5, mu=0.0).fit(data)
    assert TItemCF(TItemCFConfig(mu=0.25), item_embeddings=embeddings()).mu == 0.25


def test_registry_builds_text_models():
    data, emb = suite_dataset(), embeddings()
    ctx = BuildContext(fit_data=data, item_embeddings=emb)
    m = RETRIEVERS.build({"type": "t-itemcf", "k": 5, "mu": 0.3}, ctx)
    assert isinstance(m, TItemCF) and m.config.mu == 0.3
    u = RETRIEVERS.build({"type": "t-usercf", "k": 5, "mu": 0.3}, ctx)
    assert isinstance(u, TUserCF)
    assert u.retrieve(History(user_id="u1"), n=3)


def test_centered_embeddings_mu_one():
    data, emb = suite_dataset(), embeddings()
    m = TItemCF(k=5, mu=1.0, center_embeddings=True, item_embeddings=emb).fit(data)
    units = {k: unit(v) for k, v in emb.items()}
    mean = np.mean(list(units.values()), axis=0)
    c = {k: unit(v - mean) for k, v in units.items()}
    for a, b in [("i0", "i1"), ("i3", COLD), ("i7", "i12")]:
        assert m.similarity(a, b) == pytest.approx(float(c[a] @ c[b]), abs=1e-5)
    u = TUserCF(k=5, mu=1.0, center_embeddings=True, item_embeddings=emb).fit(data)
    pa = unit(sum(c[i] for i in data.history("u0").items))
    pb = unit(sum(c[i] for i in data.history("u1").items))
    assert u.similarity("u0", "u1") == pytest.approx(float(pa @ pb), abs=1e-5)


def test_cold_item_with_means_uses_global_mean_base():
    data, emb = suite_dataset(), embeddings()
    m = TItemCF(k=5, mu=0.5, with_means=True, item_embeddings=emb).fit(data)
    raters = data.interactions.loc[data.interactions["item_id"] == "i3", "user_id"].tolist()
    p = m.predict(str(raters[0]), COLD)
    assert p.fallback == "none" and p.n_neighbors > 0
    assert 1.0 <= p.value <= 5.0
    # the base of a cold item is the global mean, not 0 (which would clip to the scale minimum)
    assert m.x_means[m.item_idx(COLD)] == pytest.approx(m.global_mean)
