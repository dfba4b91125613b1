"""The ranking engine: rank each user's candidate list with one ranker, from the cache when
possible, timing each computed call; and the latency / token / parse-rate summary of a run.

Each (ranker, user, history, candidate list) ranking is cached under a key built from the
ranker's fingerprint (type, parameters, fit data, seed), a salt, the user, the history and the
candidate ids; the value is a :class:`~.records.CachedRanking`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ranking.base import rank_many_batch_size
from ..types import item_id_of
from . import protocol as P
from .cache import KVCache, NullCache, make_key
from .records import CachedRanking, RankerRun

__all__ = ["rank_users", "diagnostics_summary", "RankerRun"]

_RAW_CHARS = 1500


def _compact_diag(diag: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ps = P.parse_stats(diag)
    if ps is not None:
        out["parse"] = ps
    tok = P.token_count(diag)
    if tok is not None:
        out["tokens"] = list(tok)
    if "labels_scored" in diag:  # a server's top-k log-probabilities: the label scores it left out
        out["labels"] = [int(diag.get("labels_missing") or 0), int(diag["labels_scored"])]
    raw = diag.get("raw") or diag.get("raw_text") or diag.get("text")
    if isinstance(raw, list | tuple):
        raw = "\n---\n".join(str(r) for r in raw)
    if raw is not None:
        out["raw"] = str(raw)[:_RAW_CHARS]
    return out


def rank_users(
    ranker: Any,
    name: str,
    fingerprint: str,
    users: Sequence[str],
    histories: Mapping[str, Any],
    lists: Mapping[str, Sequence[Any]],
    cache: KVCache | NullCache,
    *,
    salt: str = "",
    progress: bool = True,
    on_flush: Callable[[RankerRun], None] | None = None,
    flush_every: int = 50,
    flush_seconds: float = 0.0,
    precomputed: Any = None,
    run: RankerRun | None = None,
) -> RankerRun:
    """Rank each user's candidate list, from the cache when possible; times each computed call.

    ``lists[u]`` holds Candidates or item ids. Every ``flush_every`` users the computed rankings
    go to the cache, and ``on_flush(run)`` is called (the runner scores and writes the partial
    results there) when at least ``flush_seconds`` have passed since the last call: a row that
    ranks thousands of users a second is not re-scored, bootstrap and all, every 50 users.
    """
    from tqdm.auto import tqdm

    run = run or RankerRun(name)
    keys = {}
    for u in users:
        ids = [item_id_of(c) for c in lists[u]]
        keys[u] = make_key("rank", fingerprint, salt, u, list(histories[u].items), ids)
    found = cache.get_many(keys.values()) if cache.enabled else {}
    loop = _RankLoop(ranker, run, keys, found, {}, histories, lists, cache, precomputed, on_flush, flush_every,
                     flush_seconds)
    bar = tqdm(total=len(users), desc=name, disable=not progress, leave=False, unit="user")
    try:
        loop.rank(list(users), bar)
    except BaseException:  # Ctrl-C / SIGTERM: the partial results hold every user ranked so far
        if on_flush is not None and run.users and len(run.users) != loop.flushed_users:
            on_flush(run)
        raise
    finally:  # also on Ctrl-C: what was computed is kept for the next run
        bar.close()
        if loop.pending:
            cache.put_many(loop.pending)
    return run


@dataclass
class _RankLoop:
    """The state of one :func:`rank_users` call."""

    ranker: Any
    run: RankerRun
    keys: Mapping[str, str]
    found: Mapping[str, Any]
    pending: dict[str, Any]
    """Computed rankings not yet written to the cache (cache key -> cached value)."""
    histories: Mapping[str, Any]
    lists: Mapping[str, Sequence[Any]]
    cache: KVCache | NullCache
    precomputed: Any
    on_flush: Callable[[RankerRun], None] | None
    flush_every: int
    flush_seconds: float = 0.0
    last_flush: float = field(default_factory=time.perf_counter)
    flushed_users: int = 0

    def rank(self, users: list[str], bar: Any) -> None:
        """Users in order; the cache misses of each block of ``ranker.users_per_batch`` users are
        ranked together through ``ranker.rank_many`` when the ranker has it (listwise LLM: one
        batched generate), one by one through ``rank`` otherwise."""
        batch = rank_many_batch_size(self.ranker) if self.precomputed is None else 1
        i = 0
        for b0 in range(0, len(users), batch):
            block = users[b0 : b0 + batch]
            misses = [u for u in block if self.found.get(self.keys[u]) is None]
            computed = self._compute(misses, batch) if misses else {}
            for u in block:
                hit = computed.get(u)
                if hit is None:
                    hit = CachedRanking.from_cache(self.found[self.keys[u]])
                    self.run.cache_hits += 1
                self.run.add(u, hit, len(self.lists[u]))
                i += 1
                if i % self.flush_every == 0:
                    if self.pending:
                        self.cache.put_many(self.pending)
                        self.pending.clear()
                    now = time.perf_counter()
                    if self.on_flush is not None and now - self.last_flush >= self.flush_seconds:
                        self.on_flush(self.run)
                        self.last_flush = time.perf_counter()
                        self.flushed_users = len(self.run.users)
            bar.update(len(block))  # once per block: per-user updates would show the block's time as one user's

    def _compute(self, misses: list[str], batch: int) -> dict[str, CachedRanking]:
        """Rank the users missing from the cache; queue their rankings for the cache."""
        from ..types import Candidate

        cands = {
            u: [c if isinstance(c, Candidate) else Candidate(str(c), 0.0, "sampled") for c in self.lists[u]]
            for u in misses
        }
        load_models(self.ranker)  # outside the timing: the first user's latency is not the model load
        t0 = time.perf_counter()
        if batch > 1:
            rankings = self.ranker.rank_many([(self.histories[u], cands[u]) for u in misses])
            per_user = (time.perf_counter() - t0) / len(misses)
            timed = [(u, r, per_user) for u, r in zip(misses, rankings, strict=True)]
        else:
            timed = []
            for u in misses:
                t1 = time.perf_counter()
                if self.precomputed is not None:
                    r = self.ranker.rank(self.histories[u], cands[u], self.precomputed(u, cands[u]))
                else:
                    r = self.ranker.rank(self.histories[u], cands[u])
                timed.append((u, r, time.perf_counter() - t1))
        computed: dict[str, CachedRanking] = {}
        for u, ranking, dt in timed:
            hit = CachedRanking(
                ids=list(ranking.item_ids),
                scores=[float(s) if math.isfinite(s) else -1e300 for s in ranking.scores],
                diag=_compact_diag(ranking.diagnostics),
                seconds=dt,
            )
            if set(hit.ids) != {c.item_id for c in cands[u]}:
                self.run.failures.append({"user": u, "error": "ranking is not a permutation of the candidates"})
            self.pending[self.keys[u]] = hit.to_cache()
            computed[u] = hit
        return computed


def load_models(ranker: Any) -> None:
    """Load what a ranker loads lazily on first use (an LLM ranker's backend, a BERT ranker's
    encoder model), so that it is not timed as its first user's latency. A no-op for rankers
    without them and for models already loaded."""
    getattr(ranker, "backend", None)  # an LLM ranker's backend property loads the model
    encoder = getattr(ranker, "encoder", None)
    if encoder is not None:
        getattr(encoder, "model", None)


def diagnostics_summary(run: RankerRun, n_boot: int, seed: int) -> dict[str, Any]:
    """Latency, tokens and parse rates of a run (means with CIs over users)."""
    per: dict[str, list[float]] = {"seconds_per_user": list(run.seconds)}
    if any(t is not None for t in run.tokens):
        per["tokens_in_per_user"] = [t[0] if t else np.nan for t in run.tokens]
        per["tokens_out_per_user"] = [t[1] if t else np.nan for t in run.tokens]
    if any(x is not None for x in run.labels):
        per["labels_returned_rate"] = [(1.0 - x[0] / x[1]) if x and x[1] else np.nan for x in run.labels]
    if any(p is not None for p in run.parse):
        valid: list[float] = []
        hall: list[float] = []
        dup: list[float] = []
        fill: list[float] = []
        fully: list[float] = []
        for p, n in zip(run.parse, run.n_candidates, strict=True):
            if p is None:
                for lst in (valid, hall, dup, fill, fully):
                    lst.append(np.nan)
                continue
            emitted = p["valid"] + p["hallucinated"] + p["duplicate"]
            valid.append(p["valid"] / n if n else np.nan)
            hall.append(p["hallucinated"] / emitted if emitted else 0.0)
            dup.append(p["duplicate"] / emitted if emitted else 0.0)
            fill.append(p["filled_in"] / n if n else np.nan)
            fully.append(float(p["valid"] >= n and p["hallucinated"] == 0 and p["duplicate"] == 0))
        per.update(
            {
                "valid_rate": valid,
                "hallucination_rate": hall,
                "duplicate_rate": dup,
                "filled_in_rate": fill,
                "fully_valid_rate": fully,
            }
        )
    out: dict[str, Any] = P.summarize_per_user(per, n_boot=n_boot, seed=seed)
    out["total_seconds"] = float(np.sum(run.seconds))
    out["cache_hits"] = run.cache_hits
    out["failures"] = len(run.failures)
    return out
