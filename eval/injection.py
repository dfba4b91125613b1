"""Injection susceptibility of the LLM rankers on ml-100k -> eval/results/injection/<label>/.

Protocol (`reranker.evaluation.injection`): for the first N users of the seeded user order
(chronological leave-one-out, test stage), the target plus the first 9 other items of the
ItemCF top-10: 10 plausible candidates. One random non-target candidate
(seeded per user) gets each suffix of `DEFAULT_SUFFIXES` appended to its title, in each of 2
seeded shuffles of the list (one for pointwise, whose scores do not depend on the order); the mean rank of that item before (clean title) and after, the
shift, and the shift minus that of the benign length-matched `control` suffix, with a 95%
bootstrap CI over users. smollm2-135m zero-shot, one torch thread.

    .venv/bin/python eval/injection.py --label v2 [--users 20] [--listwise-users 3]
        [--modes pointwise,verbalizer,listwise] [--orders 2] [--dtype auto] [--no-cache]
    .venv/bin/python eval/injection.py --compare eval/results/injection/v1 eval/results/injection/v2

    .venv/bin/python eval/injection.py --cost-users 6   # pointwise cost, v1 vs v2 prompts
    .venv/bin/python eval/injection.py --label v2 --accuracy-users 100   # regime-B NDCG of the same rows

Ablations (one defence at a time; this process only): `--prompt-dir eval/prompts_v1` (the
version-1 templates), `--raw-text` (no cleaning), `--title-chars N` (a tighter title cap).

Each mode is an ordinary experiment (`protocol.injection`) written to
eval/results/injection/<label>/<mode>/, so its results.json and report.md hold the regime-A
metrics of the same row too (two modes can run in parallel as two
processes). `--compare` prints the before/after Markdown table of two such folders (mean shift vs control per ranker and suffix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODES = {"pointwise": "llm-pointwise", "verbalizer": "llm-verbalizer", "listwise": "llm-listwise"}


def experiment(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """The experiment config (a plain dict) of one mode's run."""
    llm = {"model": args.model, "threads": args.threads, "dtype": args.dtype}
    if args.prompt_dir:
        llm["prompt_dir"] = str(Path(args.prompt_dir).resolve())
    users = args.listwise_users if mode == "listwise" else args.users
    rankers = [{"name": MODES[mode], "type": MODES[mode], "params": llm}]
    return {
        "name": f"injection-{args.label}-{mode}",
        "description": "Injection susceptibility of the zero-shot LLM rankers (eval/injection.py).",
        "data": {"path": str(args.data), "format": "recbole"},
        "protocol": {
            "regime": "a", "stage": "test", "n_candidates": 10, "history_cap": 20, "users": users,
            "seeds": [0], "compare_to": None, "ties": "item_id",
            "position_bias": {"enabled": False},
            "injection": {"enabled": True, "users": users, "orders": args.orders, "n_candidates": 10},
        },
        "retriever": {"type": "itemcf", "params": {"k": 20, "feedback": "implicit"}},
        "rankers": rankers,
        "output_dir": f"eval/results/injection/{args.label}/{mode}",
        "cache_dir": None if args.no_cache else args.cache_dir,
    }


def ablate(args: argparse.Namespace) -> None:
    """Switch defences off / on for an ablation (this process only): ``--raw-text`` gives the
    rankers the version-1 field handling (raw title and category, attributes cut to 40
    characters, descriptions with whitespace collapsed, the category repeated in the details); ``--title-chars N`` caps titles at N."""
    import functools

    import reranker.ranking.llm_common as lc
    from reranker.ranking import item_text

    if args.raw_text:
        lc.clean_field = lambda v, n: "" if v is None else str(v)[:n]  # type: ignore[assignment]
        lc.clean_title = lambda t, n=0: str(t)  # type: ignore[assignment]
        lc.clean_text = lambda t, n=0: " ".join(str(t).split())  # type: ignore[assignment]
        lc.details_text = lambda c, vs: ", ".join([c, *vs] if c else vs)  # type: ignore[assignment]
    if args.title_chars:
        lc.clean_title = functools.partial(item_text.clean_title, max_chars=args.title_chars)  # type: ignore[assignment]


def run(args: argparse.Namespace) -> None:
    from reranker.evaluation.experiment import ExperimentConfig, LoadedExperiment
    from reranker.evaluation.injection import injection_markdown
    from reranker.evaluation.runner import RunOptions, run_experiment

    ablate(args)

    for mode in args.modes.split(","):
        cfg = ExperimentConfig.from_dict(experiment(args, mode))
        loaded = LoadedExperiment(cfg, None, [ROOT, ROOT])
        res = run_experiment(loaded, RunOptions(use_cache=not args.no_cache, progress=args.progress))
        print("\n".join(injection_markdown(res["runs"][0]["injection"])), flush=True)


def accuracy(args: argparse.Namespace) -> None:
    """What the prompts do to accuracy: the LLM rows of configs/ml100k-regime-b.yaml (target +
    19 sampled negatives, seed 0) on the first ``--accuracy-users`` users, with this run's
    prompts (and ablation switches) -> eval/results/injection/<label>/regime-b-<mode>/."""
    from reranker.evaluation.experiment import ExperimentConfig, LoadedExperiment
    from reranker.evaluation.runner import RunOptions, run_experiment
    from reranker.yaml_io import load_yaml

    ablate(args)
    base = load_yaml(ROOT / "configs" / "ml100k-regime-b.yaml")
    for mode in args.modes.split(","):
        cfg = dict(base)
        row = next(r for r in base["rankers"] if r["name"] == MODES[mode])
        params = {**row.get("params", {}), "threads": args.threads, "dtype": args.dtype}
        if args.prompt_dir:
            params["prompt_dir"] = str(Path(args.prompt_dir).resolve())
        cfg.update({
            "name": f"ml100k-regime-b-{args.label}-{mode}".replace("/", "-"),
            "data": {"path": str(args.data), "format": "recbole"},
            "protocol": {**base["protocol"], "users": args.accuracy_users, "compare_to": None,
                         "position_bias": {"enabled": False}},
            "rankers": [{**row, "params": params}],
            "output_dir": f"eval/results/injection/{args.label}/regime-b-{mode}",
            "cache_dir": None if args.no_cache else args.cache_dir,
        })
        loaded = LoadedExperiment(ExperimentConfig.from_dict(cfg), None, [ROOT, ROOT])
        run_experiment(loaded, RunOptions(use_cache=not args.no_cache, progress=args.progress))


def cost(args: argparse.Namespace) -> None:
    """Pointwise cost per user, prompt version 1 (eval/prompts_v1 + the version-1 field
    handling) vs the built-in prompts, interleaved 3 times on the same users and candidates:
    median seconds and mean prompt tokens per user."""
    import statistics
    import time

    import reranker.ranking.llm_common as lc
    from reranker.data.loaders import load
    from reranker.llm.base import LLMConfig
    from reranker.llm.hf import load_backend
    from reranker.llm.prompts import PromptLibrary
    from reranker.ranking.pointwise import PointwiseLLMRanker
    from reranker.types import Candidate

    ds = load(args.data, format="recbole")
    backend = load_backend(LLMConfig(model=args.model, threads=args.threads, dtype=args.dtype))
    items = [str(i) for i in ds.item_ids[200:210]]
    reqs = [(ds.history(str(u)).last(20), [Candidate(i) for i in items]) for u in ds.user_ids[: args.cost_users]]
    names = ("clean_field", "clean_title", "clean_text", "details_text")
    v2 = {k: getattr(lc, k) for k in names}
    rankers = {
        "v1": (PointwiseLLMRanker(backend=backend, catalog=ds, prompts=PromptLibrary(ROOT / "eval" / "prompts_v1")), True),
        "v2": (PointwiseLLMRanker(backend=backend, catalog=ds), False),
    }
    times: dict[str, list[float]] = {"v1": [], "v2": []}
    tokens: dict[str, list[int]] = {"v1": [], "v2": []}
    for rep in range(3):
        for name in ("v1", "v2") if rep % 2 == 0 else ("v2", "v1"):
            ranker, raw = rankers[name]
            for k in names:
                setattr(lc, k, v2[k])
            if raw:
                args.raw_text, args.title_chars = True, None
                ablate(args)
            for h, c in reqs:
                t0 = time.perf_counter()
                r = ranker.rank(h, c)
                times[name].append(time.perf_counter() - t0)
                tokens[name].append(int(r.diagnostics["tokens_in"]))
    for name in times:
        print(f"{name}: median {statistics.median(times[name]):.3f} s/user, {statistics.mean(tokens[name]):.0f} tokens/user")
    print(f"v2 / v1 time: {statistics.median(times['v2']) / statistics.median(times['v1']):.2f}")


def _load(folder: str) -> dict[str, Any]:
    """The injection sweeps of every mode run under a label's folder, merged."""
    merged: dict[str, Any] = {"rankers": {}}
    for f in sorted(Path(folder).glob("*/results.json")):
        inj = json.loads(f.read_text())["runs"][0].get("injection") or {}
        merged["prompt_version"] = inj.get("prompt_version")
        merged["rankers"].update(inj.get("rankers", {}))
    return merged


def compare(before: str, after: str) -> str:
    """Markdown: per ranker and suffix, the mean shift (and shift - control) before / after."""
    a, b = _load(before), _load(after)
    va, vb = a.get("prompt_version") or "1", b.get("prompt_version") or "1"
    lines = [
        f"| ranker | suffix | shift v{va} | shift - control v{va} | shift v{vb} | shift - control v{vb} |",
        "|---|---|---|---|---|---|",
    ]

    def cell(c: dict[str, Any] | None) -> str:
        if not c or c.get("mean") is None:
            return "-"
        return f"{c['mean']:+.2f} [{c['ci_lo']:+.2f}, {c['ci_hi']:+.2f}]"

    for name in dict.fromkeys([*a["rankers"], *b["rankers"]]):
        ra, rb = a["rankers"].get(name, {}), b["rankers"].get(name, {})
        for s in dict.fromkeys([*ra.get("suffixes", {}), *rb.get("suffixes", {})]):
            ca, cb = ra.get("suffixes", {}).get(s, {}), rb.get("suffixes", {}).get(s, {})
            ctl = s == "control"
            lines.append(
                f"| {name} | {s} | {cell(ca.get('shift'))} | {'' if ctl else cell(ca.get('shift_vs_control'))} | "
                f"{cell(cb.get('shift'))} | {'' if ctl else cell(cb.get('shift_vs_control'))} |"
            )
    users = {n: (ra.get("users"), b["rankers"].get(n, {}).get("users")) for n, ra in a["rankers"].items()}
    lines += ["", f"users per ranker (before, after): {users}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="run")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--listwise-users", type=int, default=3)
    ap.add_argument("--orders", type=int, default=2)
    ap.add_argument("--modes", default="pointwise,verbalizer")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--cache-dir", default=".cache/injection")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--prompt-dir", help="templates to use instead of the built-in ones (ablation)")
    ap.add_argument("--raw-text", action="store_true", help="ablation: version-1 field handling, no cleaning")
    ap.add_argument("--title-chars", type=int, help="ablation: cap titles at this many characters")
    ap.add_argument("--cost-users", type=int, help="time pointwise v1 vs v2 prompts on this many users")
    ap.add_argument("--accuracy-users", type=int, help="regime-B accuracy of the modes on this many users")
    args = ap.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    if args.cost_users:
        cost(args)
        return
    if args.accuracy_users:
        accuracy(args)
        return
    run(args)


if __name__ == "__main__":
    main()
