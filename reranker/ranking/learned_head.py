"""Learned fusion: the seed design's ``f_out(concat(h_LLM, h_trad))``.

``h_trad`` holds per-candidate traditional signals (CF scores, popularity, recency, BERT cosine);
``h_LLM`` is the frozen LLM's last hidden state at the answer position of the pointwise prompt,
reduced by a PCA fitted on training lists. A scikit-learn head is trained on lists built from
validation targets with sampled negatives:

- ``kind="logistic"``: pointwise logistic regression on standardised features;
- ``kind="pairwise"``: logistic regression on (positive - negative) feature differences within a
  list (a RankNet-style linear scorer);
- ``kind="lambdarank"``: LightGBM LambdaRank trees (one query per list) on the raw features
  (``list_norm`` applies to the linear heads only), early-stopped on NDCG of the held-out lists
  (`reranker.ranking.ltr`; needs ``pip install 'reranker[ltr]'``).

Guard: the head must never be worse than its best single input on validation. ``fit`` holds out
a fraction of the lists, compares the head's NDCG@10 there with every single feature's, and if a
single feature wins, the head becomes that feature (recorded in ``fit_report``). A feature
named ``*_rank`` (1 = best) counts lower-is-better there. For ``lambdarank`` the held-out lists
also choose the early-stopping round, so the head's held-out NDCG is slightly optimistic; the
final model is refitted on all lists with that many rounds.

Persistence is ``head.npz`` + ``head.json`` (+ ``booster.txt``, LightGBM's text model, for
``lambdarank``); no pickles.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from pydantic import Field

from ..config import BaseConfig
from ..errors import ConfigError, DataError
from .ltr import LambdaRankParams

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class LearnedFusionConfig(BaseConfig):
    """Settings of the learned fusion head."""

    kind: Literal["logistic", "pairwise", "lambdarank"] = "logistic"
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic regression")
    pca_dim: int = Field(16, ge=1, description="PCA components kept of the LLM hidden state")
    use_llm_hidden: bool = True
    holdout: float = Field(0.2, ge=0.0, lt=1.0, description="fraction of lists for the guard check")
    guard_k: int = Field(10, ge=1, description="NDCG cutoff of the guard check")
    list_norm: bool = Field(True, description="z-score each traditional feature within its list first")
    seed: int = 0
    lambdarank: LambdaRankParams = Field(
        default_factory=LambdaRankParams, description="LightGBM settings of kind 'lambdarank'"
    )


@dataclass
class FeatureList:
    """One candidate list: traditional features (n, d_trad), optional LLM hidden states
    (n, d_hidden), and binary labels (n,) (1 = the held-out target)."""

    trad: np.ndarray
    labels: np.ndarray
    hidden: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.trad = np.asarray(self.trad, dtype=np.float64)
        self.labels = np.asarray(self.labels, dtype=np.float64)
        if self.trad.ndim != 2 or len(self.trad) != len(self.labels):
            raise ValueError(f"trad must be (n, d) with n = len(labels); got {self.trad.shape}, {self.labels.shape}")
        if self.hidden is not None:
            self.hidden = np.asarray(self.hidden, dtype=np.float32)
            if len(self.hidden) != len(self.labels):
                raise ValueError("hidden must have one row per candidate")


def _ndcg_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    order = np.argsort(-scores, kind="stable")[:k]
    gains = labels[order] / np.log2(np.arange(2, len(order) + 2))
    ideal = np.sort(labels)[::-1][:k] / np.log2(np.arange(2, min(k, len(labels)) + 2))
    denom = ideal.sum()
    return float(gains.sum() / denom) if denom > 0 else 0.0


class LearnedFusion:
    """A linear head over ``[h_trad, PCA(h_LLM)]``. See the module docstring."""

    def __init__(self, config: LearnedFusionConfig | None = None, feature_names: Sequence[str] | None = None) -> None:
        self.config = config or LearnedFusionConfig()
        self.feature_names = list(feature_names or [])
        self.pca_mean: np.ndarray | None = None
        self.pca_components: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.intercept: float = 0.0
        self.fallback_feature: int | None = None  # guard: single-feature fallback
        self.booster: Any = None  # kind "lambdarank": the LightGBM booster
        self.fit_report: dict[str, Any] = {}

    # ------------------------------------------------------------------ features
    @property
    def fitted(self) -> bool:
        return self.coef is not None or self.booster is not None or self.fallback_feature is not None

    @property
    def uses_hidden(self) -> bool:
        return self.pca_components is not None

    def _design(self, fl: FeatureList) -> np.ndarray:
        trad = fl.trad
        if self.config.list_norm and self.config.kind != "lambdarank" and len(trad):
            sd = trad.std(axis=0)
            trad = (trad - trad.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        parts = [trad]
        if self.pca_components is not None:
            if fl.hidden is None:
                raise ValueError("this head was fitted with LLM hidden states; pass FeatureList.hidden")
            assert self.pca_mean is not None  # set together with pca_components
            parts.append((fl.hidden.astype(np.float64) - self.pca_mean) @ self.pca_components.T)
        return np.hstack(parts)

    def _fit_pca(self, lists: Sequence[FeatureList]) -> None:
        from sklearn.decomposition import PCA

        # only called when every list has hidden states (`use_hidden`)
        H = np.vstack(cast(list[np.ndarray], [fl.hidden for fl in lists])).astype(np.float64)
        dim = min(self.config.pca_dim, H.shape[0] - 1, H.shape[1])
        pca = PCA(n_components=dim, random_state=self.config.seed).fit(H)
        self.pca_mean = pca.mean_
        self.pca_components = pca.components_

    def _fit_linear(self, lists: Sequence[FeatureList]) -> None:
        from sklearn.linear_model import LogisticRegression

        X = np.vstack([self._design(fl) for fl in lists])
        self.mean = X.mean(axis=0)
        self.scale = X.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        if self.config.kind == "logistic":
            y = np.concatenate([fl.labels for fl in lists])
            if len(np.unique(y)) < 2:
                raise DataError("learned fusion: training lists need both positive and negative labels")
            Z = (X - self.mean) / self.scale
            clf = LogisticRegression(C=self.config.C, max_iter=2000, class_weight="balanced")
            clf.fit(Z, y)
            self.coef = clf.coef_[0]
            self.intercept = float(clf.intercept_[0])
        else:  # pairwise: each positive against each negative of its list
            diffs = []
            for fl in lists:
                Z = (self._design(fl) - self.mean) / self.scale
                pos, neg = Z[fl.labels > 0], Z[fl.labels <= 0]
                if len(pos) and len(neg):
                    diffs.append((pos[:, None, :] - neg[None, :, :]).reshape(-1, Z.shape[1]))
            if not diffs:
                raise DataError("learned fusion: the pairwise head needs lists with both positives and negatives")
            D = np.vstack(diffs)
            Xp = np.vstack([D, -D])
            yp = np.concatenate([np.ones(len(D)), np.zeros(len(D))])
            clf = LogisticRegression(C=self.config.C, max_iter=2000, fit_intercept=False)
            clf.fit(Xp, yp)
            self.coef = clf.coef_[0]
            self.intercept = 0.0

    def _linear_scores(self, fl: FeatureList) -> np.ndarray:
        if self.booster is not None:
            from .ltr import predict

            return predict(self.booster, self._design(fl))
        Z = (self._design(fl) - self.mean) / self.scale
        return Z @ self.coef + self.intercept

    def _fit_lambdarank(self, lists: Sequence[FeatureList], hold: Sequence[FeatureList] = (),
                        rounds: int | None = None) -> dict[str, Any]:
        from .ltr import train_lambdarank

        self.coef = self.mean = self.scale = None
        self.intercept = 0.0
        self.booster, info = train_lambdarank(
            [self._design(fl) for fl in lists], [fl.labels for fl in lists], self.config.lambdarank,
            self.config.seed, eval_X=[self._design(fl) for fl in hold], eval_y=[fl.labels for fl in hold],
            rounds=rounds,
        )
        return info

    def _single(self, fl: FeatureList, j: int) -> np.ndarray:
        """Feature `j` as a score (higher is better): ``*_rank`` features (1 = best) negated."""
        col = fl.trad[:, j].astype(np.float64)
        return -col if self.feature_names[j].endswith("_rank") else col

    # ------------------------------------------------------------------ public API
    def fit(self, lists: Sequence[FeatureList]) -> LearnedFusion:
        """Fit on validation lists; apply the never-worse-than-best-input guard."""
        lists = [fl for fl in lists if len(fl.labels)]
        if not lists:
            raise DataError("learned fusion: no training lists with labels")
        d = lists[0].trad.shape[1]
        if any(fl.trad.shape[1] != d for fl in lists):
            raise ValueError("all lists must have the same number of traditional features")
        if not self.feature_names:
            self.feature_names = [f"f{i}" for i in range(d)]
        if len(self.feature_names) != d:
            raise ConfigError(f"{len(self.feature_names)} feature names for {d} features")
        use_hidden = self.config.use_llm_hidden and all(fl.hidden is not None for fl in lists)

        rng = np.random.default_rng(self.config.seed)
        idx = rng.permutation(len(lists))
        n_hold = int(round(len(lists) * self.config.holdout))
        hold = [lists[i] for i in idx[:n_hold]]
        train = [lists[i] for i in idx[n_hold:]] if n_hold else lists

        boost: dict[str, Any] = {}

        def fit_on(part: Sequence[FeatureList], eval_part: Sequence[FeatureList] = ()) -> None:
            self.pca_mean = self.pca_components = None
            if use_hidden:
                self._fit_pca(part)
            if self.config.kind == "lambdarank":
                boost.update(self._fit_lambdarank(part, eval_part, rounds=boost.get("best_iteration")))
            else:
                self._fit_linear(part)

        k = self.config.guard_k
        report: dict[str, Any] = {"n_lists": len(lists), "n_holdout": n_hold, "kind": self.config.kind,
                                  "uses_hidden": use_hidden, "guard_k": k}
        fallback = None
        if hold:
            fit_on(train, hold)
            head = float(np.mean([_ndcg_at_k(self._linear_scores(fl), fl.labels, k) for fl in hold]))
            singles = {
                name: float(np.mean([_ndcg_at_k(self._single(fl, j), fl.labels, k) for fl in hold]))
                for j, name in enumerate(self.feature_names)
            }
            best_name = max(singles, key=lambda n: singles[n])
            report.update({f"holdout_ndcg@{k}_head": head, f"holdout_ndcg@{k}_single": singles,
                           "best_single": best_name})
            if singles[best_name] > head:
                fallback = self.feature_names.index(best_name)
                log.warning("learned head (%.4f) lost to single feature %s (%.4f) on held-out validation; "
                            "falling back to it", head, best_name, singles[best_name])
        if self.config.kind == "lambdarank":
            hold_info = dict(boost)
            fit_on(lists)  # final fit on everything, with the early-stopped number of rounds
            self.fallback_feature = fallback
            report["fallback_feature"] = None if fallback is None else self.feature_names[fallback]
            report.update(self._boost_report(hold_info))
            self.fit_report = report
            return self
        fit_on(lists)  # final fit on everything
        self.fallback_feature = fallback
        report["fallback_feature"] = None if fallback is None else self.feature_names[fallback]
        # weights on standardized features (comparable across features): the named ones, then
        # the summed magnitude of the hidden-state PCA components
        n_named = len(self.feature_names)
        assert self.coef is not None
        report["coef"] = {name: float(c) for name, c in zip(self.feature_names, self.coef[:n_named], strict=True)}
        if len(self.coef) > n_named:
            report["coef_hidden_abs_sum"] = float(np.abs(self.coef[n_named:]).sum())
        self.fit_report = report
        return self

    def _boost_report(self, hold_info: dict[str, Any]) -> dict[str, Any]:
        """LambdaRank fit facts: rounds, the held-out NDCG at the early-stopping round, and the
        total split gain per named feature (the hidden-state PCA components summed)."""
        from .ltr import gain_importance

        gain = gain_importance(self.booster)
        n_named = len(self.feature_names)
        stopped = hold_info.get("eval_ndcg") is not None
        out: dict[str, Any] = {
            "rounds": int(self.booster.current_iteration()),
            "early_stopping_iteration": hold_info.get("best_iteration") if stopped else None,
            f"holdout_lgb_ndcg@{self.config.lambdarank.eval_at}": hold_info.get("eval_ndcg"),
            "importance_gain": {n: float(g) for n, g in zip(self.feature_names, gain[:n_named], strict=True)},
        }
        if len(gain) > n_named:
            out["importance_gain_hidden_sum"] = float(gain[n_named:].sum())
        return out

    def score(self, fl: FeatureList | np.ndarray, hidden: np.ndarray | None = None) -> np.ndarray:
        """Scores for one list (higher is better)."""
        if not self.fitted:
            raise RuntimeError("LearnedFusion is not fitted")
        if not isinstance(fl, FeatureList):
            fl = FeatureList(np.asarray(fl), np.zeros(len(fl)), hidden)
        if self.fallback_feature is not None:
            return self._single(fl, self.fallback_feature)
        return self._linear_scores(fl)

    def weights(self) -> dict[str, float]:
        """Coefficients on standardised features, by name (PCA components as llm_pc<i>)."""
        if self.coef is None:
            return {}
        names = list(self.feature_names) + [f"llm_pc{i}" for i in range(len(self.coef) - len(self.feature_names))]
        return {n: float(c) for n, c in zip(names, self.coef, strict=True)}

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in {
            "pca_mean": self.pca_mean, "pca_components": self.pca_components,
            "mean": self.mean, "scale": self.scale, "coef": self.coef,
        }.items() if v is not None}
        np.savez(folder / "head.npz", allow_pickle=False, **arrays)  # numeric arrays only: never pickle
        booster_file = folder / "booster.txt"
        if self.booster is not None:
            from .ltr import booster_to_string

            booster_file.write_text(booster_to_string(self.booster), encoding="utf-8")
        elif booster_file.exists():
            booster_file.unlink()
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "feature_names": self.feature_names,
            "intercept": self.intercept,
            "fallback_feature": self.fallback_feature,
            "fit_report": self.fit_report,
        }
        (folder / "head.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> LearnedFusion:
        folder = Path(folder)
        meta_path = folder / "head.json"
        if not meta_path.is_file():
            raise ConfigError(f"{meta_path}: no learned fusion head here")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"{meta_path}: head format version {meta.get('format_version')} is not supported "
                f"(this reranker reads version {FORMAT_VERSION})"
            )
        head = cls(LearnedFusionConfig.from_dict(meta["config"]), meta["feature_names"])
        with np.load(folder / "head.npz", allow_pickle=False) as z:
            for k in ("pca_mean", "pca_components", "mean", "scale", "coef"):
                setattr(head, k, z[k] if k in z.files else None)
        head.intercept = float(meta["intercept"])
        if (folder / "booster.txt").is_file():
            from .ltr import booster_from_string

            head.booster = booster_from_string((folder / "booster.txt").read_text(encoding="utf-8"))
        head.fallback_feature = meta["fallback_feature"]
        head.fit_report = meta["fit_report"]
        return head


__all__ = ["FORMAT_VERSION", "FeatureList", "LearnedFusion", "LearnedFusionConfig"]
