"""Regime C (cold start): the cold set never reaches training (asserted on what the fitted models
and the learned head saw), the negatives, seeded determinism, the history cuts, the config
errors, the CF fallback, and every registered ranker running in both kinds."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from reranker.data.synthetic import generate_world
from reranker.errors import ConfigError
from reranker.evaluation.cold_start import choose_cold_items, cold_items_setup, cold_users_setup
from reranker.evaluation.experiment import (
    ExperimentConfig,
    LoadedExperiment,
    load_experiment,
    register_ranker_type,
    unregister_ranker_type,
)
from reranker.evaluation.runner import RunOptions, run_experiment
from reranker.registry import RANKERS

N_NEG = 5


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=2, n_users=120, n_items=100).dataset.with_tie_order("random", seed=0)


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


def _config(cold: dict, rankers: list[dict], **protocol) -> dict:
    return {"name": "cold", "data": {"synthetic": {"seed": 2, "n_users": 120, "n_items": 100}},
            "protocol": {"regime": "c", "cold": cold, "n_negatives": N_NEG, "n_boot": 20,
                         "position_bias": {"enabled": False}, "compare_to": None, **protocol},
            "rankers": rankers}


def _run(tmp_path, cfg: dict, data, **opts):
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    options = RunOptions(out_dir=tmp_path / "out", use_cache=False, progress=False, report=False, dataset=data,
                         **opts)
    return run_experiment(load_experiment(p), options)


def _pairs(df) -> set[tuple[str, str]]:
    return set(zip(df["user_id"].astype(str), df["item_id"].astype(str), strict=True))


# ----------------------------------------------------------------------------- cold items
def test_cold_items_are_the_newest_share_and_never_reach_training(tmp_path, world, capture):
    cfg = _config({"kind": "items"}, [
        {"name": "c", "type": "capture-ctx"},
        {"name": "itemcf", "type": "itemcf", "params": {"k": 10, "feedback": "implicit"}},
        {"name": "ease", "type": "ease"},
        {"name": "lf", "type": "learned-fusion"},
    ])
    res = _run(tmp_path, cfg, world)
    (ctx,) = capture
    catalog = set(map(str, world.item_ids))
    cold = catalog - set(map(str, ctx.fit_data.item_ids))
    # the newest 10% of the items with interactions, by first interaction
    first = world.interactions.groupby("item_id")["timestamp"].min()
    assert len(cold) == round(0.1 * len(first)) and cold <= set(map(str, first.index))
    assert first[list(cold)].min() >= first.drop(list(cold)).max()
    assert res["protocol"]["cold"]["cold_items"] == len(cold)
    # what every model is fitted on: no interaction with a cold item, no cold item in the catalog
    assert not (set(ctx.fit_data.interactions["item_id"].astype(str)) & cold)
    warm = world.interactions[~world.interactions["item_id"].astype(str).isin(cold)]
    assert _pairs(ctx.fit_data.interactions) == _pairs(warm)
    # the fitted retrievers the CF rows use: cold items unknown, the interaction matrix is the warm data's
    for rtype, params in (("itemcf", {"k": 10, "feedback": "implicit"}), ("ease", {})):
        model = ctx.retriever(rtype, params)
        assert not any(model.knows_item(i) for i in cold)
        assert model.R.nnz == len(_pairs(warm))
    # the learned head: its split (fit lists) and its serving models never saw a cold item
    split = ctx.split
    for frame in (split.train.interactions, split.validation, split.test):
        assert not (set(frame["item_id"].astype(str)) & cold)
    assert not (set(map(str, split.train.item_ids)) & cold)  # its random negatives come from here
    head = ctx.built["lf"]
    for name in ("itemcf", "usercf", "popularity"):
        fitted = head.builder.scorers[name]
        assert not any(fitted.knows_item(i) for i in cold)
        assert fitted.R.nnz == len(_pairs(warm))
    # the evaluated lists: the content catalog still has the cold items' text
    assert ctx.catalog is world and cold <= catalog
    # a head whose fit guard kept one CF feature is reported as such (that feature is 0 on cold items)
    kept = (res["runs"][0]["rankers"]["lf"].get("fit_report") or {}).get("fallback_feature")
    text = res["protocol"]["cold"]["fallbacks"]["lf"]
    assert (kept in text and "random order" in text) if kept else "every feature" in text
    assert res["runs"][0]["rankers"]["itemcf"]["n_users"] == res["data"]["evaluated_users"] > 0


def test_cold_item_targets_and_negatives(world):
    setup = cold_items_setup(world, share=0.1, n_negatives=N_NEG)
    cold = setup.cold_items
    lists = setup.lists(setup.users, N_NEG, seed=0)
    df = world.sorted_interactions()
    for u in setup.users:
        rows = df[df["user_id"] == u]
        items = rows["item_id"].astype(str).tolist()
        first = next(i for i, x in enumerate(items) if x in cold)
        assert setup.targets[u] == items[first]  # the first cold item the user touched
        assert setup.blocks[0].histories[u].items == tuple(items[max(0, first - 20):first])  # warm, before it
        lst = lists[u]
        negatives = [i for i in lst if i != setup.targets[u]]
        assert len(lst) == N_NEG + 1 == len(set(lst)) and setup.targets[u] in lst
        assert set(negatives) <= cold  # other cold items ...
        assert not (set(negatives) & set(items))  # ... the user never touched
    # users who touched a cold item but had no warm item before it are counted, not evaluated
    touched = {u for u, i in _pairs(world.interactions) if i in cold}
    assert set(setup.users) <= touched
    assert len(touched) - len(setup.users) == sum(setup.excluded.values())


def test_cold_items_are_seeded(world):
    a = cold_items_setup(world, n_negatives=N_NEG)
    b = cold_items_setup(world, n_negatives=N_NEG)
    assert a.cold_items == b.cold_items and a.targets == b.targets
    assert a.lists(a.users, N_NEG, 0) == b.lists(b.users, N_NEG, 0)
    assert a.lists(a.users, N_NEG, 0) != a.lists(a.users, N_NEG, 1)  # another run seed, other lists
    sub = a.users[::3]
    assert a.lists(sub, N_NEG, 0) == {u: a.lists(a.users, N_NEG, 0)[u] for u in sub}  # subset-invariant
    r0, r1 = (set(choose_cold_items(world, 0.1, "random", s)) for s in (0, 1))
    assert r0 == set(choose_cold_items(world, 0.1, "random", 0)) and r0 != r1


def test_cf_rows_fall_back_to_the_shuffled_list_order_on_cold_items(world):
    """What the report says of CF rows on cold items is what the code does: every candidate
    scores 0 (unknown to the model), so the ranking is the candidate list's seeded shuffle."""
    from reranker.evaluation.cold_start import fallback
    from reranker.evaluation.experiment import RankerSpec, build_ranker
    from reranker.registry import BuildContext
    from reranker.types import Candidate

    setup = cold_items_setup(world, n_negatives=N_NEG)
    ctx = BuildContext(fit_data=setup.fit_data, catalog=world, split=setup.head_split)
    lists = setup.lists(setup.users, N_NEG, seed=0)
    for rtype in ("pop", "itemcf", "usercf", "ease", "transitions", "union", "learned-fusion"):
        ranker = build_ranker(RankerSpec(name=rtype, type=rtype), ctx)
        assert "random order" in fallback(rtype, "items")
        for u in setup.users[:8]:
            ranking = ranker.rank(setup.blocks[0].histories[u], [Candidate(i, 0.0, "sampled") for i in lists[u]])
            assert list(ranking.item_ids) == lists[u], rtype
            assert len(set(ranking.scores)) == 1, rtype


# ----------------------------------------------------------------------------- cold users
def test_cold_users_never_reach_training_and_cuts_have_their_lengths(tmp_path, world, capture):
    cfg = _config({"kind": "users", "user_share": 0.25, "history_cuts": [1, 3, 5]}, [
        {"name": "c", "type": "capture-ctx"},
        {"name": "usercf", "type": "usercf", "params": {"k": 10, "feedback": "implicit"}},
        {"name": "lf", "type": "learned-fusion"},
    ])
    res = _run(tmp_path, cfg, world)
    (ctx,) = capture  # built once, used by the three blocks
    setup = cold_users_setup(world, share=0.25, cuts=[1, 3, 5], n_negatives=N_NEG)
    cold = setup.cold_users
    sizes = world.interactions.groupby("user_id").size()
    assert len(cold) == round(0.25 * int((sizes > 5).sum()))
    # no interaction of a cold user in what the models (and the head's split) are fitted on
    assert not (set(ctx.fit_data.interactions["user_id"].astype(str)) & cold)
    for frame in (ctx.split.train.interactions, ctx.split.validation, ctx.split.test):
        assert not (set(frame["user_id"].astype(str)) & cold)
    model = ctx.retriever("usercf", {"k": 10, "feedback": "implicit"})
    assert not any(model.knows_user(u) for u in cold)
    assert not any(ctx.built["lf"].builder.scorers["usercf"].knows_user(u) for u in cold)
    # one block per cut, on the same users
    runs = res["runs"]
    assert [r["block"] for r in runs] == ["history 1", "history 3", "history 5"]
    assert {r["rankers"]["usercf"]["n_users"] for r in runs} == {len(setup.users)}
    df = world.sorted_interactions()
    lists = setup.lists(setup.users, N_NEG, seed=0)
    warm = set(ctx.fit_data.interactions["item_id"].astype(str))
    for block in setup.blocks:
        for u in setup.users:
            items = df[df["user_id"] == u]["item_id"].astype(str).tolist()
            h = block.histories[u]
            assert len(h.items) == block.cut  # the stated length ...
            assert h.items == tuple(items[-1 - block.cut:-1])  # ... the last items before the target
            assert setup.targets[u] == items[-1]
    for u in setup.users:  # warm negatives the user never touched
        items = set(df[df["user_id"] == u]["item_id"].astype(str))
        negatives = set(lists[u]) - {setup.targets[u]}
        assert len(negatives) == N_NEG and negatives <= warm and not (negatives & items)


def test_cold_users_are_seeded(world):
    a = cold_users_setup(world, n_negatives=N_NEG)
    b = cold_users_setup(world, n_negatives=N_NEG)
    assert a.cold_users == b.cold_users and a.lists(a.users, N_NEG, 0) == b.lists(b.users, N_NEG, 0)
    assert cold_users_setup(world, n_negatives=N_NEG, seed=1).cold_users != a.cold_users


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(("protocol", "where"), [
    ({"regime": "b", "cold": {"kind": "items"}}, "protocol.cold"),
    ({"regime": "c", "stage": "validation"}, "protocol.stage"),
    ({"regime": "c", "cold": {"kind": "items", "history_cuts": [1]}}, "protocol.cold.history_cuts"),
    ({"regime": "c", "cold": {"kind": "users", "item_share": 0.2}}, "protocol.cold.item_share"),
    ({"regime": "c", "cold": {"kind": "users", "history_cuts": [0, 2]}}, "protocol.cold.history_cuts"),
    ({"regime": "c", "cold": {"kind": "items", "item_share": 1.5}}, "protocol.cold.item_share"),
    ({"regime": "c", "cold": {"kind": "sideways"}}, "protocol.cold.kind"),
    ({"regime": "c", "cold": {"kind": "items", "shares": 0.1}}, "protocol.cold.shares"),
])
def test_config_errors_name_the_field(protocol, where):
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_dict({"data": {"synthetic": {}}, "protocol": protocol,
                                    "rankers": [{"name": "pop", "type": "pop"}]})
    assert where in str(e.value)


def test_newest_needs_timestamps(world):
    no_time = world.with_interactions(world.interactions.drop(columns=["timestamp"]))
    with pytest.raises(ConfigError, match="protocol.cold.item_select"):
        cold_items_setup(no_time)
    assert cold_items_setup(no_time, select="random", n_negatives=N_NEG).users


def test_committed_cold_configs_load():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for name, kind in (("ml100k-cold-items", "items"), ("ml100k-cold-users", "users"),
                       ("ml100k-cold-items-qwen", "items"), ("ml100k-cold-items-finetune", "items"),
                       ("ml100k-cold-users-qwen", "users"), ("ml100k-cold-users-finetune", "users")):
        cfg = load_experiment(repo / "configs" / f"{name}.yaml").config
        assert cfg.protocol.regime == "c" and cfg.protocol.cold.kind == kind
        assert cfg.protocol.ties == "random" and cfg.protocol.compare_to == "bert"


@pytest.mark.parametrize("kind", ["items", "users"])
def test_the_regime_c_adapter_is_trained_without_the_evaluated_cold_set(kind):
    """The committed fine-tuning config for regime C removes exactly the cold set (items or
    users) its evaluation config tests on, with the same order of ties."""
    from pathlib import Path

    from reranker.training.config import FinetuneConfig

    repo = Path(__file__).resolve().parents[1]
    ft = FinetuneConfig.from_yaml(repo / "configs" / f"finetune-ml100k-cold-{kind}.yaml")
    ev = load_experiment(repo / "configs" / f"ml100k-cold-{kind}-finetune.yaml").config
    assert ft.cold == ev.protocol.cold and ft.cold is not None and ft.cold.kind == kind
    assert (ft.ties, ft.tie_seed) == (ev.protocol.ties, ev.protocol.tie_seed)
    adapter = f"smollm2-135m+{ft.output_dir}/best"
    assert any(r.params.get("model") == adapter for r in ev.rankers if r.params)


# ----------------------------------------------------------------------------- every ranker
FAST_ROWS = [
    {"name": "identity", "type": "identity"},
    {"name": "random", "type": "random"},
    {"name": "popular", "type": "popular"},
    {"name": "itemcf", "type": "itemcf", "params": {"k": 10, "feedback": "implicit"}},
    {"name": "usercf", "type": "usercf", "params": {"k": 10, "feedback": "implicit"}},
    {"name": "ease", "type": "ease"},
    {"name": "als", "type": "als", "params": {"factors": 8, "iterations": 3}},
    {"name": "bpr", "type": "bpr", "params": {"factors": 8, "iterations": 3}},
    {"name": "transitions", "type": "transitions"},
    {"name": "union", "type": "union"},
    {"name": "sasrec", "type": "sasrec", "params": {"hidden": 8, "blocks": 1, "epochs": 1}},
    {"name": "fusion", "type": "fusion", "params": {"weights": {"itemcf": 1.0, "ease": 0.5}}},
    {"name": "learned-fusion", "type": "learned-fusion"},
]
SLOW_ROWS = [
    {"name": "bert", "type": "bert", "params": {"model": "minilm"}},
    {"name": "llm-pointwise", "type": "llm-pointwise", "params": {"model": "smollm2-135m", "threads": 1}, "users": 3},
    {"name": "llm-listwise", "type": "llm-listwise", "params": {"model": "smollm2-135m", "threads": 1}, "users": 2},
    {"name": "llm-verbalizer", "type": "llm-verbalizer", "params": {"model": "smollm2-135m", "threads": 1},
     "users": 2},
    {"name": "learned-fusion-llm", "type": "learned-fusion", "users": 3,
     "params": {"bert": {"model": "minilm"}, "llm": {"model": "smollm2-135m", "threads": 1}, "train_users": 4,
                "head": {"use_llm_hidden": False}}},
]


def test_every_registered_ranker_type_is_covered():
    builtin = {c.name for c in RANKERS if isinstance(c.builder, str) and c.builder.startswith("reranker.components:")}
    assert builtin == {r["type"] for r in FAST_ROWS + SLOW_ROWS}


def _check_rows(res, rows) -> None:
    for run in res["runs"]:
        for r in rows:
            e = run["rankers"][r["name"]]
            assert e["complete"] and e["failures"] == [], r["name"]
            assert e["n_users"] == min(r.get("users") or 10**9, res["data"]["evaluated_users"]), r["name"]
            assert np.isfinite(e["summary"]["ndcg@10"]["mean"]), r["name"]
    fb = res["protocol"]["cold"]["fallbacks"]
    assert set(fb) == {r["name"] for r in rows} and not any("not documented" in t for t in fb.values())


@pytest.mark.parametrize("cold", [{"kind": "items"}, {"kind": "users", "user_share": 0.1, "history_cuts": [1, 3]}])
def test_every_non_model_ranker_runs_in_regime_c(tmp_path, world, cold):
    res = _run(tmp_path, _config(cold, FAST_ROWS), world, users=6)
    assert res["status"] == "complete"
    _check_rows(res, FAST_ROWS)


@pytest.mark.parametrize("cold", [{"kind": "items"}, {"kind": "users", "user_share": 0.1, "history_cuts": [1]}])
def test_every_model_ranker_runs_in_regime_c(tmp_path, world, cold, minilm, smollm):
    res = _run(tmp_path, _config(cold, SLOW_ROWS), world, users=3)
    assert res["status"] == "complete"
    _check_rows(res, SLOW_ROWS)


def test_report_states_the_protocol_and_fallbacks(tmp_path, world):
    from reranker.evaluation.report import render_markdown

    cfg = ExperimentConfig.from_dict(_config({"kind": "users", "user_share": 0.1, "history_cuts": [2, 4]},
                                             [{"name": "pop", "type": "pop"}, {"name": "itemcf", "type": "itemcf"}]))
    res = run_experiment(LoadedExperiment(cfg, None, [tmp_path, tmp_path]),
                         RunOptions(out_dir=tmp_path / "out", use_cache=False, progress=False, dataset=world))
    md = render_markdown(res)
    assert "Regime C (cold start)" in md and "Cold users: a seeded 10%" in md
    assert "## Seed 0 — history 2" in md and "## Seed 0 — history 4" in md
    assert "| itemcf | the user is unknown to the model" in md
    assert (tmp_path / "out" / "ndcg10-history-2.png").is_file()


# ----------------------------------------------------------------------------- training data
@pytest.mark.parametrize("cold", [{"kind": "items", "item_share": 0.2}, {"kind": "users", "user_share": 0.3}])
def test_cold_fit_data_is_the_regime_c_fit_data(world, cold):
    """What `reranker finetune --cold` trains on is exactly what regime C fits every model on."""
    from reranker.evaluation.cold_start import cold_fit_data, cold_setup
    from reranker.evaluation.experiment import ProtocolSpec
    from reranker.evaluation.specs import ColdSpec

    spec = ColdSpec(**cold)
    fit, ids = cold_fit_data(world, spec)
    setup = cold_setup(world, ProtocolSpec(regime="c", cold=spec, n_negatives=N_NEG))
    assert fit.interactions.equals(setup.fit_data.interactions)
    assert fit.items.equals(setup.fit_data.items)
    assert ids == (setup.cold_items if cold["kind"] == "items" else setup.cold_users) and ids
    column = "item_id" if cold["kind"] == "items" else "user_id"
    assert not set(fit.interactions[column].astype(str)) & ids
    assert len(fit.interactions) < len(world.interactions)
