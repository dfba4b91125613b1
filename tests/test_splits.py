"""Split invariants: leave-one-out is chronological, disjoint and complete; random split is seeded;
ties in time follow the dataset's tie order (seeded random, or item id as before issue 17)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reranker.data import Dataset, TieOrder, cap_history, leave_one_out, random_split
from reranker.data.ordering import chronological, tie_keys
from reranker.types import History


def make_ds(ties: str = "item_id", seed: int = 0) -> Dataset:
    rows = [
        # u1: B and C share a timestamp -> tie broken by item id (B before C)
        ("u1", "A", 5, 10), ("u1", "C", 4, 30), ("u1", "B", 3, 30), ("u1", "D", 2, 40),
        ("u2", "B", 4, 5), ("u2", "A", 1, 1), ("u2", "E", 3, 9),
        ("u3", "A", 4, 1), ("u3", "B", 4, 2),  # only 2 interactions -> excluded
    ]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": list("ABCDE"), "title": list("ABCDE")})
    return Dataset(df, items).with_tie_order(ties, seed)


def test_leave_one_out_chronological_with_ties():
    s = leave_one_out(make_ds())
    assert s.targets("test") == {"u1": "D", "u2": "E"}
    # u1 in time order: A(10), B(30), C(30), D(40) -> validation C (tie B<C by item id)
    assert s.targets("validation") == {"u1": "C", "u2": "B"}
    assert s.excluded_users == 1 and s.excluded_user_ids == ["u3"]
    assert s.users == ["u1", "u2"]


def test_leave_one_out_partition_and_histories():
    ds = make_ds()
    s = leave_one_out(ds)
    parts = pd.concat([s.train.interactions, s.validation, s.test])
    assert len(parts) == ds.n_interactions
    key = parts["user_id"] + "/" + parts["item_id"]
    assert not key.duplicated().any()
    # validation histories end before the validation item; test histories include it
    hv = s.histories("validation")
    ht = s.histories("test")
    assert hv["u1"].items == ("A", "B")
    assert ht["u1"].items == ("A", "B", "C")
    assert ht["u2"].items == ("A", "B")  # u2 in time: A(1), B(5), E(9)
    assert "u3" not in ht  # excluded users are not evaluated ...
    assert "u3" in set(s.train.interactions["user_id"])  # ... but still inform CF
    # every history item is strictly older than (or tied-and-smaller than) the target
    for u, h in ht.items():
        tgt = s.test.set_index("user_id").loc[u]
        assert max(h.timestamps) <= tgt["timestamp"]


def test_leave_one_out_cap():
    s = leave_one_out(make_ds())
    assert s.histories("test", cap=2)["u1"].items == ("B", "C")


def test_leave_one_out_without_timestamps_is_seeded_random_not_file_order():
    # issue 20: without timestamps the file order is no order in time (a file sorted by id made
    # every test item the user's largest id); a seeded random order per user is used instead
    df = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["Z", "Y", "X", "W"]})
    s = leave_one_out(Dataset(df))
    assert s.order == "seeded random (no timestamps; seed 0)"
    again = leave_one_out(Dataset(df.iloc[::-1].reset_index(drop=True)))  # the file order does not matter
    assert again.targets("test") == s.targets("test") and again.targets("validation") == s.targets("validation")
    h = s.histories("test")["u"].items
    assert sorted((*h, s.targets("test")["u"])) == ["W", "X", "Y", "Z"]
    assert h[-1] == s.targets("validation")["u"]


def test_leave_one_out_rejects_min_below_three():
    with pytest.raises(ValueError):
        leave_one_out(make_ds(), min_interactions=2)


def test_random_split_seeded_and_disjoint():
    rng = np.random.default_rng(0)
    n = 1000
    df = pd.DataFrame({
        "user_id": rng.integers(0, 50, n).astype(str),
        "item_id": rng.integers(0, 80, n).astype(str),
        "rating": rng.integers(1, 6, n),
    })
    ds = Dataset(df)
    tr1, te1 = random_split(ds, 0.2, seed=7)
    tr2, te2 = random_split(ds, 0.2, seed=7)
    tr3, te3 = random_split(ds, 0.2, seed=8)
    assert len(te1) == 200 and tr1.n_interactions == 800
    pd.testing.assert_frame_equal(te1, te2)
    assert not te1.equals(te3)
    with pytest.raises(ValueError):
        random_split(ds, 1.5)


def test_cap_history():
    h = History("u", ["a", "b", "c"], ratings=[1, 2, 3], timestamps=[1, 2, 3])
    c = cap_history(h, 2)
    assert c.items == ("b", "c") and c.ratings == (2.0, 3.0) and c.timestamps == (2.0, 3.0)
    assert cap_history(h, 10) is h
    assert cap_history(h, 0).items == ()


# ----------------------------------------------------------------------------- ties in time (issue 17)
ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def _old_chronological(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of the ordering before issue 17 (ties by item id)."""
    if "timestamp" in df.columns:
        return df.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return df.assign(_pos=np.arange(len(df))).sort_values(["user_id", "_pos"], kind="stable").drop(columns="_pos")


def _old_leave_one_out(data: Dataset, min_interactions: int = 3):
    """A copy of the split before issue 17: (train frame, validation, test)."""
    df = _old_chronological(data.interactions)
    counts = df.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    from_end = df.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    eligible = counts >= min_interactions
    test_mask = eligible & (from_end == 0)
    val_mask = eligible & (from_end == 1)
    train_mask = ~(test_mask | val_mask)
    return (
        df.loc[train_mask].reset_index(drop=True),
        df.loc[val_mask].sort_values("user_id").reset_index(drop=True),
        df.loc[test_mask].sort_values("user_id").reset_index(drop=True),
    )


def _old_history(data: Dataset, user: str) -> tuple[str, ...]:
    rows = data.interactions[data.interactions["user_id"] == user]
    if "timestamp" in rows.columns:
        rows = rows.sort_values(["timestamp", "item_id"], kind="stable")
    return tuple(rows["item_id"].tolist())


def tied_ds(seed: int = 0, n: int = 1500, timestamps: bool = True) -> Dataset:
    """Many users with many interactions in few distinct seconds (lots of ties)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "user_id": [f"u{x}" for x in rng.integers(0, 60, n)],
        "item_id": [f"i{x}" for x in rng.integers(0, 90, n)],
        "rating": rng.integers(1, 6, n).astype(float),
        "timestamp": rng.integers(0, 6, n) * 1000,
    }).drop_duplicates(["user_id", "item_id"], ignore_index=True)
    if not timestamps:
        df = df.drop(columns="timestamp")
    return Dataset(df)


def _targets(ds: Dataset) -> tuple[dict[str, str], dict[str, str]]:
    s = leave_one_out(ds)
    return s.targets("validation"), s.targets("test")


@pytest.mark.parametrize("timestamps", [True])  # without timestamps: a seeded random split since issue 20
def test_item_id_ties_reproduce_the_old_split_exactly(timestamps):
    ds = tied_ds(timestamps=timestamps).with_tie_order("item_id")
    s = leave_one_out(ds)
    train, val, test = _old_leave_one_out(ds)
    pd.testing.assert_frame_equal(s.train.interactions, train)
    pd.testing.assert_frame_equal(s.validation, val)
    pd.testing.assert_frame_equal(s.test, test)
    pd.testing.assert_frame_equal(ds.sorted_interactions(), _old_chronological(ds.interactions))
    for u in s.users[:20]:
        assert ds.history(u).items == _old_history(ds, u)
        fit = s.fit_data("test")
        assert s.histories("test", cap=None)[u].items == _old_history(fit, u)


def test_random_ties_depend_on_the_seed_not_on_the_row_order():
    ds = tied_ds()
    shuffled = Dataset(ds.interactions.sample(frac=1.0, random_state=3).reset_index(drop=True), ds.items)
    a = _targets(ds.with_tie_order("random", 0))
    assert a == _targets(shuffled.with_tie_order("random", 0))  # same seed, any row order
    assert a == _targets(ds)  # the default: random ties, seed 0
    b = _targets(ds.with_tie_order("random", 1))
    assert a[1] != b[1] and a[0] != b[0]  # another seed breaks the ties differently
    old = _targets(ds.with_tie_order("item_id"))
    assert a[1] != old[1]
    # ... but only ties move: every order is chronological
    for d in (ds, ds.with_tie_order("random", 1), shuffled):
        for h in d.histories().values():
            assert list(h.timestamps) == sorted(h.timestamps)
    # histories agree too (the same sequence whatever the file order)
    h1 = ds.histories()
    h2 = shuffled.histories()
    assert {u: h.items for u, h in h1.items()} == {u: h.items for u, h in h2.items()}


def test_random_ties_break_the_toy_tie_both_ways():
    seen = {leave_one_out(make_ds("random", seed)).targets("validation")["u1"] for seed in range(20)}
    assert seen == {"B", "C"}  # u1's B and C share a second


def test_tie_keys_are_a_pure_function_of_seed_user_and_item():
    def ref(seed: int, user: str, item: str) -> int:  # the documented definition, in plain Python
        m = (1 << 64) - 1

        def mix(x: int) -> int:
            x = (x + 0x9E3779B97F4A7C15) & m
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
            return x ^ (x >> 31)

        def h(s: str, person: bytes) -> int:
            return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8, person=person).digest(), "little")

        return mix(mix(h(user, b"reranker-tie-u") ^ mix(seed)) ^ h(item, b"reranker-tie-i"))

    users = np.array(["u1", "u1", "u2", "7", "u1"], dtype=object)
    items = np.array(["A", "B", "A", "A", "A"], dtype=object)
    for seed in (0, 1, 123456789):
        k = tie_keys(users, items, seed)
        assert k.dtype == np.uint64
        assert [int(x) for x in k] == [ref(seed, u, i) for u, i in zip(users, items, strict=True)]
        perm = [3, 0, 4, 2, 1]
        assert (tie_keys(users[perm], items[perm], seed) == k[perm]).all()
    assert tie_keys(users, items, 0)[0] == 2115399153368340916  # pinned: no silent change of order


def test_tie_order_travels_with_the_derived_datasets():
    ds = tied_ds().with_tie_order("random", 5)
    s = leave_one_out(ds)
    for d in (s.train, s.train_valid(), s.fit_data("validation"), ds.with_interactions(ds.interactions)):
        assert d.tie_order == TieOrder("random", 5)
    assert ds.with_tie_order("random", 5) is ds
    assert Dataset(ds.interactions, ds.items).tie_order == TieOrder()  # default: random, seed 0
    with pytest.raises(ValueError, match="ties"):
        TieOrder("time")  # type: ignore[arg-type]
    # the same ordering function everywhere: sorted_interactions == chronological(order)
    pd.testing.assert_frame_equal(ds.sorted_interactions(), chronological(ds.interactions, ds.tie_order))


@pytest.mark.parametrize("ties", ["item_id", "random"])
def test_histories_end_right_before_the_target(ties):
    ds = tied_ds(seed=4).with_tie_order(ties, 2)
    s = leave_one_out(ds)
    hv, ht = s.histories("validation", cap=None), s.histories("test", cap=None)
    tv, tt = s.targets("validation"), s.targets("test")
    full = ds.histories()
    for u in s.users:
        seq = full[u].items
        assert ds.history(u).items == seq
        assert (seq[-1], seq[-2]) == (tt[u], tv[u])
        assert ht[u].items == seq[:-1] and hv[u].items == seq[:-2]
        assert s.train.history(u).items == seq[:-2]
        assert ht[u].timestamps[-1] <= s.test.set_index("user_id").at[u, "timestamp"]
    assert s.histories("test", cap=3)[s.users[0]].items == full[s.users[0]].items[-4:-1]


def test_data_fingerprint_separates_random_ties_and_keeps_item_id_keys():
    from reranker.evaluation.experiment import data_fingerprint

    ds = tied_ds()
    fp = {
        (t, sd): data_fingerprint(ds.with_tie_order(t, sd)) for t, sd in [("item_id", 0), ("item_id", 3), ("random", 0), ("random", 1)]
    }
    assert fp[("item_id", 0)] == fp[("item_id", 3)] == ds.fingerprint()  # byte-identical to before
    assert len({fp[("item_id", 0)], fp[("random", 0)], fp[("random", 1)]}) == 3


@pytest.mark.parametrize("ties", ["item_id", "random"])
def test_eval_applies_and_records_the_tie_rule(tmp_path, ties):
    import json

    import yaml

    from reranker.evaluation.experiment import load_experiment
    from reranker.evaluation.runner import RunOptions, run_experiment

    cfg = {
        "name": "ties", "data": {"synthetic": {"seed": 0, "n_users": 10, "n_items": 20}},
        "protocol": {"regime": "b", "n_boot": 20, "ties": ties, "tie_seed": 4, "position_bias": {"enabled": False}},
        "rankers": [{"name": "pop", "type": "pop"}],
    }
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    ds = tied_ds()
    out = tmp_path / "out"
    run_experiment(load_experiment(tmp_path / "e.yaml"),
                   RunOptions(dataset=ds, use_cache=False, progress=False, out_dir=out))
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["ties"] == ties
    assert res["protocol"]["tie_seed"] == (4 if ties == "random" else None)
    targets = leave_one_out(ds.with_tie_order(ties, 4)).targets("test")
    hits = res["runs"][0]["rankers"]["pop"]["per_user"]["ndcg@10"]
    assert set(hits) <= set(targets) and len(hits) == len(targets)
    md = (out / "report.md").read_text()
    assert ("seeded random permutation (tie_seed 4)" in md) == (ties == "random")
    assert ("ordered by item id" in md) == (ties == "item_id")


@pytest.mark.data
@pytest.mark.skipif(not ML100K.is_dir(), reason="needs ../shared/data/ml-100k")
def test_ml100k_test_item_is_no_longer_the_max_id_of_its_second():
    from reranker.data import load

    ds = load(ML100K, format="recbole")

    def share_max(d: Dataset) -> tuple[float, float, int]:
        s = leave_one_out(d)
        last = d.interactions.merge(s.test[["user_id", "timestamp"]], on=["user_id", "timestamp"])
        g = last.groupby("user_id")["item_id"].agg(["size", "max"])
        g = g[g["size"] > 1]  # users whose test item shares its second
        tgt = s.test.set_index("user_id")["item_id"].reindex(g.index)
        return float((tgt == g["max"]).mean()), float((1.0 / g["size"]).mean()), len(g)

    old, _, n = share_max(ds.with_tie_order("item_id"))
    assert old == 1.0 and n > 300  # ~44% of the 943 users
    for seed in (0, 1, 2):
        new, expected, _ = share_max(ds.with_tie_order("random", seed))
        assert abs(new - expected) < 0.08, (seed, new, expected)  # ~1/group size, not ~100%
    # the histories end right before the target, in both orders
    for d in (ds.with_tie_order("item_id"), ds):
        s = leave_one_out(d)
        ht, tt, full = s.histories("test", cap=None), s.targets("test"), d.histories()
        for u in s.users[:100]:
            assert full[u].items[-1] == tt[u] and ht[u].items == full[u].items[:-1]


@pytest.mark.parametrize("order", [TieOrder("item_id"), TieOrder("random", 3)])
def test_a_saved_pipeline_keeps_its_tie_order(tmp_path, order):
    from reranker.pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig.from_dict({"ranking": {"llm": {"enabled": False}, "bert": {"enabled": False}},
                                    "retriever": {"k": 20}})
    ds = tied_ds().with_tie_order(order.ties, order.seed)
    pipe = Pipeline(cfg).fit(ds)
    pipe.save(tmp_path / "p")
    again = Pipeline.load(tmp_path / "p")
    assert again.data.tie_order == order
    u = str(ds.user_ids[0])
    assert again.history_for(u).items == pipe.history_for(u).items == ds.history(u).items[-20:]
