"""Run an experiment config end to end: data -> split -> candidates -> rankers -> results.

``run_experiment(loaded, ...)`` returns the results dict and writes ``results.json`` (atomically,
after every ranker and every ``flush_every`` users, so Ctrl-C leaves a valid partial file with
``"status": "interrupted"``), then ``report.md`` and the PNG plots.

Each (ranker, user, history, candidate list) ranking is cached (`reranker.evaluation.cache`),
keyed by a fingerprint of the ranker's type and parameters, the fit data and the seed: a repeated
or interrupted run takes finished users from the cache. Latency reported for a cached user is the
latency measured when it was computed.

Layout: :class:`ExperimentRunner` holds one run's state and writes its files. What the stages
read travels in a :class:`~.run_context.RunContext` (and, per seed of a ranking regime, a
:class:`~.run_context.SeedContext`); what they produce are the typed records of
:mod:`.records`. The stages: :mod:`.ranking_regime` (regimes A, B and C; C's cold set from :mod:`.cold_start`), :mod:`.ranking_run` (the
cached ranking engine), :mod:`.bias` (position-bias sweep), :mod:`.rating_regime` (MAE / RMSE vs
K); :mod:`.results_io` writes the JSON.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from . import rating_regime
from .cache import open_cache
from .experiment import LLM_TYPES, ExperimentConfig, LoadedExperiment
from .ranking_regime import pool_seeds as pool_ranking_seeds
from .ranking_regime import run_ranking
from .ranking_run import diagnostics_summary, rank_users
from .rating_regime import predict_ratings
from .records import RankerRun, RatingSeedResult, SeedResult
from .results_io import machine_info, write_json_atomic
from .run_context import RunContext, RunOptions

log = logging.getLogger(__name__)

__all__ = [
    "ExperimentRunner",
    "RunOptions",
    "run_experiment",
    "write_json_atomic",
    "machine_info",
    "load_data",
    "rank_users",
    "RankerRun",
    "diagnostics_summary",
    "predict_ratings",
    "is_llm_type",
]


def load_data(loaded: LoadedExperiment, data_path: str | Path | None = None, progress: bool = True) -> Any:
    """The experiment's Dataset (``data_path`` overrides ``data.path``; ``data.name`` is fetched
    into the cache on first use, with a progress bar unless ``progress`` is False)."""
    spec = loaded.config.data
    if data_path is not None or spec.path is not None:
        from ..data.loaders import load

        path = Path(data_path).expanduser() if data_path is not None else loaded.resolve(spec.path or "", must_exist=True)
        if not path.exists():
            raise DataError("no such file or folder", path=str(path))
        items = str(loaded.resolve(spec.items, must_exist=True, what="data.items")) if spec.items is not None else None
        # --data over a config naming a data set: the format is told from the files
        fmt = "auto" if spec.name is not None and "format" not in spec.model_fields_set else spec.format
        return load(path, format=fmt, items=items, columns=spec.columns,
                    item_columns=spec.item_columns, sep=spec.sep, category_sep=spec.category_sep)
    if spec.name is not None:  # a data set `reranker data fetch` knows: the cache, fetched on first use
        from ..data.fetch import load_named

        return load_named(spec.name, spec.format if "format" in spec.model_fields_set else None, progress=progress)
    assert spec.synthetic is not None
    try:
        from ..data.synthetic import generate_world
    except ImportError as e:  # pragma: no cover - depends on installation
        raise ConfigError(f"data.synthetic: the generated world is not available ({e})") from None
    s = spec.synthetic
    return generate_world(seed=s.seed, n_users=s.n_users, n_items=s.n_items).dataset


class ExperimentRunner:
    """Holds the state of one run; `run()` executes it (see module docstring)."""

    def __init__(self, loaded: LoadedExperiment, options: RunOptions | None = None) -> None:
        self.loaded = loaded
        self.cfg: ExperimentConfig = loaded.config
        self.opt = options or RunOptions()
        out = self.opt.out_dir if self.opt.out_dir is not None else loaded.output_base() / self.cfg.output_dir
        from ..paths import check_output_dir

        # an output folder that cannot be written fails here, not after the first ranker
        self.out_dir = check_output_dir(out, "--out" if self.opt.out_dir is not None else "output_dir")
        cache_dir = self.opt.cache_dir
        if cache_dir is None and self.cfg.cache_dir is not None:
            cache_dir = loaded.output_base() / self.cfg.cache_dir
        self.cache = open_cache(cache_dir, enabled=self.opt.use_cache)
        self.seeds = [self.opt.seed] if self.opt.seed is not None else list(self.cfg.protocol.seeds)
        self.context = RunContext(
            loaded=loaded, options=self.opt, cache=self.cache, seeds=tuple(self.seeds), flush=self.flush
        )
        self._top: dict[str, Any] = {}
        """results.json's top level; its ``"runs"`` is written from ``self.runs``."""
        self.runs: list[SeedResult | RatingSeedResult] = []
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------ writing
    @property
    def results_path(self) -> Path:
        return self.out_dir / "results.json"

    @property
    def results(self) -> dict[str, Any]:
        """The results as written to results.json (plain dicts and lists)."""
        return {k: ([r.to_dict() for r in self.runs] if k == "runs" else v) for k, v in self._top.items()}

    def flush(self, status: str | None = None) -> None:
        if status is not None:
            self._top["status"] = status
        self._top["wall_time_s"] = round(time.perf_counter() - self.t0, 3)
        self._top["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(self.results_path, self.results)

    def _header(self) -> dict[str, Any]:
        pr = self.cfg.protocol
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
                "split": {"rating": f"random {1 - pr.rating.test_ratio:.0%}/{pr.rating.test_ratio:.0%}",
                          "c": f"cold start (regime C, cold {pr.cold.kind})"}.get(pr.regime, "chronological leave-one-out"),
                # how ties in time are ordered (split targets, histories); not used by the rating split
                "ties": pr.ties if pr.regime != "rating" else None,
                "tie_seed": pr.tie_seed if pr.regime != "rating" and pr.ties == "random" else None,
                "n_candidates": pr.n_candidates if pr.regime == "a" else pr.n_negatives + 1,
                "history_cap": pr.history_cap,
                "users_limit": self.context.user_limit,
                "seeds": self.seeds,
                "n_boot": pr.n_boot,
                "retriever": self.cfg.retriever.model_dump(mode="json") if pr.regime == "a" else None,
            },
            "prompt_version": _prompt_version(),
            "machine": machine_info(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "runs": [],
        }

    # ------------------------------------------------------------------ main entry
    def run(self) -> dict[str, Any]:
        self._top = self._header()
        self.runs = []
        self.flush()
        try:
            data = self.opt.dataset if self.opt.dataset is not None else load_data(self.loaded, self.opt.data_path, self.opt.progress)
            # the protocol's order of ties in time travels with the data (split, histories, fits)
            data = data.with_tie_order(self.cfg.protocol.ties, self.cfg.protocol.tie_seed)
            desc = data.describe()
            self._top["data"] = {k: desc[k] for k in ("name", "users", "items", "interactions")}
            if self.cfg.protocol.regime != "rating" and not data.has_timestamps:  # said so in the report
                self._top["protocol"]["split"] = (f"seeded random leave-one-out (the data has no timestamps; "
                                                  f"seed {data.tie_order.seed})")
                self._top["protocol"]["time_features"] = ("off: no timestamps (learned heads drop the recency "
                                                          "and trend features)")
            if self.cfg.protocol.regime == "rating":
                rating_regime.run_rating(self.context, data, self.runs)
            else:
                run_ranking(self.context, data, self.runs, self._top["data"], self._top["protocol"])
            if len(self.seeds) > 1 and self.runs:
                self._top["pooled"] = self._pool_seeds()
            self.flush("complete")
        except KeyboardInterrupt:
            log.warning("interrupted: partial results in %s", self.results_path)
            self.flush("interrupted")
            self._write_report()
            raise
        except Exception as e:
            self._top["error"] = f"{type(e).__name__}: {e}"
            self.flush("failed")
            raise
        finally:
            self.cache.close()
        self._write_report()
        return self.results

    def _pool_seeds(self) -> dict[str, Any]:
        """Per ranker: per-user metrics averaged over seeds, then mean and CI over users
        (rating regime: MAE / RMSE per K averaged over seeds)."""
        if self.cfg.protocol.regime == "rating":
            return rating_regime.pool_seeds([r for r in self.runs if isinstance(r, RatingSeedResult)])
        return pool_ranking_seeds([r for r in self.runs if isinstance(r, SeedResult)], self.cfg.protocol.n_boot)

    def _write_report(self) -> None:
        if not self.opt.report:
            return
        from .report import write_report

        try:
            write_report(self.results, self.out_dir)
        except Exception:  # a broken plot must not lose the results
            log.exception("writing the report failed; results.json is intact")


def run_experiment(
    config: str | Path | LoadedExperiment, options: RunOptions | None = None
) -> dict[str, Any]:
    """Load (if a path) and run an experiment; returns the results dict (also on disk)."""
    from .experiment import load_experiment

    loaded = config if isinstance(config, LoadedExperiment) else load_experiment(config)
    return ExperimentRunner(loaded, options).run()


def _prompt_version() -> int:
    """The built-in prompts' version (`reranker.llm.prompts.PROMPT_VERSION`): which prompts the
    LLM rows of this results.json saw (1: before issue 19)."""
    from ..llm.prompts import PROMPT_VERSION

    return PROMPT_VERSION


def is_llm_type(t: str) -> bool:
    return t in LLM_TYPES
