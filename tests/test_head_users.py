"""The learned head's training users: a prefix of one fixed user order (so a smaller run's lists
are the first lists of a larger run, and cached LLM features survive a change of size), and
bounded by the run's user limit (``reranker eval --users N``)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import yaml

from reranker.build_context import BuildContext
from reranker.data.splits import leave_one_out
from reranker.data.synthetic import generate_world
from reranker.evaluation.experiment import load_experiment
from reranker.evaluation.protocol import user_order
from reranker.evaluation.runner import RunOptions, run_experiment
from reranker.ranking.features import FeatureBuilder
from reranker.ranking.learned import training_lists
from reranker.registry import RANKERS


class IdHash:
    """A deterministic feature per item id, so two lists compare by their features."""

    def score(self, history, candidates, catalog=None):
        return np.array([float(zlib.crc32(c.item_id.encode()) % 9973) for c in candidates])


@pytest.fixture(scope="module")
def split():
    return leave_one_out(generate_world(seed=3, n_users=50, n_items=60).dataset)


def _lists(split, users):
    return training_lists(split, FeatureBuilder({"id": IdHash()}), users=users, n_negatives=9, seed=4,
                          progress=False)


def _same(a, b) -> bool:
    return np.array_equal(a.trad, b.trad) and np.array_equal(a.labels, b.labels)


def test_training_users_are_a_prefix_of_the_fixed_order(split):
    small, large, every = _lists(split, 10), _lists(split, 25), _lists(split, None)
    assert len(small) == 10 and len(large) == 25 and len(every) == len(split.histories("validation"))
    assert all(_same(a, b) for a, b in zip(small, large[:10], strict=True))
    assert all(_same(a, b) for a, b in zip(large, every[:25], strict=True))
    # the users are the first of the evaluation's own order, not a random draw
    order = user_order(split.histories("validation"), seed=0)
    assert order[:3] != sorted(order)[:3]  # the fixed order is a permutation, not sorted ids
    # a larger request than there are users means all of them
    assert len(_lists(split, 10_000)) == len(every)


def test_the_run_user_limit_caps_the_head(split):
    ctx = BuildContext(fit_data=split.train_valid(), catalog=None, seed=0, split=split, user_limit=7)
    head = RANKERS.build({"type": "learned-fusion", "train_users": 30}, ctx.named("lf"))
    rep = head.head.fit_report
    assert rep["n_lists"] == 7
    assert rep["train_users_capped"] == {"configured": 30, "used": 7}
    free = RANKERS.build({"type": "learned-fusion", "train_users": 5},
                         BuildContext(fit_data=split.train_valid(), seed=0, split=split, user_limit=7).named("lf"))
    assert free.head.fit_report["n_lists"] == 5 and "train_users_capped" not in free.head.fit_report


def test_eval_users_bounds_the_head_and_the_report_says_so(tmp_path):
    cfg = {"name": "t", "data": {"synthetic": {"seed": 2, "n_users": 40, "n_items": 60}},
           "protocol": {"regime": "b", "n_boot": 20, "position_bias": {"enabled": False}, "compare_to": None},
           "rankers": [{"name": "head", "type": "learned-fusion"}]}
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = tmp_path / "out"
    run_experiment(load_experiment(p), RunOptions(out_dir=out, use_cache=False, progress=False, users=6))
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "capped" in report and "6" in report
