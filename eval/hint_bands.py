"""Where the target and the negatives fall in the CF hint's bands, in the fine-tuning examples
of a config with `cf_hint` (issue 18, item 3): is the hint predictive in the training lists?

    python eval/hint_bands.py configs/finetune-ml100k-cf-hint.yaml [--cf-fraction 0]

Builds the examples exactly as `reranker finetune` does (training split only, the config's
`examples` block and seed; no model is loaded) and prints, per band of the list's stage-1 score
range (`reranker.ranking.hints`), the share of the targets and of the negatives in it.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from reranker.data.splits import leave_one_out
from reranker.ranking.hints import BANDS, stage1_hints
from reranker.training.examples import build_examples
from reranker.training.trainer import load_config, load_dataset
from reranker.types import Candidate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--cf-fraction", type=float, default=None,
                    help="override examples.cf_fraction (0: every negative drawn at random, as in regime B)")
    args = ap.parse_args()
    cfg, dirs = load_config(args.config)
    if args.cf_fraction is not None:
        cfg = cfg.model_copy(update={"examples": cfg.examples.model_copy(update={"cf_fraction": args.cf_fraction})})
    split = leave_one_out(load_dataset(cfg, dirs), min_interactions=cfg.data.min_interactions)
    examples = build_examples(split, cfg.examples, seed=cfg.seed)
    target: Counter[str] = Counter()
    negative: Counter[str] = Counter()
    flat = 0
    for e in examples:
        hints = stage1_hints([Candidate(i, s) for i, s in zip(e.candidates, e.scores, strict=True)])
        if hints is None:
            flat += 1
            continue
        for item, h in zip(e.candidates, hints, strict=True):
            (target if item == e.target else negative)[h.band] += 1
    nt, nn = sum(target.values()), sum(negative.values())
    print(f"{len(examples)} examples ({flat} with all scores equal: no hint); "
          f"config {args.config.name}, cf_fraction {cfg.examples.cf_fraction}\n")
    print("| band | targets | negatives |")
    print("|---|---|---|")
    for b in reversed(BANDS):
        print(f"| {b} | {target[b] / nt:.1%} ({target[b]}) | {negative[b] / nn:.1%} ({negative[b]}) |")


if __name__ == "__main__":
    main()
