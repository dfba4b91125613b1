"""Benchmark: candidate generation on ml-100k, our ItemCF vs implicit's CosineRecommender.

Protocol: chronological leave-one-out (last interaction = test, second-last = validation),
fit on train + validation, top-20 unseen items for every evaluated user, NDCG@10 and
Recall@20 (= HR@20: one held-out item per user) against the test item. Implicit feedback
(binary user-item matrix) on both sides, same K. Wall time of fit + retrieve for all users,
median of `--repeats` runs, the libraries interleaved within each run so both see the same
machine load. UserCF and popularity are reported alongside.

Targets (issue 3): NDCG@10 and Recall@20 within 1% relative of implicit; our fit+retrieve
time at most 1.0x implicit's.

    .venv/bin/python eval/bench_retrieval.py [--data ../shared/data/ml-100k] [--k 20] [--repeats 5]

Writes eval/results/retrieval.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ML100K, ROOT, machine, med, spread, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ML100K))
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "retrieval.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", module="implicit")

    import implicit
    import scipy
    from implicit.nearest_neighbours import CosineRecommender

    from reranker.data import leave_one_out, load
    from reranker.evaluation.metrics import ranking_metrics
    from reranker.retrieval import ItemCF, PopularityRetriever, UserCF

    hdr = machine()
    ds = load(args.data, format="recbole")
    split = leave_one_out(ds)
    fit_data = split.train_valid()
    targets = split.targets("test")
    users = sorted(targets)
    truth = [targets[u] for u in users]
    K, N = args.k, args.n

    def implicit_run() -> tuple[float, float, np.ndarray]:
        """(prep seconds, fit+recommend seconds, (users, N) item-id array)."""
        t_prep, (R, uidx, iids) = timed(lambda: _implicit_matrix(fit_data, users))
        model = CosineRecommender(K=K)
        t_fit, _ = timed(lambda: model.fit(R, show_progress=False))
        t_rec, (ids, _) = timed(lambda: model.recommend(uidx, R[uidx], N=N, filter_already_liked_items=True))
        return t_prep, t_fit + t_rec, iids[ids]

    def ours(factory) -> tuple[float, np.ndarray]:
        def go():
            m = factory().fit(fit_data)
            return m.retrieve_users(users, N)
        t, batch = timed(go)
        return t, batch

    models = {
        f"ItemCF (ours, K={K}, no popular fill)": lambda: ItemCF(k=K, feedback="implicit", fill_popular=False),
        f"ItemCF (ours, K={K - 1}, no popular fill)": lambda: ItemCF(k=K - 1, feedback="implicit", fill_popular=False),
        f"ItemCF (ours, K={K}, default: popular fill)": lambda: ItemCF(k=K, feedback="implicit"),
        f"UserCF (ours, K={K})": lambda: UserCF(k=K, feedback="implicit"),
        "UserCF (ours, K=50)": lambda: UserCF(k=50, feedback="implicit"),
        "Popularity (ours)": PopularityRetriever,
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    t_imp, t_imp_prep = [], []
    lists: dict[str, list[list[str]]] = {}
    implicit_run()  # warm-up (imports, OpenMP pool) for both sides
    ours(models[next(iter(models))])
    for rep in range(args.repeats):
        tp, tr, ids = implicit_run()
        t_imp_prep.append(tp)
        t_imp.append(tr)
        lists["implicit CosineRecommender"] = ids.tolist()
        for name, factory in models.items():
            t, batch = ours(factory)
            times[name].append(t)
            lists[name] = [batch.row_ids(i).tolist() for i in range(len(batch))]
        print(f"run {rep + 1}/{args.repeats}: implicit {tr:.3f}s (+prep {tp:.3f}s), "
              f"ItemCF {times[next(iter(models))][-1]:.3f}s", file=sys.stderr)

    metrics = {}
    for name, ls in lists.items():
        m = ranking_metrics(ls, truth, ks=(10, 20), metrics=("ndcg", "recall"))
        metrics[name] = (float(np.nanmean(m["ndcg@10"])), float(np.nanmean(m["recall@20"])),
                         float(np.nanmean(m["recall@10"])))
    ref = metrics["implicit CosineRecommender"]
    ours_main = f"ItemCF (ours, K={K}, no popular fill)"
    imp_sets = [set(x) for x in lists["implicit CosineRecommender"]]
    overlap = {
        name: float(np.mean([len(set(a) & b) / max(len(b), 1) for a, b in zip(lists[name], imp_sets, strict=True)]))
        for name in models if name.startswith("ItemCF")
    }
    imp_total = [a + b for a, b in zip(t_imp, t_imp_prep, strict=True)]

    lines = [
        "# Candidate generation on ml-100k: ItemCF vs implicit",
        "",
        "Produced by `eval/bench_retrieval.py` "
        f"(`--k {K} --n {N} --repeats {args.repeats}`).",
        "",
        f"- Machine: {hdr}.",
        f"- Versions: implicit {implicit.__version__}, numpy {np.__version__}, scipy {scipy.__version__}.",
        f"- Data: ml-100k ({ds.n_users} users, {ds.n_items} items, {ds.n_interactions} ratings), "
        "chronological leave-one-out (ties by item id); fit on train + validation "
        f"({fit_data.n_interactions} interactions), top-{N} unseen items for each of the "
        f"{len(users)} users, scored against the held-out test item. Implicit feedback (binary) "
        "on both sides.",
        "- implicit: `CosineRecommender(K)` fit on the binary user-item CSR, "
        f"`recommend(users, R[users], N={N}, filter_already_liked_items=True)`. Note: implicit's "
        "K counts the item itself (its similarity row keeps the item + K-1 others; the item is "
        "then filtered as seen), so our K-1 row is the exact neighbour-count match.",
        "- ours: `ItemCF(k, feedback='implicit').fit(dataset)` then `retrieve_users(users, N)` "
        "(array form of `retrieve_batch`); the time starts from the `Dataset` (id mapping and "
        "matrix building included). implicit's time is fit + recommend on a prebuilt CSR; "
        "'+prep' adds building that CSR from the same frame.",
        f"- Wall time: median (min-max) of {args.repeats} runs, libraries interleaved in each run.",
        "",
        "| model | NDCG@10 | Recall@10 | Recall@20 | NDCG@10 vs implicit | Recall@20 vs implicit | top-20 overlap with implicit | fit+retrieve s | time vs implicit | time vs implicit+prep |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| implicit CosineRecommender (K={K}) | {ref[0]:.4f} | {ref[2]:.4f} | {ref[1]:.4f} | 1.000 | 1.000 | 1.000 | "
        f"{spread(t_imp)} (+prep: {spread(imp_total)}) | 1.00x | 1.00x |",
    ]
    for name in models:
        nd, r20, r10 = metrics[name]
        ov = f"{overlap[name]:.3f}" if name in overlap else "-"
        lines.append(
            f"| {name} | {nd:.4f} | {r10:.4f} | {r20:.4f} | {nd / ref[0]:.3f} | {r20 / ref[1]:.3f} | {ov} | "
            f"{spread(times[name])} | {med(times[name]) / med(t_imp):.2f}x | {med(times[name]) / med(imp_total):.2f}x |"
        )
    matched = f"ItemCF (ours, K={K - 1}, no popular fill)"

    def verdict(name: str) -> str:
        nd, r20, _ = metrics[name]
        ok_q = abs(nd / ref[0] - 1) <= 0.01 and abs(r20 / ref[1] - 1) <= 0.01
        ratio = med(times[name]) / med(t_imp)
        ratio_p = med(times[name]) / med(imp_total)
        speed = "met" if ratio <= 1.0 else ("met only counting implicit's matrix building" if ratio_p <= 1.0 else "NOT met")
        return (f"- `{name}`: NDCG@10 {nd / ref[0] - 1:+.2%}, Recall@20 {r20 / ref[1] - 1:+.2%} "
                f"(within 1%: {'met' if ok_q else 'NOT met'}); time {ratio:.2f}x implicit's "
                f"fit+recommend, {ratio_p:.2f}x with its matrix building (<= 1.0x: {speed}).")

    lines += [
        "",
        "## Verdict",
        "",
        "Targets: NDCG@10 and Recall@20 within 1% relative of implicit, fit+retrieve time <= 1.0x.",
        "",
        verdict(matched) + " Same neighbour count as implicit's K=" + str(K) + " (item + "
        + str(K - 1) + " neighbours): the lists are the same up to ties.",
        verdict(ours_main) + " Literally the same K: our K=" + str(K) + " keeps " + str(K)
        + " real neighbours, one more than implicit, and scores slightly higher.",
        "",
        "Timings on this shared 2-CPU machine move by +-20% between runs (see min-max); both "
        "libraries run multi-threaded (OpenBLAS / OpenMP) and were timed in the same loop.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


def _implicit_matrix(fit_data, users: list[str]) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Binary user-item CSR (users x catalog items) plus the row index of each evaluated user."""
    inter = fit_data.interactions
    ucodes, uniq = pd.factorize(inter["user_id"])
    item_index = pd.Index(fit_data.items["item_id"])
    icodes = item_index.get_indexer(inter["item_id"])
    R = sp.csr_matrix((np.ones(len(inter), np.float32), (ucodes, icodes)), shape=(len(uniq), len(item_index)))
    R.sum_duplicates()
    R.data[:] = 1.0
    uidx = pd.Index(uniq).get_indexer(users)
    return R, uidx, item_index.to_numpy()


if __name__ == "__main__":
    main()
