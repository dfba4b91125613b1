"""Explanations: grounding check, one regeneration, visible marking; real-model smoke test."""

from __future__ import annotations

import pytest
from fake_backends import ScriptedBackend

from reranker.explain import UNGROUNDED_MARK, Explainer, ExplainerConfig, TitleIndex, title_variants
from reranker.types import History, Item, Ranking

CATALOG = {
    "h1": Item("h1", "Toy Story (1995)", category="Animation"),
    "h2": Item("h2", "Birdcage, The (1996)", category="Comedy"),
    "c1": Item("c1", "Aladdin (1992)", category="Animation"),
    "c2": Item("c2", "Heat (1995)", category="Action"),
    "x1": Item("x1", "Pulp Fiction (1994)", category="Crime"),
}


def test_title_variants():
    assert title_variants("Birdcage, The (1996)") == {"birdcage the 1996", "birdcage the", "the birdcage", "birdcage"}
    assert "toy story" in title_variants("Toy Story (1995)")


def test_grounding_check_flags_products_outside_history_and_candidate():
    idx = TitleIndex(CATALOG.values())
    hist = [CATALOG["h1"], CATALOG["h2"]]
    ok = idx.check("Because you enjoyed Toy Story and The Birdcage, try Aladdin.", hist, CATALOG["c1"])
    assert ok.grounded and ok.ungrounded == []
    assert "toy story" in ok.cited_history
    bad = idx.check("Fans of Pulp Fiction love Aladdin.", hist, CATALOG["c1"])
    assert not bad.grounded and bad.ungrounded == ["pulp fiction"]
    # short titles (< min chars) are not matched as products: "heat" is an ordinary word
    assert idx.check("It brings the heat like Toy Story.", hist, CATALOG["c1"]).grounded


def _ranking():
    return Ranking.from_order(["c1", "c2"], {"ranker": "x"})


def test_ungrounded_regenerated_once_then_marked():
    be = ScriptedBackend([
        "Like Pulp Fiction, Aladdin is fun.",      # c1: ungrounded
        "Toy Story fans like Heat.",              # c2: grounded
        "Pulp Fiction again.",                    # c1 retry: still ungrounded
    ])
    ex = Explainer(backend=be, catalog=CATALOG, explain_config=ExplainerConfig(top_k=2, anchor=False))
    out = ex.explain(History("u", ["h1", "h2"]), _ranking())
    e = {r.item_id: r.explanation for r in out}
    assert e["c1"].startswith(UNGROUNDED_MARK) and "Pulp Fiction again." in e["c1"]
    assert e["c2"] == "Toy Story fans like Heat."
    d = out.diagnostics["explanations"]
    assert d["c1"]["grounded"] is False and d["c1"]["regenerated"] is True
    assert d["c1"]["ungrounded_mentions"] == ["pulp fiction"]
    assert d["c2"] == {"grounded": True, "regenerated": False, "ungrounded_mentions": [], "cited_history": ["toy story", "toy story 1995"]}
    assert len(be.prompts) == 3 and "Do not name any other product" in be.prompts[-1]
    assert out.diagnostics["explain"]["regenerated"] == 1 and out.diagnostics["ranker"] == "x"


def test_regeneration_that_grounds_is_kept_unmarked():
    be = ScriptedBackend(["Pulp Fiction!", "Because of Toy Story."])
    ex = Explainer(backend=be, catalog=CATALOG, explain_config=ExplainerConfig(top_k=1, anchor=False))
    out = ex.explain(History("u", ["h1"]), _ranking())
    assert out[0].explanation == "Because of Toy Story."
    assert out[1].explanation is None  # only top_k explained
    assert out.diagnostics["explanations"]["c1"]["regenerated"] is True


def test_anchor_cites_a_history_item_in_the_answer_prefix():
    be = ScriptedBackend(["you will enjoy it."])
    ex = Explainer(backend=be, catalog=CATALOG, explain_config=ExplainerConfig(top_k=1))
    hist = History("u", ["h1", "h2"])
    out = ex.explain(hist, _ranking())
    anchor = ex.anchor_text([CATALOG["h1"], CATALOG["h2"]], CATALOG["c1"])
    assert anchor.startswith("Because you chose \"") and be.prompts[0].endswith(anchor)
    assert out[0].explanation == anchor + " you will enjoy it."
    # the same-category history item (Toy Story, Animation) is cited, then the candidate
    assert anchor == 'Because you chose "Toy Story (1995)", you may like "Aladdin (1992)" because it'
    assert out.diagnostics["explanations"]["c1"]["cited_history"]  # the check sees the citation
    assert ex.anchor_text([], CATALOG["c1"]) == ""


def test_tidy_keeps_the_first_line_and_two_sentences():
    ex = Explainer(backend=ScriptedBackend([]), catalog=CATALOG)
    looped = 'Because you chose "Heat", it fits.  You like films. Really.\nHeat (1995)\nHeat (1995)'
    assert ex.tidy(looped) == 'Because you chose "Heat", it fits. You like films.'
    assert ex.tidy("\n\n  one line only  ") == "one line only"


@pytest.mark.filterwarnings("ignore")
def test_real_model_explanations(smollm):
    ex = Explainer(backend=smollm, catalog=CATALOG, explain_config=ExplainerConfig(top_k=2, max_new_tokens=24))
    out = ex.explain(History("u", ["h1", "h2"], context={"time": "evening"}), _ranking())
    assert all(r.explanation for r in out)
    assert set(out.diagnostics["explanations"]) == {"c1", "c2"}
    for r in out:
        g = out.diagnostics["explanations"][r.item_id]["grounded"]
        assert g == (not r.explanation.startswith(UNGROUNDED_MARK))


def test_the_request_catalog_travels_with_the_call():
    other = {k: Item(k, f"Other {v.title}", category=v.category) for k, v in CATALOG.items()}
    be = ScriptedBackend(["Because of Other Toy Story (1995)."] * 2)
    ex = Explainer(backend=be, catalog=CATALOG, explain_config=ExplainerConfig(top_k=1, anchor=False))
    before = vars(ex).copy()
    out = ex.explain(History("u", ["h1"]), _ranking(), catalog=other)
    assert "Other Toy Story" in be.prompts[0] and "Other Aladdin" in be.prompts[0]
    assert out.diagnostics["explanations"]["c1"]["grounded"]  # the titles of the request's catalog
    assert vars(ex) == before  # nothing about the request stuck to the explainer
    ex.explain(History("u", ["h1"]), _ranking())
    assert "Other" not in be.prompts[1] and "Toy Story (1995)" in be.prompts[1]


def test_build_prompts_is_what_explain_sends():
    be = ScriptedBackend(["Toy Story fans like it.", "Toy Story too."])
    ex = Explainer(backend=be, catalog=CATALOG, explain_config=ExplainerConfig(top_k=2))
    hist = History("u", ["h1", "h2"], context={"time": "evening"})
    want = ex.build_prompts(hist, ["c1", "c2"])
    ex.explain(hist, _ranking())
    assert be.prompts == want and "time: evening" in want[0]
    strict = ex.build_prompts(hist, ["c1"], strict=True)
    assert "Do not name any other product" in strict[0] and strict[0] != want[0]
