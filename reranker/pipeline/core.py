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

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from . import __version__
from .config import BaseConfig
from .errors import ConfigError, ModelError
from .ranking.learned import LearnedFusionConfig
from .types import Candidate, History, Ranking, to_jsonable

log = logging.getLogger(__name__)

PIPELINE_FORMAT = 1


# ============================================================================ config
class RetrieverSection(BaseConfig):
    """Stage 1. `similarity` and `k` apply to the kNN models; `mu` to the T- models."""

    type: Literal["itemcf", "usercf", "t-itemcf", "t-usercf", "popular"] = "itemcf"
    k: int = Field(50, ge=1)
    similarity: Literal["cosine", "pearson", "adjusted_cosine"] = "cosine"
    feedback: Literal["explicit", "implicit"] = "implicit"
    shrinkage: float = Field(0.0, ge=0)
    min_support: int = Field(1, ge=1)
    mu: float | None = Field(None, ge=0, le=1)


class LLMSection(BaseConfig):
    """The LLM reranker (see reranker.llm.base.LLMConfig for the model options)."""

    enabled: bool = True
    model: str = "smollm2-135m"
    mode: Literal["pointwise", "listwise", "verbalizer"] = "pointwise"
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    threads: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    max_context: int = Field(2048, ge=128)
    item_text_tokens: int = Field(48, ge=0)
    max_attrs: int = Field(3, ge=0)
    prompt_dir: str | None = None


class BertSection(BaseConfig):
    """The BERT content scorer."""

    enabled: bool = True
    model: str = "minilm"
    half_life: float = Field(5.0, gt=0)
    max_chars: int = Field(400, ge=16)
    batch_size: int = Field(64, ge=1)


class FusionWeights(BaseConfig):
    """alpha (content), beta (cf), gamma (llm); each >= 0."""

    content: float = Field(0.3, ge=0)
    cf: float = Field(0.5, ge=0)
    llm: float = Field(0.2, ge=0)


class FusionSection(BaseConfig):
    """Fixed-weight fusion of per-list-normalised signals."""

    weights: FusionWeights = Field(default_factory=FusionWeights)
    normalize: Literal["zscore", "minmax", "rank", "none"] = "zscore"
    fit_weights: bool = False
    grid_step: float = Field(0.1, gt=0, le=0.5)
    fit_users: int | None = Field(None, ge=1)


class LearnedSection(LearnedFusionConfig):
    """The learned head (replaces fixed fusion when enabled)."""

    enabled: bool = False
    users: int | None = Field(None, ge=1, description="validation users to fit on (None: all)")
    n_negatives: int = Field(19, ge=1)
    negatives: Literal["random", "retrieved", "mixed"] = "random"


class DiversitySection(BaseConfig):
    """MMR re-rank of the fused list (lam = 1: off)."""

    enabled: bool = False
    lam: float = Field(0.7, ge=0, le=1)
    similarity: Literal["category", "embedding"] = "category"


class ExplainSection(BaseConfig):
    enabled: bool = False
    top_k: int = Field(3, ge=1)


class RankingSection(BaseConfig):
    n_candidates: int = Field(20, ge=1)
    llm: LLMSection = Field(default_factory=LLMSection)
    bert: BertSection = Field(default_factory=BertSection)
    fusion: FusionSection = Field(default_factory=FusionSection)
    learned: LearnedSection = Field(default_factory=LearnedSection)
    diversity: DiversitySection = Field(default_factory=DiversitySection)


class PipelineConfig(BaseConfig):
    """A whole pipeline (YAML: configs/pipeline-*.yaml)."""

    name: str = "pipeline"
    retriever: RetrieverSection = Field(default_factory=RetrieverSection)
    ranking: RankingSection = Field(default_factory=RankingSection)
    explain: ExplainSection = Field(default_factory=ExplainSection)
    top_k: int = Field(10, ge=1)
    history_cap: int = Field(20, ge=1)
    seed: int = 0


# ============================================================================ pipeline
class Pipeline:
    """Retriever -> rankers -> fusion -> diversity -> top-k -> explanations (see module doc)."""

    def __init__(self, config: PipelineConfig | None = None, *, llm_backend: Any | None = None) -> None:
        self.config = config or PipelineConfig()
        self._llm_backend = llm_backend
        self.data = None
        self.retriever: Any = None
        self.popular: Any = None
        self.bert: Any = None
        self.llm: Any = None
        self.learned: Any = None
        self.weights: dict[str, float] = self.config.ranking.fusion.weights.model_dump()
        self.fit_report: dict[str, Any] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Pipeline:
        return cls(PipelineConfig.from_yaml(path), **kwargs)

    def _retriever(self, data: Any) -> Any:
        from .retrieval.knn import make_retriever

        r = self.config.retriever
        if r.type == "popular":
            return make_retriever("popular").fit(data)
        opts: dict[str, Any] = {"k": r.k, "similarity": r.similarity, "feedback": r.feedback,
                                "shrinkage": r.shrinkage, "min_support": r.min_support}
        if r.type in ("usercf", "t-usercf") and r.similarity == "adjusted_cosine":
            raise ConfigError("retriever.similarity: adjusted_cosine is for item-based models only")
        if r.type.startswith("t-"):
            if self.bert is None:
                raise ConfigError(f"retriever.type: {r.type} needs text embeddings; enable ranking.bert")
            ids, emb = self.bert.encoder.encode_catalog()
            opts.update(item_embeddings=(ids, emb), mu=0.3 if r.mu is None else r.mu)
        elif r.mu is not None:
            raise ConfigError(f"retriever.mu: only the t-itemcf / t-usercf models take mu, not {r.type}")
        try:
            return make_retriever(r.type, **opts).fit(data)
        except ConfigError as e:
            raise ConfigError(f"retriever: {e}") from None

    def _build_bert(self, data: Any) -> Any:
        b = self.config.ranking.bert
        if not b.enabled:
            return None
        from .ranking.bert import BertScorer, BertScorerConfig

        return BertScorer(data, BertScorerConfig(model=b.model, half_life=b.half_life,
                                                 max_chars=b.max_chars, batch_size=b.batch_size))

    def _build_llm(self, data: Any) -> Any:
        s = self.config.ranking.llm
        from .llm.base import LLMConfig
        from .llm.models import resolve_model

        try:
            resolve_model(s.model)  # cheap existence check: fail at start-up, not mid-run
        except ModelError as e:
            raise ModelError(f"ranking.llm.model: {e}") from None

        cfg = LLMConfig(model=s.model, dtype=s.dtype, threads=s.threads, batch_size=s.batch_size,
                        max_context=s.max_context, item_text_tokens=s.item_text_tokens, max_attrs=s.max_attrs,
                        prompt_dir=Path(s.prompt_dir) if s.prompt_dir else None)
        if s.mode == "pointwise":
            from .ranking.pointwise import PointwiseLLMRanker as cls
        elif s.mode == "listwise":
            from .ranking.listwise import ListwiseLLMRanker as cls
        else:
            from .ranking.verbalizer import VerbalizerLLMRanker as cls
        return cls(cfg, backend=self._llm_backend, catalog=data, max_history=self.config.history_cap)

    def fit(self, data: Any) -> Pipeline:
        """Fit stage 1 on `data`; fit fusion weights / the learned head on its validation split
        when the config asks for it (then stage 1 is refitted on all of `data`)."""
        from .retrieval.popularity import PopularityRetriever

        t0 = time.perf_counter()
        self.data = data
        rk = self.config.ranking
        self.bert = self._build_bert(data)
        if rk.llm.enabled:
            self.llm = self._build_llm(data)
        self.popular = PopularityRetriever().fit(data)
        if rk.learned.enabled or rk.fusion.fit_weights:
            from .data.splits import leave_one_out

            split = leave_one_out(data)
            if rk.learned.enabled:
                self._fit_learned(split)
            else:
                self._fit_weights(split)
        self.retriever = self._retriever(data)
        self.fit_report["fit_seconds"] = time.perf_counter() - t0
        return self

    def _signal_scorers(self, retriever: Any) -> dict[str, Any]:
        from .ranking.fusion import CandidateScoreScorer, RankerScorer

        out: dict[str, Any] = {"cf": CandidateScoreScorer()}
        if self.bert is not None:
            out["content"] = self.bert
        if self.llm is not None:
            out["llm"] = self.llm if self.config.ranking.llm.mode == "pointwise" else RankerScorer(self.llm)
        return out

    def _fit_weights(self, split: Any) -> None:
        """Grid search over the simplex on validation lists (retriever fitted on train)."""
        from .ranking.fusion import FusionRanker, fit_weights

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
        from .ranking.features import FeatureBuilder, build_components

        r = self.config.retriever
        knn = {"k": r.k, "similarity": "cosine" if r.similarity == "adjusted_cosine" else r.similarity,
               "feedback": r.feedback}
        comps = build_components(data, self.data, itemcf=knn, usercf=knn, bert=self.bert)
        llm = self.llm if self.config.ranking.llm.mode == "pointwise" else None
        return FeatureBuilder(comps, llm=llm, use_hidden=self.config.ranking.learned.use_llm_hidden)

    def _fit_learned(self, split: Any) -> None:
        from .ranking.learned import LearnedFusionRanker

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
        return self.data.history(str(user), cap=self.config.history_cap, context=context)

    def candidates(self, history: History, n: int | None = None) -> list[Candidate]:
        """Stage 1 (popular items for an empty history)."""
        self._check_fitted()
        n = n or self.config.ranking.n_candidates
        if history.is_empty:
            return self.popular.retrieve(history, n)
        return self.retriever.retrieve(history, n)

    def rank(self, history: History, candidates: Sequence[Candidate]) -> Ranking:
        """Stage 2 on given candidates (the drop-in second stage): fusion or learned head,
        then MMR when enabled. Returns every candidate once."""
        from .ranking.fusion import FusionRanker

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
            ranking = fr.rank(history, candidates)
        if rk.diversity.enabled and len(ranking) > 1:
            from .ranking.diversity import CategorySimilarity, EmbeddingSimilarity, mmr_rerank

            sim = (CategorySimilarity(self.data) if rk.diversity.similarity == "category" or self.bert is None
                   else EmbeddingSimilarity(self.bert.encoder))
            ranking = mmr_rerank(ranking, sim, rk.diversity.lam)
        return ranking

    def recommend(
        self,
        user: str | History | None,
        k: int | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        explain: bool | None = None,
    ) -> Ranking:
        """Top-k recommendations for a user id, an ad-hoc History, or None (logged out)."""
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
            ranking = self.explain(history, ranking)
        return ranking

    def recommend_batch(
        self, users: Sequence[str | History | None], k: int | None = None, *, explain: bool | None = None
    ) -> list[Ranking]:
        """`recommend` for many users (stage 1 batched)."""
        from tqdm.auto import tqdm

        self._check_fitted()
        histories = [self.history_for(u) for u in users]
        n = self.config.ranking.n_candidates
        personal = [i for i, h in enumerate(histories) if not h.is_empty]
        batch = self.retriever.retrieve_batch([histories[i] for i in personal], n) if personal else []
        cand_of = dict(zip(personal, batch, strict=True))
        out = []
        for i, h in enumerate(tqdm(histories, desc="recommend", disable=len(histories) < 20)):
            cands = cand_of.get(i) or self.popular.retrieve(h, n)
            r = self.rank(h, cands).top_k(k or self.config.top_k)
            if (self.config.explain.enabled if explain is None else explain) and not h.is_empty:
                r = self.explain(h, r)
            out.append(r)
        return out

    def explain(self, history: History, ranking: Ranking) -> Ranking:
        """Grounded explanations for the top `explain.top_k` items."""
        from .explain import Explainer

        if self.llm is None:
            raise ConfigError("explain: needs ranking.llm.enabled")
        if getattr(self, "_explainer", None) is None:
            self._explainer = Explainer(backend=self.llm.backend, catalog=self.data)
        return self._explainer.explain(history, ranking, top_k=self.config.explain.top_k)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write config, fit data (Parquet), fusion weights / learned head and versions (JSON);
        no pickles. Stage 1 is refitted from the saved interactions on load (deterministic;
        the data fingerprint is checked)."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.to_yaml(folder / "config.yaml")
        self.data.interactions.to_parquet(folder / "interactions.parquet", index=False)
        items = self.data.items.copy()
        for c in items.columns:  # mixed object columns -> strings for Parquet
            if items[c].dtype == object:
                items[c] = items[c].map(lambda v: None if v is None else str(v))
        items.to_parquet(folder / "items.parquet", index=False)
        if self.learned is not None:
            self.learned.head.save(folder / "learned")
        meta = {
            "format": PIPELINE_FORMAT,
            "reranker_version": __version__,
            "weights": self.weights,
            "data_fingerprint": _fingerprint(self.data),
            "prompt_versions": _prompt_versions(),
            "fit_report": to_jsonable(self.fit_report),
        }
        (folder / "pipeline.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> Pipeline:
        """Load a saved pipeline; refuses folders written by an incompatible format."""
        from .data.dataset import Dataset

        folder = Path(folder)
        meta_path = folder / "pipeline.json"
        if not meta_path.is_file():
            raise ConfigError(f"{folder}: not a saved pipeline (no pipeline.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != PIPELINE_FORMAT:
            raise ConfigError(
                f"{meta_path}: pipeline format {meta.get('format')} (written by reranker "
                f"{meta.get('reranker_version')}) is not supported; this reranker {__version__} "
                f"reads format {PIPELINE_FORMAT}. Refit and save it again."
            )
        import pandas as pd

        pipe = cls(PipelineConfig.from_yaml(folder / "config.yaml"), **kwargs)
        data = Dataset(pd.read_parquet(folder / "interactions.parquet"),
                       pd.read_parquet(folder / "items.parquet"), name=folder.name)
        if _fingerprint(data) != meta["data_fingerprint"]:
            raise ConfigError(f"{folder}: saved data does not match its fingerprint (modified?)")
        rk = pipe.config.ranking
        # rebuild the parts without refitting weights/head: they come from disk
        from .ranking.learned import LearnedFusion, LearnedFusionRanker
        from .retrieval.popularity import PopularityRetriever

        pipe.data = data
        pipe.bert = pipe._build_bert(data)
        if rk.llm.enabled:
            pipe.llm = pipe._build_llm(data)
        pipe.popular = PopularityRetriever().fit(data)
        pipe.retriever = pipe._retriever(data)
        pipe.weights = {k: float(v) for k, v in meta["weights"].items()}
        pipe.fit_report = meta.get("fit_report", {})
        if (folder / "learned").is_dir():
            pipe.learned = LearnedFusionRanker(pipe._feature_builder(data), LearnedFusion.load(folder / "learned"))
        if meta.get("prompt_versions") != _prompt_versions():
            log.warning("%s: prompt templates changed since this pipeline was saved", folder)
        return pipe


def _fingerprint(data: Any) -> str:
    return data.fingerprint()


def _prompt_versions() -> dict[str, str]:
    from .resources import prompts_dir

    d = prompts_dir()
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in sorted(d.glob("*.j2"))}


__all__ = ["Pipeline", "PipelineConfig"]
