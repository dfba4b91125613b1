"""An LLM backend that caches scores and generations on disk (`reranker.cache.KVCache`).

``CachedBackend(config, cache)`` implements `LLMBackend`. ``score_prompts``, ``generate`` (and
``score_options``) results are stored keyed by (model config, prompt hash, call options);
tokens and the chat template come from the real backend, which is loaded lazily on the first
call that needs it (``inner``), so a run whose LLM calls are all cached never runs the model.

Keys are stable across versions, with one exception: an in-process model with `dtype: auto` is
keyed by the dtype it runs in on this host (`reranker.llm.hf.resolve_dtype`), so bf16 scores
from one host are never served as fp32 ones on another; entries written before that (keyed
``auto``) are not read. For the `openai` backend the key holds the model settings without
the operational `server` ones, plus the server's identity (base URL, served model id and the
fingerprint it reports, `OpenAIBackend.identity`), asked of the server on the first call.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import KVCache, NullCache, prompt_key
from ..errors import ModelError
from .base import (
    ConstrainedListBackend,
    Generation,
    HiddenStatesBackend,
    LLMBackend,
    LLMConfig,
    PrefixScoringBackend,
    ScoreResult,
)
from .constrained import LabelList

log = logging.getLogger(__name__)

__all__ = ["CachedBackend"]

_UNSET: Any = object()
"""`repetition_penalty` not given: the call options in the key stay those of older versions."""


class NoHiddenStates(ModelError, AttributeError):
    """`hidden_size` of a proxy whose backend has none: also an AttributeError, so
    `isinstance(proxy, HiddenStatesBackend)` is False rather than an error."""


def _enc(a: np.ndarray | None) -> dict[str, Any] | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _dec(d: dict[str, Any] | None) -> np.ndarray | None:
    if d is None:
        return None
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.float32).reshape(d["shape"]).copy()


def _adapter_fingerprint(config: LLMConfig) -> str:
    """SHA-256 of the LoRA adapter weights named by the config (field or `base+adapter` spec)."""
    from .models import adapter_weights_sha, split_adapter

    folders = []
    if config.adapter:
        folders.append(Path(config.adapter))
    if "+" in config.model:
        try:
            _, ad = split_adapter(config.model)
        except Exception:  # a bad spec fails later, where it is loaded, with its own message
            ad = None
        if ad:
            folders.append(Path(ad))
    return ",".join(h for h in (adapter_weights_sha(f) for f in folders) if h)


def _score_entry(res: ScoreResult) -> dict[str, Any]:
    entry = {"logits": _enc(np.asarray(res.logits)), "hidden": _enc(res.hidden),
             "tokens_in": int(res.tokens_in), "latency_s": float(res.latency_s)}
    if res.meta:
        entry["meta"] = dict(res.meta)
    return entry


def _score_result(hit: dict[str, Any]) -> ScoreResult:
    logits = _dec(hit["logits"])
    if logits is None:
        raise ModelError("a cached score entry has no logits (corrupt cache; delete it or run with --no-cache)")
    return ScoreResult(logits=logits, hidden=_dec(hit["hidden"]),
                       tokens_in=int(hit["tokens_in"]), latency_s=float(hit["latency_s"]),
                       meta=dict(hit.get("meta") or {}))


class CachedBackend:
    """Caching proxy around a backend: by default the one ``reranker.llm.hf.load_backend(config)``
    returns, or ``backend`` when given.

    Besides `LLMBackend` it offers `hidden_size` (`HiddenStatesBackend`) and ``score_options``
    (`PrefixScoringBackend`), delegated to the real backend, which must have them when they are
    called. ``calls`` / ``cached_calls`` count scoring and generation calls and those served
    entirely from the cache. Note: `isinstance` checks against protocols with properties read
    those properties, which loads the real backend.
    """

    def __init__(self, config: LLMConfig, cache: KVCache | NullCache, backend: LLMBackend | None = None) -> None:
        self.config = config
        self.cache = cache
        self._backend = backend
        self._model_id: str | None = None
        self.calls = 0
        self.cached_calls = 0

    @property
    def model_id(self) -> str:
        """What every key starts from (for a server: asked of it on first use, see the module)."""
        if self._model_id is None and self.config.backend != "openai":
            model_id = self._settings_json()
            adapter = _adapter_fingerprint(self.config)
            if adapter:  # retraining into the same folder must not reuse old scores
                model_id += f"|adapter:{adapter}"
            self._model_id = model_id
        if self._model_id is None:
            identity = getattr(self.inner, "identity", None)
            if identity is None:
                raise ModelError(f"{type(self.inner).__name__} reports no server identity to key the cache on")
            settings = self.config.model_dump_json(exclude={"server"})
            self._model_id = f"{settings}|server:{json.dumps(identity(), sort_keys=True)}"
        return self._model_id

    def _settings_json(self) -> str:
        """The in-process model's settings as keyed: `dtype: auto` replaced by the dtype it runs
        in on this host (a bf16 score must never be served as an fp32 one; `resolve_dtype`
        answers from the calibration cache without loading the weights). A backend given at
        construction answers for itself (`dtype_choice`); one without it is keyed as configured."""
        cfg = self.config
        if cfg.dtype == "auto":
            if self._backend is not None:
                choice = getattr(self._backend, "dtype_choice", None)
            else:
                from .hf import resolve_dtype

                choice = resolve_dtype(cfg)
            if choice is not None:
                cfg = cfg.model_copy(update={"dtype": choice.dtype})
        return cfg.model_dump_json()

    @property
    def inner(self) -> Any:
        """The real backend (loaded on first use)."""
        if self._backend is None:
            from .loading import load_llm

            self._backend = load_llm(self.config)
        return self._backend

    # ------------------------------------------------------------------ delegated
    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        return self.inner.chat_prompt(user_message, system)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def truncate_tokens(self, text: str, n_tokens: int) -> str:
        return self.inner.truncate_tokens(text, n_tokens)

    @property
    def max_context(self) -> int:
        return self.inner.max_context

    @property
    def hidden_size(self) -> int:
        inner = self.inner
        if not isinstance(inner, HiddenStatesBackend):
            raise NoHiddenStates(f"{type(inner).__name__} returns no hidden states")
        return inner.hidden_size

    # ------------------------------------------------------------------ cached
    def score_prompts(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        self.calls += 1
        key = prompt_key(self.model_id, list(prompts), op="score_prompts", labels=list(labels),
                         hidden=bool(return_hidden))
        hit = self.cache.get(key)
        if hit is not None:
            self.cached_calls += 1
            return _score_result(hit)
        res = self.inner.score_prompts(prompts, labels, return_hidden=return_hidden)
        self.cache.put(key, _score_entry(res))
        return res

    def score_options(
        self,
        prompt_prefix: str,
        suffixes: Sequence[str],
        labels: Sequence[str],
        return_hidden: bool = False,
    ) -> ScoreResult:
        self.calls += 1
        key = prompt_key(self.model_id, [prompt_prefix, list(suffixes)], op="score_options",
                         labels=list(labels), hidden=bool(return_hidden), kw={})
        hit = self.cache.get(key)
        if hit is not None:
            self.cached_calls += 1
            return _score_result(hit)
        inner = self.inner
        if not isinstance(inner, PrefixScoringBackend):
            raise ModelError(f"{type(inner).__name__} has no score_options; use score_prompts")
        res = inner.score_options(prompt_prefix, suffixes, labels, return_hidden=return_hidden)
        self.cache.put(key, _score_entry(res))
        return res

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        seed: int = 0,
        repetition_penalty: float | None = _UNSET,
    ) -> list[Generation]:
        self.calls += 1
        # the options as earlier versions keyed them: repetition_penalty only when given
        kw = {} if repetition_penalty is _UNSET else {"repetition_penalty": repetition_penalty}
        keys = [prompt_key(self.model_id, p, op="generate", max_new_tokens=max_new_tokens, seed=seed, kw=kw)
                for p in prompts]
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        out: list[Generation | None] = [None] * len(prompts)
        for i, k in enumerate(keys):
            if k in found:
                h = found[k]
                out[i] = Generation(text=h["text"], tokens_in=int(h["tokens_in"]), tokens_out=int(h["tokens_out"]),
                                    latency_s=float(h["latency_s"]), meta=dict(h.get("meta") or {}))
        if missing:
            gens = self.inner.generate([prompts[i] for i in missing], max_new_tokens=max_new_tokens, seed=seed, **kw)
            new = {}
            for i, g in zip(missing, gens, strict=True):
                out[i] = g
                new[keys[i]] = {"text": g.text, "tokens_in": g.tokens_in, "tokens_out": g.tokens_out,
                                "latency_s": g.latency_s, "meta": g.meta}
            self.cache.put_many(new)
        else:
            self.cached_calls += 1
        return [g for g in out if g is not None]

    @property
    def can_constrain(self) -> bool:
        """Whether the real backend can hold a generation to a label list (loads it)."""
        inner = self.inner
        return isinstance(inner, ConstrainedListBackend) and bool(inner.can_constrain)

    def generate_label_list(
        self,
        prompts: Sequence[str],
        answer: LabelList,
        max_new_tokens: int | None = None,
        seed: int = 0,
    ) -> list[Generation]:
        """`ConstrainedListBackend.generate_label_list`, cached per prompt under the label list
        and the way it is enforced (in process: the logits processor; a server: its
        `constrained_decoding` setting); the real backend must be able to do it."""
        self.calls += 1
        server = self.config.server
        how = "logits_processor" if self.config.backend != "openai" else (
            server.constrained_decoding if server is not None else "none")
        keys = [prompt_key(self.model_id, p, op="generate_label_list", max_new_tokens=max_new_tokens, seed=seed,
                           answer=answer.key(), how=how) for p in prompts]
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        out: list[Generation | None] = [None] * len(prompts)
        for i, k in enumerate(keys):
            if k in found:
                out[i] = _generation(found[k])
        if missing:
            inner = self.inner
            if not isinstance(inner, ConstrainedListBackend):
                raise ModelError(f"{type(inner).__name__} cannot hold a generation to a label list "
                                 "(decoding: constrained); use decoding: free")
            gens = inner.generate_label_list([prompts[i] for i in missing], answer, max_new_tokens, seed=seed)
            new = {}
            for i, g in zip(missing, gens, strict=True):
                out[i] = g
                new[keys[i]] = _generation_entry(g)
            self.cache.put_many(new)
        else:
            self.cached_calls += 1
        return [g for g in out if g is not None]


def _generation(hit: dict[str, Any]) -> Generation:
    return Generation(text=hit["text"], tokens_in=int(hit["tokens_in"]), tokens_out=int(hit["tokens_out"]),
                      latency_s=float(hit["latency_s"]), meta=dict(hit.get("meta") or {}))


def _generation_entry(g: Generation) -> dict[str, Any]:
    return {"text": g.text, "tokens_in": g.tokens_in, "tokens_out": g.tokens_out, "latency_s": g.latency_s,
            "meta": g.meta}
