"""The one-call Python API: `Reranker(model, mode).rerank(history, candidates) -> Ranking`."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, model_validator

from .config import BaseConfig
from .errors import ConfigError, DataError, RerankerError, UnknownIdError
from .explain import ExplainerConfig
from .ranking.base import ItemListing, rank_many_batch_size
from .ranking.configs import PointwiseConfig
from .ranking.llm_common import Catalog, make_lookup
from .registry import LLM_RANKER_TYPES, MODE_TO_TYPE, RANKERS, BuildContext
from .request_checks import given_id, product_fields, reject_ambiguous_ids
from .types import Candidate, History, Item, Ranking

Mode = Literal["pointwise", "listwise", "verbalizer"]
MAX_CANDIDATES = 1000
"""Default cap on the candidates of one request (`RerankerConfig.max_candidates`)."""
MAX_HISTORY_ITEMS = 1000
"""Default cap on the history items of one request (`RerankerConfig.max_history_items`)."""
MODES: tuple[str, ...] = tuple(MODE_TO_TYPE)

if TYPE_CHECKING:
    from .ranking.configs import ListwiseConfig, VerbalizerConfig

    _LLM_RANKER: TypeAlias = PointwiseConfig | ListwiseConfig | VerbalizerConfig
else:
    _LLM_RANKER = RANKERS.union(LLM_RANKER_TYPES)


class RerankerConfig(BaseConfig):
    """Settings of the high-level `Reranker`: the LLM ranker's config (any registered LLM
    ranker: the model settings plus the ranker's own options) and the explainer's."""

    ranker: _LLM_RANKER = Field(default_factory=PointwiseConfig)
    explain: ExplainerConfig = Field(default_factory=ExplainerConfig)
    max_candidates: int = Field(MAX_CANDIDATES, ge=1, le=100_000)
    """Most candidates one request may carry (more: a DataError before any work)."""
    max_history_items: int = Field(MAX_HISTORY_ITEMS, ge=0, le=100_000)
    """Most history items one request may carry, before the ranker keeps its last `max_history`."""

    @model_validator(mode="before")
    @classmethod
    def _old_form(cls, data: Any) -> Any:
        """The form before the registry: ``{llm: {...}, mode, permutations, window, step, seed,
        max_history, explain_top_k}``."""
        if not isinstance(data, Mapping) or "ranker" in data:
            return data
        old = dict(data)
        if not ({"llm", "mode", "explain_top_k"} & old.keys()):
            return data
        ranker = dict(old.pop("llm", None) or {})
        mode = old.pop("mode", "pointwise")
        ranker["type"] = MODE_TO_TYPE.get(mode, mode)
        for k in ("permutations", "window", "step", "seed", "max_history"):
            if k in old:
                ranker[k] = old.pop(k)
        explain = dict(old.pop("explain", None) or {})
        if "explain_top_k" in old:
            explain["top_k"] = old.pop("explain_top_k")
        return {**old, "ranker": ranker, "explain": explain}


class _ChainCatalog:
    """Items given inline (dicts / Items) first, then the user's catalog."""

    def __init__(self, local: dict[str, Item], base: Catalog) -> None:
        self.local = local
        self.base = base
        self._base_lookup = make_lookup(base) if base is not None else None

    def item(self, item_id: str) -> Item:
        if item_id in self.local:
            return self.local[item_id]
        if self._base_lookup is None:
            raise UnknownIdError(
                f"item {item_id!r} is neither given in the request nor in a catalog", column="item_id"
            )
        return self._base_lookup(item_id)

    def catalog(self) -> dict[str, Item]:
        out: dict[str, Item] = {}
        if self.base is not None and self._base_lookup is not None:
            if isinstance(self.base, ItemListing):
                out.update(self.base.catalog())
            elif isinstance(self.base, Mapping):
                lookup = self._base_lookup
                out.update({k: lookup(k) for k in self.base})
        out.update(self.local)
        return out


@dataclass(frozen=True)
class PreparedRequest:
    """One request, normalised (`Reranker.prepare`): ready to rank alone or with others."""

    history: History
    candidates: list[Candidate]
    local: dict[str, Item]
    """Items given inline in the request."""
    base: Catalog
    """The catalog behind them (None: none)."""

    @property
    def catalog(self) -> _ChainCatalog:
        return _ChainCatalog(self.local, self.base)


def _agree(merged: dict[str, Item], local: dict[str, Item]) -> bool:
    """Whether `local`'s inline items can join `merged` (no id given with other contents)."""
    return all(merged.get(k, v) == v for k, v in local.items())


def _as_item(x: Any, where: str) -> Item | None:
    if isinstance(x, Item):
        return x
    if isinstance(x, Mapping):
        try:
            return Item.from_dict(x)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
    return None


def _as_id(x: Any, where: str) -> str:
    if isinstance(x, (str, int)) and not isinstance(x, bool) and str(x) != "":
        return str(x)
    raise DataError(f"{where}: expected an item id, an item dict or an Item, got {type(x).__name__}")


def _check_sizes(history: Any, candidates: Any, max_candidates: int, max_history_items: int) -> None:
    """Bounds of one request: checked first, so a huge list costs nothing."""
    items = history.items if isinstance(history, History) else history
    if isinstance(items, Sequence) and not isinstance(items, (str, bytes)) and len(items) > max_history_items:
        raise DataError(f"history: {len(items)} items; at most {max_history_items} per request "
                        "(max_history_items)")
    if isinstance(candidates, Sequence) and not isinstance(candidates, (str, bytes)) and len(candidates) > max_candidates:
        raise DataError(f"candidates: {len(candidates)} items; at most {max_candidates} per request "
                        "(max_candidates)")


def normalize_request(
    history: Any,
    candidates: Any,
    context: Mapping[str, Any] | None = None,
    user_id: str | None = None,
    *,
    max_candidates: int = MAX_CANDIDATES,
    max_history_items: int = MAX_HISTORY_ITEMS,
) -> tuple[History, list[Candidate], dict[str, Item]]:
    """Accept History / ids / dicts / Items for history and Candidate / ids / dicts / Items for
    candidates. Returns (History, candidates, items given inline).

    The public request door: a candidate id given twice (ids compare as strings, so `7` and
    `"7"` collide) or also in the history is a DataError naming its index
    (`reranker.request_checks`). A candidate dict's `score` is its stage-1 score
    (`Candidate.score`), never a product attribute shown to the LLM. More than
    `max_candidates` candidates or `max_history_items` history items is a DataError before any
    item is read."""
    _check_sizes(history, candidates, max_candidates, max_history_items)
    local: dict[str, Item] = {}
    if history is None:
        hist = History()
    elif isinstance(history, History):
        hist = history
    elif isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise DataError("history must be a list of item ids / item dicts, or a History")
    else:
        ids = []
        for i, x in enumerate(history):
            it = _as_item(x, f"history[{i}]")
            if it is not None:
                local[it.item_id] = it
                ids.append(it.item_id)
            else:
                ids.append(_as_id(x, f"history[{i}]"))
        hist = History(user_id, ids)
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise DataError("candidates must be a list of item ids / item dicts / Candidates")
    cands: list[Candidate] = []
    for i, x in enumerate(candidates):
        if isinstance(x, Candidate):
            cands.append(x)
            continue
        it = _as_item(product_fields(x) if isinstance(x, Mapping) else x, f"candidates[{i}]")
        if it is not None:
            local[it.item_id] = it
            score = x.get("score", 0.0) if isinstance(x, Mapping) else 0.0
            try:
                score = float(score)
            except (TypeError, ValueError):
                raise DataError(f"candidates[{i}]: score must be a number, got {score!r}") from None
            cands.append(Candidate(it.item_id, score, "request"))
        else:
            cands.append(Candidate(_as_id(x, f"candidates[{i}]"), 0.0, "request"))
    reject_ambiguous_ids(
        hist.items,
        [c.item_id for c in cands],
        given_history=[given_id(x) for x in history] if isinstance(history, Sequence) else None,
        given_candidates=[given_id(x) for x in candidates],
    )
    if context is not None and not isinstance(context, Mapping):
        raise DataError(f"context must be a mapping (a JSON object), got {type(context).__name__}")
    if context:
        from dataclasses import replace

        hist = replace(hist, context={**dict(hist.context or {}), **dict(context)})
    return hist, cands, local


class Reranker:
    """Rerank candidates for one user with a local LLM.

    >>> rr = Reranker(model="smollm2-135m", mode="pointwise")  # or "openai:MODEL@http://host:8000/v1"
    >>> ranking = rr.rerank(
    ...     history=[{"id": "1", "title": "Trail shoes"}],
    ...     candidates=[{"id": "a", "title": "Running socks"}, {"id": "b", "title": "Espresso"}])

    `history` / `candidates` may be item ids (with `catalog=` a dict id -> Item or a Dataset),
    plain dicts `{"id", "title", ...}`, Items, or a History / Candidates. The model loads on first
    use and is shared by every Reranker with the same LLM settings.
    """

    def __init__(
        self,
        model: str = "smollm2-135m",
        mode: Mode = "pointwise",
        *,
        catalog: Catalog = None,
        config: RerankerConfig | None = None,
        backend: Any = None,
        **options: Any,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        if config is None:
            explain_fields = {f"explain_{k}": k for k in ExplainerConfig.model_fields}
            explain = {explain_fields[k]: v for k, v in options.items() if k in explain_fields}
            limits: dict[str, Any] = {k: options.pop(k) for k in ("max_candidates", "max_history_items") if k in options}
            ranker = {k: v for k, v in options.items() if k not in explain_fields}
            config = RerankerConfig.from_dict(
                {"ranker": {**ranker, "model": model, "type": MODE_TO_TYPE[mode]}, "explain": explain, **limits}
            )
        self.config = config
        self.catalog = catalog
        self._backend = backend
        self._ranker: Any = None
        self._explainer: Any = None
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        return self.config.ranker.type.removeprefix("llm-")

    @property
    def ranker(self) -> Any:
        """The LLM ranker (built through the registry on first use; shared by every call)."""
        with self._lock:
            if self._ranker is None:
                self._ranker = RANKERS.build(
                    self.config.ranker, BuildContext(catalog=self.catalog, backend=self._backend), where="ranker"
                )
            return self._ranker

    @property
    def explainer(self) -> Any:
        ranker = self.ranker
        with self._lock:
            if self._explainer is None:
                from .explain import Explainer

                self._explainer = Explainer(
                    ranker.config, explain_config=self.config.explain, backend=ranker.backend,
                    prompts=ranker.prompts,
                )
            return self._explainer

    def rerank(
        self,
        history: Any,
        candidates: Any,
        top_k: int | None = None,
        explain: bool = False,
        catalog: Catalog = None,
        context: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        *,
        explain_mode: str | None = None,
        interactions: Any = None,
    ) -> Ranking:
        """Rank the candidates for this user (every candidate once; the first `top_k` when
        given), optionally explaining the top `explain_top_k` (or `top_k`, if smaller).
        `context` (time, device, session intent ...) is shown to the LLM.

        Explanations are built from evidence (`reranker.explain`); `explain_mode` (llm |
        template) overrides `explain_mode` of the config; `interactions` (a Dataset, a frame
        with user_id / item_id, or a mapping item id -> user ids: your training interactions)
        gives the "N other users who chose X also chose Y" counts. Without it, a Dataset passed
        as the catalog (here or to the constructor) gives them; otherwise they are left out."""
        if top_k is not None and top_k < 0:
            raise ConfigError(f"top_k: must be >= 0, got {top_k}")
        req = self.prepare(history, candidates, catalog, context, user_id)
        hist, cat = req.history, req.catalog
        ranking = self.ranker.rank(hist, req.candidates, catalog=cat)
        if explain:
            top = self.config.explain.top_k
            k = top if top_k is None else min(top_k, top)
            if interactions is None:
                base = catalog if catalog is not None else self.catalog
                interactions = base if hasattr(base, "interactions") else None  # a Dataset
            ranking = self.explainer.explain(hist, ranking, top_k=k, catalog=cat, interactions=interactions,
                                             mode=explain_mode)
        return ranking.top_k(top_k) if top_k is not None else ranking

    def prepare(
        self, history: Any, candidates: Any, catalog: Catalog = None, context: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> PreparedRequest:
        """Normalise and check one request (`normalize_request`, this Reranker's size limits):
        what `rerank` does before ranking. Raises a `DataError` naming the field."""
        hist, cands, local = normalize_request(
            history, candidates, context, user_id,
            max_candidates=self.config.max_candidates, max_history_items=self.config.max_history_items,
        )
        return PreparedRequest(hist, cands, local, catalog if catalog is not None else self.catalog)

    @property
    def batches_requests(self) -> int:
        """How many requests `rank_prepared` ranks in one batch: the ranker's preferred number
        when it has a batched path (listwise: the users whose prompts fill one generate
        batch), else 1 (pointwise and the verbalizer score one request per forward)."""
        return rank_many_batch_size(self.ranker)

    def rank_prepared(self, requests: Sequence[PreparedRequest]) -> list[Ranking | RerankerError]:
        """Rank prepared requests (no explanations), each result as `rerank` would give it.
        A ranker with a batched path (`BatchRanker.rank_many`) ranks up to `batches_requests`
        of them together; requests whose inline items disagree (one id, two contents) or that
        name different catalogs go to different batches. A request that fails gets its
        `RerankerError` in its place (a failing batch is re-ranked one request at a time, so
        one bad request never fails the others)."""
        ranker = self.ranker
        out: list[Ranking | RerankerError | None] = [None] * len(requests)
        size = self.batches_requests
        groups: list[tuple[list[int], dict[str, Item], Catalog]] = []
        for i, r in enumerate(requests):
            g = next((g for g in groups if len(g[0]) < size and g[2] is r.base and _agree(g[1], r.local)), None)
            if g is None:
                g = ([], {}, r.base)
                groups.append(g)
            g[0].append(i)
            g[1].update(r.local)
        for idx, local, base in groups:
            if len(idx) > 1:
                try:
                    ranked = ranker.rank_many([(requests[i].history, requests[i].candidates) for i in idx],
                                              _ChainCatalog(local, base))
                except RerankerError:
                    pass  # find the failing request: one at a time below
                else:
                    for i, r in zip(idx, ranked, strict=True):
                        out[i] = r
                    continue
            for i in idx:
                try:
                    out[i] = ranker.rank(requests[i].history, requests[i].candidates, catalog=requests[i].catalog)
                except RerankerError as e:
                    out[i] = e
        return [r for r in out if r is not None]

    async def arerank(
        self,
        history: Any,
        candidates: Any,
        top_k: int | None = None,
        explain: bool = False,
        catalog: Catalog = None,
        context: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        *,
        explain_mode: str | None = None,
        interactions: Any = None,
    ) -> Ranking:
        """`rerank` as a coroutine: the ranking runs in a worker thread, so the event loop stays
        free while the model works; `asyncio.gather` several calls to rank users concurrently.
        Behind a server (`openai:MODEL@URL`) the requests of every concurrent call share one
        connection pool with at most `server.max_concurrency` in flight."""
        import asyncio

        return await asyncio.to_thread(self.rerank, history, candidates, top_k, explain, catalog, context, user_id,
                                       explain_mode=explain_mode, interactions=interactions)


__all__ = ["Reranker", "RerankerConfig", "PreparedRequest", "normalize_request", "MODES"]
