"""Run an experiment config end to end: data -> split -> candidates -> rankers -> results.

``run_experiment(loaded, ...)`` returns the results dict and writes ``results.json`` (atomically,
after every ranker and every ``flush_every`` users, so Ctrl-C leaves a valid partial file with
``"status": "interrupted"``), then ``report.md`` and the PNG plots.

Each (ranker, user, history, candidate list) ranking is cached (`reranker.evaluation.cache`),
keyed by a fingerprint of the ranker's type and parameters, the fit data and the seed: a repeated
or interrupted run takes finished users from the cache. Latency reported for a cached user is the
latency measured when it was computed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from . import protocol as P
from .cache import KVCache, NullCache, make_key, open_cache
from .experiment import (
    LLM_TYPES,
    BuildContext,
    ExperimentConfig,
    LoadedExperiment,
    RankerSpec,
    build_ranker,
    build_retriever,
    data_fingerprint,
    ranker_fingerprint,
)

log = logging.getLogger(__name__)

__all__ = ["RunOptions", "run_experiment", "write_json_atomic", "machine_info", "load_data"]

_RAW_CHARS = 1500
_EXAMPLES = 3


@dataclass
class RunOptions:
    """Command-line overrides of an experiment config."""

    users: int | None = None
    seed: int | None = None
    out_dir: str | Path | None = None
    data_path: str | Path | None = None
    use_cache: bool = True
    cache_dir: str | Path | None = None
    progress: bool = True
    flush_every: int = 50
    report: bool = True
    dataset: Any = None
    """A ready Dataset to use instead of loading ``data`` (tests, notebooks)."""


# ============================================================================ small helpers
def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, then rename over ``path`` (atomic)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent))
    try:
        # json.dumps without indent uses the C encoder (much faster on per-user tables)
        text = json.dumps(_jsonable(obj), allow_nan=False, separators=(",", ":"))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)  # atomic: readers see the old file or the new one, never half
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS and library versions (for the report header)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        info["affinity_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    return info


def load_data(loaded: LoadedExperiment, data_path: str | Path | None = None) -> Any:
    """The experiment's Dataset (``data_path`` overrides ``data.path``)."""
    spec = loaded.config.data
    if data_path is not None or spec.path is not None:
        from ..data.loaders import load

        path = Path(data_path).expanduser() if data_path is not None else loaded.resolve(spec.path or "", must_exist=True)
        if not path.exists():
            raise DataError("no such file or folder", path=str(path))
        return load(path, format=spec.format)
    assert spec.synthetic is not None
    try:
        from ..data.synthetic import generate_world
    except ImportError as e:  # pragma: no cover - depends on installation
        raise ConfigError(f"data.synthetic: the generated world is not available ({e})") from None
    s = spec.synthetic
    return generate_world(seed=s.seed, n_users=s.n_users, n_items=s.n_items).dataset


# ============================================================================ ranking engine
@dataclass
class RankerRun:
    """Per-user outputs of one ranker on one set of lists."""

    name: str
    users: list[str] = field(default_factory=list)
    ranked: list[list[str]] = field(default_factory=list)
    scores: list[list[float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    tokens: list[tuple[float, float] | None] = field(default_factory=list)
    parse: list[dict[str, float] | None] = field(default_factory=list)
    n_candidates: list[int] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    cache_hits: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)


def _compact_diag(diag: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ps = P.parse_stats(diag)
    if ps is not None:
        out["parse"] = ps
    tok = P.token_count(diag)
    if tok is not None:
        out["tokens"] = list(tok)
    raw = diag.get("raw") or diag.get("raw_text") or diag.get("text")
    if isinstance(raw, list | tuple):
        raw = "\n---\n".join(str(r) for r in raw)
    if raw is not None:
        out["raw"] = str(raw)[:_RAW_CHARS]
    return out


def rank_users(
    ranker: Any,
    name: str,
    fingerprint: str,
    users: Sequence[str],
    histories: Mapping[str, Any],
    lists: Mapping[str, Sequence[Any]],
    cache: KVCache | NullCache,
    *,
    salt: str = "",
    progress: bool = True,
    on_flush: Any = None,
    flush_every: int = 50,
    precomputed: Any = None,
    run: RankerRun | None = None,
) -> RankerRun:
    """Rank each user's candidate list, from the cache when possible; times each computed call.

    ``lists[u]`` holds Candidates or item ids. ``on_flush(run)`` is called every
    ``flush_every`` users (the runner writes partial results there).
    """
    from tqdm.auto import tqdm

    run = run or RankerRun(name)
    keys = {}
    for u in users:
        ids = [getattr(c, "item_id", c) for c in lists[u]]
        keys[u] = make_key("rank", fingerprint, salt, u, list(histories[u].items), ids)
    found = cache.get_many(keys.values()) if cache.enabled else {}
    pending: dict[str, Any] = {}
    bar = tqdm(total=len(users), desc=name, disable=not progress, leave=False, unit="user")
    try:
        _rank_loop(
            ranker, run, list(users), bar, keys, found, pending, histories, lists, cache, precomputed,
            on_flush, flush_every,
        )
    finally:  # also on Ctrl-C: what was computed is kept for the next run
        bar.close()
        if pending:
            cache.put_many(pending)
    return run


def _rank_loop(
    ranker: Any, run: RankerRun, users: list[str], bar: Any, keys: Mapping[str, str], found: Mapping[str, Any],
    pending: dict[str, Any], histories: Mapping[str, Any], lists: Mapping[str, Sequence[Any]],
    cache: KVCache | NullCache, precomputed: Any, on_flush: Any, flush_every: int,
) -> None:
    """Users in order; the cache misses of each block of ``ranker.users_per_batch`` users are
    ranked together through ``ranker.rank_many`` when the ranker has it (listwise LLM: one
    batched generate), one by one through ``rank`` otherwise."""
    from ..types import Candidate

    batch = 1
    if precomputed is None and hasattr(ranker, "rank_many"):
        batch = max(1, int(getattr(ranker, "users_per_batch", 1)))
    i = 0
    for b0 in range(0, len(users), batch):
        block = users[b0 : b0 + batch]
        misses = [u for u in block if found.get(keys[u]) is None]
        computed: dict[str, Any] = {}
        if misses:
            cands = {
                u: [c if isinstance(c, Candidate) else Candidate(str(c), 0.0, "sampled") for c in lists[u]]
                for u in misses
            }
            t0 = time.perf_counter()
            if batch > 1:
                rankings = ranker.rank_many([(histories[u], cands[u]) for u in misses])
                per_user = (time.perf_counter() - t0) / len(misses)
                timed = [(u, r, per_user) for u, r in zip(misses, rankings, strict=True)]
            else:
                timed = []
                for u in misses:
                    t1 = time.perf_counter()
                    if precomputed is not None:
                        r = ranker.rank(histories[u], cands[u], precomputed(u, cands[u]))
                    else:
                        r = ranker.rank(histories[u], cands[u])
                    timed.append((u, r, time.perf_counter() - t1))
            for u, ranking, dt in timed:
                hit = {
                    "ids": ranking.item_ids,
                    "scores": [float(s) if math.isfinite(s) else -1e300 for s in ranking.scores],
                    "diag": _compact_diag(ranking.diagnostics),
                    "seconds": dt,
                }
                if set(hit["ids"]) != {c.item_id for c in cands[u]}:
                    run.failures.append({"user": u, "error": "ranking is not a permutation of the candidates"})
                pending[keys[u]] = hit
                computed[u] = hit
        for u in block:
            hit = computed.get(u)
            if hit is None:
                hit = found[keys[u]]
                run.cache_hits += 1
            _record(run, u, hit, len(lists[u]))
            i += 1
            if i % flush_every == 0:
                if pending:
                    cache.put_many(pending)
                    pending.clear()
                if on_flush is not None:
                    on_flush(run)
        bar.update(len(block))  # once per block: per-user updates would show the block's time as one user's


def _record(run: RankerRun, u: str, hit: Mapping[str, Any], n_candidates: int) -> None:
    run.users.append(u)
    run.ranked.append(list(hit["ids"]))
    run.scores.append(list(hit["scores"]))
    run.seconds.append(float(hit["seconds"]))
    d = hit.get("diag") or {}
    run.tokens.append(tuple(d["tokens"]) if "tokens" in d else None)  # type: ignore[arg-type]
    run.parse.append(d.get("parse"))
    run.n_candidates.append(n_candidates)
    if "raw" in d and len(run.examples) < _EXAMPLES:
        run.examples.append({"user": u, "raw": d["raw"], "parse": d.get("parse")})


def diagnostics_summary(run: RankerRun, n_boot: int, seed: int) -> dict[str, Any]:
    """Latency, tokens and parse rates of a run (means with CIs over users)."""
    per: dict[str, list[float]] = {"seconds_per_user": list(run.seconds)}
    if any(t is not None for t in run.tokens):
        per["tokens_in_per_user"] = [t[0] if t else np.nan for t in run.tokens]
        per["tokens_out_per_user"] = [t[1] if t else np.nan for t in run.tokens]
    if any(p is not None for p in run.parse):
        valid, hall, dup, fill, fully = [], [], [], [], []
        for p, n in zip(run.parse, run.n_candidates, strict=True):
            if p is None:
                for lst in (valid, hall, dup, fill, fully):
                    lst.append(np.nan)
                continue
            emitted = p["valid"] + p["hallucinated"] + p["duplicate"]
            valid.append(p["valid"] / n if n else np.nan)
            hall.append(p["hallucinated"] / emitted if emitted else 0.0)
            dup.append(p["duplicate"] / emitted if emitted else 0.0)
            fill.append(p["filled_in"] / n if n else np.nan)
            fully.append(float(p["valid"] >= n and p["hallucinated"] == 0 and p["duplicate"] == 0))
        per.update(
            {
                "valid_rate": valid,
                "hallucination_rate": hall,
                "duplicate_rate": dup,
                "filled_in_rate": fill,
                "fully_valid_rate": fully,
            }
        )
    out: dict[str, Any] = P.summarize_per_user(per, n_boot=n_boot, seed=seed)
    out["total_seconds"] = float(np.sum(run.seconds))
    out["cache_hits"] = run.cache_hits
    out["failures"] = len(run.failures)
    return out


# ============================================================================ the runner
class ExperimentRunner:
    """Holds the state of one run; `run()` executes it (see module docstring)."""

    def __init__(self, loaded: LoadedExperiment, options: RunOptions | None = None) -> None:
        self.loaded = loaded
        self.cfg: ExperimentConfig = loaded.config
        self.opt = options or RunOptions()
        out = self.opt.out_dir if self.opt.out_dir is not None else loaded.output_base() / self.cfg.output_dir
        self.out_dir = Path(out)
        cache_dir = self.opt.cache_dir
        if cache_dir is None and self.cfg.cache_dir is not None:
            cache_dir = loaded.output_base() / self.cfg.cache_dir
        self.cache = open_cache(cache_dir, enabled=self.opt.use_cache)
        self.seeds = [self.opt.seed] if self.opt.seed is not None else list(self.cfg.protocol.seeds)
        self.results: dict[str, Any] = {}
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------ writing
    @property
    def results_path(self) -> Path:
        return self.out_dir / "results.json"

    def flush(self, status: str | None = None) -> None:
        if status is not None:
            self.results["status"] = status
        self.results["wall_time_s"] = round(time.perf_counter() - self.t0, 3)
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(self.results_path, self.results)

    def _header(self) -> dict[str, Any]:
        pr = self.cfg.protocol
        users = self.opt.users if self.opt.users is not None else pr.users
        return {
            "format": "reranker-eval/1",
            "status": "running",
            "experiment": self.cfg.name,
            "description": self.cfg.description,
            "config_file": str(self.loaded.source) if self.loaded.source else None,
            "config": self.cfg.model_dump(mode="json"),
            "overrides": {
                "users": self.opt.users,
                "seed": self.opt.seed,
                "data": str(self.opt.data_path) if self.opt.data_path else None,
                "cache": self.opt.use_cache,
            },
            "protocol": {
                "regime": pr.regime,
                "stage": pr.stage,
                "split": "chronological leave-one-out" if pr.regime != "rating" else f"random {1 - pr.rating.test_ratio:.0%}/{pr.rating.test_ratio:.0%}",
                "n_candidates": pr.n_candidates if pr.regime == "a" else pr.n_negatives + 1,
                "history_cap": pr.history_cap,
                "users_limit": users,
                "seeds": self.seeds,
                "n_boot": pr.n_boot,
                "retriever": self.cfg.retriever.model_dump(mode="json") if pr.regime == "a" else None,
            },
            "machine": machine_info(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "runs": [],
        }

    # ------------------------------------------------------------------ main entry
    def run(self) -> dict[str, Any]:
        self.results = self._header()
        self.flush()
        try:
            data = self.opt.dataset if self.opt.dataset is not None else load_data(self.loaded, self.opt.data_path)
            desc = data.describe()
            self.results["data"] = {k: desc[k] for k in ("name", "users", "items", "interactions")}
            if self.cfg.protocol.regime == "rating":
                self._run_rating(data)
            else:
                self._run_ranking(data)
            if len(self.results["runs"]) > 1:
                self.results["pooled"] = self._pool_seeds(self.results["runs"])
            self.flush("complete")
        except KeyboardInterrupt:
            log.warning("interrupted: partial results in %s", self.results_path)
            self.flush("interrupted")
            self._write_report()
            raise
        except Exception as e:
            self.results["error"] = f"{type(e).__name__}: {e}"
            self.flush("failed")
            raise
        finally:
            self.cache.close()
        self._write_report()
        return self.results

    def _write_report(self) -> None:
        if not self.opt.report:
            return
        from .report import write_report

        try:
            write_report(self.results, self.out_dir)
        except Exception:  # a broken plot must not lose the results
            log.exception("writing the report failed; results.json is intact")

    # ------------------------------------------------------------------ ranking regimes
    def _users(self, candidates: Sequence[str]) -> list[str]:
        order = P.user_order(candidates, seed=0)
        limit = self.opt.users if self.opt.users is not None else self.cfg.protocol.users
        return order[:limit] if limit else order

    def _run_ranking(self, data: Any) -> None:
        from ..data.splits import leave_one_out

        pr = self.cfg.protocol
        split = leave_one_out(data, min_interactions=self.cfg.data.min_interactions)
        fit_data = split.fit_data(pr.stage)
        histories = split.histories(pr.stage, cap=pr.history_cap)
        targets = split.targets(pr.stage)
        users = self._users([u for u in targets if u in histories])
        self.results["data"].update(
            {"evaluated_users": len(users), "eligible_users": len(targets), "excluded_users": split.excluded_users}
        )
        fp = data_fingerprint(fit_data)
        known = None
        if pr.regime == "b" or pr.position_bias.enabled:
            df = data.interactions
            known = {str(u): set(g.tolist()) for u, g in df.groupby("user_id", sort=False)["item_id"]}
        stage1: dict[str, list[Any]] | None = None
        ceiling = None
        for seed in self.seeds:
            ctx = BuildContext(fit_data=fit_data, catalog=data, cache=self.cache, seed=seed, split=split)
            if pr.regime == "a":
                if stage1 is None:
                    retr = ctx.retriever(self.cfg.retriever.type, self.cfg.retriever.params)
                    t0 = time.perf_counter()
                    stage1 = P.regime_a_lists(retr, histories, users, pr.n_candidates, self.opt.progress)
                    t_stage1 = time.perf_counter() - t0
                    hit = P.target_in([stage1[u] for u in users], [targets[u] for u in users])
                    ceiling = {
                        "recall@n": P.summarize_per_user({f"recall@{pr.n_candidates}": hit}, pr.n_boot, seed),
                        "users_with_target": int(hit.sum()),
                        "seconds": t_stage1,
                        "per_user": dict(zip(users, hit.tolist(), strict=True)),
                    }
                lists = stage1
            else:
                lists = P.regime_b_lists(users, targets, known or {}, data.item_ids, pr.n_negatives, seed)
            run_out: dict[str, Any] = {"seed": seed, "regime": pr.regime, "rankers": {}}
            if ceiling is not None:
                run_out["stage1"] = {k: v for k, v in ceiling.items() if k != "per_user"}
            self.results["runs"].append(run_out)
            self._rank_all(ctx, run_out, users, histories, targets, lists, fp, seed, ceiling)
            if pr.position_bias.enabled:
                self._bias_sweep(ctx, run_out, users, histories, targets, lists, known or {}, data, fp, seed)
            self.flush()

    def _build_all(self, ctx: BuildContext) -> dict[str, Any]:
        built: dict[str, Any] = {}
        for spec in self.cfg.rankers:
            log.info("building ranker %s (%s)", spec.name, spec.type)
            built[spec.name] = build_ranker(spec, ctx)
            ctx.built[spec.name] = built[spec.name]
        return built

    def _metric_names(self) -> list[str]:
        pr = self.cfg.protocol
        if pr.regime == "a":
            names = list(P.REGIME_A_METRICS)
            if pr.n_candidates != 20 and f"recall@{pr.n_candidates}" not in names:
                names.append(f"recall@{pr.n_candidates}")
            return names
        return list(P.REGIME_B_METRICS)

    def _rank_all(
        self,
        ctx: BuildContext,
        run_out: dict[str, Any],
        users: list[str],
        histories: Mapping[str, Any],
        targets: Mapping[str, str],
        lists: Mapping[str, Sequence[Any]],
        fp: str,
        seed: int,
        ceiling: dict[str, Any] | None,
    ) -> None:
        pr = self.cfg.protocol
        built = self._build_all(ctx)
        names = self._metric_names()
        runs: dict[str, RankerRun] = {}
        for spec in self.cfg.rankers:
            ranker = built[spec.name]
            rusers = users[: spec.users] if spec.users else users
            fpr = ranker_fingerprint(spec, fp, seed)
            entry: dict[str, Any] = {"type": spec.type, "params": spec.params, "complete": False}
            fit = getattr(getattr(ranker, "head", None), "fit_report", None)
            if fit:  # learned heads: how the fit went (guard check, weights)
                entry["fit_report"] = fit
            run_out["rankers"][spec.name] = entry

            def flush_partial(r: RankerRun, entry: dict[str, Any] = entry) -> None:
                entry.update(self._ranker_entry(r, targets, names, seed, ceiling, partial=True))
                self.flush()

            pre = self._precomputed(spec, runs, users) if spec.type == "fusion" else None
            t0 = time.perf_counter()
            r = rank_users(
                ranker, spec.name, fpr, rusers, histories, lists, self.cache,
                progress=self.opt.progress, on_flush=flush_partial,
                flush_every=self.opt.flush_every, precomputed=pre,
            )
            runs[spec.name] = r
            entry.update(self._ranker_entry(r, targets, names, seed, ceiling, partial=False))
            entry["wall_seconds"] = time.perf_counter() - t0
            entry["complete"] = True
            self.flush()
        ref = pr.compare_to
        if ref and ref in runs:
            run_out["paired_vs"] = ref
            for name, entry in run_out["rankers"].items():
                if name == ref:
                    continue
                entry["paired"] = {
                    m: P.paired_difference(entry["per_user"][m], run_out["rankers"][ref]["per_user"][m], pr.n_boot, seed)
                    for m in names
                }
        pairs = [(a, b) for a, b in pr.pairs if a in runs and b in runs]
        if pairs:
            per = {n: run_out["rankers"][n]["per_user"] for p in pairs for n in p}
            run_out["pairs"] = [
                {"a": a, "b": b, "diff": {m: P.paired_difference(per[a][m], per[b][m], pr.n_boot, seed) for m in names}}
                for a, b in pairs
            ]

    def _precomputed(self, spec: RankerSpec, runs: Mapping[str, RankerRun], users: list[str]) -> Any:
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

    def _ranker_entry(
        self,
        r: RankerRun,
        targets: Mapping[str, str],
        names: list[str],
        seed: int,
        ceiling: dict[str, Any] | None,
        partial: bool,
    ) -> dict[str, Any]:
        pr = self.cfg.protocol
        tg = [targets[u] for u in r.users]
        per = P.per_user_metrics(r.ranked, tg, names)
        entry: dict[str, Any] = {
            "n_users": len(r.users),
            "summary": P.summarize_per_user(per, pr.n_boot, seed),
            "diagnostics": diagnostics_summary(r, pr.n_boot, seed),
        }
        if ceiling is not None:
            inside = np.array([ceiling["per_user"][u] for u in r.users], dtype=bool)
            entry["summary_target_in_candidates"] = P.summarize_per_user(
                {m: v[inside] for m, v in per.items()}, pr.n_boot, seed
            )
        if not partial:
            max_k = max(len(x) for x in r.ranked) if r.ranked else 20
            entry["pr_curve"] = P.pr_curve(r.ranked, tg, max_k=min(max_k, 20))
            entry["examples"] = r.examples
            entry["failures"] = r.failures[:10]
        entry["per_user"] = {m: dict(zip(r.users, v.tolist(), strict=True)) for m, v in per.items()}
        entry["per_user"]["seconds"] = dict(zip(r.users, r.seconds, strict=True))
        return entry

    # ------------------------------------------------------------------ position bias
    def _bias_sweep(
        self,
        ctx: BuildContext,
        run_out: dict[str, Any],
        users: list[str],
        histories: Mapping[str, Any],
        targets: Mapping[str, str],
        lists: Mapping[str, Sequence[Any]],
        known: Mapping[str, set[str]],
        data: Any,
        fp: str,
        seed: int,
    ) -> None:
        pb = self.cfg.protocol.position_bias
        pr = self.cfg.protocol
        bias_users = users[: pb.users]
        if pr.regime == "a":  # the stage-1 list, target inserted when missing
            base = {u: [getattr(c, "item_id", c) for c in lists[u]] for u in bias_users}
        else:
            base = {u: list(lists[u]) for u in bias_users}
        specs = [s for s in self.cfg.rankers if (pb.rankers is None or s.name in pb.rankers)]
        out: dict[str, Any] = {"positions": pb.positions, "users": len(bias_users), "rankers": {}}
        run_out["position_bias"] = out
        for spec in specs:
            variants = [("plain", spec)]
            if spec.type in pb.bootstrap_params:
                params = {**spec.params, **pb.bootstrap_params[spec.type]}
                variants.append(("bootstrap", spec.model_copy(update={"params": params})))
            res: dict[str, Any] = {}
            for vname, vspec in variants:
                ranker = ctx.built[spec.name] if vname == "plain" else build_ranker(vspec, ctx)
                fpr = ranker_fingerprint(vspec, fp, seed)
                cells = {}
                for pos in pb.positions:
                    plist = {u: P.place_target(base[u], targets[u], pos) for u in bias_users}
                    r = rank_users(
                        ranker, f"{spec.name}/{vname}@{pos}", fpr, bias_users, histories, plist,
                        self.cache, salt=f"bias{pos}", progress=self.opt.progress,
                        flush_every=10**9,
                    )
                    cells[str(pos)] = P.bias_metrics(r.ranked, [targets[u] for u in bias_users])
                res[vname] = cells
            out["rankers"][spec.name] = {"type": spec.type, **res}
            self.flush()

    # ------------------------------------------------------------------ rating regime
    def _run_rating(self, data: Any) -> None:
        from ..data.splits import random_split

        pr = self.cfg.protocol
        if not data.has_ratings:
            raise DataError("regime 'rating' needs explicit ratings; this dataset has none", path=str(self.cfg.data.path))
        for seed in self.seeds:
            train, test = random_split(data, test_ratio=pr.rating.test_ratio, seed=seed)
            if self.opt.users is not None or pr.users is not None:
                keep = set(self._users(test["user_id"].unique().tolist()))
                test = test[test["user_id"].isin(keep)].reset_index(drop=True)
            y = test["rating"].to_numpy(dtype=np.float64)
            run_out: dict[str, Any] = {"seed": seed, "regime": "rating", "n_test": len(test), "models": {}}
            self.results["runs"].append(run_out)
            for spec in self.cfg.rankers:
                curve = []
                for k in pr.rating.k_values:
                    params = {**spec.params, pr.rating.k_param: k}
                    t0 = time.perf_counter()
                    model = build_retriever(spec.type, params, train)
                    t_fit = time.perf_counter() - t0
                    pred = predict_ratings(model, test["user_id"].tolist(), test["item_id"].tolist())
                    t_pred = time.perf_counter() - t0 - t_fit
                    err = np.abs(pred - y)
                    mae_m, mae_lo, mae_hi = _ci(err, pr.n_boot, seed)
                    sq = (pred - y) ** 2
                    rm, rlo, rhi = _ci(sq, pr.n_boot, seed)
                    curve.append(
                        {
                            "k": k,
                            "mae": mae_m, "mae_ci": [mae_lo, mae_hi],
                            "rmse": math.sqrt(rm), "rmse_ci": [math.sqrt(rlo), math.sqrt(rhi)],
                            "fit_seconds": t_fit, "predict_seconds": t_pred,
                        }
                    )
                    self.flush()
                run_out["models"][spec.name] = {"type": spec.type, "params": spec.params, "by_k": curve}
                self.flush()

    # ------------------------------------------------------------------ seeds
    def _pool_seeds(self, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """Per ranker: per-user metrics averaged over seeds, then mean and CI over users."""
        pr = self.cfg.protocol
        if pr.regime == "rating":
            out: dict[str, Any] = {}
            for name in runs[0]["models"]:
                ks = [c["k"] for c in runs[0]["models"][name]["by_k"]]
                out[name] = {
                    str(k): {
                        "mae": float(np.mean([r["models"][name]["by_k"][i]["mae"] for r in runs])),
                        "rmse": float(np.mean([r["models"][name]["by_k"][i]["rmse"] for r in runs])),
                    }
                    for i, k in enumerate(ks)
                }
            return out
        pooled: dict[str, Any] = {}
        for name in runs[0]["rankers"]:
            per: dict[str, list[float]] = {}
            for m in runs[0]["rankers"][name]["summary"]:
                users = list(runs[0]["rankers"][name]["per_user"][m])
                vals = np.array(
                    [[r["rankers"][name]["per_user"][m].get(u, np.nan) for u in users] for r in runs], dtype=np.float64
                )
                with np.errstate(all="ignore"):
                    per[m] = np.nanmean(vals, axis=0).tolist()
            pooled[name] = {"seeds": len(runs), "summary": P.summarize_per_user(per, pr.n_boot, 0)}
        return pooled


def _ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    from .metrics import bootstrap_ci

    return bootstrap_ci(values, n_boot=n_boot, seed=seed)


def predict_ratings(model: Any, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
    """Predicted ratings for (user, item) pairs, batched when the model offers it."""
    for name in ("predict_ratings", "predict_batch", "predict_rating_batch"):
        fn = getattr(model, name, None)
        if callable(fn):
            got = fn(list(user_ids), list(item_ids))
            for attr in ("values", "ratings"):
                v = getattr(got, attr, None)
                if isinstance(v, np.ndarray | list):
                    got = v
                    break
            return np.asarray(got, dtype=np.float64)
    out = np.empty(len(user_ids))
    for i, (u, it) in enumerate(zip(user_ids, item_ids, strict=True)):
        p = model.predict_rating(u, it)
        out[i] = float(getattr(p, "rating", getattr(p, "value", p)))
    return out


def run_experiment(
    config: str | Path | LoadedExperiment, options: RunOptions | None = None
) -> dict[str, Any]:
    """Load (if a path) and run an experiment; returns the results dict (also on disk)."""
    from .experiment import load_experiment

    loaded = config if isinstance(config, LoadedExperiment) else load_experiment(config)
    return ExperimentRunner(loaded, options).run()


def is_llm_type(t: str) -> bool:
    return t in LLM_TYPES
