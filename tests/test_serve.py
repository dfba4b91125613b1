"""`reranker serve`: every route through FastAPI's test client (the real app object, lifespan
included) and through uvicorn on a loopback port; bad requests get a 4xx naming the field;
feedback survives kill -9; a slow LLM gives the stage-1 order (`degraded`) within the deadline.
The LLM is a test fake (tests/fake_backends.py) and stage 1 a real ItemCF on a small generated
world, so these tests are fast."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fake_backends import ScriptedBackend
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reranker.data.synthetic import generate_world
from reranker.errors import ConfigError
from reranker.pipeline import Pipeline, PipelineConfig
from reranker.serve import ServeConfig, create_app
from reranker.serve.feedback import FeedbackStore
from reranker.serve.run import check_binding

KEY_ENV = "RERANKER_TEST_SERVE_KEY"


class FakeLLM(ScriptedBackend):
    """ScriptedBackend with hidden states (the pointwise ranker asks an in-process backend for them)."""

    hidden_width = 4


class SlowBackend(FakeLLM):
    """Answers like ScriptedBackend, `delay` seconds late."""

    def __init__(self, delay: float) -> None:
        super().__init__([], default="1, 2")
        self.delay = delay

    def score_prompts(self, prompts, labels, return_hidden=False):
        time.sleep(self.delay)
        return super().score_prompts(prompts, labels, return_hidden)


class BrokenBackend(FakeLLM):
    def score_prompts(self, prompts, labels, return_hidden=False):
        raise RuntimeError("secret internal detail")


@pytest.fixture(scope="module")
def pipeline():
    world = generate_world(seed=3, n_users=120, n_items=80)
    cfg = PipelineConfig.from_dict({"ranking": {"llm": None, "bert": None}, "retriever": {"k": 20}})
    return Pipeline(cfg).fit(world.dataset)


def make_config(tmp_path: Path, **kw) -> ServeConfig:
    base = {"rerankers": {"pointwise": {"ranker": {"type": "llm-pointwise"}},
                          "listwise": {"ranker": {"type": "llm-listwise"}}},
            "feedback_db": str(tmp_path / "fb.sqlite3"), "api_key_env": KEY_ENV,
            "limits": {"max_documents": 50, "max_history": 30, "max_body_bytes": 200_000}}
    base.update(kw)
    return ServeConfig.from_dict(base)


@pytest.fixture
def client(tmp_path, pipeline, monkeypatch) -> Iterator[TestClient]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    app = create_app(make_config(tmp_path), backend=FakeLLM([], default="2, 1, 3"), pipeline=pipeline,
                     load_in_background=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def assert_field(r: httpx.Response, status: int, field: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["field"] == field, body
    assert body["error"]["message"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body


# ------------------------------------------------------------------ rerank
COHERE_BODY = {"model": "rerank-english-v3.0", "query": "What is the capital of the United States?",
               "documents": ["Carson City is the capital city of the American state of Nevada.",
                             "Washington, D.C. is the capital of the United States.",
                             "Capital punishment has existed in the United States since before it was a country."],
               "top_n": 2, "return_documents": True}


def test_cohere_style_body_works_unchanged(client):
    r = client.post("/v1/rerank", json=COHERE_BODY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] and body["mode"] == "pointwise" and body["degraded"] is False
    res = body["results"]
    assert len(res) == 2 and len({x["index"] for x in res}) == 2
    assert res[0]["relevance_score"] >= res[1]["relevance_score"]
    for x in res:
        assert x["document"] == {"text": COHERE_BODY["documents"][x["index"]]}
        assert x["item_id"] is None
    assert body["usage"]["tokens_in"] > 0


def test_rerank_objects_history_context_and_modes(client, pipeline):
    known = list(pipeline.data.item_ids[:2])
    body = {"documents": [{"id": "a", "title": "Trail socks", "category": "Sports", "score": 0.2},
                          {"id": 7, "title": "Kettle"}, {"id": "c", "text": "A running cap"}],
            "history": [known[0], {"id": "h1", "title": "Running shoes"}, known[1]],
            "context": {"device": "mobile", "hour": 9}, "user_id": "U001"}
    for mode in ("pointwise", "listwise"):
        r = client.post("/v1/rerank", json={**body, "mode": mode})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["mode"] == mode
        assert sorted(x["index"] for x in out["results"]) == [0, 1, 2]  # every document once
        assert {x["item_id"] for x in out["results"]} == {"a", "7", "c"}
        assert all("document" not in x or x["document"] is None for x in out["results"])
    assert {"valid", "hallucinated", "filled_in"} <= out["diagnostics"].keys()  # listwise parse counts


BAD_RERANK = [
    ({"documents": "not a list"}, "documents"),
    ({"documents": []}, "documents"),
    ({}, "documents"),
    ({"documents": ["a", "b", "c", {"id": ["x"]}]}, "documents[3].id"),
    ({"documents": [{"id": "a", "title": 5}]}, "documents[0].title"),
    ({"documents": ["x"] * 10_000}, "documents"),
    ({"documents": ["x"] * 10_001}, "documents"),
    ({"documents": [{"id": "a"}, {"id": 7}, {"id": "7"}]}, "documents[2]"),
    ({"documents": [{"id": "a"}, {"id": "h"}], "history": [{"id": "h", "title": "H"}]}, "documents[1]"),
    ({"documents": ["x"], "history": ["no-such-item"]}, "history[0].id"),
    ({"documents": ["x"], "history": [{"id": "h", "title": "t"}] * 31}, "history"),
    ({"documents": ["x"], "mode": "verbalizer"}, "mode"),
    ({"documents": ["x"], "mode": "pairwise"}, "mode"),
    ({"documents": ["x"], "top_n": 0}, "top_n"),
    ({"documents": ["x"], "timeout_ms": "soon"}, "timeout_ms"),
    ({"documents": ["x"], "unknown_key": 1}, "unknown_key"),
    ({"documents": ["x"], "context": {"k": {"nested": 1}}}, "context.k"),
]


@pytest.mark.parametrize(("body", "field"), BAD_RERANK, ids=[f for _, f in BAD_RERANK])
def test_bad_rerank_requests_name_the_field(client, body, field):
    assert_field(client.post("/v1/rerank", json=body), 422, field)


def test_not_json_and_huge_bodies(client):
    r = client.post("/v1/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text and r.json()["error"]["field"]
    r = client.post("/v1/rerank", content=b'{"documents": [{"id": "a", "score": Infinity}]}',
                    headers={"content-type": "application/json"})
    assert_field(r, 422, "documents[0].score")
    def chunks():
        yield b'{"documents": ["a"]}'

    assert_field(client.post("/v1/rerank", content=chunks(), headers={"content-type": "application/json"}),
                 411, "Content-Length")
    body = assert_field(client.post("/v1/rerank", json={"documents": [{"id": "a"}, {"id": 7}, {"id": "7"}]}),
                        422, "documents[2]")
    assert body["error"]["message"] == "documents[2]: duplicate id '7' (also at documents[1])"
    big = json.dumps({"documents": ["x" * 1000] * 300})
    assert_field(client.post("/v1/rerank", content=big, headers={"content-type": "application/json"}), 413, "body")


def test_internal_errors_never_leak(tmp_path, pipeline, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    app = create_app(make_config(tmp_path, warm_up=False), backend=BrokenBackend([]), pipeline=pipeline,
                     load_in_background=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/rerank", json={"documents": ["a", "b"]})
        assert r.status_code == 500
        assert "secret" not in r.text and "Traceback" not in r.text
        assert r.json()["error"]["type"] == "internal_error"
        assert 'reranker_requests_total{method="POST",route="/v1/rerank",status="500"} 1' in c.get("/metrics").text


def test_slow_llm_degrades_within_the_deadline(tmp_path, pipeline, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    app = create_app(make_config(tmp_path, warm_up=False), backend=SlowBackend(2.0), pipeline=pipeline,
                     load_in_background=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        t0 = time.perf_counter()
        r = c.post("/v1/rerank", json={"documents": [{"id": "a", "score": 0.1}, {"id": "b", "score": 0.9},
                                                     {"id": "c"}], "timeout_ms": 200})
        elapsed = time.perf_counter() - t0
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] is True and elapsed < 1.5
        assert [x["item_id"] for x in body["results"]] == ["b", "a", "c"]  # the stage-1 scores' order
        assert 'reranker_degraded_total{route="/v1/rerank"} 1' in c.get("/metrics").text


# ------------------------------------------------------------------ recommend
def test_recommend_paths(client, pipeline):
    user = str(pipeline.data.user_ids[0])
    r = client.post("/v1/recommend", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "personal" and len(body["results"]) == 5
    assert [x["rank"] for x in body["results"]] == [1, 2, 3, 4, 5]
    assert all(x["title"] for x in body["results"])
    seen = set(pipeline.data.history(user).items)
    assert not seen & {x["item_id"] for x in body["results"]}
    popular = client.post("/v1/recommend", json={"anonymous": True, "k": 3}).json()
    assert popular["path"] == "popular" and len(popular["results"]) == 3
    unknown = client.post("/v1/recommend", json={"user_id": "nobody", "k": 3}).json()
    assert unknown["path"] == "popular" and unknown["results"] == popular["results"]
    adhoc = client.post("/v1/recommend", json={"history": list(pipeline.data.item_ids[:3]),
                                               "context": {"device": "mobile"}}).json()
    assert adhoc["path"] == "personal" and len(adhoc["results"]) == pipeline.config.top_k


def test_template_explanations_need_no_llm(client, pipeline):
    """explain_mode: template (issue 18): the evidence sentence, co-choice counts from the served data."""
    user = str(pipeline.data.user_ids[0])
    r = client.post("/v1/recommend", json={"user_id": user, "k": 3, "explain": True, "explain_mode": "template"})
    assert r.status_code == 200, r.text
    whys = [x["explanation"] for x in r.json()["results"]]
    assert all(w and w.startswith("You may like") for w in whys)
    hist = list(pipeline.data.history(user).items[-3:])
    docs = [{"id": i} for i in pipeline.data.item_ids[-4:] if i not in hist][:3]
    body = {"documents": docs, "history": hist, "explain": True, "explain_mode": "template"}
    r = client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    assert all(x["explanation"].startswith("You may like") for x in r.json()["results"])
    assert_field(client.post("/v1/recommend", json={"user_id": user, "explain": True, "explain_mode": "poem"}),
                 422, "explain_mode")


BAD_RECOMMEND = [
    ({}, "history"),
    ({"history": []}, "history"),
    ({"anonymous": True, "user_id": "U001"}, "anonymous"),
    ({"history": ["P00", "nope"]}, "history[1]"),
    ({"user_id": "U001", "k": 0}, "k"),
    ({"user_id": "U001", "k": 500}, "k"),
    ({"user_id": ["U001"]}, "user_id"),
    ({"user_id": "U001", "explain": True}, "explain"),  # the pipeline has no LLM to explain with
]


@pytest.mark.parametrize(("body", "field"), BAD_RECOMMEND, ids=[f for _, f in BAD_RECOMMEND])
def test_bad_recommend_requests_name_the_field(client, body, field):
    assert_field(client.post("/v1/recommend", json=body), 422, field)


def test_recommend_without_a_pipeline_is_503(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    app = create_app(make_config(tmp_path), backend=FakeLLM([], default="1"), load_in_background=False)
    with TestClient(app) as c:
        assert_field(c.post("/v1/recommend", json={"user_id": "U001"}), 503, "pipeline")
        assert_field(c.post("/v1/rerank", json={"documents": ["x"], "history": ["P00"]}), 422, "history[0].id")


# ------------------------------------------------------------------ feedback, health, auth
def test_feedback_is_stored_once_per_id(client, tmp_path):
    events = [{"user_id": "U001", "item_id": "P01", "event": "click", "id": "e1"},
              {"user_id": 5, "item_id": "P02", "event": "rating", "value": 4.5, "timestamp": 1.7e9, "id": "e2"},
              {"user_id": "U001", "item_id": "P03", "event": "view"}]
    r = client.post("/v1/feedback", json={"events": events})
    assert r.status_code == 200 and r.json() == {"accepted": 3, "duplicates": 0}
    r = client.post("/v1/feedback", json={"events": events[:2]})
    assert r.json() == {"accepted": 0, "duplicates": 2}
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    assert store.count() == 3 and store.ids() == {"e1", "e2"}
    store.close()
    assert_field(client.post("/v1/feedback", json={"events": [{**events[0], "event": "like"}]}), 422, "events[0].event")
    assert_field(client.post("/v1/feedback", json={"events": []}), 422, "events")
    assert_field(client.post("/v1/feedback", json={"events": [events[2]] * 1001}), 422, "events")


def test_health_ready_metrics_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and set(ready["modes"]) == {"pointwise", "listwise"}
    client.post("/v1/rerank", json={"documents": ["a"]})
    client.post("/v1/rerank", json={"documents": []})
    text = client.get("/metrics").text
    assert 'reranker_requests_total{method="POST",route="/v1/rerank",status="200"} 1' in text
    assert 'reranker_request_errors_total{method="POST",route="/v1/rerank",status="422"} 1' in text
    assert 'reranker_request_seconds_count{route="/v1/rerank"} 2' in text
    assert 'reranker_llm_tokens_total{direction="in"}' in text
    schema = client.get("/openapi.json").json()
    assert {"/v1/rerank", "/v1/recommend", "/v1/feedback", "/healthz", "/readyz", "/metrics"} <= schema["paths"].keys()
    assert client.get("/docs").status_code == 200
    r = client.get("/no-such-route")
    assert r.status_code == 404 and r.json()["error"]["type"] == "http_error"


def test_api_key(tmp_path, pipeline, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "s3cret")
    app = create_app(make_config(tmp_path), backend=FakeLLM([], default="1"), pipeline=pipeline,
                     load_in_background=False)
    with TestClient(app) as c:
        for path, body in (("/v1/rerank", {"documents": ["a"]}), ("/v1/recommend", {"anonymous": True}),
                           ("/v1/feedback", {"events": [{"user_id": "u", "item_id": "i", "event": "view"}]})):
            assert_field(c.post(path, json=body), 401, "Authorization")
            assert_field(c.post(path, json=body, headers={"Authorization": "Bearer wrong"}), 401, "Authorization")
            assert c.post(path, json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_non_loopback_needs_a_key(monkeypatch, tmp_path):
    cfg = make_config(tmp_path)
    monkeypatch.delenv(KEY_ENV, raising=False)
    check_binding(cfg, "127.0.0.1")
    with pytest.raises(ConfigError, match=r"api_key_env: serving on 0\.0\.0\.0"):
        check_binding(cfg, "0.0.0.0")
    monkeypatch.setenv(KEY_ENV, "k")
    check_binding(cfg, "0.0.0.0")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["documents", "history", "id", "title", "top_n", "mode", "events", "user_id",
                         "item_id", "event", "k", "context", "score", "anonymous", "x"]), kids, max_size=5),
    max_leaves=12))
def test_generated_bodies_never_5xx(client, body):
    for path in ("/v1/rerank", "/v1/recommend", "/v1/feedback"):
        r = client.post(path, json=body)
        assert r.status_code < 500, (path, body, r.text)
        if r.status_code >= 400:
            assert r.json()["error"]["message"]


# ------------------------------------------------------------------ the real server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app) -> Iterator[str]:
    """uvicorn serving `app` on a loopback port, in a thread; yields its URL once ready."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    else:
        raise AssertionError("the server did not get ready")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server(tmp_path, pipeline, monkeypatch) -> Iterator[str]:
    """uvicorn serving the app on a loopback port, in a thread."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    app = create_app(make_config(tmp_path, workers=4), backend=FakeLLM([], default="1, 2"),
                     pipeline=pipeline)
    with serving(app) as url:
        yield url


def test_live_server_concurrent_clients(live_server, pipeline):
    user = str(pipeline.data.user_ids[1])

    def call(i: int) -> int:
        with httpx.Client(base_url=live_server, timeout=30) as c:
            if i % 3 == 0:
                return c.post("/v1/rerank", json=COHERE_BODY).status_code
            if i % 3 == 1:
                return c.post("/v1/recommend", json={"user_id": user, "k": 5}).status_code
            return c.post("/v1/feedback", json={"events": [{"user_id": user, "item_id": "P01", "event": "click",
                                                           "id": f"live-{i}"}]}).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(call, range(48)))
    assert codes == [200] * 48
    assert_field(httpx.post(live_server + "/v1/rerank", json={"documents": ["a", {"id": []}]}), 422, "documents[1].id")


class TitleOrderLLM(FakeLLM):
    """Answers a listwise prompt with its candidates' labels in the alphabetical order of their
    titles, `delay` seconds after each `generate` call; records every call's batch size."""

    def __init__(self, delay: float) -> None:
        super().__init__([], default="1")
        self.delay = delay
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def generate(self, prompts, max_new_tokens=None, seed=0, repetition_penalty=None):
        from reranker.llm.base import Generation

        time.sleep(self.delay)
        with self._lock:
            self.calls.append(len(prompts))
        out = []
        for p in prompts:
            shown = re.findall(r'^\[(\d+)\] "([^"]*)"', p, flags=re.M)
            out.append(Generation(", ".join(lab for lab, _ in sorted(shown, key=lambda x: x[1])), 10, 5))
        return out


def _listwise_body(i: int) -> dict:
    words = ["apple", "birch", "cedar", "delta", "ember", "fjord"]
    order = words[i % 6:] + words[:i % 6]
    return {"mode": "listwise", "history": [{"id": f"h{i}", "title": f"history item {i}"}],
            "documents": [{"id": f"r{i}-{w}", "title": f"{w} {i}"} for w in order]}


@pytest.mark.parametrize("micro_batch", [True, False])
def test_concurrent_listwise_requests_share_batched_generations(tmp_path, pipeline, monkeypatch, micro_batch):
    """16 concurrent listwise requests: micro-batched into a few shared `generate` calls, each
    request still gets its own ranking; with micro-batching off, one call per request."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    be = TitleOrderLLM(delay=0.3)
    cfg = make_config(tmp_path, workers=4, micro_batch={"enabled": micro_batch, "max_wait_ms": 200})
    app = create_app(cfg, backend=be, pipeline=pipeline)
    with serving(app) as url:
        be.calls.clear()  # (the warm-up)

        def call(i: int) -> list[str]:
            with httpx.Client(base_url=url, timeout=60) as c:
                r = c.post("/v1/rerank", json=_listwise_body(i))
                assert r.status_code == 200, r.text
                return [x["item_id"] for x in r.json()["results"]]

        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(call, range(16)))
        metrics = httpx.get(url + "/metrics").text
    for i, ids in enumerate(got):
        assert ids == sorted(ids, key=lambda x: x.split("-")[1]) and all(x.startswith(f"r{i}-") for x in ids)
    if micro_batch:
        assert max(be.calls) > 1 and len(be.calls) < 16, be.calls
        assert 'reranker_batched_requests_total{mode="listwise"} 16' in metrics
    else:
        assert be.calls == [1] * 16
        assert "reranker_batched_requests_total{" not in metrics


def test_rank_prepared_batches_agreeing_requests_and_isolates_a_failing_one():
    from reranker.api import Reranker
    from reranker.errors import DataError

    be = TitleOrderLLM(delay=0.0)
    rr = Reranker(mode="listwise", backend=be)
    assert rr.batches_requests > 1
    bodies = [_listwise_body(i) for i in range(3)]
    reqs = [rr.prepare(b["history"], b["documents"]) for b in bodies]
    bad = rr.prepare([{"id": "h", "title": "t"}], ["not-in-any-catalog", {"id": "y", "title": "y"}])
    clash = rr.prepare(bodies[0]["history"], [{"id": "r0-apple", "title": "zebra 0"}, {"id": "q", "title": "q"}])
    got = rr.rank_prepared([reqs[0], bad, reqs[1], clash, reqs[2]])
    assert isinstance(got[1], DataError) and "not-in-any-catalog" in str(got[1])
    for b, r in zip(bodies, [got[0], got[2], got[4]], strict=True):
        assert r.item_ids == sorted((d["id"] for d in b["documents"]), key=lambda x: x.split("-")[1])
    assert got[3].item_ids == ["q", "r0-apple"]  # its own title for r0-apple ("zebra 0"), not request 0's
    alone = [rr.rerank(b["history"], b["documents"]).item_ids for b in bodies]
    assert alone == [got[0].item_ids, got[2].item_ids, got[4].item_ids]
    be.calls.clear()
    together = rr.rank_prepared([*reqs, clash])
    assert be.calls == [3, 1]  # the three agreeing requests in one generate; the clashing one apart
    assert [r.item_ids for r in together] == [*alone, got[3].item_ids]


def test_feedback_survives_kill_9(tmp_path):
    """Every acknowledged event is in the store after `kill -9` and a restart."""
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"rerankers: {{pointwise: {{ranker: {{type: llm-pointwise}}}}}}\nwarm_up: false\n"
                   f"api_key_env: null\nfeedback_db: {tmp_path / 'fb.sqlite3'}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "reranker.cli", "serve", "--config", str(cfg), "--port", str(port)]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    return proc
            except httpx.TransportError:
                time.sleep(0.1)
        proc.kill()
        raise AssertionError("the server did not start")

    proc = start()
    acked: list[str] = []
    stop = threading.Event()

    def post() -> None:
        with httpx.Client(base_url=url, timeout=5) as c:
            n = 0
            while not stop.is_set():
                ids = [f"k{n}-{j}" for j in range(5)]
                n += 1
                try:
                    r = c.post("/v1/feedback", json={"events": [
                        {"user_id": "u", "item_id": "i", "event": "view", "id": x} for x in ids]})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acked.extend(ids)

    t = threading.Thread(target=post)
    t.start()
    time.sleep(1.5)
    proc.kill()  # SIGKILL while the client is posting
    proc.wait(10)
    stop.set()
    t.join(10)
    assert len(acked) > 10
    proc = start()
    try:
        store = FeedbackStore(tmp_path / "fb.sqlite3")
        assert set(acked) <= store.ids()
        store.close()
        r = httpx.post(url + "/v1/feedback", json={"events": [{"user_id": "u", "item_id": "i", "event": "view",
                                                              "id": acked[0]}]})
        assert r.json() == {"accepted": 0, "duplicates": 1}
    finally:
        proc.kill()
        proc.wait(10)


# ------------------------------------------------------------------ feedback into the model
def test_refresh_under_concurrent_load(tmp_path, pipeline, monkeypatch):
    """Feedback events change what a user is recommended after a refresh; requests made while
    refreshes run all succeed (served by the old model, then the new one)."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    app = create_app(make_config(tmp_path, refresh={"every_events": 40}), backend=FakeLLM([], default="1"),
                     pipeline=pipeline, load_in_background=False)
    data = pipeline.data
    newcomer = "NEW-USER"
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/v1/recommend", json={"user_id": newcomer, "k": 5}).json()["path"] == "popular"
        seen = list(data.item_ids[:3])
        events = [{"user_id": newcomer, "item_id": i, "event": "purchase", "id": f"n-{i}"} for i in seen]
        events.append({"user_id": newcomer, "item_id": "not-in-catalog", "event": "click"})
        assert c.post("/v1/feedback", json={"events": events}).json()["accepted"] == 4
        r = c.post("/v1/admin/refresh", params={"wait": "true"}, headers={"content-length": ""})
        assert r.status_code == 411  # a malformed length
        r = c.post("/v1/admin/refresh", params={"wait": "true"})
        assert r.status_code == 202 and r.json() == {"version": 1, "events": 3}
        after = c.post("/v1/recommend", json={"user_id": newcomer, "k": 5}).json()
        assert after["path"] == "personal" and not set(seen) & {x["item_id"] for x in after["results"]}
        assert pipeline.data is data  # the served objects are replaced, never edited

        stop = threading.Event()
        codes: list[int] = []
        users = [str(u) for u in data.user_ids[:20]]

        def load() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                codes.append(c.post("/v1/recommend", json={"user_id": users[n % 20], "k": 5}).status_code)
                codes.append(c.post("/v1/rerank", json={"documents": ["a", "b"], "history": seen[:1]}).status_code)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for b in range(6):  # 240 events: every_events=40 starts background refreshes
            batch = [{"user_id": users[(b * 40 + j) % 20], "item_id": str(data.item_ids[j % 80]), "event": "click"}
                     for j in range(40)]
            assert c.post("/v1/feedback", json={"events": batch}).status_code == 200
            c.post("/v1/admin/refresh")
            time.sleep(0.1)
        deadline = time.time() + 20
        while app.state.service.version < 3 and time.time() < deadline:
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(20)
        assert app.state.service.version >= 3
        assert codes and set(codes) == {200}, sorted(set(codes))
        assert c.get("/readyz").json()["version"] == app.state.service.version
        assert "reranker_refresh_total" in c.get("/metrics").text


@pytest.mark.slow
def test_committed_config_is_ready_within_a_minute(tmp_path):
    """`reranker serve --config configs/serve.yaml` (SmolLM2 warmed up, the ItemCF pipeline
    fitted on the demo world) answers /readyz within 60 s and ranks a Cohere-style body."""
    config = Path(__file__).resolve().parents[1] / "configs" / "serve.yaml"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "RERANKER_API_KEY"}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "reranker.cli", "serve", "--config", str(config),
                             "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while time.time() - t0 < 60:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("not ready within 60 s")
        r = httpx.post(url + "/v1/rerank", json=COHERE_BODY, timeout=60)
        assert r.status_code == 200 and len(r.json()["results"]) == 2
        r = httpx.post(url + "/v1/recommend", json={"user_id": "U001", "k": 3}, timeout=60)
        assert r.status_code == 200 and r.json()["path"] == "personal"
        assert (tmp_path / "runs" / "serve" / "feedback.sqlite3").exists()
    finally:
        proc.kill()
        proc.wait(10)


def test_refresh_on_a_timer(tmp_path, pipeline, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    app = create_app(make_config(tmp_path, refresh={"every_seconds": 1}), backend=FakeLLM([], default="1"),
                     pipeline=pipeline, load_in_background=False)
    with TestClient(app) as c:
        time.sleep(1.3)
        assert app.state.service.version == 0  # no new events: no refresh
        c.post("/v1/feedback", json={"events": [{"user_id": "T", "item_id": "P01", "event": "click"}]})
        deadline = time.time() + 10
        while app.state.service.version == 0 and time.time() < deadline:
            time.sleep(0.1)
        assert app.state.service.version == 1
