"""The Reranker API and the `reranker rerank` CLI on the committed example request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from llm_fixtures import LLM_TEST_OPTIONS

from reranker import Reranker
from reranker.api import normalize_request
from reranker.cli import main
from reranker.errors import ConfigError, DataError
from reranker.llm.request import load_request
from reranker.types import Candidate, History, Item

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rerank_request.json"


def test_normalize_accepts_ids_dicts_items_and_context():
    hist, cands, local = normalize_request(
        [{"id": 1, "title": "A"}, "2"],
        [Item("x", "X"), {"id": "y", "title": "Y", "score": 0.5}, "z", Candidate("w", 1.0)],
        context={"device": "tv"},
        user_id="u",
    )
    assert hist.items == ("1", "2") and hist.user_id == "u" and hist.context["device"] == "tv"
    assert [c.item_id for c in cands] == ["x", "y", "z", "w"] and cands[1].score == 0.5
    assert set(local) == {"1", "x", "y"}


@pytest.mark.parametrize(
    "history,candidates,match",
    [
        ("abc", [], "history must be a list"),
        ([], "abc", "candidates must be a list"),
        ([{"title": "no id"}], [], r"history\[0\]"),
        ([], [3.5], r"candidates\[0\]"),
        ([], [{"id": "a", "score": "high"}], "score must be a number"),
    ],
)
def test_normalize_rejects_malformed(history, candidates, match):
    with pytest.raises(DataError, match=match):
        normalize_request(history, candidates)


def test_bad_mode_and_unknown_option():
    with pytest.raises(ConfigError, match="mode"):
        Reranker(mode="pairwise")
    with pytest.raises(ConfigError, match="no_such_option"):
        Reranker(no_such_option=1)


def test_load_request_example_and_errors(tmp_path):
    req = load_request(EXAMPLE)
    assert len(req.history) == 4 and len(req.candidates) == 6 and req.context["device"] == "mobile"
    cases = {
        "not json {": "invalid JSON",
        "[]": "JSON object",
        '{"history": []}': "missing key 'candidates'",
        '{"history": [], "candidates": [{"title": "x"}]}': r"candidates\[0\] has no 'id'",
        '{"history": {}, "candidates": []}': "must be a list",
        '{"history": [], "candidates": [], "extra": 1}': "unknown key 'extra'",
        '{"history": [], "candidates": []}': "'candidates' is empty",
    }
    for text, match in cases.items():
        p = tmp_path / "r.json"
        p.write_text(text)
        with pytest.raises(DataError, match=match):
            load_request(p)


def test_reranker_with_catalog_ids_and_top_k(smollm, tiny_catalog):
    rr = Reranker(mode="pointwise", catalog=tiny_catalog, **LLM_TEST_OPTIONS)
    ranking = rr.rerank(["h1", "h2"], ["i1", "i2", "i3"], top_k=2)
    assert len(ranking) == 2 and set(ranking.item_ids) <= {"i1", "i2", "i3"}
    full = rr.rerank(History("u", ["h1"]), [Candidate("i1"), Candidate("i2")])
    assert sorted(full.item_ids) == ["i1", "i2"]
    df = full.to_dataframe()
    assert list(df["rank"]) == [1, 2]
    with pytest.raises(DataError, match="'nope'"):
        rr.rerank(["h1"], ["nope"])


def test_reranker_plain_dicts_verbalizer(smollm):
    rr = Reranker(mode="verbalizer", **LLM_TEST_OPTIONS)
    ranking = rr.rerank([{"id": "a", "title": "Trail shoes"}], [{"id": "b", "title": "Socks"}, {"id": "c", "title": "Kettle"}])
    assert sorted(ranking.item_ids) == ["b", "c"]


def test_cli_rerank_example_json(smollm):
    res = CliRunner().invoke(main, ["rerank", "--input", str(EXAMPLE), "--mode", "pointwise", "--json", "--top-k", "3", "--threads", "1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["items"]) == 3 and out["diagnostics"]["ranker"] == "llm-pointwise"
    assert {i["item_id"] for i in out["items"]} <= {f"c{k}" for k in range(1, 7)}


def test_cli_rerank_text_output(smollm):
    res = CliRunner().invoke(main, ["rerank", "--input", str(EXAMPLE), "--threads", "1"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 6 and lines[0].split()[0] == "1"


def test_cli_rerank_malformed_request_exits_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"history": [], "candidates": [{"title": "no id"}]}')
    res = CliRunner().invoke(main, ["rerank", "--input", str(bad)])
    assert res.exit_code == 2
    assert "candidates[0] has no 'id'" in res.output
    res = CliRunner().invoke(main, ["rerank", "--input", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "not found" in res.output
