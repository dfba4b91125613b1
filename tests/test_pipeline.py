"""Pipeline: config errors, cold start, fusion equivalences, save/load, real models end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reranker.data.synthetic import generate_world
from reranker.errors import ConfigError, ModelError
from reranker.pipeline import Pipeline, PipelineConfig
from reranker.types import History


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=3, n_users=120, n_items=80)


def cf_only(**ranking) -> PipelineConfig:
    base = {"llm": {"enabled": False}, "bert": {"enabled": False}}
    base.update(ranking)
    return PipelineConfig.from_dict({"ranking": base, "retriever": {"k": 20}})


# ------------------------------------------------------------------ config errors
def test_unknown_key_is_named(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("ranking:\n  fusion:\n    weigths: {llm: 1}\n")
    with pytest.raises(ConfigError, match=r"ranking\.fusion\.weigths: unknown key"):
        Pipeline.from_yaml(p)


def test_negative_weight_is_named():
    with pytest.raises(ConfigError, match=r"ranking\.fusion\.weights\.llm: must be >= 0"):
        PipelineConfig.from_dict({"ranking": {"fusion": {"weights": {"llm": -1}}}})


def test_missing_model_is_named(world):
    cfg = PipelineConfig.from_dict({"ranking": {"llm": {"model": "no-such-model"}, "bert": {"enabled": False}}})
    with pytest.raises(ModelError, match=r"ranking\.llm\.model: unknown model spec 'no-such-model'"):
        Pipeline(cfg).fit(world.dataset)


def test_bad_retriever_combinations():
    with pytest.raises(ConfigError, match=r"retriever\.similarity: Input should be 'cosine' or 'pearson'"):
        PipelineConfig.from_dict({"retriever": {"type": "usercf", "similarity": "adjusted_cosine"}})
    with pytest.raises(ConfigError, match=r"retriever\.mu: unknown key"):
        PipelineConfig.from_dict({"retriever": {"type": "itemcf", "mu": 0.3}})
    with pytest.raises(ConfigError, match=r"retriever\.type"):
        PipelineConfig.from_dict({"retriever": {"type": "nope"}})


def test_old_pipeline_files_keep_loading():
    """The section form written before the registry (a saved pipeline's config.yaml)."""
    old = {"retriever": {"type": "popular", "k": 50, "similarity": "cosine", "feedback": "implicit",
                         "shrinkage": 0.0, "min_support": 1, "mu": None},
           "ranking": {"llm": {"enabled": True, "model": "smollm2-135m", "mode": "listwise", "dtype": "auto",
                               "threads": None, "batch_size": 16, "max_context": 2048, "item_text_tokens": 48,
                               "max_attrs": 3, "prompt_dir": None},
                       "bert": {"enabled": False, "model": "minilm", "half_life": 5.0, "max_chars": 400,
                                "batch_size": 64}}}
    cfg = PipelineConfig.from_dict(old)
    assert cfg.retriever.type == "popular" and cfg.ranking.bert is None
    assert cfg.ranking.llm.type == "llm-listwise" and cfg.ranking.llm.max_context == 2048
    assert PipelineConfig.from_dict({"ranking": {"llm": {"enabled": False}}}).ranking.llm is None


def test_every_component_field_is_settable():
    """Fields the old hand-copied sections lacked, now reachable from a pipeline YAML."""
    cfg = PipelineConfig.from_dict({
        "retriever": {"type": "itemcf", "cosine_norm": "co_rated", "with_means": True, "max_neighbors": 7},
        "ranking": {"llm": {"type": "llm-pointwise", "scoring": "cache", "temperature": 0.5,
                            "max_new_tokens": 12, "system_prompt": "hi"}}})
    assert cfg.retriever.max_neighbors == 7 and cfg.ranking.llm.system_prompt == "hi"
    assert PipelineConfig.from_dict(cfg.model_dump(mode="json")) == cfg


def test_unfitted_pipeline_refuses():
    with pytest.raises(ModelError, match="not fitted"):
        Pipeline(cf_only()).recommend("U000")


# ------------------------------------------------------------------ behaviour (CF only: fast)
def test_cold_start_gets_popular_items(world):
    pipe = Pipeline(cf_only()).fit(world.dataset)
    popular = pipe.popular.popular(5)
    for who in (None, "never-seen-user"):
        r = pipe.recommend(who, k=5)
        assert r.item_ids == popular
        assert r.diagnostics["pipeline"]["path"] == "popular"


def test_recommend_excludes_history_and_is_complete(world):
    pipe = Pipeline(cf_only()).fit(world.dataset)
    u = str(world.dataset.user_ids[0])
    h = world.dataset.history(u)
    r = pipe.recommend(u, k=7)
    assert len(r) == 7 and len(set(r.item_ids)) == 7
    assert not set(r.item_ids) & set(h.items)
    # the full stage-2 ranking holds every candidate exactly once
    cands = pipe.candidates(pipe.history_for(u))
    full = pipe.rank(pipe.history_for(u), cands)
    assert sorted(full.item_ids) == sorted(c.item_id for c in cands)


def test_ad_hoc_history_with_context(world):
    pipe = Pipeline(cf_only()).fit(world.dataset)
    items = list(world.dataset.item_ids[:3])
    r = pipe.recommend(History(items=items), k=5, context={"device": "mobile"})
    assert len(r) == 5 and not set(r.item_ids) & set(items)
    assert pipe.history_for(History(items=items), {"device": "mobile"}).context["device"] == "mobile"


def test_batch_equals_single(world):
    pipe = Pipeline(cf_only()).fit(world.dataset)
    users = [str(u) for u in world.dataset.user_ids[:6]] + [None]
    batch = pipe.recommend_batch(users, k=5)
    single = [pipe.recommend(u, k=5) for u in users]
    assert [b.item_ids for b in batch] == [s.item_ids for s in single]


def test_gamma_zero_equals_content_plus_cf_ranking(world, minilm):
    from reranker.ranking.fusion import normalize

    cfg = PipelineConfig.from_dict({"ranking": {"llm": {"enabled": False},
                                                "fusion": {"weights": {"content": 0.4, "cf": 0.6, "llm": 0.0}}}})
    pipe = Pipeline(cfg).fit(world.dataset)
    u = str(world.dataset.user_ids[1])
    h = pipe.history_for(u)
    cands = pipe.candidates(h)
    got = pipe.rank(h, cands).item_ids
    content = pipe.bert.score(h, cands)
    cf = np.array([c.score for c in cands])
    fused = 0.4 * normalize(content) + 0.6 * normalize(cf)
    order = np.argsort(-fused, kind="stable")
    assert got == [cands[i].item_id for i in order]


def test_mmr_lambda_one_keeps_order(world):
    base = Pipeline(cf_only()).fit(world.dataset)
    cfg = cf_only(diversity={"enabled": True, "lam": 1.0})
    div = Pipeline(cfg).fit(world.dataset)
    for u in world.dataset.user_ids[:5]:
        assert div.recommend(str(u), k=10).item_ids == base.recommend(str(u), k=10).item_ids


def test_mmr_lambda_zero_diversifies(world):
    from reranker.evaluation.metrics import intra_list_diversity

    base = Pipeline(cf_only()).fit(world.dataset)
    div = Pipeline(cf_only(diversity={"enabled": True, "lam": 0.0})).fit(world.dataset)
    cats = dict(zip(world.dataset.items["item_id"], world.dataset.items["category"], strict=True))
    users = [str(u) for u in world.dataset.user_ids[:20]]
    a = intra_list_diversity([base.recommend(u, k=5).item_ids for u in users], cats, 5)
    b = intra_list_diversity([div.recommend(u, k=5).item_ids for u in users], cats, 5)
    assert np.nanmean(b) > np.nanmean(a)


def test_save_load_identical_rankings(world, tmp_path: Path):
    cfg = cf_only(learned={"enabled": True, "use_llm_hidden": False, "users": 60})
    pipe = Pipeline(cfg).fit(world.dataset)
    assert pipe.learned is not None
    pipe.save(tmp_path / "p")
    again = Pipeline.load(tmp_path / "p")
    for u in [str(x) for x in world.dataset.user_ids[:8]] + [None]:
        a, b = pipe.recommend(u, k=10), again.recommend(u, k=10)
        assert a.item_ids == b.item_ids
        np.testing.assert_allclose(a.scores, b.scores)


def test_load_refuses_other_format(world, tmp_path: Path):
    import json

    Pipeline(cf_only()).fit(world.dataset).save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "pipeline.json").read_text())
    meta["format"] = 999
    (tmp_path / "p" / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="pipeline format 999"):
        Pipeline.load(tmp_path / "p")
    with pytest.raises(ConfigError, match="not a saved pipeline"):
        Pipeline.load(tmp_path)


def test_fit_weights_on_validation(world):
    pipe = Pipeline(cf_only(fusion={"fit_weights": True, "weights": {"content": 0, "cf": 1, "llm": 0}}))
    pipe.fit(world.dataset)
    rep = pipe.fit_report["fusion"]
    assert rep["lists"] > 0 and abs(sum(pipe.weights.values()) - 1.0) < 1e-9


# ------------------------------------------------------------------ real LLM end to end
def test_pipeline_with_llm_and_bert(world, smollm, minilm):
    cfg = PipelineConfig.from_dict({"ranking": {"n_candidates": 8}, "top_k": 5})
    pipe = Pipeline(cfg, llm_backend=smollm).fit(world.dataset)
    u = str(world.dataset.user_ids[2])
    r = pipe.recommend(u, k=5)
    assert len(r) == 5 and len(set(r.item_ids)) == 5
    again = pipe.recommend(u, k=5)
    assert r.item_ids == again.item_ids  # deterministic
