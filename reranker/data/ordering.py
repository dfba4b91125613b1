"""The one rule that orders a user's interactions in time, and how ties in time are broken.

Every place that orders a user's interactions (the leave-one-out split, the histories of each
stage, ``Dataset.sorted_interactions`` / ``Dataset.history``, hence the sequences that
sequence-aware models fit on) goes through :func:`chronological`, so histories, training
sequences and split targets always agree.

Order: by user, then timestamp, then a tie key; without a ``timestamp`` column, the file order
within each user. Interactions of one user in the same second (76% of ml-100k's) are ordered by
the dataset's :class:`TieOrder`:

- ``"random"`` (the default): a seeded random permutation. Each (seed, user, item) gets a
  64-bit key: splitmix64 mixing of the seed and BLAKE2b-64 hashes of the user and item id
  strings. The key depends on the ids only, not on the row order of the file, the order ids
  were first seen, or the pandas version; the same seed gives the same order everywhere, and
  another seed another one. Rows of the same user, item and second keep their file order.
- ``"item_id"``: ties by item id (string order), the rule before issue 17. It makes a user's
  last-second test item the highest id of the group (systematically rarer items in ml-100k) and
  hands sequential models a direction real data would not give; kept to reproduce old results.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["TieRule", "TIE_RULES", "TieOrder", "tie_keys", "chronological"]

TieRule = Literal["random", "item_id"]
TIE_RULES: tuple[str, ...] = get_args(TieRule)

_MASK64 = (1 << 64) - 1
_TIE = "__tie_key__"


@dataclass(frozen=True)
class TieOrder:
    """How ties in time are broken within a user (see the module docstring).

    ``TieOrder()`` is the default of a Dataset: seeded random ties with seed 0.
    """

    ties: TieRule = "random"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ties not in TIE_RULES:
            raise ConfigError(f"ties: must be one of {', '.join(TIE_RULES)}; got {self.ties!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ConfigError(f"tie_seed: must be an integer; got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    def describe(self) -> str:
        """Human-readable rule (reports)."""
        if self.ties == "item_id":
            return "ties in time broken by item id"
        return f"ties in time broken by a seeded random permutation (tie_seed {self.seed})"

    def as_dict(self) -> dict[str, object]:
        """``{"ties": ..., "tie_seed": ...}`` (results.json, saved pipelines)."""
        return {"ties": self.ties, "tie_seed": self.seed}

    def cache_token(self) -> str | None:
        """What a cache key must add for this order: None for ``item_id`` (the order every
        cache key was made with before the rule existed, so old caches keep hitting)."""
        return None if self.ties == "item_id" else f"ties={self.ties};seed={self.seed}"


# ----------------------------------------------------------------------------- hashing
def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _id_hashes(ids: pd.Series | np.ndarray, salt: bytes) -> np.ndarray:
    """BLAKE2b-64 of each id's string (hashed once per distinct id), as uint64."""
    codes, uniques = pd.factorize(np.asarray(ids, dtype=object))
    table = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(u).encode("utf-8"), digest_size=8, person=salt).digest(), "little")
            for u in uniques
        ),
        dtype=np.uint64,
        count=len(uniques),
    )
    return table[codes]


def tie_keys(user_ids: pd.Series | np.ndarray, item_ids: pd.Series | np.ndarray, seed: int) -> np.ndarray:
    """The random-tie key of each (user, item) row for ``seed``: a uint64 array.

    A pure function of (seed, user id, item id): independent of row order and pandas version.
    """
    hu = _id_hashes(user_ids, b"reranker-tie-u")
    hi = _id_hashes(item_ids, b"reranker-tie-i")
    s = _splitmix64(np.array([int(seed) & _MASK64], dtype=np.uint64))
    with np.errstate(over="ignore"):
        return _splitmix64(_splitmix64(hu ^ s) ^ hi)


# ----------------------------------------------------------------------------- ordering
def chronological(df: pd.DataFrame, order: TieOrder | None = None) -> pd.DataFrame:
    """``df`` (interactions) sorted by user, then time, ties broken by ``order`` (default
    :class:`TieOrder`); without timestamps, the file order within each user. Stable; keeps the
    index and the columns of ``df``."""
    order = order or TieOrder()
    if "timestamp" not in df.columns:
        pos = np.arange(len(df))
        return df.assign(**{_TIE: pos}).sort_values(["user_id", _TIE], kind="stable").drop(columns=_TIE)
    if order.ties == "item_id":
        return df.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    keys = tie_keys(df["user_id"], df["item_id"], order.seed)
    return df.assign(**{_TIE: keys}).sort_values(["user_id", "timestamp", _TIE], kind="stable").drop(columns=_TIE)
