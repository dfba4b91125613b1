"""Split invariants: leave-one-out is chronological, disjoint and complete; random split is seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reranker.data import Dataset, cap_history, leave_one_out, random_split
from reranker.types import History


def make_ds() -> Dataset:
    rows = [
        # u1: B and C share a timestamp -> tie broken by item id (B before C)
        ("u1", "A", 5, 10), ("u1", "C", 4, 30), ("u1", "B", 3, 30), ("u1", "D", 2, 40),
        ("u2", "B", 4, 5), ("u2", "A", 1, 1), ("u2", "E", 3, 9),
        ("u3", "A", 4, 1), ("u3", "B", 4, 2),  # only 2 interactions -> excluded
    ]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": list("ABCDE"), "title": list("ABCDE")})
    return Dataset(df, items)


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


def test_leave_one_out_without_timestamps_uses_file_order():
    df = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["Z", "Y", "X", "W"]})
    s = leave_one_out(Dataset(df))
    assert s.targets("test") == {"u": "W"} and s.targets("validation") == {"u": "X"}
    assert s.histories("test")["u"].items == ("Z", "Y", "X")


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
