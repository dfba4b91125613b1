"""An LLM backend wrapper that caches scores and generations on disk (`KVCache`).

``CachedBackend(config, cache)`` has the `LLMBackend` interface. ``score_options`` and
``generate`` results are stored keyed by (model config, prompt hash, call options); everything
else (tokenizer, chat template) is delegated to the real backend, which is loaded lazily on the
first call that needs it, so a run served entirely from the cache never loads the model.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .cache import KVCache, NullCache, prompt_key

log = logging.getLogger(__name__)

__all__ = ["CachedBackend"]


def _enc(a: np.ndarray | None) -> dict[str, Any] | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _dec(d: dict[str, Any] | None) -> np.ndarray | None:
    if d is None:
        return None
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.float32).reshape(d["shape"]).copy()


def _adapter_fingerprint(config: Any) -> str:
    """SHA-256 of the LoRA adapter weights named by the config (field or `base+adapter` spec)."""
    from pathlib import Path

    from ..llm.models import file_sha256, split_adapter

    folders = []
    if getattr(config, "adapter", None):
        folders.append(Path(config.adapter))
    model = getattr(config, "model", None)
    if isinstance(model, str) and "+" in model:
        try:
            _, ad = split_adapter(model)
        except Exception:  # a bad spec fails later, where it is loaded, with its own message
            ad = None
        if ad:
            folders.append(Path(ad))
    hashes = []
    for f in folders:
        for w in sorted(Path(f).expanduser().glob("adapter_model.*")):
            hashes.append(file_sha256(w)[:16])
    return ",".join(hashes)


class CachedBackend:
    """Caching proxy around the backend that ``reranker.llm.hf.load_backend(config)`` returns."""

    def __init__(self, config: Any, cache: KVCache | NullCache, backend: Any = None) -> None:
        self.config = config
        self.cache = cache
        self._backend = backend
        self.model_id = config.model_dump_json() if hasattr(config, "model_dump_json") else str(config)
        adapter = _adapter_fingerprint(config)
        if adapter:  # retraining into the same folder must not reuse old scores
            self.model_id += f"|adapter:{adapter}"
        self.calls = 0
        self.cached_calls = 0

    @property
    def inner(self) -> Any:
        """The real backend (loaded on first use)."""
        if self._backend is None:
            from ..llm.hf import load_backend

            self._backend = load_backend(self.config)
        return self._backend

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def max_context(self) -> int:
        return self.inner.max_context

    def score_options(
        self,
        prompt_prefix: str,
        suffixes: Sequence[str],
        labels: Sequence[str],
        return_hidden: bool = False,
        **kwargs: Any,
    ) -> Any:
        from ..llm.base import ScoreResult

        self.calls += 1
        key = prompt_key(self.model_id, [prompt_prefix, list(suffixes)], op="score_options",
                         labels=list(labels), hidden=bool(return_hidden), kw=kwargs)
        hit = self.cache.get(key)
        if hit is not None:
            self.cached_calls += 1
            return ScoreResult(logits=_dec(hit["logits"]), hidden=_dec(hit["hidden"]),
                               tokens_in=int(hit["tokens_in"]), latency_s=float(hit["latency_s"]))
        res = self.inner.score_options(prompt_prefix, suffixes, labels, return_hidden=return_hidden, **kwargs)
        self.cache.put(key, {"logits": _enc(np.asarray(res.logits)), "hidden": _enc(res.hidden),
                             "tokens_in": int(res.tokens_in), "latency_s": float(res.latency_s)})
        return res

    def score_prompts(self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False) -> Any:
        from ..llm.base import ScoreResult

        self.calls += 1
        key = prompt_key(self.model_id, list(prompts), op="score_prompts", labels=list(labels),
                         hidden=bool(return_hidden))
        hit = self.cache.get(key)
        if hit is not None:
            self.cached_calls += 1
            return ScoreResult(logits=_dec(hit["logits"]), hidden=_dec(hit["hidden"]),
                               tokens_in=int(hit["tokens_in"]), latency_s=float(hit["latency_s"]))
        res = self.inner.score_prompts(prompts, labels, return_hidden=return_hidden)
        self.cache.put(key, {"logits": _enc(np.asarray(res.logits)), "hidden": _enc(res.hidden),
                             "tokens_in": int(res.tokens_in), "latency_s": float(res.latency_s)})
        return res

    def generate(self, prompts: Sequence[str], max_new_tokens: int | None = None, seed: int = 0, **kwargs: Any) -> list[Any]:
        from ..llm.base import Generation

        self.calls += 1
        keys = [prompt_key(self.model_id, p, op="generate", max_new_tokens=max_new_tokens, seed=seed, kw=kwargs)
                for p in prompts]
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        out: list[Any] = [None] * len(prompts)
        for i, k in enumerate(keys):
            if k in found:
                h = found[k]
                out[i] = Generation(text=h["text"], tokens_in=int(h["tokens_in"]), tokens_out=int(h["tokens_out"]),
                                    latency_s=float(h["latency_s"]), meta=dict(h.get("meta") or {}))
        if not missing:
            self.cached_calls += 1
            return out
        gens = self.inner.generate([prompts[i] for i in missing], max_new_tokens=max_new_tokens, seed=seed, **kwargs)
        new = {}
        for i, g in zip(missing, gens, strict=True):
            out[i] = g
            new[keys[i]] = {"text": g.text, "tokens_in": g.tokens_in, "tokens_out": g.tokens_out,
                            "latency_s": g.latency_s, "meta": g.meta}
        self.cache.put_many(new)
        return out
