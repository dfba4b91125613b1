"""Prompt templates: discovery, variable checks at load, StrictUndefined rendering, overrides."""

from __future__ import annotations

import pytest

from reranker.errors import PromptError
from reranker.llm.prompts import TEMPLATE_NAMES, PromptLibrary, PromptTemplate, builtin_prompt_dirs

ITEM = {"id": "x", "label": "1", "title": "Heat", "category": "Action", "attrs": "year: 1995", "details": "Action, 1995", "text": "", "rating": None}


def test_builtin_templates_all_load_and_declare_variables():
    assert builtin_prompt_dirs(), "no built-in prompt folder found"
    lib = PromptLibrary()
    lib.check()
    assert lib.get("rank_listwise").variables == {"history", "candidates", "context", "strict", "n", "cf_hint"}
    assert lib.get("score_pointwise").variables == {"history", "candidate", "context", "cf_hint"}
    assert set(TEMPLATE_NAMES) == {"rank_listwise", "score_pointwise", "rank_verbalizer", "explain"}


def test_render_pointwise_includes_context_and_candidate_last():
    lib = PromptLibrary()
    text = lib.render(
        "score_pointwise", history=[ITEM], candidate=dict(ITEM, title="Casino"), context={"device": "mobile"},
        cf_hint="none",
    )
    assert "device: mobile" in text
    assert '"Heat" (Action, 1995)' in text  # compact details: category and attribute values
    # prompt version 2: the candidate (its title in quotes), then the instruction, last
    assert text.rstrip().splitlines()[-2].startswith('Item: "Casino"')
    assert text.rstrip().splitlines()[-1] == "Answer Yes or No."


def test_listwise_uses_numbers_not_titles_as_labels():
    lib = PromptLibrary()
    cands = [dict(ITEM, label=str(i + 1), title=f"T{i}") for i in range(3)]
    text = lib.render("rank_listwise", history=[], candidates=cands, context={}, strict=True, n=3, cf_hint="none")
    assert '[1] "T0"' in text and '[3] "T2"' in text
    assert "ONLY the numbers 1 to 3" in text


def test_missing_variable_at_render_names_template_and_variable():
    lib = PromptLibrary()
    with pytest.raises(PromptError, match=r"'score_pointwise'.*'context'"):
        lib.render("score_pointwise", history=[], candidate=ITEM, cf_hint="none")


def test_attribute_typo_at_render_is_prompt_error():
    tpl = PromptTemplate("t", "{# requires: item #}{{ item.titel }}")
    with pytest.raises(PromptError, match="'t'"):
        tpl.render(item={"title": "x"})


def test_undeclared_variable_fails_at_load():
    with pytest.raises(PromptError, match=r"'bad'.*undeclared variable 'candidtes'"):
        PromptTemplate("bad", "{# requires: candidates #}{{ candidates }}{{ candidtes }}")


def test_declared_but_unused_variable_fails_at_load():
    with pytest.raises(PromptError, match=r"declares variable 'history'"):
        PromptTemplate("t", "{# requires: history, candidates #}{{ candidates }}")


def test_missing_header_fails_at_load():
    with pytest.raises(PromptError, match="requires"):
        PromptTemplate("t", "{{ candidates }}")


def test_syntax_error_names_template():
    with pytest.raises(PromptError, match=r"'t'.*syntax error"):
        PromptTemplate("t", "{# requires: a #}{% for x in a %}")


def test_user_folder_overrides_by_name_and_falls_back(tmp_path):
    (tmp_path / "explain.j2").write_text(
        "{# requires: history, candidate, context, strict #}MINE {{ candidate.title }}"
        "{{ history|length }}{{ context|length }}{{ strict }}"
    )
    lib = PromptLibrary(tmp_path)
    out = lib.render("explain", history=[], candidate=ITEM, context={}, strict=False)
    assert out.startswith("MINE Heat")
    assert lib.path_of("rank_listwise").parent != tmp_path  # built-in fallback


def test_unknown_template_and_missing_folder(tmp_path):
    with pytest.raises(PromptError, match="not found"):
        PromptLibrary().get("no_such_template")
    with pytest.raises(PromptError, match="does not exist"):
        PromptLibrary(tmp_path / "nope")


def test_broken_user_template_fails_at_load(tmp_path):
    (tmp_path / "score_pointwise.j2").write_text("{# requires: history #}{{ histroy }}")
    lib = PromptLibrary(tmp_path)
    with pytest.raises(PromptError, match="'score_pointwise'.*'histroy'"):
        lib.check()


# ---------------------------------------------------------------- partials
def test_builtin_templates_share_the_context_and_history_partials():
    lib = PromptLibrary()
    for name in TEMPLATE_NAMES:
        assert '{% include "_context.j2" %}' in lib.path_of(name).read_text()
    for name in ("rank_listwise", "rank_verbalizer", "score_pointwise"):
        assert '{% include "_history.j2" %}' in lib.path_of(name).read_text()
    text = lib.render("rank_verbalizer", history=[dict(ITEM, rating="4")], candidates=[ITEM],
                      context={"device": "tv"})
    assert 'Context:\n- device: tv\n\nThe user chose these items, oldest first:\n- "Heat" (Action, 1995), rated 4\n\n' in text
    empty = lib.render("rank_verbalizer", history=[], candidates=[ITEM], context={})
    assert "Context" not in empty and "- (nothing yet)\n" in empty


def test_partials_are_not_templates_on_their_own():
    with pytest.raises(PromptError, match="partial"):
        PromptLibrary().get("_context")


def _partial_lib(tmp_path, partial: str, template: str) -> PromptLibrary:
    (tmp_path / "_mine.j2").write_text(partial)
    (tmp_path / "mine.j2").write_text(template)
    return PromptLibrary(tmp_path)


def test_variable_used_only_in_a_partial_counts_as_used(tmp_path):
    lib = _partial_lib(tmp_path, "{{ history|length }} items", '{# requires: history, x #}{{ x }}: {% include "_mine.j2" %}')
    assert lib.get("mine").variables == {"history", "x"}
    assert lib.render("mine", history=[1, 2], x="n") == "n: 2 items"


def test_typo_in_a_partial_fails_at_load(tmp_path):
    lib = _partial_lib(tmp_path, "{{ histroy }}", '{# requires: history #}{{ history }}{% include "_mine.j2" %}')
    with pytest.raises(PromptError, match=r"'mine'.*undeclared variable 'histroy' in partial '_mine.j2'"):
        lib.get("mine")


def test_partials_nest_and_missing_or_dynamic_includes_fail_at_load(tmp_path):
    (tmp_path / "_inner.j2").write_text("{{ deep }}")
    lib = _partial_lib(tmp_path, '{% include "_inner.j2" %}', '{# requires: deep #}{% include "_mine.j2" %}')
    assert lib.render("mine", deep="ok") == "ok"
    (tmp_path / "gone.j2").write_text('{# requires: a #}{{ a }}{% include "_nope.j2" %}')
    with pytest.raises(PromptError, match="'_nope.j2' not found"):
        lib.get("gone")
    (tmp_path / "dyn.j2").write_text("{# requires: a #}{% include a %}")
    with pytest.raises(PromptError, match="constant name"):
        lib.get("dyn")
    (tmp_path / "_bad.j2").write_text("{% if %}")
    (tmp_path / "bad.j2").write_text('{# requires: a #}{{ a }}{% include "_bad.j2" %}')
    with pytest.raises(PromptError, match="'_bad.j2'.*syntax error"):
        lib.get("bad")


def test_user_partial_overrides_the_builtin_one(tmp_path):
    (tmp_path / "_context.j2").write_text("CTX {{ context|length }}\n")
    text = PromptLibrary(tmp_path).render("score_pointwise", history=[], candidate=ITEM, context={"a": 1},
                                          cf_hint="none")
    assert "CTX 1" in text and "Context:" not in text


def test_templates_render_in_a_sandbox():
    tpl = PromptTemplate("t", "{# requires: items #}{{ items.append(1) }}")
    with pytest.raises(PromptError, match="'t'"):
        tpl.render(items=[])
    with pytest.raises(PromptError, match="'t'.*'__mro__'"):  # refused at load since issue 19
        PromptTemplate("t", "{# requires: x #}{{ x.__class__.__mro__ }}")


# ---------------------------------------------------------------- sandbox (issue 19)
ESCAPES = [
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ candidate|attr('__class__') }}",
    "{{ candidate['__class__'] }}",
    "{% for c in candidate.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set g = joiner.mro %}{{ g }}",
    "{{ candidate.title.__class__ is defined }}",  # would render 'False' quietly
]
#: escapes only the render can see: a computed attribute name, a mutating method, a huge range
RENDER_ESCAPES = [
    "{{ candidate|attr('__cla' ~ 'ss__') }}",
    "{{ history.append(1) }}",
    "{{ '{0.__class__}'.format(candidate) }}",
    "{{ range(10**9)|list|length }}",
]
_HDR = "{# requires: history, candidate, context #}{{ history|length }}{{ context|length }}{{ candidate|length }}"


@pytest.mark.parametrize("escape", ESCAPES)
def test_sandbox_escapes_in_a_user_template_fail_at_load(tmp_path, escape):
    (tmp_path / "score_pointwise.j2").write_text(_HDR + escape)
    with pytest.raises(PromptError, match=r"prompt template 'score_pointwise'.*not allowed"):
        PromptLibrary(tmp_path).get("score_pointwise")


def test_sandbox_escape_in_a_partial_names_the_partial(tmp_path):
    (tmp_path / "_evil.j2").write_text("{{ cycler.__init__.__globals__ }}")
    (tmp_path / "score_pointwise.j2").write_text(_HDR + '{% include "_evil.j2" %}')
    with pytest.raises(PromptError, match=r"partial '_evil.j2'.*included by 'score_pointwise'.*'__(init|globals)__'"):
        PromptLibrary(tmp_path).get("score_pointwise")


@pytest.mark.parametrize("escape", RENDER_ESCAPES)
def test_sandbox_escapes_at_render_are_prompt_errors_naming_the_template(tmp_path, escape):
    (tmp_path / "score_pointwise.j2").write_text(_HDR + escape)
    tpl = PromptLibrary(tmp_path).get("score_pointwise")  # nothing to see statically
    with pytest.raises(PromptError, match=r"prompt template 'score_pointwise'"):
        tpl.render(history=[], candidate=dict(ITEM), context={})


def test_include_outside_the_prompt_folders_is_refused(tmp_path):
    (tmp_path / "score_pointwise.j2").write_text(_HDR + '{% include "../../etc/passwd" %}')
    with pytest.raises(PromptError, match="not found"):
        PromptLibrary(tmp_path).get("score_pointwise")


def _saved_llm_pipeline(tmp_path, prompt_dir):
    from fake_backends import CountingBackend

    from reranker.data.synthetic import generate_world
    from reranker.pipeline import Pipeline, PipelineConfig

    world = generate_world(seed=3, n_users=40, n_items=30)
    cfg = PipelineConfig.from_dict({
        "retriever": {"type": "popular"},
        "ranking": {"bert": {"enabled": False},
                    "llm": {"type": "llm-pointwise", "model": "smollm2-135m", "prompt_dir": str(prompt_dir)}}})
    (prompt_dir / "score_pointwise.j2").write_text(_HDR + "{{ candidate.title }}")
    Pipeline(cfg, llm_backend=CountingBackend()).fit(world.dataset).save(tmp_path / "p")
    return world, Pipeline, CountingBackend


def test_pipeline_load_refuses_a_prompt_dir_with_a_sandbox_escape(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    world, Pipeline, backend = _saved_llm_pipeline(tmp_path, prompts)
    (prompts / "score_pointwise.j2").write_text(_HDR + "{{ cycler.__init__.__globals__.os.popen('id').read() }}")

    import reranker.llm.prompts as lp

    lp._library.cache_clear()  # the library of this folder was cached by the fit above
    with pytest.raises(PromptError, match=r"'score_pointwise'.*'__(init|globals)__'"):
        Pipeline.load(tmp_path / "p", llm_backend=backend())
    # an escape only the render sees fails on the first request, as a PromptError
    (prompts / "score_pointwise.j2").write_text(_HDR + "{{ candidate|attr('__cla' ~ 'ss__') }}")
    lp._library.cache_clear()
    pipe = Pipeline.load(tmp_path / "p", llm_backend=backend())
    with pytest.raises(PromptError, match=r"'score_pointwise'.*sandbox"):
        pipe.recommend(str(world.dataset.user_ids[0]), k=3)
