"""`reranker demo`'s library part (`run_demo`) with a scripted LLM: the showcase users' rankings
come from the evaluation, their explanations from one batched call, and the timing line says
where the time went."""

from __future__ import annotations

from pathlib import Path

import yaml
from fake_backends import ScriptedBackend

from reranker.demo import format_demo, run_demo

REPO = Path(__file__).resolve().parent.parent


class _Counting(ScriptedBackend):
    def __init__(self) -> None:
        super().__init__([], default="is a good match.")
        self.sizes: list[int] = []

    def generate(self, prompts, max_new_tokens=None, seed=0, repetition_penalty=None):
        self.sizes.append(len(prompts))
        return super().generate(prompts, max_new_tokens, seed, repetition_penalty)


def test_demo_explains_the_evaluated_users_in_one_batch_and_times_each_part(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "pipeline-demo.yaml").read_text(encoding="utf-8"))
    cfg["ranking"]["bert"] = None  # no encoder to load: the LLM is the scripted one
    cfg["ranking"]["fusion"]["weights"] = {"cf": 0.5, "llm": 0.5}
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    be = _Counting()
    res = run_demo(path, n_users=60, n_items=40, eval_users=6, show_users=2, llm_backend=be)
    assert len(be.sizes) in (1, 2) and be.sizes[0] == 10  # both users' 5 first answers in one call, then retries
    assert len(res.showcases) == 2 and res.n_eval_users == 6
    for s in res.showcases:
        assert len(s.recommendations) == 5
        assert all(r["explanation"] for r in s.recommendations)
    assert {"generate", "fit", "load models", "evaluate", "explain", "total"} <= set(res.timings)
    assert set(res.signal_seconds) == {"cf", "llm"}
    text = format_demo(res)
    assert "evaluate " in text and ("(llm " in text or "(cf " in text)
    assert [row["system"] for row in res.table] == ["Traditional (ItemCF)", "Hybrid (ItemCF + BERT + LLM, fused)"]
    for row in res.table:  # one held-out item per user: the hit count is recall times the users
        assert row["hits@10"] == f"{round(row['Recall@10'] * 6)}/6"
        assert f"| {row['hits@10']} |" in text
