"""Bad input at every CLI door: exit code 2, one `Error:` line naming the field, file or id,
no traceback. And the library raises a RerankerError subclass for each user-caused error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from reranker.cli import main
from reranker.errors import ConfigError, DataError, ModelError, RerankerError, UnknownIdError

NON_UTF8 = b"\xff\xfe\xe9"


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated shop as CSV files (interactions.csv, items.csv, ...)."""
    d = tmp_path_factory.mktemp("cli_errors") / "world"
    r = CliRunner().invoke(main, ["data", "generate", str(d), "--users", "30", "--items", "40"])
    assert r.exit_code == 0, r.output
    return d


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, world: Path) -> dict[str, Path]:
    """Bad files of every kind, written once."""
    d = tmp_path_factory.mktemp("bad_files")
    out: dict[str, Path] = {}

    def put(name: str, content: str | bytes) -> None:
        p = d / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        out[name] = p

    put("latin1.csv", b"user_id,item_id\nU00,P00\nU01,P\xe901\n")
    put("bad.yaml", "name: x\nrankers: [1, 2\n")
    put("latin1.yaml", b"name: caf\xe9\n")
    put("list.yaml", "- 1\n- 2\n")
    put("bad.json", '{"history": [')
    put("latin1.json", b'{"history": [], "candidates": [{"id": "\xff"}]}')
    put("not_object.json", "[1, 2]")
    put("unknown_key.json", json.dumps({"history": [], "candidates": [{"id": "a"}], "cands": []}))
    put("ok.json", json.dumps({"history": [{"id": "a", "title": "A"}],
                               "candidates": [{"id": "b", "title": "B"}, {"id": "c", "title": "C"}]}))
    base = {"name": "t", "data": {"synthetic": {"seed": 0, "n_users": 30, "n_items": 40}},
            "protocol": {"regime": "a", "n_candidates": 10, "seeds": [0]},
            "retriever": {"type": "itemcf"}, "rankers": [{"name": "s", "type": "identity"}]}

    def exp(name: str, **change: object) -> None:
        put(name, json.dumps({**base, **change}))  # JSON is YAML

    exp("unknown_key.yaml", protocol={**base["protocol"], "bogus": 1})  # type: ignore[dict-item]
    exp("unknown_ranker.yaml", rankers=[{"name": "s", "type": "nosuch"}])
    exp("bad_similarity.yaml", retriever={"type": "itemcf", "params": {"similarity": "foo"}})
    exp("latin1_data.yaml", data={"path": str(out["latin1.csv"]), "format": "csv"})
    exp("missing_data.yaml", data={"path": str(d / "nowhere"), "format": "csv"})
    put("pipeline_bad_model.yaml", json.dumps({"ranking": {"llm": {"type": "llm-pointwise", "model": "nosuch-model"},
                                                           "bert": None}}))
    put("finetune_unknown.yaml", json.dumps({"name": "f", "model": "smollm2-135m", "epochs": 1, "bogus": 2}))
    (d / "folder.csv").mkdir()
    out["folder.csv"] = d / "folder.csv"
    out["dir"] = d
    return out


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_usage_error(r: Result, *expected: str) -> str:
    """Exit 2, exactly one `Error:` line holding every expected piece, no traceback."""
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.output
    for piece in expected:
        assert piece in r.output, (piece, r.output)
    return errors[0]


# ------------------------------------------------------------------------------ CLI doors
def test_describe_missing_path(files):
    missing = files["dir"] / "missing"
    line = assert_usage_error(run("data", "describe", missing), "no such file or folder")
    assert str(missing) in line


def test_describe_folder_without_table(files):
    assert_usage_error(run("data", "describe", files["folder.csv"]), str(files["folder.csv"]), "interactions.csv")


def test_describe_non_utf8_csv_names_file_and_line(files):
    line = assert_usage_error(run("data", "describe", files["latin1.csv"]), "not valid UTF-8")
    assert str(files["latin1.csv"]) in line and "line 3" in line


@pytest.mark.parametrize("fmt,piece", [("jsonl", "invalid JSON"), ("parquet", "cannot read Parquet")])
def test_describe_wrong_format_for_file(world, fmt, piece):
    path = world / "interactions.csv"
    line = assert_usage_error(run("data", "describe", path, "--format", fmt), piece)
    assert str(path) in line


def test_describe_unknown_format_choice(world):
    assert_usage_error(run("data", "describe", world, "--format", "xml"), "'--format'")


@pytest.mark.parametrize("fmt,piece", [("movielens", "u.data"), ("recbole", "*.inter"), ("amazon2023", "meta_")])
def test_describe_folder_of_another_format(world, fmt, piece):
    assert_usage_error(run("data", "describe", world, "--format", fmt), piece)


def test_candidates_unknown_user(world):
    assert_usage_error(run("candidates", "--data", world, "--user", "NOPE"), "unknown user id 'NOPE'", "user_id")


def test_candidates_unknown_item_in_history(world):
    assert_usage_error(run("candidates", "--data", world, "--history", "P00,NOPE"), "'NOPE'", "item_id", "--history")


def test_candidates_rating_not_a_number(world):
    assert_usage_error(run("candidates", "--data", world, "--history", "P00:x"), "--history", "'P00:x'")


@pytest.mark.parametrize("opt,value", [("--k", "0"), ("--n", "0"), ("--similarity", "foo"), ("--model", "svd")])
def test_candidates_bad_option(world, opt, value):
    assert_usage_error(run("candidates", "--data", world, "--user", "U00", opt, value), f"'{opt}'")


def test_candidates_non_utf8_data(files):
    assert_usage_error(run("candidates", "--data", files["latin1.csv"], "--user", "U00"),
                       str(files["latin1.csv"]), "UTF-8")


def test_predict_unknown_item(world):
    assert_usage_error(run("predict", "--data", world, "--user", "U00", "--item", "NOPE"),
                       "unknown item id 'NOPE'", "item_id")


def test_predict_with_popularity_model(world):
    assert_usage_error(run("predict", "--data", world, "--user", "U00", "--item", "P00", "--model", "popular"),
                       "popularity model")


def test_eval_missing_config(files):
    assert_usage_error(run("eval", "--config", files["dir"] / "nope.yaml"), "nope.yaml", "not found")


def test_eval_config_is_a_folder(files):
    assert_usage_error(run("eval", "--config", files["dir"]), "'--config'", "is a directory")


@pytest.mark.parametrize("name,pieces", [
    ("bad.yaml", ["bad.yaml", "invalid YAML at line 3"]),
    ("latin1.yaml", ["latin1.yaml", "line 1", "UTF-8"]),
    ("list.yaml", ["list.yaml", "top level must be a mapping"]),
    ("unknown_key.yaml", ["unknown_key.yaml", "protocol.bogus", "unknown key"]),
    ("unknown_ranker.yaml", ["rankers.0.type", "unknown ranker type 'nosuch'"]),
    ("bad_similarity.yaml", ["retriever.params.similarity", "'cosine'"]),
])
def test_eval_bad_config(files, tmp_path, name, pieces):
    assert_usage_error(run("eval", "--config", files[name], "--out", tmp_path / "o", "--no-progress"), *pieces)


def test_eval_data_not_utf8(files, tmp_path):
    assert_usage_error(run("eval", "--config", files["latin1_data.yaml"], "--out", tmp_path / "o",
                           "--no-progress", "--no-cache"), str(files["latin1.csv"]), "line 3", "UTF-8")


def test_eval_data_missing(files, tmp_path):
    assert_usage_error(run("eval", "--config", files["missing_data.yaml"], "--out", tmp_path / "o",
                           "--no-progress", "--no-cache"), "nowhere", "no such file or folder")


@pytest.mark.parametrize("name,pieces", [
    ("bad.json", ["bad.json", "line 1", "invalid JSON"]),
    ("latin1.json", ["latin1.json", "line 1", "UTF-8"]),
    ("not_object.json", ["not_object.json", "must be a JSON object"]),
    ("unknown_key.json", ["unknown_key.json", "unknown key 'cands'"]),
])
def test_rerank_bad_request(files, name, pieces):
    assert_usage_error(run("rerank", "--input", files[name]), *pieces)


def test_rerank_missing_and_folder_input(files):
    assert_usage_error(run("rerank", "--input", files["dir"] / "none.json"), "none.json", "not found")
    assert_usage_error(run("rerank", "--input", files["dir"]), "'--input'", "is a directory")


def test_rerank_unknown_model_spec(files):
    assert_usage_error(run("rerank", "--input", files["ok.json"], "--model", "nosuch-model"),
                       "unknown model spec 'nosuch-model'")


def test_rerank_permutations_with_pointwise(files):
    assert_usage_error(run("rerank", "--input", files["ok.json"], "--permutations", "2"), "--permutations")


@pytest.mark.parametrize("spec,piece", [
    ("nosuch-model", "unknown model spec"),
    ("/nonexistent/model.gguf", "GGUF file not found"),
    ("smollm2-135m+/nonexistent/adapter", "adapter folder"),
])
def test_models_prepare_bad_spec(spec, piece):
    assert_usage_error(run("models", "prepare", spec), piece, spec)


def test_models_prepare_folder_without_model(files):
    assert_usage_error(run("models", "prepare", files["folder.csv"]), "config.json")


def test_finetune_bad_configs(files):
    assert_usage_error(run("finetune", "--config", files["dir"] / "nope.yaml"), "config file not found")
    assert_usage_error(run("finetune", "--config", files["finetune_unknown.yaml"]), "bogus", "unknown key")
    assert_usage_error(run("finetune", "--config", files["latin1.yaml"]), "latin1.yaml", "UTF-8")


def test_finetune_merge_not_an_adapter(files, tmp_path):
    assert_usage_error(run("finetune", "merge", files["folder.csv"], tmp_path / "m"), "adapter_config.json")


def test_demo_bad_configs(files):
    assert_usage_error(run("demo", "--config", files["bad.yaml"]), "invalid YAML")
    assert_usage_error(run("demo", "--config", files["pipeline_bad_model.yaml"], "--users", "10", "--items", "20",
                           "--eval-users", "2", "--no-explain"), "ranking.llm.model", "nosuch-model")


def test_components_unknown_stage():
    assert_usage_error(run("components", "retrievers"), "'retrievers'")


# ------------------------------------------------------------------------------ the CLI's net
@pytest.mark.parametrize("exc", [
    FileNotFoundError(2, "No such file or directory", "/data/x.csv"),
    IsADirectoryError(21, "Is a directory", "/data/x.csv"),
    PermissionError(13, "Permission denied", "/data/x.csv"),
])
def test_os_errors_about_a_path_exit_2(world, monkeypatch, exc):
    import reranker.data.loaders as loaders

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(loaders, "load", boom)
    line = assert_usage_error(run("data", "describe", world))
    assert line == f"Error: /data/x.csv: {exc.strerror}"


def test_unicode_error_reaching_the_cli_exits_2(world, monkeypatch):
    import reranker.data.loaders as loaders

    def boom(*a, **k):
        b"\xff".decode("utf-8")

    monkeypatch.setattr(loaders, "load", boom)
    assert_usage_error(run("data", "describe", world), "not valid UTF-8")


@pytest.mark.parametrize("exc", [RuntimeError("internal bug"), KeyError("k"), OSError("no filename")])
def test_internal_errors_keep_their_traceback(world, monkeypatch, exc):
    import reranker.data.loaders as loaders

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(loaders, "load", boom)
    r = run("data", "describe", world)
    assert r.exit_code == 1 and r.exception is exc


def test_permission_denied_on_config_is_a_config_error(files, monkeypatch):
    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert_usage_error(run("eval", "--config", files["unknown_key.yaml"]), "unknown_key.yaml", "Permission denied")


# ------------------------------------------------------------------------------ library raises
def _dataset():
    from reranker.data.dataset import Dataset

    inter = pd.DataFrame({"user_id": ["u1", "u1", "u1"], "item_id": ["a", "b", "c"], "timestamp": [1, 2, 3]})
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]})
    return Dataset(inter, items)


def _world():
    from reranker.data.synthetic import generate_world

    return generate_world(seed=0, n_users=12, n_items=20)


def _raise(case: str) -> None:
    from reranker.api import _ChainCatalog
    from reranker.data.splits import leave_one_out, random_split
    from reranker.evaluation.bootstrap import bootstrap_ci
    from reranker.evaluation.metrics import ranking_metrics
    from reranker.evaluation.protocol import per_user_metrics, sample_negatives
    from reranker.ranking.bert import recency_weights
    from reranker.ranking.diversity import mmr_order
    from reranker.ranking.fusion import RankerScorer, fit_weights, normalize, simplex_grid
    from reranker.ranking.learned_head import LearnedFusion
    from reranker.types import Item

    calls = {
        "dataset.item": lambda: _dataset().item("zz"),
        "world.user": lambda: _world().affinity("nobody", ["P000"]),
        "world.item": lambda: _world().affinity(_world().user_ids[0], ["nope"]),
        "chain_catalog": lambda: _ChainCatalog({}, None).item("zz"),
        "metric_name": lambda: per_user_metrics([["a"]], ["a"], ["ndcg@x"]),
        "metric_cutoff": lambda: per_user_metrics([["a"]], ["a"], ["ndcg@0"]),
        "metric_kind": lambda: ranking_metrics([["a"]], ["a"], metrics=["ndgc"]),
        "negatives": lambda: sample_negatives(["a"], "b", np.array(["a", "b", "c"]), 5, np.random.default_rng(0)),
        "alpha": lambda: bootstrap_ci([1.0, 2.0], alpha=1.5),
        "lam": lambda: mmr_order([1.0, 0.5], np.eye(2), lam=1.5),
        "grid_step": lambda: simplex_grid(2, step=0.3),
        "fit_metric": lambda: fit_weights([{"a": np.ones(2)}], [0], metric="auc"),
        "normalize": lambda: normalize([1.0, 2.0], "softmax"),  # type: ignore[arg-type]
        "use": lambda: RankerScorer(object(), use="rank"),  # type: ignore[arg-type]
        "half_life": lambda: recency_weights(3, 0),
        "min_interactions": lambda: leave_one_out(_dataset(), min_interactions=2),
        "test_ratio": lambda: random_split(_dataset(), test_ratio=1.0),
        "item_dict": lambda: Item.from_dict({"title": "no id"}),
        "learned_empty": lambda: LearnedFusion().fit([]),
        "ties": lambda: _dataset().with_tie_order("latest"),  # type: ignore[arg-type]
    }
    calls[case]()


@pytest.mark.parametrize("case,kind,piece", [
    ("dataset.item", UnknownIdError, "item_id"),
    ("world.user", UnknownIdError, "user_id"),
    ("world.item", UnknownIdError, "'nope'"),
    ("chain_catalog", UnknownIdError, "'zz'"),
    ("metric_name", ConfigError, "ndcg@x"),
    ("metric_cutoff", ConfigError, "ndcg@0"),
    ("metric_kind", ConfigError, "ndgc"),
    ("negatives", DataError, "unseen items"),
    ("alpha", ConfigError, "alpha"),
    ("lam", ConfigError, "lam"),
    ("grid_step", ConfigError, "grid_step"),
    ("fit_metric", ConfigError, "'auc'"),
    ("normalize", ConfigError, "softmax"),
    ("use", ConfigError, "'rank'"),
    ("half_life", ConfigError, "half_life"),
    ("min_interactions", ConfigError, "min_interactions"),
    ("test_ratio", ConfigError, "test_ratio"),
    ("item_dict", DataError, "'id'"),
    ("learned_empty", DataError, "no training lists"),
    ("ties", ConfigError, "ties: must be one of"),
])
def test_user_caused_errors_are_reranker_errors(case, kind, piece):
    with pytest.raises(kind, match=re.escape(piece)) as e:
        _raise(case)
    assert isinstance(e.value, RerankerError)
    assert isinstance(e.value, ValueError)  # DataError / ConfigError: `except ValueError` callers keep working


def test_unknown_id_error_is_also_a_key_error_with_a_plain_message():
    with pytest.raises(KeyError) as e:
        _dataset().item("zz")
    assert str(e.value) == "column 'item_id': unknown item id 'zz'"


def test_file_errors_of_the_library_name_the_file(tmp_path):
    from reranker.config import BaseConfig
    from reranker.data.loaders import load
    from reranker.llm.request import load_request

    (tmp_path / "a.jsonl").write_bytes(b'{"user_id": "u", "item_id": "a"}\n{"user_id": "\xff"}\n')
    with pytest.raises(DataError, match="line 2: not valid UTF-8") as e:
        load(tmp_path / "a.jsonl", format="jsonl")
    assert e.value.path == str(tmp_path / "a.jsonl") and e.value.line == 2
    (tmp_path / "r.json").write_bytes(b'{\n"history": "\xe9"}')
    with pytest.raises(DataError, match="line 2: not valid UTF-8"):
        load_request(tmp_path / "r.json")
    with pytest.raises(ConfigError, match="is a folder"):
        BaseConfig.from_yaml(tmp_path)


def test_broken_adapter_record_is_a_model_error(tmp_path):
    from reranker.training.lora import RECORD, read_record

    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / RECORD).write_text("{not json")
    with pytest.raises(ModelError, match=RECORD):
        read_record(tmp_path)
