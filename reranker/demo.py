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
    signal_seconds: dict[str, float] = field(default_factory=dict)  # evaluate's time per fusion signal


def _metrics_row(name: str, rankings: dict[str, list[str]], targets: dict[str, str], world: Any,
                 categories: dict[str, Any], k: int, seed: int) -> dict[str, Any]:
    from .evaluation import metrics as M

    users = list(rankings)
    ranked = [rankings[u][:k] for u in users]
    rel = [{targets[u]} for u in users]
    h = M.hits_matrix(ranked, rel, k)
    recall = M.recall(h)
    ctr = world.ctr({u: rankings[u][:k] for u in users}, seed=seed)
    return {
        "system": name,
        f"Precision@{k}": float(np.nanmean(M.precision(h))),
        f"Recall@{k}": float(np.nanmean(recall)),
        f"F1@{k}": float(np.nanmean(M.f1(h))),
        f"NDCG@{k}": float(np.nanmean(M.ndcg(h))),
        f"hits@{k}": f"{int(np.nansum(recall))}/{len(users)}",  # the counts behind the means
        "CTR (simulated)": float(np.nanmean(ctr)),
        "Diversity": float(np.nanmean(M.intra_list_diversity(ranked, categories, k))),
    }


def run_demo(
    config_path: str | Path | None = None,
    *,
    seed: int = 0,
    n_users: int = 500,
    n_items: int = 400,
    eval_users: int = 20,
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
    t = time.perf_counter()
    _load_models(pipe)  # loaded here, so the timings below are the models' work only
    timings["load models"] = time.perf_counter() - t

    rng = np.random.default_rng(seed)
    users = sorted(rng.choice(split.users, size=min(eval_users, len(split.users)), replace=False).tolist())
    targets = split.targets("test")
    hist = split.histories("test", cap=cfg.history_cap)
    k = 10
    t = time.perf_counter()
    cands = pipe.retriever.retrieve_batch({u: hist[u] for u in users}, cfg.ranking.n_candidates)
    trad, hybrid = {}, {}
    ident = IdentityRanker()
    signal_seconds: dict[str, float] = {}
    for u in tqdm(users, desc="demo: reranking held-out users"):
        trad[u] = ident.rank(hist[u], cands[u]).item_ids
        ranking = pipe.rank(hist[u], cands[u])
        for name, sec in ranking.diagnostics.get("signal_seconds", {}).items():
            signal_seconds[name] = signal_seconds.get(name, 0.0) + sec
        hybrid[u] = ranking
    timings["evaluate"] = time.perf_counter() - t
    categories = dict(zip(ds.items["item_id"], ds.items["category"], strict=True))
    table = [
        _metrics_row("Traditional (ItemCF)", trad, targets, world, categories, k, seed),
        _metrics_row("Hybrid (ItemCF + BERT + LLM, fused)", {u: r.item_ids for u, r in hybrid.items()},
                     targets, world, categories, k, seed),
    ]

    # the showcase users are evaluated users: their rankings are reused, only explained here
    # (all of their explanations in one batch)
    t = time.perf_counter()
    shown = users[:show_users]
    mode = explain_mode or cfg.explain.mode
    tops = [hybrid[u].top_k(5) for u in shown]
    if explain and (pipe.llm is not None or mode == "template"):
        tops = pipe.explain_many([(hist[u], r) for u, r in zip(shown, tops, strict=True)], mode=mode)
    titles = dict(zip(ds.items["item_id"], ds.items["title"], strict=True))
    showcases = [
        UserShowcase(
            user_id=u,
            recent=[titles[i] for i in hist[u].items[-5:]],
            recommendations=[
                {"rank": it.rank, "item_id": it.item_id, "title": titles[it.item_id],
                 "category": categories[it.item_id], "score": it.score, "explanation": it.explanation}
                for it in r
            ],
        )
        for u, r in zip(shown, tops, strict=True)
    ]
    timings["explain"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return DemoResult(world=repr(world), showcases=showcases, table=table, n_eval_users=len(users),
                      timings=timings, weights=dict(pipe.weights), signal_seconds=signal_seconds)


def _load_models(pipe: Any) -> None:
    """Load the pipeline's LLM and BERT encoder now (they load lazily on first use)."""
    if pipe.llm is not None:
        _ = pipe.llm.backend
    if pipe.bert is not None:
        pipe.bert.encoder.model  # noqa: B018  (loads the encoder)


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
    parts = []
    for key, sec in res.timings.items():
        part = f"{key} {sec:.1f}"
        if key == "evaluate" and res.signal_seconds:
            part += " (" + ", ".join(f"{s} {v:.1f}" for s, v in sorted(res.signal_seconds.items(),
                                                                          key=lambda kv: -kv[1])) + ")"
        parts.append(part)
    lines.append("Timings (s): " + ", ".join(parts))
    return "\n".join(lines)
