"""The PNG plots of a report (matplotlib, imported lazily with the Agg backend).

Used by :mod:`reranker.evaluation.report`, which re-exports ``make_plots``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["make_plots", "TRADITIONAL", "LLM_BASED"]

TRADITIONAL = {"identity", "random", "pop", "itemcf", "usercf"}
LLM_BASED = {"llm-pointwise", "llm-listwise", "llm-verbalizer", "fusion", "learned-fusion"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def make_plots(res: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the PNG plots that apply to these results; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    if res.get("protocol", {}).get("regime") == "rating":
        p = _plot_mae(res, out)
        return [p] if p else []
    runs = [r for r in res.get("runs", []) if r.get("rankers")]
    if not runs:
        return made
    # the first seed; regime C with cold users: each of its blocks (history cuts), files suffixed
    first = [r for r in runs if r.get("seed") == runs[0].get("seed")]
    blocks = first if len(first) > 1 and all(r.get("block") for r in first) else runs[:1]
    for run in blocks:
        suffix = "-" + "".join(ch if ch.isalnum() else "-" for ch in run["block"]) if len(blocks) > 1 else ""
        for fn in (_plot_ndcg, _plot_pr, _plot_heatmap, _plot_bias):
            try:
                p = fn(run, out)
                if p and suffix:
                    p = p.replace(p.with_name(f"{p.stem}{suffix}{p.suffix}"))
            except Exception:  # one broken plot must not stop the others
                log.exception("plot %s failed", fn.__name__)
                p = None
            if p:
                made.append(p)
    return made


def _plot_ndcg(run: Mapping[str, Any], out: Path) -> Path | None:
    rankers = {n: e for n, e in run["rankers"].items() if (e.get("summary", {}).get("ndcg@10") or {}).get("mean") is not None}
    if not rankers:
        return None
    plt = _plt()
    names = list(rankers)
    means = [rankers[n]["summary"]["ndcg@10"]["mean"] for n in names]
    lo = [m - (rankers[n]["summary"]["ndcg@10"]["ci_lo"] or m) for n, m in zip(names, means, strict=True)]
    hi = [(rankers[n]["summary"]["ndcg@10"]["ci_hi"] or m) - m for n, m in zip(names, means, strict=True)]
    colors = ["tab:blue" if rankers[n].get("type") in TRADITIONAL else "tab:orange" for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 4))
    ax.bar(range(len(names)), means, yerr=[lo, hi], capsize=4, color=colors)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("NDCG@10 (95% CI)")
    ax.set_title("NDCG@10 per ranker (blue: traditional, orange: LLM-based)")
    fig.tight_layout()
    p = out / "ndcg10.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def _plot_pr(run: Mapping[str, Any], out: Path) -> Path | None:
    rankers = {n: e for n, e in run["rankers"].items() if e.get("pr_curve")}
    if not rankers:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for n, e in rankers.items():
        c = e["pr_curve"]
        style = "-" if e.get("type") in TRADITIONAL else "--"
        ax.plot(c["recall"], c["precision"], style, marker=".", label=f"{n} ({'trad.' if style == '-' else 'LLM'})")
    ax.set_xlabel("Recall@K")
    ax.set_ylabel("Precision@K")
    ax.set_title("Precision-recall over K = 1..20")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "pr_curve.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def _plot_heatmap(run: Mapping[str, Any], out: Path) -> Path | None:
    import numpy as np

    rankers = run["rankers"]
    metrics: list[str] = []
    for e in rankers.values():
        for m in e.get("summary", {}):
            if m not in metrics:
                metrics.append(m)
    if not rankers or not metrics:
        return None
    plt = _plt()
    names = list(rankers)
    mat = np.array(
        [[(rankers[n].get("summary", {}).get(m) or {}).get("mean") or np.nan for m in metrics] for n in names],
        dtype=np.float64,
    )
    fig, ax = plt.subplots(figsize=(1.2 * len(metrics) + 3, 0.5 * len(names) + 1.5))
    im = ax.imshow(mat, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(metrics)), metrics, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(metrics)):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.3f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax)
    ax.set_title("Metrics per ranker")
    fig.tight_layout()
    p = out / "heatmap.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def _plot_bias(run: Mapping[str, Any], out: Path) -> Path | None:
    pb = run.get("position_bias")
    if not pb or not pb.get("rankers"):
        return None
    plt = _plt()
    pos = [str(p) for p in pb["positions"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, r in pb["rankers"].items():
        for variant in ("plain", "bootstrap"):
            if variant in r:
                style = "-" if variant == "plain" else ":"
                ax.plot([int(p) for p in pos], [r[variant][p]["hr@1"] for p in pos], style, marker="o",
                        label=n if variant == "plain" else f"{n} (bootstrap)")
    ax.set_xlabel("position of the target in the candidate list (0 = first)")
    ax.set_ylabel("HR@1")
    ax.set_title(f"Position bias ({pb['users']} users)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "position_bias.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def _plot_mae(res: Mapping[str, Any], out: Path) -> Path | None:
    runs = [r for r in res.get("runs", []) if r.get("models")]
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, m in runs[0]["models"].items():
        ks = [c["k"] for c in m["by_k"]]
        ax.plot(ks, [c["mae"] for c in m["by_k"]], marker="o", label=n)
    ax.set_xlabel("K (neighbours)")
    ax.set_ylabel("MAE")
    ax.set_title("Rating prediction: MAE vs K")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "mae_vs_k.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p
