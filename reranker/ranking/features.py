"""Per-candidate features for the learned fusion head.

``h_trad``: ItemCF score, UserCF score, popularity, recency (the item's interactions in the
window before the user's last event), BERT cosine, and, when an LLM is attached, its Yes/No
logit. ``h_LLM``: the frozen LLM's final hidden state at the answer position of the pointwise
prompt (the same forward pass that yields the logit, so it costs nothing extra).

For the learning-to-rank head (`reranker.ranking.ltr`) the builder can add more, each only
when asked for: a scorer's within-list rank (``<name>_rank``, 1 = best), the per-source scores
and ranks of a retriever implementing `SourceFeatures` (the union of sources), a popularity
trend (`PopularityTrend`), the history length (`HistoryLength`) and any fitted stage-1 model
(transitions, EASE, ...) as a named scorer. With none of them, the features are exactly the ones
above, in the same order.

Components are passed in already fitted (on the right split); the builder only asks them for
scores, so stage 1 never depends on stage 2.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..retrieval.base import BatchCandidateScorer
from .base import Catalog, catalog_kwargs
from .learned_head import FeatureList

if TYPE_CHECKING:
    from ..data.dataset import Dataset
    from ..types import Candidate, History

log = logging.getLogger(__name__)


@runtime_checkable
class SourceFeatures(Protocol):
    """A retriever that reports, per candidate, what each of its sources made of it (the union
    retriever). ``source_features(history, candidates)`` returns a mapping of columns, one
    value per candidate in order, with the same keys on every call (also for no candidates):
    preferably flat, ``{"<source>_score": array, "<source>_rank": array}`` (rank 1 = best);
    a value may also be a ``(score, rank)`` pair or a mapping ``{"score": ..., "rank": ...}``,
    flattened to ``<source>_score`` / ``<source>_rank``. A candidate a source did not propose
    should get finite values (its lowest score, a rank past the end of its list): the linear
    heads cannot take NaN. The builder names the columns ``<component>.<column>``."""

    def source_features(self, history: History, candidates: Sequence[Candidate]) -> Mapping[str, Any]: ...


def source_columns(got: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """The flat ``{column: (n,) array}`` form of a `SourceFeatures` answer."""
    out: dict[str, np.ndarray] = {}
    for key, v in got.items():
        if isinstance(v, Mapping):
            parts = {f"{key}_{sub}": arr for sub, arr in v.items()}
        elif isinstance(v, tuple) and len(v) == 2:
            parts = {f"{key}_score": v[0], f"{key}_rank": v[1]}
        else:
            parts = {str(key): v}
        for name, arr in parts.items():
            out[name] = np.asarray(arr, dtype=np.float64).reshape(n)
    return out


def within_list_rank(x: np.ndarray) -> np.ndarray:
    """1-based rank of each value within its list, highest first; ties share the best rank (so
    the candidates' order never leaks in)."""
    x = np.asarray(x, dtype=np.float64)
    return np.searchsorted(np.sort(-x), -x, side="left").astype(np.float64) + 1.0


class RecencySignal:
    """log1p(number of interactions with the item in the `window_days` before the reference
    time), the reference being the history's last timestamp (or the data's last one)."""

    name = "recency"

    def __init__(self, data: Dataset, window_days: float = 30.0) -> None:
        df = data.interactions
        self.window = float(window_days) * 86400.0
        if "timestamp" not in df.columns:
            self._ts = None
            self._pop = df.groupby("item_id").size()
            return
        df = df.sort_values(["item_id", "timestamp"], kind="stable")
        ids = df["item_id"].to_numpy()
        self._ts = df["timestamp"].to_numpy(dtype=np.float64)
        uniq, start = np.unique(ids, return_index=True)
        self._index = {str(u): i for i, u in enumerate(uniq)}
        self._start = np.append(start, len(ids))
        self._t_end = float(self._ts.max()) if len(self._ts) else 0.0

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray:
        if self._ts is None:
            return np.log1p(np.array([float(self._pop.get(c.item_id, 0)) for c in candidates]))
        t_ref = float(history.timestamps[-1]) if history.timestamps else self._t_end
        out = np.zeros(len(candidates))
        for j, c in enumerate(candidates):
            i = self._index.get(c.item_id)
            if i is None:
                continue
            seg = self._ts[self._start[i] : self._start[i + 1]]
            out[j] = np.searchsorted(seg, t_ref, "right") - np.searchsorted(seg, t_ref - self.window, "left")
        return np.log1p(out)


class FeatureBuilder:
    """Builds a `FeatureList` for one candidate list from named Scorers plus an optional
    pointwise LLM ranker (logit as a feature, hidden state as ``h_LLM``).

    ``scorers`` maps a feature name to any object with ``score(history, candidates)``;
    ``llm`` is a `PointwiseLLMRanker` (or None). A request's `catalog` (None: each
    component's own) is forwarded to the scorers and the LLM.
    """

    def __init__(self, scorers: Mapping[str, Any], llm: Any | None = None, use_hidden: bool = True,
                 ranks: Collection[str] = ()) -> None:
        if not scorers and llm is None:
            raise ValueError("FeatureBuilder needs at least one scorer or an LLM")
        self.scorers = dict(scorers)
        self.llm = llm
        self.use_hidden = use_hidden and llm is not None
        self.ranks = frozenset(ranks)
        """Scorers (and ``"llm"``) whose within-list rank is a feature too (``<name>_rank``)."""
        plain = {n for n, s in self.scorers.items() if not isinstance(s, SourceFeatures)}
        unknown = self.ranks - plain - ({"llm"} if llm is not None else set())
        if unknown:
            raise ValueError(f"ranks: {sorted(unknown)} are not plain scorers of this builder")
        self._source_keys: dict[str, list[str]] = {}

    def _sources(self, name: str, s: SourceFeatures) -> list[str]:
        """The columns a `SourceFeatures` component gives (asked once, with no candidates)."""
        if name not in self._source_keys:
            from ..types import History

            self._source_keys[name] = list(source_columns(s.source_features(History(), []), 0))
        return self._source_keys[name]

    @property
    def names(self) -> list[str]:
        out: list[str] = []
        for name, s in self.scorers.items():
            if isinstance(s, SourceFeatures):
                out += [f"{name}.{k}" for k in self._sources(name, s)]
                continue
            out.append(name)
            if name in self.ranks:
                out.append(f"{name}_rank")
        if self.llm is not None:
            out.append("llm")
            if "llm" in self.ranks:
                out.append("llm_rank")
        return out

    def build(
        self,
        history: History,
        candidates: Sequence[Candidate],
        labels: Sequence[float] | None = None,
        *,
        catalog: Catalog = None,
    ) -> tuple[FeatureList, dict[str, Any]]:
        """Features (and LLM diagnostics) for the candidates, in order."""
        fls, diags = self.build_batch(
            [history], [candidates], None if labels is None else [labels], catalog=catalog
        )
        return fls[0], diags[0]

    def build_batch(
        self,
        histories: Sequence[History],
        candidate_lists: Sequence[Sequence[Candidate]],
        labels: Sequence[Sequence[float]] | None = None,
        *,
        catalog: Catalog = None,
    ) -> tuple[list[FeatureList], list[dict[str, Any]]]:
        """`build` for many lists; scorers with a batched ``score_items(histories, item_lists)``
        (the CF retrievers) are asked once for the whole batch."""
        q = len(histories)
        cols: list[list[np.ndarray]] = [[] for _ in range(q)]
        item_lists = [[c.item_id for c in cands] for cands in candidate_lists]
        kw = catalog_kwargs(catalog)
        for name, s in self.scorers.items():
            if isinstance(s, SourceFeatures):
                keys = self._sources(name, s)
                for j in range(q):
                    got_j = source_columns(s.source_features(histories[j], candidate_lists[j]), len(item_lists[j]))
                    if set(got_j) != set(keys):
                        raise ValueError(f"{name}.source_features gave columns {sorted(got_j)}, expected {keys}")
                    cols[j].extend(got_j[k] for k in keys)
                continue
            if isinstance(s, BatchCandidateScorer):
                got = s.score_items(list(histories), item_lists)
            else:
                got = [s.score(h, c, **kw) for h, c in zip(histories, candidate_lists, strict=True)]
            for j in range(q):
                cols[j].append(np.asarray(got[j], dtype=np.float64).reshape(len(item_lists[j])))
                if name in self.ranks:
                    cols[j].append(within_list_rank(cols[j][-1]))
        out, diags = [], []
        for j in range(q):
            n = len(item_lists[j])
            hidden = None
            diag: dict[str, Any] = {}
            if self.llm is not None:
                logit, hid, diag = self.llm.score_with_hidden(histories[j], candidate_lists[j], **kw)
                cols[j].append(np.asarray(logit, dtype=np.float64).reshape(n))
                if "llm" in self.ranks:
                    cols[j].append(within_list_rank(cols[j][-1]))
                hidden = np.asarray(hid, dtype=np.float32) if self.use_hidden else None
            trad = np.column_stack(cols[j]) if cols[j] else np.zeros((n, 0))
            y = np.zeros(n) if labels is None else np.asarray(labels[j], dtype=np.float64)
            out.append(FeatureList(trad, y, hidden))
            diags.append(diag)
        return out, diags


def build_components(
    fit_data: Dataset,
    catalog: Dataset,
    *,
    itemcf: Mapping[str, Any] | None = None,
    usercf: Mapping[str, Any] | None = None,
    popularity: bool = True,
    recency_days: float | None = 30.0,
    bert: Any | None = None,
    trend_days: float | None = None,
    extra: Mapping[str, Any] | None = None,
    history_length: bool = False,
) -> dict[str, Any]:
    """Fit the traditional feature scorers on `fit_data` (ItemCF, UserCF with the given options,
    popularity, recency) and add a ready BERT scorer when given; then, for the LTR head, the
    popularity trend (``trend_days``), ready `extra` scorers by name (fitted stage-1 models,
    `SourceFeatures` retrievers) and the history length."""
    from ..retrieval.knn import ItemCF, UserCF
    from ..retrieval.popularity import PopularityRetriever

    out: dict[str, Any] = {}
    if itemcf is not None:
        out["itemcf"] = ItemCF(**dict(itemcf)).fit(fit_data)
    if usercf is not None:
        out["usercf"] = UserCF(**dict(usercf)).fit(fit_data)
    if popularity:
        out["popularity"] = PopularityRetriever().fit(fit_data)
    timed = "timestamp" in fit_data.interactions.columns
    if (recency_days or trend_days) and not timed:  # no time: off, not a stand-in (was log-popularity)
        log.info("no timestamps in %s: the time-based features (recency, trend) are off", fit_data.name)
    if recency_days and timed:
        out["recency"] = RecencySignal(fit_data, recency_days)
    if bert is not None:
        out["bert"] = bert
    if trend_days and timed:
        out["trend"] = PopularityTrend(fit_data, trend_days)
    for name, scorer in (extra or {}).items():
        if name in out or name in ("history_len", "llm"):
            raise ValueError(f"extra feature {name!r} clashes with a built-in feature name")
        out[name] = scorer
    if history_length:
        out["history_len"] = HistoryLength()
    return out


class PopularityTrend:
    """Is the item trending: the share of its interactions that fall in the last `window_days`
    of the fit data, over the same share for all items (1 = as usual, > 1 = rising), shrunk
    towards 1 with `prior` pseudo-interactions. 1 for unknown items and data without time."""

    name = "trend"

    def __init__(self, data: Dataset, window_days: float = 30.0, prior: float = 5.0) -> None:
        df = data.interactions
        self.window_days = float(window_days)
        self._trend: dict[str, float] = {}
        if "timestamp" not in df.columns or df.empty:
            return
        ts = df["timestamp"].to_numpy(dtype=np.float64)
        recent = ts >= ts.max() - self.window_days * 86400.0
        share = float(recent.mean())
        if share <= 0:
            return
        total = df.groupby("item_id").size()
        new = df[recent].groupby("item_id").size().reindex(total.index, fill_value=0)
        values = (new.to_numpy() + prior * share) / (total.to_numpy() + prior) / share
        self._trend = {str(i): float(v) for i, v in zip(total.index, values, strict=True)}

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray:
        return np.array([self._trend.get(c.item_id, 1.0) for c in candidates], dtype=np.float64)


class HistoryLength:
    """The number of items in the user's (capped) history, the same for every candidate (lets
    a tree head treat short and long histories differently)."""

    name = "history_len"

    def score(
        self, history: History, candidates: Sequence[Candidate], catalog: Catalog = None
    ) -> np.ndarray:
        return np.full(len(candidates), float(len(history.items)))


__all__ = [
    "FeatureBuilder",
    "HistoryLength",
    "PopularityTrend",
    "RecencySignal",
    "SourceFeatures",
    "build_components",
    "source_columns",
    "within_list_rank",
]
