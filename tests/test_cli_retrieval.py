"""`reranker candidates` and `reranker predict`: happy paths and exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from retrieval_suite import suite_dataset

from reranker.cli import main

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("cli_data")
    ds = suite_dataset()
    ds.interactions.to_csv(d / "interactions.csv", index=False)
    ds.items[["item_id", "title"]].to_csv(d / "items.csv", index=False)
    return str(d)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_candidates_for_user_json(data_dir):
    r = run("candidates", "--data", data_dir, "--model", "itemcf", "--k", "5", "--n", "4",
            "--user", "u3", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["model"] == "itemcf" and out["user_id"] == "u3"
    assert [c["rank"] for c in out["candidates"]] == [1, 2, 3, 4]
    assert all(c["title"].startswith("Item ") for c in out["candidates"])
    scores = [c["score"] for c in out["candidates"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("model,sim", [("usercf", "pearson"), ("itemcf", "adjusted_cosine"), ("popular", None)])
def test_candidates_for_history_text(data_dir, model, sim):
    args = ["candidates", "--data", data_dir, "--model", model, "--n", "3", "--history", "i1,i2,i3"]
    if sim:
        args += ["--similarity", sim]
    r = run(*args)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 3
    assert not any(line.split()[1] in {"i1", "i2", "i3"} for line in lines)


def test_candidates_history_with_ratings(data_dir):
    r = run("candidates", "--data", data_dir, "--model", "usercf", "--similarity", "pearson",
            "--n", "2", "--history", "i1:5,i2:1,i3:4", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["history"] == ["i1", "i2", "i3"]


def test_predict_json(data_dir):
    r = run("predict", "--data", data_dir, "--model", "usercf", "--similarity", "pearson",
            "--k", "5", "--user", "u0", "--item", "i7", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert 1.0 <= out["prediction"] <= 5.0
    assert out["fallback"] in {"none", "user_mean", "global_mean"}
    r = run("predict", "--data", data_dir, "--model", "itemcf", "--user", "u0", "--item", "i7")
    assert r.exit_code == 0 and "fallback" in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["candidates", "--model", "itemcf", "--user", "nobody"], "unknown user id 'nobody'"),
        (["candidates", "--model", "itemcf", "--history", "i1,zzz"], "unknown item id(s) in --history: 'zzz'"),
        (["candidates", "--model", "itemcf", "--user", "u1", "--k", "0"], "--k"),
        (["candidates", "--model", "itemcf", "--user", "u1", "--n", "0"], "--n"),
        (["candidates", "--model", "usercf", "--similarity", "adjusted_cosine", "--user", "u1"], "itemcf only"),
        (["candidates", "--model", "itemcf", "--similarity", "jaccard", "--user", "u1"], "--similarity"),
        (["candidates", "--model", "itemcf"], "exactly one of --user or --history"),
        (["candidates", "--model", "itemcf", "--user", "u1", "--history", "i1"], "exactly one"),
        (["candidates", "--model", "popular", "--similarity", "cosine", "--user", "u1"], "popularity"),
        (["predict", "--model", "itemcf", "--user", "nobody", "--item", "i1"], "unknown user id"),
        (["predict", "--model", "itemcf", "--user", "u1", "--item", "zzz"], "unknown item id 'zzz'"),
        (["predict", "--model", "popular", "--user", "u1", "--item", "i1"], "does not predict"),
        (["predict", "--model", "usercf", "--similarity", "adjusted_cosine", "--user", "u1", "--item", "i1"], "itemcf only"),
        (["predict", "--model", "usercf", "--k", "0", "--user", "u1", "--item", "i1"], "--k"),
    ],
)
def test_bad_input_exits_2(data_dir, args, message):
    r = run(args[0], "--data", data_dir, *args[1:])
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_missing_data_exits_2(tmp_path):
    r = run("candidates", "--data", str(tmp_path / "nope"), "--user", "1")
    assert r.exit_code == 2
    assert "no such file" in r.output


@pytest.mark.data
@pytest.mark.skipif(not ML100K.is_dir(), reason="needs ../shared/data/ml-100k")
def test_candidates_on_ml100k():
    r = run("candidates", "--data", str(ML100K), "--format", "recbole", "--model", "itemcf",
            "--k", "20", "--n", "5", "--user", "196", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert len(out["candidates"]) == 5 and out["candidates"][0]["source"] == "itemcf"
