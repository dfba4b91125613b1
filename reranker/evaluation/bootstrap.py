"""Uncertainty over users: percentile-bootstrap intervals of means, paired differences and the
per-metric summary table. Re-exported by :mod:`reranker.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["bootstrap_ci", "paired_difference_ci", "summarize"]


# --------------------------------------------------------------------------- uncertainty
_BOOT_CELLS = 5_000_000  # resample indices drawn per chunk (bounds memory)


def _check_boot(n_boot: int, alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha: must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ConfigError(f"n_boot: must be >= 1, got {n_boot}")


def _boot_means(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap means ``(n_boot, m)`` of the columns of ``v (n, m)``, users resampled jointly.

    The draws depend only on ``n``, ``n_boot`` and ``seed``, so a metric gets the same interval
    alone (:func:`bootstrap_ci`) or next to others (:func:`summarize`).
    """
    rng = np.random.default_rng(seed)
    n = v.shape[0]
    chunk = max(1, min(n_boot, _BOOT_CELLS // n))
    means = np.empty((n_boot, v.shape[1]), dtype=np.float64)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        idx += (np.arange(m) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=m * n).reshape(m, n)
        means[start : start + m] = (counts @ v) / n
    return means


def bootstrap_ci(
    values: Any, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap ``(1 - alpha)`` interval over users: ``(mean, lo, hi)``.

    NaN values (users for whom the metric is undefined) are dropped; no values gives NaNs.
    """
    _check_boot(n_boot, alpha)
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = _boot_means(v[:, None], n_boot, seed)[:, 0]
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(v.mean()), float(lo), float(hi)


def paired_difference_ci(
    a: Any, b: Any, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Mean per-user difference ``a - b`` with its bootstrap interval (paired over users).

    Use it to compare two systems on the same users: an interval excluding 0 is a difference
    that the user sample supports. Users where either value is NaN are dropped.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"a has {x.size} users but b has {y.size}: pair them first")
    return bootstrap_ci(x - y, n_boot=n_boot, seed=seed, alpha=alpha)


def summarize(
    per_user: Mapping[str, Any], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per metric: ``mean``, ``ci_lo``, ``ci_hi`` (bootstrap over users) and ``n``.

    ``n`` counts the users with a defined (non-NaN) value. Metrics defined on the same users
    are resampled jointly (one set of draws), which is faster and keeps them paired; each row
    equals ``bootstrap_ci`` of that metric alone with the same seed.
    """
    _check_boot(n_boot, alpha)
    names = list(per_user)
    arrays = [np.asarray(per_user[k], dtype=np.float64).ravel() for k in names]
    rows: dict[str, dict[str, float]] = {}
    groups: dict[tuple[int, bytes], list[int]] = {}
    for j, v in enumerate(arrays):
        ok = ~np.isnan(v)
        groups.setdefault((v.size, np.packbits(ok).tobytes()), []).append(j)
    for members in groups.values():
        ok = ~np.isnan(arrays[members[0]])
        v = np.stack([arrays[j][ok] for j in members], axis=1)
        if v.shape[0] == 0:
            for j in members:
                rows[names[j]] = {"mean": np.nan, "ci_lo": np.nan, "ci_hi": np.nan, "n": 0}
            continue
        means = _boot_means(v, n_boot, seed)
        lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
        for c, j in enumerate(members):
            rows[names[j]] = {
                "mean": float(v[:, c].mean()),
                "ci_lo": float(lo[c]),
                "ci_hi": float(hi[c]),
                "n": int(v.shape[0]),
            }
    df = pd.DataFrame([{"metric": k, **rows[k]} for k in names], columns=["metric", "mean", "ci_lo", "ci_hi", "n"])
    return df.set_index("metric")
