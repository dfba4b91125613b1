"""SIGTERM stops the long CLI commands promptly, through their Ctrl-C paths (issue 19): `reranker
eval` leaves a valid partial results.json and exits 143; `demo` exits 143 too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# A `reranker eval` process whose second ranker is slow (a registered toy type: 0.2 s per user)
# and touches a marker file when it starts ranking, so the test knows when to send SIGTERM.
EVAL_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from reranker.cli import main
    from reranker.evaluation.experiment import register_ranker_type
    from reranker.types import Ranking

    marker = Path(sys.argv[1])

    class Slow:
        def rank(self, history, candidates, catalog=None):
            marker.touch()
            time.sleep(0.2)
            return Ranking.from_order([c.item_id for c in candidates])

    register_ranker_type("slow-test", lambda spec, ctx: Slow())
    sys.argv = ["reranker", *sys.argv[2:]]
    main()
""")

DEMO_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import reranker.demo
    from reranker.cli import main

    marker = Path(sys.argv[1])

    def run_demo(*args, **kwargs):
        marker.touch()
        time.sleep(60)

    reranker.demo.run_demo = run_demo
    sys.argv = ["reranker", "demo", "--no-explain"]
    main()
""")


def _start(script: str, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    marker = tmp_path / "started"
    code = tmp_path / "script.py"
    code.write_text(script)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(code), str(marker), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    return proc, marker


def _wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited early ({proc.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("never started ranking")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, float, str]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("did not stop within 30 s of SIGTERM")
    return proc.returncode, time.monotonic() - t0, err


def test_sigterm_stops_eval_with_partial_results(tmp_path):
    config = {
        "name": "sigterm-test",
        "data": {"synthetic": {"seed": 1, "n_users": 60, "n_items": 80}},
        "protocol": {"regime": "b", "n_boot": 20, "position_bias": {"enabled": False}, "compare_to": None},
        "retriever": {"type": "pop"},
        "rankers": [{"name": "pop", "type": "pop"}, {"name": "slow", "type": "slow-test"}],
    }
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(json.dumps(config))
    out = tmp_path / "out"
    proc, marker = _start(EVAL_SCRIPT, tmp_path, "eval", "--config", str(cfg), "--out", str(out),
                          "--no-cache", "--no-progress")
    _wait_for(marker, proc)
    time.sleep(0.5)  # a few users ranked
    code, seconds, err = _stop(proc)
    assert code == 143, err
    assert seconds < 15, seconds  # the slow ranker alone would take 12 s more; the report is written too
    assert "Traceback" not in err, err
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "interrupted"
    slow = res["runs"][0]["rankers"]["slow"]
    assert slow["complete"] is False and slow.get("n_users", 0) < 60  # users flushed every 50
    assert res["runs"][0]["rankers"]["pop"]["complete"] is True


def test_sigterm_stops_demo(tmp_path):
    proc, marker = _start(DEMO_SCRIPT, tmp_path)
    _wait_for(marker, proc)
    code, seconds, err = _stop(proc)
    assert code == 143, err
    assert seconds < 10
    assert "terminated" in err and "Traceback" not in err


def test_handler_is_restored_after_a_command():
    from click.testing import CliRunner

    from reranker.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert CliRunner().invoke(main, ["components", "--json"]).exit_code == 0
    assert signal.getsignal(signal.SIGTERM) is before
