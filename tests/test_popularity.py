"""PopularityRetriever: the shared suite plus popularity order and the cold-start fill rule."""

from __future__ import annotations

import pandas as pd
from retrieval_suite import RetrieverSuite

from reranker.data.dataset import Dataset
from reranker.retrieval import ItemCF, PopularityRetriever
from reranker.types import History


class TestPopularitySuite(RetrieverSuite):
    cf_source = "popular"

    def make(self):
        return PopularityRetriever()


def _tiny() -> Dataset:
    # item popularity (distinct users): a=3, b=2, c=2, d=1, e=0 (never seen)
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u1", "u2", "u1", "u3", "u4"],
            "item_id": ["a", "a", "a", "b", "b", "c", "c", "d"],
        }
    )
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e"], "title": list("ABCDE")})
    return Dataset(inter, items)


def test_popularity_order_scores_and_ties():
    r = PopularityRetriever().fit(_tiny())
    cands = r.retrieve(History(), n=5)
    # b and c tie on 2 users: catalog order decides; e (nobody) comes last with score 0
    assert [c.item_id for c in cands] == ["a", "b", "c", "d", "e"]
    assert [round(c.score, 4) for c in cands] == [1.0, 0.6667, 0.6667, 0.3333, 0.0]
    assert r.popular(2) == ["a", "b"]


def test_popularity_excludes_known_users_items():
    r = PopularityRetriever().fit(_tiny())
    assert [c.item_id for c in r.retrieve(History(user_id="u1"), n=5)] == ["d", "e"]


def test_knn_fills_with_popular_when_neighbours_run_out():
    # u4 only saw d, which nobody else saw: ItemCF has no neighbour for d, so the whole
    # list is the popular fill; for u3 (a, c) there are CF candidates first, then the fill.
    ds = _tiny()
    m = ItemCF(k=5, feedback="implicit").fit(ds)
    cold = m.retrieve(History(user_id="u4"), n=4)
    assert [c.source for c in cold] == ["popular"] * 4
    assert [c.item_id for c in cold] == ["a", "b", "c", "e"]
    warm = m.retrieve(History(user_id="u3"), n=3)
    assert warm[0].source == "itemcf" and warm[0].item_id == "b"
    assert [c.source for c in warm[1:]] == ["popular", "popular"]
    assert warm[1].score < warm[0].score  # the fill scores below the weakest CF candidate
    assert [c.item_id for c in warm] == ["b", "d", "e"]


def test_fill_can_be_switched_off():
    m = ItemCF(k=5, feedback="implicit", fill_popular=False).fit(_tiny())
    assert m.retrieve(History(user_id="u4"), n=4) == []
    assert [c.item_id for c in m.retrieve(History(user_id="u3"), n=3)] == ["b"]
