"""The shared acceptance suite of the `Retriever` protocol.

Every retriever's test module subclasses `RetrieverSuite` and implements `make()` (an unfitted
retriever) and `cf_source` (the `Candidate.source` of its own proposals). The suite fits it on
`suite_dataset()`, a small seeded dataset with ratings and timestamps, and checks what every
stage-1 implementation must do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reranker.data.dataset import Dataset
from reranker.errors import ConfigError
from reranker.retrieval.base import Retriever
from reranker.types import Candidate, History

N_USERS, N_ITEMS = 40, 30


def suite_dataset(seed: int = 7) -> Dataset:
    """40 users x 30 items (+1 item nobody touched), ~25% density, ratings 1..5, timestamps."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(N_USERS, 3))
    feat = rng.normal(size=(N_ITEMS, 3))
    affinity = taste @ feat.T + rng.normal(scale=0.5, size=(N_USERS, N_ITEMS))
    rows = []
    for u in range(N_USERS):
        k = int(rng.integers(4, 12))
        items = np.argsort(-affinity[u] + rng.normal(scale=1.0, size=N_ITEMS))[:k]
        for t, i in enumerate(items):
            rating = int(np.clip(np.round(3 + affinity[u, i]), 1, 5))
            rows.append({"user_id": f"u{u}", "item_id": f"i{i}", "rating": rating, "timestamp": 1000 * u + t})
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS + 1)],
                          "title": [f"Item {i}" for i in range(N_ITEMS + 1)]})
    return Dataset(pd.DataFrame(rows), items, name="suite")


class RetrieverSuite:
    """Mixin: subclasses define `make()` and `cf_source`."""

    cf_source: str = "popular"

    def make(self) -> Retriever:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def data(self) -> Dataset:
        return suite_dataset()

    @pytest.fixture
    def fitted(self, data):
        return self.make().fit(data)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_list(cands: list[Candidate], n: int, seen: set[str], catalog: set[str]) -> None:
        ids = [c.item_id for c in cands]
        assert len(cands) <= n
        assert len(set(ids)) == len(ids), "duplicates"
        assert not (set(ids) & seen), "a seen item was returned"
        assert set(ids) <= catalog
        scores = [c.score for c in cands]
        assert all(a >= b for a, b in zip(scores, scores[1:], strict=False)), "not sorted by score"
        assert all(isinstance(c, Candidate) and isinstance(c.item_id, str) for c in cands)

    # ------------------------------------------------------------------ protocol
    def test_implements_protocol(self, fitted):
        assert isinstance(fitted, Retriever)

    def test_known_user_excludes_seen_sorted_unique(self, fitted, data):
        catalog = set(data.item_ids)
        for uid in ["u0", "u5", "u17"]:
            seen = set(data.history(uid).items)
            cands = fitted.retrieve(History(user_id=uid), n=10)
            self._check_list(cands, 10, seen, catalog)
            assert len(cands) == 10
            assert {c.source for c in cands} <= {self.cf_source, "popular"}

    def test_capped_history_of_known_user_still_excludes_everything_seen(self, fitted, data):
        full = data.history("u3")
        cands = fitted.retrieve(full.last(2), n=N_ITEMS)
        assert not ({c.item_id for c in cands} & set(full.items))
        assert len(cands) == N_ITEMS + 1 - len(set(full.items))

    def test_respects_n(self, fitted, data):
        h = History(user_id="u1")
        for n in (1, 3, 7):
            assert len(fitted.retrieve(h, n=n)) == n
        seen = set(data.history("u1").items)
        everything = fitted.retrieve(h, n=1000)
        assert len(everything) == N_ITEMS + 1 - len(seen)  # every unseen catalog item, once

    def test_deterministic(self, fitted, data):
        h = History(user_id=None, items=["i1", "i2", "i3"])
        a = fitted.retrieve(h, n=8)
        b = fitted.retrieve(h, n=8)
        c = self.make().fit(data).retrieve(h, n=8)
        assert a == b == c

    def test_empty_history_gets_popular(self, fitted, data):
        cands = fitted.retrieve(History(), n=5)
        assert len(cands) == 5
        assert {c.source for c in cands} == {"popular"}
        counts = data.interactions.groupby("item_id")["user_id"].nunique()
        top = counts.sort_values(ascending=False)
        assert counts[cands[0].item_id] == top.iloc[0]
        self._check_list(cands, 5, set(), set(data.item_ids))

    def test_unknown_user_gets_popular(self, fitted):
        assert fitted.retrieve(History(user_id="nobody"), n=5) == fitted.retrieve(History(), n=5)

    def test_ad_hoc_history(self, fitted, data):
        items = ["i0", "i4", "i9", "i13"]
        cands = fitted.retrieve(History(user_id=None, items=items), n=12)
        self._check_list(cands, 12, set(items), set(data.item_ids))
        assert len(cands) == 12

    def test_ad_hoc_history_with_unknown_items(self, fitted, data):
        cands = fitted.retrieve(History(items=["i2", "not-an-item"]), n=6)
        self._check_list(cands, 6, {"i2", "not-an-item"}, set(data.item_ids))
        assert len(cands) == 6

    def test_exclude_seen_false_may_return_seen(self, fitted, data):
        seen = set(data.history("u2").items)
        cands = fitted.retrieve(History(user_id="u2"), n=N_ITEMS + 1, exclude_seen=False)
        assert len(cands) == N_ITEMS + 1
        assert seen <= {c.item_id for c in cands}
        self._check_list(cands, N_ITEMS + 1, set(), set(data.item_ids))

    def test_batch_equals_single(self, fitted):
        hs = [History(user_id="u4"), History(), History(items=["i5", "i6"]), History(user_id="zz")]
        batch = fitted.retrieve_batch(hs, n=6)
        single = [fitted.retrieve(h, n=6) for h in hs]
        # same items, sources and order; scores equal up to float32 BLAS rounding (a GEMM may
        # block a 1-row and a 4-row product differently)
        assert [[(c.item_id, c.source) for c in x] for x in batch] == [
            [(c.item_id, c.source) for c in x] for x in single
        ]
        for x, y in zip(batch, single, strict=True):
            assert [c.score for c in x] == pytest.approx([c.score for c in y], rel=1e-5)
        as_dict = fitted.retrieve_batch({str(k): h for k, h in enumerate(hs)}, n=6)
        assert list(as_dict.values()) == batch

    def test_bad_n(self, fitted):
        for n in (0, -3):
            with pytest.raises(ConfigError):
                fitted.retrieve(History(user_id="u0"), n=n)
