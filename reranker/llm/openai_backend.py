"""The `openai` backend: any server speaking the OpenAI completions API (vLLM, llama.cpp's
servers, Ollama, hosted APIs).

- Prompts are rendered on the client with the model's own tokenizer and chat template
  (`LocalTokenizer`) and sent as plain text to `/v1/completions`, byte-identical for the same
  request, so the server's prefix cache (vLLM automatic prefix caching, llama.cpp
  `cache_prompt`) reuses the shared history prefix of a list's prompts.
- Label scores (pointwise Yes/No, verbalizer letters) come from one `max_tokens: 1` call per
  prompt with `logprobs: server.top_logprobs`: a label's score is its next-token
  log-probability (the rankers' differences and softmaxes over labels equal those of logits).
  A label outside the returned top-k gets a floor `LABEL_FLOOR_NATS` below the smallest
  returned log-probability and is counted (`ScoreResult.meta`: `labels_missing` of
  `labels_scored`), never scored 0 silently. With `server.label_scores: prompt_logprobs`
  (vLLM) each label's exact log-probability is read from `prompt_logprobs` instead
  (`reranker.llm.label_scores`).
- Generations (listwise, explanations) are greedy `/v1/completions` calls (temperature 0,
  repetition penalty 1 unless given). A listwise answer held to the candidates' labels
  (`generate_label_list`) carries the server's own constraint, per
  `server.constrained_decoding`: a GBNF `grammar` (llama.cpp), a regex in
  `structured_outputs` (vLLM) or `guided_regex` (vLLM before 0.12).
- Every call of a list runs concurrently, at most `server.max_concurrency` requests in flight
  over all threads and event loops sharing the backend; retries and errors: `reranker.llm.http`.
- The served model is checked against `/v1/models` on first use (a wrong name is a clear
  error); `identity()` (base URL, served model id, the server's fingerprint where it reports
  one) is what the on-disk LLM cache keys on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError
from .base import DEFAULT_BASE_URL, Generation, LLMConfig, ScoreResult, ServerConfig
from .constrained import LabelList, gbnf_grammar, label_list_regex
from .http import ServerClient, ServerError
from .label_scores import prompt_logprob, top_logprobs
from .local_tokens import LocalTokenizer
from .models import parse_server_spec

log = logging.getLogger(__name__)

#: a label missing from the server's top-k scores this far below the smallest returned logprob
LABEL_FLOOR_NATS = 1.0

#: fields of a /v1/models entry that identify the served weights (vLLM: root, max_model_len)
FINGERPRINT_FIELDS = ("root", "parent", "max_model_len", "owned_by", "fingerprint", "system_fingerprint")

#: the client-rendered prompt is used as it is (vLLM: no second BOS; llama.cpp: prefix cache on)
PROMPT_AS_IS = {"add_special_tokens": False, "cache_prompt": True}

NO_LOGPROBS = (
    "pointwise and verbalizer scoring read next-token log-probabilities from /v1/completions "
    "(`logprobs`); start the server with them enabled (vLLM: --max-logprobs >= server.top_logprobs; "
    "llama-cpp-python: --logits_all true; Ollama: a version with logprobs support) or lower "
    "server.top_logprobs, or use mode listwise, which only generates"
)


class OpenAIBackend:
    """`LLMBackend` over an OpenAI-compatible server (see the module docstring). Has no hidden
    states (`score_prompts(..., return_hidden=True)` is a ModelError) and no torch model."""

    def __init__(self, config: LLMConfig) -> None:
        if config.backend != "openai":
            raise ModelError(f"OpenAIBackend needs backend: openai, got {config.backend!r}")
        self.config = config
        self.settings = config.server or ServerConfig()
        spec = parse_server_spec(config.model)
        self.requested_model = spec.model if spec else config.model
        self.base_url = self.settings.base_url or (spec.base_url if spec else None) or DEFAULT_BASE_URL
        self._http = ServerClient(
            self.base_url, timeout_s=self.settings.timeout_s, max_concurrency=self.settings.max_concurrency,
            retries=self.settings.retries, backoff_s=self.settings.backoff_s, api_key=self._api_key(),
        )
        self._tok: LocalTokenizer | None = None
        self._served: dict[str, Any] | None = None
        self._served_lock: asyncio.Lock | None = None

    def _api_key(self) -> str | None:
        name = self.settings.api_key_env
        if name is None:
            return None
        key = os.environ.get(name)
        if not key:
            raise ModelError(f"server.api_key_env names {name}, which is not set in the environment; "
                             f"export {name}=<key> or leave server.api_key_env unset")
        return key

    # ------------------------------------------------------------------ tokens (client side)
    @property
    def tokens(self) -> LocalTokenizer:
        if self._tok is None:
            spec = self.settings.tokenizer or self.requested_model
            setting = "server.tokenizer" if self.settings.tokenizer else "server.tokenizer (the served model name is not a loadable spec)"
            self._tok = LocalTokenizer(spec, self.config.system_prompt, setting=setting)
        return self._tok

    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        return self.tokens.chat_prompt(user_message, system)

    def count_tokens(self, text: str) -> int:
        return self.tokens.count_tokens(text)

    def truncate_tokens(self, text: str, n_tokens: int) -> str:
        return self.tokens.truncate_tokens(text, n_tokens)

    @property
    def max_context(self) -> int:
        served = self._http.run(self._served_model())
        own = served.get("max_model_len")
        limit = self.config.max_context
        if isinstance(own, int) and own > 0:
            return min(own, limit) if limit else own
        return limit or 2048

    # ------------------------------------------------------------------ the served model
    @property
    def served_model(self) -> str:
        """The model id the server serves under the configured name (checked on first use)."""
        return str(self._http.run(self._served_model())["id"])

    def identity(self) -> dict[str, Any]:
        """What the LLM cache keys on: base URL, served model id, and the server's fingerprint
        of the weights where `/v1/models` reports one (vLLM's `root`, `max_model_len`, ...)."""
        served = self._http.run(self._served_model())
        fp = {k: served[k] for k in FINGERPRINT_FIELDS if served.get(k) is not None}
        return {"base_url": self.base_url, "model": served["id"], "fingerprint": fp}

    async def _served_model(self) -> dict[str, Any]:
        if self._served is not None:
            return self._served
        if self._served_lock is None:
            self._served_lock = asyncio.Lock()
        async with self._served_lock:
            if self._served is None:
                self._served = await self._fetch_served()
        return self._served

    async def _fetch_served(self) -> dict[str, Any]:
        want = self.requested_model
        try:
            answer = await self._http.get("/models", "listing the served models")
        except ServerError as e:
            if e.status in (404, 405) and want:  # a server without /v1/models: trust the name
                log.info("%s has no /models; using the model name %r unchecked", self.base_url, want)
                return {"id": want}
            raise
        entries = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise ModelError(f"{self.base_url}/models answered {json.dumps(answer)[:200]}, not an OpenAI model "
                             "list; is the URL the API root (ending in /v1)?")
        models = {str(e.get("id")): e for e in entries if isinstance(e, dict) and e.get("id") is not None}
        if not want:
            if len(models) != 1:
                raise ModelError(f"the server at {self.base_url} serves {sorted(models)}; name one in the model "
                                 "spec openai:MODEL@URL")
            return next(iter(models.values()))
        if want not in models:
            raise ModelError(f"the server at {self.base_url} does not serve a model {want!r}; it serves "
                             f"{sorted(models)}: set the model spec (openai:MODEL@URL) to one of them")
        return models[want]

    # ------------------------------------------------------------------ scoring
    def score_prompts(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        return self._http.run(self._score(list(prompts), list(labels), return_hidden))

    async def ascore_prompts(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        """`score_prompts` awaitable from any event loop."""
        return await self._http.arun(self._score(list(prompts), list(labels), return_hidden))

    async def _score(self, prompts: list[str], labels: list[str], return_hidden: bool) -> ScoreResult:
        if return_hidden:
            raise ModelError("the openai backend returns no hidden states (a server exposes only tokens and "
                             "log-probabilities); the learned head's LLM hidden-state feature needs the "
                             "transformers backend")
        t0 = time.perf_counter()
        label_toks = self.tokens.label_tokens(labels)
        if not prompts:
            return ScoreResult(logits=np.zeros((0, len(labels))), tokens_in=0)
        served = (await self._served_model())["id"]
        if self.settings.label_scores == "prompt_logprobs":
            return await self._score_exact(served, prompts, [i for i, _ in label_toks], t0)
        answers = await asyncio.gather(*(self._score_one(served, p) for p in prompts))
        logits = np.zeros((len(prompts), len(labels)))
        missing = 0
        for row, (top, _) in enumerate(answers):
            floor = min(top.values()) - LABEL_FLOOR_NATS
            for col, (_, text) in enumerate(label_toks):
                value = top.get(text)
                if value is None or not math.isfinite(value):
                    missing += 1
                    value = floor
                logits[row, col] = value
        if missing:
            log.debug("%d of %d label scores were outside the server's top %d", missing, logits.size,
                      self.settings.top_logprobs)
        meta = {"labels_missing": missing, "labels_scored": int(logits.size),
                "top_logprobs": self.settings.top_logprobs}
        return ScoreResult(logits=logits, tokens_in=sum(n for _, n in answers),
                           latency_s=time.perf_counter() - t0, meta=meta)

    async def _score_exact(self, served: str, prompts: list[str], label_ids: list[int], t0: float) -> ScoreResult:
        """`label_scores: prompt_logprobs` (vLLM): each label's exact log-probability."""
        encoded = [self.tokens.encode(p) for p in prompts]

        hint = "server.label_scores: prompt_logprobs needs vLLM; set it to top_logprobs for other servers"

        async def one(ids: list[int], label: int) -> float:
            body = {"model": served, "prompt": [*ids, label], "max_tokens": 1, "temperature": 0.0,
                    "prompt_logprobs": 0}
            try:
                answer = await self._http.post("/completions", body, "scoring a label")
            except ServerError as e:  # e.g. a server that takes text prompts only (llama.cpp: HTTP 500)
                if e.status is None or (e.status >= 500 and "prompt" not in e.detail.lower()):
                    raise
                raise ModelError(f"{e}; {hint}") from None
            value = prompt_logprob(answer, label)
            if value is None:
                raise ModelError(f"the server at {self.base_url} returned no prompt_logprobs for a token-id "
                                 f"prompt (answer: {json.dumps(answer)[:300]}); {hint}")
            return value

        values = await asyncio.gather(*(one(ids, lab) for ids in encoded for lab in label_ids))
        logits = np.asarray(values, dtype=np.float64).reshape(len(prompts), len(label_ids))
        meta = {"labels_missing": 0, "labels_scored": int(logits.size), "label_scores": "prompt_logprobs"}
        return ScoreResult(logits=logits, tokens_in=sum(len(ids) + 1 for ids in encoded) * len(label_ids),
                           latency_s=time.perf_counter() - t0, meta=meta)

    async def _score_one(self, served: str, prompt: str) -> tuple[dict[str, float], int]:
        body = {"model": served, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                "logprobs": self.settings.top_logprobs, "echo": False, **PROMPT_AS_IS}
        try:
            answer = await self._http.post("/completions", body, "scoring a prompt")
        except ServerError as e:
            if "logprob" not in e.detail.lower():
                raise
            raise ModelError(f"the server at {self.base_url} cannot return log-probabilities (HTTP {e.status}: "
                             f"{e.detail!r}); {NO_LOGPROBS}") from None
        top = top_logprobs(answer)
        if not top:
            raise ModelError(f"the server at {self.base_url} returned no log-probabilities "
                             f"(answer: {json.dumps(answer)[:300]}); {NO_LOGPROBS}")
        return top, _usage(answer, "prompt_tokens") or self.count_tokens(prompt)

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        seed: int = 0,
        repetition_penalty: float | None = None,
    ) -> list[Generation]:
        return self._http.run(self._generate(list(prompts), max_new_tokens, seed, repetition_penalty))

    async def agenerate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        seed: int = 0,
        repetition_penalty: float | None = None,
    ) -> list[Generation]:
        """`generate` awaitable from any event loop."""
        return await self._http.arun(self._generate(list(prompts), max_new_tokens, seed, repetition_penalty))

    @property
    def can_constrain(self) -> bool:
        """Whether `server.constrained_decoding` names the server's mechanism (not `none`)."""
        return self.settings.constrained_decoding != "none"

    def generate_label_list(
        self,
        prompts: Sequence[str],
        answer: LabelList,
        max_new_tokens: int | None = None,
        seed: int = 0,
    ) -> list[Generation]:
        """`generate` held to `answer`'s label list by the server (`server.constrained_decoding`):
        the format, the label range and the count; a label may repeat (the server grammars
        cannot say "distinct" for many labels; the listwise parser drops repeats)."""
        return self._http.run(self._generate(list(prompts), max_new_tokens, seed, None, self._constraint(answer)))

    def _constraint(self, answer: LabelList) -> dict[str, Any]:
        """The request fields that hold a completion to `answer` on this kind of server."""
        how = self.settings.constrained_decoding
        if how == "grammar":
            return {"grammar": gbnf_grammar(answer)}
        if how == "vllm":
            return {"structured_outputs": {"regex": label_list_regex(answer)}}
        if how == "vllm-guided":
            return {"guided_regex": label_list_regex(answer)}
        raise ConfigError("decoding: constrained through the openai backend needs server.constrained_decoding: "
                          "grammar (llama.cpp), vllm (vLLM >= 0.10.2) or vllm-guided (older vLLM); this server "
                          "is set to none: set one of them, or the listwise ranker's decoding: free")

    async def _generate(
        self, prompts: list[str], max_new_tokens: int | None, seed: int, repetition_penalty: float | None,
        constraint: dict[str, Any] | None = None,
    ) -> list[Generation]:
        if not prompts:
            return []
        served = (await self._served_model())["id"]
        max_new = max_new_tokens or self.config.max_new_tokens
        penalty = 1.0 if repetition_penalty is None else float(repetition_penalty)
        body: dict[str, Any] = {
            "model": served, "max_tokens": max_new, "temperature": float(self.config.temperature),
            "seed": seed, **PROMPT_AS_IS,
            # vLLM reads repetition_penalty, llama.cpp repeat_penalty (its default is 1.1, not 1)
            "repetition_penalty": penalty, "repeat_penalty": penalty, **(constraint or {}),
        }
        gens = list(await asyncio.gather(*(self._generate_one({**body, "prompt": p}) for p in prompts)))
        if constraint:
            for g in gens:
                g.meta["constrained"] = self.settings.constrained_decoding
        return gens

    async def _generate_one(self, body: dict[str, Any]) -> Generation:
        t0 = time.perf_counter()
        answer = await self._http.post("/completions", body, "generating")
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("text"), str):
            raise ModelError(f"the server at {self.base_url} answered a completion without text: "
                             f"{json.dumps(answer)[:300]}")
        text = choices[0]["text"]
        n_in = _usage(answer, "prompt_tokens") or self.count_tokens(body["prompt"])
        n_out = _usage(answer, "completion_tokens")
        if n_out is None:
            n_out = self.count_tokens(text)
        return Generation(text=text.strip(), tokens_in=n_in, tokens_out=min(n_out, int(body["max_tokens"])),
                          latency_s=time.perf_counter() - t0,
                          meta={"finish_reason": choices[0].get("finish_reason")})

    def close(self) -> None:
        """Close the connections (a later call opens them again)."""
        self._http.close()


def _usage(answer: Any, key: str) -> int | None:
    usage = answer.get("usage") if isinstance(answer, dict) else None
    value = usage.get(key) if isinstance(usage, dict) else None
    return int(value) if isinstance(value, int | float) else None


__all__ = ["OpenAIBackend", "LABEL_FLOOR_NATS"]
