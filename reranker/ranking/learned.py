"""Learned fusion, ranking side: the training lists (validation targets plus sampled negatives,
features from a `FeatureBuilder`) and `LearnedFusionRanker`, which fits and applies the head.

The head itself (``f_out(concat(h_LLM, h_trad))``: `LearnedFusion`, `LearnedFusionConfig`,
`FeatureList`, persistence) lives in `reranker.ranking.learned_head` and is re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, DataError
from .base import Catalog
from .learned_head import (  # noqa: F401  (re-exported: the public names of this module)
    FORMAT_VERSION,
    FeatureList,
    LearnedFusion,
    LearnedFusionConfig,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- training lists + ranker
def training_lists(
    split: Any,
    builder: Any,
    *,
    n_negatives: int = 19,
    negatives: Literal["random", "retrieved", "mixed"] = "random",
    retriever: Any | None = None,
    users: int | None = None,
    history_cap: int = 20,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> list[FeatureList]:
    """Lists for fitting the head, from the VALIDATION stage of a leave-one-out split (features
    from `builder`, whose components are fitted on the train split). Per user, the validation
    target (label 1) plus negatives (label 0) the user never interacted with:

    - ``"random"``: `n_negatives` uniformly sampled unseen items (regime-B-like lists);
    - ``"retrieved"``: the `retriever`'s top ``n_negatives + 1`` candidates, kept only for users
      whose target is among them (regime-A-like lists: train as you serve);
    - ``"mixed"``: half hard negatives from the retriever, half random.

    `users` takes the first N of the evaluation's fixed user order (`user_order`), so a smaller
    set is a prefix of a larger one; each user's negatives and shuffle come from a generator
    seeded by (`seed`, user), independent of the other users.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..evaluation.protocol import user_order, user_rng
    from ..types import Candidate

    if negatives != "random" and retriever is None:
        raise ConfigError(f"negatives={negatives!r} needs a retriever")
    hist = split.histories("validation", cap=history_cap)
    targets = split.targets("validation")
    # One fixed order of the users (the evaluation's own, `user_order`), of which `users` takes a
    # prefix, and one generator per user: a user's list is the same whatever the subset size, so
    # cached LLM features survive a change of `users`.
    user_ids = user_order(hist, seed=0)
    if users is not None:
        user_ids = user_ids[:users]
    frames = [split.train.interactions, split.validation, split.test]
    all_seen = pd.concat([f[["user_id", "item_id"]] for f in frames]).groupby("user_id")["item_id"].agg(set)
    catalog = np.asarray(split.train.item_ids)
    retrieved: dict[str, list[str]] = {}
    if negatives != "random":
        assert retriever is not None  # checked above
        got = retriever.retrieve_batch({u: hist[u] for u in user_ids}, n_negatives + 1)
        retrieved = {u: [c.item_id for c in cands] for u, cands in got.items()}
    lists: list[tuple[str, list[str]]] = []
    for u in user_ids:
        t = targets[u]
        rng_u = user_rng(seed, u, "head-lists")
        if negatives == "retrieved":
            if t not in retrieved[u]:
                continue
            ids = list(retrieved[u])
        else:
            negs = [i for i in retrieved.get(u, []) if i != t][: n_negatives // 2] if negatives == "mixed" else []
            pool = catalog[~np.isin(catalog, list(all_seen.get(u, set()) | set(negs)))]
            negs += rng_u.choice(pool, size=min(n_negatives - len(negs), len(pool)), replace=False).tolist()
            ids = [t, *negs]
        lists.append((u, [ids[i] for i in rng_u.permutation(len(ids))]))
    if not lists:
        raise DataError("learned fusion: no training lists (no validation target among the retrieved candidates?)")
    out: list[FeatureList] = []
    from ..progress import bars_enabled

    bar = tqdm(total=len(lists), desc="learned fusion: features", disable=not (progress and bars_enabled()))
    for lo in range(0, len(lists), batch_size):
        chunk = lists[lo : lo + batch_size]
        fls, _ = builder.build_batch(
            [hist[u] for u, _ in chunk],
            [[Candidate(i, 0.0, "sampled") for i in ids] for _, ids in chunk],
            [[1.0 if i == targets[u] else 0.0 for i in ids] for u, ids in chunk],
        )
        out.extend(fls)
        bar.update(len(chunk))
    bar.close()
    return out


class LearnedFusionRanker:
    """A Ranker (and Scorer) applying a fitted `LearnedFusion` head to features from a
    `FeatureBuilder` (see reranker.ranking.features)."""

    name = "learned-fusion"

    def __init__(self, builder: Any, head: LearnedFusion) -> None:
        if list(builder.names) != list(head.feature_names):
            raise ConfigError(
                f"feature builder gives {builder.names} but the head was fitted on {head.feature_names}"
            )
        self.builder = builder
        self.head = head

    def score(self, history: Any, candidates: Sequence[Any], catalog: Catalog = None) -> np.ndarray:
        if len(candidates) == 0:
            return np.zeros(0)
        fl, _ = self.builder.build(history, candidates, catalog=catalog)
        return self.head.score(fl)

    def rank(self, history: Any, candidates: Sequence[Any], catalog: Catalog = None) -> Any:
        import time

        from ..types import Ranking
        from .base import dedupe

        t0 = time.perf_counter()
        cands = dedupe(candidates)
        if not cands:
            return Ranking((), {"ranker": self.name})
        fl, diag = self.builder.build(history, cands, catalog=catalog)
        scores = self.head.score(fl)
        d = {**diag, "ranker": self.name, "latency_s": time.perf_counter() - t0}
        return Ranking.from_scores([c.item_id for c in cands], list(scores), d)

    @classmethod
    def fit(
        cls,
        split: Any,
        make_builder: Any,
        config: LearnedFusionConfig | None = None,
        *,
        n_negatives: int = 19,
        negatives: Literal["random", "retrieved", "mixed"] = "random",
        retriever: Any | None = None,
        users: int | None = None,
        history_cap: int = 20,
        seed: int = 0,
        serve_data: Any | None = None,
    ) -> LearnedFusionRanker:
        """Fit on the validation stage (components from ``make_builder(split.train)``), then
        serve with components refitted on `serve_data` (default train + validation, the
        test-stage protocol; a deployed pipeline passes all its data)."""
        config = config or LearnedFusionConfig()
        val_builder = make_builder(split.train)
        lists = training_lists(split, val_builder, n_negatives=n_negatives, negatives=negatives,
                               retriever=retriever, users=users, history_cap=history_cap, seed=seed)
        head = LearnedFusion(config, val_builder.names).fit(lists)
        log.info("learned fusion fitted on %d lists: %s", len(lists), head.fit_report)
        return cls(make_builder(split.train_valid() if serve_data is None else serve_data), head)
