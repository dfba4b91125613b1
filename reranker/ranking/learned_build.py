"""The parts of an experiment's learned-fusion row (`LearnedFusionParams`) besides the head:
the feature builder for a given fit data set (CF, popularity, recency, BERT, LLM and the
optional LTR features: extra stage-1 models, per-source union features, ranks, popularity
trend, history length) and the retriever the fit lists take their hard candidates from.

Every stage-1 model is fitted on the data it is asked for: the split's train part for the
validation-stage lists the head is fitted on, the serving data afterwards. A model asked for
twice on the same data (``candidates_from`` also listed in ``extra``, the same model in several
learned rows, a row of its own or a union source) is fitted once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..registry import BuildContext
from .features import FeatureBuilder, SourceFeatures, build_components

if TYPE_CHECKING:
    from ..data.dataset import Dataset
    from .configs import LearnedFusionParams


class LearnedParts:
    """Feature builders (`builder`) and the fit-list retriever (`list_retriever`) of one
    learned-fusion row; `bert` and `llm` are the ready scorer / pointwise ranker or None."""

    def __init__(self, params: LearnedFusionParams, ctx: BuildContext, *, bert: Any = None, llm: Any = None,
                 use_hidden: bool = False) -> None:
        self.params = params
        self.ctx = ctx
        self.bert = bert
        self.llm = llm
        self.use_hidden = use_hidden

    def _context_for(self, data: Dataset) -> BuildContext:
        """The build context fitting on `data`: the row's own for its fit data, else one kept
        in the context's shared retriever store, so every learned row of a run (and the union's
        sources) reuses a model already fitted on the same data instead of refitting it."""
        if data is self.ctx.fit_data:
            return self.ctx
        store = self.ctx._retrievers
        key = f"learned-fusion.context:{id(data)}"
        got = store.get(key)
        if got is None or got.fit_data is not data:
            got = BuildContext(fit_data=data, catalog=self.ctx.catalog, seed=self.ctx.seed,
                               item_embeddings=self.ctx.item_embeddings, backend=self.ctx.backend,
                               name=self.ctx.name)
            store[key] = got
        return got

    def _retriever(self, config: Any, data: Dataset, what: str) -> Any:
        try:
            return self._context_for(data).retriever(config)
        except ConfigError as e:
            raise ConfigError(f"learned-fusion.{what}: {e}") from None

    def _scorer(self, name: str, config: Any, data: Dataset) -> Any:
        """A fitted `extra` model as a feature scorer (per-source columns when it has them)."""
        from .baselines import RetrieverScorer

        r = self._retriever(config, data, f"extra.{name}")
        return r if isinstance(r, SourceFeatures) else RetrieverScorer(r, len(data.item_ids), name)

    def builder(self, fit_data: Dataset) -> FeatureBuilder:
        """The feature builder with every component fitted on `fit_data`."""
        p = self.params
        extra = {name: self._scorer(name, cfg, fit_data) for name, cfg in p.extra.items()}
        try:
            comps = build_components(fit_data, self.ctx.catalog, itemcf=_opts(p.itemcf), usercf=_opts(p.usercf),
                                     popularity=p.popularity, recency_days=p.recency_days, bert=self.bert,
                                     trend_days=p.trend_days, extra=extra, history_length=p.history_length)
        except ValueError as e:
            raise ConfigError(f"learned-fusion.extra: {e}") from None
        ranks: list[str] = []
        if p.ranks:
            ranks = [n for n, s in comps.items() if n != "history_len" and not isinstance(s, SourceFeatures)]
            ranks += ["llm"] if self.llm is not None else []
        return FeatureBuilder(comps, llm=self.llm, use_hidden=self.use_hidden, ranks=ranks)

    def list_retriever(self, fit_data: Dataset) -> Any | None:
        """The ``candidates_from`` retriever fitted on `fit_data` (the split's train part), or None."""
        if self.params.candidates_from is None:
            return None
        return self._retriever(self.params.candidates_from, fit_data, "candidates_from")


def _opts(config: Any) -> dict[str, Any] | None:
    """A kNN config as the keyword options `build_components` passes on (None: feature off)."""
    return None if config is None else dict(config)


__all__ = ["LearnedParts"]
