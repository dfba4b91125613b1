"""Select-only listwise decoding (issue 18, item 4): the answer can only be a list of distinct
candidate labels in the answer format.

- a property test over random vocabularies and random logits: the logits processor (the torch
  object `HFBackend` hands to `model.generate`) only ever lets through a list of distinct labels
  that the strict parser reads in full;
- the real SmolLM2 (session fixture) ranks a short list with `decoding: constrained`: every
  candidate placed by the model, none hallucinated, repeated or filled in;
- the real llama.cpp server (tests/server_fixtures.py) holds the answer to the GBNF grammar.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.errors import ConfigError, ModelError
from reranker.llm.constrained import (
    LabelList,
    LabelListConstraint,
    LabelListProcessor,
    LabelListState,
    TokenTable,
    gbnf_grammar,
    label_list_regex,
)
from reranker.ranking.listwise import ListwiseLLMRanker
from reranker.ranking.parsing import parse_ranking
from reranker.types import Candidate, History

END = 10_000
"""The end-of-text id of the toy vocabularies."""

#: always in a toy vocabulary (what any real tokenizer has: single digits and separator characters)
BASE_PIECES = [*"0123456789", ",", " "]
#: pieces drawn into toy vocabularies: merged labels and separators, and junk the model may prefer
EXTRA_PIECES = [", ", " 1", "1,", "12", "10, ", ",,", "  ", " ,", "3, 4", "20", "007", "[", "]", "1.",
                "Answer:", "\n", "a", "ten", " 5", "19, 2"]


def toy_table(extra: list[str]) -> TokenTable:
    pieces = list(dict.fromkeys(BASE_PIECES + extra))
    alphabet = LabelList.numbered(30).alphabet
    return TokenTable(dict(enumerate(pieces)), alphabet, [END])


def decode_with_processor(table: TokenTable, spec: LabelList, rows: int, rng: np.random.Generator,
                          max_steps: int) -> list[str]:
    """What `model.generate` does with the processor: random logits over the whole vocabulary
    each step, the processor masks them, the argmax is appended (greedy)."""
    import torch

    vocab = END + 1
    proc = LabelListProcessor(LabelListConstraint(spec, table, rows))
    input_ids = torch.zeros((rows, 7), dtype=torch.long)  # a left-padded "prompt"
    texts = [""] * rows
    done = [False] * rows
    for _ in range(max_steps):
        scores = torch.from_numpy(rng.normal(size=(rows, vocab)).astype(np.float32) * 5)
        masked = proc(input_ids, scores)
        nxt = masked.argmax(dim=1)
        for r in range(rows):
            tok = int(nxt[r])
            assert torch.isfinite(masked[r, tok]), "no token was allowed"
            if done[r]:
                assert tok == END
                continue
            if tok == END:
                done[r] = True
            else:
                texts[r] += table.texts[tok]
        input_ids = torch.cat([input_ids, nxt[:, None]], dim=1)
        if all(done):
            break
    assert all(done), f"not finished within {max_steps} steps: {texts}"
    return texts


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), extra=st.lists(st.sampled_from(EXTRA_PIECES), max_size=8, unique=True),
       seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 3))
def test_processor_emits_only_distinct_valid_labels_in_the_answer_format(n, extra, seed, rows):
    spec = LabelList.numbered(n)
    table = toy_table(extra)
    budget = len(", ".join(spec.labels)) + 1  # one token per character at worst, plus the end
    texts = decode_with_processor(table, spec, rows, np.random.default_rng(seed), budget)
    fmt = re.compile(r"[1-9][0-9]*(, [1-9][0-9]*)*")
    for text in texts:
        assert fmt.fullmatch(text), text
        labels = text.split(", ")
        assert len(set(labels)) == len(labels) == n
        assert sorted(int(x) for x in labels) == list(range(1, n + 1))
        parsed = parse_ranking(text, n)
        assert (parsed.valid, parsed.hallucinated, parsed.duplicate, parsed.filled_in) == (n, 0, 0, 0)


def extensible(text: str, n: int) -> bool:
    """Oracle: whether `text` is a prefix of some valid answer "a, b, ..." with distinct labels
    1..n, all n of them."""
    labels = {str(i) for i in range(1, n + 1)}
    *head, last = text.split(", ")
    if any(x not in labels for x in head) or len(set(head)) < len(head) or len(head) >= n:
        return False
    used = set(head)
    if last == "":
        return True
    if last.endswith(","):  # half a separator
        core = last[:-1]
        return core in labels and core not in used and len(head) + 1 < n
    if "," in last or " " in last:
        return False
    return any(x.startswith(last) for x in labels - used)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 25), text=st.text(alphabet="0123456789, ", max_size=40))
def test_state_accepts_exactly_the_prefixes_of_valid_answers(n, text):
    """`LabelListState.step` accepts a text iff it can still be completed to a valid answer."""
    state = LabelListState.start(LabelList.numbered(n)).step(text)
    assert (state is not None) == extensible(text, n), text


def test_end_only_when_complete_unless_partial_lists_are_allowed():
    spec = LabelList.numbered(3)
    assert not LabelListState.start(spec).step("2, 1").can_end
    assert LabelListState.start(spec).step("2, 1, 3").can_end
    assert LabelListState.start(spec).step("2, 1, 2") is None
    assert LabelListState.start(spec).step("2, 1, 3, ") is None
    partial = LabelList.numbered(3, complete=False)
    assert LabelListState.start(partial).step("2").can_end
    assert not LabelListState.start(partial).step("2, ").can_end


def test_label_list_checks_its_labels():
    with pytest.raises(ValueError, match="distinct"):
        LabelList(("1", "1"))
    with pytest.raises(ValueError, match="separator"):
        LabelList(("1,2", "3"))


def test_grammar_and_regex_hold_the_format_range_and_count():
    spec = LabelList.numbered(12)
    grammar = gbnf_grammar(spec)
    assert grammar.startswith('root ::= label (", " label){11}\n')
    assert 'label ::= "1" | "2"' in grammar and '"12"\n' in grammar
    rx = re.compile(label_list_regex(spec))
    assert rx.fullmatch("3, 12, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11")
    assert rx.fullmatch("3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3")  # distinctness is the parser's job there
    for bad in ("3, 13, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11", "3, 12", "3,12,1,2,4,5,6,7,8,9,10,11", "[3], 12"):
        assert not rx.fullmatch(bad)
    assert label_list_regex(LabelList.numbered(1)) == "(1)"
    assert gbnf_grammar(LabelList.numbered(1)) == 'root ::= label\nlabel ::= "1"\n'


def test_constrained_decoding_needs_a_backend_that_can(tiny_catalog):
    from fake_backends import CountingBackend

    ranker = ListwiseLLMRanker(backend=CountingBackend(), catalog=tiny_catalog, decoding="constrained")
    with pytest.raises(ModelError, match="decoding: free"):
        ranker.rank(History("u", ["h1"]), [Candidate("i1"), Candidate("i2")])
    with pytest.raises(ConfigError, match="decoding"):
        ListwiseLLMRanker(backend=CountingBackend(), catalog=tiny_catalog, decoding="greedy")
    # auto (the default): free generation where the backend cannot hold the answer
    auto = ListwiseLLMRanker(backend=CountingBackend(), catalog=tiny_catalog)
    assert auto.decoding == "auto"
    assert auto.rank(History("u", ["h1"]), [Candidate("i1"), Candidate("i2")]).diagnostics["decoding"] == "free"


def test_rows_on_the_default_decoding_are_not_served_free_rankings_from_the_cache():
    from reranker.evaluation.experiment import RankerSpec, ranker_fingerprint

    def key(**params: object) -> str:
        spec = RankerSpec(name="l", type="llm-listwise", params={"model": "smollm2-135m", **params})
        return ranker_fingerprint(spec, "data", 0)

    assert len({key(), key(decoding="free"), key(decoding="constrained"), key(decoding="auto")}) == 4


# ----------------------------------------------------------------------------- real model
def test_constrained_listwise_smollm_places_every_candidate(smollm, tiny_catalog):
    cands = [Candidate(f"i{i}", 1.0 / i) for i in range(1, 6)]
    hist = History("u1", ["h1", "h2", "h3"])
    ranker = ListwiseLLMRanker(backend=smollm, catalog=tiny_catalog, permutations=2)  # auto: constrained
    ranking = ranker.rank(hist, cands)
    d = ranking.diagnostics
    assert sorted(ranking.item_ids) == sorted(c.item_id for c in cands)
    assert (d["valid"], d["hallucinated"], d["duplicate"], d["filled_in"], d["retries"]) == (10, 0, 0, 0, 0)
    assert d["decoding"] == "constrained"
    for raw in d["raw"]:
        assert sorted(int(x) for x in raw.split(", ")) == [1, 2, 3, 4, 5]
    # the one batched call of rank_many gives the same answers
    again = ranker.rank_many([(hist, cands)])[0]
    assert again.item_ids == ranking.item_ids


# ----------------------------------------------------------------------------- real server
def test_llama_server_grammar_holds_the_listwise_answer(llama_server, tiny_catalog):
    from server_fixtures import SERVER_KEY_ENV

    from reranker.llm.base import LLMConfig
    from reranker.llm.openai_backend import OpenAIBackend

    settings_ = {"api_key_env": SERVER_KEY_ENV, "tokenizer": "smollm2-135m", "constrained_decoding": "grammar"}
    backend = OpenAIBackend(LLMConfig(model=llama_server.spec, server=settings_))
    try:
        cands = [Candidate(f"i{i}") for i in range(1, 6)]
        ranker = ListwiseLLMRanker(backend=backend, catalog=tiny_catalog)
        ranking = ranker.rank(History("u1", ["h1", "h2"]), cands)
        d = ranking.diagnostics
        raw = d["raw"][0]
        assert re.fullmatch(label_list_regex(LabelList.numbered(5)), raw), raw
        assert d["hallucinated"] == 0 and d["valid"] + d["duplicate"] == 5
        assert sorted(ranking.item_ids) == sorted(c.item_id for c in cands)
        assert d["decoding"] == "constrained" and ranker.decoding == "auto"
        # a server set to none refuses constrained decoding with the settings to change; auto
        # generates freely there
        plain = OpenAIBackend(LLMConfig(model=llama_server.spec, server={**settings_, "constrained_decoding": "none"}))
        with pytest.raises(ConfigError, match="server.constrained_decoding"):
            plain.generate_label_list(["x"], LabelList.numbered(3))
        free = ListwiseLLMRanker(backend=plain, catalog=tiny_catalog, max_new_tokens=8)
        assert free.rank(History("u1", ["h1"]), cands[:3]).diagnostics["decoding"] == "free"
        plain.close()
    finally:
        backend.close()
