"""The generated demo world: determinism, structure, ground truth and the click model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reranker.data.dataset import Dataset
from reranker.data.synthetic import World, WorldConfig, generate_world
from reranker.errors import ConfigError


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(seed=0)


FRAMES = ("items", "users", "interactions", "reviews")


def test_same_seed_same_world_different_seed_different_world() -> None:
    a = generate_world(seed=3, n_users=80, n_items=60)
    b = generate_world(seed=3, n_users=80, n_items=60)
    c = generate_world(seed=4, n_users=80, n_items=60)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert not a.interactions.equals(c.interactions)
    assert not a.items.equals(c.items)
    ids = list(a.item_ids[:5])
    np.testing.assert_array_equal(a.affinity("U00", ids), b.affinity("U00", ids))


def test_default_size_and_categories(world: World) -> None:
    assert len(world.users) == 500 and len(world.items) == 400
    assert world.items["category"].nunique() >= 8
    assert world.dataset.describe()["categories"] >= 8
    assert world.items["item_id"].is_unique and world.users["user_id"].is_unique


def test_ids_are_strings(world: World) -> None:
    for frame, col in [
        (world.items, "item_id"),
        (world.users, "user_id"),
        (world.interactions, "user_id"),
        (world.interactions, "item_id"),
        (world.reviews, "item_id"),
        (world.reviews, "user_id"),
    ]:
        assert frame[col].map(type).eq(str).all(), (col, frame[col].head())


def test_catalog_is_realistic(world: World) -> None:
    items = world.items
    # titles begin with the brand and are unique; every item has a description
    assert all(t.startswith(b) for t, b in zip(items["title"], items["brand"], strict=True))
    assert items["title"].is_unique
    assert (items["text"].str.len() > 40).all()
    assert set(items["price_band"]) == {"budget", "mid", "premium"}
    assert (items["price"] > 0).all()
    # within a category, price bands are ordered by price
    for _, g in items.groupby("category"):
        mean = g.groupby("price_band")["price"].mean()
        assert mean["budget"] < mean["mid"] < mean["premium"]
    # colours where sensible: clothing has them, books do not
    assert items.loc[items["category"] == "Clothing", "color"].notna().all()
    assert items.loc[items["category"] == "Books", "color"].isna().all()


def test_every_user_buys_at_least_three_distinct_items(world: World) -> None:
    counts = world.interactions.groupby("user_id").size()
    assert len(counts) == len(world.users)
    assert counts.min() >= 3
    assert not world.interactions.duplicated(["user_id", "item_id"]).any()
    np.testing.assert_array_equal(
        counts.reindex(world.users["user_id"]).to_numpy(), world.users["n_purchases"].to_numpy()
    )


def test_timestamps_strictly_increase_per_user_within_a_year(world: World) -> None:
    df = world.interactions
    diffs = df.groupby("user_id", sort=False)["timestamp"].diff().dropna()
    assert (diffs > 0).all()
    start = pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    assert df["timestamp"].min() >= start
    assert df["timestamp"].max() <= start + 366 * 86400


def test_ratings_are_1_to_5_and_follow_affinity(world: World) -> None:
    r = world.interactions["rating"]
    assert set(r.unique()) <= {1, 2, 3, 4, 5}
    assert 3.5 < r.mean() < 4.5  # e-commerce ratings skew positive
    df = world.interactions.head(3000)
    z = np.concatenate([world.affinity_z(u, g["item_id"].tolist()) for u, g in df.groupby("user_id", sort=False)])
    ratings = np.concatenate([g["rating"].to_numpy() for _, g in df.groupby("user_id", sort=False)])
    assert np.corrcoef(z, ratings)[0, 1] > 0.4  # ~0.73 for the default world


def test_bought_items_have_higher_affinity_than_random_items(world: World) -> None:
    aff = world.affinity_matrix(world.user_ids)  # (users, items), catalog order
    u = pd.Index(world.user_ids).get_indexer(world.interactions["user_id"])
    i = pd.Index(world.item_ids).get_indexer(world.interactions["item_id"])
    bought_mean = np.bincount(u, weights=aff[u, i]) / np.bincount(u)
    catalog_mean = aff.mean(axis=1)
    assert (bought_mean > catalog_mean).mean() > 0.95
    # the per-user call agrees with the matrix
    np.testing.assert_allclose(world.affinity("U010", list(world.item_ids)), aff[10])


def test_affinity_shape_and_unknown_ids(world: World) -> None:
    a = world.affinity("U001", ["P000", "P001", "P002"])
    assert a.shape == (3,) and np.isfinite(a).all()
    m = world.affinity_matrix(["U002", "U001"], ["P000", "P001", "P002"])
    np.testing.assert_allclose(m[1], a)
    assert world.affinity_matrix(["U001"]).shape == (1, len(world.items))
    with pytest.raises(KeyError, match="unknown user"):
        world.affinity("nobody", ["P000"])
    with pytest.raises(KeyError, match="unknown item"):
        world.affinity("U001", ["P000", "nope"])


def test_clicks_are_more_likely_at_top_positions(world: World) -> None:
    rng = np.random.default_rng(1)
    ids = world.item_ids
    clicks = np.array(
        [world.simulate_clicks(u, list(rng.permutation(ids)[:10]), seed=7) for u in world.user_ids]
    )
    by_pos = clicks.mean(axis=0)
    # examination 1/log2(r+1): rank 1 -> 1.0, rank 10 -> 0.29, on shuffled lists
    assert by_pos[:3].mean() > 1.5 * by_pos[-3:].mean()
    assert by_pos[0] > by_pos[-1]


def test_same_seed_same_clicks(world: World) -> None:
    ranked = list(world.item_ids[:20])
    a = world.simulate_clicks("U007", ranked, seed=5)
    assert a.dtype == bool and a.shape == (20,)
    np.testing.assert_array_equal(a, world.simulate_clicks("U007", ranked, seed=5))
    many = [world.simulate_clicks(u, ranked, seed=5) for u in world.user_ids[:100]]
    other = [world.simulate_clicks(u, ranked, seed=6) for u in world.user_ids[:100]]
    assert not np.array_equal(np.array(many), np.array(other))
    assert world.simulate_clicks("U007", [], seed=5).shape == (0,)


def test_ctr_rewards_lists_ordered_by_true_preference(world: World) -> None:
    ids = world.item_ids
    users = world.user_ids[:300]
    order = np.argsort(-world.affinity_matrix(users), axis=1)
    best = {u: list(ids[o[:10]]) for u, o in zip(users, order, strict=True)}
    worst = {u: list(ids[o[-10:]]) for u, o in zip(users, order, strict=True)}
    ctr_best, ctr_worst = world.ctr(best, seed=0), world.ctr(worst, seed=0)
    assert ctr_best.shape == (300,)
    assert ctr_best.mean() > 2 * ctr_worst.mean()
    assert np.isnan(world.ctr({"U001": []})[0])


def test_reviews_come_from_buyers(world: World) -> None:
    rev = world.reviews
    assert list(rev.columns) == ["item_id", "user_id", "rating", "text"]
    assert 1.5 * len(world.items) < len(rev) < 5 * len(world.items)
    merged = rev.merge(world.interactions, on=["user_id", "item_id"], suffixes=("", "_bought"))
    assert len(merged) == len(rev)
    assert (merged["rating"] == merged["rating_bought"]).all()
    assert (rev["text"].str.len() > 20).all()


def test_users_frame_summarises_tastes(world: World) -> None:
    u = world.users
    assert {"user_id", "top_categories", "price_band", "favourite_brands", "n_purchases"} <= set(u.columns)
    top = u.set_index("user_id")["top_categories"].str.split(";").str[0]
    cat = world.items.set_index("item_id")["category"]
    df = world.interactions
    share_top = (df["item_id"].map(cat) == df["user_id"].map(top)).mean()
    assert share_top > 1 / world.items["category"].nunique() * 2  # clearly above chance (0.1)


def test_dataset_validates_and_matches_frames(world: World) -> None:
    ds = world.dataset
    assert isinstance(ds, Dataset)
    assert ds.n_users == 500 and ds.n_items == 400
    assert ds.n_interactions == len(world.interactions)
    # re-validating the raw frames from scratch passes too
    Dataset(world.interactions, world.items)
    item = ds.item("P000")
    assert item.category is not None and "brand" in item.attrs and "price" in item.attrs
    h = ds.history(world.user_ids[0])
    assert len(h) >= 3 and list(h.timestamps) == sorted(h.timestamps)


def test_to_csv_round_trips_through_the_csv_loader(tmp_path) -> None:
    from reranker.data.loaders import load

    w = generate_world(seed=1, n_users=60, n_items=50)
    out = w.to_csv(tmp_path / "world")
    assert {p.name for p in out.iterdir()} >= {"interactions.csv", "items.csv", "reviews.csv", "users.csv"}
    ds = load(out, format="csv")
    assert ds.n_users == 60 and ds.n_items == 50 and ds.n_interactions == len(w.interactions)
    assert set(ds.items["category"]) == set(w.items["category"])
    back = ds.interactions.sort_values(["user_id", "timestamp"]).reset_index(drop=True)
    orig = w.interactions.sort_values(["user_id", "timestamp"]).reset_index(drop=True)
    np.testing.assert_array_equal(back["item_id"], orig["item_id"])
    np.testing.assert_array_equal(back["rating"].to_numpy(), orig["rating"].to_numpy().astype(float))


def test_config_is_strict_and_sizes_scale() -> None:
    with pytest.raises(ConfigError, match="n_userz"):
        WorldConfig.from_dict({"n_userz": 10})
    with pytest.raises(ValueError):
        WorldConfig(min_purchases=10, max_purchases=5)
    with pytest.raises(ConfigError, match="n_users"):
        generate_world(n_users=0)
    with pytest.raises(ConfigError, match="min_purchases"):
        generate_world(n_items=5, min_purchases=6)
    tiny = generate_world(seed=5, n_users=7, n_items=3)  # fewer items than categories
    assert tiny.interactions.groupby("user_id").size().eq(3).all()
    assert tiny.items["category"].nunique() == 3
    w = World.generate(WorldConfig(seed=2, n_users=1000, n_items=12, n_categories=10, mean_purchases=5))
    assert len(w.users) == 1000 and len(w.items) == 12
    assert w.items["category"].nunique() == 10  # every category is represented
    assert w.interactions.groupby("user_id").size().min() >= 3


def test_vocabulary_is_package_data_matching_the_config_bound() -> None:
    from reranker.data import synthetic
    from reranker.data.synthetic_text import N_CATEGORIES, categories

    cats = synthetic.CATEGORIES
    assert cats is categories() and len(cats) == N_CATEGORIES
    assert all(isinstance(n, tuple) and len(n) == 3 for voc in cats.values() for n in voc["nouns"])
    with pytest.raises(ConfigError, match="n_categories"):
        WorldConfig.from_dict({"n_categories": N_CATEGORIES + 1})
