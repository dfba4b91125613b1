"""How accuracy and diversity trade as the MMR lambda moves.

Protocol (regime-A style): chronological leave-one-out, fit `ItemCF(k=20, feedback="implicit")`
on train + validation, top-20 unseen candidates for every evaluated user (histories capped at
20, as the harness does), then `mmr_rerank` of those 20 with lambda in --lams and the top 10
scored. lambda = 1 is the ItemCF order itself (MMR keeps the input order); lambda = 0 takes the
top item, then always the item least similar to those already chosen.

MMR item similarity, two sources: categories (ml-100k: Jaccard overlap of the genre sets; demo
world: same category) and MiniLM text embeddings (cosine, `ItemEncoder`, disk-cached).

Measured on the top 10: NDCG@10 and Recall@10 against the held-out test item (95% bootstrap
CIs over users, and the paired difference to lambda = 1), intra-list diversity from categories
(ml-100k: mean pairwise 1 - genre Jaccard, and the primary-genre version of
`metrics.intra_list_diversity`), from embeddings (`metrics.embedding_diversity`: mean pairwise
1 - cosine) and item coverage@10 (share of the catalog in some top-10). On the generated demo
world, also the simulated CTR@10 and the mean true affinity (z) of the shown items, which
measure accuracy against the known tastes rather than one held-out purchase.

    .venv/bin/python eval/diversity_sweep.py [--data ../shared/data/ml-100k] [--no-world]

Writes eval/results/diversity.md and diversity.png.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ML100K, ROOT, machine  # noqa: E402

LAMS = (0.0, 0.25, 0.5, 0.75, 1.0)


def sweep(ds, category_sim, cat_single, encoder, lams, world=None, label=""):
    """Rows of metrics for every (similarity source, lambda) on one dataset."""
    from reranker.data import leave_one_out
    from reranker.evaluation.metrics import (
        embedding_diversity,
        intra_list_diversity,
        item_coverage,
        paired_difference_ci,
        ranking_metrics,
        summarize,
    )
    from reranker.evaluation.protocol import regime_a_lists
    from reranker.ranking.diversity import cosine_matrix, intra_list_similarity, mmr_rerank
    from reranker.retrieval import ItemCF
    from reranker.types import Ranking

    split = leave_one_out(ds)
    fit_data = split.train_valid()
    targets = split.targets("test")
    users = sorted(targets)
    retr = ItemCF(k=20, feedback="implicit").fit(fit_data)
    lists = regime_a_lists(retr, split.histories("test", cap=20), users, 20)
    ids_all, emb_all = encoder.encode_catalog()
    pos = {i: j for j, i in enumerate(ids_all)}
    truth = [targets[u] for u in users]
    recall20 = float(np.mean([t in {c.item_id for c in lists[u]} for u, t in zip(users, truth, strict=True)]))

    sims = {
        "categories": {u: category_sim([c.item_id for c in lists[u]]) for u in users},
        "embeddings": {
            u: cosine_matrix(emb_all[[pos[c.item_id] for c in lists[u]]]) for u in users
        },
    }
    rows = []
    base_per_user = None
    for source, sim_of in sims.items():
        for lam in lams:
            t0 = time.perf_counter()
            tops = []
            for u in users:
                r = Ranking.from_scores([c.item_id for c in lists[u]], [c.score for c in lists[u]])
                tops.append(mmr_rerank(r, sim_of[u], lam).item_ids[:10])
            t_mmr = (time.perf_counter() - t0) / len(users)
            m = ranking_metrics(tops, truth, ks=(10,), metrics=("ndcg", "recall"))
            cat_sim_div = np.array(
                [1.0 - intra_list_similarity(category_sim(t)) for t in tops]
            )
            per_user = {
                "ndcg@10": m["ndcg@10"],
                "recall@10": m["recall@10"],
                "ild_cat": cat_sim_div,
                "ild_primary": intra_list_diversity(tops, cat_single, 10),
                "ild_emb": embedding_diversity(tops, emb_all, ids_all, 10),
            }
            if world is not None:
                per_user["ctr@10"] = world.ctr(dict(zip(users, tops, strict=True)), seed=0, k=10)
                per_user["affinity_z"] = np.array(
                    [world.affinity_z(u, t).mean() for u, t in zip(users, tops, strict=True)]
                )
            s = summarize(per_user, n_boot=1000, seed=0)
            row = {"data": label, "source": source, "lam": lam, "users": len(users),
                   "coverage@10": item_coverage(tops, len(ids_all), 10), "mmr_ms": 1000 * t_mmr,
                   "recall@20 (candidates)": recall20}
            for k in per_user:
                row[k] = s.loc[k, "mean"]
                row[k + "_lo"] = s.loc[k, "ci_lo"]
                row[k + "_hi"] = s.loc[k, "ci_hi"]
            if lam == 1.0 and base_per_user is None:
                base_per_user = per_user
            row["_per_user"] = per_user
            rows.append(row)
    # paired differences to lambda = 1 (identical for both sources at lambda = 1)
    for row in rows:
        base = next(r for r in rows if r["lam"] == 1.0 and r["source"] == row["source"])["_per_user"]
        d, lo, hi = paired_difference_ci(row["_per_user"]["ndcg@10"], base["ndcg@10"], seed=0)
        row["d_ndcg"], row["d_ndcg_lo"], row["d_ndcg_hi"] = d, lo, hi
        del row["_per_user"]
    return pd.DataFrame(rows), len(users), fit_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ML100K))
    ap.add_argument("--lams", type=float, nargs="+", default=list(LAMS))
    ap.add_argument("--no-world", action="store_true", help="skip the generated demo world")
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "diversity.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from reranker.data import load
    from reranker.ranking.bert import ItemEncoder
    from reranker.ranking.diversity import CategorySimilarity
    from reranker.types import Item

    hdr = machine()
    t0 = time.perf_counter()
    ds = load(args.data, format="recbole")
    # MMR categories on ml-100k: the genre set ("Animation|Children's|Comedy"), Jaccard overlap
    genres = {str(r.item_id): str(r.genres) for r in ds.items.itertuples()}
    genre_items = {i: Item(item_id=i, title="", category=g) for i, g in genres.items()}
    primary = {str(r.item_id): r.category for r in ds.items.itertuples()}
    enc = ItemEncoder(ds, disk_cache=True)
    ml, n_ml, _ = sweep(ds, CategorySimilarity(genre_items, sep="|"), primary, enc, args.lams, label="ml-100k")
    t_ml = time.perf_counter() - t0
    frames = [ml]
    world_info = None
    if not args.no_world:
        from reranker.data.synthetic import generate_world

        t0 = time.perf_counter()
        world = generate_world(seed=0)
        wds = world.dataset
        cats = {str(r.item_id): r.category for r in wds.items.itertuples()}
        wenc = ItemEncoder(wds, disk_cache=True)
        wdf, n_w, _ = sweep(wds, CategorySimilarity(wds), cats, wenc, args.lams, world=world, label="demo world")
        frames.append(wdf)
        world_info = (wds.describe(), n_w, time.perf_counter() - t0)
    df = pd.concat(frames, ignore_index=True)
    write_report(df, args, hdr, n_ml, t_ml, world_info)


def _ci(row, k, digits=4):
    return f"{row[k]:.{digits}f} [{row[k + '_lo']:.{digits}f}, {row[k + '_hi']:.{digits}f}]"


def write_report(df, args, hdr, n_ml, t_ml, world_info) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Diversity vs accuracy: MMR lambda sweep",
        "",
        f"Produced by `eval/diversity_sweep.py` (lambdas {', '.join(f'{x:g}' for x in args.lams)}).",
        "",
        f"- Machine: {hdr}.",
        "- Protocol (regime-A style): chronological leave-one-out, `ItemCF(k=20, feedback='implicit')` "
        "fit on train + validation, top-20 unseen candidates per evaluated user (histories capped at "
        "20), `mmr_rerank(ranking, similarity, lambda)` over the 20, top 10 scored. "
        "lambda = 1 is the ItemCF order (MMR returns the input order).",
        "- MMR similarity: **categories** (ml-100k: Jaccard overlap of genre sets; demo world: same "
        "category = 1) or **embeddings** (cosine of all-MiniLM-L6-v2 item embeddings via "
        "`ItemEncoder`; ml-100k item text is only title, genres and year).",
        "- Metrics on the top 10: NDCG@10 / Recall@10 vs the held-out test item, with 95% bootstrap "
        "CIs over users; dNDCG = paired difference to lambda = 1 [95% CI]. ILD = intra-list "
        "diversity, mean pairwise dissimilarity: `ILD genres` = 1 - genre Jaccard (ml-100k) or "
        "different category (world), `ILD primary` = `metrics.intra_list_diversity` on the single "
        "primary category, `ILD emb` = `metrics.embedding_diversity` (1 - cosine). Coverage = "
        "share of the catalog in at least one top 10. MMR time = per user, 20 candidates.",
        f"- ml-100k: {n_ml} evaluated users; sweep wall time {t_ml:.0f} s (embeddings from the disk "
        "cache when warm).",
    ]
    if world_info is not None:
        desc, n_w, t_w = world_info
        lines.append(
            f"- Demo world (`generate_world(seed=0)`): {desc['users']} users, {desc['items']} items, "
            f"{desc['interactions']} purchases, {desc.get('categories', '?')} categories; {n_w} "
            f"evaluated users; CTR@10 = simulated clicks on the top 10 (`World.ctr`, seed 0), "
            f"affinity z = mean true standardised affinity of the shown items; {t_w:.0f} s."
        )
    for label in df["data"].unique():
        sub = df[df["data"] == label]
        world = "ctr@10" in sub.columns and sub["ctr@10"].notna().any()
        lines += ["", f"## {label} (candidate Recall@20 = {sub['recall@20 (candidates)'].iloc[0]:.4f}: "
                  "the ceiling of Recall@10 after any re-rank)", ""]
        head = ["MMR similarity", "lambda", "NDCG@10", "dNDCG vs lambda=1", "Recall@10", "ILD genres" if label == "ml-100k" else "ILD category",
                "ILD primary", "ILD emb", "coverage@10"]
        if world:
            head += ["CTR@10", "affinity z"]
        head += ["MMR ms/user"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in sub.iterrows():
            cells = [r["source"], f"{r['lam']:g}", _ci(r, "ndcg@10"),
                     f"{r['d_ndcg']:+.4f} [{r['d_ndcg_lo']:+.4f}, {r['d_ndcg_hi']:+.4f}]",
                     _ci(r, "recall@10"), f"{r['ild_cat']:.3f}", f"{r['ild_primary']:.3f}", f"{r['ild_emb']:.3f}",
                     f"{r['coverage@10']:.3f}"]
            if world:
                cells += [_ci(r, "ctr@10"), f"{r['affinity_z']:.3f}"]
            cells += [f"{r['mmr_ms']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Reading", ""]
    for label in df["data"].unique():
        sub = df[df["data"] == label]
        for source in ("categories", "embeddings"):
            s = sub[sub["source"] == source].set_index("lam")
            if 1.0 not in s.index or 0.0 not in s.index:
                continue
            b, z = s.loc[1.0], s.loc[0.0]
            mid = s.loc[0.5] if 0.5 in s.index else None
            txt = (
                f"- {label}, {source}: from lambda 1 to 0, NDCG@10 {b['ndcg@10']:.4f} -> {z['ndcg@10']:.4f} "
                f"({(z['ndcg@10'] / b['ndcg@10'] - 1) * 100:+.1f}%), ILD genres/category {b['ild_cat']:.3f} -> "
                f"{z['ild_cat']:.3f}, ILD emb {b['ild_emb']:.3f} -> {z['ild_emb']:.3f}, coverage "
                f"{b['coverage@10']:.3f} -> {z['coverage@10']:.3f}"
            )
            if mid is not None:
                txt += (f"; at lambda 0.5: NDCG@10 {mid['ndcg@10']:.4f} (dNDCG {mid['d_ndcg']:+.4f} "
                        f"[{mid['d_ndcg_lo']:+.4f}, {mid['d_ndcg_hi']:+.4f}]), ILD genres/category {mid['ild_cat']:.3f}, "
                        f"ILD emb {mid['ild_emb']:.3f}")
            lines.append(txt + ".")
    lines += [
        "",
        "Notes:",
        "",
        "- MMR re-orders the 20 candidates only, so Recall@20 and the candidate set are the same for "
        "every lambda; lambda moves items between positions 1-10 and 11-20.",
        "- With a 0/1 similarity (demo world: same category) every lambda <= 0.5 gives the same "
        "lists: relevance is min-max normalised to [0, 1], so the penalty (1 - lambda) for "
        "repeating a category always outweighs the largest possible relevance gain lambda; MMR "
        "then cycles through categories in relevance order. Genre Jaccard (ml-100k) and "
        "embedding cosines are graded, so there every lambda gives different lists.",
        "- ILD columns measure the diversity of the top 10 under both similarities whichever one "
        "MMR used, so each source can be read against the other's yardstick.",
    ]
    png = out.with_suffix(".png")
    lines += ["", f"![accuracy vs diversity]({png.name})", ""]
    out.write_text("\n".join(lines))

    labels = list(df["data"].unique())
    fig, axes = plt.subplots(1, len(labels), figsize=(6 * len(labels), 4.4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        sub = df[df["data"] == label]
        for source, marker in (("categories", "o"), ("embeddings", "s")):
            s = sub[sub["source"] == source].sort_values("lam")
            for div, ls in (("ild_cat", "-"), ("ild_emb", "--")):
                ax.plot(s[div], s["ndcg@10"], marker=marker, linestyle=ls,
                        label=f"MMR by {source}: x = {'ILD category' if div == 'ild_cat' else 'ILD emb'}")
                for _, r in s.iterrows():
                    ax.annotate(f"{r['lam']:g}", (r[div], r["ndcg@10"]), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("intra-list diversity of the top 10")
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{label}: ItemCF top-20 + MMR (labels = lambda)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(out.read_text())


if __name__ == "__main__":
    main()
