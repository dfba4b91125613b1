"""The rating regime: MAE / RMSE of kNN rating predictors for each K on a seeded random split
(the seed paper's MAE-vs-K experiment), with bootstrap CIs over the test ratings."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ..retrieval.base import BatchRatingPredictor
from .experiment import build_retriever
from .records import RatingModel, RatingPoint, RatingSeedResult
from .run_context import RunContext

__all__ = ["run_rating", "predict_ratings", "pool_seeds"]


def run_rating(run: RunContext, data: Any, results: list[Any]) -> None:
    """Every seed: split, then fit and score each model at each K; appends one
    :class:`RatingSeedResult` per seed to ``results``."""
    from ..data.splits import random_split

    pr = run.protocol
    if not data.has_ratings:
        raise DataError("regime 'rating' needs explicit ratings; this dataset has none", path=str(run.config.data.path))
    for seed in run.seeds:
        train, test = random_split(data, test_ratio=pr.rating.test_ratio, seed=seed)
        if run.user_limit is not None:
            keep = set(run.select_users(test["user_id"].unique().tolist()))
            test = test[test["user_id"].isin(keep)].reset_index(drop=True)
        y = test["rating"].to_numpy(dtype=np.float64)
        result = RatingSeedResult(seed=seed, n_test=len(test))
        results.append(result)
        for spec in run.config.rankers:
            curve = []
            for k in pr.rating.k_values:
                params = {**spec.params, pr.rating.k_param: k}
                curve.append(_rating_point(spec.type, params, k, train, test, y, pr.n_boot, seed))
                run.flush()
            result.models[spec.name] = RatingModel(type=spec.type, params=spec.params, by_k=curve)
            run.flush()


def _rating_point(
    rtype: str, params: dict[str, Any], k: int, train: Any, test: Any, y: np.ndarray, n_boot: int, seed: int
) -> RatingPoint:
    """Fit one model with K neighbours and score its predictions on the test ratings."""
    t0 = time.perf_counter()
    model = build_retriever(rtype, params, train)
    t_fit = time.perf_counter() - t0
    pred = predict_ratings(model, test["user_id"].tolist(), test["item_id"].tolist())
    t_pred = time.perf_counter() - t0 - t_fit
    mae_m, mae_lo, mae_hi = _ci(np.abs(pred - y), n_boot, seed)
    rm, rlo, rhi = _ci((pred - y) ** 2, n_boot, seed)
    return RatingPoint(
        k=k,
        mae=mae_m, mae_ci=[mae_lo, mae_hi],
        rmse=math.sqrt(rm), rmse_ci=[math.sqrt(rlo), math.sqrt(rhi)],
        fit_seconds=t_fit, predict_seconds=t_pred,
    )


def _ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    from .metrics import bootstrap_ci

    return bootstrap_ci(values, n_boot=n_boot, seed=seed)


def predict_ratings(model: Any, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
    """Predicted ratings for (user, item) pairs, batched when the model offers it
    (`BatchRatingPredictor`), else pair by pair (`RatingPredictor`)."""
    if isinstance(model, BatchRatingPredictor):
        got = model.predict_batch(list(user_ids), list(item_ids))
        return np.asarray(got.values, dtype=np.float64)
    out = np.empty(len(user_ids))
    for i, (u, it) in enumerate(zip(user_ids, item_ids, strict=True)):
        out[i] = float(model.predict_rating(u, it))
    return out


def pool_seeds(results: Sequence[RatingSeedResult]) -> dict[str, Any]:
    """Per model and K: MAE and RMSE averaged over seeds."""
    out: dict[str, Any] = {}
    for name, first in results[0].models.items():
        out[name] = {
            str(p.k): {
                "mae": float(np.mean([r.models[name].by_k[i].mae for r in results])),
                "rmse": float(np.mean([r.models[name].by_k[i].rmse for r in results])),
            }
            for i, p in enumerate(first.by_k)
        }
    return out
