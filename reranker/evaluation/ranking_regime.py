"""Regimes A, B and C, seed by seed: build the candidate lists, rank them with every configured
ranker, score the rankings (metrics with CIs, diagnostics, paired differences), run the
position-bias sweep, and pool the seeds.

Regime A ranks the stage-1 retriever's top-n (fitted once, shared by all seeds) and reports its
Recall@n ceiling; regime B ranks the target plus ``n_negatives`` sampled unseen items (seeded);
regime C (`reranker.evaluation.cold_start`) ranks cold-item or cold-user lists with every model
fitted on the data without them, one block of results per history cut (cold users).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from . import protocol as P
from .bias import bias_sweep
from .experiment import (
    BuildContext,
    RankerSpec,
    adapter_hashes,
    build_ranker,
    data_fingerprint,
    ranker_fingerprint,
)
from .ranking_run import diagnostics_summary, rank_users
from .records import PairedDiff, RankerEntry, RankerRun, RankerScores, SeedResult, Stage1Ceiling
from .run_context import RunContext, SeedContext, metric_names

log = logging.getLogger(__name__)

__all__ = ["run_ranking", "rank_all", "score_run", "pool_seeds"]


def run_ranking(run: RunContext, data: Any, results: list[Any], data_summary: MutableMapping[str, Any],
                protocol_summary: MutableMapping[str, Any] | None = None) -> None:
    """Every seed of a ranking regime; appends one :class:`SeedResult` per seed (regime C: per
    seed and block) to ``results``, adds the evaluated-user counts to ``data_summary`` and, in
    regime C, what the cold set is to ``protocol_summary``."""
    from ..data.splits import leave_one_out

    cfg, pr = run.config, run.protocol
    if pr.regime == "c":
        _run_cold(run, data, results, data_summary, protocol_summary if protocol_summary is not None else {})
        return
    split = leave_one_out(data, min_interactions=cfg.data.min_interactions)
    fit_data = split.fit_data(pr.stage)
    histories = split.histories(pr.stage, cap=pr.history_cap)
    targets = split.targets(pr.stage)
    users = run.select_users([u for u in targets if u in histories])
    data_summary.update(
        {"evaluated_users": len(users), "eligible_users": len(targets), "excluded_users": split.excluded_users}
    )
    fp = data_fingerprint(fit_data)
    # The learned head fits on the validation stage of the split it is given. Evaluating the
    # validation stage itself, it gets the split one step earlier (`LeaveOneOutSplit.earlier`:
    # fitted on train minus each user's last train item, that item the target), so no head is
    # fitted on the labels it is scored on, and tuning on validation mirrors the test stage.
    head_split = split.earlier() if pr.stage == "validation" else split
    known: dict[str, set[str]] = {}
    if pr.regime == "b":
        df = data.interactions
        known = {str(u): set(g.tolist()) for u, g in df.groupby("user_id", sort=False)["item_id"]}
    stage1: dict[str, list[Any]] | None = None
    ceiling: Stage1Ceiling | None = None
    for seed in run.seeds:
        build = BuildContext(fit_data=fit_data, catalog=data, cache=run.cache, seed=seed, split=head_split,
                             user_limit=run.user_limit)
        if pr.regime == "a":
            if stage1 is None:
                stage1, ceiling = _stage1(run, build, histories, targets, users, seed)
            lists: Mapping[str, Sequence[Any]] = stage1
        else:
            lists = P.regime_b_lists(users, targets, known, data.item_ids, pr.n_negatives, seed)
        ctx = SeedContext(
            run=run, seed=seed, data=data, split=split, build=build, users=users, histories=histories,
            targets=targets, lists=lists, fingerprint=fp, metric_names=metric_names(pr), ceiling=ceiling,
        )
        result = SeedResult(seed=seed, regime=pr.regime, stage1=ceiling)
        results.append(result)
        rank_all(ctx, result)
        if pr.position_bias.enabled:
            bias_sweep(ctx, result)
        if pr.injection.enabled:
            from .injection import injection_sweep

            injection_sweep(ctx, result)
        run.flush()


def _run_cold(run: RunContext, data: Any, results: list[Any], data_summary: MutableMapping[str, Any],
              protocol_summary: MutableMapping[str, Any]) -> None:
    """Regime C: every model fitted on the data without the cold items / users (and the learned
    head on that data's own validation stage); per seed one set of lists, ranked once per block
    of histories with the same built rankers."""
    from .cold_start import cold_setup, describe, fallback

    cfg, pr = run.config, run.protocol
    setup = cold_setup(data, pr, cfg.data.min_interactions)
    users = run.select_users(setup.users)
    data_summary.update({"evaluated_users": len(users), "eligible_users": len(setup.users),
                         "excluded_users": int(sum(setup.excluded.values()))})
    protocol_summary["split"] = describe(setup, pr.n_negatives, pr.cold)
    protocol_summary["cold"] = {
        **pr.cold.model_dump(mode="json", include=_COLD_FIELDS[setup.kind]), **setup.summary(),
        "fallbacks": {s.name: fallback(s.type, setup.kind, s.params) for s in cfg.rankers},
    }
    fp = data_fingerprint(setup.fit_data)
    for seed in run.seeds:
        build = BuildContext(fit_data=setup.fit_data, catalog=data, cache=run.cache, seed=seed,
                             split=setup.head_split)
        lists = setup.lists(users, pr.n_negatives, seed)
        built: dict[str, Any] | None = None
        for block in setup.blocks:
            ctx = SeedContext(
                run=run, seed=seed, data=data, split=setup.head_split, build=build, users=users,
                histories=block.histories, targets=setup.targets, lists=lists, fingerprint=fp,
                metric_names=metric_names(pr),
            )
            result = SeedResult(seed=seed, regime="c", block=block.name)
            results.append(result)
            built = rank_all(ctx, result, built)
            _fitted_fallbacks(built, setup.kind, protocol_summary["cold"]["fallbacks"])
            if pr.position_bias.enabled:
                bias_sweep(ctx, result)
            if pr.injection.enabled:
                from .injection import injection_sweep

                injection_sweep(ctx, result)
            run.flush()


def _fitted_fallbacks(built: Mapping[str, Any], kind: str, fallbacks: MutableMapping[str, str]) -> None:
    """A learned head whose fit guard kept a single feature ranks by that feature alone: say
    so (a CF / popularity / recency feature is 0 on every cold item)."""
    from ..ranking.learned import LearnedFusionRanker

    for name, ranker in built.items():
        feature = ranker.head.fit_report.get("fallback_feature") if isinstance(ranker, LearnedFusionRanker) else None
        if not feature or name not in fallbacks:
            continue
        blind = kind == "items" and feature not in ("bert", "llm")
        fallbacks[name] = (f"the fit guard kept the single feature {feature!r} instead of the head"
                           + ("; it is 0 on every cold item: ties keep the candidate list's order, a seeded "
                              "shuffle: random order" if blind else ""))


_COLD_FIELDS = {"items": {"kind", "item_share", "item_select", "min_history", "seed"},
                "users": {"kind", "user_share", "history_cuts", "seed"}}


def _stage1(
    run: RunContext, build: BuildContext, histories: Mapping[str, Any], targets: Mapping[str, str],
    users: list[str], seed: int,
) -> tuple[dict[str, list[Any]], Stage1Ceiling]:
    """Regime A: the retriever's top-n per user and how often it holds the target."""
    pr = run.protocol
    retr = build.retriever(run.config.retriever.type, run.config.retriever.params)
    t0 = time.perf_counter()
    lists = P.regime_a_lists(retr, histories, users, pr.n_candidates, run.options.progress)
    seconds = time.perf_counter() - t0
    hit = P.target_in([lists[u] for u in users], [targets[u] for u in users])
    ceiling = Stage1Ceiling(
        recall=P.summarize_per_user({f"recall@{pr.n_candidates}": hit}, pr.n_boot, seed),
        users_with_target=int(hit.sum()),
        seconds=seconds,
        per_user=dict(zip(users, hit.tolist(), strict=True)),
    )
    return lists, ceiling


def build_all(ctx: SeedContext) -> dict[str, Any]:
    """Build every configured ranker (in order: fusion rows find their components in ``built``)."""
    built: dict[str, Any] = {}
    for spec in ctx.run.config.rankers:
        log.info("building ranker %s (%s)", spec.name, spec.type)
        built[spec.name] = build_ranker(spec, ctx.build)
        ctx.build.built[spec.name] = built[spec.name]
    return built


def rank_all(ctx: SeedContext, result: SeedResult, built: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rank and score the seed's lists with every ranker, writing partial results as it goes;
    returns the built rankers (``built``: rankers built for another block of the same seed)."""
    from ..ranking.learned import LearnedFusionRanker

    run = ctx.run
    built = built if built is not None else build_all(ctx)
    runs: dict[str, RankerRun] = {}
    for spec in run.config.rankers:
        ranker = built[spec.name]
        users = ctx.users[: spec.users] if spec.users else ctx.users
        earlier = spec.type == "learned-fusion" and ctx.protocol.stage == "validation"
        fpr = ranker_fingerprint(spec, ctx.fingerprint, ctx.seed, extra=_fingerprint_extra(spec, run.config.rankers, earlier))
        fit = ranker.head.fit_report if isinstance(ranker, LearnedFusionRanker) else None
        entry = RankerEntry(type=spec.type, params=spec.params, fit_report=fit or None)
        result.rankers[spec.name] = entry

        def flush_partial(r: RankerRun, entry: RankerEntry = entry) -> None:
            entry.record(score_run(ctx, r, partial=True))
            run.flush()

        pre = _precomputed(spec, runs) if spec.type == "fusion" else None
        t0 = time.perf_counter()
        r = rank_users(
            ranker, spec.name, fpr, users, ctx.histories, ctx.lists, run.cache,
            progress=run.options.progress, on_flush=flush_partial,
            flush_every=run.options.flush_every, flush_seconds=run.options.flush_seconds, precomputed=pre,
        )
        runs[spec.name] = r
        entry.record(score_run(ctx, r, partial=False))
        entry.wall_seconds = time.perf_counter() - t0
        entry.complete = True
        run.flush()
    _paired(ctx, result, runs)
    return built


def _paired(ctx: SeedContext, result: SeedResult, runs: Mapping[str, RankerRun]) -> None:
    """Paired differences against ``protocol.compare_to`` and between ``protocol.pairs``."""
    pr, names, seed = ctx.protocol, ctx.metric_names, ctx.seed
    ref = pr.compare_to
    if ref and ref in runs:
        result.paired_vs = ref
        for name, entry in result.rankers.items():
            if name == ref:
                continue
            a, b = _per_user(result, name), _per_user(result, ref)
            entry.paired = {m: P.paired_difference(a[m], b[m], pr.n_boot, seed) for m in names}
    pairs = [(a, b) for a, b in pr.pairs if a in runs and b in runs]
    if pairs:
        per = {n: _per_user(result, n) for p in pairs for n in p}
        result.pairs = [
            PairedDiff(a, b, {m: P.paired_difference(per[a][m], per[b][m], pr.n_boot, seed) for m in names},
                       agreement=score_agreement(runs[a], runs[b]))
            for a, b in pairs
        ]


def score_agreement(a: RankerRun, b: RankerRun) -> dict[str, Any]:
    """Per-user Spearman correlation between two rows' scores of the same candidates (matched by
    item id; a user counts when both rows' scores vary there): median, mean and the number of
    users. Two backends of one model (in process vs a server) should agree closely."""
    from scipy.stats import spearmanr

    b_of = {u: dict(zip(ids, sc, strict=True)) for u, ids, sc in zip(b.users, b.ranked, b.scores, strict=True)}
    rhos: list[float] = []
    for u, ids, sc in zip(a.users, a.ranked, a.scores, strict=True):
        other = b_of.get(u)
        if other is None or set(ids) != set(other):
            continue
        x = np.asarray(sc, dtype=np.float64)
        y = np.asarray([other[i] for i in ids], dtype=np.float64)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        rhos.append(float(spearmanr(x, y).statistic))
    if not rhos:
        return {"spearman_median": None, "spearman_mean": None, "n": 0}
    return {"spearman_median": float(np.median(rhos)), "spearman_mean": float(np.mean(rhos)), "n": len(rhos)}


def _fingerprint_extra(spec: RankerSpec, rows: Sequence[RankerSpec], earlier: bool) -> Any:
    """What a row's cache key holds beside its own params: the validation-stage head split, and
    for fusion the adapter weights of its component rows (a component whose adapter was
    retrained in place changes the fused ranking too)."""
    extra: Any = "head-split-earlier" if earlier else None
    if spec.type == "fusion":
        by_name = {r.name: r for r in rows}
        adapters = [h for comp in spec.params.get("weights") or {} if comp in by_name
                    for h in adapter_hashes(by_name[comp].params)]
        if adapters:
            extra = {"component_adapters": adapters, "extra": extra}
    return extra


def _precomputed(spec: RankerSpec, runs: Mapping[str, RankerRun]) -> Any:
    """For fusion: the component rankers' scores already computed for the same lists."""
    weights = spec.params.get("weights") or {}
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for comp in weights:
        r = runs.get(comp)
        if r is None:
            return None
        tables[comp] = {u: dict(zip(ids, sc, strict=True)) for u, ids, sc in zip(r.users, r.ranked, r.scores, strict=True)}

    def pre(u: str, cands: Sequence[Any]) -> dict[str, np.ndarray] | None:
        out = {}
        for comp, t in tables.items():
            if u not in t:
                return {}
            out[comp] = np.array([t[u].get(c.item_id, np.nan) for c in cands], dtype=np.float64)
        return out

    return pre


def score_run(ctx: SeedContext, r: RankerRun, partial: bool) -> RankerScores:
    """Metrics (per user, and means with CIs) and diagnostics of the users ranked so far."""
    pr, seed = ctx.protocol, ctx.seed
    tg = [ctx.targets[u] for u in r.users]
    per = P.per_user_metrics(r.ranked, tg, ctx.metric_names)
    summary = P.summarize_per_user(per, pr.n_boot, seed)
    diagnostics = diagnostics_summary(r, pr.n_boot, seed)
    inside_summary = None
    if ctx.ceiling is not None:
        inside = np.array([ctx.ceiling.per_user[u] for u in r.users], dtype=bool)
        inside_summary = P.summarize_per_user({m: v[inside] for m, v in per.items()}, pr.n_boot, seed)
    pr_curve = examples = failures = None
    if not partial:
        max_k = max(len(x) for x in r.ranked) if r.ranked else 20
        pr_curve = P.pr_curve(r.ranked, tg, max_k=min(max_k, 20))
        examples = r.examples
        failures = r.failures[:10]
    per_user: dict[str, dict[str, Any]] = {m: dict(zip(r.users, v.tolist(), strict=True)) for m, v in per.items()}
    per_user["seconds"] = dict(zip(r.users, r.seconds, strict=True))
    return RankerScores(
        n_users=len(r.users), summary=summary, diagnostics=diagnostics, per_user=per_user,
        summary_target_in_candidates=inside_summary, pr_curve=pr_curve, examples=examples,
        failures=failures, partial=partial,
    )


def pool_seeds(results: Sequence[SeedResult], n_boot: int) -> dict[str, Any]:
    """Per ranker: per-user metrics averaged over seeds, then mean and CI over users (per block
    of regime C: keyed ``"<ranker> [<block>]"``)."""
    out: dict[str, Any] = {}
    for b in dict.fromkeys(r.block for r in results):
        for name, cell in _pool_block([r for r in results if r.block == b], n_boot).items():
            out[name if b is None else f"{name} [{b}]"] = cell
    return out


def _pool_block(results: Sequence[SeedResult], n_boot: int) -> dict[str, Any]:
    """`pool_seeds` over the seeds of one block."""
    pooled: dict[str, Any] = {}
    for name, first in results[0].rankers.items():
        assert first.scores is not None
        per: dict[str, list[float]] = {}
        for m in first.scores.summary:
            users = list(first.scores.per_user[m])
            vals = np.array(
                [[_per_user(r, name)[m].get(u, np.nan) for u in users] for r in results], dtype=np.float64
            )
            with np.errstate(all="ignore"):
                per[m] = np.nanmean(vals, axis=0).tolist()
        pooled[name] = {"seeds": len(results), "summary": P.summarize_per_user(per, n_boot, 0)}
    return pooled


def _per_user(result: SeedResult, name: str) -> dict[str, dict[str, Any]]:
    """``{metric: {user: value}}`` of a ranked row."""
    scores = result.rankers[name].scores
    assert scores is not None
    return scores.per_user
