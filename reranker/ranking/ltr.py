"""LightGBM LambdaRank for the learned fusion head (``LearnedFusionConfig.kind="lambdarank"``).

One query per list (a user's candidates, label 1 for the held-out target), trained with the
``lambdarank`` objective, early-stopped on NDCG@``eval_at`` of held-out lists. LightGBM is an
optional dependency (``pip install 'reranker[ltr]'``), imported only when a head of this kind is
fitted or loaded. Models persist as LightGBM's text format (``Booster.model_to_string``), never
as pickles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from ..config import BaseConfig
from ..errors import ConfigError, DataError

INSTALL_HINT = "pip install 'reranker[ltr]'"


class LambdaRankParams(BaseConfig):
    """LightGBM LambdaRank hyperparameters (used when the head's ``kind`` is ``lambdarank``)."""

    num_leaves: int = Field(31, ge=2, description="leaves per tree")
    learning_rate: float = Field(0.05, gt=0, description="shrinkage per boosting round")
    n_estimators: int = Field(500, ge=1, description="most boosting rounds")
    min_data_in_leaf: int = Field(20, ge=1, description="fewest rows in a leaf")
    feature_fraction: float = Field(0.9, gt=0, le=1, description="share of features each tree sees")
    early_stopping_rounds: int | None = Field(
        50, ge=1, description="stop after this many rounds without NDCG gain on the held-out lists (None: off)"
    )
    eval_at: int = Field(10, ge=1, description="NDCG cutoff LightGBM optimises and early-stops on")
    seed: int | None = Field(None, description="LightGBM seed (None: the head's seed)")
    num_threads: int = Field(1, ge=0, description="LightGBM threads (0: LightGBM's default)")
    deterministic: bool = Field(True, description="bit-identical results for the same data and seed")


def import_lightgbm() -> Any:
    """The `lightgbm` module, or a ConfigError saying how to install it."""
    try:
        import lightgbm
    except ImportError as e:
        raise ConfigError(
            f"learned head kind 'lambdarank' needs LightGBM, which is not installed ({e}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return lightgbm


def booster_params(p: LambdaRankParams, seed: int) -> dict[str, Any]:
    """The LightGBM parameter dict for `p` (the seed: ``p.seed`` or the head's `seed`)."""
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [p.eval_at],
        "num_leaves": p.num_leaves,
        "learning_rate": p.learning_rate,
        "min_data_in_leaf": p.min_data_in_leaf,
        "feature_fraction": p.feature_fraction,
        "seed": seed if p.seed is None else p.seed,
        "num_threads": p.num_threads,
        "deterministic": p.deterministic,
        "force_row_wise": True,
        "feature_pre_filter": False,
        "verbosity": -1,
    }


def _stack(X: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    return (np.vstack(X).astype(np.float64), np.concatenate(y).astype(np.int32), [len(a) for a in X])


def train_lambdarank(
    X: Sequence[np.ndarray],
    y: Sequence[np.ndarray],
    p: LambdaRankParams,
    seed: int,
    *,
    eval_X: Sequence[np.ndarray] = (),
    eval_y: Sequence[np.ndarray] = (),
    rounds: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train a LambdaRank booster on lists (`X[i]`: (n_i, d) features, `y[i]`: (n_i,) labels).
    With `eval_X` and early stopping on, stops on their NDCG@eval_at; `rounds` fixes the number
    of rounds instead (a refit). Returns the booster and ``{"rounds", "best_iteration",
    "eval_ndcg"}``."""
    lgb = import_lightgbm()
    Xa, ya, groups = _stack(X, y)
    if not (ya > 0).any():
        raise DataError("learned fusion: the lambdarank head needs lists with a positive label")
    params = booster_params(p, seed)
    train = lgb.Dataset(Xa, label=ya, group=groups, params=params, free_raw_data=False)
    callbacks: list[Any] = []
    valid_sets: list[Any] = []
    evals: dict[str, Any] = {}
    early = rounds is None and len(eval_X) > 0 and p.early_stopping_rounds is not None
    if early:
        Xe, ye, ge = _stack(eval_X, eval_y)
        valid_sets = [lgb.Dataset(Xe, label=ye, group=ge, reference=train, params=params)]
        callbacks = [lgb.early_stopping(p.early_stopping_rounds, first_metric_only=True, verbose=False),
                     lgb.record_evaluation(evals)]
    n_rounds = p.n_estimators if rounds is None else max(int(rounds), 1)
    booster = lgb.train(params, train, num_boost_round=n_rounds,
                        valid_sets=valid_sets, valid_names=["holdout"] if early else None, callbacks=callbacks)
    best = int(booster.best_iteration) if early and booster.best_iteration > 0 else booster.current_iteration()
    info: dict[str, Any] = {"rounds": int(booster.current_iteration()), "best_iteration": best}
    if early:
        curve = evals.get("holdout", {}).get(f"ndcg@{p.eval_at}", [])
        info["eval_ndcg"] = float(curve[best - 1]) if 0 < best <= len(curve) else None
    return booster, info


def booster_to_string(booster: Any) -> str:
    """The model in LightGBM's text format (what `booster_from_string` reads)."""
    return str(booster.model_to_string(num_iteration=-1))


def booster_from_string(text: str) -> Any:
    """A booster from LightGBM's text format."""
    lgb = import_lightgbm()
    return lgb.Booster(model_str=text)


def predict(booster: Any, X: np.ndarray) -> np.ndarray:
    """Scores of the rows of `X` (higher is better)."""
    if len(X) == 0:
        return np.zeros(0)
    return np.asarray(booster.predict(np.asarray(X, dtype=np.float64), num_threads=1), dtype=np.float64)


def gain_importance(booster: Any) -> np.ndarray:
    """Total split gain of every input column, in column order."""
    return np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)


__all__ = [
    "INSTALL_HINT",
    "LambdaRankParams",
    "booster_from_string",
    "booster_params",
    "booster_to_string",
    "gain_importance",
    "import_lightgbm",
    "predict",
    "train_lambdarank",
]
