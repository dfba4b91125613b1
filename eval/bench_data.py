"""Benchmark: loading MovieLens 100K (RecBole atomic) and the leave-one-out split.

Target (foundation issue): loading ml-100k takes under 1 s on this machine.

    .venv/bin/python eval/bench_data.py [--data ../shared/data/ml-100k] [--repeats 7]

Writes eval/results/data.md (median, min and max of the repeats; the first, cold run included).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "data.md"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    from reranker.data import leave_one_out, load

    import_s = time.perf_counter() - t0
    loads, splits, hists = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ds = load(args.data, format="recbole")
        loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        s = leave_one_out(ds)
        splits.append(time.perf_counter() - t)
        t = time.perf_counter()
        s.histories("test", cap=20)
        hists.append(time.perf_counter() - t)
    d = ds.describe()

    def row(name: str, xs: list[float]) -> str:
        return f"| {name} | {statistics.median(xs):.3f} | {min(xs):.3f} | {max(xs):.3f} |"

    text = "\n".join([
        "# Data loading benchmark (ml-100k)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; shared and noisy, medians of {args.repeats} runs.",
        f"Command: `.venv/bin/python eval/bench_data.py --repeats {args.repeats}`",
        "",
        f"Dataset: {d['users']} users, {d['items']} items, {d['interactions']} interactions "
        "(RecBole atomic files, validated on load: ids, ratings, timestamps, catalog join).",
        "",
        f"`import reranker.data` (pandas included): {import_s:.3f} s",
        "",
        "| step | median s | min s | max s |",
        "|---|---|---|---|",
        row("load (recbole, validated)", loads),
        row("leave_one_out split", splits),
        row("test histories, cap 20 (943 users)", hists),
        "",
        f"Target: load < 1 s -> {'met' if statistics.median(loads) < 1.0 else 'NOT met'} "
        f"(median {statistics.median(loads):.3f} s).",
        "",
    ])
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
