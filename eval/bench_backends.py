"""The same pointwise requests through the in-process transformers backend and through
llama.cpp's OpenAI-compatible server (the `openai` backend) -> eval/results/backends.md.

Protocol: N users (ml-100k when ../shared/data/ml-100k exists, else the generated world), each
with their last H history items and C unseen candidates (seeded; `bench_llm.build_requests`).
Model: SmolLM2-135M-Instruct, in process as bf16/fp32 safetensors converted from the GGUF of
the `smollm2-135m` preset, behind the server as that same GGUF (Q4_1). One warm-up user per
configuration, then every user:

- in process: users one after another (one model, one forward at a time);
- server: all users submitted at once through `Reranker.arerank`, the backend keeping at most
  1, 4 or 16 HTTP requests in flight (`server.max_concurrency`).

Reported: wall seconds per user, users per second, prompt tokens per second (the tokens of the
prompts as the client counts them, the same for both backends), the share of label scores the
server's top-k left out, and the Spearman correlation of each user's scores with the in-process
ones (median over users). Torch and the server get the same number of threads. The in-process
row also gives the host's measured GEMM rate (fp32 and bf16, the model's MLP shape) and its time
as a multiple of the roofline `2 x parameters x tokens run / rate` in the dtype it ran in (`dtype:
auto`, calibrated).

    .venv/bin/python eval/bench_backends.py [--users 8] [--candidates 20] [--history 10] \
        [--threads 2] [--in-flight 1 4 16] [--server-url http://host:port/v1 --served-model NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "eval"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _bench_common import gemm_line, gemm_rates, machine, roofline_ratio, trunk_params  # noqa: E402
from bench_llm import build_requests  # noqa: E402

from reranker.api import Reranker  # noqa: E402
from reranker.llm.base import LLMConfig  # noqa: E402
from reranker.llm.hf import load_backend  # noqa: E402
from reranker.ranking.pointwise import PointwiseLLMRanker  # noqa: E402

SERVED = "smollm2-135m"


def start_llama_server(threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from server_fixtures import start_server

    from reranker.llm.models import resolve_model

    gguf = resolve_model("smollm2-135m").path
    proc, url = start_server(gguf, log, "--n_threads", str(threads), "--n_threads_batch", str(threads))
    return proc, url


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def run_inprocess(args, catalog, reqs) -> tuple[dict, list[np.ndarray]]:
    backend = load_backend(LLMConfig(model="smollm2-135m", threads=args.threads))
    ranker = PointwiseLLMRanker(backend=backend, catalog=catalog, max_history=args.history)
    ranker.rank(*reqs[0])  # warm-up
    rates = gemm_rates(backend.model)
    params = trunk_params(backend.model)
    scores, tokens, run = [], 0, 0
    t0 = time.perf_counter()
    for h, cands in reqs:
        r = ranker.rank(h, cands)
        run += int(r.diagnostics.get("tokens_in", 0))
        order = {c.item_id: i for i, c in enumerate(cands)}
        s = np.zeros(len(cands))
        for it in r.items:
            s[order[it.item_id]] = it.score
        scores.append(s)
    wall = time.perf_counter() - t0
    for h, cands in reqs:
        prompts, _ = ranker.build_prompts(h, cands)
        tokens += sum(backend.count_tokens(p) for p in prompts)
    dt = backend.dtype_choice.dtype
    how = "calibrated" if backend.dtype_choice.source != "config" else "set"
    return {"name": f"in-process transformers ({dt}, {how}; {args.threads} torch threads)", "in_flight": 1,
            "wall": wall, "tokens": tokens, "missing": None, "tokens_run": run,
            "roofline": roofline_ratio(wall, params, run, rates[dt]), "gemm": gemm_line(rates, params)}, scores


def run_server(args, catalog, reqs, spec: str, in_flight: int, key_env: str | None) -> tuple[dict, list[np.ndarray]]:
    server = {"max_concurrency": in_flight, "tokenizer": "smollm2-135m", "timeout_s": 600}
    if key_env:
        server["api_key_env"] = key_env
    rr = Reranker(spec, "pointwise", catalog=catalog, server=server, max_history=args.history)
    rr.rerank(*reqs[0])  # warm-up (tokenizer, /v1/models, the server's first prompt)

    async def all_users():
        return await asyncio.gather(*(rr.arerank(h, c) for h, c in reqs))

    t0 = time.perf_counter()
    rankings = asyncio.run(all_users())
    wall = time.perf_counter() - t0
    scores, missing, scored, tokens = [], 0, 0, 0
    for (h, cands), r in zip(reqs, rankings, strict=True):
        order = {c.item_id: i for i, c in enumerate(cands)}
        s = np.zeros(len(cands))
        for it in r.items:
            s[order[it.item_id]] = it.score
        scores.append(s)
        missing += r.diagnostics.get("labels_missing", 0)
        scored += r.diagnostics.get("labels_scored", 0)
        prompts, _ = rr.ranker.build_prompts(h, cands, catalog)
        tokens += sum(rr.ranker.backend.count_tokens(p) for p in prompts)
    rr.ranker.backend.close()
    return {"name": "llama.cpp server (Q4_1 GGUF, llama-cpp-python, "
                    f"{args.threads} threads)", "in_flight": in_flight, "wall": wall, "tokens": tokens,
            "missing": missing / max(1, scored)}, scores


def request_anatomy(catalog, reqs, url: str, served: str, key_env: str | None, history: int) -> dict:
    """Server time of single scoring requests (median of 5): a list's first prompt (the whole
    prompt evaluated), a following prompt (prefix reused) with `logprobs: 20`, and the same
    without log-probabilities."""
    import httpx

    headers = {"Authorization": f"Bearer {os.environ[key_env]}"} if key_env else {}
    ranker = PointwiseLLMRanker(backend=load_backend(LLMConfig(model="smollm2-135m")), catalog=catalog,
                                max_history=history)
    prompts_a, _ = ranker.build_prompts(*reqs[0])
    prompts_b, _ = ranker.build_prompts(*reqs[1])

    def post(prompt: str, logprobs: bool) -> float:
        body = {"model": served, "prompt": prompt, "max_tokens": 1, "temperature": 0.0}
        if logprobs:
            body["logprobs"] = 20
        t = time.perf_counter()
        httpx.post(f"{url}/completions", json=body, headers=headers, timeout=600).raise_for_status()
        return time.perf_counter() - t

    cold, warm, plain = [], [], []
    for k in range(5):
        post(prompts_b[k], False)  # another user's prompt: the next one shares no prefix
        cold.append(post(prompts_a[k], True))
        warm.append(post(prompts_a[k + 5], True))
        plain.append(post(prompts_a[k + 10], False))
    return {"tokens": ranker.backend.count_tokens(prompts_a[0]), "cold": statistics.median(cold),
            "warm": statistics.median(warm), "plain": statistics.median(plain)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--history", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--server-url", default=None, help="an already running server (default: start llama.cpp's)")
    ap.add_argument("--served-model", default=SERVED)
    ap.add_argument("--api-key-env", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "backends.md")
    args = ap.parse_args()

    host = machine()
    catalog, reqs, source = build_requests(args.users, args.candidates, args.history, args.seed)
    rows = []
    row, base_scores = run_inprocess(args, catalog, reqs)
    rows.append(row)
    proc = None
    key_env = args.api_key_env
    if args.server_url is None:
        log = Path(tempfile.mkdtemp()) / "llama-server.log"
        proc, url = start_llama_server(args.threads, log)
        from server_fixtures import SERVER_KEY, SERVER_KEY_ENV

        os.environ[SERVER_KEY_ENV] = SERVER_KEY
        key_env = SERVER_KEY_ENV
    else:
        url = args.server_url
    spec = f"openai:{args.served_model}@{url}"
    anatomy = None
    try:
        for n in args.in_flight:
            row, scores = run_server(args, catalog, reqs, spec, n, key_env)
            row["rho"] = statistics.median(spearman(a, b) for a, b in zip(base_scores, scores, strict=True))
            rows.append(row)
            print(f"{n} in flight: {row['wall'] / len(reqs):.2f} s/user", flush=True)
        anatomy = request_anatomy(catalog, reqs, url, args.served_model, key_env, args.history)
    finally:
        if proc is not None:
            from server_fixtures import stop_server

            stop_server(proc)
    write_report(args, rows, reqs, source, host, anatomy)


def write_report(args, rows, reqs, source: str, host: str, anatomy: dict | None = None) -> None:
    n = len(reqs)
    lines = [
        "# Backends: in-process transformers vs llama.cpp's OpenAI-compatible server",
        "",
        f"Command: `.venv/bin/python eval/bench_backends.py --users {args.users} --candidates {args.candidates} "
        f"--history {args.history} --threads {args.threads} --in-flight {' '.join(map(str, args.in_flight))}`",
        "",
        f"Machine: {host}. " + (
            "Quiet at the start (load below 1 per core)" if os.getloadavg()[0] < (os.cpu_count() or 1)
            else "**Busy**: other jobs were running, so absolute figures move between runs"
        ) + "; the rows were measured back to back in one run.",
        "",
        f"Requests: {n} users of {source}, {args.history} history items and {args.candidates} candidates "
        "each, pointwise Yes/No (one prompt per candidate, the history prefix shared). Model: "
        "SmolLM2-135M-Instruct. Tokens/s counts the prompts' tokens as the client counts them (the "
        "same prompts for every row); the server reuses the previous prompt's KV cache for the shared "
        "prefix, the in-process backend runs the prefix once and packs the suffixes.",
        "",
        "| backend | requests in flight | s/user | users/s | prompt tokens/s | labels outside top-20 | "
        "Spearman vs in-process (median) | wall x roofline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        missing = "-" if r["missing"] is None else f"{100 * r['missing']:.1f}%"
        rho = f"{r['rho']:.3f}" if "rho" in r else "-"
        roof = f"{r['roofline']:.1f}x" if "roofline" in r else "-"
        lines.append(f"| {r['name']} | {r['in_flight']} | {r['wall'] / n:.2f} | {n / r['wall']:.2f} | "
                     f"{r['tokens'] / r['wall']:.0f} | {missing} | {rho} | {roof} |")
    lines += ["", f"Prompt tokens per user: {rows[0]['tokens'] / n:.0f}."]
    if "gemm" in rows[0]:
        lines += [f"Tokens the in-process model ran per user (the prefix once, the suffixes packed): "
                  f"{rows[0]['tokens_run'] / n:.0f}. {rows[0]['gemm']} The server rows have no roofline "
                  "(a 4-bit GGUF through llama.cpp's own kernels; the torch GEMM rate does not apply)."]
    lines += [""]
    if anatomy:
        lines += [
            "One scoring request to the server (`max_tokens: 1`, median of 5, same load): "
            f"a list's first prompt ({anatomy['tokens']} tokens; sent after another user's prompt, so only "
            f"the shared instructions are reused) {anatomy['cold']:.2f} s; "
            f"a following prompt of the same list (history prefix reused) {anatomy['warm']:.2f} s with "
            f"`logprobs: 20`, {anatomy['plain']:.2f} s without log-probabilities.",
            "",
            "Why the server is slower here: the in-process backend scores a user's 20 prompts as one "
            "forward (the prefix once, the suffixes packed), while the completions API takes one request "
            "per prompt. llama-cpp-python keeps one KV cache and runs one request at a time, so it reuses "
            "only the previous request's prefix, and with `logprobs` it computes the log-softmax of every "
            "evaluated position's logits (prompt tokens x vocabulary) in numpy for each request, which "
            "doubles a following prompt's cost. More requests in flight only overlap the client and HTTP "
            "work. A server that batches requests and caches prefixes across them (vLLM, llama.cpp's own "
            "llama-server with several slots) is where `max_concurrency` pays; not measured here (no GPU, "
            "no llama-server binary on this machine).",
            "",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
