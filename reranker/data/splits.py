"""Train / validation / test splits.

- `leave_one_out`: chronological leave-one-out (per user: last interaction = test, second-last =
  validation, the rest = train). The order in time is the dataset's (`Dataset.sorted_interactions`,
  :mod:`.ordering`): ties in time are broken by ``data.tie_order`` (a seeded random permutation
  by default, or item id), and the split's datasets inherit that order, so the histories of each
  stage and the sequences models fit on agree with the targets. Users with fewer than
  `min_interactions` (default 3) interactions are not evaluated: they are counted in
  `excluded_users` and, by default, their interactions stay in train (they still inform CF).
  Data without timestamps has no order in time: the held-out items are then chosen by a seeded
  random order per user (`random_order`, seed ``data.tie_order.seed``), never by the file
  order (a file sorted by item id would make every test item the user's largest id);
  ``LeaveOneOutSplit.order`` says which.
- `random_split`: seeded random ratio split of interactions (rating prediction).
- `cap_history`: the last N items of a history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..types import History
from .dataset import Dataset, _history_from_rows
from .ordering import tie_keys

log = logging.getLogger(__name__)

Stage = Literal["validation", "test"]


@dataclass
class LeaveOneOutSplit:
    """Result of `leave_one_out`.

    ``validation`` and ``test`` hold one interaction row per evaluated user (canonical columns).
    ``train`` is a Dataset over the same catalog. For the test stage, fit on
    ``train_valid()`` (train + validation) and use histories that end with the validation item.
    """

    train: Dataset
    validation: pd.DataFrame
    test: pd.DataFrame
    excluded_users: int
    excluded_user_ids: list[str]
    order: str = "chronological"
    """How the held-out items were chosen: ``chronological``, or ``seeded random (no
    timestamps; seed N)`` for data without timestamps."""

    @property
    def users(self) -> list[str]:
        """Evaluated users (those with a validation and a test item), sorted."""
        return self.test["user_id"].tolist()

    def train_valid(self) -> Dataset:
        """Train plus validation interactions (what to fit on before scoring the test items)."""
        df = pd.concat([self.train.interactions, self.validation], ignore_index=True)
        return self.train.with_interactions(df, name=f"{self.train.name}[train+valid]")

    def fit_data(self, stage: Stage) -> Dataset:
        """The dataset to fit on when evaluating `stage`."""
        return self.train if stage == "validation" else self.train_valid()

    def targets(self, stage: Stage) -> dict[str, str]:
        """user_id -> held-out item id for the stage."""
        frame = self.validation if stage == "validation" else self.test
        return dict(zip(frame["user_id"], frame["item_id"], strict=True))

    def histories(self, stage: Stage, cap: int | None = 20) -> dict[str, History]:
        """Per evaluated user, the history available before the stage's target (oldest first)."""
        data = self.fit_data(stage)
        users = set(self.users)
        df = data.sorted_interactions()
        df = df[df["user_id"].isin(users)]
        return {
            str(uid): _history_from_rows(str(uid), rows, cap, None)
            for uid, rows in df.groupby("user_id", sort=True)
        }

    def earlier(self) -> LeaveOneOutSplit:
        """This split one step back in time: its test items are this split's validation items,
        its validation items each user's last train item, its train the rest. Its test stage
        is this split's validation stage (fit on ``train``, the same histories and targets), so
        a model fitted on its validation stage (a learned head) can be scored on this split's
        validation stage exactly as the test stage is scored, without ever fitting on those
        labels. Users with fewer than 3 train interactions have no earlier target and are left
        out (counted in ``excluded_users``)."""
        inner = leave_one_out(self.train)
        users = set(inner.users) & set(self.users)

        def keep(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["user_id"].isin(users)].sort_values("user_id").reset_index(drop=True)

        excluded = sorted(set(self.excluded_user_ids) | (set(self.users) - users))
        return LeaveOneOutSplit(
            train=inner.train_valid(),
            validation=keep(inner.test),
            test=keep(self.validation),
            excluded_users=len(excluded),
            excluded_user_ids=excluded,
            order=self.order,
        )


def leave_one_out(
    data: Dataset, min_interactions: int = 3, keep_excluded_in_train: bool = True
) -> LeaveOneOutSplit:
    """Chronological leave-one-out split (see module docstring); ties in time follow
    ``data.tie_order`` (set it with ``data.with_tie_order(ties, seed)``). Without timestamps,
    a seeded random leave-one-out (``split.order`` says so)."""
    if min_interactions < 3:
        raise ConfigError(
            f"min_interactions: must be >= 3 (one train, one validation, one test item), got {min_interactions}"
        )
    if data.has_timestamps:
        df = data.sorted_interactions()
        order = "chronological"
    else:  # no time: a seeded random order per user, never the file order (see module docstring)
        df = random_order(data.interactions, data.tie_order.seed)
        order = f"seeded random (no timestamps; seed {data.tie_order.seed})"
        log.warning("leave_one_out: %s has no timestamps: the held-out items are chosen in a seeded random "
                    "order per user (seed %d), not by time", data.name, data.tie_order.seed)
    counts = df.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    # position from the end within each user: 0 = last
    from_end = df.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    eligible = counts >= min_interactions
    test_mask = eligible & (from_end == 0)
    val_mask = eligible & (from_end == 1)
    train_mask = ~(test_mask | val_mask)
    if not keep_excluded_in_train:
        train_mask &= eligible
    excluded = sorted(df.loc[~eligible, "user_id"].unique().tolist())
    if excluded:
        log.info("leave_one_out: %d user(s) with < %d interactions not evaluated", len(excluded), min_interactions)
    train = data.with_interactions(df.loc[train_mask], name=f"{data.name}[train]")
    return LeaveOneOutSplit(
        train=train,
        validation=df.loc[val_mask].sort_values("user_id").reset_index(drop=True),
        test=df.loc[test_mask].sort_values("user_id").reset_index(drop=True),
        excluded_users=len(excluded),
        excluded_user_ids=excluded,
        order=order,
    )


def random_order(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`df` sorted by user, then by a seeded hash of (user, item) (`ordering.tie_keys`): a
    random order that is the same for any subset of the rows, so a split's train rows (and
    train + validation) keep the order the targets were drawn in."""
    keys = tie_keys(df["user_id"], df["item_id"], seed)
    return df.assign(__order__=keys).sort_values(["user_id", "__order__"], kind="stable").drop(columns="__order__")


def random_split(data: Dataset, test_ratio: float = 0.2, seed: int = 0) -> tuple[Dataset, pd.DataFrame]:
    """Seeded random split of the interactions: (train dataset, test interactions)."""
    if not 0.0 < test_ratio < 1.0:
        raise ConfigError(f"test_ratio: must be in (0, 1), got {test_ratio}")
    n = data.n_interactions
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = int(round(n * test_ratio))
    test_mask = np.zeros(n, dtype=bool)
    test_mask[perm[:n_test]] = True
    df = data.interactions
    train = data.with_interactions(df.loc[~test_mask], name=f"{data.name}[train]")
    return train, df.loc[test_mask].reset_index(drop=True)


def cap_history(history: History, n: int) -> History:
    """Keep the last `n` items of a history (the history cap of the evaluation protocol)."""
    return history.last(n)
