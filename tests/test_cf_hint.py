"""CF hints in the LLM prompts (issue 18, item 3): each candidate's stage-1 rank or score band,
from the call's candidates' scores, rendered by the templates only when asked for."""

from __future__ import annotations

import math

import pytest
from fake_backends import CountingBackend

from reranker.build_context import BuildContext
from reranker.errors import ConfigError
from reranker.ranking.configs import ListwiseConfig, PointwiseConfig
from reranker.ranking.hints import Stage1Rescorer, hint_views, stage1_hints
from reranker.ranking.listwise import ListwiseLLMRanker
from reranker.ranking.pointwise import PointwiseLLMRanker
from reranker.registry import RANKERS
from reranker.types import Candidate, History

HIST = History("u1", ["h1", "h2"])


def cands(*scores: float) -> list[Candidate]:
    return [Candidate(f"i{k + 1}", s, "itemcf") for k, s in enumerate(scores)]


def test_ranks_and_bands_from_the_scores():
    hints = stage1_hints(cands(3.0, 1.0, 2.0, 2.0, 2.9))
    assert hints is not None
    assert [h.rank for h in hints] == [1, 5, 3, 4, 2]  # ties keep the list order
    assert {h.of for h in hints} == {5}
    # min-max thirds of [1, 3]: 3 -> 1.0, 1 -> 0, 2 -> 0.5, 2.9 -> 0.95
    assert [h.band for h in hints] == ["high", "low", "medium", "medium", "high"]


def test_no_hint_without_information():
    assert stage1_hints(cands(0.0, 0.0, 0.0)) is None  # regime B's sampled candidates
    assert stage1_hints([]) is None
    views, mode = hint_views(cands(0.0, 0.0), "rank")
    assert views == [None, None] and mode == "none"
    views, mode = hint_views(cands(2.0, 1.0), "none")
    assert views == [None, None] and mode == "none"
    nonfinite = stage1_hints(cands(1.0, -math.inf, math.nan, 0.0))
    assert nonfinite is not None
    assert [h.band for h in nonfinite] == ["high", "low", "low", "low"]
    assert [h.rank for h in nonfinite][0] == 1


def pointwise(catalog, hint: str) -> PointwiseLLMRanker:
    return PointwiseLLMRanker(backend=CountingBackend(), catalog=catalog, cf_hint=hint)


def test_pointwise_prompt_shows_the_hint_only_when_asked(tiny_catalog):
    c = cands(0.9, 0.1, 0.5)
    plain, _ = pointwise(tiny_catalog, "none").build_prompts(HIST, c)
    assert not any("another recommender" in p for p in plain)
    ranked, _ = pointwise(tiny_catalog, "rank").build_prompts(HIST, c)
    assert "ranks this item 1 of 3 candidates" in ranked[0]
    assert "ranks this item 3 of 3 candidates" in ranked[1]
    assert "ranks this item 2 of 3 candidates" in ranked[2]
    banded, _ = pointwise(tiny_catalog, "band").build_prompts(HIST, c)
    assert [p.count("a high match") for p in banded] == [1, 0, 0]
    assert "a low match" in banded[1] and "a medium match" in banded[2]
    # the hint sits after the item text and before the instruction: the instruction stays last
    assert ranked[0].rstrip().endswith("Answer Yes or No.")
    # without scores there is nothing to show: the prompt is the one without hints
    same, _ = pointwise(tiny_catalog, "rank").build_prompts(HIST, cands(0.0, 0.0, 0.0))
    assert same == pointwise(tiny_catalog, "none").build_prompts(HIST, cands(0.0, 0.0, 0.0))[0]
    assert pointwise(tiny_catalog, "rank").score_with_hidden(HIST, c)[2]["cf_hint"] == "rank"


def test_listwise_prompt_shows_each_candidates_hint_in_every_order(tiny_catalog):
    c = cands(0.2, 0.9, 0.5)
    ranker = ListwiseLLMRanker(backend=CountingBackend(), catalog=tiny_catalog, cf_hint="rank")
    built = ranker.build_prompts(HIST, c, orders=[[0, 1, 2], [2, 0, 1]])
    first, second = built.prompts
    assert '"Running Socks (3 pairs)"' in first
    line = next(x for x in first.splitlines() if x.startswith("[1]"))
    assert line.endswith("another recommender ranks it 3 of 3")
    line = next(x for x in second.splitlines() if x.startswith("[3]"))  # i2 shown third
    assert line.endswith("another recommender ranks it 1 of 3")
    assert "Use it as a hint." in first
    plain = ListwiseLLMRanker(backend=CountingBackend(), catalog=tiny_catalog).build_prompts(HIST, c).prompts[0]
    assert "another recommender" not in plain.lower()
    band = ListwiseLLMRanker(backend=CountingBackend(), catalog=tiny_catalog, cf_hint="band")
    assert "rates it a high match" in band.build_prompts(HIST, c).prompts[0]


def test_a_user_template_without_the_variable_is_refused(tiny_catalog, tmp_path):
    (tmp_path / "score_pointwise.j2").write_text(
        "{# requires: history, candidate, context #}\n{{ history }}{{ candidate.title }}{{ context }}")
    from reranker.llm.base import LLMConfig

    with pytest.raises(ConfigError, match="cf_hint"):
        PointwiseLLMRanker(LLMConfig(prompt_dir=tmp_path), backend=CountingBackend(), catalog=tiny_catalog,
                           cf_hint="rank")
    with pytest.raises(ConfigError, match="none, rank or band"):
        pointwise(tiny_catalog, "stars")


@pytest.mark.parametrize("cls", [PointwiseConfig, ListwiseConfig])
def test_options_round_trip_in_config(cls, tmp_path):
    cfg = cls(model="smollm2-135m", cf_hint="band", cf_hint_scorer={"type": "itemcf", "k": 20, "feedback": "implicit"})
    path = tmp_path / "ranker.yaml"
    cfg.to_yaml(path)
    back = cls.from_yaml(path)
    assert back == cfg and back.cf_hint == "band" and back.cf_hint_scorer.type == "itemcf"
    assert "cf_hint_scorer" not in back.ranker_options() and back.ranker_options()["cf_hint"] == "band"
    with pytest.raises(ConfigError, match="cf_hint"):
        cls.from_dict({"cf_hint": "stars"})


def test_listwise_decoding_round_trips_in_config(tmp_path):
    cfg = ListwiseConfig(decoding="constrained")
    cfg.to_yaml(tmp_path / "l.yaml")
    assert ListwiseConfig.from_yaml(tmp_path / "l.yaml").decoding == "constrained"


def test_rescorer_hands_the_llm_cf_scores_through_the_call(tiny_catalog):
    """Regime B: the candidates come without scores; `cf_hint_scorer` scores them with a CF
    model fitted on the data, and the LLM ranker reads the hint from those candidates."""
    from reranker.data.synthetic import generate_world

    data = generate_world(seed=2, n_users=40, n_items=60).dataset
    fake = CountingBackend()
    ctx = BuildContext(fit_data=data, catalog=data, backend=fake)
    params = {"type": "llm-pointwise", "cf_hint": "rank", "cf_hint_scorer": {"type": "itemcf", "k": 20}}
    ranker = RANKERS.build(params, ctx.named("llm-hint"))
    assert isinstance(ranker, Stage1Rescorer) and ranker.name == "llm-hint"
    user = str(data.interactions.user_id.iloc[0])
    seen = set(data.interactions.loc[data.interactions.user_id == user, "item_id"].astype(str))
    hist = History(user, sorted(seen)[:5])
    unseen = [i for i in map(str, data.item_ids) if i not in seen][:8]
    given = [Candidate(i, 0.0, "sampled") for i in unseen]
    moved = ranker.rescored(hist, given)
    assert [c.item_id for c in moved] == unseen and len({c.score for c in moved}) > 1
    assert all(c.score == 0.0 for c in given)  # the caller's candidates are not touched
    prompts, _ = ranker.ranker.build_prompts(hist, moved, data)
    assert all("ranks this item" in p for p in prompts)
    ranking = ranker.rank(hist, given)
    assert sorted(ranking.item_ids) == sorted(unseen) and ranking.diagnostics["cf_hint"] == "rank"
    assert fake.scored > 0
