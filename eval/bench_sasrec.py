"""Benchmark: SASRec (`reranker.retrieval.sasrec`) on ml-100k, full-catalogue ranking.

Protocol (the one of eval/bench_stage1.py, with a longer model input): chronological
leave-one-out (ties in time broken by the dataset's tie order). The model input of each
evaluated user is their last 50 items (``split.histories(stage, cap=50)``, = max_len); the
model ranks the full catalogue with every seen item excluded (the whole training row); NDCG@10,
HR@10 and Recall@20/50/100 against the single held-out item, mean over users.

- ``--stage validation``: fit on ``split.train``, targets ``split.targets('validation')``;
  one training run per hidden size, evaluated every ``--every`` epochs through
  ``fit(on_epoch=...)`` (scoring consumes no random state, so the epoch-E numbers are those
  of a model trained for E epochs). This is where epochs / hidden are chosen.
- ``--stage test``: fit on ``split.train_valid()`` with the given config (default: the
  library's defaults), targets ``split.targets('test')``; reports fit time.

    .venv/bin/python eval/bench_sasrec.py --stage validation --hidden 32,64 --epochs 200 --every 10
    .venv/bin/python eval/bench_sasrec.py --stage test [--hidden 64 --epochs 200]

Prints a markdown block (and writes it to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import ML100K, machine  # noqa: E402

KS = ("ndcg@10", "hr@10", "recall@20", "recall@50", "recall@100")


def evaluate(model: Any, histories: list[Any], truth: list[str]) -> dict[str, float]:
    from reranker.evaluation.metrics import ranking_metrics

    batch = model.retrieve_arrays(histories, 100, exclude_seen=True)
    ids = [batch.row_ids(r).tolist() for r in range(len(histories))]
    m = ranking_metrics(ids, truth, ks=(10, 20, 50, 100), metrics=("ndcg", "hr", "recall"))
    return {k: float(np.nanmean(m[k])) for k in KS}


def row(label: str, v: dict[str, float], extra: str = "") -> str:
    return f"| {label} | " + " | ".join(f"{v[k]:.4f}" for k in KS) + f" |{extra}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ML100K))
    ap.add_argument("--stage", choices=("validation", "test"), default="test")
    ap.add_argument("--hidden", default=None, help="comma-separated hidden sizes (validation) or one (test)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--every", type=int, default=10, help="validation: evaluate every this many epochs")
    ap.add_argument("--cap", default="50",
                    help="history items given to the model; test: comma-separated caps, one fit")
    ap.add_argument("--set", action="append", default=[], help="other config fields, key=value (repeatable)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from reranker.data import leave_one_out, load
    from reranker.retrieval.sasrec import SASRec, SASRecConfig

    extra: dict[str, Any] = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        extra[k] = SASRecConfig.model_fields[k].annotation(v) if k != "device" else v  # type: ignore[misc]
    hdr = machine()
    ds = load(args.data, format="recbole")
    split = leave_one_out(ds)
    caps = [int(c) for c in args.cap.split(",")]
    targets = split.targets(args.stage)
    users = sorted(targets)
    by_cap = {c: split.histories(args.stage, cap=c) for c in caps}
    H = [by_cap[caps[0]][u] for u in users]
    truth = [targets[u] for u in users]
    fit_data = split.fit_data(args.stage)
    lines = [f"- Machine: {hdr}; torch {torch.__version__} ({'CPU' if not torch.cuda.is_available() else 'CUDA'}).",
             f"- Stage: {args.stage}; fit on {fit_data.n_interactions} interactions; {len(users)} users; "
             f"model input = last {args.cap} items; {ds.tie_order.describe()}.", ""]
    if args.stage == "validation":
        sizes = [int(x) for x in (args.hidden or "64").split(",")]
        lines += ["| hidden / epoch | " + " | ".join(KS) + " | s so far |",
                  "|---|" + "---|" * (len(KS) + 1)]
        for hidden in sizes:
            cfg = SASRecConfig(hidden=hidden, epochs=args.epochs or 200, **extra)
            t0 = time.perf_counter()

            def on_epoch(epoch: int, model: Any, hidden: int = hidden, t0: float = t0) -> None:
                if epoch % args.every and epoch != model.config.epochs:
                    return
                v = evaluate(model, H, truth)
                line = row(f"{hidden} / {epoch}", v, f" {time.perf_counter() - t0:.0f} |")
                lines.append(line)
                print(line, f"loss {model.losses_[-1]:.4f}", file=sys.stderr, flush=True)

            SASRec(cfg).fit(fit_data, on_epoch=on_epoch)
    else:
        kw = dict(extra)
        if args.hidden:
            kw["hidden"] = int(args.hidden)
        if args.epochs:
            kw["epochs"] = args.epochs
        cfg = SASRecConfig(**kw)
        t0 = time.perf_counter()
        model = SASRec(cfg).fit(fit_data)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        v = evaluate(model, H, truth)
        t_ret = time.perf_counter() - t0
        more = {c: evaluate(model, [by_cap[c][u] for u in users], truth) for c in caps[1:]}
        cfg_txt = ", ".join(f"{k}={v!r}" for k, v in cfg.model_dump().items() if k != "type")
        lines += [f"- Config: {cfg_txt}.",
                  f"- Fit {t_fit:.1f} s ({t_fit / cfg.epochs:.2f} s/epoch, final loss {model.losses_[-1]:.4f}); "
                  f"retrieve_arrays of {len(users)} users at n=100: {t_ret:.2f} s.", "",
                  "| model | " + " | ".join(KS) + " |", "|---|" + "---|" * len(KS),
                  row(f"SASRec (hidden {cfg.hidden}, {cfg.epochs} epochs), input cap {caps[0]}", v)]
        lines += [row(f"same model, input cap {c}", mv) for c, mv in more.items()]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
