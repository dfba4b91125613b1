"""Experiment: what the frozen LLM adds to the learned fusion head (issue 5, item 3).

Protocol (ml-100k, chronological leave-one-out, history cap 20, regime B):
- Fit: validation targets of `--fit-users` users (seeded sample) + 19 random unseen negatives
  each; features from components fitted on the TRAIN split: h_trad = ItemCF, UserCF
  (cosine, k=50, implicit), popularity, recency; LLM = SmolLM2-135M pointwise Yes/No logit and
  its final hidden state at the answer position (PCA to 16 dims, fitted on these lists).
- Test: test targets of `--test-users` users (seeded, disjoint from nothing: the test item is
  never in any fit list) + 19 unseen negatives (reranker.evaluation.protocol.regime_b_lists),
  features from components refitted on train + validation.
- Heads: logistic on h_trad; logistic on h_trad + LLM logit + PCA(h_LLM); both with the
  never-worse-than-best-input guard. Reported: NDCG@10 / HR@1 mean with 95% bootstrap CI per
  row and the paired difference (head+LLM minus head) with its CI; UserCF alone for reference.

    .venv/bin/python eval/learned_fusion_llm.py --fit-users 150 --test-users 150

Writes eval/results/learned_fusion_llm.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    ap.add_argument("--fit-users", type=int, default=150)
    ap.add_argument("--test-users", type=int, default=150)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "learned_fusion_llm.md"))
    args = ap.parse_args()

    from tqdm.auto import tqdm

    from reranker.data import leave_one_out, load
    from reranker.evaluation import metrics as M
    from reranker.evaluation.protocol import regime_b_lists
    from reranker.llm.base import LLMConfig
    from reranker.ranking.features import FeatureBuilder, build_components
    from reranker.ranking.learned import (
        FeatureList,
        LearnedFusion,
        LearnedFusionConfig,
        training_lists,
    )
    from reranker.ranking.pointwise import PointwiseLLMRanker
    from reranker.types import Candidate

    t0 = time.perf_counter()
    load_avg = os.getloadavg()
    ds = load(args.data, format="recbole")
    split = leave_one_out(ds)
    llm = PointwiseLLMRanker(LLMConfig(model=args.model, threads=args.threads, item_text_tokens=0, max_attrs=1),
                             catalog=ds)
    knn = {"k": 50, "feedback": "implicit"}

    def builder(data):
        return FeatureBuilder(build_components(data, ds, itemcf=knn, usercf=knn), llm=llm)

    # ---------------------------------------------------------------- fit on validation
    t = time.perf_counter()
    fit_lists = training_lists(split, builder(split.train), n_negatives=19, negatives="random",
                               users=args.fit_users, seed=args.seed, batch_size=16)
    fit_s = time.perf_counter() - t
    names = builder(split.train).names  # [..., "llm"]
    trad_idx = [i for i, n in enumerate(names) if n != "llm"]
    trad_only = [FeatureList(fl.trad[:, trad_idx], fl.labels, None) for fl in fit_lists]
    head_trad = LearnedFusion(LearnedFusionConfig(use_llm_hidden=False, seed=args.seed),
                              [names[i] for i in trad_idx]).fit(trad_only)
    head_llm = LearnedFusion(LearnedFusionConfig(use_llm_hidden=True, pca_dim=16, seed=args.seed), names).fit(fit_lists)

    # ---------------------------------------------------------------- test lists
    test_b = builder(split.train_valid())
    hist = split.histories("test", cap=20)
    targets = split.targets("test")
    rng = np.random.default_rng(args.seed + 1)
    users = sorted(rng.choice(sorted(hist), size=min(args.test_users, len(hist)), replace=False).tolist())
    full = ds.interactions.groupby("user_id")["item_id"].agg(set)
    lists = regime_b_lists(users, targets, {u: full[u] for u in users}, ds.item_ids, 19, seed=args.seed)
    rows: dict[str, list[list[str]]] = {k: [] for k in ("UserCF", "ItemCF", "LLM logit", "head: h_trad",
                                                      "head: h_trad + LLM")}
    t = time.perf_counter()
    for lo in tqdm(range(0, len(users), 16), desc="test lists"):
        chunk = users[lo : lo + 16]
        fls, _ = test_b.build_batch([hist[u] for u in chunk],
                                    [[Candidate(i) for i in lists[u]] for u in chunk])
        for u, fl in zip(chunk, fls, strict=True):
            ids = np.asarray(lists[u])

            def order(s: np.ndarray, ids=ids) -> list[str]:
                return ids[np.argsort(-s, kind="stable")].tolist()

            rows["UserCF"].append(order(fl.trad[:, names.index("usercf")]))
            rows["ItemCF"].append(order(fl.trad[:, names.index("itemcf")]))
            rows["LLM logit"].append(order(fl.trad[:, names.index("llm")]))
            rows["head: h_trad"].append(order(head_trad.score(FeatureList(fl.trad[:, trad_idx], fl.labels))))
            rows["head: h_trad + LLM"].append(order(head_llm.score(fl)))
    test_s = time.perf_counter() - t
    rel = [{targets[u]} for u in users]
    per = {}
    for name, ranked in rows.items():
        per[name] = {"ndcg@10": M.ndcg(M.hits_matrix(ranked, rel, 10)), "hr@1": M.hit_rate(M.hits_matrix(ranked, rel, 1))}

    def ci(v: np.ndarray) -> str:
        m, lo, hi = M.bootstrap_ci(v, seed=args.seed)
        return f"{m:.4f} [{lo:.4f}, {hi:.4f}]"

    lines = [
        "# Learned fusion: what the frozen LLM adds (ml-100k, regime B)",
        "",
        f"Command: `.venv/bin/python eval/learned_fusion_llm.py --fit-users {args.fit_users} "
        f"--test-users {args.test_users}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average at start "
        f"{load_avg[0]:.1f}; LLM {args.model} (bf16, pointwise prompt: title, category, 1 attribute per item).",
        f"Wall time: {time.perf_counter() - t0:.0f} s (fit-list features {fit_s:.0f} s, test {test_s:.0f} s).",
        "",
        "Protocol" + __doc__.split("Protocol", 1)[1].split("    .venv", 1)[0].rstrip(),
        "",
        f"Fit lists: {len(fit_lists)} validation users; test: {len(users)} users, 20 items each.",
        "",
        "| ranker | NDCG@10 [95% CI] | HR@1 [95% CI] |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {ci(v['ndcg@10'])} | {ci(v['hr@1'])} |" for n, v in per.items()]
    d = per["head: h_trad + LLM"]["ndcg@10"] - per["head: h_trad"]["ndcg@10"]
    d2 = per["head: h_trad"]["ndcg@10"] - per["UserCF"]["ndcg@10"]
    lines += [
        "",
        f"Paired difference in NDCG@10, head with LLM minus head without: {ci(d)}.",
        f"Paired difference in NDCG@10, head (h_trad) minus UserCF: {ci(d2)}.",
        "",
        f"Guard (fit report): h_trad head fallback = {head_trad.fit_report.get('fallback_feature')}, "
        f"h_trad + LLM head fallback = {head_llm.fit_report.get('fallback_feature')}; "
        f"held-out validation NDCG@10 {head_trad.fit_report.get('holdout_ndcg@10_head', float('nan')):.4f} vs "
        f"{head_llm.fit_report.get('holdout_ndcg@10_head', float('nan')):.4f}.",
        "",
        "Head weights on standardised features (h_trad + LLM): "
        + ", ".join(f"{k} {v:+.3f}" for k, v in list(head_llm.weights().items())[: len(names)]) + ".",
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
