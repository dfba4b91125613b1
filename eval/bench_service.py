"""Load test of `reranker serve` on loopback: SmolLM2, 20 candidates and 10 history items per
request; pointwise at 1 / 4 / 16 / 64 concurrent clients, listwise at 1 / 4 / 16 with
micro-batching off and on (the ratio side by side); requests/s, p50/p95/p99 latency, errors,
the server's micro-batches and peak RSS. Bounded: at most `--requests` per level (at least one
per client) and `--max-seconds` per level (requests still in flight then are counted as cut off).

    .venv/bin/python eval/bench_service.py [--runs 'pointwise:off:1,4,16,64;listwise:off:1,4,16;listwise:on:1,4,16']
        # writes eval/results/service.md

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


def serve_and_load(args: argparse.Namespace, mode: str, micro_batch: bool, levels: list[int]) -> dict:
    """Start `reranker serve` for one (mode, micro-batching) setting, run every level, stop it."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    cfg = tmp / "serve.yaml"
    ranker = (f"{{type: llm-{mode}, model: smollm2-135m, item_text_tokens: 0, max_attrs: 1}}")
    cfg.write_text(
        f"rerankers:\n  {mode}:\n    ranker: {ranker}\n"
        f"workers: {args.workers}\napi_key_env: null\nfeedback_db: {tmp / 'fb.sqlite3'}\n"
        f"micro_batch: {{enabled: {str(micro_batch).lower()}, max_wait_ms: {args.max_wait_ms}}}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t_start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "reranker.cli", "serve", "--config", str(cfg),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "server.log", "w"))
    ps = psutil.Process(proc.pid)
    peak = 0
    rows = []
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
        for n in levels:
            bodies = make_requests(max(args.requests, n), seed=n)
            before = batch_counts(url, mode)
            res = asyncio.run(level(url, n, bodies, args.max_seconds))
            after = batch_counts(url, mode)
            res["batches"] = after[0] - before[0]
            res["batched"] = after[1] - before[1]
            peak = max(peak, ps.memory_info().rss)
            try:
                hwm = [ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                       if ln.startswith("VmHWM")]
                peak = max(peak, int(hwm[0].split()[1]) * 1024) if hwm else peak
            except OSError:
                pass
            res["cut"] = len(bodies) - res["ok"] - res["errors"]
            res.update(mode=mode, micro_batch=micro_batch)
            rows.append(res)
            print(res, flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    return {"mode": mode, "micro_batch": micro_batch, "ready_s": ready_s, "peak": peak, "rows": rows}


def batch_counts(url: str, mode: str) -> tuple[int, int]:
    """(micro-batches, requests in them) so far, from the server's /metrics."""
    text = httpx.get(url + "/metrics").text
    found = {}
    for name in ("reranker_batches_total", "reranker_batched_requests_total"):
        prefix = f'{name}{{mode="{mode}"}} '
        found[name] = next((int(ln[len(prefix):]) for ln in text.splitlines() if ln.startswith(prefix)), 0)
    return found["reranker_batches_total"], found["reranker_batched_requests_total"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="pointwise:off:1,4,16,64;listwise:off:1,4,16;listwise:on:1,4,16",
                    help="MODE:on|off:LEVELS;... (micro-batching on or off; concurrent clients per level)")
    ap.add_argument("--requests", type=int, default=16, help="requests per level (at least one per client)")
    ap.add_argument("--max-seconds", type=float, default=150.0, help="per level")
    ap.add_argument("--workers", type=int, default=2, help="the server's model threads")
    ap.add_argument("--max-wait-ms", type=float, default=10.0, help="micro_batch.max_wait_ms")
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "service.md"))
    args = ap.parse_args()
    runs = []
    for spec in args.runs.split(";"):
        mode, onoff, levels = spec.split(":")
        runs.append(serve_and_load(args, mode, onoff == "on", [int(x) for x in levels.split(",")]))
    lines = [
        "# `reranker serve` load test (eval/bench_service.py)", "",
        f"Produced by `eval/bench_service.py --runs '{args.runs}' --requests {args.requests} "
        f"--max-seconds {args.max_seconds:.0f} --workers {args.workers} --max-wait-ms {args.max_wait_ms:g}` "
        "(one run; the settings one after another).", "",
        f"Machine: {machine()}.", "",
        f"Server: `reranker serve` on loopback, SmolLM2-135M in process (the `smollm2-135m` preset; title, "
        f"category and one attribute per item), {args.workers} model threads; one server per setting. "
        "Each request: 20 candidates and 10 history items (titles + category of the generated demo "
        f"catalog). Per level: {args.requests} requests (at least one per client), at most "
        f"{args.max_seconds:.0f} s; `cut` = requests not started before that bound. `batches`: the "
        "micro-batches the server ran (its /metrics), `mean batch` the requests per batch.", "",
        "| mode | micro-batching | clients | ok | errors | cut | wall s | requests/s | p50 s | p95 s | p99 s "
        "| batches | mean batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for r in run["rows"]:
            mean = f"{r['batched'] / r['batches']:.1f}" if r["batches"] else "-"
            lines.append(f"| {r['mode']} | {'on' if r['micro_batch'] else 'off'} | {r['clients']} | {r['ok']} | "
                         f"{r['errors']} | {r['cut']} | {r['wall_s']:.1f} | {r['rps']:.2f} | {r['p50']:.2f} | "
                         f"{r['p95']:.2f} | {r['p99']:.2f} | {r['batches'] or '-'} | {mean} |")
    lines += ["", "| mode | micro-batching | ready s | peak RSS MiB |", "|---|---|---:|---:|"]
    for run in runs:
        lines.append(f"| {run['mode']} | {'on' if run['micro_batch'] else 'off'} | {run['ready_s']:.1f} | "
                     f"{run['peak'] / 2**20:.0f} |")
    by = {(run["mode"], run["micro_batch"]): {r["clients"]: r for r in run["rows"]} for run in runs}
    ratio_lines = []
    for (mode, on), rows in by.items():
        off = by.get((mode, False))
        if not on or off is None:
            continue
        for n, r in rows.items():
            if n in off and off[n]["rps"]:
                ratio_lines.append(f"| {mode} | {n} | {off[n]['rps']:.2f} | {r['rps']:.2f} | "
                                   f"{r['rps'] / off[n]['rps']:.2f}x | {off[n]['p50']:.2f} | {r['p50']:.2f} |")
    if ratio_lines:
        lines += ["", "Micro-batching on vs off, side by side in this run:", "",
                  "| mode | clients | requests/s off | requests/s on | ratio | p50 s off | p50 s on |",
                  "|---|---:|---:|---:|---:|---:|---:|", *ratio_lines]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
