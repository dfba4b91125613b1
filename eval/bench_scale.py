"""Scaling curve of stage 1 (issue 17, item 5): fit + top-20 for every user at about 0.1M, 1M
and 10M interactions, the product's ItemCF, UserCF, EASE and union retriever next to
`implicit`'s ItemKNN (CosineRecommender) and ALS: wall time and peak memory, side by side in
one run.

Data: generated, with a realistic long tail (no real data set of these sizes is on this machine):
items have a Zipf-like popularity (weight ``1 / (rank + 10) ** 1.1``), split into 20 genres;
user activity is log-normal (median about 60% of the mean, at least 5 interactions); each
interaction comes from the user's favourite genre with probability 0.7, else from the whole
catalogue, both by popularity; duplicates are dropped and timestamps increase per user. Sizes
follow MovieLens' shapes: 1,000 users x 1,700 items, 6,000 x 3,700 and 70,000 x 10,000.

Each cell (model x size) runs in a fresh subprocess (``--worker``), so peak memory is the
subprocess's own: after the imports and the data load the process's peak resident set is reset
(Linux ``/proc/self/clear_refs``), so ``peak`` is the highest resident set while fitting and
ranking (the loaded data included), and ``model`` = peak minus the resident set at the reset is
what fitting and ranking added on top of the data. Times: ``fit``
from the loaded `Dataset` (the product builds its id maps and matrices inside fit; implicit's
column includes building its CSR from the same frame), ``top-20`` for every user (seen items
excluded). The union (EASE + ItemCF + item transitions, quotas 30/20/50) works from per-user
histories, so its top-20 time includes building them. Cells above ``--timeout`` seconds are
reported as such. EASE uses a fixed l2 = 100 (no validation tuning) and refuses above
``max_items`` (default 20,000; it needs three dense float32 items x items matrices).

    .venv/bin/python eval/bench_scale.py [--sizes 0.1M,1M,10M] [--timeout 900]
        [--out eval/results/scale.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ROOT, machine  # noqa: E402

SIZES = {  # label -> (users, items, target interactions)
    "0.1M": (1_000, 1_700, 100_000),
    "1M": (6_000, 3_700, 1_000_000),
    "10M": (70_000, 10_000, 10_000_000),
}
MODELS = ["implicit-itemknn", "implicit-als", "itemcf", "usercf", "ease", "union"]
N = 20


def generate(n_users: int, n_items: int, target: int, seed: int = 0) -> pd.DataFrame:
    """Interactions (user_id, item_id, timestamp) with a long tail; see the module docstring.
    Duplicates are dropped, so the activity is scaled up until the size is within 5% of `target`."""
    scale = 1.0
    for _ in range(6):
        frame = _generate(n_users, n_items, target * scale, seed)
        if abs(len(frame) - target) <= 0.05 * target:
            break
        scale *= target / len(frame)
    return frame


def _generate(n_users: int, n_items: int, target: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    w = 1.0 / (np.arange(n_items) + 10.0) ** 1.1
    perm = rng.permutation(n_items)  # popularity rank -> item code, so ids carry no signal
    pop = np.empty(n_items)
    pop[perm] = w / w.sum()
    genre = rng.integers(0, 20, n_items)
    mean = target / n_users
    sigma = 1.0
    act = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n_users)
    act = np.clip(np.round(act), 5, n_items // 2).astype(np.int64)
    fav = rng.integers(0, 20, n_users)
    genre_items = [np.flatnonzero(genre == g) for g in range(20)]
    genre_p = [pop[ix] / pop[ix].sum() for ix in genre_items]
    users, items = [], []
    for u in range(n_users):
        k = int(act[u])
        k_fav = rng.binomial(k, 0.7)
        a = rng.choice(genre_items[fav[u]], size=k_fav, p=genre_p[fav[u]])
        b = rng.choice(n_items, size=k - k_fav, p=pop)
        its = np.unique(np.concatenate([a, b]))
        users.append(np.full(len(its), u, dtype=np.int64))
        items.append(rng.permutation(its))
    uu = np.concatenate(users)
    ii = np.concatenate(items)
    ts = np.arange(len(uu), dtype=np.int64)  # increasing within each user
    return pd.DataFrame({"user_id": uu.astype(str), "item_id": ii.astype(str), "timestamp": ts})


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> float:
    """Reset the process's peak resident set (Linux: ``clear_refs`` 5) and return the current
    resident set, so the next ``VmHWM`` is the peak of what runs after this call."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def worker(model: str, path: str) -> dict:
    """One cell: load the data, fit `model`, top-20 for every user; times and memory."""
    import logging
    import warnings

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    from reranker.data.dataset import Dataset

    frame = pd.read_parquet(path)
    data = Dataset(frame, name=Path(path).stem)
    users = list(pd.unique(frame["user_id"]))
    if model.startswith("implicit"):
        import scipy.sparse as sp
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import CosineRecommender

        def make() -> object:
            return (CosineRecommender(K=20) if model == "implicit-itemknn"
                    else AlternatingLeastSquares(factors=64, iterations=15, random_state=0))

        # warm-up on a small slice (imports, thread pools) outside the timed part
        warm = sp.random(200, 300, density=0.05, format="csr", dtype=np.float32, random_state=0)
        make().fit(warm, show_progress=False)
        base = _reset_peak()
        t0 = time.perf_counter()
        inter = data.interactions
        ucodes, uniq = pd.factorize(inter["user_id"])
        item_index = pd.Index(data.items["item_id"])
        icodes = item_index.get_indexer(inter["item_id"])
        R = sp.csr_matrix((np.ones(len(inter), np.float32), (ucodes, icodes)),
                          shape=(len(uniq), len(item_index)))
        R.sum_duplicates()
        R.data[:] = 1.0
        m: Any = make()
        m.fit(R, show_progress=False)
        t1 = time.perf_counter()
        uidx = np.arange(R.shape[0])
        for lo in range(0, len(uidx), 10_000):
            part = uidx[lo:lo + 10_000]
            m.recommend(part, R[part], N=N, filter_already_liked_items=True)
        t2 = time.perf_counter()
    else:
        from reranker.build_context import BuildContext
        from reranker.registry import RETRIEVERS

        spec = {
            "itemcf": {"type": "itemcf", "k": 20, "feedback": "implicit"},
            "usercf": {"type": "usercf", "k": 20, "feedback": "implicit"},
            "ease": {"type": "ease", "l2": 100.0},
            "union": {"type": "union", "sources": [{"type": "ease", "l2": 100.0},
                                                   {"type": "itemcf", "k": 20, "feedback": "implicit"},
                                                   {"type": "transitions"}],
                      "quotas": [30, 20, 50], "n": 100},
        }[model]
        cfg = RETRIEVERS.config_for(spec["type"], {k: v for k, v in spec.items() if k != "type"}, "bench")
        # warm-up on a small slice (lazy imports, thread pools) outside the timed part
        small = Dataset(frame[frame["user_id"].isin(users[:50])], name="warm-up")
        RETRIEVERS.build(cfg, BuildContext(fit_data=small)).retrieve_batch(
            list(small.histories().values())[:5], N)
        base = _reset_peak()
        t0 = time.perf_counter()
        r = RETRIEVERS.build(cfg, BuildContext(fit_data=data))  # builds and fits
        t1 = time.perf_counter()
        if model == "union":
            hs = data.histories()
            for lo in range(0, len(users), 5_000):
                r.retrieve_batch([hs[u] for u in users[lo:lo + 5_000]], N)
        else:
            for lo in range(0, len(users), 10_000):
                r.retrieve_users(users[lo:lo + 10_000], N)
        t2 = time.perf_counter()
    peak = _status_mib("VmHWM")
    return {"fit_s": t1 - t0, "topk_s": t2 - t1, "total_s": t2 - t0, "base_mib": base,
            "peak_mib": peak, "model_mib": peak - base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.1M,1M,10M")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--data-dir", default=str(ROOT / ".cache" / "bench_scale"))
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "scale.md"))
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "PARQUET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return

    hdr = machine()
    out_dir = Path(args.data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    shapes: dict[str, tuple[int, int, int]] = {}
    results: dict[tuple[str, str], dict | str] = {}
    for size in sizes:
        nu, ni, target = SIZES[size]
        path = out_dir / f"scale-{size}.parquet"
        if not path.exists():
            generate(nu, ni, target).to_parquet(path)
        frame = pd.read_parquet(path)
        shapes[size] = (frame["user_id"].nunique(), frame["item_id"].nunique(), len(frame))
        del frame
        for model in models:
            cmd = [sys.executable, __file__, "--worker", model, str(path)]
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
            except subprocess.TimeoutExpired:
                results[(size, model)] = f"> {args.timeout:.0f} s (stopped)"
                print(f"{size} {model}: timed out", file=sys.stderr)
                continue
            if p.returncode != 0:
                tail = (p.stderr.strip().splitlines() or ["?"])[-1]
                results[(size, model)] = f"failed: {tail[:160]}"
                print(f"{size} {model}: failed: {tail}", file=sys.stderr)
                continue
            res = json.loads(p.stdout.strip().splitlines()[-1])
            results[(size, model)] = res
            print(f"{size} {model}: {res['total_s']:.2f} s, peak {res['peak_mib']:.0f} MiB", file=sys.stderr)

    import implicit

    lines = [
        "# Stage-1 scaling: fit + top-20 for every user, 0.1M to 10M interactions",
        "",
        f"Produced by `eval/bench_scale.py --sizes {args.sizes} --timeout {args.timeout:.0f}` (one run; "
        "each cell a fresh subprocess, cells run one after another in the order of the table).",
        "",
        f"- Machine: {hdr}.",
        f"- Versions: implicit {implicit.__version__}, numpy {np.__version__}, pandas {pd.__version__}.",
        "- Data: generated with a long tail (Zipf-like item popularity, 20 genres, log-normal user "
        "activity; see the script's docstring); implicit feedback on every side.",
        "- Models: implicit `CosineRecommender(K=20)` and `AlternatingLeastSquares(factors=64, "
        "iterations=15)` on a binary CSR built from the same frame (CSR building counted in fit); the "
        "product's `itemcf` / `usercf` (k=20, implicit feedback), `ease` (l2=100, fixed) and `union` "
        "(EASE + ItemCF + transitions, quotas 30/20/50; its top-20 time includes building the users' "
        "histories) fitted through the registry from the same `Dataset`.",
        "- Memory: peak resident set of the cell's process while fitting and ranking (its peak is reset "
        "after the imports and the data load, `/proc/self/clear_refs`); `model` = that peak minus the "
        "resident set at the reset (the loaded data), i.e. what the model added.",
        "",
        "| data | users | items | interactions | model | fit s | top-20 s | total s | peak MiB | model MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        nu, ni, m = shapes[size]
        for model in models:
            r = results[(size, model)]
            if isinstance(r, str):
                lines.append(f"| {size} | {nu:,} | {ni:,} | {m:,} | {model} | {r} | | | | |")
            else:
                lines.append(
                    f"| {size} | {nu:,} | {ni:,} | {m:,} | {model} | {r['fit_s']:.2f} | {r['topk_s']:.2f} | "
                    f"{r['total_s']:.2f} | {r['peak_mib']:.0f} | {r['model_mib']:.0f} |")
    lines += ["", "## Ratios to implicit (total time)", "",
              "| data | itemcf / implicit ItemKNN | usercf / implicit ItemKNN | ease / implicit ALS | union / implicit ALS |",
              "|---|---|---|---|---|"]

    def ratio(size: str, a: str, b: str) -> str:
        ra, rb = results.get((size, a)), results.get((size, b))
        if isinstance(ra, dict) and isinstance(rb, dict):
            return f"{ra['total_s'] / rb['total_s']:.2f}x"
        return "n/a"

    for size in sizes:
        lines.append(f"| {size} | {ratio(size, 'itemcf', 'implicit-itemknn')} | "
                     f"{ratio(size, 'usercf', 'implicit-itemknn')} | {ratio(size, 'ease', 'implicit-als')} | "
                     f"{ratio(size, 'union', 'implicit-als')} |")
    from reranker.retrieval.ease import memory_bytes

    lines += ["", "## EASE memory", "",
              "EASE keeps three dense float32 items x items matrices while fitting (the Gram matrix, "
              "its inverse, the weights); it refuses above `max_items` (default 20,000) with a "
              "`ConfigError` that states the memory it would need, and suggests filtering rare items "
              "or raising the limit.", "",
              "| items | memory EASE needs |", "|---|---|"]
    for n_items in (1_700, 3_700, 10_000, 20_000, 50_000):
        lines.append(f"| {n_items:,} | {memory_bytes(n_items) / 2**30:.2f} GiB |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
