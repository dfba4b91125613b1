"""Would micro-batching pointwise requests pay on this CPU? (issue 15)

The service micro-batches listwise requests (their generations share `generate` calls). The
pointwise ranker scores one user in two forwards: the user's prompt prefix (instructions and
history, run once, its KV cache kept) and all 20 candidate suffixes packed into one unpadded
sequence over that prefix (`reranker.llm.packed`). Batching several users would need a
multi-prefix packed forward: the same tokens run in fewer, larger forwards. The FLOPs do not
change; what batching could win is the better GEMM efficiency of larger forwards and less
per-forward overhead. This script measures that bound on real requests (ml-100k, 10 history
items, 20 candidates, the product's pointwise prompts), side by side in one run:

- `per user`: `score_prompts` of each user's 20 prompts, one user after another: what the
  service does today (prefix forward + packed suffix forward per user).
- `prefixes, one by one`: the trunk forward of each user's prompt prefix alone (B forwards).
- `prefixes, one padded batch`: the same B prefixes in one right-padded (B, longest) forward
  with an attention mask: what a batched prefix pass would cost, padding included.
- `equal prefixes, one batch`: B prefixes cut to the shortest one's length, one (B, L) forward
  without padding: the optimistic bound (a perfect varlen kernel, no padding waste), compared
  with the same cut prefixes run one by one.

Rounds are interleaved (each round runs every variant once) and the medians are reported.

    .venv/bin/python eval/bench_pointwise_batching.py [--batches 1,2,4,8] [--rounds 5] [--threads 2]
        [--out eval/results/pointwise-batching.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import ROOT, machine  # noqa: E402
from bench_llm import build_requests  # noqa: E402

from reranker.llm.base import LLMConfig  # noqa: E402
from reranker.llm.hf import load_backend  # noqa: E402
from reranker.llm.hf_scoring import common_prefix_length  # noqa: E402
from reranker.ranking.pointwise import PointwiseLLMRanker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "pointwise-batching.md"))
    args = ap.parse_args()
    batches = [int(x) for x in args.batches.split(",")]
    import torch

    host = machine()
    backend = load_backend(LLMConfig(model=args.model, threads=args.threads))
    catalog, reqs, data_name = build_requests(max(batches), 20, 10, seed=0)
    ranker = PointwiseLLMRanker(backend=backend, catalog=catalog)
    prompts = [ranker.build_prompts(h, c)[0] for h, c in reqs]
    tok = backend.tokenizer
    prefixes: list[list[int]] = []
    suffix_tokens: list[int] = []
    for ps in prompts:
        seqs = [list(x) for x in tok(ps, add_special_tokens=False).input_ids]
        n = common_prefix_length(seqs)
        prefixes.append(seqs[0][:n])
        suffix_tokens.append(sum(len(s) - n for s in seqs))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dec = backend.decoder
    cut = min(len(p) for p in prefixes)

    def forward(rows: list[list[int]]) -> None:
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        with torch.inference_mode():
            dec(input_ids=ids, attention_mask=mask, use_cache=True)

    def clock(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    labels = list(ranker.labels)
    variants = {
        "per user (today)": lambda b: [backend.score_prompts(p, labels) for p in prompts[:b]],
        "prefixes, one by one": lambda b: [forward([p]) for p in prefixes[:b]],
        "prefixes, one padded batch": lambda b: forward(prefixes[:b]),
        "equal prefixes, one by one": lambda b: [forward([p[:cut]]) for p in prefixes[:b]],
        "equal prefixes, one batch": lambda b: forward([p[:cut] for p in prefixes[:b]]),
    }
    for fn in variants.values():  # warm-up (oneDNN compiles kernels per shape)
        fn(max(batches))
    times: dict[tuple[str, int], list[float]] = {}
    load0 = os.getloadavg()
    for _ in range(args.rounds):
        for b in batches:
            for name, fn in variants.items():
                times.setdefault((name, b), []).append(clock(lambda fn=fn, b=b: fn(b)))
    load1 = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}

    lines = [
        "# Pointwise micro-batching: what batching users' forwards could win (issue 15)",
        "",
        f"Produced by `.venv/bin/python eval/bench_pointwise_batching.py --batches {args.batches} "
        f"--rounds {args.rounds} --threads {args.threads}` (one run, variants interleaved per round, medians).",
        "",
        f"- Machine: {host}; load average at the end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}.",
        f"- Model: {backend.name}, dtype {backend.dtype_choice.dtype}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}.",
        f"- Requests: {data_name}, {len(prompts)} users, 10 history items and 20 candidates each, the product's "
        f"pointwise prompts. Prompt prefix (shared by a user's 20 prompts): median "
        f"{statistics.median(len(p) for p in prefixes):.0f} tokens ({min(len(p) for p in prefixes)}-"
        f"{max(len(p) for p in prefixes)}); the 20 suffixes: median {statistics.median(suffix_tokens):.0f} tokens "
        f"in all; `equal prefixes` cut every prefix to {cut} tokens.",
        "",
        "| users in the batch | " + " | ".join(variants) + " | batch gain, padded | batch gain, equal |",
        "|---:|" + "---:|" * (len(variants) + 2),
    ]
    for b in batches:
        row = [f"{med[(name, b)]:.3f}" for name in variants]
        gain_pad = med[("prefixes, one by one", b)] / med[("prefixes, one padded batch", b)]
        gain_eq = med[("equal prefixes, one by one", b)] / med[("equal prefixes, one batch", b)]
        lines.append(f"| {b} | " + " | ".join(row) + f" | {gain_pad:.2f}x | {gain_eq:.2f}x |")
    share = statistics.median(
        med[("prefixes, one by one", b)] / med[("per user (today)", b)] for b in batches
    )
    lines += [
        "",
        "Seconds (median) for all the users of the batch. `batch gain` = one by one / one batch "
        "(above 1: the batch is faster).",
        f"The prefix forwards are {share:.0%} of a user's scoring time today (median over the rows).",
        "",
        f"Load average at start {load0[0]:.2f}, at the end {load1[0]:.2f}.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
