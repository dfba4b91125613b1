"""The product: retriever -> candidates -> scorers / rankers -> fusion -> diversity -> top-k ->
explanations, built from one YAML config.

    >>> from reranker.pipeline import Pipeline
    >>> pipe = Pipeline.from_yaml("configs/pipeline-demo.yaml").fit(dataset)
    >>> pipe.recommend("U001", k=5).to_dataframe()
    >>> pipe.recommend(History(items=["P010", "P200"], context={"device": "mobile"}), k=5)
    >>> pipe.save("runs/demo-pipeline"); Pipeline.load("runs/demo-pipeline")

Signals: ``cf`` (the retriever's own candidate score), ``content`` (BERT cosine with the user's
recency-weighted profile), ``llm`` (the pointwise Yes/No logit, or a listwise / verbalizer
ranking turned into scores). Fixed fusion ``alpha*content + beta*cf + gamma*llm`` over per-list
normalised signals, with weights from the config or fitted on the validation split
(``fit_weights: true``); or the learned head (``learned.enabled: true``).
Logged-out users and unknown user ids take the popularity path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, ModelError
from ..ranking.learned import LearnedFusionConfig
from ..registry import RANKERS, RETRIEVERS, BuildContext
from ..retrieval.knn import KNNConfig
from ..types import Candidate, History, Ranking
from .config import PipelineConfig
from .persist import load_pipeline, save_pipeline

if TYPE_CHECKING:
    from ..data.dataset import Dataset

log = logging.getLogger(__name__)


# ============================================================================ pipeline
class Pipeline:
    """Retriever -> rankers -> fusion -> diversity -> top-k -> explanations (see module doc)."""

    def __init__(self, config: PipelineConfig | None = None, *, llm_backend: Any | None = None) -> None:
        self.config = config or PipelineConfig()
        self._llm_backend = llm_backend
        self.data: Dataset | None = None
        self.retriever: Any = None
        self.popular: Any = None
        self.bert: Any = None
        self.llm: Any = None
        self.learned: Any = None
        self.weights: dict[str, float] = dict(self.config.ranking.fusion.weights)
        self.fit_report: dict[str, Any] = {}
        self._explainer: Any = None
        self._explainer_lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Pipeline:
        return cls(PipelineConfig.from_yaml(path), **kwargs)

    def _retriever(self, data: Any) -> Any:
        """Stage 1 built through the registry and fitted on `data` (the T- models get the BERT
        scorer's item embeddings)."""
        r = self.config.retriever
        ctx = BuildContext(fit_data=data, seed=self.config.seed)
        rtype = RETRIEVERS.type_of(r)
        if rtype in ("t-itemcf", "t-usercf"):
            if self.bert is None:
                raise ConfigError(f"retriever.type: {rtype} needs text embeddings; enable ranking.bert")
            ctx.item_embeddings = self.bert.encoder.encode_catalog()
        try:
            return RETRIEVERS.build(r, ctx)
        except ConfigError as e:
            raise ConfigError(f"retriever: {e}") from None

    def _build_bert(self, data: Any) -> Any:
        b = self.config.ranking.bert
        if b is None:
            return None
        return RANKERS.build(b, BuildContext(catalog=data)).scorer

    def _build_llm(self, data: Any) -> Any:
        s = self.config.ranking.llm
        if s is None:
            return None
        from ..llm.models import resolve_model

        try:
            resolve_model(s.model)  # cheap existence check: fail at start-up, not mid-run
        except ModelError as e:
            raise ModelError(f"ranking.llm.model: {e}") from None
        if "max_history" not in s.model_fields_set:  # the pipeline's history cap, unless set here
            s = s.model_copy(update={"max_history": self.config.history_cap})
        return RANKERS.build(s, BuildContext(catalog=data, backend=self._llm_backend))

    def fit(self, data: Any) -> Pipeline:
        """Fit stage 1 on `data`; fit fusion weights / the learned head on its validation split
        when the config asks for it (then stage 1 is refitted on all of `data`).

        Ties in time (the validation split's targets, served histories) follow
        ``data.tie_order`` (default: seeded random; ``data.with_tie_order("item_id")`` for the
        old rule), which a saved pipeline keeps."""
        t0 = time.perf_counter()
        self.data = data
        rk = self.config.ranking
        self.bert = self._build_bert(data)
        self.llm = self._build_llm(data)
        self.popular = RETRIEVERS.build({"type": "popular"}, BuildContext(fit_data=data))
        if rk.learned.enabled or rk.fusion.fit_weights:
            from ..data.splits import leave_one_out

            split = leave_one_out(data)
            if rk.learned.enabled:
                self._fit_learned(split)
            else:
                self._fit_weights(split)
        self.retriever = self._retriever(data)
        self.fit_report["fit_seconds"] = time.perf_counter() - t0
        return self

    def _signal_scorers(self, retriever: Any) -> dict[str, Any]:
        from ..ranking.fusion import CandidateScoreScorer, RankerScorer

        out: dict[str, Any] = {"cf": CandidateScoreScorer()}
        if self.bert is not None:
            out["content"] = self.bert
        if self.llm is not None:
            out["llm"] = self.llm if self._pointwise else RankerScorer(self.llm)
        return out

    @property
    def _pointwise(self) -> bool:
        llm = self.config.ranking.llm
        return llm is not None and llm.type == "llm-pointwise"

    def _fit_weights(self, split: Any) -> None:
        """Grid search over the simplex on validation lists (retriever fitted on train)."""
        from ..ranking.fusion import FusionRanker, fit_weights

        rk = self.config.ranking
        retr = self._retriever(split.train)
        hist = split.histories("validation", cap=self.config.history_cap)
        targets = split.targets("validation")
        users = sorted(hist)
        if rk.fusion.fit_users is not None:
            rng = np.random.default_rng(self.config.seed)
            users = sorted(rng.choice(users, min(rk.fusion.fit_users, len(users)), replace=False).tolist())
        cands = retr.retrieve_batch({u: hist[u] for u in users}, rk.n_candidates)
        fr = FusionRanker(self._signal_scorers(retr), weights={"cf": 1.0})
        lists, tgts = [], []
        from tqdm.auto import tqdm

        for u in tqdm(users, desc="fusion: validation signals"):
            cs = cands[u]
            ids = [c.item_id for c in cs]
            if targets[u] not in ids:
                continue  # no signal to learn from when the target was not retrieved
            lists.append(fr.compute_signals(hist[u], cs, all_signals=True))
            tgts.append(ids.index(targets[u]))
        if not lists:
            raise ConfigError("ranking.fusion.fit_weights: no validation target among the candidates")
        search = fit_weights(lists, tgts, grid_step=rk.fusion.grid_step, normalize=rk.fusion.normalize)
        self.weights = {k: float(v) for k, v in search.weights.items()}
        self.fit_report["fusion"] = {"weights": self.weights, "validation_score": float(search.score),
                                     "lists": len(lists)}
        log.info("fusion weights fitted on %d validation lists: %s", len(lists), self.weights)

    def _feature_builder(self, data: Any) -> Any:
        from ..ranking.features import FeatureBuilder, build_components

        r = self.config.retriever
        knn: dict[str, Any] = {"k": 50, "feedback": "implicit"}  # a popularity stage 1 has no kNN options
        if isinstance(r, KNNConfig):
            knn = {"k": r.k, "similarity": "cosine" if r.similarity == "adjusted_cosine" else r.similarity,
                   "feedback": r.feedback}
        comps = build_components(data, self._fit_data(), itemcf=knn, usercf=knn, bert=self.bert)
        llm = self.llm if self._pointwise else None
        return FeatureBuilder(comps, llm=llm, use_hidden=self.config.ranking.learned.use_llm_hidden)

    def _fit_learned(self, split: Any) -> None:
        from ..ranking.learned import LearnedFusionRanker

        ls = self.config.ranking.learned
        head_cfg = LearnedFusionConfig(**{k: getattr(ls, k) for k in LearnedFusionConfig.model_fields})
        retr = self._retriever(split.train) if ls.negatives != "random" else None
        self.learned = LearnedFusionRanker.fit(
            split, self._feature_builder, head_cfg, n_negatives=ls.n_negatives, negatives=ls.negatives,
            retriever=retr, users=ls.users, history_cap=self.config.history_cap, seed=self.config.seed,
            serve_data=self.data)
        self.fit_report["learned"] = self.learned.head.fit_report

    # ------------------------------------------------------------------ serving
    def _check_fitted(self) -> None:
        if self.retriever is None:
            raise ModelError("Pipeline is not fitted; call fit(dataset) or Pipeline.load(dir)")

    def _fit_data(self) -> Dataset:
        """The data `fit` (or `load`) was given; ModelError before that."""
        if self.data is None:
            raise ModelError("Pipeline is not fitted; call fit(dataset) or Pipeline.load(dir)")
        return self.data

    def history_for(self, user: str | History | None, context: Mapping[str, Any] | None = None) -> History:
        """The history to serve: a known user's (capped) history, an ad-hoc one, or empty."""
        if isinstance(user, History):
            h = user.last(self.config.history_cap)
            if context:
                from dataclasses import replace

                h = replace(h, context={**dict(h.context), **dict(context)})
            return h
        if user is None:
            return History(context=dict(context or {}))
        return self._fit_data().history(str(user), cap=self.config.history_cap, context=context)

    def candidates(self, history: History, n: int | None = None) -> list[Candidate]:
        """Stage 1 (popular items for an empty history)."""
        self._check_fitted()
        n = n or self.config.ranking.n_candidates
        if history.is_empty:
            return self.popular.retrieve(history, n)
        return self.retriever.retrieve(history, n)

    def rank(self, history: History, candidates: Sequence[Candidate],
             precomputed: Mapping[str, Sequence[float]] | None = None) -> Ranking:
        """Stage 2 on given candidates (the drop-in second stage): fusion or learned head,
        then MMR when enabled. Returns every candidate once. `precomputed`: fusion signals
        already computed for these candidates (aligned with them; see `rank_many`)."""
        from ..ranking.fusion import FusionRanker

        rk = self.config.ranking
        if history.is_empty:
            # logged-out: nothing to personalise on; keep the popularity order
            ranking = Ranking.from_scores([c.item_id for c in candidates], [c.score for c in candidates],
                                          {"ranker": "popular", "path": "cold-start"})
        elif self.learned is not None:
            ranking = self.learned.rank(history, candidates)
        else:
            signals = self._signal_scorers(self.retriever)
            # a disabled component (bert / llm off) drops out of the weighted sum
            weights = {k: v for k, v in self.weights.items() if k in signals}
            if not any(weights.values()):
                weights = {"cf": 1.0}
            fr = FusionRanker(signals, weights=weights, normalize=rk.fusion.normalize)
            ranking = fr.rank(history, candidates, precomputed)
        if rk.diversity.enabled and len(ranking) > 1:
            from ..ranking.diversity import CategorySimilarity, EmbeddingSimilarity, mmr_rerank

            sim = (CategorySimilarity(self._fit_data()) if rk.diversity.similarity == "category" or self.bert is None
                   else EmbeddingSimilarity(self.bert.encoder))
            ranking = mmr_rerank(ranking, sim, rk.diversity.lam)
        return ranking

    def rank_many(self, requests: Sequence[tuple[History, Sequence[Candidate]]]) -> list[Ranking]:
        """`rank` for several requests. A listwise LLM in the fusion (a `BatchRanker`) ranks
        every personal request's candidates through its `rank_many` (one batched `generate` per
        `users_per_batch` requests) before the per-request fusion; the pointwise LLM already
        scores all candidates of a request in one packed forward. Same rankings as `rank` one
        by one, up to the batched generation's padding."""
        from ..ranking.base import BatchRanker, rank_many_batch_size
        from ..ranking.fusion import RankerScorer

        pre: dict[int, dict[str, list[float]]] = {}
        llm = self.llm
        if (self.learned is None and llm is not None and not self._pointwise and isinstance(llm, BatchRanker)
                and self.weights.get("llm", 0.0) != 0):
            todo = [i for i, (h, c) in enumerate(requests) if not h.is_empty and len(c) > 0]
            size = rank_many_batch_size(llm)
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                ranked = llm.rank_many([(requests[i][0], requests[i][1]) for i in chunk])
                for i, r in zip(chunk, ranked, strict=True):
                    pre[i] = {"llm": RankerScorer.position_scores(r, requests[i][1]).tolist()}
        return [self.rank(h, c, pre.get(i)) for i, (h, c) in enumerate(requests)]

    def recommend(
        self,
        user: str | History | None,
        k: int | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        explain: bool | None = None,
        explain_mode: str | None = None,
    ) -> Ranking:
        """Top-k recommendations for a user id, an ad-hoc History, or None (logged out);
        `explain_mode` (llm | template) overrides `explain.mode`."""
        self._check_fitted()
        t0 = time.perf_counter()
        history = self.history_for(user, context)
        cands = self.candidates(history)
        ranking = self.rank(history, cands).top_k(k or self.config.top_k)
        diag = dict(ranking.diagnostics)
        diag["pipeline"] = {"user_id": history.user_id, "history_len": len(history),
                            "n_candidates": len(cands), "path": "popular" if history.is_empty else "personal",
                            "latency_s": time.perf_counter() - t0}
        ranking = Ranking(ranking.items, diag)
        if (self.config.explain.enabled if explain is None else explain) and not history.is_empty:
            ranking = self.explain(history, ranking, mode=explain_mode)
        return ranking

    def recommend_batch(
        self, users: Sequence[str | History | None], k: int | None = None, *, explain: bool | None = None,
        explain_mode: str | None = None,
    ) -> list[Ranking]:
        """`recommend` for many users (stage 1 batched; the explanations generated in batches,
        `explain_many`)."""
        from tqdm.auto import tqdm

        from ..progress import bars_enabled

        self._check_fitted()
        histories = [self.history_for(u) for u in users]
        n = self.config.ranking.n_candidates
        personal = [i for i, h in enumerate(histories) if not h.is_empty]
        batch = self.retriever.retrieve_batch([histories[i] for i in personal], n) if personal else []
        cand_of = dict(zip(personal, batch, strict=True))
        out = []
        for i, h in enumerate(tqdm(histories, desc="recommend", disable=len(histories) < 20 or not bars_enabled())):
            cands = cand_of.get(i) or self.popular.retrieve(h, n)
            out.append(self.rank(h, cands).top_k(k or self.config.top_k))
        if self.config.explain.enabled if explain is None else explain:
            todo = [i for i, h in enumerate(histories) if not h.is_empty]
            done = self.explain_many([(histories[i], out[i]) for i in todo], mode=explain_mode) if todo else []
            for i, r in zip(todo, done, strict=True):
                out[i] = r
        return out

    def explain(self, history: History, ranking: Ranking, mode: str | None = None) -> Ranking:
        """Explanations of the top `explain.top_k` items from evidence (`reranker.explain`): the
        co-choice counts come from the fit data; `mode` (llm | template) overrides
        `explain.mode`. The template mode needs no LLM."""
        return self.explain_many([(history, ranking)], mode=mode)[0]

    def explain_many(self, requests: Sequence[tuple[History, Ranking]], mode: str | None = None) -> list[Ranking]:
        """`explain` for several (history, ranking) pairs, the LLM's answers generated in one
        batch (`Explainer.explain_many`)."""
        from ..explain import Explainer, ExplainerConfig

        data = self._fit_data()
        mode = mode or self.config.explain.mode
        if mode == "llm" and self.llm is None:
            raise ConfigError("explain: mode llm needs ranking.llm (it is null); use explain.mode: template")
        with self._explainer_lock:
            if self._explainer is None:
                ex = self.config.explain
                settings = ExplainerConfig(**{k: getattr(ex, k) for k in ExplainerConfig.model_fields})
                backend = self.llm.backend if self.llm is not None else None
                self._explainer = Explainer(backend=backend, explain_config=settings, catalog=data)
            explainer = self._explainer
        return explainer.explain_many(requests, top_k=self.config.explain.top_k, interactions=data, mode=mode)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write config, fit data (Parquet), fusion weights / learned head and versions (JSON);
        no pickles (see `reranker.pipeline.persist`)."""
        self._check_fitted()
        return save_pipeline(self, Path(folder))

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> Pipeline:
        """Load a saved pipeline; refuses folders written by an incompatible format."""
        return load_pipeline(cls, Path(folder), **kwargs)

    def _rebuild(self, data: Any, weights: dict[str, float], fit_report: dict[str, Any],
                 learned_dir: Path | None) -> None:
        """Rebuild the fitted parts from saved data without refitting weights / the head."""
        from ..ranking.learned import LearnedFusion, LearnedFusionRanker

        self.data = data
        self.bert = self._build_bert(data)
        self.llm = self._build_llm(data)
        self.popular = RETRIEVERS.build({"type": "popular"}, BuildContext(fit_data=data))
        self.retriever = self._retriever(data)
        self.weights = weights
        self.fit_report = fit_report
        if learned_dir is not None:
            self.learned = LearnedFusionRanker(self._feature_builder(data), LearnedFusion.load(learned_dir))


__all__ = ["Pipeline", "PipelineConfig"]
