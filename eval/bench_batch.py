"""Benchmark of `reranker batch`: ml-100k users, ItemCF top-20 reranked by pointwise SmolLM2
(one torch / BLAS thread per worker), through the local engine and the Ray engine with 1 and 2
actors, side by side in one run; then the tokens per request (prompt tokens and the tokens the
shared-prefix scoring path actually runs) and, on paper, the GPUs a vLLM-backed Ray job needs for
10 million users a night.

    .venv/bin/python eval/bench_batch.py --users 200            # writes eval/results/batch.md

Each configuration is one `reranker batch` command in a fresh process (start-up, Ray start and
model loads included in its wall time); `ranking s` is the workers' summed batch time (the
`latency_s` column), so start-up = wall - ranking / workers. The three outputs are compared
(same ranked ids and scores). Host load (uptime) is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PIPELINE: dict[str, Any] = {
    "name": "bench-batch",
    "retriever": {"type": "itemcf"},
    "ranking": {
        "n_candidates": 20,
        "bert": None,
        "llm": {"type": "llm-pointwise", "model": "smollm2-135m", "threads": 1, "item_text_tokens": 0,
                "max_attrs": 1},
        "fusion": {"weights": {"llm": 1.0}},
    },
    "top_k": 20,
    "history_cap": 20,
}
CONFIGS = [("local", []), ("ray, 1 actor", ["--engine", "ray", "--concurrency", "1"]),
           ("ray, 2 actors", ["--engine", "ray", "--concurrency", "2"])]

# ----------------------------------------------------------------------------- the paper estimate
NIGHT_HOURS = 8.0
USERS_PER_NIGHT = 10_000_000
UTILISATION = 0.6
H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM5 datasheet: 989 TFLOPS BF16 Tensor Core, dense
PREFILL_MFU = 0.40
MODELS = [("Qwen2.5-1.5B-Instruct", 1.54e9), ("Llama-3.1-8B-Instruct", 8.03e9)]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_config(name: str, extra: list[str], config: Path, requests: Path, out: Path) -> dict[str, Any]:
    import pandas as pd

    cmd = [sys.executable, "-m", "reranker.cli", "batch", "--config", str(config), "--input", str(requests),
           "--output", str(out), "--no-progress", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{name}: exit {r.returncode}\n{r.stderr[-3000:]}")
    df = pd.read_parquet(out).sort_values("row").reset_index(drop=True)
    workers = 2 if "2 actors" in name else 1
    ranking = float(df["latency_s"].sum())
    return {"name": name, "wall_s": wall, "users": len(df), "users_per_s": len(df) / wall,
            "ranking_s": ranking, "workers": workers, "startup_s": wall - ranking / workers,
            "ranking_users_per_s": len(df) / (ranking / workers), "frame": df}


def count_tokens(config: Path, users: list[str]) -> dict[str, Any]:
    """Per user: the 20 full prompts' tokens (what a server without prefix caching prefills),
    the shared prefix and the scored tokens (prefix once + every candidate's own suffix)."""
    from reranker.batch import load_batch_config
    from reranker.llm.hf_scoring import common_prefix_length
    from reranker.serve.loading import load_pipeline

    pipe = load_pipeline(load_batch_config(config).pipeline)
    llm = pipe.llm
    tok = llm.backend.tokenizer
    full, prefix, scored, suffix = [], [], [], []
    for u in users:
        h = pipe.history_for(u)
        prompts, _ = llm.build_prompts(h, pipe.candidates(h))
        seqs = [list(x) for x in tok(prompts, add_special_tokens=False).input_ids]
        n = common_prefix_length(seqs)
        full.append(sum(len(s) for s in seqs))
        prefix.append(n)
        suffix.append(statistics.mean(len(s) - n for s in seqs))
        scored.append(n + sum(len(s) - n for s in seqs))
    return {"users": len(users), "candidates": len(seqs),
            "full_mean": statistics.mean(full), "full_median": statistics.median(full),
            "prefix_mean": statistics.mean(prefix), "suffix_mean": statistics.mean(suffix),
            "scored_mean": statistics.mean(scored), "scored_median": statistics.median(scored)}


def gpu_estimate(tokens_per_user: float) -> list[dict[str, Any]]:
    need = USERS_PER_NIGHT * tokens_per_user / (NIGHT_HOURS * 3600)
    rows = []
    for model, params in MODELS:
        per_gpu = H100_BF16_DENSE_TFLOPS * 1e12 * PREFILL_MFU / (2 * params)
        rows.append({"model": model, "need_tok_s": need, "per_gpu_tok_s": per_gpu,
                     "gpus": math.ceil(need / (per_gpu * UTILISATION))})
    return rows


def write_report(fig: dict[str, Any], path: Path, command: str) -> None:
    """eval/results/batch.md from the figures."""
    t = fig["tokens"]
    runs = fig["runs"]
    lines = [
        "# `reranker batch`: local engine vs Ray Data, and the GPUs for 10 million users a night",
        "",
        f"Command: `{command}` (one run; each configuration a fresh `reranker batch` process).",
        "",
        f"Protocol: the first {fig['users']} ml-100k users (`user_id` rows, Parquet), ItemCF top-20 reranked by "
        "pointwise SmolLM2-135M (bf16, in process, `threads: 1` for torch and BLAS in every worker, "
        "`item_text_tokens: 0`, history cap 20), `batch_size` 8, "
        f"shards of {fig.get('shard_rows', '?')} rows. Machine: 2 shared cores, no GPU, shared with other "
        "jobs (four LLM evaluations of other sessions ran throughout).",
        "",
        f"- host load before: `{fig['load_before']}`",
        f"- host load after: `{fig['load_after']}`",
        "",
        "| engine | users | wall s | users/s (wall) | ranking s (summed over workers) | start-up s | users/s while ranking | same output as local |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, same in zip(runs, fig["identical"], strict=True):
        lines.append(f"| {r['name']} | {r['users']} | {r['wall_s']:.1f} | {r['users_per_s']:.3f} | "
                     f"{r['ranking_s']:.1f} | {r['startup_s']:.1f} | {r['ranking_users_per_s']:.3f} | "
                     f"{'yes' if same else 'NO'} |")
    lines += [
        "",
        "`wall` is the whole command (Python start, pipeline fit, model loads, Ray start); `ranking s` is the "
        "sum of the workers' batch times (the output's `latency_s`); start-up = wall - ranking / workers; "
        "users/s while ranking = users / (ranking / workers). `same output` compares every column but "
        "`latency_s` with the local engine's output.",
        "",
        "## Tokens per request (measured)",
        "",
        f"Over all {t['users']} ml-100k users, {t['candidates']} candidates each, SmolLM2's tokenizer and chat template:",
        "",
        "| per user | tokens |",
        "|---|---|",
        f"| shared prefix (instructions + history) | {t['prefix_mean']:.0f} |",
        f"| one candidate's own suffix | {t['suffix_mean']:.1f} |",
        f"| scored: prefix once + every suffix (the in-process packed path; a server with a warm prefix cache) | {t['scored_mean']:.0f} (median {t['scored_median']:.0f}) |",
        f"| prompt tokens: the 20 full prompts (a server without prefix caching) | {t['full_mean']:.0f} (median {t['full_median']:.0f}) |",
        "",
    ]
    night_s = NIGHT_HOURS * 3600
    lines += [
        "## On paper: GPUs for a vLLM-backed Ray job, 10 million users a night",
        "",
        "Not measured (no GPU here): arithmetic from the measured tokens above and these assumptions.",
        "",
        f"- {USERS_PER_NIGHT:,} users, one request each (ItemCF top-20, pointwise), in a night of "
        f"{NIGHT_HOURS:g} hours ({night_s:,.0f} s).",
        "- GPU: NVIDIA H100 SXM5 80 GB, BF16; peak dense BF16 Tensor Core throughput "
        f"{H100_BF16_DENSE_TFLOPS:g} TFLOPS (NVIDIA H100 datasheet; the 1,979 figure is with sparsity).",
        f"- Prefill throughput = peak x MFU / (2 x parameters) tokens/s, with MFU {PREFILL_MFU:.0%} for prefill "
        "(an assumption: prefill of ~500-token prompts in large batches is compute-bound; attention adds "
        "about 2% at this length and is left out). The pointwise label is read from one next-token "
        "distribution per prompt (`max_tokens: 1`), so decoding is one step per prompt and is left out too.",
        "- Models: " + ", ".join(f"{m} ({p / 1e9:.2f}B parameters)" for m, p in MODELS) + "; the token counts "
        "are SmolLM2's tokenizer's (these models' tokenizers give counts of the same order; +-20% moves "
        "the GPU counts by as much).",
        f"- Utilisation: {UTILISATION:.0%} of the prefill throughput over the night (ramp-up, stragglers, "
        "batches not full, the CPU-side Ray actors and network).",
        "- Prefix caching (vLLM `--enable-prefix-caching`): the client sends a user's 20 prompts "
        "byte-identical up to the candidate, so with a hit share h of the 19 later prompts the server "
        "prefills prefix x (1 + 19 (1 - h)) + 20 x suffix tokens per user.",
        "",
        "| prefix-cache hit share h | tokens per user | tokens/s needed | model | prefill tokens/s per GPU | GPUs |",
        "|---|---|---|---|---|---|",
    ]
    for h in (1.0, 0.9, 0.0):
        per_user = t["prefix_mean"] * (1 + 19 * (1 - h)) + t["candidates"] * t["suffix_mean"]
        for row in gpu_estimate(per_user):
            lines.append(f"| {h:.0%} | {per_user:,.0f} | {row['need_tok_s']:,.0f} | {row['model']} | "
                         f"{row['per_gpu_tok_s']:,.0f} | {row['gpus']} |")
    best = next(r for r in runs if r["name"] == "local")
    cpu_days = USERS_PER_NIGHT / best["ranking_users_per_s"] / 86400
    lines += [
        "",
        f"For scale: this machine's local engine ranks {best['ranking_users_per_s']:.3f} users/s with the 135M "
        f"model under the load above, so 10 million users would take {cpu_days:,.0f} days of one such worker.",
        "On the Ray side, at full prefix caching the job sends about "
        f"{USERS_PER_NIGHT * t['candidates'] / night_s:,.0f} requests/s (one per candidate, `label_scores: "
        "top_logprobs`) to the servers: `--concurrency` actors x `server.max_concurrency` in flight must "
        "cover requests/s x latency.",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=943, help="the first N ml-100k users (943: all)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--shard-rows", type=int, default=25, help="rows per shard (a Ray task)")
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "batch.md"))
    ap.add_argument("--json", default=None, help="also write the figures as JSON here")
    ap.add_argument("--report-from", default=None, help="only write the report from this JSON")
    args = ap.parse_args()
    command = "python eval/bench_batch.py " + " ".join(sys.argv[1:])
    if args.report_from:
        write_report(json.loads(Path(args.report_from).read_text()), Path(args.out), command)
        return

    from reranker.data.loaders import load

    load_before = uptime()
    data = load(args.data, "recbole")
    all_users = [str(u) for u in data.user_ids]
    users = all_users[: args.users]
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    requests = work / "requests.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": f"u{u}", "user_id": u} for u in users]), requests)
    config = work / "batch.yaml"
    config.write_text(json.dumps({"pipeline": {"config": PIPELINE, "data": args.data, "format": "recbole"},
                                  "batch_size": args.batch_size, "shard_rows": args.shard_rows, "threads": 1}))
    print("counting tokens ...", flush=True)
    tokens = count_tokens(config, all_users)
    print(json.dumps(tokens), flush=True)
    results = []
    for name, extra in CONFIGS:
        print(f"{name} ...", flush=True)
        res = run_config(name, extra, config, requests, work / name.replace(", ", "-").replace(" ", ""))
        print(f"  {res['users']} users in {res['wall_s']:.1f} s: {res['users_per_s']:.3f} users/s", flush=True)
        results.append(res)
    base = results[0]["frame"].drop(columns="latency_s")
    same = [r["frame"].drop(columns="latency_s").equals(base) for r in results]
    load_after = uptime()
    est_cached = gpu_estimate(tokens["scored_mean"])
    est_plain = gpu_estimate(tokens["full_mean"])
    figures = {"users": len(users), "shard_rows": args.shard_rows, "load_before": load_before, "load_after": load_after, "identical": same,
               "runs": [{k: v for k, v in r.items() if k != "frame"} for r in results], "tokens": tokens,
               "gpus_prefix_cached": est_cached, "gpus_no_prefix_cache": est_plain}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: v for k, v in figures.items() if k != "runs"}, indent=2))
    for r in figures["runs"]:
        print(r)
    os.makedirs(Path(args.out).parent, exist_ok=True)
    write_report(figures, Path(args.out), command)


if __name__ == "__main__":
    main()
