"""The LLM backend and rankers on the real SmolLM2-135M (loaded once per session)."""

from __future__ import annotations

import numpy as np
import pytest
from protocol_suites import RankerSuite, ScorerSuite

from reranker.errors import DataError, ModelError
from reranker.llm.base import LLMConfig
from reranker.ranking.base import Ranker, Scorer
from reranker.ranking.listwise import ListwiseLLMRanker
from reranker.ranking.pointwise import PointwiseLLMRanker
from reranker.ranking.verbalizer import VerbalizerLLMRanker
from reranker.types import Candidate, History, Item

# bf16 CPU kernels give slightly different roundings for different batch shapes
BF16_ATOL = 0.2


# ---------------------------------------------------------------------------- backend
def test_shared_prefix_equals_naive_fp32():
    from reranker.llm.hf import load_backend

    b = load_backend(LLMConfig(model="smollm2-135m", dtype="fp32", batch_size=4, threads=1))
    head = "Items the user liked:\n" + "\n".join(f"- Movie {i}" for i in range(6)) + "\n"
    prompts = [b.chat_prompt(head + f"Will the user like Film {c}{'!' * c}? Yes or No.") for c in range(6)]
    shared = b.score_prompts(prompts, ["Yes", "No"], return_hidden=True)
    naive = b.score_full(prompts, ["Yes", "No"], return_hidden=True)
    np.testing.assert_allclose(shared.logits, naive.logits, atol=1e-3, rtol=0)
    np.testing.assert_allclose(shared.hidden, naive.hidden, atol=1e-3, rtol=0)
    assert shared.tokens_in < naive.tokens_in  # the prefix ran once


def test_score_options_string_api_and_bf16_close_to_naive(smollm):
    prefix = smollm.chat_prompt("Pick a fruit. Answer Yes or No.\nFruit:").rsplit("<|im_end|>", 1)[0]
    res = smollm.score_options(prefix, [" apple", " banana split"], ["Yes", "No"], return_hidden=True)
    assert res.logits.shape == (2, 2) and res.hidden.shape == (2, smollm.model.config.hidden_size)
    naive = smollm.score_full([prefix + " apple", prefix + " banana split"], ["Yes", "No"])
    np.testing.assert_allclose(res.logits, naive.logits, atol=BF16_ATOL * 3, rtol=0)
    with pytest.raises(ModelError, match="empty"):
        smollm.score_options(prefix, [""], ["Yes", "No"])


def test_generate_is_batched_greedy_and_deterministic(smollm):
    prompts = [smollm.chat_prompt("Say hello."), smollm.chat_prompt("Count to three: 1, 2,")]
    a = smollm.generate(prompts, max_new_tokens=8)
    b = smollm.generate(prompts[::-1], max_new_tokens=8)
    assert [g.text for g in a] == [g.text for g in b[::-1]]  # left padding does not change output
    assert all(g.text and 0 < g.tokens_out <= 8 and g.tokens_in > 0 for g in a)


def test_count_and_truncate_tokens(smollm):
    text = "word " * 100
    assert smollm.count_tokens(text) >= 100
    short = smollm.truncate_tokens(text, 10)
    assert short.endswith("...") and smollm.count_tokens(short) <= 12
    assert smollm.truncate_tokens("tiny", 10) == "tiny"


def test_chat_template_applied(smollm):
    p = smollm.chat_prompt("hello there")
    assert "hello there" in p and p.startswith("<|im_start|>") and p.endswith("assistant\n")


# ---------------------------------------------------------------------------- rankers
@pytest.fixture
def hist():
    return History("u1", ("h1", "h2", "h3"), context={"device": "mobile", "intent": "weekend trail run"})


@pytest.fixture
def cands():
    return [Candidate(f"i{j}", float(6 - j), "test") for j in range(1, 6)]


class TestPointwiseScorer(ScorerSuite):
    atol = BF16_ATOL

    @pytest.fixture
    def catalog(self, tiny_catalog):
        return tiny_catalog

    @pytest.fixture
    def scorer(self, smollm, tiny_catalog):
        return PointwiseLLMRanker(backend=smollm, catalog=tiny_catalog)


class TestPointwiseRanker(RankerSuite):
    atol = BF16_ATOL

    @pytest.fixture
    def catalog(self, tiny_catalog):
        return tiny_catalog

    @pytest.fixture
    def ranker(self, smollm, tiny_catalog):
        return PointwiseLLMRanker(backend=smollm, catalog=tiny_catalog)


class TestListwiseRanker(RankerSuite):
    atol = 1e-9

    @pytest.fixture
    def catalog(self, tiny_catalog):
        return tiny_catalog

    @pytest.fixture
    def ranker(self, smollm, tiny_catalog):
        return ListwiseLLMRanker(backend=smollm, catalog=tiny_catalog, max_new_tokens=16)


class TestVerbalizerRanker(RankerSuite):
    atol = BF16_ATOL

    @pytest.fixture
    def catalog(self, tiny_catalog):
        return tiny_catalog

    @pytest.fixture
    def ranker(self, smollm, tiny_catalog):
        return VerbalizerLLMRanker(backend=smollm, catalog=tiny_catalog, permutations=2)


def test_pointwise_exact_determinism_and_hidden(smollm, tiny_catalog, hist, cands):
    r = PointwiseLLMRanker(backend=smollm, catalog=tiny_catalog)
    assert isinstance(r, Scorer) and isinstance(r, Ranker)
    s1, h1, diag = r.score_with_hidden(hist, cands)
    s2 = r.score(hist, cands)
    np.testing.assert_array_equal(s1, s2)
    assert h1.shape == (len(cands), smollm.model.config.hidden_size)
    assert diag["tokens_in"] > 0 and diag["history_used"] == 3
    ranking = r.rank(hist, cands)
    assert ranking.diagnostics["ranker"] == "llm-pointwise"


def test_context_reaches_prompt(smollm, tiny_catalog, hist, cands):
    prompts, kept = PointwiseLLMRanker(backend=smollm, catalog=tiny_catalog).build_prompts(hist, cands)
    assert kept == 3
    assert all("intent: weekend trail run" in p and "Trail Running Shoes" in p for p in prompts)
    assert "Running Socks" in prompts[0] and "Running Socks" not in prompts[1]


def test_history_trimmed_oldest_first_never_candidates(smollm, tiny_catalog, cands):
    r = PointwiseLLMRanker(backend=smollm, catalog=tiny_catalog, max_prompt_tokens=200)
    long_hist = History("u", ("h1", "h2", "h3") * 4)
    prompts, kept = r.build_prompts(long_hist, cands)
    assert 0 < kept < 12
    assert all(smollm.count_tokens(p) <= 200 for p in prompts)
    full, _ = PointwiseLLMRanker(backend=smollm, catalog=tiny_catalog).build_prompts(long_hist, cands)
    # the most recent items are the ones kept: the trimmed prompt's history is a suffix
    hist_lines = lambda p: [ln for ln in p.splitlines() if ln.startswith("- ")]  # noqa: E731
    assert hist_lines(full[0])[-kept:] == hist_lines(prompts[0])
    lw = ListwiseLLMRanker(backend=smollm, catalog=tiny_catalog, max_prompt_tokens=120)
    with pytest.raises(ModelError, match="candidates alone"):
        lw.rank(long_hist, [Candidate(i) for i in tiny_catalog])


def test_listwise_diagnostics_and_bootstrap(smollm, tiny_catalog, hist, cands):
    r = ListwiseLLMRanker(backend=smollm, catalog=tiny_catalog, permutations=3, seed=1, max_new_tokens=12)
    ranking = r.rank(hist, cands)
    RankerSuite.assert_complete(ranking, cands)
    d = ranking.diagnostics
    assert d["calls"] == 3 and len(d["raw"]) >= 3
    assert d["valid"] + d["filled_in"] == 3 * len(cands)
    assert d["tokens_out"] > 0 and d["latency_s"] > 0
    assert ranking.to_dict()["diagnostics"]["raw"] == d["raw"]


def test_listwise_sliding_window_complete(smollm, tiny_catalog, hist):
    many = [Candidate(i) for i in tiny_catalog]  # 8 items incl. history ids
    r = ListwiseLLMRanker(backend=smollm, catalog=tiny_catalog, window=5, step=3, max_new_tokens=12)
    ranking = r.rank(hist, many)
    RankerSuite.assert_complete(ranking, many)
    assert ranking.diagnostics["calls"] == 2  # windows [3:8] then [0:5]


def test_unknown_candidate_id_is_data_error(smollm, tiny_catalog, hist):
    with pytest.raises(DataError, match="'zz'"):
        PointwiseLLMRanker(backend=smollm, catalog=tiny_catalog).rank(hist, [Candidate("zz")])


def test_listwise_rank_many_matches_rank_one_by_one(smollm, tiny_catalog, hist, cands):
    """Batched generation (left padding, length-sorted batches) gives each user the answer they
    get alone; a list longer than the window still goes through the sliding window."""
    r = ListwiseLLMRanker(backend=smollm, catalog=tiny_catalog, window=6, step=3, max_new_tokens=12)
    other = History("u2", ("i3",))
    many = [Candidate(i) for i in tiny_catalog]  # 8 > window
    requests = [(hist, cands), (other, cands[::-1]), (hist, many), (other, cands[:2]), (hist, [])]
    batched = r.rank_many(requests)
    alone = [r.rank(h, c) for h, c in requests]
    assert len(batched) == len(requests)
    for b, a, (_, c) in zip(batched, alone, requests, strict=True):
        assert b.item_ids == a.item_ids
        assert b.diagnostics.get("raw") == a.diagnostics.get("raw")
        if c:
            RankerSuite.assert_complete(b, c)
    assert batched[2].diagnostics["calls"] == 2  # windows [3:8] then [0:5] (step 3)
    assert r.users_per_batch == smollm.config.batch_size


# ---------------------------------------------------------------------------- per-request catalogs
def _renamed(catalog):
    return {k: Item(k, f"Renamed {v.title}", v.text, v.category, dict(v.attrs)) for k, v in catalog.items()}


def test_catalog_travels_with_the_call_and_nothing_sticks(smollm, tiny_catalog, hist, cands):
    built = PointwiseLLMRanker(backend=smollm, catalog=tiny_catalog)
    bare = PointwiseLLMRanker(backend=smollm)  # no catalog of its own
    assert not hasattr(bare, "with_catalog")
    before = {k: v for k, v in vars(bare).items() if k != "_truncate"}
    np.testing.assert_array_equal(bare.score(hist, cands, catalog=tiny_catalog), built.score(hist, cands))
    assert {k: v for k, v in vars(bare).items() if k != "_truncate"} == before
    with pytest.raises(DataError, match="no catalog"):
        bare.score(hist, cands)
    other = _renamed(tiny_catalog)
    prompts, _ = built.build_prompts(hist, cands, catalog=other)
    assert all("Renamed Trail Running Shoes" in p for p in prompts)
    assert "Renamed Running Socks" in prompts[0]
    assert all("Renamed" not in p for p in built.build_prompts(hist, cands)[0])


def test_listwise_build_prompts_is_what_rank_sends(smollm, tiny_catalog, hist, cands):
    r = ListwiseLLMRanker(backend=smollm, catalog=tiny_catalog, permutations=2, seed=4, max_new_tokens=12)
    built = r.build_prompts(hist, cands)
    assert len(built.prompts) == 2 and built.orders[0] == (0, 1, 2, 3, 4)
    assert built.labels == ("1", "2", "3", "4", "5") and built.history_used == (3, 3)
    shown_first = built.orders[1][0]
    assert built.label_of(1, shown_first) == "1"
    assert f'[1] "{tiny_catalog[cands[shown_first].item_id].title}"' in built.prompts[1]
    strict = r.build_prompts(hist, cands, strict=True, orders=[range(5)])
    assert "ONLY the numbers 1 to 5" in strict.prompts[0] and strict.prompts[0] != built.prompts[0]
    other = r.build_prompts(hist, cands, catalog=_renamed(tiny_catalog))
    assert '[1] "Renamed Running Socks' in other.prompts[0]
    sent = []

    class Spy:
        def __init__(self, be):
            self.be = be

        def __getattr__(self, name):
            return getattr(self.be, name)

        def generate(self, prompts, *a, **k):
            sent.extend(prompts)
            return self.be.generate(prompts, *a, **k)

        def generate_label_list(self, prompts, *a, **k):  # decoding: auto is select-only in process
            sent.extend(prompts)
            return self.be.generate_label_list(prompts, *a, **k)

    spy = ListwiseLLMRanker(backend=Spy(smollm), catalog=tiny_catalog, permutations=2, seed=4, max_new_tokens=12)
    spy.rank(hist, cands)
    assert sent[:2] == list(built.prompts)


def test_verbalizer_build_prompts_letters_and_orders(smollm, tiny_catalog, hist, cands):
    r = VerbalizerLLMRanker(backend=smollm, catalog=tiny_catalog, permutations=3, seed=1)
    built = r.build_prompts(hist, cands)
    assert len(built.prompts) == 3 and built.labels == ("A", "B", "C", "D", "E")
    assert built.orders[0] == (0, 1, 2, 3, 4) and all(sorted(o) == [0, 1, 2, 3, 4] for o in built.orders)
    assert 'A. "Running Socks' in built.prompts[0]
    k, i = 2, 4
    assert f'{built.label_of(k, i)}. "{tiny_catalog[cands[i].item_id].title}"' in built.prompts[k]
    with pytest.raises(ValueError, match="26"):
        r.build_prompts(hist, [Candidate(f"x{j}") for j in range(27)], catalog={f"x{j}": {"title": "t"} for j in range(27)})
