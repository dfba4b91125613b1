"""Item embeddings for content scoring: the text rendered for an item and `ItemEncoder`.

`ItemEncoder` turns catalog items into L2-normalised embeddings (rendered text -> model), with a
per-model in-memory cache keyed by item id + text hash and an optional on-disk ``.npy`` cache keyed
by model + catalog fingerprint under ``$RERANKER_CACHE`` (default ``~/.cache/reranker``).
Other components (BERT scorer, MMR diversity, text-enhanced CF) reuse it through
``encode_items(ids)``; ``encode_items(ids, catalog=...)`` embeds the items of a request's own
catalog (the cache key holds the text hash, so items of different catalogs never mix).
The model itself is loaded by `reranker.ranking.sentence_model`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from ..types import Item
from .base import Catalog, ItemIndex, ItemLookup
from .sentence_model import (
    _EMBEDDINGS,
    _LOCK,
    MINILM_PRESET,
    _model_key,
    cache_root,
    load_sentence_model,
    resolve_sentence_model,
)

if TYPE_CHECKING:
    from ..data.dataset import Dataset
    from .bert import BertScorerConfig

log = logging.getLogger(__name__)

Renderer = Callable[[Item], str]


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


#: the largest catalog whose embeddings are cached on disk by default (``disk_cache=None``)
DISK_CACHE_AUTO_MAX = 20_000


# ---------------------------------------------------------------------------- catalog access
class _CatalogView:
    """Uniform read access to a dict id -> Item (or item dict), a Dataset, or any object with
    ``item(id)`` raising KeyError for unknown ids."""

    def __init__(self, catalog: Mapping[str, Item] | Dataset) -> None:
        self._dataset = None
        self._dict: Mapping[str, Item] | None = None
        self._indexed = False  # the catalog says whether it holds an id (`ItemIndex`)
        if isinstance(catalog, Mapping):
            self._dict = catalog
        elif isinstance(catalog, ItemLookup):
            self._dataset = catalog
            self._indexed = isinstance(catalog, ItemIndex)
        else:
            raise DataError(
                f"catalog must be a dict item_id -> Item or a Dataset, got {type(catalog).__name__}"
            )

    def get(self, item_id: str) -> Item | None:
        if self._dict is not None:
            it = self._dict.get(item_id)
            if isinstance(it, Mapping):
                return Item.from_dict({"id": item_id, **dict(it)})
            return it
        assert self._dataset is not None
        if self._indexed:
            return self._dataset.item(item_id) if self._dataset.has_item(item_id) else None
        try:
            return self._dataset.item(item_id)
        except (KeyError, DataError):
            return None

    def size(self) -> int | None:
        """How many items the catalog holds (None: a lookup that cannot list its ids)."""
        if self._dict is not None:
            return len(self._dict)
        ids = getattr(self._dataset, "item_ids", None)
        return None if ids is None else len(ids)

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
    ``.npy`` under ``<cache_dir>/embeddings/`` keyed by model + catalog fingerprint. The default,
    ``disk_cache=None``, turns the disk cache on for catalogs of at most `DISK_CACHE_AUTO_MAX`
    items (encoding the whole catalog once is then cheaper than re-encoding it in every process)
    and off for larger ones, whose items are encoded as requests name them.
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
        disk_cache: bool | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.catalog = _CatalogView(catalog)
        self.model_spec = model
        self.model_path = resolve_sentence_model(model)
        self.model_key = _model_key(self.model_path)
        self.render: Renderer = render or (lambda it: render_item(it, max_chars=max_chars))
        self.batch_size = int(batch_size)
        self.device = device
        if disk_cache is None:
            size = self.catalog.size()
            disk_cache = size is not None and size <= DISK_CACHE_AUTO_MAX
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

    def has_item(self, item_id: str, catalog: Catalog = None) -> bool:
        """Whether `item_id` is in `catalog` (None: the encoder's own catalog)."""
        return item_id in (self.catalog if catalog is None else _CatalogView(catalog))

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

    def encode_items(self, ids: Iterable[str], catalog: Catalog = None) -> np.ndarray:
        """Embeddings of catalog items, float32 (n, d), L2-normalised, in the order of `ids`.

        Items come from `catalog` (a request's dict / Dataset; None: the encoder's own).
        Duplicated ids give duplicated rows. An id that is not in the catalog raises DataError.
        """
        ids = [str(i) for i in ids]
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        if catalog is None:
            if self.disk_cache and not self._disk_checked:
                self._load_or_build_disk_cache()
            texts = [self._text_and_hash(i) for i in ids]
        else:
            view = _CatalogView(catalog)
            texts = [self._render_hashed(view, i) for i in ids]
        store = self._store()
        keys = [(i, h) for i, (_, h) in zip(ids, texts, strict=True)]
        missing: dict[tuple[str, str], str] = {}
        for k, (text, _) in zip(keys, texts, strict=True):
            if k not in store and k not in missing:
                missing[k] = text
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

    def _render_hashed(self, view: _CatalogView, item_id: str) -> tuple[str, str]:
        item = view.get(item_id)
        if item is None:
            raise DataError(f"item id {item_id!r} is not in the catalog", column="item_id")
        text = self.render(item)
        return text, _text_hash(text)

    def _text_and_hash(self, item_id: str) -> tuple[str, str]:
        """Rendered text of an item of the encoder's own catalog (memoised by id)."""
        got = self._texts.get(item_id)
        if got is None:
            got = self._texts[item_id] = self._render_hashed(self.catalog, item_id)
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
