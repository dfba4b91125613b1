"""Upper bounds with clear errors (issue 19, item 5): request sizes, list sizes, resamples,
windows and training sizes are bounded and named; a YAML config may not use anchors, aliases
(the "billion laughs" bomb) or duplicate keys."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reranker.api import Reranker, RerankerConfig, normalize_request
from reranker.cli import main
from reranker.errors import ConfigError, DataError


# ------------------------------------------------------------------------------ one request
class _Huge(Sequence[Any]):
    """A list that claims a billion items and must never be read."""

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, i: Any) -> Any:
        raise AssertionError("read an item of an oversized request")


def test_too_many_candidates_fails_before_reading_them():
    with pytest.raises(DataError, match=r"candidates: 1000000000 items; at most 1000 per request"):
        normalize_request([], _Huge())
    with pytest.raises(DataError, match=r"candidates: 1001 items; at most 1000"):
        normalize_request([], [str(i) for i in range(1001)])
    normalize_request([], [str(i) for i in range(1000)])  # the bound itself is fine


def test_too_much_history_fails_before_reading_it():
    with pytest.raises(DataError, match=r"history: 1000000000 items; at most 1000 per request"):
        normalize_request(_Huge(), ["a"])


def test_request_bounds_are_configurable():
    rr = Reranker(max_candidates=3, max_history_items=1)
    assert rr.config.max_candidates == 3
    with pytest.raises(DataError, match=r"candidates: 4 items; at most 3 per request \(max_candidates\)"):
        rr.rerank([], ["a", "b", "c", "d"])
    with pytest.raises(DataError, match=r"history: 2 items; at most 1"):
        rr.rerank(["x", "y"], ["a"])
    with pytest.raises(ConfigError, match=r"max_candidates: must be <= 100000"):
        RerankerConfig.from_dict({"max_candidates": 10**9})


# ------------------------------------------------------------------------------ config bounds
def _exp(**protocol: Any) -> dict[str, Any]:
    return {"data": {"synthetic": {}}, "rankers": [{"name": "pop", "type": "pop"}], "protocol": protocol}


@pytest.mark.parametrize(("protocol", "message"), [
    ({"n_candidates": 1001}, "protocol.n_candidates: must be <= 1000"),
    ({"n_negatives": 1000}, "protocol.n_negatives: must be <= 999"),
    ({"n_boot": 10**9}, "protocol.n_boot: must be <= 100000"),
    ({"position_bias": {"positions": [0, 10**9]}}, "protocol.position_bias.positions: at most 100 positions, each < 1000"),
    ({"position_bias": {"positions": list(range(101))}}, "protocol.position_bias.positions: at most 100"),
    ({"injection": {"n_candidates": 5000}}, "protocol.injection.n_candidates: must be <= 1000"),
])
def test_experiment_bounds(protocol, message):
    from reranker.evaluation.experiment import ExperimentConfig

    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_dict(_exp(**protocol))
    assert message in str(e.value)


def test_generated_world_size_is_bounded():
    from reranker.evaluation.experiment import ExperimentConfig

    with pytest.raises(ConfigError, match=r"data\.synthetic\.n_users: must be <= 1000000"):
        ExperimentConfig.from_dict({**_exp(), "data": {"synthetic": {"n_users": 10**9}}})
    r = CliRunner().invoke(main, ["data", "generate", "/nonexistent/never", "--users", str(10**9)])
    assert r.exit_code == 2 and "n_users: must be <= 1000000" in r.output, r.output


@pytest.mark.parametrize(("ranker", "message"), [
    ({"type": "llm-listwise", "window": 1000}, "window: must be <= 50"),
    ({"type": "llm-listwise", "permutations": 1000}, "permutations: must be <= 20"),
    ({"type": "llm-verbalizer", "permutations": 21}, "permutations: must be <= 20"),
    ({"type": "llm-pointwise", "max_history": 10**6}, "max_history: must be <= 1000"),
])
def test_llm_ranker_bounds(ranker, message):
    with pytest.raises(ConfigError) as e:
        RerankerConfig.from_dict({"ranker": ranker})
    assert f"ranker.{message}" in str(e.value)


@pytest.mark.parametrize(("ranking", "message"), [
    ({"n_candidates": 10**6}, "ranking.n_candidates: must be <= 1000"),
    ({"learned": {"n_negatives": 10**6}}, "ranking.learned.n_negatives: must be <= 999"),
])
def test_pipeline_bounds(ranking, message):
    from reranker.pipeline import PipelineConfig

    with pytest.raises(ConfigError) as e:
        PipelineConfig.from_dict({"ranking": ranking})
    assert message in str(e.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"max_seq_len": 10**7}, "max_seq_len: must be <= 32768"),
    ({"batch_size": 10**6}, "batch_size: must be <= 1024"),
    ({"grad_accumulation": 10**6}, "grad_accumulation: must be <= 1024"),
    ({"validation": {"n_negatives": 10**6}}, "validation.n_negatives: must be <= 999"),
])
def test_finetune_bounds(change, message):
    from reranker.training.config import FinetuneConfig

    with pytest.raises(ConfigError) as e:
        FinetuneConfig.from_dict({"max_steps": 1, **change})
    assert message in str(e.value)


def test_users_limit_of_a_billion_allocates_nothing(tmp_path):
    cfg = tmp_path / "e.yaml"
    cfg.write_text(json.dumps({
        "name": "many", "data": {"synthetic": {"seed": 1, "n_users": 30, "n_items": 80}},
        "protocol": {"regime": "b", "n_boot": 20, "users": 10**9, "position_bias": {"enabled": False},
                     "compare_to": None},
        "rankers": [{"name": "pop", "type": "pop"}]}))
    r = CliRunner().invoke(main, ["eval", "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-cache",
                                  "--no-progress", "--users", str(10**9)])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["status"] == "complete" and res["runs"][0]["rankers"]["pop"]["n_users"] <= 30


# ------------------------------------------------------------------------------ YAML
# every line valid for its field (bootstrap_params takes any values): only the expansion hurts
_LOL = ", ".join(['"lol"'] * 9)
BOMB = "\n".join(
    ["name: bomb", "data: {synthetic: {}}", "rankers: [{name: pop, type: pop}]", "protocol:",
     "  position_bias:", "    bootstrap_params:", f"      a: {{v: &a [{_LOL}]}}"]
    + [f"      {c}: {{v: &{c} [{', '.join(['*' + p] * 9)}]}}" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
) + "\n"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_billion_laughs_fails_fast(tmp_path):
    from reranker.evaluation.experiment import ExperimentConfig

    p = _write(tmp_path, BOMB)  # 9**9 strings once expanded (results.json's config header)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"c\.yaml: line 7: anchor &a is not allowed"):
        ExperimentConfig.from_yaml(p)
    assert time.perf_counter() - t0 < 2
    r = CliRunner().invoke(main, ["eval", "--config", str(p)])
    assert r.exit_code == 2 and "line 7: anchor &a is not allowed" in r.output


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nname: y\n", r"line 2: duplicate key 'name' \(first given at line 1\)"),
    ("protocol:\n  n_boot: 50\n  seeds: [0]\n  n_boot: 60\n", r"line 4: duplicate key 'n_boot'"),
    ("base: &b {n_boot: 50}\nprotocol:\n  <<: *b\n", r"line 1: anchor &b is not allowed"),
    ("protocol: {seeds: [0]}\nrankers: [*x]\n", r"line 2: (alias|found undefined alias)"),
])
def test_yaml_aliases_and_duplicate_keys_are_refused(tmp_path, text, message):
    from reranker.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_yaml(_write(tmp_path, text))


def test_written_configs_read_back(tmp_path):
    from reranker.pipeline import PipelineConfig

    cfg = PipelineConfig()
    text = cfg.to_yaml(tmp_path / "p.yaml")
    assert "&" not in text and "*" not in text
    assert PipelineConfig.from_yaml(tmp_path / "p.yaml") == cfg


def test_committed_configs_still_load():
    from reranker.yaml_io import load_yaml

    root = Path(__file__).resolve().parents[1] / "configs"
    for p in sorted(root.glob("*.yaml")):
        assert isinstance(load_yaml(p), dict), p
