"""Training curve and summary of a `reranker finetune` run -> PNG + Markdown.

Reads RUN/result.json (written at the end of training: per-step loss, the validation curve,
throughput) and RUN/config.yaml if present, and writes

- OUT/training_curve.png: answer-token loss per step (and its moving average) above the
  validation regime-B NDCG@10 / HR@1 at each validation point;
- OUT/training.md: steps, examples, sequences, wall time, throughput and the validation table.

    .venv/bin/python eval/plot_finetune.py runs/finetune-ml100k eval/results/finetune
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def moving_average(x: np.ndarray, w: int) -> np.ndarray:
    if len(x) < w:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    head = c[1:w] / np.arange(1, w)
    return np.concatenate([head, (c[w:] - c[:-w]) / w])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the fine-tuning output folder (has result.json)")
    ap.add_argument("out", type=Path, help="where to write training_curve.png and training.md")
    ap.add_argument("--window", type=int, default=20, help="moving-average window (steps)")
    args = ap.parse_args()

    res = json.loads((args.run / "result.json").read_text())
    losses = res.get("losses") or []
    val = res.get("validation") or []
    steps = np.array([r["step"] for r in losses])
    loss = np.array([r["loss"] for r in losses], dtype=float)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    if len(steps):
        ax1.plot(steps, loss, color="0.75", lw=0.8, label="loss per step")
        ax1.plot(steps, moving_average(loss, args.window), color="C0", lw=1.8,
                 label=f"moving average ({args.window} steps)")
    ax1.axhline(np.log(2), color="C3", ls="--", lw=0.8)
    ax1.text(0, np.log(2) + 0.05, "ln 2: Yes/No at 50/50 (no discrimination)", fontsize=7, color="C3")
    ax1.set_ylabel("answer-token cross-entropy")
    ax1.legend(loc="upper right")
    ax1.set_title(f"Fine-tuning {args.run.name}: training loss and validation")
    if val:
        vs = [v["step"] for v in val]
        ax2.plot(vs, [v["ndcg@10"] for v in val], "o-", color="C1", label="validation NDCG@10")
        ax2.plot(vs, [v["hr@1"] for v in val], "s--", color="C2", label="validation HR@1")
        best = max(val, key=lambda v: v["ndcg@10"])
        ax2.axvline(best["step"], color="0.6", ls=":", lw=1)
        ax2.annotate(f"best (kept): step {best['step']}", (best["step"], best["ndcg@10"]),
                     textcoords="offset points", xytext=(-60, 10), fontsize=8)
    ax2.axhline(0.2, color="0.5", ls="--", lw=0.8)
    ax2.text(0, 0.205, "random ranking (~0.20)", fontsize=7, color="0.4")
    ax2.set_xlabel("optimizer step")
    ax2.set_ylabel("regime B (1 target + 19 negatives)")
    ax2.legend(loc="center right")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "training_curve.png"
    fig.savefig(png, dpi=120)

    thr = res.get("throughput") or {}
    lines = [
        f"# Fine-tuning run `{args.run}`",
        "",
        f"Produced by `reranker finetune` (config recorded in the run folder), summarised by "
        f"`python eval/plot_finetune.py {args.run} {args.out}`.",
        "",
        f"- optimizer steps: {res.get('steps')}; examples: {res.get('examples')}; sequences: {res.get('sequences')}",
        f"- training time (excluding validation): {thr.get('train_seconds', 0) / 60:.1f} min; "
        f"{thr.get('examples_per_s', 0):.2f} sequences/s, {thr.get('tokens_per_s', 0):.0f} tokens/s",
        f"- data fingerprint: `{res.get('fingerprint')}`; resumed from: {res.get('resumed_from')}",
        f"- loss: first {args.window} steps mean {loss[: args.window].mean():.4f}, last {args.window} steps mean "
        f"{loss[-args.window:].mean():.4f}" if len(loss) else "- loss: none recorded",
        "",
        "## Validation (regime B NDCG@10 on the fixed validation subset: validation targets, training histories)",
        "",
        "| step | NDCG@10 | HR@1 | users | seconds |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {v['step']} | {v['ndcg@10']:.4f} | {v['hr@1']:.4f} | {v.get('users', '')} | {v.get('seconds', 0):.0f} |"
          for v in val],
        "",
        f"Best (kept as `best/`): NDCG@10 {res.get('best_ndcg')}.",
        "",
        "![training curve](training_curve.png)",
        "",
    ]
    (args.out / "training.md").write_text("\n".join(lines))
    print(f"wrote {png} and {args.out / 'training.md'}")


if __name__ == "__main__":
    main()
