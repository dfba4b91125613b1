"""Load test of `reranker serve` on loopback: pointwise SmolLM2, 20 candidates and 10 history
items per request, 1 / 4 / 16 / 64 concurrent clients; requests/s, p50/p95/p99 latency,
errors and the server's peak RSS. Bounded: at most `--requests` per level (at least one per
client) and `--max-seconds` per level (requests still in flight then are counted as cut off).

    .venv/bin/python eval/bench_service.py            # writes eval/results/service.md

The server runs as `reranker serve` in a subprocess with a generated config (`--workers`
model threads); the clients are asyncio + httpx in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ROOT, machine  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_requests(n: int, seed: int = 0) -> list[dict]:
    from reranker.data.synthetic import generate_world

    data = generate_world(seed=0, n_users=200, n_items=400).dataset
    items = data.catalog()
    ids = sorted(items)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pick = rng.sample(ids, 30)
        hist = [{"id": i, "title": items[i].title, "category": items[i].category} for i in pick[:10]]
        docs = [{"id": i, "title": items[i].title, "category": items[i].category} for i in pick[10:]]
        out.append({"documents": docs, "history": hist})
    return out


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def level(url: str, clients: int, bodies: list[dict], max_seconds: float) -> dict:
    queue = list(bodies)
    lat: list[float] = []
    errors = 0
    t0 = time.perf_counter()

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        while queue and time.perf_counter() - t0 < max_seconds:
            body = queue.pop()
            s = time.perf_counter()
            try:
                r = await c.post("/v1/rerank", json=body)
                ok = r.status_code == 200 and len(r.json()["results"]) == 20
            except httpx.HTTPError:
                ok = False
            if ok:
                lat.append(time.perf_counter() - s)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=max_seconds + 600, limits=limits) as c:
        tasks = [asyncio.create_task(client(c)) for _ in range(clients)]
        done, pending = await asyncio.wait(tasks, timeout=max_seconds + 300)
        for t in pending:
            t.cancel()
    wall = time.perf_counter() - t0
    return {"clients": clients, "ok": len(lat), "errors": errors, "wall_s": wall,
            "rps": len(lat) / wall if wall else 0.0, "p50": percentile(lat, 0.5),
            "p95": percentile(lat, 0.95), "p99": percentile(lat, 0.99),
            "mean": statistics.fmean(lat) if lat else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=16, help="requests per level (at least one per client)")
    ap.add_argument("--max-seconds", type=float, default=150.0, help="per level")
    ap.add_argument("--workers", type=int, default=2, help="the server's model threads")
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "service.md"))
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    cfg = tmp / "serve.yaml"
    cfg.write_text(
        "rerankers:\n  pointwise:\n    ranker: {type: llm-pointwise, model: smollm2-135m, item_text_tokens: 0,"
        " max_attrs: 1}\n"
        f"workers: {args.workers}\napi_key_env: null\nfeedback_db: {tmp / 'fb.sqlite3'}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t_start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "reranker.cli", "serve", "--config", str(cfg),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "server.log", "w"))
    ps = psutil.Process(proc.pid)
    peak = 0
    try:
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.perf_counter() - t_start > 300:
                raise SystemExit(f"the server did not start; see {tmp / 'server.log'}")
            time.sleep(0.2)
        ready_s = time.perf_counter() - t_start
        rows = []
        for n in levels:
            bodies = make_requests(max(args.requests, n), seed=n)
            res = asyncio.run(level(url, n, bodies, args.max_seconds))
            peak = max(peak, ps.memory_info().rss)
            try:
                hwm = [ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                       if ln.startswith("VmHWM")]
                peak = max(peak, int(hwm[0].split()[1]) * 1024) if hwm else peak
            except OSError:
                pass
            res["cut"] = len(bodies) - res["ok"] - res["errors"]
            rows.append(res)
            print(res, flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    lines = [
        "# `reranker serve` load test (eval/bench_service.py)", "",
        f"Machine: {machine()}.", "",
        f"Server: `reranker serve` on loopback, pointwise SmolLM2-135M in process (the `smollm2-135m` preset), "
        f"{args.workers} model threads, no micro-batching (not implemented yet). Each request: 20 candidates "
        f"and 10 history items (titles + category of the generated demo catalog). Ready "
        f"(`/readyz` 200) {ready_s:.1f} s after start. Peak RSS of the server: {peak / 2**20:.0f} MiB.", "",
        f"Per level: {args.requests} requests (at least one per client), at most {args.max_seconds:.0f} s; "
        "`cut` = requests not started before that bound.", "",
        "| clients | ok | errors | cut | wall s | requests/s | p50 s | p95 s | p99 s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['ok']} | {r['errors']} | {r['cut']} | {r['wall_s']:.1f} | "
                     f"{r['rps']:.2f} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} |")
    lines += ["", "The machine has 2 cores shared with other jobs (see the load average): the figures are "
              "noisy.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
