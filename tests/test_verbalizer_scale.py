"""The verbalizer scores every candidate on one scale, for any list length (issue 19, item 3).

The backend here is an ideal position-free model: the logit of a label is a known utility of
the item shown under it, so the log-softmax of one prompt is that utility minus the prompt's
log-normaliser. Whatever the chunking, the final order must be the true order.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from fake_backends import FakeBackend

from reranker.llm.base import ScoreResult
from reranker.ranking.llm_common import permutation_orders
from reranker.ranking.verbalizer import VerbalizerLLMRanker
from reranker.types import Candidate, History, Item

_LINE = re.compile(r"^([A-Z])\. \"?(Product \d+)\"?$", re.MULTILINE)


class UtilityBackend(FakeBackend):
    """The logit of a label is `utility(title)` of the item the prompt shows under it (the
    verbalizer prompt lists candidates as `A. title`); records every scored prompt."""

    def __init__(self, utility: Callable[[str], float]) -> None:
        super().__init__(max_context=8192)
        self.utility = utility
        self.scored: list[str] = []

    def score_prompts(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        self.scored.extend(prompts)
        rows = []
        for p in prompts:
            shown = dict(_LINE.findall(p.split("Candidates:", 1)[1]))
            assert sorted(shown) == sorted(labels)
            rows.append([self.utility(shown[lab]) for lab in labels])
        return ScoreResult(logits=np.asarray(rows, dtype=np.float64), hidden=None, tokens_in=len(prompts))


def _world(n: int) -> tuple[dict[str, Item], list[Candidate]]:
    catalog = {f"c{i}": Item(f"c{i}", f"Product {i:03d}") for i in range(n)}
    catalog["h"] = Item("h", "Bought Before")
    return catalog, [Candidate(f"c{i}", float(n - i)) for i in range(n)]


def _true_order(n: int, utility: Callable[[str], float]) -> list[str]:
    return [f"c{i}" for i in sorted(range(n), key=lambda i: -utility(f"Product {i:03d}"))]


def _scrambled(title: str) -> float:
    """Distinct utilities in an order unrelated to the stage-1 order (37 is prime to 60)."""
    i = int(title.split()[1])
    return ((i * 37) % 61) * 0.25


@pytest.mark.parametrize("permutations", [1, 3])
@pytest.mark.parametrize("anchors", [1, 8, 25])
def test_sixty_candidates_come_out_in_the_true_order(permutations, anchors):
    catalog, cands = _world(60)
    be = UtilityBackend(_scrambled)
    r = VerbalizerLLMRanker(backend=be, catalog=catalog, permutations=permutations, anchors=anchors)
    ranking = r.rank(History("u", ["h"]), cands)
    assert ranking.item_ids == _true_order(60, _scrambled)
    assert len(ranking) == 60 and ranking.diagnostics["anchors"] == anchors
    # every prompt shows at most 26 letters
    assert all(len(_LINE.findall(p)) <= 26 for p in be.scored)


def test_a_lone_27th_candidate_is_scored_on_the_scale_of_the_others():
    # stage-1 order is the true order: the 27th is the worst and must stay last
    catalog, cands = _world(27)

    def utility(title: str) -> float:
        return -float(int(title.split()[1]))

    r = VerbalizerLLMRanker(backend=UtilityBackend(utility), catalog=catalog)
    ranking = r.rank(History("u", ["h"]), cands)
    assert ranking.item_ids == [f"c{i}" for i in range(27)]
    scores = r.score(History("u", ["h"]), cands, catalog)
    assert scores[26] < scores[25] < 0.0


def test_the_27th_best_candidate_comes_first():
    catalog, cands = _world(27)

    def utility(title: str) -> float:
        i = int(title.split()[1])
        return 100.0 if i == 26 else -float(i)

    ranking = VerbalizerLLMRanker(backend=UtilityBackend(utility), catalog=catalog).rank(History(), cands)
    assert ranking.item_ids[0] == "c26" and ranking.item_ids[1:] == [f"c{i}" for i in range(26)]


@pytest.mark.parametrize("n,permutations", [(1, 1), (5, 3), (26, 1), (26, 2)])
def test_up_to_26_candidates_prompts_and_scores_unchanged(n, permutations):
    """At most 26 candidates: one prompt per shown order, exactly as `build_prompts` renders
    them, and the mean log-softmax of the label logits (what the eval cache holds)."""
    catalog, cands = _world(n)
    be = UtilityBackend(_scrambled)
    r = VerbalizerLLMRanker(backend=be, catalog=catalog, permutations=permutations, seed=3)
    hist = History("u", ["h"])
    scores = r.score(hist, cands)
    orders = permutation_orders(n, permutations, random.Random(3))
    built = r.build_prompts(hist, cands, orders=orders)
    assert be.scored == list(built.prompts)
    logits = be.score_prompts(list(built.prompts), list(built.labels)).logits
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    want = np.zeros(n)
    for row, order in enumerate(orders):
        want[np.asarray(order)] += logp[row]
    np.testing.assert_array_equal(scores, want / permutations)
    assert "anchors" not in r.rank(hist, cands).diagnostics


def test_anchors_must_leave_room_for_new_candidates():
    from reranker.errors import ConfigError

    for bad in (0, 26):
        with pytest.raises(ConfigError, match="anchors"):
            VerbalizerLLMRanker(backend=UtilityBackend(_scrambled), anchors=bad)
