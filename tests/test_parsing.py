"""Listwise answer parsing: crafted outputs, counts and fill-in order."""

from __future__ import annotations

import pytest

from reranker.ranking.parsing import borda, extract_numbers, parse_ranking


def test_clean_answer_is_all_valid():
    r = parse_ranking("3, 1, 2", 3)
    assert r.order == [2, 0, 1]
    assert r.counts() == {"valid": 3, "hallucinated": 0, "duplicate": 0, "filled_in": 0}
    assert r.raw == "3, 1, 2"


def test_out_of_range_numbers_are_hallucinated_and_dropped():
    r = parse_ranking("7, 2, 0, 9, 1", 4)
    assert r.order[:2] == [1, 0]
    assert r.hallucinated == 3
    assert r.valid == 2
    assert r.filled_in == 2
    assert r.order[2:] == [2, 3]  # missing ones appended in stage-1 order


def test_duplicates_counted_first_occurrence_kept():
    r = parse_ranking("2, 2, 1, 2, 3", 3)
    assert r.order == [1, 0, 2]
    assert r.duplicate == 2
    assert r.valid == 3 and r.filled_in == 0


def test_prose_around_numbers():
    r = parse_ranking("Sure! The best ranking is: 4, 2 and then 1. Hope this helps", 4)
    assert r.order == [3, 1, 0, 2]
    assert r.valid == 3 and r.filled_in == 1 and r.hallucinated == 0


def test_bracketed_labels_win_over_other_numbers():
    text = "1. [3] Heat (1995)\n2. [1] Toy Story (1995)"
    assert extract_numbers(text) == [3, 1]
    r = parse_ranking(text, 3)
    assert r.order == [2, 0, 1]
    assert r.hallucinated == 0


def test_years_in_prose_are_hallucinations():
    r = parse_ranking("In 1995 I liked 2", 3)
    assert r.hallucinated == 1
    assert r.order == [1, 0, 2]


@pytest.mark.parametrize("text", ["", "I cannot rank these items.", "   \n"])
def test_empty_or_numberless_answer_falls_back_to_stage1(text):
    r = parse_ranking(text, 4)
    assert r.order == [0, 1, 2, 3]
    assert r.valid == 0 and r.filled_in == 4
    assert r.valid_fraction == 0.0


def test_fill_in_follows_given_stage1_order():
    # shown order was shuffled; stage-1 order of the shown positions is 2, 0, 3, 1
    r = parse_ranking("4", 4, fill_order=[2, 0, 3, 1])
    assert r.order == [3, 2, 0, 1]


def test_fill_order_must_be_a_permutation():
    with pytest.raises(ValueError):
        parse_ranking("1", 3, fill_order=[0, 0, 1])


def test_decimal_numbers_not_split_into_labels():
    r = parse_ranking("score 3.5 for 2", 5)
    # "3" counts, ".5" is not a separate label
    assert r.numbers == [3, 2]


def test_borda_mean_points():
    pts = borda([[0, 1, 2], [1, 0, 2]], 3)
    assert pts == [2.5, 2.5, 1.0]
