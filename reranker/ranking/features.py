"""Per-candidate features for the learned fusion head.

``h_trad``: ItemCF score, UserCF score, popularity, recency (the item's interactions in the
window before the user's last event), BERT cosine, and, when an LLM is attached, its Yes/No
logit. ``h_LLM``: the frozen LLM's final hidden state at the answer position of the pointwise
prompt (the same forward pass that yields the logit, so it costs nothing extra).

Components are passed in already fitted (on the right split); the builder only asks them for
scores, so stage 1 never depends on stage 2.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Catalog, catalog_kwargs
from .learned_head import FeatureList

if TYPE_CHECKING:
    from ..data.dataset import Dataset
    from ..types import Candidate, History

log = logging.getLogger(__name__)


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

    def __init__(self, scorers: Mapping[str, Any], llm: Any | None = None, use_hidden: bool = True) -> None:
        if not scorers and llm is None:
            raise ValueError("FeatureBuilder needs at least one scorer or an LLM")
        self.scorers = dict(scorers)
        self.llm = llm
        self.use_hidden = use_hidden and llm is not None

    @property
    def names(self) -> list[str]:
        return list(self.scorers) + (["llm"] if self.llm is not None else [])

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
        for s in self.scorers.values():
            if hasattr(s, "score_items"):
                got = s.score_items(list(histories), item_lists)
            else:
                got = [s.score(h, c, **kw) for h, c in zip(histories, candidate_lists, strict=True)]
            for j in range(q):
                cols[j].append(np.asarray(got[j], dtype=np.float64).reshape(len(item_lists[j])))
        out, diags = [], []
        for j in range(q):
            n = len(item_lists[j])
            hidden = None
            diag: dict[str, Any] = {}
            if self.llm is not None:
                logit, hid, diag = self.llm.score_with_hidden(histories[j], candidate_lists[j], **kw)
                cols[j].append(np.asarray(logit, dtype=np.float64).reshape(n))
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
) -> dict[str, Any]:
    """Fit the traditional feature scorers on `fit_data` (ItemCF, UserCF with the given options,
    popularity, recency) and add a ready BERT scorer when given."""
    from ..retrieval.knn import ItemCF, UserCF
    from ..retrieval.popularity import PopularityRetriever

    out: dict[str, Any] = {}
    if itemcf is not None:
        out["itemcf"] = ItemCF(**dict(itemcf)).fit(fit_data)
    if usercf is not None:
        out["usercf"] = UserCF(**dict(usercf)).fit(fit_data)
    if popularity:
        out["popularity"] = PopularityRetriever().fit(fit_data)
    if recency_days:
        out["recency"] = RecencySignal(fit_data, recency_days)
    if bert is not None:
        out["bert"] = bert
    return out


__all__ = ["FeatureBuilder", "RecencySignal", "build_components"]
