"""Regime C, cold start: who is evaluated on what, and what every model is fitted on.

Two kinds (``protocol.cold.kind``), both built here as pure functions of the data and the
protocol, so the runner (`reranker.evaluation.ranking_regime`) treats them like regime B:

- **Cold items** (:func:`cold_items_setup`): the newest ``item_share`` of the items with
  interactions, by first interaction (ties in time by a seeded order; ``item_select: random``:
  a seeded random share), lose ALL their interactions. The fit data is the remaining (warm)
  interactions over the catalog minus the cold items, so no fitted model has ever seen a cold
  item, not even its id; content and LLM rankers read the cold items' text from the full
  catalog. Each user who interacted with a cold item is tested on the first one (in the
  protocol's order of time, ties by ``protocol.ties``) against ``n_negatives`` other cold items
  the user never touched; the history is the user's interactions before it (all warm), capped.
- **Cold users** (:func:`cold_users_setup`): a seeded ``user_share`` of the users with more
  than ``max(history_cuts)`` interactions lose ALL their interactions from the fit data. Each is
  tested on the last item (chronological leave-one-out) against ``n_negatives`` warm items
  (items with interactions in the fit data) the user never touched (the lists of regime B,
  drawn from warm items), once per history cut: the last k items before the target, for each
  k of ``history_cuts``, one block each. The models meet these users for the first time at
  scoring time (no training row: a CF model's profile is the cut history alone).

In both, the learned head is fitted on the validation stage of the fit data's own
leave-one-out split (warm items / warm users only) and serves with models fitted on the whole
fit data.

`fallback` says, per ranker type, what a ranker does when it has nothing to go on; the runner
writes it into results.json and the report. The CF models' part is a property of the code
(`FittedIndex.score_items` and the other fitted models: an item not in the fit catalog scores
0), so on cold items every CF candidate ties and `ScorerRanker` keeps the list's order, which is
the seeded shuffle of the candidate list: a random order (tests/test_cold_start.py asserts it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.dataset import Dataset, _history_from_rows
from ..errors import ConfigError, DataError
from ..types import History
from . import protocol as P

log = logging.getLogger(__name__)

__all__ = [
    "ColdBlock",
    "ColdSetup",
    "choose_cold_users",
    "cold_fit_data",
    "cold_items_setup",
    "cold_users_setup",
    "cold_setup",
    "fallback",
    "describe",
]


@dataclass(frozen=True)
class ColdBlock:
    """One separately reported set of lists: the histories the users are ranked with (cold
    users: one block per history cut)."""

    name: str | None
    """``None`` for cold items; ``"history 3"`` for the cut to the last 3 items."""
    histories: Mapping[str, History]
    cut: int | None = None


@dataclass
class ColdSetup:
    """Everything regime C evaluates: the fit data, the split the learned head fits on, the
    users, their targets and candidate lists, and the blocks of histories."""

    kind: str
    fit_data: Dataset
    """What every model is fitted on: no interaction of a cold item / a cold user."""
    head_split: Any
    """The fit data's leave-one-out split (the learned head fits on its validation stage)."""
    users: list[str]
    """The evaluated users, sorted (the runner takes its seeded order)."""
    targets: dict[str, str]
    blocks: list[ColdBlock]
    pool: np.ndarray
    """The item ids the negatives are drawn from (cold items; warm items for cold users)."""
    known: dict[str, set[str]]
    """Every item each evaluated user ever interacted with (never a negative)."""
    cold_items: frozenset[str] = frozenset()
    cold_users: frozenset[str] = frozenset()
    excluded: dict[str, int] = field(default_factory=dict)
    """Users not evaluated, by reason."""
    salt: str = "regime-c"

    def lists(self, users: Sequence[str], n_negatives: int, seed: int) -> dict[str, list[str]]:
        """Per user: the target plus ``n_negatives`` items of `pool` the user never touched,
        shuffled; seeded per (seed, user), so a subset of users gets the same lists."""
        return P.regime_b_lists(users, self.targets, self.known, self.pool, n_negatives, seed, salt=self.salt)

    def summary(self) -> dict[str, Any]:
        """What results.json records about the cold set (``protocol.cold``)."""
        out: dict[str, Any] = {"kind": self.kind, "evaluated_users": len(self.users), "excluded_users": self.excluded,
                               "fit_interactions": int(self.fit_data.n_interactions),
                               "fit_items": int(self.fit_data.n_items), "negative_pool": int(len(self.pool))}
        if self.kind == "items":
            out["cold_items"] = len(self.cold_items)
        else:
            out["cold_users"] = len(self.cold_users)
            out["history_cuts"] = [b.cut for b in self.blocks]
        return out


# ----------------------------------------------------------------------------- ordering
def _ordered(data: Dataset) -> pd.DataFrame:
    """The interactions by user in time (ties by the data's tie order); without timestamps, the
    seeded random order the leave-one-out split uses."""
    if data.has_timestamps:
        return data.sorted_interactions()
    from ..data.splits import random_order

    return random_order(data.interactions, data.tie_order.seed)


def _seeded_rank(ids: Sequence[str], seed: int) -> np.ndarray:
    """A seeded random rank per id (depends on the set of ids and the seed only)."""
    order = np.argsort(np.asarray(ids, dtype=object))  # sorted ids first: independent of input order
    perm = np.random.default_rng([int(seed), 0xC01D]).permutation(len(ids))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = perm
    return rank


def _share(n: int, share: float) -> int:
    return min(n, max(1, int(round(n * share))))


# ----------------------------------------------------------------------------- cold items
def choose_cold_items(data: Dataset, share: float, select: str = "newest", seed: int = 0) -> list[str]:
    """The cold items: the newest ``share`` of the items with interactions by first interaction
    (ties in time in a seeded order), or a seeded random share (``select="random"``)."""
    inter = data.interactions
    if inter.empty:
        raise DataError("regime c: the data has no interactions", column="item_id")
    if select == "newest":
        if not data.has_timestamps:
            raise ConfigError("protocol.cold.item_select: 'newest' needs timestamps and this data has none; "
                              "use item_select: random")
        first = inter.groupby("item_id", sort=True)["timestamp"].min()
        ids = [str(i) for i in first.index]
        rank = _seeded_rank(ids, seed)
        order = np.lexsort((rank, -first.to_numpy(dtype=np.float64)))  # newest first, ties seeded
    elif select == "random":
        ids = sorted({str(i) for i in inter["item_id"].unique()})
        order = np.argsort(_seeded_rank(ids, seed))
    else:  # validated by ColdSpec
        raise ConfigError(f"protocol.cold.item_select: unknown {select!r}")
    n = _share(len(ids), share)
    return [ids[i] for i in order[:n]]


def _without_items(data: Dataset, cold: frozenset[str]) -> Dataset:
    """The data without the cold items: none of their interactions, not in the catalog."""
    inter = data.interactions
    is_cold = inter["item_id"].astype(str).isin(cold).to_numpy()
    items = data.items[~data.items["item_id"].astype(str).isin(cold)].reset_index(drop=True)
    return Dataset(inter.loc[~is_cold].reset_index(drop=True), items, name=f"{data.name}[warm items]",
                   report=data.report, validate=False, tie_order=data.tie_order)


def cold_items_setup(
    data: Dataset, *, share: float = 0.1, select: str = "newest", seed: int = 0, n_negatives: int = 19,
    history_cap: int = 20, min_history: int = 1, min_interactions: int = 3,
) -> ColdSetup:
    """Regime C with cold items (see the module docstring)."""
    from ..data.splits import leave_one_out

    cold = frozenset(choose_cold_items(data, share, select, seed))
    inter = data.interactions
    fit_data = _without_items(data, cold)
    df = _ordered(data)
    df_cold = df["item_id"].astype(str).isin(cold).to_numpy()
    pos = df.groupby("user_id", sort=False).cumcount().to_numpy()
    first_cold = df.loc[df_cold].assign(__pos=pos[df_cold]).groupby("user_id", sort=True).head(1)
    pool = np.asarray(sorted(cold), dtype=object)
    known = {str(u): set(map(str, g.tolist())) for u, g in inter.groupby("user_id", sort=False)["item_id"]}
    targets: dict[str, str] = {}
    histories: dict[str, History] = {}
    short = few = 0
    rows_by_user = dict(iter(df.groupby("user_id", sort=False)))
    for u, t, p in zip(first_cold["user_id"], first_cold["item_id"], first_cold["__pos"], strict=True):
        u, t = str(u), str(t)
        if p < min_history:
            short += 1
            continue
        if len(cold - known[u]) < n_negatives:
            few += 1
            continue
        rows = rows_by_user[u].iloc[: int(p)]  # everything before the first cold item: warm
        targets[u] = t
        histories[u] = _history_from_rows(u, rows, history_cap, None)
    if not targets:
        raise DataError(f"regime c (cold items): no user can be evaluated ({len(cold)} cold items; {short} users "
                        f"with fewer than {min_history} warm items before their first cold item, {few} with fewer "
                        f"than {n_negatives} untouched cold items): raise protocol.cold.item_share or lower "
                        "protocol.n_negatives", column="item_id")
    users = sorted(targets)
    return ColdSetup(
        kind="items", fit_data=fit_data, head_split=leave_one_out(fit_data, min_interactions=min_interactions),
        users=users, targets=targets, blocks=[ColdBlock(None, histories)], pool=pool,
        known={u: known[u] for u in users}, cold_items=cold,
        excluded={f"fewer than {min_history} warm items before the first cold item": short,
                  f"fewer than {n_negatives} untouched cold items": few},
        salt="regime-c-items",
    )


# ----------------------------------------------------------------------------- cold users
def choose_cold_users(data: Dataset, share: float, cuts: Sequence[int] = (1, 3, 5), seed: int = 0) -> list[str]:
    """The cold users: a seeded ``share`` of the users with more than ``max(cuts)`` interactions."""
    sizes = data.interactions.groupby("user_id", sort=True).size()
    eligible = [str(u) for u, n in sizes.items() if n > max(cuts)]
    if not eligible:
        raise DataError(f"regime c (cold users): no user has more than {max(cuts)} interactions "
                        "(max of protocol.cold.history_cuts)", column="user_id")
    rank = _seeded_rank(eligible, seed)
    return sorted(eligible[i] for i in np.argsort(rank)[: _share(len(eligible), share)])


def _without_users(data: Dataset, cold: frozenset[str]) -> Dataset:
    is_cold = data.interactions["user_id"].astype(str).isin(cold).to_numpy()
    return data.with_interactions(data.interactions.loc[~is_cold], name=f"{data.name}[warm users]")


def cold_users_setup(
    data: Dataset, *, share: float = 0.2, cuts: Sequence[int] = (1, 3, 5), seed: int = 0, n_negatives: int = 19,
    min_interactions: int = 3,
) -> ColdSetup:
    """Regime C with cold users (see the module docstring)."""
    from ..data.splits import leave_one_out

    cuts = sorted(int(k) for k in cuts)
    df = _ordered(data)
    cold = frozenset(choose_cold_users(data, share, cuts, seed))
    fit_data = _without_users(data, cold)
    warm = set(map(str, fit_data.interactions["item_id"].unique()))
    pool = np.asarray([i for i in map(str, data.item_ids) if i in warm], dtype=object)
    targets: dict[str, str] = {}
    rows_of: dict[str, pd.DataFrame] = {}
    known: dict[str, set[str]] = {}
    cold_target = few = 0
    for u, rows in df[df["user_id"].astype(str).isin(cold)].groupby("user_id", sort=True):
        u = str(u)
        ids = set(map(str, rows["item_id"].tolist()))
        t = str(rows["item_id"].iloc[-1])
        if t not in warm:  # the target itself has no training interaction: not a warm candidate
            cold_target += 1
            continue
        if len(warm - ids) < n_negatives:
            few += 1
            continue
        targets[u], rows_of[u], known[u] = t, rows.iloc[:-1], ids
    if not targets:
        raise DataError(f"regime c (cold users): no cold user can be evaluated ({len(cold)} cold users)",
                        column="user_id")
    users = sorted(targets)
    blocks = [ColdBlock(f"history {k}", {u: _history_from_rows(u, rows_of[u], k, None) for u in users}, k)
              for k in cuts]
    return ColdSetup(
        kind="users", fit_data=fit_data, head_split=leave_one_out(fit_data, min_interactions=min_interactions),
        users=users, targets=targets, blocks=blocks, pool=pool, known=known, cold_users=cold,
        excluded={"target has no interaction in the fit data": cold_target,
                  f"fewer than {n_negatives} untouched warm items": few},
        salt="regime-c-users",
    )


def cold_setup(data: Dataset, protocol: Any, min_interactions: int = 3) -> ColdSetup:
    """The setup a ``protocol`` (a `ProtocolSpec` with ``regime: c``) describes."""
    c = protocol.cold
    if c.kind == "items":
        return cold_items_setup(data, share=c.item_share, select=c.item_select, seed=c.seed,
                                n_negatives=protocol.n_negatives, history_cap=protocol.history_cap,
                                min_history=c.min_history, min_interactions=min_interactions)
    return cold_users_setup(data, share=c.user_share, cuts=c.history_cuts, seed=c.seed,
                            n_negatives=protocol.n_negatives, min_interactions=min_interactions)


def cold_fit_data(data: Dataset, cold: Any) -> tuple[Dataset, frozenset[str]]:
    """What regime C with ``cold`` (a `ColdSpec`) fits every model on, and the cold ids: the
    data without the cold items (or cold users) and all their interactions. The same data
    `cold_setup` gives as ``fit_data``, without building the evaluated lists: what
    `reranker finetune` trains an adapter on for regime C (`FinetuneConfig.cold`)."""
    if cold.kind == "items":
        items = frozenset(choose_cold_items(data, cold.item_share, cold.item_select, cold.seed))
        return _without_items(data, items), items
    users = frozenset(choose_cold_users(data, cold.user_share, cold.history_cuts, cold.seed))
    return _without_users(data, users), users


# ----------------------------------------------------------------------------- reporting
_CF_TYPES = frozenset({"popular", "pop", "itemcf", "usercf", "ease", "als", "bpr", "transitions", "union", "sasrec"})


def fallback(rtype: str, kind: str, params: Mapping[str, Any] | None = None) -> str:
    """What a ranker of type `rtype` does in regime C of `kind` when it has nothing to go on."""
    params = params or {}
    ties = "ties keep the candidate list's order, a seeded shuffle: random order"
    if rtype in ("random", "identity"):
        return "random order (seeded shuffle)" if rtype == "random" else f"list order: {ties}"
    if rtype in _CF_TYPES:
        if kind == "items":
            return f"cold items are unknown to the model (not in its fit data): every candidate scores 0, {ties}"
        if rtype in ("popular", "pop"):
            return "needs no history: popularity among the warm users"
        return ("the user is unknown to the model: scores from the cut history alone; candidates it cannot "
                f"reach score 0 and {ties}")
    if rtype == "bert":
        return "text only: cosine of each candidate's text with the history's; empty history: all 0, " + ties
    if rtype.startswith("llm-"):
        return "text only: the prompt holds the history's and the candidates' titles (no interaction data needed)"
    if rtype == "fusion":
        return "the weighted sum of its components' normalised scores; components with constant scores add nothing"
    if rtype == "learned-fusion":
        content = [n for n in ("bert", "llm") if params.get(n)]
        if kind == "items":
            if not content:
                return f"every feature (CF, popularity, recency) is 0 on cold items: {ties}"
            return (f"CF / popularity / recency features are 0 on cold items; the order comes from its "
                    f"{' and '.join(content)} feature(s) (head fitted on warm items)")
        return "CF features from the cut history alone (head fitted on warm users' full histories)"
    return "not documented for this ranker type: see its implementation"


def describe(setup: ColdSetup, n_negatives: int, cold: Any) -> str:
    """One paragraph on the cold-start protocol for the report."""
    if setup.kind == "items":
        how = (f"the newest {cold.item_share:.0%} of the items by first interaction (ties in time in a seeded order, "
               f"seed {cold.seed})" if cold.item_select == "newest"
               else f"a seeded random {cold.item_share:.0%} of the items (seed {cold.seed})")
        return (f"Cold items: {how}, {len(setup.cold_items)} items, lose all their interactions: every model is "
                f"fitted on the other {setup.fit_data.n_interactions} interactions over a catalog without them. "
                f"Each user who interacted with a cold item is tested on the first one against {n_negatives} other "
                f"cold items the user never touched (shuffled, seeded); the history is the user's (warm) items "
                f"before it. Content and LLM rankers read the cold items' text.")
    cuts = ", ".join(str(b.cut) for b in setup.blocks)
    return (f"Cold users: a seeded {cold.user_share:.0%} of the users with more than {setup.blocks[-1].cut} "
            f"interactions (seed {cold.seed}), {len(setup.cold_users)} users, lose all their interactions: every "
            f"model is fitted on the other users' {setup.fit_data.n_interactions} interactions. Each is tested on "
            f"the last item against {n_negatives} warm items never touched (shuffled, seeded; the same lists for "
            f"every cut), with the history cut to its last {cuts} items (one block each).")
