"""The learned head never fits on the labels it is scored on: at ``protocol.stage: validation``
it gets the split one step earlier (train's own leave-one-out), at ``test`` the split itself;
and learned rows share stage-1 models fitted on the same data."""

from __future__ import annotations

import pytest
import yaml

from reranker.data.splits import leave_one_out
from reranker.data.synthetic import generate_world
from reranker.evaluation.experiment import (
    load_experiment,
    register_ranker_type,
    unregister_ranker_type,
)
from reranker.evaluation.runner import RunOptions, run_experiment


@pytest.fixture
def capture():
    seen: list = []

    def build(spec, ctx):
        from reranker.ranking.base import IdentityRanker

        seen.append(ctx)
        return IdentityRanker()

    register_ranker_type("capture-ctx", build)
    yield seen
    unregister_ranker_type("capture-ctx")


@pytest.mark.parametrize("stage", ["validation", "test"])
def test_head_split_is_one_step_earlier_at_the_validation_stage(tmp_path, capture, stage):
    world = generate_world(seed=2, n_users=40, n_items=60)
    cfg = {"name": "t", "data": {"synthetic": {"seed": 2, "n_users": 40, "n_items": 60}},
           "protocol": {"regime": "b", "stage": stage, "n_boot": 20, "position_bias": {"enabled": False}},
           "rankers": [{"name": "c", "type": "capture-ctx"}]}
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    data = world.dataset.with_tie_order("random", seed=0)
    run_experiment(load_experiment(p), RunOptions(out_dir=tmp_path / "out", use_cache=False, progress=False,
                                                  report=False, dataset=data))
    (ctx,) = capture
    outer = leave_one_out(data)
    if stage == "test":
        assert ctx.split.targets("validation") == outer.targets("validation")
        return
    earlier = ctx.split
    # its test stage is the outer validation stage: same fit data, histories and targets
    users = earlier.users
    assert users and set(users) <= set(outer.users)
    assert earlier.targets("test") == {u: outer.targets("validation")[u] for u in users}
    assert len(earlier.train_valid().interactions) == len(outer.train.interactions)
    hv, he = outer.histories("validation"), earlier.histories("test")
    assert {u: h.items for u, h in he.items()} == {u: hv[u].items for u in he}
    # the head's targets are each user's last train item, never the label it is scored on
    last_train = {u: h.items[-1] for u, h in outer.train.histories(cap=None).items()}
    assert earlier.targets("validation") == {u: last_train[u] for u in earlier.targets("validation")}
    assert len(earlier.train.interactions) == len(outer.train.interactions) - len(earlier.users)


def test_learned_rows_share_fitted_stage1_models():
    from reranker.ranking.configs import LearnedFusionParams
    from reranker.ranking.learned_build import LearnedParts
    from reranker.registry import BuildContext

    data = generate_world(seed=2, n_users=40, n_items=60).dataset
    split = leave_one_out(data)
    ctx = BuildContext(fit_data=split.train_valid(), catalog=data, split=split)
    params = LearnedFusionParams(extra={"ease": {"type": "ease"}}, negatives="retrieved",
                                 candidates_from={"type": "ease"})
    a, b = LearnedParts(params, ctx.named("a")), LearnedParts(params, ctx.named("b"))
    assert a.list_retriever(split.train) is b.list_retriever(split.train)
    assert a.builder(split.train).scorers["ease"].retriever is a.list_retriever(split.train)
    serve = a.builder(ctx.fit_data).scorers["ease"].retriever
    assert serve is ctx.retriever({"type": "ease"}) and serve is not a.list_retriever(split.train)
