"""The error boundary (issue 19, item 4): decoding, OS, sqlite, pyarrow, gzip and JSON errors of
user files and paths become DataError / ConfigError naming the path (CLI: `Error: ...`, exit 2);
a corrupt cache is moved aside and rebuilt with a warning."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fake_backends import CountingBackend

from reranker.cache import KVCache
from reranker.cli import main
from reranker.errors import ConfigError, DataError

EXPERIMENT = {
    "name": "boundary",
    "data": {"synthetic": {"seed": 0, "n_users": 30, "n_items": 40}},
    "protocol": {"regime": "b", "n_boot": 20, "position_bias": {"enabled": False}, "compare_to": None},
    "retriever": {"type": "pop"},
    "rankers": [{"name": "pop", "type": "pop"}],
}


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def usage_error(r: Result, *pieces: str) -> str:
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    line = r.output.strip().splitlines()[-1]
    for piece in pieces:
        assert piece in line, (piece, line)
    return line


def _experiment(tmp_path: Path, **change: object) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(json.dumps({**EXPERIMENT, **change}))
    return p


def _a_file(tmp_path: Path) -> Path:
    f = tmp_path / "plain_file"
    f.write_text("x")
    return f


# ------------------------------------------------------------------------------ UTF-8: byte offsets
def test_non_utf8_data_names_the_byte(tmp_path):
    p = tmp_path / "inter.csv"
    head = b"user_id,item_id\nU0,P0\n"
    p.write_bytes(head + b"U1,P\xe91\n")
    with pytest.raises(DataError) as e:
        from reranker.data import load

        load(p, format="csv")
    assert f"not valid UTF-8 text at byte {len(head) + 4}" in str(e.value) and "line 3" in str(e.value)


def test_non_utf8_config_names_line_and_byte(tmp_path):
    from reranker.evaluation.experiment import ExperimentConfig

    p = tmp_path / "c.yaml"
    p.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 2: not valid UTF-8 at byte 24"):
        ExperimentConfig.from_yaml(p)


def test_non_utf8_request_names_the_byte(tmp_path):
    from reranker.llm.request import load_request

    p = tmp_path / "r.json"
    p.write_bytes(b'{"history": [],\n "candidates": [{"id": "\xff"}]}')
    with pytest.raises(DataError, match=r"r\.json, line 2: not valid UTF-8 text at byte 40"):
        load_request(p)


def test_unicode_error_reaching_the_cli_names_the_byte(tmp_path, monkeypatch):
    import reranker.data.loaders as loaders

    def boom(*a, **k):
        b"abc\xff".decode("utf-8")

    monkeypatch.setattr(loaders, "load", boom)
    usage_error(run("data", "describe", tmp_path), "not valid UTF-8", "at byte 3")


# ------------------------------------------------------------------------------ output paths
def test_eval_out_is_a_file(tmp_path):
    f = _a_file(tmp_path)
    usage_error(run("eval", "--config", _experiment(tmp_path), "--out", f, "--no-cache", "--no-progress"),
                "--out", str(f), "is a file")  # click's own check
    usage_error(run("eval", "--config", _experiment(tmp_path), "--out", f / "sub", "--no-cache", "--no-progress"),
                "--out", str(f / "sub"), "is a file")


def test_output_dir_in_config_is_a_file(tmp_path):
    f = _a_file(tmp_path)
    usage_error(run("eval", "--config", _experiment(tmp_path, output_dir=str(f / "x")), "--no-cache"),
                "output_dir", str(f), "is a file")


def test_cache_dir_is_a_file(tmp_path):
    f = _a_file(tmp_path)
    usage_error(run("eval", "--config", _experiment(tmp_path, cache_dir=str(f)), "--out", tmp_path / "o"),
                "cache_dir", str(f), "is a file, not a folder")


def test_cache_file_is_a_folder(tmp_path):
    (tmp_path / "c.sqlite").mkdir()
    with pytest.raises(ConfigError, match=r"c\.sqlite: is a folder"):
        KVCache(tmp_path / "c.sqlite")


def test_finetune_output_dir_is_a_file(tmp_path):
    from reranker.training.trainer import Trainer

    f = _a_file(tmp_path)
    cfg = {"model": "smollm2-135m", "max_steps": 1, "output_dir": str(f / "run")}
    with pytest.raises(ConfigError, match=r"output_dir: .*plain_file/run: cannot create the folder: .* is a file"):
        Trainer(cfg)
    p = tmp_path / "ft.yaml"
    p.write_text(json.dumps({"model": "smollm2-135m", "max_steps": 1}))
    usage_error(run("finetune", "--config", p, "--out", f / "run"), "--out", str(f / "run"), "is a file")


# ------------------------------------------------------------------------------ sqlite: corrupt caches
def _garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a sqlite database\n" * 200)


def test_corrupt_eval_cache_is_moved_aside_and_rebuilt(tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    _garbage(cache_dir / "cache.sqlite")
    with caplog.at_level(logging.WARNING, logger="reranker.cache"):
        r = run("eval", "--config", _experiment(tmp_path, cache_dir=str(cache_dir)), "--out", tmp_path / "o",
                "--no-progress", "--users", 5)
        assert r.exit_code == 0, r.output
    aside = sorted(cache_dir.glob("cache.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert any("corrupt" in m and "moved it to" in m for m in caplog.messages)
    with KVCache(cache_dir / "cache.sqlite") as again:  # the rebuilt cache holds the run's rankings
        assert len(again) > 0


def test_corrupt_llm_cache_is_moved_aside_and_rebuilt(tmp_path, caplog):
    from reranker.evaluation.llm_cache import CachedBackend
    from reranker.llm.base import LLMConfig

    path = tmp_path / "llm.sqlite"
    _garbage(path)
    with caplog.at_level(logging.WARNING, logger="reranker.cache"):
        be = CachedBackend(LLMConfig(), KVCache(path), backend=CountingBackend())
        first = be.generate(["a"], max_new_tokens=4)
    assert be.generate(["a"], max_new_tokens=4) == first and be.inner.generated == 1
    assert list(tmp_path.glob("llm.sqlite.corrupt-*"))
    assert any("corrupt" in m for m in caplog.messages)


def test_cache_damaged_mid_file_is_rebuilt_at_first_access(tmp_path):
    path = tmp_path / "c.sqlite"
    with KVCache(path) as c:
        c.put_many({str(i): "x" * 400 for i in range(2000)})
    for side in tmp_path.glob("c.sqlite-*"):
        side.unlink()
    raw = bytearray(path.read_bytes())
    raw[8192:16384] = b"\xff" * 8192  # damaged pages, a valid header
    path.write_bytes(bytes(raw))
    c = KVCache(path)
    got = c.get_many([str(i) for i in range(2000)])  # a miss for every key, no traceback
    assert got == {} and c.recovered
    c.put("k", 1)
    assert c.get("k") == 1
    c.close()


def test_value_that_is_not_json_is_a_miss(tmp_path):
    import sqlite3

    path = tmp_path / "c.sqlite"
    KVCache(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO kv VALUES ('k', '{not json')")
    with KVCache(path) as c:
        assert c.get("k", "default") == "default" and c.get_many(["k"]) == {}


# ------------------------------------------------------------------------------ pyarrow, gzip, JSON
def test_corrupt_parquet_data_file(tmp_path):
    import pandas as pd

    p = tmp_path / "interactions.parquet"
    pd.DataFrame({"user_id": ["u"] * 50, "item_id": ["i"] * 50}).to_parquet(p)
    p.write_bytes(p.read_bytes()[:-40])
    usage_error(run("data", "describe", p, "--format", "parquet"), str(p), "cannot read Parquet")
    p.write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    usage_error(run("data", "describe", p, "--format", "parquet"), str(p), "cannot read Parquet")


def _amazon(tmp_path: Path) -> tuple[Path, bytes]:
    rev = "\n".join(json.dumps({"user_id": f"u{i % 5}", "parent_asin": f"p{i % 7}", "rating": 4,
                                "timestamp": 1000 * i}) for i in range(300)).encode()
    meta = "\n".join(json.dumps({"parent_asin": f"p{i}", "title": f"T{i}"}) for i in range(7)).encode()
    (tmp_path / "meta_X.jsonl.gz").write_bytes(gzip.compress(meta))
    return tmp_path / "X.jsonl.gz", gzip.compress(rev)


def test_truncated_gzip_jsonl(tmp_path):
    reviews, full = _amazon(tmp_path)
    reviews.write_bytes(full[: len(full) // 2])
    usage_error(run("data", "describe", tmp_path, "--format", "amazon2023"), str(reviews),
                "truncated or corrupt compressed file")
    reviews.write_bytes(full[:20] + b"\x00" * 60 + full[80:])  # damaged deflate data
    usage_error(run("data", "describe", tmp_path, "--format", "amazon2023"), str(reviews),
                "truncated or corrupt compressed file")


@pytest.mark.parametrize(("text", "piece"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"history": [], "candidates": [{"id": "a", "n": ' + "9" * 5000 + "}]}", "invalid JSON"),
])
def test_hostile_json_request(tmp_path, text, piece):
    p = tmp_path / "req.json"
    p.write_text(text)
    usage_error(run("rerank", "--input", p), str(p), piece)


def test_binary_request_file(tmp_path):
    p = tmp_path / "req.json"
    p.write_bytes(b"PAR1\x15\x04\x15\x00\x00\xff")
    usage_error(run("rerank", "--input", p), str(p), "not valid UTF-8")


@pytest.mark.parametrize("exc", [FileExistsError(17, "File exists", "/out/x"),
                                 OSError(30, "Read-only file system", "/out/x"),
                                 OSError(28, "No space left on device", "/out/x")])
def test_any_os_error_naming_a_path_exits_2(tmp_path, monkeypatch, exc):
    import reranker.data.loaders as loaders

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(loaders, "load", boom)
    assert usage_error(run("data", "describe", tmp_path)) == f"Error: /out/x: {exc.strerror}"
