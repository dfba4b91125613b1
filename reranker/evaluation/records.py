"""Typed records of an experiment run; each serialises (``to_dict``) to exactly the dict that
results.json has always held, keys in the same order.

Ranking regimes (A, B, C), per seed (regime C with cold users: per seed and history cut): a :class:`SeedResult` holding one :class:`RankerEntry` per
ranker (its :class:`RankerScores`, paired differences, timing), the :class:`Stage1Ceiling`
(regime A), :class:`PairedDiff` rows and the :class:`BiasSweep`. The per-user outputs of ranking
one set of lists are a :class:`RankerRun`, built from :class:`CachedRanking` values (the form a
ranking takes in the evaluation cache).

Rating regime, per seed: a :class:`RatingSeedResult` holding one :class:`RatingModel` per model,
each a list of :class:`RatingPoint` (one per K).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CachedRanking",
    "RankerRun",
    "RankerScores",
    "RankerEntry",
    "Stage1Ceiling",
    "PairedDiff",
    "BiasSweep",
    "SeedResult",
    "RatingPoint",
    "RatingModel",
    "RatingSeedResult",
]

_EXAMPLES = 3
"""Raw LLM outputs kept per ranker for the report."""


# ============================================================================ one ranking
@dataclass
class CachedRanking:
    """One user's ranking as stored in the evaluation cache (a JSON object with these keys)."""

    ids: list[str]
    scores: list[float]
    diag: dict[str, Any]
    """Compact diagnostics: ``parse`` stats, ``tokens`` (in, out), ``raw`` text (truncated),
    ``labels`` (missing, scored) when a server returned only its top-k label log-probabilities."""
    seconds: float
    """Latency measured when the ranking was computed (cached users report it too)."""

    def to_cache(self) -> dict[str, Any]:
        return {"ids": self.ids, "scores": self.scores, "diag": self.diag, "seconds": self.seconds}

    @classmethod
    def from_cache(cls, value: Mapping[str, Any]) -> CachedRanking:
        return cls(list(value["ids"]), list(value["scores"]), value.get("diag") or {}, float(value["seconds"]))


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
    labels: list[tuple[int, int] | None] = field(default_factory=list)
    """(label scores missing from the server's top-k, label scores asked for) per user; None:
    an exact backend (every label's logit read) or a ranker that scores no labels."""
    n_candidates: list[int] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    cache_hits: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def add(self, user: str, ranking: CachedRanking, n_candidates: int) -> None:
        """Append one user's ranking (computed or from the cache)."""
        self.users.append(user)
        self.ranked.append(list(ranking.ids))
        self.scores.append(list(ranking.scores))
        self.seconds.append(float(ranking.seconds))
        d = ranking.diag
        self.tokens.append((d["tokens"][0], d["tokens"][1]) if "tokens" in d else None)
        self.parse.append(d.get("parse"))
        self.labels.append((int(d["labels"][0]), int(d["labels"][1])) if "labels" in d else None)
        self.n_candidates.append(n_candidates)
        if "raw" in d and len(self.examples) < _EXAMPLES:
            self.examples.append({"user": user, "raw": d["raw"], "parse": d.get("parse")})


# ============================================================================ ranking regimes
@dataclass
class RankerScores:
    """A ranker's metrics over the users ranked so far (``partial``) or over all of them."""

    n_users: int
    summary: dict[str, Any]
    """``{metric: {mean, ci_lo, ci_hi, n}}`` over all ranked users."""
    diagnostics: dict[str, Any]
    """Latency, tokens, parse rates (means with CIs), total seconds, cache hits, failures."""
    per_user: dict[str, dict[str, Any]]
    """``{metric: {user: value}}`` plus ``"seconds"``."""
    summary_target_in_candidates: dict[str, Any] | None = None
    """Regime A: the summary over users whose target is among the stage-1 candidates."""
    pr_curve: dict[str, list[int] | list[float]] | None = None
    examples: list[dict[str, Any]] | None = None
    failures: list[dict[str, str]] | None = None
    partial: bool = False
    """True while the ranker is still running: no PR curve, examples or failures yet."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_users": self.n_users, "summary": self.summary, "diagnostics": self.diagnostics}
        if self.summary_target_in_candidates is not None:
            out["summary_target_in_candidates"] = self.summary_target_in_candidates
        if not self.partial:
            out["pr_curve"] = self.pr_curve
            out["examples"] = self.examples
            out["failures"] = self.failures
        out["per_user"] = self.per_user
        return out


@dataclass
class RankerEntry:
    """One ranker's entry in a seed's ``rankers`` table of results.json."""

    type: str
    params: dict[str, Any]
    fit_report: Any = None
    """Learned heads: how the fit went (guard check, weights); omitted when empty."""
    complete: bool = False
    scores: RankerScores | None = None
    wall_seconds: float | None = None
    paired: dict[str, Any] | None = None
    """``{metric: paired difference}`` against ``protocol.compare_to``."""
    _flushed_partial: bool = field(default=False, repr=False)

    def record(self, scores: RankerScores) -> None:
        """Replace the scores (partial ones while ranking, the full ones at the end)."""
        self.scores = scores
        if scores.partial:
            self._flushed_partial = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "params": self.params, "complete": self.complete}
        if self.fit_report:
            out["fit_report"] = self.fit_report
        if self.scores is not None:
            s = self.scores.to_dict()
            if self._flushed_partial and not self.scores.partial:
                # results.json keeps ``per_user`` where the first partial write placed it:
                # before the keys only a finished ranker has
                tail = {k: s.pop(k) for k in ("pr_curve", "examples", "failures")}
                s = {**s, **tail}
            out.update(s)
        if self.wall_seconds is not None:
            out["wall_seconds"] = self.wall_seconds
        if self.paired is not None:
            out["paired"] = self.paired
        return out


@dataclass(frozen=True)
class Stage1Ceiling:
    """Regime A: how often the stage-1 candidates hold the target (the rerankers' ceiling)."""

    recall: dict[str, Any]
    """``{"recall@<n>": {mean, ci_lo, ci_hi, n}}``."""
    users_with_target: int
    seconds: float
    per_user: dict[str, bool]
    """Whether each user's target is among the candidates (not written to results.json)."""

    def to_dict(self) -> dict[str, Any]:
        return {"recall@n": self.recall, "users_with_target": self.users_with_target, "seconds": self.seconds}


@dataclass(frozen=True)
class PairedDiff:
    """Per-user difference ``a - b`` between two rows, per metric (``protocol.pairs``)."""

    a: str
    b: str
    diff: dict[str, Any]
    agreement: dict[str, Any] | None = None
    """How alike the two rows score each user's candidates: ``{spearman_median, spearman_mean,
    n}`` over the users where both rows' scores vary (`score_agreement`)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"a": self.a, "b": self.b, "diff": self.diff}
        if self.agreement is not None:
            out["agreement"] = self.agreement
        return out


@dataclass
class BiasSweep:
    """The position-bias sweep: per ranker and variant (``plain``, ``bootstrap``), the
    ``bias_metrics`` of the target forced to each position."""

    positions: list[int]
    users: int
    rankers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``{name: {"type": ..., variant: {str(position): {hr@1, mean_rank, ...}}}}``."""

    def to_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "users": self.users, "rankers": self.rankers}


@dataclass
class SeedResult:
    """One seed of a ranking regime (A, B or C): one entry of results.json's ``runs`` (regime C
    with cold users: one per seed and history cut, named by ``block``)."""

    seed: int
    regime: str
    rankers: dict[str, RankerEntry] = field(default_factory=dict)
    stage1: Stage1Ceiling | None = None
    paired_vs: str | None = None
    pairs: list[PairedDiff] | None = None
    position_bias: BiasSweep | None = None
    injection: dict[str, Any] | None = None
    """The injection sweep (`reranker.evaluation.injection.injection_sweep`), when enabled."""
    block: str | None = None
    """Regime C with cold users: which history cut (``"history 3"``); None otherwise."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed, "regime": self.regime}
        if self.block is not None:
            out["block"] = self.block
        out["rankers"] = {name: e.to_dict() for name, e in self.rankers.items()}
        if self.stage1 is not None:
            out["stage1"] = self.stage1.to_dict()
        if self.paired_vs is not None:
            out["paired_vs"] = self.paired_vs
        if self.pairs is not None:
            out["pairs"] = [p.to_dict() for p in self.pairs]
        if self.position_bias is not None:
            out["position_bias"] = self.position_bias.to_dict()
        if self.injection is not None:
            out["injection"] = self.injection
        return out


# ============================================================================ rating regime
@dataclass(frozen=True)
class RatingPoint:
    """MAE / RMSE (with bootstrap CIs over test ratings) of one model at one K."""

    k: int
    mae: float
    mae_ci: list[float]
    rmse: float
    rmse_ci: list[float]
    fit_seconds: float
    predict_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "mae": self.mae, "mae_ci": self.mae_ci,
            "rmse": self.rmse, "rmse_ci": self.rmse_ci,
            "fit_seconds": self.fit_seconds, "predict_seconds": self.predict_seconds,
        }


@dataclass
class RatingModel:
    """One rating predictor's curve over K."""

    type: str
    params: dict[str, Any]
    by_k: list[RatingPoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "params": self.params, "by_k": [p.to_dict() for p in self.by_k]}


@dataclass
class RatingSeedResult:
    """One seed of the rating regime: one entry of results.json's ``runs``."""

    seed: int
    n_test: int
    models: dict[str, RatingModel] = field(default_factory=dict)
    regime: str = "rating"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "regime": self.regime,
            "n_test": self.n_test,
            "models": {name: m.to_dict() for name, m in self.models.items()},
        }
