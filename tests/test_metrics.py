"""Metric values checked against arithmetic done by hand (shown in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reranker.evaluation import metrics as M

L2 = math.log2

# Three users, K = 5 unless said otherwise.
#   u0: ranked a b c d e, relevant {b, d, z}   -> hits at ranks 2 and 4, 3 relevant (z never ranked)
#   u1: ranked f g h i j, relevant {f}         -> hit at rank 1
#   u2: ranked k l m n o, relevant {x}         -> no hit
RANKED = [list("abcde"), list("fghij"), list("klmno")]
RELEVANT = [{"b", "d", "z"}, {"f"}, {"x"}]


@pytest.fixture
def h5() -> M.HitMatrix:
    return M.hits_matrix(RANKED, RELEVANT, k=5)


def test_hit_matrix(h5: M.HitMatrix) -> None:
    assert h5.hits.tolist() == [
        [False, True, False, True, False],
        [True, False, False, False, False],
        [False, False, False, False, False],
    ]
    assert h5.n_relevant.tolist() == [3, 1, 1]
    assert h5.list_len.tolist() == [5, 5, 5]


def test_precision_recall_f1(h5: M.HitMatrix) -> None:
    # precision = hits / K: u0 2/5, u1 1/5, u2 0/5
    np.testing.assert_allclose(M.precision(h5), [0.4, 0.2, 0.0])
    # recall = hits / n_relevant: u0 2/3, u1 1/1, u2 0/1
    np.testing.assert_allclose(M.recall(h5), [2 / 3, 1.0, 0.0])
    # f1 = 2PR/(P+R): u0 2*0.4*(2/3)/(0.4+2/3) = (8/15)/(16/15) = 0.5
    #                 u1 2*0.2*1/(1.2) = 1/3 ; u2 P=R=0 -> 0
    np.testing.assert_allclose(M.f1(h5), [0.5, 1 / 3, 0.0])


def test_ndcg(h5: M.HitMatrix) -> None:
    # u0: DCG = 1/log2(3) + 1/log2(5); ideal has min(3,5)=3 hits: 1/log2(2)+1/log2(3)+1/log2(4)
    u0 = (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3) + 0.5)
    # u1: hit at rank 1 with one relevant item -> 1/1 = 1 ; u2: 0
    np.testing.assert_allclose(M.ndcg(h5), [u0, 1.0, 0.0])
    assert M.ndcg(h5)[0] == pytest.approx(0.4982, abs=1e-4)  # (0.6309+0.4307)/2.1309 = 1.0616/2.1309


def test_hr_mrr(h5: M.HitMatrix) -> None:
    np.testing.assert_allclose(M.hit_rate(h5), [1.0, 1.0, 0.0])
    # first hit: u0 at rank 2 -> 1/2 ; u1 rank 1 -> 1 ; u2 none -> 0
    np.testing.assert_allclose(M.mrr(h5), [0.5, 1.0, 0.0])


def test_cutoff_at_smaller_k(h5: M.HitMatrix) -> None:
    h2 = h5.at(2)
    # top-2 of u0 is a b: one hit; ideal with min(3,2)=2 hits = 1 + 1/log2(3)
    np.testing.assert_allclose(M.ndcg(h2)[0], (1 / L2(3)) / (1 + 1 / L2(3)))
    np.testing.assert_allclose(M.recall(h2), [1 / 3, 1.0, 0.0])
    np.testing.assert_allclose(M.precision(h2), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError):
        h5.at(6)


def test_ranking_metrics_keys_and_values() -> None:
    out = M.ranking_metrics(RANKED, RELEVANT, ks=(1, 5))
    assert set(out) == {f"{m}@{k}" for m in ("precision", "recall", "f1", "ndcg", "hr", "mrr") for k in (1, 5)}
    # @1: only u1 has its relevant item first
    np.testing.assert_allclose(out["hr@1"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(out["ndcg@1"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(out["mrr@5"], [0.5, 1.0, 0.0])
    with pytest.raises(ValueError, match="unknown metric"):
        M.ranking_metrics(RANKED, RELEVANT, metrics=("auc",))


def test_no_relevant_item_is_nan_for_every_relevance_metric() -> None:
    h = M.hits_matrix([["a", "b"], ["a", "b"]], [set(), {"a"}], k=2)
    for fn in (M.precision, M.recall, M.f1, M.ndcg, M.hit_rate, M.mrr):
        v = fn(h)
        assert np.isnan(v[0]), fn.__name__
        assert v[1] == pytest.approx({"precision": 0.5}.get(fn.__name__, 1.0 if fn is not M.f1 else 2 / 3))
    # f1 for u1: P = 1/2, R = 1 -> 2*0.5/(1.5) = 2/3 (checked in the loop above)


def test_k_larger_than_list_and_empty_lists() -> None:
    # u0 list has 2 items, K = 4; u1 list empty; relevant {b} and {a}
    h = M.hits_matrix([["a", "b"], []], [{"b"}, {"a"}], k=4)
    assert h.hits.shape == (2, 4)
    assert h.list_len.tolist() == [2, 0]
    # u0: precision divides by K: 1/4; recall 1/1; ndcg = (1/log2(3)) / 1 ; mrr 1/2
    np.testing.assert_allclose(M.precision(h), [0.25, 0.0])
    np.testing.assert_allclose(M.recall(h), [1.0, 0.0])
    np.testing.assert_allclose(M.ndcg(h), [1 / L2(3), 0.0])
    np.testing.assert_allclose(M.mrr(h), [0.5, 0.0])
    # no users at all
    h0 = M.hits_matrix([], [], k=3)
    assert h0.hits.shape == (0, 3)
    assert M.ndcg(h0).shape == (0,)


def test_numpy_array_input_with_int_ids_and_duplicates() -> None:
    ranked = np.array([[3, 1, 3, 2], [7, 8, 9, 10]])
    # u0: relevant {"3"} given as str: matches int 3; the duplicate 3 at rank 3 is not a 2nd hit
    h = M.hits_matrix(ranked, [{"3"}, ["10", 8]], k=4)
    assert h.hits.tolist() == [[True, False, False, False], [False, True, False, True]]
    # u1: hits at ranks 2 and 4, 2 relevant: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    np.testing.assert_allclose(M.ndcg(h)[1], (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3)))
    # a single string counts as a one-item relevant set
    h1 = M.hits_matrix(ranked, ["3", "9"], k=2)
    assert h1.n_relevant.tolist() == [1, 1]
    assert M.hit_rate(h1).tolist() == [1.0, 0.0]


def test_accepts_rankings_and_candidates() -> None:
    from reranker.types import Candidate, Ranking

    r = Ranking.from_order(["b", "a", "c"])
    cands = [Candidate("c"), Candidate("a")]
    h = M.hits_matrix([r, cands], [{"a"}, {"a"}], k=3)
    # u0: a at rank 2 -> MRR 1/2 ; u1: a at rank 2 of a 2-item list -> 1/2
    assert h.hits.tolist() == [[False, True, False], [False, True, False]]
    assert h.list_len.tolist() == [3, 2]


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="one per user"):
        M.hits_matrix([["a"]], [{"a"}, {"b"}], k=1)


def test_mae_rmse() -> None:
    # errors: 1-2=-1, 3-3=0, 5-2=3 -> MAE (1+0+3)/3 = 4/3 ; RMSE sqrt((1+0+9)/3) = sqrt(10/3)
    assert M.mae([1, 3, 5], [2, 3, 2]) == pytest.approx(4 / 3)
    assert M.rmse([1, 3, 5], [2, 3, 2]) == pytest.approx(math.sqrt(10 / 3))
    assert math.isnan(M.mae([], []))
    with pytest.raises(ValueError):
        M.rmse([1, 2], [1])


CATS = {"a": "books", "b": "books", "c": "toys", "d": "kitchen", "e": None}


def test_item_and_category_coverage() -> None:
    ranked = [["a", "b"], ["b", "c", "d"]]
    # top-2: {a, b} u {b, c} = 3 distinct items of a 10-item catalog -> 0.3
    assert M.item_coverage(ranked, 10, k=2) == pytest.approx(0.3)
    assert M.item_coverage(ranked, list("abcdefghij"), k=3) == pytest.approx(0.4)
    # categories known: books, toys, kitchen (3). top-2 shows books, toys -> 2/3
    assert M.category_coverage(ranked, CATS, k=2) == pytest.approx(2 / 3)
    assert M.category_coverage(ranked, CATS, k=3) == pytest.approx(1.0)
    assert M.category_coverage(ranked, CATS, k=3, n_categories=6) == pytest.approx(0.5)


def test_intra_list_diversity_categories() -> None:
    ranked = [["a", "b", "c"], ["a", "c", "d"], ["a", "b"], ["a", "e"], []]
    ild = M.intra_list_diversity(ranked, CATS, k=3)
    # u0: pairs (a,b) same, (a,c) diff, (b,c) diff -> 2/3
    # u1: books, toys, kitchen: all 3 pairs differ -> 1
    # u2: a,b both books -> 0
    # u3: e has no category -> only one categorised item -> NaN ; u4 empty -> NaN
    np.testing.assert_allclose(ild[:3], [2 / 3, 1.0, 0.0])
    assert np.isnan(ild[3]) and np.isnan(ild[4])


def test_embedding_diversity() -> None:
    ids = ["x", "y", "z"]
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # cos(x,y)=0, cos(x,z)=1/sqrt2, cos(y,z)=1/sqrt2 (scale of y irrelevant)
    # u0 [x,y,z]: mean(1-0, 1-1/sqrt2, 1-1/sqrt2) = (3 - 2/sqrt2)/3 = (3 - sqrt2)/3
    # u1 [x,x]: 1-1 = 0 ; u2 [x, unknown]: one embedded item -> NaN
    out = M.embedding_diversity([["x", "y", "z"], ["x", "x"], ["x", "q"]], emb, ids, k=3, chunk_users=2)
    np.testing.assert_allclose(out[:2], [(3 - math.sqrt(2)) / 3, 0.0], atol=1e-12)
    assert np.isnan(out[2])
    with pytest.raises(ValueError):
        M.embedding_diversity([["x"]], emb[:2], ids, k=1)


def test_novelty() -> None:
    interactions = ["a"] * 6 + ["b"] * 2
    pop = M.popularity_counts(interactions)
    assert pop == {"a": 6, "b": 2}
    # total 8: -log2(6/8) = 0.41504 ; -log2(2/8) = 2 ; unseen item c counts as 1: -log2(1/8) = 3
    out = M.novelty([["a", "b"], ["c"], []], pop, k=2)
    np.testing.assert_allclose(out[:2], [(-L2(6 / 8) + 2.0) / 2, 3.0])
    assert np.isnan(out[2])
    # explicit total (e.g. number of users = 16): u1 c -> -log2(1/16) = 4
    assert M.novelty([["c"]], pop, k=1, total=16)[0] == pytest.approx(4.0)


def test_bootstrap_ci() -> None:
    v = np.array([0.0, 1.0, 0.0, 1.0, np.nan])
    mean, lo, hi = M.bootstrap_ci(v, n_boot=2000, seed=1)
    # NaN dropped: mean of 0,1,0,1 = 0.5 ; resampled means lie in [0, 1] around 0.5
    assert mean == pytest.approx(0.5)
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert M.bootstrap_ci(v, n_boot=2000, seed=1) == (mean, lo, hi)  # seeded
    # constant values: zero-width interval
    assert M.bootstrap_ci([0.3] * 10) == pytest.approx((0.3, 0.3, 0.3))
    assert all(math.isnan(x) for x in M.bootstrap_ci([np.nan]))
    # wider alpha -> narrower interval
    _, lo2, hi2 = M.bootstrap_ci(np.arange(50.0), alpha=0.5, seed=0)
    _, lo1, hi1 = M.bootstrap_ci(np.arange(50.0), alpha=0.05, seed=0)
    assert lo1 < lo2 < 24.5 < hi2 < hi1


def test_summarize() -> None:
    per_user = M.ranking_metrics(RANKED, RELEVANT, ks=(5,), metrics=("ndcg", "hr"))
    per_user["with_nan"] = np.array([1.0, np.nan, 3.0])
    df = M.summarize(per_user, n_boot=200)
    assert list(df.columns) == ["mean", "ci_lo", "ci_hi", "n"]
    # hr@5 = mean(1, 1, 0) = 2/3
    assert df.loc["hr@5", "mean"] == pytest.approx(2 / 3)
    assert df.loc["with_nan", "mean"] == pytest.approx(2.0)
    assert df.loc["with_nan", "n"] == 2
    assert (df["ci_lo"] <= df["mean"]).all() and (df["mean"] <= df["ci_hi"]).all()
    # rows resampled jointly equal the single-metric bootstrap with the same seed
    for name in per_user:
        assert tuple(df.loc[name, ["mean", "ci_lo", "ci_hi"]]) == pytest.approx(
            M.bootstrap_ci(per_user[name], n_boot=200), nan_ok=True
        )
    empty = M.summarize({"all_nan": np.array([np.nan, np.nan])})
    assert empty.loc["all_nan", "n"] == 0 and np.isnan(empty.loc["all_nan", "mean"])


def test_paired_difference_ci() -> None:
    a = np.array([1.0, 1.0, 0.0, 1.0, np.nan, 1.0])
    b = np.array([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    # differences 1, 0, 0, 1, (dropped), 1 -> mean 3/5
    mean, lo, hi = M.paired_difference_ci(a, b, n_boot=500)
    assert mean == pytest.approx(0.6)
    assert 0.0 <= lo <= 0.6 <= hi <= 1.0
    with pytest.raises(ValueError, match="pair"):
        M.paired_difference_ci(a, b[:3])


def test_vectorised_matches_loop_on_random_data() -> None:
    rng = np.random.default_rng(0)
    n, k = 200, 10
    ranked = [[str(i) for i in rng.permutation(50)[:k]] for _ in range(n)]
    relevant = [{str(i) for i in rng.choice(50, size=rng.integers(1, 6), replace=False)} for _ in range(n)]
    h = M.hits_matrix(ranked, relevant, k)
    ref = []
    for r, g in zip(ranked, relevant, strict=True):
        dcg = sum(1 / L2(i + 2) for i, x in enumerate(r) if x in g)
        idcg = sum(1 / L2(i + 2) for i in range(min(len(g), k)))
        ref.append(dcg / idcg)
    np.testing.assert_allclose(M.ndcg(h), ref)
