"""Stage 2 is stateless per request: one shared ranker / explainer / Reranker serves many threads
at once, each request with its own catalog (same item ids, different titles and texts), and
every thread gets exactly what it gets when the requests run one after another."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from llm_fixtures import LLM_TEST_OPTIONS, TINY_ITEMS

from reranker.explain import Explainer, ExplainerConfig
from reranker.llm.base import Generation, LLMConfig, ScoreResult
from reranker.ranking.listwise import ListwiseLLMRanker
from reranker.ranking.pointwise import PointwiseLLMRanker
from reranker.ranking.verbalizer import VerbalizerLLMRanker
from reranker.types import Candidate, History, Item, Ranking

THREADS = 8
ROUNDS = 3
THEMES = ["Alpine", "Harbour", "Desert", "Forest", "Urban", "Arctic", "Island", "Prairie"]


def catalogs() -> list[dict[str, Item]]:
    """THREADS catalogs with the same ids: each renames every item and rewrites its text."""
    out = []
    for theme in THEMES[:THREADS]:
        out.append({
            it.item_id: Item(it.item_id, f"{theme} {it.title}", f"{theme} edition. {it.text}".strip(),
                             it.category, dict(it.attrs))
            for it in TINY_ITEMS
        })
    return out


HIST = History("u1", ("h1", "h2", "h3"), context={"device": "mobile"})
CANDS = [Candidate(f"i{j}", float(6 - j), "test") for j in range(1, 6)]


def _h(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


def _yield() -> None:
    time.sleep(random.random() * 0.002)  # let the other threads in between any two steps


class PromptHashBackend:
    """A fake LLM whose every answer is a function of the exact prompt text, so a prompt that
    mixed in another request's items would give different scores / orders."""

    def __init__(self) -> None:
        self.config = LLMConfig()
        self.max_context = 4096
        self.calls = 0
        self._lock = threading.Lock()

    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        _yield()
        return f"<user>{user_message}</user>"

    def count_tokens(self, text: str) -> int:
        _yield()
        return len(text.split())

    def truncate_tokens(self, text: str, n_tokens: int) -> str:
        _yield()
        words = text.split()
        return text if len(words) <= n_tokens else " ".join(words[:n_tokens]) + "..."

    def score_prompts(self, prompts, labels, return_hidden: bool = False) -> ScoreResult:
        _yield()
        with self._lock:
            self.calls += 1
        logits = np.array([[(_h(p + lab) % 10_000) / 100.0 for lab in labels] for p in prompts])
        hidden = np.array([[_h(p) % 97, _h(p) % 89] for p in prompts], dtype=float) if return_hidden else None
        return ScoreResult(logits=logits, hidden=hidden, tokens_in=sum(len(p.split()) for p in prompts))

    def generate(self, prompts, max_new_tokens=None, seed=0, repetition_penalty=None):
        _yield()
        out = []
        for p in prompts:
            if "Rank all" in p:
                n = int(p.split("Rank all ")[1].split()[0])
                text = ", ".join(str(i) for i in sorted(range(1, n + 1), key=lambda i, p=p: _h(f"{p}#{i}")))
            else:
                text = f"it suits you ({_h(p) % 1000})."
            out.append(Generation(text, len(p.split()), 4))
        return out


def _key(r: Ranking) -> tuple:
    explained = tuple(x.explanation for x in r)
    return tuple(r.item_ids), tuple(float(s) for s in r.scores), explained


def _run_concurrently(call, cats):
    """Every catalog's call, ROUNDS times, from THREADS threads at once (shuffled order)."""
    jobs = [k for _ in range(ROUNDS) for k in range(len(cats))]
    random.Random(0).shuffle(jobs)
    barrier = threading.Barrier(THREADS)

    def run(k):
        try:
            barrier.wait(timeout=0.5)  # the first wave starts together
        except threading.BrokenBarrierError:
            pass
        return k, _key(call(cats[k]))

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(run, jobs))


RANKERS = {
    "pointwise": lambda be: PointwiseLLMRanker(backend=be),
    "listwise": lambda be: ListwiseLLMRanker(backend=be, permutations=2, window=4, step=2),
    "verbalizer": lambda be: VerbalizerLLMRanker(backend=be, permutations=2),
}


@pytest.mark.parametrize("kind", sorted(RANKERS))
def test_shared_ranker_with_a_catalog_per_request(kind):
    ranker = RANKERS[kind](PromptHashBackend())
    cats = catalogs()
    sequential = [_key(ranker.rank(HIST, CANDS, catalog=c)) for c in cats]
    # the catalogs really make a difference (listwise: 5 candidates have only 120 orders, so two
    # of the 8 catalogs' prompts may hash to the same one by chance)
    assert len(set(sequential)) >= len(cats) - (1 if kind == "listwise" else 0)
    for k, got in _run_concurrently(lambda c: ranker.rank(HIST, CANDS, catalog=c), cats):
        assert got == sequential[k], f"request with catalog {THEMES[k]} got another request's result"
    assert [_key(ranker.rank(HIST, CANDS, catalog=c)) for c in cats] == sequential


def test_shared_scorer_and_batch_ranker_with_a_catalog_per_request():
    be = PromptHashBackend()
    pw = PointwiseLLMRanker(backend=be)
    lw = ListwiseLLMRanker(backend=be, permutations=2)
    cats = catalogs()
    requests = [(HIST, CANDS), (History("u2", ("i1",)), CANDS[::-1])]

    def both(c):
        scores = pw.score(HIST, CANDS, catalog=c)
        many = lw.rank_many(requests, catalog=c)
        return Ranking.from_scores([f"{i}" for i in range(len(scores))], list(scores), {}), many

    def key(pair):
        return _key(pair[0]), tuple(_key(r) for r in pair[1])

    sequential = [key(both(c)) for c in cats]
    jobs = [k for _ in range(ROUNDS) for k in range(len(cats))]
    with ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(lambda k: (k, key(both(cats[k]))), jobs))
    for k, g in got:
        assert g == sequential[k]


def test_shared_explainer_with_a_catalog_per_request():
    ex = Explainer(backend=PromptHashBackend(), explain_config=ExplainerConfig(top_k=3))
    cats = catalogs()
    ranking = Ranking.from_order([c.item_id for c in CANDS], {"ranker": "x"})
    sequential = [_key(ex.explain(HIST, ranking, catalog=c)) for c in cats]
    assert len(set(sequential)) == len(cats)
    assert all(THEMES[k] in sequential[k][2][0] for k in range(len(cats)))  # the anchor cites its titles
    for k, got in _run_concurrently(lambda c: ex.explain(HIST, ranking, catalog=c), cats):
        assert got == sequential[k]


@pytest.mark.slow
def test_shared_reranker_on_smollm_with_a_catalog_per_request(smollm):
    """The real model behind one `Reranker` (pointwise), requests from 8 threads at once."""
    from reranker import Reranker

    rr = Reranker(mode="pointwise", **LLM_TEST_OPTIONS)
    cats = catalogs()
    hist, cands = ["h1", "h2"], ["i1", "i2", "i3"]
    sequential = [_key(rr.rerank(hist, cands, catalog=c)) for c in cats]
    assert len(set(sequential)) > 1
    jobs = [k for _ in range(2) for k in range(len(cats))]
    with ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(lambda k: (k, _key(rr.rerank(hist, cands, catalog=cats[k]))), jobs))
    for k, g in got:
        assert g == sequential[k], f"request with catalog {THEMES[k]} differs from its sequential result"
