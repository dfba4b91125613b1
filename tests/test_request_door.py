"""The public request door (`normalize_request`: `Reranker.rerank`, `reranker rerank`) rejects
ambiguous candidate lists, and a request's stage-1 `score` never reaches the LLM (issue 19)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from fake_backends import ScriptedBackend

from reranker import Reranker
from reranker.api import normalize_request
from reranker.cli import main
from reranker.errors import DataError
from reranker.ranking.listwise import ListwiseLLMRanker
from reranker.types import Candidate, History, Item


@pytest.mark.parametrize(
    "history,candidates,message",
    [
        ([], ["a", "7", "b", "7"], "candidates[3]: duplicate id '7' (also at candidates[1])"),
        ([], ["a", {"id": "b", "title": "B"}, Item("b", "B again")], "candidates[2]: duplicate id 'b' (also at candidates[1])"),
        ([], [Candidate("x", 1.0), Candidate("x", 0.5)], "candidates[1]: duplicate id 'x' (also at candidates[0])"),
        (["p101"], ["c1", "c2", "p101"], "candidates[2]: id 'p101' is also in the history (history[0])"),
        ([{"id": "h", "title": "H"}, "p101"], [{"id": "p101", "title": "P"}], "candidates[0]: id 'p101' is also in the history (history[1])"),
        (History("u", ["a", "b"]), ["c", "b"], "candidates[1]: id 'b' is also in the history (history[1])"),
    ],
)
def test_ambiguous_candidate_ids_are_rejected_with_their_index(history, candidates, message):
    with pytest.raises(DataError) as err:
        normalize_request(history, candidates)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "candidates,at",
    [
        ([7, "7"], 1),
        (["c", {"id": 7, "title": "Seven"}, "7"], 2),
        ([{"item_id": "7", "title": "Seven"}, Candidate("x"), 7], 2),
    ],
)
def test_int_and_str_ids_collide(candidates, at):
    with pytest.raises(DataError, match=rf"^candidates\[{at}\]: duplicate id '7' \(also at candidates\[\d\]; ids are compared as strings"):
        normalize_request([], candidates)


def test_int_history_id_collides_with_str_candidate():
    msg = "candidates[0]: id '5' is also in the history (history[0]; ids are compared as strings: 5 and '5')"
    with pytest.raises(DataError, match=re.escape(msg)):
        normalize_request([5], ["5"])


def test_distinct_ids_pass():
    hist, cands, _ = normalize_request(["h1", "h1"], ["a", 7, "70", Candidate("b")])  # a re-bought history item is fine
    assert [c.item_id for c in cands] == ["a", "7", "70", "b"] and hist.items == ("h1", "h1")


def test_score_is_stage1_metadata_not_an_attribute():
    hist, cands, local = normalize_request(
        [], [{"id": "y", "title": "Socks", "category": "Sports", "score": 0.93, "brand": "Pace"}]
    )
    assert cands[0].score == pytest.approx(0.93)
    assert dict(local["y"].attrs) == {"brand": "Pace"}


def test_score_never_reaches_the_prompt():
    be = ScriptedBackend([], default="1, 2")
    rr = Reranker(mode="listwise", backend=be)
    ranking = rr.rerank(
        [{"id": "h", "title": "Trail Shoes"}],
        [{"id": "a", "title": "Socks", "category": "Sports", "score": 0.8123},
         {"id": "b", "title": "Kettle", "score": 0.4567}],
    )
    assert ranking.item_ids == ["a", "b"]
    assert be.prompts and not any("0.8123" in p or "0.4567" in p for p in be.prompts)
    assert re.search(r"\[1\] \"?Socks\"? \(Sports\)", be.prompts[0])  # the category, no score


def test_library_rankers_still_dedupe_for_internal_callers():
    catalog = {"a": Item("a", "A"), "b": Item("b", "B"), "h": Item("h", "H")}
    r = ListwiseLLMRanker(backend=ScriptedBackend([], default="2, 1"), catalog=catalog)
    ranking = r.rank(History("u", ["h"]), [Candidate("a"), Candidate("b"), Candidate("a")])
    assert ranking.item_ids == ["b", "a"]


def test_cli_rejects_duplicate_candidates_with_exit_2(tmp_path):
    req = {"history": [{"id": "p101", "title": "Shoes"}],
           "candidates": [{"id": "c1", "title": "Socks"}, {"id": 7, "title": "A"}, {"id": "7", "title": "B"}]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(req))
    res = CliRunner().invoke(main, ["rerank", "--input", str(path)])
    assert res.exit_code == 2
    assert "candidates[2]: duplicate id '7' (also at candidates[1]" in res.output
    req["candidates"] = [{"id": "c1", "title": "Socks"}, {"id": "p101", "title": "Shoes"}]
    path.write_text(json.dumps(req))
    res = CliRunner().invoke(main, ["rerank", "--input", str(path)])
    assert res.exit_code == 2 and "candidates[1]: id 'p101' is also in the history (history[0])" in res.output
