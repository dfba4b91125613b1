"""The Markdown text of a report: the header, the per-seed ranking tables (all users, users with
the target among the candidates, paired differences, cost and output validity, learned heads,
example LLM outputs, position bias), the pooled table and the rating tables.

Used by :mod:`reranker.evaluation.report`, which re-exports ``render_markdown`` and ``fmt_ci``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_markdown", "fmt_ci"]


def _agreement(a: Mapping[str, Any] | None) -> str:
    if not a or a.get("spearman_median") is None:
        return "n/a"
    return f"{a['spearman_median']:.3f} ({a['spearman_mean']:.3f}), {a['n']} users"


def fmt_ci(cell: Mapping[str, Any] | None, digits: int = 4) -> str:
    """``0.1234 [0.1100, 0.1300]``; ``n/a`` when undefined."""
    if not cell or cell.get("mean") is None:
        return "n/a"
    m = cell["mean"]
    lo, hi = cell.get("ci_lo"), cell.get("ci_hi")
    if lo is None or hi is None:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _fit_lines(rankers: Mapping[str, Any]) -> list[str]:
    """Learned heads: the held-out guard check and the weights on standardized features."""
    fits = {n: e["fit_report"] for n, e in rankers.items() if e.get("fit_report")}
    if not fits:
        return []
    lines = ["### Learned heads (fitted on validation lists)", ""]
    rows = []
    for name, f in fits.items():
        k = f.get("guard_k")
        if k is not None:
            head, singles = f.get(f"holdout_ndcg@{k}_head"), f.get(f"holdout_ndcg@{k}_single") or {}
        else:  # results written before the fit report named its cutoff
            head = next((v for key, v in f.items() if key.startswith("holdout_ndcg") and key.endswith("_head")), None)
            singles = next((v for key, v in f.items() if key.startswith("holdout_ndcg") and key.endswith("_single")), {})
        best = f.get("best_single")
        coef = ", ".join(f"{k} {v:+.2f}" for k, v in (f.get("coef") or {}).items())
        if "coef_hidden_abs_sum" in f:
            coef += f", hidden PCA sum abs {f['coef_hidden_abs_sum']:.2f}"
        if not coef and f.get("importance_gain"):
            coef = f"LambdaRank, {f.get('rounds', '?')} trees (gain below)"
        lists = str(f.get("n_lists", ""))
        capped = f.get("train_users_capped")
        if capped:  # `--users N` bounded the head's training users
            lists += f" (users capped at {capped['used']} by the run's user limit; configured: {capped['configured'] or 'all'})"
        rows.append([
            name, lists, _num(head),
            f"{best} {_num(singles.get(best))}" if best else "n/a",
            f.get("fallback_feature") or "no", coef or "n/a",
        ])
    lines += _table(["ranker", "fit lists", "held-out NDCG head", "best single feature", "fallback", "weights"], rows)
    return lines + [""] + _importance_lines(fits)


def _importance_lines(fits: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Tree heads: each feature's total split gain and its share, largest first."""
    lines: list[str] = []
    for name, f in fits.items():
        gain = dict(f.get("importance_gain") or {})
        if not gain:
            continue
        if f.get("importance_gain_hidden_sum") is not None:
            gain["LLM hidden (PCA, summed)"] = f["importance_gain_hidden_sum"]
        total = sum(gain.values()) or 1.0
        rows = [[feat, f"{g:,.1f}", f"{100 * g / total:.1f}%"]
                for feat, g in sorted(gain.items(), key=lambda kv: -kv[1])]
        lines += [f"Feature importance of {name} (total split gain):", ""]
        lines += _table(["feature", "gain", "share"], rows) + [""]
    return lines


def _first_n(cells: Mapping[str, Any]) -> Any:
    """The user count ``n`` of the first cell of a metric -> cell mapping (0 when absent)."""
    first: Mapping[str, Any] = next(iter(cells.values()), {})
    return first.get("n", 0)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _cache_line(res: Mapping[str, Any]) -> str | None:
    """When rows came from the cache, the wall time is not their cost: state how many results
    were cached and what the rows cost when first computed (sum of per-user latencies)."""
    n = hits = 0
    secs = 0.0
    for run in res.get("runs", []):
        for entry in run.get("rankers", {}).values():
            d = entry.get("diagnostics") or {}
            n += int(entry.get("n_users") or 0)
            hits += int(d.get("cache_hits") or 0)
            secs += float(d.get("total_seconds") or 0.0)
    if not hits:
        return None
    return (f"- Cache: {hits} of {n} (ranker, user) results came from the cache; the ranked rows' time per "
            f"user as first measured sums to {secs:,.0f} s ({secs / 3600:.1f} h; position-bias cells not included)")


def _tie_rule(pr: Mapping[str, Any]) -> str:
    """The protocol's rule for ties in time, in words (results written before the rule was
    recorded used item id)."""
    ties = pr.get("ties") or "item_id"
    if ties == "random":
        return (f"ordered by a seeded random permutation (tie_seed {pr.get('tie_seed', 0)}), so the test and "
                "validation items of a user's last second are drawn at random")
    suffix = "" if "ties" in pr else " (not recorded: results written before the tie rule existed)"
    return f"ordered by item id: the test item is the highest id of the user's last second{suffix}"


def _header_lines(res: Mapping[str, Any]) -> list[str]:
    pr = res.get("protocol", {})
    m = res.get("machine", {})
    d = res.get("data", {})
    lines = [f"# {res.get('experiment', 'experiment')}", ""]
    if res.get("description"):
        lines += [str(res["description"]).strip(), ""]
    status = res.get("status", "?")
    if status != "complete":
        lines += [f"**Status: {status}** (partial results)", ""]
    regime = pr.get("regime")
    label = {"a": "Regime A (stage-1 top-n reranked)", "b": "Regime B (target + sampled negatives)",
             "c": "Regime C (cold start)", "rating": "Rating prediction"}.get(regime, str(regime))
    if regime == "c":
        lines.append(f"- Protocol: {label}; stage: {pr.get('stage')}. {pr.get('split')}")
    else:
        lines.append(f"- Protocol: {label}; split: {pr.get('split')}; stage: {pr.get('stage')}")
    if pr.get("time_features"):
        lines.append(f"- Time-based features: {pr['time_features']}")
    if regime != "rating":
        lines.append(f"- Ties in time (same user, same timestamp): {_tie_rule(pr)}")
        if any(e.get("type", "").startswith("llm-") or e.get("type") in ("fusion", "learned-fusion")
               for run in res.get("runs", []) for e in (run.get("rankers") or {}).values()):
            v = res.get("prompt_version")
            lines.append(f"- LLM prompt version: {v if v is not None else '1 (not recorded: before prompt versions)'}")
    if regime != "rating":
        lines.append(
            f"- Candidates per user: {pr.get('n_candidates')}; history cap: {pr.get('history_cap')}; "
            f"seeds: {pr.get('seeds')}; 95% bootstrap CIs over users ({pr.get('n_boot')} resamples)"
        )
    if pr.get("retriever"):
        lines.append(f"- Stage-1 retriever: {pr['retriever'].get('type')} {pr['retriever'].get('params') or ''}")
    if d:
        ev = d.get("evaluated_users")
        lines.append(
            f"- Data: {d.get('name')} ({d.get('users')} users, {d.get('items')} items, {d.get('interactions')} interactions)"
            + (f"; evaluated users: {ev} of {d.get('eligible_users')}" if ev is not None else "")
        )
    lines.append(
        f"- Machine: {m.get('processor')}, {m.get('affinity_cores', m.get('cpu_count'))} cores, "
        f"{m.get('memory_gib', '?')} GiB RAM, {m.get('platform')}, Python {m.get('python')}"
    )
    lines.append(f"- Wall time: {_num(res.get('wall_time_s'), 1)} s (started {res.get('started_at')}, finished {res.get('finished_at')})")
    cached = _cache_line(res)
    if cached:
        lines.append(cached)
    if res.get("config_file"):
        lines.append(f"- Config: `{res['config_file']}`; overrides: {res.get('overrides')}")
    lines.append("")
    if regime == "c" and pr.get("cold"):
        lines += _cold_lines(pr["cold"])
    return lines


def _cold_lines(cold: Mapping[str, Any]) -> list[str]:
    """Regime C: the cold set in numbers and what each row does when it has nothing to go on."""
    excluded = cold.get("excluded_users") or {}
    parts = [f"{n} ({why})" for why, n in excluded.items() if n]
    size = (f"{cold.get('cold_items')} cold items" if cold.get("kind") == "items"
            else f"{cold.get('cold_users')} cold users, history cuts {cold.get('history_cuts')}")
    lines = [
        "## Cold start",
        "",
        f"- Cold set: {size}; evaluated users: {cold.get('evaluated_users')}; not evaluated: "
        + (", ".join(parts) if parts else "none"),
        f"- Fit data (every model): {cold.get('fit_interactions')} interactions over {cold.get('fit_items')} "
        f"catalog items; negatives drawn from {cold.get('negative_pool')} items",
        "",
    ]
    fb = cold.get("fallbacks") or {}
    if fb:
        lines += ["What each row falls back to when it has nothing to go on:", ""]
        lines += _table(["ranker", "fallback"], [[n, str(t)] for n, t in fb.items()]) + [""]
    return lines


def _ranking_sections(res: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for run in res.get("runs", []):
        rankers = run.get("rankers", {})
        if not rankers:
            continue
        block = f" — {run['block']}" if run.get("block") else ""
        lines += [f"## Seed {run.get('seed')}{block}", ""]
        st = run.get("stage1")
        if st:
            (metric, cell), = st["recall@n"].items()
            lines += [
                f"Stage-1 ceiling: {metric} = {fmt_ci(cell)} ({st['users_with_target']} users have the target among the candidates).",
                "",
            ]
        metrics: list[str] = []
        for e in rankers.values():
            for mname in e.get("summary", {}):
                if mname not in metrics:
                    metrics.append(mname)
        rows = []
        for name, e in rankers.items():
            s = e.get("summary", {})
            n = e.get("n_users", 0)
            flag = "" if e.get("complete", True) else " (partial)"
            rows.append([f"{name}{flag}", e.get("type", ""), str(n)] + [fmt_ci(s.get(m)) for m in metrics])
        lines += ["### All users", ""] + _table(["ranker", "type", "users"] + metrics, rows) + [""]
        if any("summary_target_in_candidates" in e for e in rankers.values()):
            rows = []
            for name, e in rankers.items():
                s = e.get("summary_target_in_candidates", {})
                n = _first_n(s) if s else 0
                rows.append([name, str(n)] + [fmt_ci(s.get(m)) for m in metrics])
            lines += ["### Users whose target is among the candidates", ""] + _table(["ranker", "users"] + metrics, rows) + [""]
        ref = run.get("paired_vs")
        if ref:
            rows = []
            for name, e in rankers.items():
                if "paired" not in e:
                    continue
                rows.append([name, str(_first_n(e["paired"]))] + [fmt_ci(e["paired"].get(m)) for m in metrics])
            if rows:
                lines += [f"### Paired difference vs {ref} (same users; mean [95% CI])", ""]
                lines += _table(["ranker", "users"] + metrics, rows) + [""]
        if run.get("pairs"):
            rows = [
                [f"{p['a']} - {p['b']}", str(_first_n(p["diff"]))]
                + [fmt_ci(p["diff"].get(m)) for m in metrics]
                + [_agreement(p.get("agreement"))]
                for p in run["pairs"]
            ]
            lines += ["### Paired differences between rows (same users; mean [95% CI])", ""]
            lines += _table(["a - b", "users"] + metrics + ["score agreement"], rows) + [""]
            lines += ["score agreement = Spearman correlation of the two rows' scores of each user's candidates, "
                      "median (mean) over the users where both vary, and their number.", ""]
        rows = []
        for name, e in rankers.items():
            d = e.get("diagnostics", {})
            rows.append(
                [
                    name,
                    fmt_ci(d.get("seconds_per_user"), 4),
                    _num((d.get("tokens_in_per_user") or {}).get("mean"), 0),
                    _num((d.get("tokens_out_per_user") or {}).get("mean"), 1),
                    _num((d.get("valid_rate") or {}).get("mean")),
                    _num((d.get("fully_valid_rate") or {}).get("mean")),
                    _num((d.get("hallucination_rate") or {}).get("mean")),
                    _num((d.get("duplicate_rate") or {}).get("mean")),
                    _num((d.get("filled_in_rate") or {}).get("mean")),
                    _num((d.get("labels_returned_rate") or {}).get("mean")),
                    str(d.get("cache_hits", 0)),
                ]
            )
        lines += ["### Cost and output validity", ""]
        lines += _table(
            ["ranker", "s/user [CI]", "tokens in/user", "tokens out/user", "valid", "fully valid", "hallucinated", "duplicate", "filled in", "labels in top-k", "cache hits"],
            rows,
        )
        lines += [
            "",
            "valid = share of the candidates the LLM placed itself; hallucinated / duplicate = share of the "
            "labels it emitted that were out of range / repeated; filled in = share appended in stage-1 order; "
            "labels in top-k = share of the label scores (e.g. Yes and No per candidate) that a server returned "
            "among its top-k next-token log-probabilities (a missing one gets a floor score; n/a: an exact "
            "backend that reads every label's logit). "
            "s/user of cached users is the latency measured when they were computed.",
            "",
        ]
        lines += _fit_lines(rankers)
        ex = [(n, e["examples"][0]) for n, e in rankers.items() if e.get("examples")]
        if ex:
            lines += ["### Example raw LLM outputs", ""]
            for n, x in ex:
                raw = str(x.get("raw", "")).replace("```", "'''")[:400]
                lines += [f"- {n} (user {x.get('user')}, parse {x.get('parse')}):", "", "```", raw, "```", ""]
        pb = run.get("position_bias")
        if pb and pb.get("rankers"):
            pos = [str(p) for p in pb["positions"]]
            rows = []
            for name, r in pb["rankers"].items():
                for variant in ("plain", "bootstrap"):
                    if variant in r:
                        rows.append(
                            [name, variant]
                            + [f"{_num(r[variant][p]['hr@1'])} / {_num(r[variant][p]['mean_rank'], 1)}" for p in pos]
                        )
            lines += [f"### Position bias ({pb['users']} users): HR@1 / mean rank of the target placed at position", ""]
            lines += _table(["ranker", "variant"] + [f"pos {p}" for p in pos], rows) + [""]
        if run.get("injection"):
            from .injection import injection_markdown

            lines += injection_markdown(run["injection"])
    pooled = res.get("pooled")
    if pooled and res.get("protocol", {}).get("regime") != "rating":
        metrics = list(next(iter(pooled.values()))["summary"])
        rows = [[n, str(p["seeds"])] + [fmt_ci(p["summary"].get(m)) for m in metrics] for n, p in pooled.items()]
        lines += ["## Pooled over seeds (per-user mean over seeds)", ""] + _table(["ranker", "seeds"] + metrics, rows) + [""]
    return lines


def _rating_sections(res: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for run in res.get("runs", []):
        models = run.get("models", {})
        if not models:
            continue
        lines += [f"## Seed {run.get('seed')} ({run.get('n_test')} test ratings)", ""]
        ks = sorted({c["k"] for m in models.values() for c in m["by_k"]})
        rows = []
        for name, m in models.items():
            by = {c["k"]: c for c in m["by_k"]}
            rows.append([name, "MAE"] + [_num(by[k]["mae"], 4) if k in by else "" for k in ks])
            rows.append([name, "RMSE"] + [_num(by[k]["rmse"], 4) if k in by else "" for k in ks])
        lines += _table(["model", "metric"] + [f"K={k}" for k in ks], rows) + [""]
        rows = []
        for name, m in models.items():
            best = min(m["by_k"], key=lambda c: c["mae"])
            rows.append(
                [name, str(best["k"]), f"{best['mae']:.4f} [{best['mae_ci'][0]:.4f}, {best['mae_ci'][1]:.4f}]",
                 f"{best['rmse']:.4f} [{best['rmse_ci'][0]:.4f}, {best['rmse_ci'][1]:.4f}]",
                 _num(best["fit_seconds"], 2), _num(best["predict_seconds"], 2)]
            )
        lines += ["Best K per model (95% bootstrap CI over test ratings):", ""]
        lines += _table(["model", "K", "MAE", "RMSE", "fit s", "predict s"], rows) + [""]
    return lines


def render_markdown(res: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """The report as Markdown text (header, tables, plot links)."""
    lines = _header_lines(res)
    if res.get("protocol", {}).get("regime") == "rating":
        lines += _rating_sections(res)
    else:
        lines += _ranking_sections(res)
    if res.get("error"):
        lines += ["## Error", "", f"`{res['error']}`", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(lines)
