"""Shared test set-up: real models load once per session (see the fixture modules)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["bert_fixtures", "llm_fixtures"]
