"""How much of regime C (cold items) is a popularity test: rank each user's cold-item list by the
items' popularity in the FULL data (their test-time interactions, which no row may see) and
report NDCG@10 with a bootstrap CI, on all evaluated users and on the first N (the LLM rows' users).

The target is an item the user chose, so it is drawn in proportion to the cold items' popularity,
while the 19 negatives are drawn uniformly from the cold items (mostly obscure): any signal that
correlates with "a well-known title" scores well in these lists. This oracle is a diagnostic,
not a ranker: it reads interactions that regime C removes.

    .venv/bin/python eval/cold_popularity_oracle.py [--config configs/ml100k-cold-items.yaml] [--first 100]

Writes eval/results/ml100k/cold-items/popularity-oracle.md (next to the report of the config).
"""

from __future__ import annotations

import argparse

from reranker.evaluation import protocol as P
from reranker.evaluation.cold_start import cold_setup
from reranker.evaluation.experiment import load_experiment
from reranker.evaluation.report_markdown import fmt_ci
from reranker.evaluation.runner import load_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/ml100k-cold-items.yaml")
    ap.add_argument("--first", type=int, default=100, help="also report the first N users (the LLM rows')")
    args = ap.parse_args()
    loaded = load_experiment(args.config)
    cfg, pr = loaded.config, loaded.config.protocol
    data = load_data(loaded, progress=False).with_tie_order(pr.ties, pr.tie_seed)
    setup = cold_setup(data, pr, cfg.data.min_interactions)
    users = P.user_order(setup.users, seed=0)  # the runner's order: the first N are the LLM rows' users
    lists = setup.lists(users, pr.n_negatives, pr.seeds[0])
    pop = data.interactions.groupby("item_id")["user_id"].nunique()  # full data: a leak, on purpose
    rows = []
    for label, us in (("all evaluated users", users), (f"first {args.first} users", users[: args.first])):
        ranked = [sorted(lists[u], key=lambda i, u=u: (-pop.get(i, 0), lists[u].index(i))) for u in us]
        per = P.per_user_metrics(ranked, [setup.targets[u] for u in us], ["ndcg@10", "hr@1"])
        s = P.summarize_per_user(per, pr.n_boot, 0)
        rows.append(f"| {label} | {len(us)} | {fmt_ci(s['ndcg@10'])} | {fmt_ci(s['hr@1'])} |")
    out = loaded.output_base() / cfg.output_dir / "popularity-oracle.md"
    text = "\n".join([
        "# Regime C (cold items): a popularity oracle",
        "",
        f"`.venv/bin/python eval/cold_popularity_oracle.py --config {args.config} --first {args.first}`",
        "",
        "Each user's cold-item list (the same lists as the report: seed "
        f"{pr.seeds[0]}, {pr.n_negatives} negatives) ranked by the items' number of users in the full data, "
        "i.e. with the interactions regime C removes. Not a ranker (it leaks); it shows how much of these "
        "lists is a popularity test: the target is an item the user chose (drawn in proportion to "
        "popularity), the negatives are drawn uniformly from the cold items.",
        "",
        "| users | n | NDCG@10 | HR@1 |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
