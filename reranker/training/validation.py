"""Validation during fine-tuning (mixed into :class:`~reranker.training.trainer.Trainer`).

Every `validation.every` steps a regime-B NDCG@10 / HR@1 on a fixed validation subset (the
first `validation.users` users of a seeded order, `validation.n_negatives` sampled negatives
each) is computed with the matching ranker and the adapter in place; a new best NDCG@10 saves
the adapter to `<out>/best/`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .checkpoint import CheckpointMixin

if TYPE_CHECKING:
    from ..data.splits import LeaveOneOutSplit
    from ..types import History
    from .config import FinetuneConfig

log = logging.getLogger("reranker.training.trainer")  # the log lines keep their logger

__all__ = ["ValidationMixin"]


class ValidationMixin(CheckpointMixin):
    """Validation of :class:`~reranker.training.trainer.Trainer` (set up by its `prepare`)."""

    config: FinetuneConfig
    split: LeaveOneOutSplit
    ranker: Any
    _val_lists: dict[str, list[str]]
    _val_targets: dict[str, str]
    _val_histories: dict[str, History]
    retriever: Any
    """The examples' CF retriever (fitted on the training split): with `cf_hint`, it scores the
    validation candidates, as a `cf_hint_scorer` does at evaluation."""

    def _validation_lists(self) -> dict[str, list[str]]:
        from ..evaluation.protocol import regime_b_lists, user_order

        v = self.config.validation
        if v.users == 0:
            return {}
        targets = self.split.targets("validation")
        users = user_order(targets.keys(), self.config.seed)[: v.users]
        known = {u: set(h.items) for u, h in self.split.train.histories(cap=None).items()}
        self._val_targets = targets
        self._val_histories = self.split.histories("validation", cap=self.config.examples.max_history)
        return regime_b_lists(users, targets, known, self.split.train.item_ids, v.n_negatives, self.config.seed)

    def validate(self) -> dict[str, float]:
        """Regime-B NDCG@10 / HR@1 on the fixed validation subset (adapter in place; with
        `cf_hint`, the candidates carry the examples' CF scores, so the prompts show the hint)."""
        import torch

        from ..evaluation.protocol import per_user_metrics
        from ..types import Candidate

        if not self._val_lists:
            return {}
        was_training = self.peft.training
        self.peft.eval()
        t0 = time.perf_counter()
        users = list(self._val_lists)
        ranked = []
        with torch.inference_mode():
            hint = self.config.cf_hint != "none"
            for u in users:
                ids = self._val_lists[u]
                scores = (self.retriever.score_items([self._val_histories[u]], [ids])[0] if hint
                          else np.zeros(len(ids)))
                cands = [Candidate(i, float(x), "regime-b") for i, x in zip(ids, scores, strict=True)]
                ranked.append([r.item_id for r in self.ranker.rank(self._val_histories[u], cands)])
        m = per_user_metrics(ranked, [self._val_targets[u] for u in users], ["ndcg@10", "hr@1"])
        if was_training:
            self.peft.train()
        return {"ndcg@10": float(np.mean(m["ndcg@10"])), "hr@1": float(np.mean(m["hr@1"])),
                "users": len(users), "seconds": time.perf_counter() - t0}

    def _validate_at(self, step: int) -> None:
        v = self.validate()
        if not v:
            return
        v = {"step": step, **v}
        self.validation.append(v)
        log.info("step %d: validation ndcg@10 %.4f hr@1 %.4f", step, v["ndcg@10"], v["hr@1"])
        if self.best_ndcg is None or v["ndcg@10"] > self.best_ndcg:
            self.best_ndcg = v["ndcg@10"]
            self._save_named("best", step)
