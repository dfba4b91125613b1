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


def test_prose_around_numbers_is_not_an_answer():
    r = parse_ranking("Sure! The best ranking is: 4, 2 and then 1. Hope this helps", 4)
    assert r.malformed and r.numbers == []
    assert r.order == [0, 1, 2, 3]
    assert r.counts() == {"valid": 0, "hallucinated": 1, "duplicate": 0, "filled_in": 4}


def test_echoed_numbered_list_with_bracketed_labels_is_not_an_answer():
    text = "1. [3] Heat (1995)\n2. [1] Toy Story (1995)"
    assert extract_numbers(text) == []
    r = parse_ranking(text, 3)
    assert r.order == [0, 1, 2] and r.valid == 0 and r.hallucinated == 1 and r.malformed


def test_years_in_prose_are_not_labels():
    r = parse_ranking("In 1995 I liked 2", 3)
    assert r.malformed and r.valid == 0 and r.hallucinated == 1
    assert r.order == [0, 1, 2]


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


def test_decimal_numbers_are_not_labels():
    assert parse_ranking("score 3.5 for 2", 5).numbers == []
    assert parse_ranking("3.5, 2", 5).malformed


def test_borda_mean_points():
    pts = borda([[0, 1, 2], [1, 0, 2]], 3)
    assert pts == [2.5, 2.5, 1.0]


# ---------------------------------------------------------------- the accepted grammar
@pytest.mark.parametrize(
    "text,n,order",
    [
        ("3, 1, 2", 3, [2, 0, 1]),
        ("3,1,2", 3, [2, 0, 1]),
        ("3 1 2", 3, [2, 0, 1]),
        ("  3, 1, 2.  ", 3, [2, 0, 1]),
        ("[3] > [1] > [2]", 3, [2, 0, 1]),
        ("[3], [1], [2]", 3, [2, 0, 1]),
        ("3; 1; 2", 3, [2, 0, 1]),
        ("Answer: 3, 1, 2", 3, [2, 0, 1]),
        ("Ranking: [2] > [3]", 3, [1, 2, 0]),
        ("\n\n3, 1\n2\n\nThe user likes running gear, so 1 fits best.", 3, [2, 0, 1]),
        ("1\n20\n21", 20, [0, 19] + list(range(1, 19))),  # one number a line, 21 out of range
    ],
)
def test_accepted_answers(text, n, order):
    r = parse_ranking(text, n)
    assert not r.malformed
    assert r.order == order


@pytest.mark.parametrize(
    "text",
    [
        "1. Hydration Vest 5L\n2. Trail Running Shoes",  # list numbering + digits inside a title
        "2) Running Socks (3 pairs)\n1) Foam Roller",
        "Hydration Vest 5L",
        "[2] Hydration Vest 5L > [1] Trail Running Shoes",  # bracketed label followed by a title
        "1. Amateur (Crime, 1994, Crime|Drama|Thriller)\n2. Mortal Kombat (Comedy, 1995)",
        "Pack [2] of socks, then 1",  # bracketed digits inside words
        "3, 1, 2 because 3 is a running shoe",
        "5L, 2",
        "3, -1, 2",
        "#3, #1",
        "3, 1,, 2",
    ],
)
def test_anything_else_is_malformed_and_filled_in_stage1_order(text):
    r = parse_ranking(text, 5, fill_order=[4, 3, 2, 1, 0])
    assert r.malformed and r.numbers == []
    assert r.order == [4, 3, 2, 1, 0]
    assert r.counts() == {"valid": 0, "hallucinated": 1, "duplicate": 0, "filled_in": 5}


def test_digits_of_a_title_never_count_as_labels():
    # the old parser read "1. Hydration Vest 5L" as candidates 1 and 5 (valid)
    r = parse_ranking("1. Hydration Vest 5L", 5)
    assert r.valid == 0 and r.order == [0, 1, 2, 3, 4]


def test_blank_answer_is_not_a_hallucination():
    r = parse_ranking("  \n ", 3)
    assert not r.malformed and r.counts() == {"valid": 0, "hallucinated": 0, "duplicate": 0, "filled_in": 3}


def test_huge_numbers_are_out_of_range_not_errors():
    r = parse_ranking("9" * 5000 + ", 1", 2)
    assert r.order == [0, 1] and r.hallucinated == 1 and r.valid == 1
