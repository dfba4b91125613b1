"""`reranker batch` (issue 16): bad rows land in the errors file with their row number and the run
goes on; bounds are LimitErrors; the local engine resumes after a killed run with the output of
an uninterrupted one; the local engine and the Ray engine (a local Ray with 2 CPUs, started once
per session) give identical output for the same input, with a cheap pipeline and with pointwise
SmolLM2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from reranker.batch import load_batch_config, run_local
from reranker.cli import main
from reranker.data.synthetic import generate_world
from reranker.errors import ConfigError, LimitError

ROOT = Path(__file__).resolve().parents[1]
WORLD = {"seed": 0, "users": 60, "items": 200}
CF_PIPELINE = {"retriever": {"type": "itemcf", "k": 20}, "ranking": {"n_candidates": 10, "llm": None, "bert": None},
               "top_k": 5}


def _config(tmp_path: Path, pipeline: dict[str, Any] | None = None, **extra: Any) -> Path:
    cfg = {"pipeline": {"config": pipeline or CF_PIPELINE, "synthetic": WORLD}, "shard_rows": 7, "batch_size": 4,
           "limits": {"max_history": 30, "max_candidates": 12}, **extra}
    path = tmp_path / "batch.yaml"
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    return path


def _world() -> Any:
    return generate_world(seed=WORLD["seed"], n_users=WORLD["users"], n_items=WORLD["items"]).dataset


def _good_rows(n_users: int = 20) -> list[dict[str, Any]]:
    ds = _world()
    users = [str(u) for u in ds.user_ids[:n_users]]
    items = [str(i) for i in ds.item_ids]
    rows: list[dict[str, Any]] = []
    for k, u in enumerate(users):
        seen = set(ds.history(u).items)
        unseen = [i for i in items if i not in seen]
        if k % 4 == 0:
            rows.append({"id": f"q{k}", "user_id": u})
        elif k % 4 == 1:
            rows.append({"id": f"q{k}", "history": items[k:k + 3], "context": json.dumps({"device": "mobile"})})
        elif k % 4 == 2:
            rows.append({"id": f"q{k}", "user_id": u, "candidates": unseen[:6]})
        else:
            rows.append({"id": f"q{k}", "user_id": "no-such-user"})  # unknown user: popular items
    return rows


def _unseen(user: str, n: int) -> list[str]:
    ds = _world()
    seen = set(ds.history(user).items)
    return [str(i) for i in ds.item_ids if str(i) not in seen][-n:]


def _bad_rows() -> list[tuple[dict[str, Any], str]]:
    dup = _unseen("U01", 1)[0]
    return [
        ({"id": "b-item", "history": ["P001", "nope"]}, "history[1]: unknown item id 'nope'"),
        ({"id": "b-long", "history": ["P001"] * 31}, "history: 31 items; at most 30 per request (limits.max_history)"),
        ({"id": "b-cands", "user_id": "U01", "candidates": [f"P{i:03d}" for i in range(13)]},
         "candidates: 13 items; at most 12"),
        ({"id": "b-dup", "user_id": "U01", "candidates": [dup, dup]}, f"candidates[1]: duplicate id {dup!r}"),
        ({"id": "", "user_id": "U01"}, "id: empty"),
        ({"id": "b-none"}, "give user_id, history or candidates"),
    ]


def _mixed_rows() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Good rows with the bad ones spread among them; the bad rows' ids -> the expected reason."""
    good, bad = _good_rows(), _bad_rows()
    rows: list[dict[str, Any]] = []
    for i, g in enumerate(good):
        rows.append(g)
        if i % 3 == 1 and bad:
            rows.append(bad.pop(0)[0])
    rows.extend(b for b, _ in bad)
    return rows, {b["id"]: why for b, why in _bad_rows()}


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("user_id", pa.string()), ("history", pa.list_(pa.string())),
                        ("candidates", pa.list_(pa.string())), ("context", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def _results(out: Path) -> pd.DataFrame:
    """The output without the wall-clock column, in row order."""
    return pd.read_parquet(out).drop(columns="latency_s").sort_values("row").reset_index(drop=True)


def _errors(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "_errors.jsonl").read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------ local engine
def test_bad_rows_land_in_the_errors_file_and_the_run_goes_on(tmp_path):
    rows, reasons = _mixed_rows()
    lines: list[Any] = [*rows[:5], "{not json", "", [1, 2], {"id": "b-field", "histroy": ["P001"]}, *rows[5:]]
    inp = _write_jsonl(tmp_path / "req.jsonl", lines)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["batch", "--config", str(_config(tmp_path)), "--input", str(inp),
                                  "--output", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    errs = _errors(out)
    by_id = {e["id"]: e for e in errs}
    for rid, why in reasons.items():
        assert why in by_id[rid]["error"], (rid, by_id[rid])
    assert by_id["b-long"]["error_type"] == "LimitError"
    assert by_id["b-cands"]["error_type"] == "LimitError"
    malformed = [e for e in errs if e["id"] is None]
    assert [(e["row"], e["line"]) for e in malformed] == [(5, 6), (7, 8)]  # '{not json' and [1, 2]
    assert "not valid JSON" in malformed[0]["error"]
    assert "unknown field 'histroy'" in by_id["b-field"]["error"]
    for e in errs:  # the row number points at the line
        assert e["line"] == e["row"] + 1
        if e["id"] is not None:
            assert lines[e["row"]]["id"] == e["id"]
    res = _results(out)
    good = [g["id"] for g in _good_rows()]
    assert list(res["id"]) == good  # every good row, in input order; the blank line is no request
    assert all(len(ids) == 5 for ids in res["item_ids"])
    assert all(len(s) == len(ids) for s, ids in zip(res["scores"], res["item_ids"], strict=True))
    given = res[res["candidates_from"] == "given"]
    assert len(given) == 5 and all(n == 6 for n in given["n_candidates"])
    assert set(res[res["user_id"] == "no-such-user"]["path"]) == {"popular"}
    diag = json.loads(res["diagnostics"][0])
    assert diag["pipeline"]["path"] == "personal" and "latency_s" not in diag["pipeline"]
    summary = json.loads((out / "_summary.json").read_text())
    assert (summary["ranked"], summary["errors"], summary["rows"]) == (20, len(errs), len(lines))
    assert f"20 of {len(lines)} requests ranked" in r.output and f"({len(errs)} bad rows)" in r.output


def test_candidate_objects_with_scores_and_context(tmp_path):
    a, b, c = _unseen("U02", 3)
    inp = _write_jsonl(tmp_path / "req.jsonl", [
        {"id": 1, "user_id": "U02", "candidates": [{"item_id": a, "score": 3.0}, {"id": b, "score": 1}, c],
         "context": {"device": "tv"}},
        {"id": 2, "user_id": "U02", "candidates": [{"item_id": a, "score": "high"}]},
        {"id": 3, "user_id": "U02", "context": "x" * 20_001},
    ])
    cfg = load_batch_config(_config(tmp_path))
    s = run_local(cfg, inp, tmp_path / "out", progress=False)
    assert (s.ranked, s.errors) == (1, 2)
    res = _results(tmp_path / "out")
    assert res["id"][0] == "1" and sorted(res["item_ids"][0]) == sorted([a, b, c])
    errs = {e["id"]: e for e in _errors(tmp_path / "out")}
    assert "candidates[0].score: expected a finite number" in errs["2"]["error"]
    assert errs["3"]["error_type"] == "LimitError" and "limits.max_context_chars" in errs["3"]["error"]


def test_sizes_the_user_controls_are_bounded(tmp_path):
    cfg_path = _config(tmp_path, limits={"max_batch_rows": 8})
    inp = _write_jsonl(tmp_path / "req.jsonl", [{"id": "a", "user_id": "U01"}])
    r = CliRunner().invoke(main, ["batch", "--config", str(cfg_path), "--input", str(inp),
                                  "--output", str(tmp_path / "out"), "--batch-size", "9"])
    assert r.exit_code == 2
    assert "batch_size: 9 rows; at most 8 (limits.max_batch_rows)" in r.output
    with pytest.raises(LimitError, match="shard_rows"):
        load_batch_config(_config(tmp_path, limits={"max_shard_rows": 5}))
    with pytest.raises(ConfigError, match="pipeline config: give --data"):
        load_batch_config(ROOT / "configs" / "pipeline-demo.yaml")
    r = CliRunner().invoke(main, ["batch", "--config", str(_config(tmp_path)), "--input", str(inp),
                                  "--output", str(tmp_path / "o2"), "--concurrency", "2"])
    assert r.exit_code == 2 and "use --engine ray" in r.output


def test_a_finished_job_reruns_as_a_no_op_and_another_job_is_refused(tmp_path):
    rows, _ = _mixed_rows()
    inp = _write_parquet(tmp_path / "req.parquet", rows)
    cfg = load_batch_config(_config(tmp_path))
    out = tmp_path / "out"
    first = run_local(cfg, inp, out, progress=False)
    before = _results(out)
    again = run_local(cfg, inp, out, progress=False)
    assert again.shards_skipped == -(-len(rows) // cfg.shard_rows) and again.ranked == first.ranked
    pd.testing.assert_frame_equal(_results(out), before)
    other = _write_parquet(tmp_path / "other.parquet", rows[:3])
    with pytest.raises(ConfigError, match="holds another batch job"):
        run_local(cfg, other, out, progress=False)
    assert run_local(cfg, other, out, progress=False, overwrite=True).rows == 3
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a batch output folder"):
        run_local(cfg, other, tmp_path / "mine", progress=False, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_job_whose_pipeline_does_not_build_leaves_no_claim_on_the_folder(tmp_path):
    """Bad data in the config: a clear error, and the output folder is as before, so the
    corrected command runs there (it used to be refused as "another batch job")."""
    from reranker.errors import DataError

    inp = _write_parquet(tmp_path / "req.parquet", _good_rows(5))
    out, kept = tmp_path / "out", tmp_path / "empty"
    kept.mkdir()
    bad = load_batch_config(_config(tmp_path), data=tmp_path / "no-such-folder", data_format="csv")
    for folder in (out, kept):
        with pytest.raises(DataError, match="no-such-folder"):
            run_local(bad, inp, folder, progress=False)
    assert not out.exists() and kept.is_dir() and not any(kept.iterdir())
    good = load_batch_config(_config(tmp_path))
    assert run_local(good, inp, out, progress=False).rows == 5
    assert run_local(good, inp, kept, progress=False).rows == 5


def test_resume_after_a_killed_run_gives_the_output_of_an_uninterrupted_one(tmp_path):
    ds = _world()
    users = [str(u) for u in ds.user_ids]
    rows = [{"id": f"r{i}", "user_id": users[i % len(users)]} for i in range(3000)]
    rows[1234] = {"id": "bad", "history": ["nope"]}
    inp = _write_jsonl(tmp_path / "req.jsonl", rows)
    cfg_path = _config(tmp_path, shard_rows=100, batch_size=50)
    ref = tmp_path / "ref"
    run_local(load_batch_config(cfg_path), inp, ref, progress=False)

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "reranker.cli", "batch", "--config", str(cfg_path), "--input", str(inp),
           "--output", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "part-00000.parquet").exists():
        assert proc.poll() is None, "the run ended before its first shard"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # a crash: no clean-up runs
    proc.wait()
    written = sorted(out.glob("part-*.parquet"))
    assert 1 <= len(written) < 30, "killed after the last shard; nothing left to resume"
    assert not (out / "_summary.json").exists()

    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{len(written)} shards already done" in r.stdout
    pd.testing.assert_frame_equal(_results(out), _results(ref))
    assert _errors(out) == _errors(ref) and [e["row"] for e in _errors(out)] == [1234]
    assert not list(out.glob(".*.tmp"))


# ------------------------------------------------------------------------------ Ray engine
@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with 2 CPUs for the whole session (the engine uses it instead of starting one)."""
    ray = pytest.importorskip("ray", reason="the ray extra: pip install -e '.[ray]' (make test installs it)")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    yield ray
    ray.shutdown()


def test_local_and_ray_engines_give_identical_output(tmp_path, ray_cluster):
    from reranker.batch import run_ray

    rows, reasons = _mixed_rows()
    inp = _write_parquet(tmp_path / "req.parquet", rows)
    cfg = load_batch_config(_config(tmp_path, threads=1))  # a fitted float32 model depends on the thread count
    local = run_local(cfg, inp, tmp_path / "local", progress=False)
    ray_out = tmp_path / "ray"
    via_ray = run_ray(cfg, inp, ray_out, concurrency=2, progress=False)
    assert (via_ray.rows, via_ray.ranked, via_ray.errors) == (local.rows, local.ranked, local.errors) == (
        len(rows), 20, len(reasons))
    pd.testing.assert_frame_equal(_results(ray_out), _results(tmp_path / "local"))
    assert _errors(ray_out) == _errors(tmp_path / "local")
    assert [e["row"] for e in _errors(ray_out)] == [i for i, r in enumerate(rows) if r["id"] in reasons]


def test_a_ray_job_whose_pipeline_does_not_build_leaves_no_claim_on_the_folder(tmp_path, ray_cluster):
    """As in the local engine: the actors cannot build the pipeline (bad data), the job fails
    with the cause named, and the corrected command runs in the same folder (it used to be
    refused as "another batch job" without --overwrite)."""
    from reranker.batch import run_ray

    inp = _write_parquet(tmp_path / "req.parquet", _good_rows(5))
    out = tmp_path / "out"
    bad = load_batch_config(_config(tmp_path, threads=1), data=tmp_path / "no-such-folder", data_format="csv")
    with pytest.raises(Exception, match="no-such-folder"):
        run_ray(bad, inp, out, progress=False)
    assert not out.exists()
    assert run_ray(load_batch_config(_config(tmp_path, threads=1)), inp, out, progress=False).rows == 5


@pytest.mark.slow
def test_local_and_ray_engines_agree_with_pointwise_smollm2(tmp_path, ray_cluster):
    """Each Ray actor builds the pipeline (and loads SmolLM2) once; one torch thread on both sides."""
    from reranker.batch import run_ray

    pipeline = {"retriever": {"type": "itemcf", "k": 20},
                "ranking": {"n_candidates": 4, "bert": None,
                            "llm": {"type": "llm-pointwise", "model": "smollm2-135m", "threads": 1,
                                    "item_text_tokens": 0, "max_attrs": 1},
                            "fusion": {"weights": {"cf": 0.5, "llm": 0.5}}},
                "top_k": 4}
    rows = [{"id": "a", "user_id": "U03"}, {"id": "b", "history": ["P001", "P002"]},
            {"id": "c", "user_id": "U05", "candidates": _unseen("U05", 3)}]
    inp = _write_jsonl(tmp_path / "req.jsonl", rows)
    cfg = load_batch_config(_config(tmp_path, pipeline, threads=1))
    run_local(cfg, inp, tmp_path / "local", progress=False)
    run_ray(cfg, inp, tmp_path / "ray", concurrency=1, progress=False)
    local, via_ray = _results(tmp_path / "local"), _results(tmp_path / "ray")
    pd.testing.assert_frame_equal(via_ray, local)
    assert list(local["id"]) == ["a", "b", "c"]
    signals = json.loads(local["diagnostics"][0])["signals"]
    assert set(signals) == {"cf", "llm"} and len(signals["llm"]) == 4


def test_histories_looked_up_once_equal_the_pipelines_own(tmp_path):
    from reranker.batch.process import RequestRanker
    from reranker.serve.loading import load_pipeline

    cfg = load_batch_config(_config(tmp_path))
    pipe = load_pipeline(cfg.pipeline)
    rr = RequestRanker(pipe, cfg, jsonl=True)
    for u in [*map(str, pipe.data.user_ids), "no-such-user", None]:
        for ctx in (None, {"device": "tv"}):
            assert rr._known_history(u, ctx) == pipe.history_for(u, ctx)


def test_pipeline_rank_many_batches_a_listwise_llm_and_equals_rank_one_by_one():
    """`Pipeline.rank_many` (what a batch runs): the listwise LLM's prompts of several requests
    go through batched generate calls; the rankings equal `rank` request by request."""
    from fake_backends import ScriptedBackend

    from reranker.pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig.from_dict({
        "retriever": {"type": "itemcf", "k": 20},
        "ranking": {"n_candidates": 6, "bert": None, "llm": {"type": "llm-listwise", "model": "smollm2-135m"},
                    "fusion": {"weights": {"cf": 0.5, "llm": 0.5}}}})
    batched, single = ScriptedBackend([], default="3, 1, 2"), ScriptedBackend([], default="3, 1, 2")
    world = _world()
    requests = []
    pipe = Pipeline(cfg, llm_backend=batched).fit(world)
    for u in ["U01", "U02", "U03", "U04"]:
        h = pipe.history_for(u)
        requests.append((h, pipe.candidates(h)))
    calls = []
    original = batched.generate
    batched.generate = lambda prompts, *a, **k: calls.append(len(prompts)) or original(prompts, *a, **k)
    many = pipe.rank_many(requests)
    one_pipe = Pipeline(cfg, llm_backend=single).fit(world)
    one = [one_pipe.rank(h, c) for h, c in requests]
    assert [r.item_ids for r in many] == [r.item_ids for r in one]
    assert [r.scores for r in many] == [r.scores for r in one]
    assert calls and max(calls) == len(requests)  # one generate call held every request's prompt


ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


@pytest.mark.skipif(not ML100K.is_dir(), reason="needs ../shared/data/ml-100k")
def test_the_committed_batch_config_fits_on_the_data_set_it_names(tmp_path, monkeypatch):
    """configs/batch-ml100k.yaml names its data set (`data_name: ml-100k`), no `../shared` path:
    the pipeline is fitted on the data cache's copy (installed offline with `--from`)."""
    from reranker.serve.loading import load_pipeline

    monkeypatch.setenv("RERANKER_DATA", str(tmp_path / "cache"))
    r = CliRunner().invoke(main, ["data", "fetch", "ml-100k", "--from", str(ML100K), "--no-progress"])
    assert r.exit_code == 0, r.output
    cfg = load_batch_config(ROOT / "configs" / "batch-ml100k.yaml")
    assert cfg.pipeline.data_name == "ml-100k" and cfg.pipeline.data is None
    pipe = load_pipeline(cfg.pipeline)
    assert (pipe.data.n_users, pipe.data.n_interactions) == (943, 100_000)
    assert len(pipe.retriever.retrieve(pipe.history_for("1"), 20)) == 20  # stage 1 fitted on it
    # --data replaces the name; naming two sources is refused, naming the field
    over = load_batch_config(ROOT / "configs" / "batch-ml100k.yaml", data=ML100K, data_format="recbole")
    assert over.pipeline.data_name is None and over.pipeline.data == ML100K
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  config: {retriever: {type: itemcf}}\n  data: x\n  data_name: ml-100k\n")
    with pytest.raises(ConfigError, match="give one of data .* got data, data_name"):
        load_batch_config(bad)
