"""ItemCF / UserCF: the shared retriever suite, the two prediction formulas against a
hand-computed example, every fallback, similarities against a loop reference, and
vectorised batch == single predictions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from retrieval_suite import RetrieverSuite, suite_dataset

from reranker.data.dataset import Dataset
from reranker.errors import ConfigError, DataError, ModelError
from reranker.retrieval import ItemCF, ItemCFConfig, UserCF, UserCFConfig
from reranker.types import History


# ---------------------------------------------------------------------------- the suite
class TestItemCFImplicitSuite(RetrieverSuite):
    cf_source = "itemcf"

    def make(self):
        return ItemCF(k=5, feedback="implicit")


class TestItemCFExplicitAdjustedSuite(RetrieverSuite):
    cf_source = "itemcf"

    def make(self):
        return ItemCF(k=8, similarity="adjusted_cosine", shrinkage=2.0)


class TestUserCFImplicitSuite(RetrieverSuite):
    cf_source = "usercf"

    def make(self):
        return UserCF(k=5, feedback="implicit")


class TestUserCFPearsonSuite(RetrieverSuite):
    cf_source = "usercf"

    def make(self):
        return UserCF(k=10, similarity="pearson", min_support=2)


# ---------------------------------------------------------------------------- hand example
# The seed-paper style table (4 users x 5 items, '-' = unrated; i5 was rated by nobody):
#
#            i1  i2  i3  i4  i5
#   alice     5   3   4   -   -
#   bob       3   1   2   3   -
#   carol     4   3   4   5   -
#   dave      1   5   5   2   -
#
# Target: alice's rating of i4.
def table() -> Dataset:
    r = {
        "alice": {"i1": 5, "i2": 3, "i3": 4},
        "bob": {"i1": 3, "i2": 1, "i3": 2, "i4": 3},
        "carol": {"i1": 4, "i2": 3, "i3": 4, "i4": 5},
        "dave": {"i1": 1, "i2": 5, "i3": 5, "i4": 2},
    }
    rows = [{"user_id": u, "item_id": i, "rating": v} for u, d in r.items() for i, v in d.items()]
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4", "i5"], "title": ["A", "B", "C", "D", "E"]})
    return Dataset(pd.DataFrame(rows), items, name="table")


S3 = math.sqrt(3) / 2  # 0.8660


def test_usercf_pearson_similarities_by_hand():
    m = UserCF(k=2, similarity="pearson").fit(table())
    # co-rated items of alice and bob: i1..i3. alice (5,3,4) - 4 = (1,-1,0); bob (3,1,2) - 2 =
    # (1,-1,0): pearson = 2 / (sqrt 2 * sqrt 2) = 1
    assert m.similarity("alice", "bob") == pytest.approx(1.0)
    # carol (4,3,4) - 11/3 = (1/3,-2/3,1/3): num = 1/3 + 2/3 = 1,
    # den = sqrt 2 * sqrt(6/9) = 1.1547 -> 0.8660 (= sqrt 3 / 2)
    assert m.similarity("alice", "carol") == pytest.approx(S3)
    # dave (1,5,5) - 11/3 = (-8/3,4/3,4/3): num = -8/3 - 4/3 = -4,
    # den = sqrt 2 * sqrt(96/9) = 4.6188 -> -0.8660
    assert m.similarity("alice", "dave") == pytest.approx(-S3)
    assert m.similarity("alice", "alice") == 0.0


def test_usercf_prediction_formula_by_hand():
    m = UserCF(k=2, similarity="pearson").fit(table())
    # raters of i4: bob (w=1), carol (w=.866), dave (w=-.866); the k=2 most similar: bob, carol.
    # means over all their ratings: alice 12/3 = 4, bob 9/4 = 2.25, carol 16/4 = 4.
    # p = 4 + [1 * (3 - 2.25) + .866 * (5 - 4)] / (1 + .866) = 4 + 1.6160 / 1.8660 = 4.8660
    p = m.predict("alice", "i4")
    assert p.value == pytest.approx(4 + (0.75 + S3) / (1 + S3)) == pytest.approx(4.866025, abs=1e-6)
    assert p.fallback == "none" and p.n_neighbors == 2
    assert m.predict_rating("alice", "i4") == p.value


def test_usercf_negative_weights_use_abs_denominator():
    m = UserCF(k=3, similarity="pearson", positive_only=False).fit(table())
    # adds dave: w = -.866, mean 13/4 = 3.25, term -.866 * (2 - 3.25) = +1.0825
    # p = 4 + (0.75 + .866 + 1.0825) / (1 + .866 + .866) = 4 + 2.6986 / 2.7321 = 4.9877
    p = m.predict("alice", "i4")
    assert p.value == pytest.approx(4.987740, abs=1e-6)
    assert p.n_neighbors == 3
    # the default (positive_only) ignores dave even with k=3
    assert UserCF(k=3, similarity="pearson").fit(table()).predict("alice", "i4").n_neighbors == 2


def test_itemcf_prediction_formula_by_hand():
    m = ItemCF(k=2, similarity="cosine").fit(table())
    # item vectors over users (bob, carol, dave; alice did not rate i4):
    # i4 = (3,5,2), |i4| = sqrt 38 = 6.1644
    # cos(i4,i1) = (9+20+2) / (6.1644 * sqrt 51)  = 31 / 44.023 = 0.70418
    # cos(i4,i2) = (3+15+10) / (6.1644 * sqrt 44) = 28 / 40.890 = 0.68476
    # cos(i4,i3) = (6+20+10) / (6.1644 * sqrt 61) = 36 / 48.145 = 0.74773
    assert m.similarity("i4", "i1") == pytest.approx(0.704182, abs=1e-5)
    assert m.similarity("i4", "i2") == pytest.approx(0.684762, abs=1e-5)
    assert m.similarity("i4", "i3") == pytest.approx(0.747732, abs=1e-5)
    # alice rated i1=5, i2=3, i3=4; the k=2 most similar to i4: i3, i1
    # p = (4 * .74773 + 5 * .70418) / (.74773 + .70418) = 6.5119 / 1.4519 = 4.4850
    p = m.predict("alice", "i4")
    assert p.value == pytest.approx(4.485003, abs=1e-5)
    assert p.fallback == "none" and p.n_neighbors == 2
    # k=3: (5 * .70418 + 3 * .68476 + 4 * .74773) / 2.13667 = 4.0091
    assert ItemCF(k=3).fit(table()).predict_rating("alice", "i4") == pytest.approx(4.009089, abs=1e-5)


def test_fallback_user_mean_and_global_mean():
    ds = table()
    for m in (UserCF(k=2, similarity="pearson").fit(ds), ItemCF(k=2).fit(ds)):
        # i5 was rated by nobody: no neighbour -> alice's mean 12/3 = 4
        p = m.predict("alice", "i5")
        assert (p.value, p.fallback, p.n_neighbors) == (4.0, "user_mean", 0)
        # an unknown user -> the global mean (5+3+4 + 3+1+2+3 + 4+3+4+5 + 1+5+5+2) / 15 = 50/15
        p = m.predict("zoe", "i4")
        assert p.fallback == "global_mean"
        assert p.value == pytest.approx(50 / 15)


def test_fallback_when_only_negative_neighbours():
    # user x rates i1..i3 like dave (1,5,5): pearson w(x,dave) = 1, w(x,bob) = -4 / (sqrt(96/9)
    # * sqrt 2) < 0, w(x,carol) = (-8/9 - 8/9 + 4/9) / ... < 0. Without dave, every rater of i4
    # is a negative neighbour -> no qualifying neighbour -> x's mean (1+5+5)/3 = 11/3.
    ds = table()
    extra = pd.DataFrame({"user_id": ["x", "x", "x"], "item_id": ["i1", "i2", "i3"], "rating": [1, 5, 5]})
    ds2 = Dataset(pd.concat([ds.interactions, extra], ignore_index=True), ds.items)
    m = UserCF(k=5, similarity="pearson").fit(ds2)
    # x = (1,5,5) like dave (w=1); raters of i4: bob (w=-.866), carol (w=-.866... ), dave (w=1)
    assert m.predict("x", "i4").n_neighbors >= 1
    m_neg = UserCF(k=5, similarity="pearson").fit(ds2.with_interactions(ds2.interactions[ds2.interactions.user_id != "dave"]))
    p = m_neg.predict("x", "i4")
    assert p.fallback == "user_mean" and p.value == pytest.approx(11 / 3)


def test_prediction_is_clipped_to_the_rating_scale():
    ds = table()
    extra = pd.DataFrame({"user_id": ["eve"] * 3, "item_id": ["i1", "i2", "i3"], "rating": [5, 5, 5]})
    ds2 = Dataset(pd.concat([ds.interactions, extra], ignore_index=True), ds.items)
    m = UserCF(k=3, similarity="cosine").fit(ds2)
    # eve's mean is 5 and carol rated i4 above her own mean: 5 + positive -> clipped to 5
    p = m.predict("eve", "i4")
    assert p.value == 5.0 and p.fallback == "none"


def test_recommend_if():
    m = UserCF(k=2, similarity="pearson").fit(table())
    assert m.recommend_if("alice", "i4", 4.5)  # unrated, predicted 4.87
    assert not m.recommend_if("alice", "i4", 4.9)
    assert not m.recommend_if("alice", "i1", 1.0)  # already rated


def test_unknown_item_and_implicit_prediction_errors():
    m = ItemCF(k=2).fit(table())
    with pytest.raises(DataError, match="unknown item id 'nope'"):
        m.predict("alice", "nope")
    imp = ItemCF(k=2, feedback="implicit").fit(table())
    with pytest.raises(ModelError, match="explicit"):
        imp.predict("alice", "i4")


def test_config_errors():
    with pytest.raises(ConfigError, match="similarity"):
        UserCF(similarity="adjusted_cosine")
    with pytest.raises(ConfigError, match="k"):
        ItemCF(k=0)
    with pytest.raises(ConfigError, match="unknown key"):
        ItemCF(neighbours=3)
    with pytest.raises(ConfigError, match="needs ratings"):
        ItemCF(similarity="pearson", feedback="implicit").fit(table())
    no_ratings = Dataset(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}))
    with pytest.raises(ConfigError, match="rating column"):
        ItemCF(feedback="explicit").fit(no_ratings)
    # the default feedback "auto" is implicit without ratings, explicit with them
    assert ItemCF().fit(no_ratings).feedback_ == "implicit"
    assert ItemCF().fit(table()).feedback_ == "explicit"
    assert ItemCF(config=ItemCFConfig(k=3)).config.k == 3
    assert UserCF(config=UserCFConfig(similarity="pearson")).config.similarity == "pearson"


# ---------------------------------------------------------------------------- references
def _dense(ds: Dataset, item_based: bool) -> np.ndarray:
    """x-by-y rating matrix with NaN for missing (x = items if item_based else users)."""
    piv = ds.interactions.pivot_table(index="user_id", columns="item_id", values="rating")
    piv = piv.reindex(columns=ds.item_ids)
    m = piv.to_numpy(dtype=float)
    return (m.T if item_based else m), list(piv.index)


def _ref_sim(a: np.ndarray, b: np.ndarray, kind: str, norm: str) -> float:
    co = ~np.isnan(a) & ~np.isnan(b)
    if not co.any():
        return 0.0
    if kind == "pearson":
        x, y = a[co] - a[co].mean(), b[co] - b[co].mean()
        den = math.sqrt((x * x).sum() * (y * y).sum())
        return 0.0 if den < 1e-9 else float((x * y).sum() / den)
    if norm == "co_rated":
        x, y = a[co], b[co]
        return float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum()))
    fa, fb = np.nan_to_num(a), np.nan_to_num(b)
    return float((fa * fb).sum() / (np.linalg.norm(fa) * np.linalg.norm(fb)))


@pytest.mark.parametrize(
    "cls,kind,norm",
    [
        (UserCF, "cosine", "full"),
        (UserCF, "cosine", "co_rated"),
        (UserCF, "pearson", "full"),
        (ItemCF, "cosine", "full"),
        (ItemCF, "cosine", "co_rated"),
        (ItemCF, "pearson", "full"),
        (ItemCF, "adjusted_cosine", "full"),
    ],
)
def test_similarities_match_loop_reference(cls, kind, norm):
    ds = suite_dataset(3)
    m = cls(k=5, similarity=kind, cosine_norm=norm).fit(ds)
    item_based = cls is ItemCF
    X, users = _dense(ds, item_based)
    ids = list(ds.item_ids) if item_based else users
    if kind == "adjusted_cosine":
        user_means = np.nanmean(_dense(ds, False)[0], axis=1)  # per user
        X = X - user_means[None, :]
        kind = "cosine"
    rng = np.random.default_rng(0)
    for _ in range(60):
        a, b = rng.choice(len(ids), 2, replace=False)
        ref = _ref_sim(X[a], X[b], kind, norm)
        assert m.similarity(ids[a], ids[b]) == pytest.approx(ref, abs=1e-5), (ids[a], ids[b])


def test_min_support_and_shrinkage():
    ds = suite_dataset(3)
    base = UserCF(k=5).fit(ds)
    X, users = _dense(ds, False)
    shr = UserCF(k=5, shrinkage=4.0).fit(ds)
    sup = UserCF(k=5, min_support=3).fit(ds)
    for a, b in [(0, 1), (2, 9), (5, 30), (11, 12)]:
        n_co = int((~np.isnan(X[a]) & ~np.isnan(X[b])).sum())
        s = base.similarity(users[a], users[b])
        assert shr.similarity(users[a], users[b]) == pytest.approx(s * n_co / (n_co + 4.0), abs=1e-6)
        assert sup.similarity(users[a], users[b]) == pytest.approx(s if n_co >= 3 else 0.0, abs=1e-6)


def _ref_predict(m, X, x_ids, y_ids, x, y, k, with_means, user_mean, global_mean):
    """Loop reference of the KNNWithMeans-style rule (k most similar among raters of y)."""
    col = X[:, y]
    raters = [j for j in range(X.shape[0]) if j != x and not np.isnan(col[j])]
    sims = [(m.similarity(x_ids[x], x_ids[j]), j) for j in raters]
    sims = [(w, j) for w, j in sims if w > 0]
    sims.sort(key=lambda t: -t[0])
    top = sims[:k]
    if not top:
        return user_mean
    means = np.nanmean(X, axis=1)
    num = sum(w * (col[j] - (means[j] if with_means else 0.0)) for w, j in top)
    den = sum(abs(w) for w, _ in top)
    return float(np.clip((means[x] if with_means else 0.0) + num / den, 1, 5))


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("cls", [UserCF, ItemCF])
def test_batch_predictions_match_loop_reference_and_single(cls):
    ds = suite_dataset(5)
    m = cls(k=4, similarity="pearson" if cls is UserCF else "cosine").fit(ds)
    item_based = cls is ItemCF
    X, users = _dense(ds, item_based)
    R, _ = _dense(ds, False)
    items = list(ds.item_ids)
    rng = np.random.default_rng(1)
    pairs = [(users[rng.integers(len(users))], items[rng.integers(len(items))]) for _ in range(80)]
    batch = m.predict_batch([p[0] for p in pairs], [p[1] for p in pairs])
    gmean = float(ds.interactions["rating"].mean())
    for n, (u, i) in enumerate(pairs):
        single = m.predict(u, i)
        assert single.value == pytest.approx(batch.values[n])
        assert single.fallback == batch.fallback[n] and single.n_neighbors == batch.n_neighbors[n]
        ui, ii = users.index(u), items.index(i)
        umean = float(np.nanmean(R[ui]))
        x, y = (ii, ui) if item_based else (ui, ii)
        x_ids = items if item_based else users
        ref = _ref_predict(m, X, x_ids, None, x, y, 4, not item_based, umean, gmean)
        assert batch.values[n] == pytest.approx(ref, abs=1e-6), (u, i)


def test_retrieval_scores_by_hand():
    # implicit ItemCF on the table: alice's candidates are i4 (the only unseen rated item);
    # score(i4) = sum over alice's items of sim(j, i4) with binary cosine:
    # i1..i3 are rated by all 4 users, i4 by 3 of them: cos = 3 / (2 * sqrt 3) = 0.8660 each
    m = ItemCF(k=3, feedback="implicit").fit(table())
    cands = m.retrieve(History(user_id="alice"), n=2)
    assert cands[0].item_id == "i4" and cands[0].source == "itemcf"
    assert cands[0].score == pytest.approx(3 * S3, abs=1e-5)
    assert cands[1].item_id == "i5" and cands[1].source == "popular" and cands[1].score == 0.0
    # an ad-hoc history of the same items gives the same CF scores
    adhoc = m.retrieve(History(items=["i1", "i2", "i3"]), n=1)
    assert adhoc == cands[:1]


def test_usercf_ad_hoc_history_finds_similar_users():
    ds = table()
    m = UserCF(k=1, similarity="pearson").fit(ds)
    # an ad-hoc user rating like dave (1,5,5) -> nearest user is dave -> candidate i4
    cands = m.retrieve(History(items=["i1", "i2", "i3"], ratings=[1, 5, 5]), n=1)
    assert cands[0].item_id == "i4" and cands[0].source == "usercf"
    assert cands[0].score == pytest.approx(1.0 * 2)  # w(adhoc, dave) = 1, r(dave, i4) = 2


@pytest.mark.parametrize("cls,opts", [(UserCF, {"similarity": "pearson"}), (ItemCF, {"similarity": "cosine"}),
                                      (ItemCF, {"similarity": "adjusted_cosine", "positive_only": False})])
def test_sparse_similarity_path_matches_dense(monkeypatch, cls, opts):
    """Large problems keep the similarity sparse and predict with the flat (pair, neighbour)
    path; forced here on small data, it must agree with the dense path."""
    import reranker.retrieval.knn as knn

    ds = suite_dataset(11)
    dense = cls(k=4, **opts).fit(ds)
    monkeypatch.setattr(knn, "_DENSE_SIM_CELLS", 0)
    sparse = cls(k=4, **opts).fit(ds)
    assert not isinstance(sparse._sim_full, np.ndarray)
    users = list(ds.user_ids) * 2
    items = [ds.item_ids[(7 * n) % len(ds.item_ids)] for n in range(len(users))]
    a, b = dense.predict_batch(users, items), sparse.predict_batch(users, items)
    np.testing.assert_allclose(a.values, b.values, atol=1e-5)
    assert (a.fallback == b.fallback).all()
    hs = [History(user_id=u) for u in list(ds.user_ids)[:10]]
    assert [[c.item_id for c in x] for x in dense.retrieve_batch(hs, 5)] == [
        [c.item_id for c in x] for x in sparse.retrieve_batch(hs, 5)
    ]
