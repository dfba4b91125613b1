"""Property test of the listwise parser: any text gives a complete order and consistent counts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.ranking.parsing import parse_ranking

# text that often looks like an answer: numbers, brackets, separators, words, newlines
_PIECES = st.sampled_from(["1", "2", "3", "7", "12", "0", "[", "]", ", ", ",", " > ", ";", " ", "\n", ".",
                           ")", "Answer: ", "Vest 5L", "abc", "-", "1995", "\t", "٣", "[2]"])
_TEXTS = st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=30).map("".join))


@settings(max_examples=400, deadline=None)
@given(text=_TEXTS, n=st.integers(0, 25), data=st.data())
def test_any_text_gives_a_permutation_and_counts_add_up(text, n, data):
    fill = data.draw(st.permutations(range(n)))
    r = parse_ranking(text, n, fill)
    assert sorted(r.order) == list(range(n))
    assert r.valid + r.filled_in == n
    assert r.valid + r.hallucinated + r.duplicate == len(r.numbers) + int(r.malformed)
    assert r.order[r.valid :] == [i for i in fill if i not in set(r.order[: r.valid])]
    assert [k - 1 for k in r.numbers if 1 <= k <= n][: r.valid] == r.order[: r.valid] or r.duplicate
    assert not (r.malformed and r.numbers)
    assert min(r.counts().values(), default=0) >= 0
