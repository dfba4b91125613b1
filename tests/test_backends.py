"""Every LLM backend and test fake passes the shared `BackendSuite`; the optional-ability
protocols; the cached backend's keys stay those of existing caches."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from backend_suite import BackendSuite
from fake_backends import CountingBackend, ScriptedBackend

from reranker.cache import KVCache, make_key, prompt_key
from reranker.errors import ModelError
from reranker.llm.base import (
    Generation,
    HiddenStatesBackend,
    LLMBackend,
    LLMConfig,
    PrefixScoringBackend,
    TorchBackend,
)
from reranker.llm.cached import CachedBackend


# ----------------------------------------------------------------------------- the suite
class TestScriptedBackend(BackendSuite):
    @pytest.fixture
    def backend(self):
        return ScriptedBackend([], default="Because you run trails, these socks fit.")


class TestCountingBackend(BackendSuite):
    @pytest.fixture
    def backend(self):
        return CountingBackend()


class TestCachedCountingBackend(BackendSuite):
    @pytest.fixture
    def backend(self, tmp_path):
        return CachedBackend(LLMConfig(), KVCache(tmp_path / "c.sqlite"), backend=CountingBackend())


@pytest.mark.slow
class TestHFBackend(BackendSuite):
    @pytest.fixture
    def backend(self, smollm):
        return smollm


@pytest.mark.slow
class TestCachedHFBackend(BackendSuite):
    @pytest.fixture
    def backend(self, smollm, tmp_path):
        return CachedBackend(smollm.config, KVCache(tmp_path / "c.sqlite"), backend=smollm)


# ----------------------------------------------------------------------------- abilities
def test_protocols_are_structural_and_optional_abilities_separate():
    scripted, counting = ScriptedBackend([]), CountingBackend()
    assert isinstance(scripted, LLMBackend) and isinstance(counting, LLMBackend)
    assert not isinstance(object(), LLMBackend)

    class GenerateOnly:
        config = LLMConfig()

        def generate(self, prompts, max_new_tokens=None, seed=0, repetition_penalty=None):
            return []

    assert not isinstance(GenerateOnly(), LLMBackend)
    assert isinstance(counting, HiddenStatesBackend) and not isinstance(scripted, HiddenStatesBackend)
    for be in (scripted, counting):
        assert not isinstance(be, TorchBackend) and not isinstance(be, PrefixScoringBackend)


@pytest.mark.slow
def test_hf_backend_abilities(smollm, tmp_path):
    assert isinstance(smollm, LLMBackend)
    assert isinstance(smollm, HiddenStatesBackend) and isinstance(smollm, PrefixScoringBackend)
    assert isinstance(smollm, TorchBackend)
    assert smollm.decoder is smollm.model.base_model
    assert smollm.hidden_size == smollm.model.config.hidden_size
    cached = CachedBackend(smollm.config, KVCache(tmp_path / "c.sqlite"), backend=smollm)
    assert isinstance(cached, HiddenStatesBackend) and not isinstance(cached, TorchBackend)


def test_hf_module_keeps_its_public_names():
    from reranker.llm.hf import (
        HFBackend,
        apply_adapter,
        cpu_supports_bf16,
        load_backend,
        split_common_prefix,
    )

    assert callable(HFBackend) and callable(apply_adapter) and callable(cpu_supports_bf16) and callable(load_backend)
    assert split_common_prefix(["ab\ncd", "ab\nce"]) == ("ab\n", ["cd", "ce"])
    assert split_common_prefix([]) == ("", [])


def test_common_prefix_length_leaves_every_sequence_an_element_of_its_own():
    from reranker.llm.hf_scoring import common_prefix_length

    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter keeps its last token
    assert common_prefix_length([[7, 8], [7, 8]]) == 1
    assert common_prefix_length(["abc"]) == 2 and common_prefix_length(["xa", "ya"]) == 0


# ----------------------------------------------------------------------------- cached backend
def test_cached_backend_imports_without_torch_and_old_paths_re_export():
    code = (
        "import sys, reranker, reranker.llm.cached, reranker.evaluation.llm_cache, reranker.evaluation.cache\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert reranker.evaluation.llm_cache.CachedBackend is reranker.llm.cached.CachedBackend\n"
        "import reranker.cache as c, reranker.evaluation.cache as e\n"
        "assert (e.KVCache, e.NullCache, e.make_key, e.prompt_key) == (c.KVCache, c.NullCache, c.make_key, c.prompt_key)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_key_construction_is_stable():
    """Existing caches (the committed reports are re-made from one) must keep hitting."""
    assert prompt_key("m", ["p1", "p2"], op="score_prompts", labels=["Yes", "No"], hidden=True) == (
        "27a9bb7dada966c80d0d3edc1c5f72997f71d918558a16584354fd9b80d52fdf"
    )
    assert prompt_key("m", "p", op="generate", max_new_tokens=8, seed=0, kw={}) == (
        "df542fec3fd81da1d8da99393e3e88b28301bdaae50ce840eeecdcfea17fc397"
    )
    assert prompt_key("m", "p", op="generate", max_new_tokens=8, seed=0, kw={"repetition_penalty": 1.3}) == (
        "f200203b51068540a8c6f23d167063d57b2605f2d5b76c6fc43207c3b04fcae1"
    )
    assert make_key("rank", "fp", "salt", "u1", ["a", "b"], [np.int64(3), 2.5]) == (
        "889354cc1e29839a86762bb084c7a4dacbe2b5537baca5364acc851a1258d23e"
    )


class _RecordingCache:
    """The cache interface, storing nothing, recording the keys asked for."""

    enabled = True

    def __init__(self) -> None:
        self.keys: list[str] = []

    def get(self, key, default=None):
        self.keys.append(key)
        return default

    def get_many(self, keys):
        self.keys.extend(keys)
        return {}

    def put(self, key, value):
        return None

    def put_many(self, items):
        return None


def test_cached_backend_keys_are_those_of_earlier_versions():
    cfg = LLMConfig(threads=1)
    rec = _RecordingCache()
    be = CachedBackend(cfg, rec, backend=CountingBackend())  # type: ignore[arg-type]
    mid = cfg.model_dump_json()
    be.generate(["a", "b"], 8)
    be.generate(["a"], 8, seed=3, repetition_penalty=None)  # given: part of the key, as before
    be.generate(["a"], 8, repetition_penalty=1.3)
    be.score_prompts(["p", "q"], ["Yes", "No"], return_hidden=True)
    assert rec.keys == [
        prompt_key(mid, "a", op="generate", max_new_tokens=8, seed=0, kw={}),
        prompt_key(mid, "b", op="generate", max_new_tokens=8, seed=0, kw={}),
        prompt_key(mid, "a", op="generate", max_new_tokens=8, seed=3, kw={"repetition_penalty": None}),
        prompt_key(mid, "a", op="generate", max_new_tokens=8, seed=0, kw={"repetition_penalty": 1.3}),
        prompt_key(mid, ["p", "q"], op="score_prompts", labels=["Yes", "No"], hidden=True),
    ]


def test_cached_backend_refuses_what_the_real_backend_cannot_do(tmp_path):
    be = CachedBackend(LLMConfig(), KVCache(tmp_path / "c.sqlite"), backend=CountingBackend())
    with pytest.raises(ModelError, match="score_options"):
        be.score_options("prefix", ["a"], ["Yes", "No"])
    refuses = CachedBackend(LLMConfig(), KVCache(tmp_path / "c.sqlite"), backend=ScriptedBackend([], default="x"))
    with pytest.raises(ModelError, match="hidden"):
        refuses.score_prompts(["p"], ["Yes", "No"], return_hidden=True)
    assert isinstance(refuses.generate(["p"])[0], Generation)
