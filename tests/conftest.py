"""Shared test set-up: real models load once per session (see the fixture modules)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["bert_fixtures", "llm_fixtures", "server_fixtures"]

#: fixtures that load (or train) a real model: every test using one is `slow` (`make test-fast` skips it)
REAL_MODEL_FIXTURES = frozenset({"smollm", "minilm", "trained"})


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
