"""The registries: every component's config round-trips, errors name their path, every
registered ranker built through the registry passes the shared ranker suite, the CLI lists them."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from protocol_suites import RankerSuite

from reranker.cli import main
from reranker.config import BaseConfig
from reranker.data.splits import leave_one_out
from reranker.data.synthetic import generate_world
from reranker.errors import ConfigError
from reranker.evaluation.experiment import ExperimentConfig
from reranker.registry import BACKENDS, RANKERS, RETRIEVERS, BuildContext, Registry
from reranker.types import Candidate, History

REGISTRIES = {"retriever": RETRIEVERS, "ranker": RANKERS, "backend": BACKENDS}
ALL = [(stage, c.name) for stage, reg in REGISTRIES.items() for c in reg]


@pytest.mark.parametrize(("stage", "name"), ALL, ids=[f"{s}:{n}" for s, n in ALL])
def test_config_round_trip(stage: str, name: str):
    """dump -> load gives the same object, through plain dicts (JSON) and through YAML."""
    reg = REGISTRIES[stage]
    cfg = reg.config({reg.key: name})
    assert reg.type_of(cfg) == name
    as_json = json.loads(json.dumps(cfg.model_dump(mode="json")))
    assert reg.config(as_json) == cfg
    assert reg.config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json")))) == cfg
    # every field is visible to `reranker components`
    described = {c["name"]: c for c in reg.describe()}[name]
    assert {f["name"] for f in described["fields"]} == set(type(cfg).model_fields) - {reg.key}


def test_non_default_values_round_trip():
    cfg = RANKERS.config({"type": "llm-listwise", "permutations": 3, "window": 8, "step": 4, "threads": 1,
                          "temperature": 0.3, "system_prompt": "s", "max_history": 5})
    assert RANKERS.config(cfg.model_dump(mode="json")) == cfg
    k = RETRIEVERS.config({"type": "usercf", "k": 7, "similarity": "pearson", "max_neighbors": 3})
    assert RETRIEVERS.config(k.model_dump(mode="json")) == k


def test_aliases_and_unknown_types():
    assert RANKERS.config({"type": "pop"}).type == "popular"
    assert RETRIEVERS.canonical("pop") == "popular"
    with pytest.raises(ConfigError, match=r"x\.type: unknown ranker type 'nope'"):
        RANKERS.config({"type": "nope"}, where="x")
    with pytest.raises(ConfigError, match=r"p\.k: must be >= 1"):
        RETRIEVERS.config_for("itemcf", {"k": 0}, where="p")
    with pytest.raises(ConfigError, match=r"p\.kk: unknown key"):
        RETRIEVERS.config_for("itemcf", {"kk": 1}, where="p")


def test_experiment_rows_are_validated_with_their_path():
    bad = {"data": {"synthetic": {}}, "rankers": [
        {"name": "a", "type": "itemcf", "params": {"k": -1}},
        {"name": "b", "type": "llm-pointwise", "params": {"scoring": "nope"}},
        {"name": "c", "type": "learned-fusion", "params": {"usercf": {"similarity": "adjusted_cosine"}}},
    ]}
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_dict(bad)
    msg = str(e.value)
    assert "rankers.0.params.k: must be >= 1" in msg
    assert "rankers.1.params.scoring:" in msg
    assert "rankers.2.params.usercf.similarity:" in msg


def test_user_registered_component():
    class ConstConfig(BaseConfig):
        value: float = 1.0

    class Const:
        def __init__(self, cfg):
            self.cfg = cfg

        def score(self, history, candidates, catalog=None):
            import numpy as np

            return np.full(len(candidates), self.cfg.value)

    reg = Registry("scorer")
    reg.register("const", ConstConfig, lambda cfg, ctx: Const(cfg), summary="a constant")
    obj = reg.build({"type": "const", "value": 2.5})
    assert obj.cfg.value == 2.5 and obj.cfg.type == "const"
    assert isinstance(obj.cfg, ConstConfig)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("const", ConstConfig, lambda cfg, ctx: Const(cfg))
    reg.unregister("const")
    assert "const" not in reg
    with pytest.raises(ConfigError, match="built in"):
        RANKERS.register("itemcf", ConstConfig, lambda cfg, ctx: None)


def test_components_cli_lists_every_component_with_defaults():
    res = CliRunner().invoke(main, ["components", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {c["name"] for c in out["ranker"]} == set(RANKERS.names())
    itemcf = {c["name"]: c for c in out["retriever"]}["itemcf"]
    fields = {f["name"]: f for f in itemcf["fields"]}
    assert fields["k"]["default"] == 20 and "cosine_norm" in fields and "max_neighbors" in fields
    text = CliRunner().invoke(main, ["components", "ranker"]).output
    assert "llm-listwise" in text and "permutations" in text


# ------------------------------------------------------------------ every registered ranker, one suite
@pytest.fixture(scope="module")
def world_ctx():
    world = generate_world(seed=5, n_users=60, n_items=40)
    ds = world.dataset
    split = leave_one_out(ds)
    ctx = BuildContext(fit_data=split.train_valid(), catalog=ds, seed=0, split=split)
    return ds, ctx


CHEAP = ["identity", "random", "popular", "itemcf", "usercf", "ease", "als", "bpr", "transitions", "union",
         "fusion", "learned-fusion"]
CHEAP.append("sasrec")  # with a fixture-specific tiny config (its default 100 epochs take > 2 s)


class TestEveryRegisteredRanker(RankerSuite):
    """Each cheap registered ranker, built by name through the registry (the LLM and BERT ones
    run the same suite with real models in test_llm_rankers.py and test_bert.py)."""

    @pytest.fixture(params=CHEAP)
    def ranker(self, request, world_ctx):
        ds, ctx = world_ctx
        ctx = BuildContext(fit_data=ctx.fit_data, catalog=ds, seed=0, split=ctx.split)
        name = request.param
        if name == "fusion":
            ctx.built["itemcf"] = RANKERS.build({"type": "itemcf", "k": 10}, ctx.named("itemcf"))
            ctx.built["pop"] = RANKERS.build({"type": "pop"}, ctx.named("pop"))
            return RANKERS.build({"type": "fusion", "weights": {"itemcf": 1.0, "pop": 0.5}}, ctx.named(name))
        if name == "sasrec":
            return RANKERS.build({"type": name, "epochs": 2, "hidden": 16}, ctx.named(name))
        if name == "learned-fusion":
            return RANKERS.build({"type": name, "train_users": 30}, ctx.named(name))
        return RANKERS.build({"type": name}, ctx.named(name))

    @pytest.fixture
    def candidates(self, world_ctx):
        ds, _ = world_ctx
        return [Candidate(str(i), 0.0, "test") for i in ds.item_ids[:6]]

    @pytest.fixture
    def history(self, world_ctx):
        ds, _ = world_ctx
        return History(str(ds.user_ids[0]), tuple(str(i) for i in ds.item_ids[10:13]))


def test_every_ranker_has_a_suite():
    """A registered ranker without a shared-suite run somewhere is a gap: list them here."""
    covered = set(CHEAP) | {"bert", "llm-pointwise", "llm-listwise", "llm-verbalizer"}
    assert set(RANKERS.names()) <= covered
