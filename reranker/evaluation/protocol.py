"""Evaluation protocols: candidate lists, metrics per user, position bias, paired differences.

Chronological leave-one-out (``reranker.data.splits.leave_one_out``), history capped at 20; ties
in time ordered by ``protocol.ties`` / ``tie_seed`` (``reranker.data.ordering``).

- **Regime A** (``regime_a_lists``): the stage-1 retriever's top-n (n = 20 by default) is
  reranked; NDCG@10, Recall@10, Recall@20, MRR@10 over all users (a user whose target was not
  retrieved scores 0), the retriever's Recall@n ceiling (``target_in``), and the same metrics on
  the users whose target is among the candidates.
- **Regime B** (``regime_b_lists``): the target plus ``n_negatives`` (19) items sampled uniformly
  from the catalog, never an item of the user's full known history nor the target, shuffled; all
  seeded per (seed, user), so a subset of users gets the same lists; NDCG@1/5/10, HR@1, HR@5.
- **Regime C** (cold start, `reranker.evaluation.cold_start`): cold items (the newest share of
  the items loses every interaction; the target and negatives are cold items) or cold users (a
  share of the users loses every interaction; histories cut to their last 1/3/5 items); the
  lists are drawn like regime B's from the cold / warm item pool; the metrics are regime B's.
- **Position bias** (``place_target``): the target is forced to a given position of the list the
  ranker sees.

Everything here is a pure function of its inputs; `reranker.evaluation.runner` orchestrates.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..retrieval.base import BatchRetriever
from ..types import item_id_of
from .metrics import bootstrap_ci, ranking_metrics

__all__ = [
    "REGIME_A_METRICS",
    "REGIME_B_METRICS",
    "user_order",
    "user_rng",
    "sample_negatives",
    "regime_a_lists",
    "regime_b_lists",
    "place_target",
    "per_user_metrics",
    "pr_curve",
    "target_in",
    "target_ranks",
    "bias_metrics",
    "parse_stats",
    "token_count",
    "summarize_per_user",
    "paired_difference",
]

REGIME_A_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "recall@20", "mrr@10")
REGIME_B_METRICS: tuple[str, ...] = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "mrr@10")

_METRIC_RE = re.compile(r"^(precision|recall|f1|ndcg|hr|mrr)@(\d+)$")


# ----------------------------------------------------------------------------- users and seeds
def user_order(users: Collection[str], seed: int = 0) -> list[str]:
    """A seeded permutation of the users (sorted first, so it depends only on the set).

    Taking the first N gives nested, comparable subsets: the first 100 are among the first 300.
    """
    ordered = sorted(str(u) for u in users)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    return [ordered[i] for i in perm]


def user_rng(seed: int, user_id: str, salt: str = "") -> np.random.Generator:
    """A generator seeded by (seed, user, salt): the same for a user whatever the other users."""
    return np.random.default_rng([int(seed), zlib.crc32(str(user_id).encode()), zlib.crc32(salt.encode())])


# ----------------------------------------------------------------------------- candidate lists
def sample_negatives(
    known: Collection[str],
    target: str,
    item_ids: np.ndarray,
    n: int,
    rng: np.random.Generator,
    item_pos: Mapping[str, int] | None = None,
) -> list[str]:
    """``n`` distinct items drawn uniformly from ``item_ids`` minus ``known`` and the target.

    Raises DataError (a ValueError) when fewer than ``n`` items are eligible.
    """
    ids = np.asarray(item_ids)
    pos = item_pos if item_pos is not None else {str(x): i for i, x in enumerate(ids.tolist())}
    banned = np.zeros(len(ids), dtype=bool)
    idx = [pos[i] for i in (*known, target) if i in pos]
    banned[idx] = True
    eligible = np.flatnonzero(~banned)
    if eligible.size < n:
        raise DataError(
            f"only {eligible.size} unseen items for user with target {target!r}; {n} negatives needed "
            "(a larger catalog or fewer negatives)",
            column="item_id",
        )
    chosen = rng.choice(eligible, size=n, replace=False)
    return [str(ids[i]) for i in chosen]


def regime_b_lists(
    users: Sequence[str],
    targets: Mapping[str, str],
    known: Mapping[str, Collection[str]],
    item_ids: Sequence[str] | np.ndarray,
    n_negatives: int = 19,
    seed: int = 0,
    salt: str = "regime-b",
) -> dict[str, list[str]]:
    """Per user: the target plus ``n_negatives`` items of ``item_ids`` the user never touched,
    shuffled (seeded by seed, user and ``salt``; regime C draws from its own pools with its
    own salts)."""
    ids = np.asarray([str(i) for i in item_ids], dtype=object)
    pos = {x: i for i, x in enumerate(ids.tolist())}
    out: dict[str, list[str]] = {}
    for u in users:
        rng = user_rng(seed, u, salt)
        t = str(targets[u])
        lst = [t, *sample_negatives(known.get(u, ()), t, ids, n_negatives, rng, pos)]
        out[u] = [lst[i] for i in rng.permutation(len(lst))]
    return out


def regime_a_lists(
    retriever: Any,
    histories: Mapping[str, Any],
    users: Sequence[str],
    n: int,
    progress: bool = False,
) -> dict[str, list[Any]]:
    """Per user: the retriever's top-``n`` Candidates for the user's history (seen items excluded).

    Uses ``retriever.retrieve_batch(histories, n)`` when the retriever has it.
    """
    hs = [histories[u] for u in users]
    if isinstance(retriever, BatchRetriever):
        got = retriever.retrieve_batch(hs, n)
        if isinstance(got, Mapping):
            return {u: list(got[u]) for u in users}
        return {u: list(c) for u, c in zip(users, got, strict=True)}
    from tqdm.auto import tqdm

    return {
        u: list(retriever.retrieve(h, n))
        for u, h in tqdm(list(zip(users, hs, strict=True)), desc="stage 1", disable=not progress, leave=False)
    }


def place_target(ids: Sequence[str], target: str, position: int) -> list[str]:
    """The list with ``target`` moved to ``position`` (0-based), others in their order.

    When the target is absent it replaces the last item; the position is clipped to the list.
    """
    rest = [i for i in ids if i != target]
    if len(rest) == len(ids):  # absent: make room
        rest = rest[:-1] if rest else rest
    p = min(max(int(position), 0), len(rest))
    return [*rest[:p], target, *rest[p:]]


# ----------------------------------------------------------------------------- metrics
def _parse_metric(name: str) -> tuple[str, int]:
    m = _METRIC_RE.match(name)
    if not m:
        raise ConfigError(f"unknown metric {name!r}; use e.g. ndcg@10, recall@20, hr@1, mrr@10")
    if int(m.group(2)) < 1:
        raise ConfigError(f"metric {name!r}: the cut-off after '@' must be >= 1")
    return m.group(1), int(m.group(2))


def per_user_metrics(
    ranked: Sequence[Sequence[str]], targets: Sequence[str], names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per-user values of each named metric (``"ndcg@10"`` ...), one target item per user."""
    if not ranked:
        return {n: np.zeros(0) for n in names}
    parsed = [_parse_metric(n) for n in names]
    ks = sorted({k for _, k in parsed})
    kinds = sorted({m for m, _ in parsed})
    allm = ranking_metrics(ranked, [str(t) for t in targets], ks=ks, metrics=kinds)
    return {n: allm[n] for n in names}


def pr_curve(
    ranked: Sequence[Sequence[str]], targets: Sequence[str], max_k: int = 20
) -> dict[str, list[int] | list[float]]:
    """Mean Precision@K and Recall@K for K = 1..max_k (the seed paper's PR curve)."""
    ks = list(range(1, max_k + 1))
    if not ranked:
        return {"k": ks, "precision": [float("nan")] * max_k, "recall": [float("nan")] * max_k}
    m = ranking_metrics(ranked, [str(t) for t in targets], ks=ks, metrics=("precision", "recall"))
    return {
        "k": ks,
        "precision": [float(np.nanmean(m[f"precision@{k}"])) for k in ks],
        "recall": [float(np.nanmean(m[f"recall@{k}"])) for k in ks],
    }


def target_in(lists: Sequence[Sequence[Any]], targets: Sequence[str]) -> np.ndarray:
    """Per user 1.0 when the target is in the list (the Recall@n ceiling of stage 1)."""
    out = np.zeros(len(lists))
    for i, (lst, t) in enumerate(zip(lists, targets, strict=True)):
        ids = {item_id_of(c) for c in lst}
        out[i] = float(str(t) in ids)
    return out


def target_ranks(ranked: Sequence[Sequence[str]], targets: Sequence[str]) -> np.ndarray:
    """1-based rank of the target in each list (NaN when absent)."""
    out = np.full(len(ranked), np.nan)
    for i, (lst, t) in enumerate(zip(ranked, targets, strict=True)):
        try:
            out[i] = list(lst).index(str(t)) + 1
        except ValueError:
            pass
    return out


def bias_metrics(ranked: Sequence[Sequence[str]], targets: Sequence[str]) -> dict[str, float]:
    """Summary of one position-bias cell: HR@1, HR@5, NDCG@10 and the mean rank of the target."""
    m = per_user_metrics(ranked, targets, ["hr@1", "hr@5", "ndcg@10"])
    ranks = target_ranks(ranked, targets)
    return {
        "hr@1": float(np.nanmean(m["hr@1"])),
        "hr@5": float(np.nanmean(m["hr@5"])),
        "ndcg@10": float(np.nanmean(m["ndcg@10"])),
        "mean_rank": float(np.nanmean(ranks)),
        "n": len(ranked),
    }


# ----------------------------------------------------------------------------- diagnostics
_PARSE_KEYS = ("valid", "hallucinated", "duplicate", "filled_in")


def _find(d: Mapping[str, Any], names: Sequence[str]) -> Any:
    for n in names:
        if n in d and d[n] is not None:
            return d[n]
    return None


def parse_stats(diagnostics: Mapping[str, Any] | None) -> dict[str, float] | None:
    """Parse counts (valid, hallucinated, duplicate, filled_in) from a Ranking's diagnostics.

    Looks at the top level and under ``parse`` / ``parse_stats``; None when the ranker reports
    none (a non-generative ranker).
    """
    if not diagnostics:
        return None
    for where in (diagnostics, diagnostics.get("parse"), diagnostics.get("parse_stats")):
        if isinstance(where, Mapping) and all(k in where for k in ("valid", "hallucinated")):
            return {k: float(where.get(k) or 0) for k in _PARSE_KEYS}
    return None


def token_count(diagnostics: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(tokens in, tokens out) from a Ranking's diagnostics, None when not reported."""
    if not diagnostics:
        return None
    tin = _find(diagnostics, ("tokens_in", "prompt_tokens", "input_tokens"))
    tout = _find(diagnostics, ("tokens_out", "completion_tokens", "output_tokens"))
    tok = diagnostics.get("tokens")
    if isinstance(tok, Mapping):
        tin = tin if tin is not None else _find(tok, ("in", "input", "prompt"))
        tout = tout if tout is not None else _find(tok, ("out", "output", "completion"))
    elif isinstance(tok, int | float) and tin is None:
        tin = tok
    if tin is None and tout is None:
        return None
    return float(tin or 0), float(tout or 0)


# ----------------------------------------------------------------------------- summaries
def _clean(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def summarize_per_user(
    per_user: Mapping[str, Sequence[float] | np.ndarray], n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, float | int | None]]:
    """``{metric: {mean, ci_lo, ci_hi, n}}``: mean and 95% bootstrap CI over users (NaN dropped)."""
    out: dict[str, dict[str, float | int | None]] = {}
    for name, vals in per_user.items():
        v = np.asarray(vals, dtype=np.float64)
        mean, lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
        out[name] = {"mean": _clean(mean), "ci_lo": _clean(lo), "ci_hi": _clean(hi), "n": int(np.isfinite(v).sum())}
    return out


def paired_difference(
    a: Mapping[str, float],
    b: Mapping[str, float],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Mean of per-user ``a - b`` over the users both have, with a 95% bootstrap CI."""
    common = [u for u in a if u in b]
    d = np.array([a[u] - b[u] for u in common], dtype=np.float64)
    mean, lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed) if d.size else (np.nan, np.nan, np.nan)
    return {"mean": _clean(mean), "ci_lo": _clean(lo), "ci_hi": _clean(hi), "n": int(np.isfinite(d).sum())}
