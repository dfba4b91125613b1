"""Prometheus text-format metrics (no client library): request counts by route and status,
latency histograms by route, LLM tokens, degraded answers, micro-batches."""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.tokens: dict[str, int] = defaultdict(int)
        self.degraded: dict[str, int] = defaultdict(int)
        self.refreshes = 0
        self.batches: dict[str, int] = defaultdict(int)
        self.batched: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            b = self.buckets[route]
            for i, le in enumerate(BUCKETS):
                if seconds <= le:
                    b[i] += 1
            self.sums[route] += seconds
            self.counts[route] += 1

    def add_tokens(self, direction: str, n: int) -> None:
        with self._lock:
            self.tokens[direction] += int(n)

    def add_degraded(self, route: str) -> None:
        with self._lock:
            self.degraded[route] += 1

    def add_batch(self, mode: str, size: int) -> None:
        with self._lock:
            self.batches[mode] += 1
            self.batched[mode] += int(size)

    def add_refresh(self) -> None:
        with self._lock:
            self.refreshes += 1

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            out += ["# HELP reranker_requests_total HTTP requests by route and status.",
                    "# TYPE reranker_requests_total counter"]
            for (m, r, s), n in sorted(self.requests.items()):
                out.append(f'reranker_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}')
            out += ["# HELP reranker_request_errors_total HTTP requests answered 4xx or 5xx.",
                    "# TYPE reranker_request_errors_total counter"]
            for (m, r, s), n in sorted(self.requests.items()):
                if s >= 400:
                    out.append(f'reranker_request_errors_total{{method="{m}",route="{r}",status="{s}"}} {n}')
            out += ["# HELP reranker_request_seconds Request latency.",
                    "# TYPE reranker_request_seconds histogram"]
            for r in sorted(self.buckets):
                for le, n in zip(BUCKETS, self.buckets[r], strict=True):
                    out.append(f'reranker_request_seconds_bucket{{route="{r}",le="{le}"}} {n}')
                out.append(f'reranker_request_seconds_bucket{{route="{r}",le="+Inf"}} {self.counts[r]}')
                out.append(f'reranker_request_seconds_sum{{route="{r}"}} {self.sums[r]:.6f}')
                out.append(f'reranker_request_seconds_count{{route="{r}"}} {self.counts[r]}')
            out += ["# HELP reranker_llm_tokens_total LLM tokens by direction.",
                    "# TYPE reranker_llm_tokens_total counter"]
            for d in ("in", "out"):
                out.append(f'reranker_llm_tokens_total{{direction="{d}"}} {self.tokens[d]}')
            out += ["# HELP reranker_degraded_total Answers in stage-1 order because the LLM missed the deadline.",
                    "# TYPE reranker_degraded_total counter"]
            for r in ("/v1/rerank", "/v1/recommend"):
                out.append(f'reranker_degraded_total{{route="{r}"}} {self.degraded[r]}')
            out += ["# HELP reranker_batches_total Micro-batches of rerank requests ranked together, by mode.",
                    "# TYPE reranker_batches_total counter"]
            for m in sorted(self.batches):
                out.append(f'reranker_batches_total{{mode="{m}"}} {self.batches[m]}')
            out += ["# HELP reranker_batched_requests_total Rerank requests ranked in micro-batches, by mode.",
                    "# TYPE reranker_batched_requests_total counter"]
            for m in sorted(self.batched):
                out.append(f'reranker_batched_requests_total{{mode="{m}"}} {self.batched[m]}')
            out += ["# HELP reranker_refresh_total Model swaps after a feedback refresh.",
                    "# TYPE reranker_refresh_total counter", f"reranker_refresh_total {self.refreshes}"]
        return "\n".join(out) + "\n"


__all__ = ["BUCKETS", "Metrics"]
