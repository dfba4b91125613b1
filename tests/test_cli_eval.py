"""`reranker eval` end to end on a tiny generated world, and its config errors (exit code 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reranker.cli import main
from reranker.evaluation.experiment import load_experiment

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, cfg: dict) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return p


def _tiny(regime: str = "a") -> dict:
    cfg = {
        "name": f"tiny-{regime}",
        "data": {"synthetic": {"seed": 2, "n_users": 40, "n_items": 60}},
        "protocol": {"regime": regime, "n_boot": 50, "position_bias": {"users": 5, "positions": [0, 19]}},
        "rankers": [
            {"name": "pop", "type": "pop"},
            {"name": "itemcf", "type": "itemcf", "params": {"k": 10, "feedback": "implicit"}},
            {"name": "usercf", "type": "usercf", "params": {"k": 10, "feedback": "implicit"}},
            {"name": "fusion", "type": "fusion", "params": {"weights": {"itemcf": 1.0, "usercf": 0.0}}},
        ],
    }
    if regime == "a":
        cfg["retriever"] = {"type": "itemcf", "params": {"k": 10, "feedback": "implicit"}}
    return cfg


@pytest.mark.parametrize("regime", ["a", "b"])
def test_eval_end_to_end_with_cf_rankers(tmp_path, regime):
    tiny = _tiny(regime)
    tiny["protocol"]["pairs"] = [["usercf", "itemcf"]]
    cfg = _write(tmp_path, tiny)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["eval", "--config", str(cfg), "--out", str(out), "--no-progress",
                                  "--no-cache", "--users", "30"])
    assert r.exit_code == 0, r.output
    assert "complete" in r.output
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "complete" and res["data"]["evaluated_users"] == 30
    run = res["runs"][0]
    assert set(run["rankers"]) == {"pop", "itemcf", "usercf", "fusion"}
    # fusion with a zero weight on usercf ranks exactly like itemcf
    assert run["rankers"]["fusion"]["per_user"]["ndcg@10"] == run["rankers"]["itemcf"]["per_user"]["ndcg@10"]
    assert run["paired_vs"] == "usercf" and "paired" in run["rankers"]["itemcf"]
    (pair,) = run["pairs"]  # usercf - itemcf: the negative of itemcf's difference vs usercf
    assert (pair["a"], pair["b"]) == ("usercf", "itemcf")
    assert pair["diff"]["ndcg@10"]["mean"] == pytest.approx(-run["rankers"]["itemcf"]["paired"]["ndcg@10"]["mean"])
    agree = pair["agreement"]  # two neighbourhood models: positively correlated scores
    assert 0 < agree["n"] <= 30 and 0.0 < agree["spearman_median"] <= 1.0
    assert set(run["position_bias"]["rankers"]) == {"pop", "itemcf", "usercf", "fusion"}
    md = (out / "report.md").read_text()
    assert "| itemcf | itemcf | 30 |" in md
    assert "| usercf - itemcf | 30 |" in md and f"{agree['spearman_median']:.3f} (" in md
    for png in ("ndcg10.png", "pr_curve.png", "heatmap.png", "position_bias.png"):
        assert (out / png).is_file()
    if regime == "a":
        assert "Stage-1 ceiling" in md
        # ItemCF reranking ItemCF's own top-n keeps the order: the same metrics as the ceiling list
        assert run["rankers"]["itemcf"]["summary"]["recall@20"] == run["stage1"]["recall@n"]["recall@20"]


def test_eval_seed_override_and_demo_config_loads(tmp_path):
    loaded = load_experiment(REPO / "configs" / "demo.yaml")
    assert loaded.config.data.synthetic is not None
    experiments = sorted(p for p in (REPO / "configs").glob("ml100k-*.yaml") if "finetune-ml100k" not in p.name)
    assert len(experiments) >= 20
    for path in experiments:  # every committed ml-100k evaluation reads the cache copy, by name
        cfg = load_experiment(path)
        assert cfg.config.data.name == "ml-100k" and cfg.config.data.path is None, path.name
    cfg = _write(tmp_path, _tiny("b"))
    r = CliRunner().invoke(main, ["eval", "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-progress",
                                  "--no-cache", "--users", "10", "--seed", "7"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o" / "results.json").read_text())["protocol"]["seeds"] == [7]


def test_rating_regime_end_to_end(tmp_path):
    cfg = {
        "name": "tiny-rating",
        "data": {"synthetic": {"seed": 3, "n_users": 40, "n_items": 60}},
        "protocol": {"regime": "rating", "n_boot": 50, "rating": {"k_values": [5, 10]}},
        "rankers": [{"name": "usercf", "type": "usercf"}, {"name": "itemcf", "type": "itemcf"}],
    }
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["eval", "--config", str(_write(tmp_path, cfg)), "--out", str(out), "--no-progress"])
    if r.exit_code == 2 and "explicit ratings" in r.output:
        pytest.skip("the generated world has no explicit ratings")
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    curve = res["runs"][0]["models"]["usercf"]["by_k"]
    assert [c["k"] for c in curve] == [5, 10] and all(c["mae"] > 0 for c in curve)
    assert (out / "mae_vs_k.png").is_file()


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"protocol": {"regime": "d"}}, "protocol.regime"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"rankers": [{"name": "x", "type": "nope"}]}, "unknown ranker type 'nope'"),
        ({"rankers": [{"name": "x", "type": "pop"}, {"name": "x", "type": "itemcf"}]}, "unique"),
        ({"protocol": {"n_candidates": 1}}, "protocol.n_candidates: must be >= 2"),
        ({"rankers": [{"name": "f", "type": "fusion", "params": {"weights": {"missing": 1.0}}}]},
         "must name rankers listed before"),
        ({"rankers": [{"name": "i", "type": "itemcf", "params": {"k": 0}}]}, "k"),
        ({"protocol": {"pairs": [["itemcf", "ghost"]]}}, "protocol.pairs: ['ghost'] are not ranker names"),
    ],
)
def test_bad_config_exits_2_with_the_field(tmp_path, patch, message):
    cfg = _tiny("b")
    cfg.update(patch)
    r = CliRunner().invoke(main, ["eval", "--config", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "o"),
                                  "--no-progress", "--no-cache"])
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_missing_config_and_missing_data_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["eval", "--config", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2 and "not found" in r.output
    cfg = {"name": "x", "data": {"path": "no/such/folder", "format": "recbole"},
           "rankers": [{"name": "pop", "type": "pop"}]}
    r = CliRunner().invoke(main, ["eval", "--config", str(_write(tmp_path, cfg)), "--no-cache", "--no-progress",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no/such/folder" in r.output


def test_no_progress_silences_every_bar_the_library_ones_included(tmp_path):
    """In a fresh process (as a user runs it), `--no-progress` leaves no bar on stderr: not the
    harness's, not the learned head's feature bar (which takes no progress flag), not a
    library's. Without the flag the same run shows them."""
    import subprocess
    import sys

    tiny = _tiny("b")
    tiny["rankers"].append({"name": "head", "type": "learned-fusion",
                            "params": {"itemcf": {"k": 10}, "usercf": None, "head": {"kind": "logistic"}}})
    cfg = _write(tmp_path, tiny)
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}

    def run(*flags: str) -> str:
        r = subprocess.run([sys.executable, "-m", "reranker.cli", "eval", "--config", str(cfg), "--out",
                            str(tmp_path / f"o{len(flags)}"), "--no-cache", *flags],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stderr

    shown = run()
    assert "learned fusion: features" in shown and "it/s" in shown
    quiet = run("--no-progress")
    assert "it/s" not in quiet and "%|" not in quiet, quiet[-2000:]


def test_no_progress_in_process_is_undone_when_the_command_ends(tmp_path, monkeypatch):
    """The CLI run inside another program (here CliRunner) leaves the environment as it was."""
    from reranker.progress import QUIET_ENV, bars_enabled

    for k in QUIET_ENV:
        monkeypatch.delenv(k, raising=False)
    r = CliRunner().invoke(main, ["eval", "--config", str(_write(tmp_path, _tiny("b"))), "--out",
                                  str(tmp_path / "o"), "--no-progress", "--no-cache", "--users", "5"])
    assert r.exit_code == 0, r.output
    assert bars_enabled() and not any(k in os.environ for k in QUIET_ENV)
