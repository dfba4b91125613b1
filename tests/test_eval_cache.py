"""The evaluation cache: key-value store, LLM-call caching, fast re-runs, Ctrl-C partial results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fake_backends import CountingBackend

from reranker.data.synthetic import generate_world
from reranker.evaluation.cache import KVCache, NullCache, make_key, open_cache, prompt_key
from reranker.evaluation.experiment import (
    ExperimentConfig,
    LoadedExperiment,
    register_ranker_type,
    unregister_ranker_type,
)
from reranker.evaluation.llm_cache import CachedBackend
from reranker.evaluation.runner import ExperimentRunner, RunOptions
from reranker.llm.base import LLMConfig
from reranker.types import Ranking


# ----------------------------------------------------------------------------- KVCache
def test_put_get_survive_reopening(tmp_path):
    path = tmp_path / "c.sqlite"
    with KVCache(path) as c:
        c.put("k", {"a": [1, 2.5, "x"], "b": None})
        c.put_many({"k2": 3, "k3": "s"})
        assert c.get("k") == {"a": [1, 2.5, "x"], "b": None}
        assert c.get("missing", "dflt") == "dflt"
    with KVCache(path) as c:
        assert c.get("k2") == 3 and "k3" in c and len(c) == 3
        assert c.get_many(["k", "k3", "nope"]) == {"k": {"a": [1, 2.5, "x"], "b": None}, "k3": "s"}
        c.put("k2", 4)  # replace
        assert c.get("k2") == 4


def test_namespaces_do_not_collide(tmp_path):
    a = KVCache(tmp_path / "c.sqlite", namespace="a")
    b = KVCache(tmp_path / "c.sqlite", namespace="b")
    a.put("k", 1)
    assert b.get("k") is None and a.get("k") == 1
    b.clear()
    assert a.get("k") == 1


def test_cached_runs_the_function_once(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return {"text": "1, 2, 3"}

    c = KVCache(tmp_path / "c.sqlite")
    assert c.cached("smollm2-135m", "prompt", fn) == {"text": "1, 2, 3"}
    assert c.cached("smollm2-135m", "prompt", fn) == {"text": "1, 2, 3"}
    assert len(calls) == 1
    c.cached("other-model", "prompt", fn)  # model id is part of the key
    c.cached("smollm2-135m", "prompt 2", fn)
    assert len(calls) == 3


def test_keys_are_stable_and_distinct():
    assert make_key("a", [1, 2], {"x": 1}) == make_key("a", [1, 2], {"x": 1})
    assert make_key("a", [1, 2]) != make_key("a", [2, 1])
    assert prompt_key("m", "p", seed=0) != prompt_key("m", "p", seed=1)
    assert make_key(np.float64(1.5)) == make_key(1.5)


def test_null_cache_stores_nothing():
    c = open_cache(None, enabled=False)
    assert isinstance(c, NullCache)
    c.put("k", 1)
    assert c.get("k") is None and c.get_many(["k"]) == {} and len(c) == 0
    n = []
    c.cached("m", "p", lambda: n.append(1))
    c.cached("m", "p", lambda: n.append(1))
    assert len(n) == 2


# ----------------------------------------------------------------------------- CachedBackend
def test_cached_backend_serves_repeats_from_disk(tmp_path):
    inner = CountingBackend()
    cache = KVCache(tmp_path / "c.sqlite")
    be = CachedBackend(LLMConfig(), cache, backend=inner)
    g1 = be.generate(["a", "bb"], max_new_tokens=8)
    g2 = be.generate(["bb", "ccc"], max_new_tokens=8)  # one hit, one miss
    assert [g.text for g in g1] == ["[1]", "[2]"] and [g.text for g in g2] == ["[2]", "[3]"]
    assert inner.generated == 3
    be.generate(["a"], max_new_tokens=9)  # other options: a different key
    assert inner.generated == 4
    r1 = be.score_prompts(["p1", "p2"], ["Yes", "No"], return_hidden=True)
    r2 = be.score_prompts(["p1", "p2"], ["Yes", "No"], return_hidden=True)
    assert inner.scored == 1
    np.testing.assert_array_equal(r1.logits, r2.logits)
    np.testing.assert_array_equal(r1.hidden, r2.hidden)
    assert be.count_tokens("abc") == 3  # delegated
    # a fresh process (new wrapper) reads the same file
    be2 = CachedBackend(LLMConfig(), KVCache(tmp_path / "c.sqlite"), backend=CountingBackend())
    be2.generate(["a", "bb"], max_new_tokens=8)
    assert be2.inner.generated == 0


# ----------------------------------------------------------------------------- harness cache
class CountingRanker:
    """A toy ranker that records every inner `rank` call (the user), then reverses the list."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def rank(self, history, candidates):
        self.calls.append(history.user_id)
        return Ranking.from_order([c.item_id for c in candidates][::-1])


class InterruptingRanker:
    """Raises KeyboardInterrupt (as Ctrl-C would) on its 8th user."""

    def __init__(self) -> None:
        self.n = 0

    def rank(self, history, candidates):
        self.n += 1
        if self.n == 8:
            raise KeyboardInterrupt
        return Ranking.from_order([c.item_id for c in candidates])


@pytest.fixture(scope="module")
def world_dataset():
    return generate_world(seed=1, n_users=60, n_items=80).dataset


def _config(rtype: str, regime: str = "b") -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "name": "cache-test",
            "data": {"synthetic": {"seed": 1, "n_users": 60, "n_items": 80}},
            "protocol": {"regime": regime, "n_boot": 50, "position_bias": {"enabled": False}, "compare_to": None},
            "retriever": {"type": "pop"},
            "rankers": [{"name": "pop", "type": "pop"}, {"name": "toy", "type": rtype}],
        }
    )


def test_rerun_with_cache_ranks_nothing_again(tmp_path, world_dataset):
    calls: list[str] = []
    register_ranker_type("count-test", lambda spec, ctx: CountingRanker(calls))
    try:
        loaded = LoadedExperiment(_config("count-test"), None, [tmp_path, tmp_path])

        def run():
            opts = RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False,
                              report=False, dataset=world_dataset)
            return ExperimentRunner(loaded, opts).run()

        first = run()
        first_calls = len(calls)
        second = run()
    finally:
        unregister_ranker_type("count-test")
    toy1, toy2 = first["runs"][0]["rankers"]["toy"], second["runs"][0]["rankers"]["toy"]
    n_users = toy1["n_users"]
    assert n_users == 60
    # first run: every user ranked by the toy ranker, nothing from the cache
    assert first_calls == n_users and sorted(calls) == sorted(set(calls))
    assert toy1["diagnostics"]["cache_hits"] == 0
    assert first["runs"][0]["rankers"]["pop"]["diagnostics"]["cache_hits"] == 0
    # second run: zero inner calls, every user (of every row) a cache hit
    assert len(calls) == first_calls
    assert toy2["diagnostics"]["cache_hits"] == n_users
    assert second["runs"][0]["rankers"]["pop"]["diagnostics"]["cache_hits"] == n_users
    assert toy2["summary"] == toy1["summary"]
    # latency reported for cached users is the one measured when they were computed
    assert toy2["per_user"]["seconds"] == toy1["per_user"]["seconds"]
    assert toy2["diagnostics"]["seconds_per_user"] == toy1["diagnostics"]["seconds_per_user"]


def test_no_cache_recomputes(tmp_path, world_dataset):
    calls: list[str] = []
    register_ranker_type("count-test", lambda spec, ctx: CountingRanker(calls))
    try:
        loaded = LoadedExperiment(_config("count-test"), None, [tmp_path, tmp_path])
        for i in range(2):
            opts = RunOptions(users=5, out_dir=tmp_path / "out", use_cache=False, progress=False,
                              report=False, dataset=world_dataset)
            res = ExperimentRunner(loaded, opts).run()
            assert res["runs"][0]["rankers"]["toy"]["diagnostics"]["cache_hits"] == 0
            assert len(calls) == 5 * (i + 1)  # every user ranked again
    finally:
        unregister_ranker_type("count-test")


def test_ctrl_c_leaves_valid_partial_results(tmp_path, world_dataset):
    register_ranker_type("interrupt-test", lambda spec, ctx: InterruptingRanker())
    try:
        loaded = LoadedExperiment(_config("interrupt-test"), None, [tmp_path, tmp_path])
        opts = RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False,
                          flush_every=3, dataset=world_dataset)
        with pytest.raises(KeyboardInterrupt):
            ExperimentRunner(loaded, opts).run()
    finally:
        unregister_ranker_type("interrupt-test")
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["status"] == "interrupted"
    rankers = res["runs"][0]["rankers"]
    assert rankers["pop"]["complete"] is True and rankers["pop"]["n_users"] == 60
    toy = rankers["toy"]
    assert toy["complete"] is False and toy["n_users"] == 7  # every user ranked before the interrupt
    assert len(toy["per_user"]["ndcg@10"]) == 7
    assert (tmp_path / "out" / "report.md").read_text().count("partial") >= 1
    # the users ranked before the interrupt were cached: a resumed run skips them
    calls: list[str] = []
    register_ranker_type("interrupt-test", lambda spec, ctx: CountingRanker(calls))
    try:
        res2 = ExperimentRunner(loaded, RunOptions(users=8, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                                                   progress=False, report=False, dataset=world_dataset)).run()
    finally:
        unregister_ranker_type("interrupt-test")
    assert res2["runs"][0]["rankers"]["toy"]["diagnostics"]["cache_hits"] == 7  # 8 users, 7 ranked before Ctrl-C
    assert len(calls) == 1  # only the user interrupted mid-ranking is ranked again


class _BatchRanker:
    """A ranker with `rank_many`: records how the runner called it."""

    users_per_batch = 3

    def __init__(self) -> None:
        self.calls: list[int] = []

    def rank(self, history, candidates):  # pragma: no cover - the runner must use rank_many
        raise AssertionError("rank_many expected")

    def rank_many(self, requests):
        self.calls.append(len(requests))
        return [
            Ranking.from_order([c.item_id for c in reversed(list(cands))], {"tokens_in": 5, "tokens_out": 2})
            for _, cands in requests
        ]


def test_runner_ranks_cache_misses_in_blocks_through_rank_many(tmp_path):
    from reranker.evaluation.runner import rank_users
    from reranker.types import History

    users = [f"u{i}" for i in range(7)]
    hist = {u: History(u, ("a",)) for u in users}
    lists = {u: ["x", "y", u] for u in users}
    cache = KVCache(tmp_path / "c.sqlite")
    first = _BatchRanker()
    run = rank_users(first, "b", "fp", users[:4], hist, lists, cache, progress=False)
    assert first.calls == [3, 1] and run.cache_hits == 0
    second = _BatchRanker()
    run = rank_users(second, "b", "fp", users, hist, lists, cache, progress=False)
    assert second.calls == [2, 1]  # block 2 holds u3 (cached) + u4, u5; block 3 is u6 alone
    assert run.cache_hits == 4 and run.users == users  # users keep their order
    assert run.ranked == [[u, "y", "x"] for u in users]
    assert run.tokens == [(5, 2)] * 7


@pytest.mark.parametrize(("flush_seconds", "expected"), [(0.0, 5), (3600.0, 0)])
def test_partial_flushes_are_rate_limited_by_time(world_dataset, flush_seconds, expected):
    """A fast row is not re-scored (bootstrap and all) every `flush_every` users: the partial
    results are written at most once per `flush_seconds`; the cache still gets every block."""
    from reranker.evaluation.ranking_run import rank_users
    from reranker.ranking.base import IdentityRanker
    from reranker.types import History

    users = [f"u{i}" for i in range(10)]
    histories = {u: History(u, ("a",)) for u in users}
    lists = {u: ["x", "y", "z"] for u in users}
    flushed: list[int] = []
    run = rank_users(IdentityRanker(), "id", "fp", users, histories, lists, NullCache(), progress=False,
                     on_flush=lambda r: flushed.append(len(r.users)), flush_every=2, flush_seconds=flush_seconds)
    assert len(run.users) == 10
    assert len(flushed) == expected
    if expected:
        assert flushed == [2, 4, 6, 8, 10]


def test_dtype_auto_is_keyed_as_the_dtype_the_backend_runs_in(tmp_path):
    """bf16 scores from one host must never be served as fp32 ones on another: `dtype: auto`
    is keyed by the backend's resolved dtype; an explicit dtype as set."""
    from reranker.llm.dtype_choice import DtypeChoice

    class Resolved(CountingBackend):
        def __init__(self, dtype: str) -> None:
            super().__init__()
            self.dtype_choice = DtypeChoice(dtype, "calibration")

    cache = KVCache(tmp_path / "c.sqlite")
    bf16 = CachedBackend(LLMConfig(), cache, backend=Resolved("bf16"))
    fp32 = CachedBackend(LLMConfig(), cache, backend=Resolved("fp32"))
    assert '"dtype":"bf16"' in bf16.model_id and '"dtype":"fp32"' in fp32.model_id
    bf16.score_prompts(["p"], ["Yes", "No"])
    fp32.score_prompts(["p"], ["Yes", "No"])
    assert bf16.inner.scored == 1 and fp32.inner.scored == 1  # no entry shared across dtypes
    set_fp32 = CachedBackend(LLMConfig(dtype="fp32"), cache, backend=CountingBackend())
    assert set_fp32.model_id == fp32.model_id
    assert '"dtype":"auto"' in CachedBackend(LLMConfig(), cache, backend=CountingBackend()).model_id  # a fake: as set


# ----------------------------------------------------------------------------- adapter weights
def _adapter(folder, weights: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_an_adapter_retrained_in_place_is_not_served_the_old_rankings(tmp_path, monkeypatch):
    """A row names its adapter by folder; the cache key must follow the weights in it, or a
    re-trained adapter at the same path reuses the rankings of the one it replaced (seen in issue
    18's CF-hint runs). Rows without an adapter keep their keys."""
    from reranker.evaluation.experiment import RankerSpec, adapter_hashes, ranker_fingerprint
    from reranker.evaluation.ranking_regime import _fingerprint_extra

    monkeypatch.chdir(tmp_path)
    ad = _adapter(tmp_path / "runs" / "ft" / "adapter", b"weights after 46 steps")
    rows = [
        RankerSpec(name="llm-ft", type="llm-pointwise", params={"model": "smollm2-135m+runs/ft/adapter"}),
        RankerSpec(name="llm-field", type="llm-pointwise", params={"model": "smollm2-135m", "adapter": "runs/ft/adapter"}),
        RankerSpec(name="head", type="learned-fusion",
                   params={"itemcf": {"k": 20}, "llm": {"model": "smollm2-135m+runs/ft/adapter"}}),
    ]
    fusion = RankerSpec(name="fused", type="fusion", params={"weights": {"itemcf": 1.0, "llm-ft": 0.5}})
    plain = RankerSpec(name="llm", type="llm-pointwise", params={"model": "smollm2-135m"})
    everything = [*rows, fusion, plain, RankerSpec(name="itemcf", type="itemcf")]

    def keys() -> list[str]:
        return [ranker_fingerprint(s, "data", 0, extra=_fingerprint_extra(s, everything, False))
                for s in [*rows, fusion, plain]]

    before = keys()
    assert before == keys()  # stable while the weights are
    assert len(adapter_hashes(rows[0].params)) == 1 and adapter_hashes(plain.params) == []
    (ad / "adapter_model.safetensors").write_bytes(b"weights after 107 steps")
    after = keys()
    assert [a != b for a, b in zip(before, after, strict=True)] == [True, True, True, True, False]
    assert _fingerprint_extra(plain, everything, False) is None
    # a model spec that names a missing folder still gets a key (loading it fails with its message)
    assert adapter_hashes({"model": "smollm2-135m+runs/nowhere"}) == ["missing"]
