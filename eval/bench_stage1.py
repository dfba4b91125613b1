"""Benchmark: stage-1 retrievers on ml-100k, side by side in one run.

Protocol: chronological leave-one-out (per user: last interaction = test, second-last =
validation; ties in time broken by the dataset's tie order), fit on train + validation,
histories = each evaluated user's last 20 training+validation items
(``split.histories('test', cap=20)``), top-100 of the full catalogue with every seen item
excluded (the whole training row, not only the capped history). Recall@20/50/100 and NDCG@10
against the single held-out test item, averaged over all evaluated users.

Models: popularity; ItemCF (k=20, implicit feedback); UserCF (k=50, implicit); EASE with l2
tuned on the validation stage (`tune_ease`: fit on train, NDCG@10 of the validation items,
default grid); ALS and BPR through `implicit` (library defaults of `reranker`, one thread,
seed 0); item-to-item transitions (defaults); and the union of EASE (tuned l2) + ItemCF +
transitions (quotas out of n=100, round-robin). Fit seconds = ``fit(train+valid)`` from the
Dataset (EASE's tuning reported apart); retrieve seconds = ``retrieve_batch`` of every
evaluated user at n=100.

    .venv/bin/python eval/bench_stage1.py [--data ../shared/data/ml-100k] [--quotas 30,20,50]

Writes eval/results/stage1.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ML100K, ROOT, machine  # noqa: E402

N = 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ML100K), help="ml-100k in RecBole atomic format")
    ap.add_argument("--quotas", default="30,20,50", help="union quotas for EASE,ItemCF,transitions (of n=100)")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads for every model (default 1: the machine is shared; 0 = no limit)")
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "stage1.md"))
    args = ap.parse_args()
    if args.blas_threads > 0:
        # load every BLAS the models use first: threadpoolctl limits the libraries loaded now
        import implicit.cpu.als  # noqa: F401
        import scipy.linalg  # noqa: F401
        import scipy.sparse.linalg  # noqa: F401
        from threadpoolctl import threadpool_info, threadpool_limits

        libs = [f"{x['internal_api']} ({x['prefix']})" for x in threadpool_info() if x["user_api"] == "blas"]
        args.blas_libs = ", ".join(libs)

        with threadpool_limits(limits=args.blas_threads, user_api="blas"):
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    quotas = [int(x) for x in args.quotas.split(",")]

    import implicit
    import scipy

    from reranker.data import leave_one_out, load
    from reranker.evaluation.metrics import ranking_metrics
    from reranker.retrieval.ease import DEFAULT_L2_GRID, EASE, tune_ease
    from reranker.retrieval.implicit_models import ALS, BPR
    from reranker.retrieval.knn import ItemCF, UserCF
    from reranker.retrieval.popularity import PopularityRetriever
    from reranker.retrieval.transitions import Transitions
    from reranker.retrieval.union import UnionRetriever

    hdr = machine()
    t_start = time.perf_counter()
    ds = load(args.data, format="recbole")
    split = leave_one_out(ds)
    fit_data = split.train_valid()
    hists = split.histories("test", cap=20)
    targets = split.targets("test")
    users = sorted(hists)
    H = [hists[u] for u in users]
    truth = [targets[u] for u in users]

    t0 = time.perf_counter()
    tuning = tune_ease(split, DEFAULT_L2_GRID, metric="ndcg@10")
    t_tune = time.perf_counter() - t0
    l2 = tuning.l2
    print(f"EASE l2 tuned on validation: {l2:g} ({t_tune:.1f}s)", file=sys.stderr)

    union_sources = [{"type": "ease", "l2": l2}, {"type": "itemcf", "k": 20, "feedback": "implicit"},
                     {"type": "transitions"}]
    models: dict[str, Any] = {
        "Popularity": lambda: PopularityRetriever(),
        "ItemCF (k=20, implicit)": lambda: ItemCF(k=20, feedback="implicit"),
        "UserCF (k=50, implicit)": lambda: UserCF(k=50, feedback="implicit"),
        f"EASE (l2={l2:g}, tuned)": lambda: EASE(l2=l2),
        "ALS (64 factors, 15 it., alpha 10, reg 0.05)": lambda: ALS(),
        "BPR (64 factors, 100 it., lr 0.01, reg 0.01)": lambda: BPR(),
        "Transitions (window 3, decay .5, last 5, recency .7)": lambda: Transitions(),
        f"Union EASE+ItemCF+transitions (quotas {'/'.join(map(str, quotas))} of {N})":
            lambda: UnionRetriever(sources=union_sources, quotas=quotas, n=N),
    }
    rows = []
    union_share: dict[str, float] = {}
    for name, make in models.items():
        model = make()
        t0 = time.perf_counter()
        model.fit(fit_data)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        lists = model.retrieve_batch(H, N)
        t_ret = time.perf_counter() - t0
        ids = [[c.item_id for c in x] for x in lists]
        m = ranking_metrics(ids, truth, ks=(10, 20, 50, 100), metrics=("ndcg", "recall"))
        vals = {k: float(np.nanmean(m[k])) for k in ("recall@20", "recall@50", "recall@100", "ndcg@10")}
        rows.append((name, vals, t_fit, t_ret))
        if name.startswith("Union"):
            src = [c.source for x in lists for c in x]
            union_share = {s: src.count(s) / len(src) for s in sorted(set(src))}
        print(f"{name}: R@100 {vals['recall@100']:.4f} NDCG@10 {vals['ndcg@10']:.4f} "
              f"fit {t_fit:.2f}s retrieve {t_ret:.2f}s", file=sys.stderr)
    total = time.perf_counter() - t_start

    cmd = "python eval/bench_stage1.py" + (f" --quotas {args.quotas}" if args.quotas != "30,20,50" else "") \
        + (f" --blas-threads {args.blas_threads}" if args.blas_threads != 1 else "")
    lines = [
        "# Stage 1 on ml-100k: recall of the candidate generators",
        "",
        f"Produced by `{cmd}` (one run, {total:.0f} s in all).",
        "",
        f"- Machine: {hdr}; `nproc` = {os.cpu_count()}.",
        f"- Versions: numpy {np.__version__}, scipy {scipy.__version__}, implicit {implicit.__version__}.",
        f"- Data: ml-100k ({ds.n_users} users, {ds.n_items} items, {ds.n_interactions} ratings, used as "
        "implicit feedback by every model here).",
        "- Protocol: chronological leave-one-out (last interaction = test, second-last = validation; "
        f"{ds.tie_order.describe()}); fit on train + validation ({fit_data.n_interactions} "
        f"interactions); for each of the {len(users)} evaluated users the history is their last 20 "
        "items (`split.histories('test', cap=20)`), the model ranks the full catalogue with every "
        "seen item excluded (the whole training row), top 100 kept. Recall@K (= HR@K, one held-out "
        "item) and NDCG@10 against the test item, mean over users.",
        f"- EASE: l2 chosen by `tune_ease(split)` on the validation stage (fit on train, NDCG@10 of "
        f"the validation items, full-catalogue ranking): **l2 = {l2:g}** ({t_tune:.1f} s for the "
        "grid; per value: " + ", ".join(f"{k:g}: {v:.4f}" for k, v in tuning.scores.items()) + ").",
        "- ALS / BPR: implicit's CPU models, one thread, seed 0, reranker's defaults (ALS: factors 64, "
        "15 iterations, alpha 10, regularization 0.05; BPR: factors 64, 100 iterations, learning rate "
        "0.01, regularization 0.01 -- implicit's own BPR defaults; both picked on the validation stage).",
        "- Union: EASE (tuned l2), ItemCF (k=20, implicit) and transitions, quotas "
        f"{'/'.join(map(str, quotas))} of n={N}, round-robin in that source order, duplicates skipped "
        "(quotas picked on the validation stage). Its fit time includes fitting the three sources; "
        "its retrieval time includes their retrievals and the merge.",
        "- Fit s: `model.fit(train+valid)` from the Dataset (id maps and matrices included). Retrieve s: "
        f"`retrieve_batch` of all {len(users)} users at n={N}. "
        + (f"BLAS limited to {args.blas_threads} thread(s) for every model (multi-threaded OpenBLAS on "
           f"this oversubscribed 2-core machine made the same EASE fit take 1-16 s; libraries: {args.blas_libs}); "
           if args.blas_threads > 0 else "BLAS threads not limited; ")
        + "ALS / BPR run implicit's kernels on one thread. Wall time on a shared machine (other "
        "jobs ran alongside): compare orders of magnitude, not small differences.",
        "",
        "| model | Recall@20 | Recall@50 | Recall@100 | NDCG@10 | fit s | retrieve s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v, tf, tr in rows:
        lines.append(f"| {name} | {v['recall@20']:.4f} | {v['recall@50']:.4f} | {v['recall@100']:.4f} | "
                     f"{v['ndcg@10']:.4f} | {tf:.2f} | {tr:.2f} |")
    best_single = max((r for r in rows if not r[0].startswith("Union")), key=lambda r: r[1]["recall@100"])
    union = next(r for r in rows if r[0].startswith("Union"))
    se = np.sqrt(union[1]["recall@100"] * (1 - union[1]["recall@100"]) / len(users))
    lines += [
        "",
        f"Standard error of a Recall@100 near {union[1]['recall@100']:.2f} over {len(users)} users: "
        f"about {se:.3f}.",
        "",
        f"- Best single model at Recall@100: {best_single[0]} ({best_single[1]['recall@100']:.4f}); the "
        f"union: {union[1]['recall@100']:.4f} ({union[1]['recall@100'] - best_single[1]['recall@100']:+.4f}).",
        "- Union candidates by best source (share of all proposed): "
        + ", ".join(f"{k} {v:.2%}" for k, v in union_share.items()) + ".",
        "- The union's NDCG@10 is that of a 1-1-1 interleaving of its sources' heads; the union is "
        "meant as the candidate pool for stage 2, whose rankers reorder it.",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
