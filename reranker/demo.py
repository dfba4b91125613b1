"""The demo: a generated shop, ItemCF candidates, SmolLM2 + BERT reranking, fusion, explanations,
and traditional-vs-hybrid on held-out purchases (the seed paper's Table II layout).

Library logic only; `reranker demo` prints what `run_demo` returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class UserShowcase:
    user_id: str
    recent: list[str]  # titles, most recent last
    recommendations: list[dict[str, Any]]  # rank, title, category, score, explanation


@dataclass
class DemoResult:
    world: str
    showcases: list[UserShowcase]
    table: list[dict[str, Any]]  # one row per system
    n_eval_users: int
    timings: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


def _metrics_row(name: str, rankings: dict[str, list[str]], targets: dict[str, str], world: Any,
                 categories: dict[str, Any], k: int, seed: int) -> dict[str, Any]:
    from .evaluation import metrics as M

    users = list(rankings)
    ranked = [rankings[u][:k] for u in users]
    rel = [{targets[u]} for u in users]
    h = M.hits_matrix(ranked, rel, k)
    ctr = world.ctr({u: rankings[u][:k] for u in users}, seed=seed)
    return {
        "system": name,
        f"Precision@{k}": float(np.nanmean(M.precision(h))),
        f"Recall@{k}": float(np.nanmean(M.recall(h))),
        f"F1@{k}": float(np.nanmean(M.f1(h))),
        f"NDCG@{k}": float(np.nanmean(M.ndcg(h))),
        "CTR (simulated)": float(np.nanmean(ctr)),
        "Diversity": float(np.nanmean(M.intra_list_diversity(ranked, categories, k))),
    }


def run_demo(
    config_path: str | Path | None = None,
    *,
    seed: int = 0,
    n_users: int = 500,
    n_items: int = 400,
    eval_users: int = 50,
    show_users: int = 3,
    explain: bool = True,
    llm_backend: Any | None = None,
    explain_mode: str | None = None,
) -> DemoResult:
    """Generate the world, fit the pipeline, showcase `show_users` users and compare ItemCF with
    the hybrid ranking on the held-out last purchase of `eval_users` users (leave-one-out).
    `explain_mode` (llm | template) overrides the config's `explain.mode`."""
    from tqdm.auto import tqdm

    from .data.splits import leave_one_out
    from .data.synthetic import generate_world
    from .pipeline import Pipeline, PipelineConfig
    from .ranking.base import IdentityRanker

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    world = generate_world(seed=seed, n_users=n_users, n_items=n_items)
    ds = world.dataset
    split = leave_one_out(ds)
    fit_data = split.train_valid()  # the test purchase stays hidden
    timings["generate"] = time.perf_counter() - t0

    cfg = PipelineConfig.from_yaml(config_path) if config_path else PipelineConfig()
    t = time.perf_counter()
    pipe = Pipeline(cfg, llm_backend=llm_backend).fit(fit_data)
    timings["fit"] = time.perf_counter() - t

    rng = np.random.default_rng(seed)
    users = sorted(rng.choice(split.users, size=min(eval_users, len(split.users)), replace=False).tolist())
    targets = split.targets("test")
    hist = split.histories("test", cap=cfg.history_cap)
    k = 10
    t = time.perf_counter()
    cands = pipe.retriever.retrieve_batch({u: hist[u] for u in users}, cfg.ranking.n_candidates)
    trad, hybrid = {}, {}
    ident = IdentityRanker()
    for u in tqdm(users, desc="demo: reranking held-out users"):
        trad[u] = ident.rank(hist[u], cands[u]).item_ids
        hybrid[u] = pipe.rank(hist[u], cands[u]).item_ids
    timings["evaluate"] = time.perf_counter() - t
    categories = dict(zip(ds.items["item_id"], ds.items["category"], strict=True))
    table = [
        _metrics_row("Traditional (ItemCF)", trad, targets, world, categories, k, seed),
        _metrics_row("Hybrid (ItemCF + BERT + LLM, fused)", hybrid, targets, world, categories, k, seed),
    ]

    t = time.perf_counter()
    showcases = []
    titles = dict(zip(ds.items["item_id"], ds.items["title"], strict=True))
    for u in users[:show_users]:
        mode = explain_mode or cfg.explain.mode
        r = pipe.recommend(hist[u], k=5, explain=explain and (pipe.llm is not None or mode == "template"),
                           explain_mode=mode)
        showcases.append(UserShowcase(
            user_id=u,
            recent=[titles[i] for i in hist[u].items[-5:]],
            recommendations=[
                {"rank": it.rank, "item_id": it.item_id, "title": titles[it.item_id],
                 "category": categories[it.item_id], "score": it.score, "explanation": it.explanation}
                for it in r
            ],
        ))
    timings["showcase"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return DemoResult(world=repr(world), showcases=showcases, table=table, n_eval_users=len(users),
                      timings=timings, weights=dict(pipe.weights))


def format_demo(res: DemoResult) -> str:
    """Plain-text rendering of a DemoResult."""
    lines = [f"World: {res.world}", ""]
    for s in res.showcases:
        lines.append(f"User {s.user_id}: recent purchases")
        lines += [f"    - {t}" for t in s.recent]
        lines.append("  Top-5 recommendations")
        for r in s.recommendations:
            lines.append(f"    {r['rank']}. {r['title']} [{r['category']}]  score {r['score']:.3f}")
            if r["explanation"]:
                lines.append(f"       why: {r['explanation']}")
        lines.append("")
    cols = list(res.table[0].keys())
    lines.append(f"Held-out last purchase of {res.n_eval_users} users (leave-one-out; ItemCF top-20 "
                 f"candidates; fusion weights {res.weights}):")
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in res.table:
        lines.append("| " + " | ".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in cols) + " |")
    lines.append("")
    lines.append("Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res.timings.items()))
    return "\n".join(lines)
