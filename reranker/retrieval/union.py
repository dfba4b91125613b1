"""A union of stage-1 sources: several retrievers' top lists merged into one candidate list.

Config: ``sources`` (retriever configs, any registered type but ``union``), ``quotas`` (one
per source: how many of ``n`` candidates each contributes; None = equal shares) and ``n``
(the list length the quotas are written for; the quotas may sum to less, the rest is filled).

Merge order, for a request of m candidates:

1. Quotas. Each quota is scaled to the request, ``quota * m / n`` (largest-remainder
   rounding; exactly the configured quotas when m == n). Round-robin over the sources in
   config order: in every round each source that has not filled its quota adds its best
   item not already in the list.
2. Fill. While the list is shorter than m (the quotas sum below n, or a source ran out),
   the round-robin continues over every source with the quotas lifted.

Each source is asked for its top m (seen items excluded as requested), so no source can run
short because others took its items. A candidate's ``score`` is ``1 / (1 + position)`` in
the merged list (the sources' own scores are not comparable); its ``source`` is the name of
the source that ranks it best among those proposing it from their own model (ties: config
order), or ``"popular"`` when only popularity fills proposed it. Source names are the
``names`` given, else the retriever types (a repeated type gets ``-2``, ``-3``, ...).

The per-source detail a learned head needs (`source_features`): for each source, its own
score of every candidate (`score_items` of the fitted source) and the candidate's rank in
that source's list (``MISSING_RANK`` when it did not propose it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from ..config import BaseConfig, format_validation_error
from ..data.dataset import Dataset
from ..errors import ConfigError
from ..registry import RETRIEVERS, BuildContext
from ..types import Candidate, History
from ._fitted import check_n
from .base import ArrayRetriever, BatchCandidateScorer

log = logging.getLogger(__name__)

MISSING_RANK = 1_000_000
"""The rank `source_features` reports for a candidate a source did not propose."""

SourceConfig = RETRIEVERS.union([n for n in RETRIEVERS.names() if n != "union"])
"""Any registered retriever's config except the union's own (discriminated on ``type``)."""


def _default_sources() -> list[Any]:
    return [
        RETRIEVERS.config({"type": "ease"}),
        RETRIEVERS.config({"type": "itemcf", "k": 20, "feedback": "implicit"}),
        RETRIEVERS.config({"type": "transitions"}),
    ]


class UnionConfig(BaseConfig):
    """Sources, their quotas and the list length the quotas are for (see the module
    docstring for the merge order)."""

    type: Literal["union"] = "union"
    sources: list[SourceConfig] = Field(  # type: ignore[valid-type]
        default_factory=_default_sources, min_length=1,
        description="retriever configs ({type: ..., its options}); default: ease, itemcf (k=20, "
        "implicit), transitions",
    )
    quotas: list[int] | None = Field(
        default_factory=lambda: [30, 20, 50],
        description="candidates per source out of n (one per source; None: equal shares of n); "
        "may sum below n (the rest is filled round-robin)",
    )
    n: int = Field(100, ge=1, description="the list length the quotas are written for")
    names: list[str] | None = Field(
        None, description="source names (Candidate.source, feature names); default: their types"
    )

    @model_validator(mode="before")
    @classmethod
    def _equal_shares_for_own_sources(cls, data: Any) -> Any:
        """Sources given without quotas: equal shares (the default quotas belong to the default
        sources)."""
        if isinstance(data, Mapping) and "sources" in data and "quotas" not in data:
            return {**data, "quotas": None}
        return data

    @field_validator("sources", mode="before")
    @classmethod
    def _canonical_types(cls, v: Any) -> Any:
        """Accept aliases (``pop``) in source mappings, as `Registry.config` does."""
        if not isinstance(v, list):
            return v
        out = []
        for s in v:
            if isinstance(s, Mapping) and isinstance(s.get("type"), str) and s["type"] in RETRIEVERS:
                s = {**s, "type": RETRIEVERS.canonical(s["type"])}
            out.append(s)
        return out

    @model_validator(mode="after")
    def _check(self) -> UnionConfig:
        k = len(self.sources)
        if self.quotas is not None:
            if len(self.quotas) != k:
                raise ValueError(f"quotas: give one per source ({k}), got {len(self.quotas)}")
            if any(q < 0 for q in self.quotas):
                raise ValueError("quotas: must be >= 0")
            if sum(self.quotas) > self.n:
                raise ValueError(f"quotas: sum {sum(self.quotas)} is above n={self.n}")
        if self.names is not None:
            if len(self.names) != k:
                raise ValueError(f"names: give one per source ({k}), got {len(self.names)}")
            if len(set(self.names)) != k or any(not x for x in self.names):
                raise ValueError("names: must be distinct and non-empty")
            if "popular" in self.names:
                raise ValueError("names: 'popular' is reserved for popularity fills")
        return self

    def source_names(self) -> list[str]:
        """The name of every source (``names``, else the types, repeats numbered)."""
        if self.names is not None:
            return list(self.names)
        out: list[str] = []
        for cfg in self.sources:
            t = RETRIEVERS.type_of(cfg)
            name, i = t, 1
            while name in out:
                i += 1
                name = f"{t}-{i}"
            out.append(name)
        return out

    def base_quotas(self) -> list[int]:
        """The quotas out of ``n`` (equal shares when ``quotas`` is None)."""
        if self.quotas is not None:
            return list(self.quotas)
        return _largest_remainder([1.0] * len(self.sources), self.n)


def _largest_remainder(weights: Sequence[float], total: int) -> list[int]:
    """Integers proportional to `weights` summing to `total` (ties: earlier first)."""
    w = np.asarray(weights, dtype=np.float64)
    if total <= 0 or w.sum() <= 0:
        return [0] * len(w)
    exact = w / w.sum() * total
    base = np.floor(exact + 1e-9).astype(int)
    rest = total - int(base.sum())
    order = np.lexsort((np.arange(len(w)), -(exact - base)))
    base[order[:rest]] += 1
    return base.tolist()


def _make_config(config: UnionConfig | None, kwargs: dict) -> UnionConfig:
    if config is not None:
        if kwargs:
            raise ConfigError("pass either a config object or keyword options, not both")
        if not isinstance(config, UnionConfig):
            raise ConfigError(f"expected UnionConfig, got {type(config).__name__}")
        return config
    try:
        return UnionConfig(**kwargs)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, "UnionConfig")) from None


class UnionRetriever:
    """Merges several retrievers' lists (see the module docstring).

    >>> u = UnionRetriever(sources=[{"type": "ease"}, {"type": "itemcf", "feedback": "implicit"},
    ...                             {"type": "transitions"}], quotas=[40, 30, 15], n=100).fit(data)
    >>> cands = u.retrieve(history, n=100)
    >>> feats = u.source_features(history, cands)   # {"ease.score": ..., "ease.rank": ..., ...}

    `context` (a `BuildContext`) lends the sources what their builders need (item embeddings
    for the T- retrievers) and shares fitted sources with other components of a pipeline.
    """

    source = "union"

    def __init__(self, config: UnionConfig | None = None, *, context: BuildContext | None = None,
                 **kwargs: Any) -> None:
        self.config = _make_config(config, kwargs)
        self.context = context
        self.names: list[str] = self.config.source_names()
        self.sources_: dict[str, Any] = {}

    # ------------------------------------------------------------------ fit
    def fit(self, data: Dataset) -> Self:
        """Fit every source on `data` (through the registry; shared with the context's other
        components when they were fitted on the same data)."""
        if not isinstance(data, Dataset):
            raise TypeError(f"fit() expects a reranker Dataset, got {type(data).__name__}")
        ctx = self.context
        if ctx is None:
            ctx = BuildContext(fit_data=data)
        elif ctx.fit_data is not data:
            ctx = dataclasses.replace(ctx, fit_data=data, _retrievers={})
        self.sources_ = {}
        for i, (name, cfg) in enumerate(zip(self.names, self.config.sources, strict=True)):
            try:
                self.sources_[name] = ctx.retriever(cfg)
            except ConfigError as e:
                raise ConfigError(f"union.sources.{i} ({name}): {e}") from None
        log.info("UnionRetriever fitted: %s", ", ".join(self.names))
        return self

    def _check_fitted(self) -> None:
        if not self.sources_:
            from ..errors import ModelError

            raise ModelError("UnionRetriever is not fitted; call fit(dataset) first")

    # ------------------------------------------------------------------ retrieval
    def quotas_for(self, m: int) -> list[int]:
        """The quotas of a request for `m` candidates (scaled from those out of ``n``)."""
        base = self.config.base_quotas()
        if m == self.config.n:
            return base
        total = min(m, int(np.floor(sum(base) * m / self.config.n + 0.5)))
        return _largest_remainder(base, total) if sum(base) > 0 else [0] * len(base)

    def _source_lists(
        self, hs: Sequence[History], depth: int, exclude_seen: bool
    ) -> list[list[tuple[list[str], list[str]]]]:
        """Per source, per history: (item ids, sources) of the source's top `depth`."""
        out = []
        for r in self.sources_.values():
            if isinstance(r, ArrayRetriever):
                b = r.retrieve_arrays(hs, depth, exclude_seen)
                ids, src = b.item_ids.tolist(), b.sources.tolist()
                bd = b.bounds.tolist()
                out.append([(ids[bd[k]: bd[k + 1]], src[bd[k]: bd[k + 1]]) for k in range(len(hs))])
            else:
                lists = r.retrieve_batch(list(hs), depth, exclude_seen)
                out.append([([c.item_id for c in x], [c.source for c in x]) for x in lists])
        return out

    def _merge(self, lists: list[tuple[list[str], list[str]]], m: int, quotas: list[int]) -> list[Candidate]:
        k = len(lists)
        pos = [0] * k
        got = [0] * k
        taken: dict[str, int] = {}
        order: list[str] = []

        def next_new(s: int) -> str | None:
            ids = lists[s][0]
            p = pos[s]
            while p < len(ids) and ids[p] in taken:
                p += 1
            pos[s] = p
            return ids[p] if p < len(ids) else None

        for phase in (0, 1):
            live = True
            while live and len(order) < m:
                live = False
                for s in range(k):
                    if len(order) >= m:
                        break
                    if phase == 0 and got[s] >= quotas[s]:
                        continue
                    item = next_new(s)
                    if item is None:
                        continue
                    taken[item] = len(order)
                    order.append(item)
                    got[s] += 1
                    pos[s] += 1
                    live = True
        # best source: the best own-model rank (ties: config order), else popular
        best: dict[str, tuple[int, int]] = {}
        for s, (ids, srcs) in enumerate(lists):
            for rank, (item, src) in enumerate(zip(ids, srcs, strict=True)):
                if src == "popular" or item not in taken:
                    continue
                if item not in best or (rank, s) < best[item]:
                    best[item] = (rank, s)
        return [
            Candidate(item, 1.0 / (1.0 + p), self.names[best[item][1]] if item in best else "popular")
            for p, item in enumerate(order)
        ]

    def retrieve(self, history: History, n: int, exclude_seen: bool = True) -> list[Candidate]:
        """The merged top-n for one history (see the module docstring)."""
        return self._retrieve_lists([history], n, exclude_seen)[0]

    def retrieve_batch(
        self,
        histories: Sequence[History] | Mapping[str, History],
        n: int,
        exclude_seen: bool = True,
    ) -> list[list[Candidate]] | dict[str, list[Candidate]]:
        """The merged top-n for many histories (each source retrieves them as one batch).
        A mapping in gives a dict out (same keys); a sequence a list in the same order."""
        if isinstance(histories, Mapping):
            keys = list(histories.keys())
            res = self._retrieve_lists([histories[k] for k in keys], n, exclude_seen)
            return dict(zip(keys, res, strict=True))
        return self._retrieve_lists(list(histories), n, exclude_seen)

    def _retrieve_lists(self, hs: list[History], n: int, exclude_seen: bool) -> list[list[Candidate]]:
        self._check_fitted()
        check_n(n)
        for h in hs:
            if not isinstance(h, History):
                raise TypeError(f"expected History objects, got {type(h).__name__}")
        if not hs:
            return []
        m = int(n)
        quotas = self.quotas_for(m)
        per_source = self._source_lists(hs, m, exclude_seen)
        return [self._merge([ps[row] for ps in per_source], m, quotas) for row in range(len(hs))]

    # ------------------------------------------------------------------ per-source detail
    def source_features(
        self, history: History, candidates: Sequence[Candidate] | Sequence[str], depth: int | None = None
    ) -> dict[str, np.ndarray]:
        """Per source name: ``"<name>.score"`` (the source's own score of each candidate) and
        ``"<name>.rank"`` (1-based rank in the source's top-`depth` list, seen items
        excluded; ``MISSING_RANK`` when it is not there). `depth` defaults to the config's
        ``n`` (the lists the union merges from). Arrays follow the order of `candidates`."""
        return self.source_features_batch([history], [candidates], depth)[0]

    def source_features_batch(
        self,
        histories: Sequence[History],
        candidates: Sequence[Sequence[Candidate] | Sequence[str]],
        depth: int | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """`source_features` for many histories at once."""
        self._check_fitted()
        if len(histories) != len(candidates):
            raise ValueError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        d = int(depth if depth is not None else self.config.n)
        check_n(d)
        hs = list(histories)
        ids = [[c.item_id if isinstance(c, Candidate) else str(c) for c in cs] for cs in candidates]
        out: list[dict[str, np.ndarray]] = [{} for _ in hs]
        if not hs:
            return out
        lists = self._source_lists(hs, d, True)
        for (name, r), per_row in zip(self.sources_.items(), lists, strict=True):
            scores = _scores(r, hs, ids)
            for row in range(len(hs)):
                ranks = {item: k + 1 for k, item in enumerate(per_row[row][0])}
                out[row][f"{name}.score"] = scores[row]
                out[row][f"{name}.rank"] = np.array(
                    [ranks.get(i, MISSING_RANK) for i in ids[row]], dtype=np.float64
                )
        return out


def _scores(r: Any, hs: list[History], ids: list[list[str]]) -> list[np.ndarray]:
    """A source's own scores of given items: its `score_items` (`BatchCandidateScorer`), else
    its `score` (`CandidateScorer`), else its scores in its own full list (0 when absent)."""
    from .base import CandidateScorer

    if isinstance(r, BatchCandidateScorer):
        return [np.asarray(x, dtype=np.float64) for x in r.score_items(hs, ids)]
    if isinstance(r, CandidateScorer):
        return [np.asarray(r.score(h, [Candidate(i) for i in row]), dtype=np.float64)
                for h, row in zip(hs, ids, strict=True)]
    out = []
    for h, row in zip(hs, ids, strict=True):
        got = r.retrieve(h, 100_000, exclude_seen=False)
        table = {c.item_id: float(c.score) for c in got}
        out.append(np.array([table.get(i, 0.0) for i in row], dtype=np.float64))
    return out


__all__ = ["MISSING_RANK", "UnionConfig", "UnionRetriever"]
