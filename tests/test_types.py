"""Value objects: Ranking invariants and conversions, History validation, Item.from_dict."""

from __future__ import annotations

import pytest

from reranker.types import Candidate, History, Item, Ranking


def test_ranking_from_scores_sorted_stable_and_complete():
    r = Ranking.from_scores(["a", "b", "c", "d"], [0.1, 0.9, 0.5, 0.9], {"ranker": "t"})
    assert r.item_ids == ["b", "d", "c", "a"]  # tie b/d keeps input order
    assert [x.rank for x in r] == [1, 2, 3, 4]
    assert r.top_k(2).item_ids == ["b", "d"]
    assert r.top_k(10).item_ids == r.item_ids
    d = r.to_dict()
    assert d["items"][0] == {"item_id": "b", "score": 0.9, "rank": 1, "explanation": None}
    assert d["diagnostics"] == {"ranker": "t"}
    df = r.to_dataframe()
    assert list(df.columns) == ["rank", "item_id", "score", "explanation"] and len(df) == 4


def test_ranking_rejects_duplicates_and_length_mismatch():
    with pytest.raises(ValueError, match="duplicate"):
        Ranking.from_order(["a", "a"])
    with pytest.raises(ValueError, match="2 item ids but 1 scores"):
        Ranking.from_scores(["a", "b"], [1.0])


def test_ranking_explanations():
    r = Ranking.from_order(["x", "y"]).with_explanations({"y": "because"})
    assert [i.explanation for i in r] == [None, "because"]
    assert r.items[0].score > r.items[1].score


def test_history_validation_and_cap():
    h = History("u", [1, 2, 3], ratings=[5, 4, 3])
    assert h.items == ("1", "2", "3") and len(h) == 3
    assert h.last(1).items == ("3",) and h.last(1).ratings == (3.0,)
    with pytest.raises(ValueError, match="ratings has 1 values for 3 items"):
        History("u", ["a", "b", "c"], ratings=[1])
    assert History().is_empty


def test_item_from_dict():
    it = Item.from_dict({"id": 7, "title": "Lamp", "category": "home", "price": 20, "description": "warm light"})
    assert it.item_id == "7" and it.text == "warm light" and it.attrs["price"] == 20
    assert Item.from_dict({"item_id": "x"}).title == "x"
    with pytest.raises(ValueError, match="no 'id'"):
        Item.from_dict({"title": "nameless"})
    with pytest.raises(ValueError):
        Item(item_id="", title="t")


def test_candidate_defaults():
    c = Candidate("a")
    assert (c.score, c.source) == (0.0, "external")
