"""The `openai` backend against a REAL OpenAI-compatible server: llama.cpp's (llama-cpp-python)
serving the SmolLM2 GGUF on a loopback port (tests/server_fixtures.py, once per session).

The shared BackendSuite; every ranker mode through `Reranker` returns full permutations;
pointwise scores agree with the in-process transformers backend on the same prompts; an
unreachable server, a wrong model name, a timeout, a refused request, a missing key and a
server without log-probabilities each give their clear ModelError; the key stays out of
configs and caches; the cache keys on the server's identity."""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np
import pytest
from backend_suite import BackendSuite
from scipy.stats import spearmanr
from server_fixtures import SERVED_NAME, SERVER_KEY, SERVER_KEY_ENV, free_port

from reranker.api import Reranker
from reranker.cache import KVCache
from reranker.errors import ModelError
from reranker.llm.base import LLMBackend, LLMConfig
from reranker.llm.cached import CachedBackend
from reranker.llm.label_scores import prompt_logprob, top_logprobs
from reranker.llm.openai_backend import OpenAIBackend
from reranker.ranking.pointwise import PointwiseLLMRanker
from reranker.types import Candidate, History


def server_backend(spec: str, **server) -> OpenAIBackend:
    os.environ.setdefault(SERVER_KEY_ENV, SERVER_KEY)  # (the llama_server fixture sets it too)
    settings = {"api_key_env": SERVER_KEY_ENV, "tokenizer": "smollm2-135m", "max_concurrency": 4, **server}
    return OpenAIBackend(LLMConfig(model=spec, server=settings))


@pytest.fixture(scope="module")
def server(llama_server) -> OpenAIBackend:
    backend = server_backend(llama_server.spec)
    yield backend
    backend.close()


class TestOpenAIBackend(BackendSuite):
    atol = 1e-3  # llama.cpp reuses the previous prompt's KV cache: last-digit float differences

    @pytest.fixture
    def backend(self, server):
        return server


class TestCachedOpenAIBackend(BackendSuite):
    atol = 1e-3

    @pytest.fixture
    def backend(self, server, tmp_path):
        return CachedBackend(server.config, KVCache(tmp_path / "c.sqlite"), backend=server)


# ----------------------------------------------------------------------------- requests
@pytest.fixture(scope="module")
def world_requests():
    """Three users of the generated world: 10 history items, 10 unseen candidates each."""
    from reranker.data.synthetic import generate_world

    world = generate_world(seed=3, n_users=40, n_items=120)
    ds = world.dataset
    items = [str(i) for i in world.item_ids]
    reqs = []
    rng = np.random.default_rng(0)
    for u in [str(u) for u in world.user_ids[:3]]:
        hist = [str(i) for i in ds.interactions.loc[ds.interactions.user_id == u, "item_id"]][-10:]
        pool = [i for i in items if i not in set(hist)]
        cands = [Candidate(str(i), 0.0, "test") for i in rng.choice(pool, 10, replace=False)]
        reqs.append((History(u, hist), cands))
    return ds, reqs


@pytest.mark.parametrize("mode", ["pointwise", "verbalizer", "listwise"])
def test_every_mode_returns_a_full_permutation(llama_server, world_requests, mode):
    ds, reqs = world_requests
    server = {"api_key_env": SERVER_KEY_ENV, "tokenizer": "smollm2-135m"}
    rr = Reranker(llama_server.spec, mode, catalog=ds, server=server, max_history=5)
    history, cands = reqs[0]
    ranking = rr.rerank(history, cands)
    ids = [c.item_id for c in cands]
    assert sorted(r.item_id for r in ranking.items) == sorted(ids)
    assert ranking.diagnostics["model"] == llama_server.spec
    if mode == "pointwise":
        assert ranking.diagnostics["labels_scored"] == 2 * len(ids)
        assert 0 <= ranking.diagnostics["labels_missing"] <= ranking.diagnostics["labels_scored"]
    if mode == "verbalizer":
        assert ranking.diagnostics["labels_scored"] == len(ids)  # one prompt, a letter per candidate
    if mode == "listwise":
        assert ranking.diagnostics["tokens_out"] > 0 and ranking.diagnostics["raw"]


def test_arerank_runs_users_concurrently_and_explains(llama_server, world_requests):
    ds, reqs = world_requests
    server = {"api_key_env": SERVER_KEY_ENV, "tokenizer": "smollm2-135m", "max_concurrency": 4}
    rr = Reranker(llama_server.spec, "pointwise", catalog=ds, server=server, max_history=5,
                  explain_top_k=1, explain_max_new_tokens=24)

    async def main():
        return await asyncio.gather(*(rr.arerank(h, c) for h, c in reqs[:2]),
                                    rr.arerank(*reqs[2], top_k=3, explain=True))

    rankings = asyncio.run(main())
    for (_, cands), ranking in zip(reqs[:2], rankings[:2], strict=True):
        assert sorted(r.item_id for r in ranking.items) == sorted(c.item_id for c in cands)
    assert len(rankings[2].items) == 3 and rankings[2].items[0].explanation
    # the sync path agrees with the async one (same prompts, greedy, same server)
    again = rr.rerank(*reqs[0])
    np.testing.assert_allclose([r.score for r in again.items], [r.score for r in rankings[0].items], atol=1e-3)


#: yes/no questions whose answers the model is more or less sure of: a wide score range
QUESTIONS = ["Is Paris the capital of France?", "Is the sun cold?", "Do fish live in water?",
             "Is two plus two five?", "Is ice frozen water?", "Can dogs fly?", "Is the Pacific an ocean?",
             "Do humans have three legs?", "Is a running shoe worn on the foot?",
             "Is an espresso machine used for running?", "Is Berlin in Germany?", "Is snow hot?"]
#: largest |difference| of logp(Yes) - logp(No) between the bf16 model and the Q4_1 GGUF
MAX_SCORE_DIFF = 0.5


@pytest.mark.slow
def test_pointwise_scores_agree_with_the_in_process_backend(smollm, server, world_requests):
    """Same prompts through transformers (bf16 safetensors converted from the GGUF) and
    llama.cpp (the Q4_1 GGUF itself, activations quantized to 8 bits in its matmuls).

    Over prompts with a wide score range the two order the scores alike (Spearman >= 0.9).
    Within one ranker list SmolLM2's Yes-No scores span only 0.3-0.5 nats, the size of the
    quantization noise: there the per-list Spearman of the two backends is 0.3-0.9 (bf16 vs
    fp32 in process agree no better: 0.4-1.0), so each score is held to MAX_SCORE_DIFF instead."""
    prompts = [smollm.chat_prompt(f"{q} Answer Yes or No.") for q in QUESTIONS]
    assert prompts == [server.chat_prompt(f"{q} Answer Yes or No.") for q in QUESTIONS]
    local = smollm.score_prompts(prompts, ["Yes", "No"]).logits
    remote = server.score_prompts(prompts, ["Yes", "No"])
    assert remote.meta["labels_missing"] == 0
    a, b = local[:, 0] - local[:, 1], remote.logits[:, 0] - remote.logits[:, 1]
    assert spearmanr(a, b).statistic >= 0.9, (a.round(2).tolist(), b.round(2).tolist())
    assert np.abs(a - b).max() <= MAX_SCORE_DIFF

    ds, reqs = world_requests
    ranker = PointwiseLLMRanker(backend=smollm, catalog=ds, max_history=10)
    for history, cands in reqs:
        prompts, _ = ranker.build_prompts(history, cands)
        assert server.count_tokens(prompts[0]) == smollm.count_tokens(prompts[0])
        local = smollm.score_prompts(prompts, ["Yes", "No"]).logits
        remote = server.score_prompts(prompts, ["Yes", "No"])
        assert remote.meta["labels_missing"] == 0
        a, b = local[:, 0] - local[:, 1], remote.logits[:, 0] - remote.logits[:, 1]
        assert np.abs(a - b).max() <= MAX_SCORE_DIFF, (a.round(2).tolist(), b.round(2).tolist())


# ----------------------------------------------------------------------------- errors
def test_unreachable_server_is_a_clear_error():
    backend = server_backend(f"openai:{SERVED_NAME}@http://127.0.0.1:{free_port()}/v1", retries=1, backoff_s=0.01)
    with pytest.raises(ModelError, match=r"cannot connect.*2 tries.*server running.*server.base_url"):
        backend.generate(["Hello"], max_new_tokens=2)
    backend.close()


def test_wrong_model_name_lists_what_the_server_serves(llama_server):
    backend = server_backend(llama_server.spec.replace(SERVED_NAME, "qwen-7b"))
    with pytest.raises(ModelError, match=r"does not serve a model 'qwen-7b'.*\['smollm2-135m'\].*openai:MODEL@URL"):
        backend.score_prompts(["Hi"], ["Yes", "No"])
    backend.close()


def test_timeout_is_a_clear_error(llama_server, server):
    server.count_tokens("warm up")  # (the tokenizer loads outside the timed request)
    backend = server_backend(llama_server.spec, timeout_s=0.05, retries=0)
    backend._served = {"id": SERVED_NAME}  # skip the (fast) model listing: time the generation only
    with pytest.raises(ModelError, match=r"no answer within server.timeout_s=0.05 s.*raise server.timeout_s"):
        backend.generate([server.chat_prompt("Write a long story about a cat.")], max_new_tokens=300)
    backend.close()


def test_a_refused_request_quotes_the_server(server):
    too_long = "word " * 2200  # > 2048 tokens
    with pytest.raises(ModelError, match=r"HTTP 400: .*maximum context length is 2048 tokens"):
        server.generate([too_long], max_new_tokens=4)


def test_a_missing_key_names_the_setting(llama_server, monkeypatch):
    backend = OpenAIBackend(LLMConfig(model=llama_server.spec, server={"tokenizer": "smollm2-135m"}))
    with pytest.raises(ModelError, match=r"HTTP 401.*server.api_key_env"):
        backend.generate(["Hi"], max_new_tokens=2)
    backend.close()
    monkeypatch.delenv(SERVER_KEY_ENV)
    with pytest.raises(ModelError, match=rf"names {SERVER_KEY_ENV}, which is not set"):
        OpenAIBackend(LLMConfig(model=llama_server.spec, server={"api_key_env": SERVER_KEY_ENV}))


def test_exact_label_scores_need_vllm(llama_server):
    """`label_scores: prompt_logprobs` reads vLLM's prompt_logprobs; llama.cpp has none."""
    backend = server_backend(llama_server.spec, label_scores="prompt_logprobs", retries=0)
    with pytest.raises(ModelError, match=r"prompt_logprobs needs vLLM; set it to top_logprobs"):
        backend.score_prompts([backend.chat_prompt("Hi")], ["Yes", "No"])
    backend.close()


def test_label_score_readers_take_the_openai_and_vllm_answer_forms():
    legacy = {"choices": [{"logprobs": {"top_logprobs": [{"Yes": -0.5, "No": -1.5}]}}]}
    chat = {"choices": [{"logprobs": {"content": [{"top_logprobs": [{"token": "Yes", "logprob": -0.5},
                                                                     {"token": "No", "logprob": -1.5}]}]}}]}
    assert top_logprobs(legacy) == top_logprobs(chat) == {"Yes": -0.5, "No": -1.5}
    assert top_logprobs({"choices": [{"logprobs": None}]}) == {}
    # vLLM: one entry per prompt position (the first None), keyed by token id
    vllm = {"choices": [{"prompt_logprobs": [None, {"11": {"logprob": -2.0, "rank": 3, "decoded_token": "a"}},
                                             {"42": {"logprob": -0.25, "rank": 1, "decoded_token": "Yes"}}]}]}
    assert prompt_logprob(vllm, 42) == -0.25
    assert prompt_logprob(vllm, 7) is None and prompt_logprob({"choices": [{}]}, 42) is None


def test_hidden_states_are_refused(server):
    with pytest.raises(ModelError, match="no hidden states"):
        server.score_prompts(["Hi"], ["Yes", "No"], return_hidden=True)


def test_a_server_without_logprobs_names_the_setting(tmp_path):
    """A second server started with --logits_all false answers scoring requests with an error."""
    from server_fixtures import LLAMA_CPP_AVAILABLE, smollm_gguf, start_server, stop_server

    if not LLAMA_CPP_AVAILABLE:
        pytest.skip("llama_cpp is not installed")
    proc, base_url = start_server(smollm_gguf(), tmp_path / "server.log", "--logits_all", "false")
    try:
        backend = server_backend(f"openai:{SERVED_NAME}@{base_url}", retries=0)
        with pytest.raises(ModelError, match=r"logits_all.*--max-logprobs.*server.top_logprobs.*listwise"):
            backend.score_prompts(["Hi"], ["Yes", "No"])
        assert backend.generate(["Hi"], max_new_tokens=2)[0].tokens_out <= 2  # generation still works
        backend.close()
    finally:
        stop_server(proc)


# ----------------------------------------------------------------------------- key, cache
def test_the_key_stays_out_of_configs_and_caches(server, tmp_path):
    assert isinstance(server, LLMBackend)
    assert SERVER_KEY not in server.config.model_dump_json()
    cache_path = tmp_path / "c.sqlite"
    cached = CachedBackend(server.config, KVCache(cache_path), backend=server)
    cached.score_prompts([server.chat_prompt("Hi")], ["Yes", "No"])
    cached.generate([server.chat_prompt("Hi")], max_new_tokens=3)
    assert SERVER_KEY.encode() not in cache_path.read_bytes()
    assert SERVER_KEY not in cached.model_id


def test_cache_keys_on_the_server_identity_not_on_operational_settings(server, llama_server, tmp_path):
    identity = server.identity()
    assert identity["base_url"] == llama_server.base_url and identity["model"] == SERVED_NAME
    a = CachedBackend(server.config, KVCache(tmp_path / "a.sqlite"), backend=server)
    other = server_backend(llama_server.spec, max_concurrency=1, timeout_s=30)
    b = CachedBackend(other.config, KVCache(tmp_path / "b.sqlite"), backend=other)
    assert a.model_id == b.model_id and json.dumps(identity, sort_keys=True) in a.model_id
    other.close()
    # in-process keys hold the model settings as they run here (dtype auto resolved)
    from reranker.llm.hf import resolve_dtype

    local = CachedBackend(LLMConfig(), KVCache(tmp_path / "c.sqlite")).model_id  # dtype auto: keyed as resolved
    assert local == LLMConfig(dtype=resolve_dtype(LLMConfig()).dtype).model_dump_json() and '"dtype":"auto"' not in local
    assert "server" not in LLMConfig().model_dump_json()


def test_an_eval_row_names_the_server(llama_server, tmp_path):
    """`reranker eval`: an experiment row runs its LLM through the server (regime B, 3 users)."""
    import yaml
    from click.testing import CliRunner

    from reranker.cli import main

    cfg = {
        "name": "tiny-server",
        "data": {"synthetic": {"seed": 2, "n_users": 40, "n_items": 60}},
        "protocol": {"regime": "b", "n_negatives": 4, "n_boot": 20, "position_bias": {"enabled": False}},
        "rankers": [
            {"name": "pop", "type": "pop"},
            {"name": "server-pointwise", "type": "llm-pointwise",
             "params": {"model": llama_server.spec, "max_history": 5,
                        "server": {"api_key_env": SERVER_KEY_ENV, "tokenizer": "smollm2-135m"}}},
        ],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["eval", "--config", str(path), "--out", str(out), "--no-progress",
                                  "--no-cache", "--users", "3"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "complete"
    rows = res["runs"][0]["rankers"]
    assert set(rows) == {"pop", "server-pointwise"}
    # the share of Yes/No scores the server returned in its top-k log-probabilities, per user
    rate = rows["server-pointwise"]["diagnostics"]["labels_returned_rate"]
    assert rate["n"] == 3 and 0.0 <= rate["mean"] <= 1.0
    assert "labels_returned_rate" not in rows["pop"]["diagnostics"]
    assert "labels in top-k" in (out / "report.md").read_text()
    assert SERVER_KEY not in (out / "results.json").read_text() + (out / "report.md").read_text()


# ----------------------------------------------------------------------------- specs, messages
def test_server_spec_forms():
    from reranker.llm.models import parse_server_spec, resolve_model

    spec = parse_server_spec("openai:qwen2.5:7b@http://127.0.0.1:11434/v1/")
    assert (spec.model, spec.base_url) == ("qwen2.5:7b", "http://127.0.0.1:11434/v1")
    spec = parse_server_spec("openai:Qwen/Qwen2.5-7B-Instruct@https://gpu.example/v1")
    assert (spec.model, spec.base_url) == ("Qwen/Qwen2.5-7B-Instruct", "https://gpu.example/v1")
    assert parse_server_spec("openai:smollm2-135m") == type(spec)("smollm2-135m", None)
    assert parse_server_spec("smollm2-135m") is None
    with pytest.raises(ModelError, match="must start with http"):
        parse_server_spec("openai:m@ftp://host/v1")
    with pytest.raises(ModelError, match="openai backend"):
        resolve_model("openai:m@http://h:1/v1")
    cfg = LLMConfig(model="openai:m@http://h:1/v1")
    assert cfg.backend == "openai" and cfg.server is None and "server" not in cfg.model_dump()
    assert OpenAIBackend(LLMConfig(model="openai:m", server={"base_url": "http://x:2/v1"})).base_url == "http://x:2/v1"


def test_server_messages_are_quoted_from_every_error_form():
    from reranker.llm.http import server_message

    assert server_message(400, '{"error": {"message": "max_tokens too large", "type": "x"}}') == "max_tokens too large"
    assert server_message(422, '{"detail": [{"msg": "field required"}]}') == '[{"msg": "field required"}]'
    assert server_message(404, '{"error": "model \\"x\\" not found"}') == 'model "x" not found'
    assert server_message(502, "Bad Gateway\n") == "Bad Gateway"
    assert server_message(500, "") == "HTTP 500"
    assert server_message(500, "x" * 900).endswith("...")
