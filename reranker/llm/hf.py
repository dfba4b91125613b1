"""In-process transformers backend: shared-prefix label scoring and batched generation on CPU.

The scoring paths live in `reranker.llm.hf_scoring` (the `HFScoring` mixin), the adapter loader
in `reranker.llm.models`; both helpers stay importable from here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from .base import Generation, LLMConfig
from .dtype_choice import DtypeChoice, calibrated_dtype
from .hf_scoring import HFScoring, split_common_prefix
from .local_tokens import TokenizerText
from .models import apply_adapter, materialize

if TYPE_CHECKING:
    from .constrained import LabelList, TokenTable

log = logging.getLogger(__name__)

_LOADED: dict[str, HFBackend] = {}
_LOCK = threading.Lock()


def cpu_supports_bf16() -> bool:
    """True when torch reports native bf16 kernels on this CPU (AVX512-BF16 / AMX). Not what
    `dtype: auto` goes by: native bf16 can still be slower than fp32 (see `dtype_choice`)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - depends on the torch build
        return False


def _mlp_shape(resolved: Any) -> tuple[int, int]:
    """(hidden, intermediate) of the model's MLP linear layers, read from its config (the
    usual transformer ratio of 4 where the config names no intermediate size)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(resolved.path, local_files_only=resolved.offline)
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    hidden = next((int(v) for a in ("hidden_size", "n_embd", "d_model") if (v := getattr(text, a, None))), 1024)
    inter = next((int(v) for a in ("intermediate_size", "n_inner", "ffn_dim", "d_ff") if (v := getattr(text, a, None))),
                 4 * hidden)
    return hidden, inter


def resolve_dtype(config: LLMConfig, resolved: Any = None) -> DtypeChoice:
    """The dtype an in-process backend with `config` runs in, without loading the weights:
    `dtype: bf16|fp32` as set; `auto` the faster one on this host for the model's MLP shape at
    the config's thread count (`reranker.llm.dtype_choice`: from the per-host calibration cache,
    measured when missing). What `HFBackend` picks, and what the score cache keys on.
    `resolved`: the model's `materialize` result when the caller has it."""
    if config.dtype != "auto":
        return DtypeChoice(config.dtype, "config")
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    return calibrated_dtype(*_mlp_shape(resolved if resolved is not None else materialize(config.model)))


def load_backend(config: LLMConfig | None = None, **overrides: Any) -> HFBackend:
    """A process-wide cached backend per distinct config (models load once)."""
    cfg = (config or LLMConfig()).model_copy(update=overrides) if overrides else (config or LLMConfig())
    key = cfg.model_dump_json()
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = HFBackend(cfg)
        return _LOADED[key]


class HFBackend(TokenizerText, HFScoring):
    """A causal LM from transformers, run in eval + inference mode on CPU.

    Implements `LLMBackend` and the optional `HiddenStatesBackend`, `PrefixScoringBackend` and
    `TorchBackend` protocols. Scoring runs the shared prompt prefix once and reuses it for every
    suffix (packed into one sequence, or its KV cache expanded over padded batches; see
    `HFScoring`).
    """

    def __init__(self, config: LLMConfig | None = None) -> None:
        self.config = config or LLMConfig()
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:  # pragma: no cover - core deps
            raise ModelError(f"the transformers backend needs torch and transformers: {e}") from e
        self._torch = torch
        resolved = materialize(self.config.model)
        if resolved.offline:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        t0 = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                resolved.path, local_files_only=resolved.offline
            )
            self.dtype_choice = self._pick_dtype(resolved)
            self.dtype = torch.bfloat16 if self.dtype_choice.dtype == "bf16" else torch.float32
            self.model = AutoModelForCausalLM.from_pretrained(
                resolved.path, dtype=self.dtype, local_files_only=resolved.offline
            )
        except (OSError, ValueError, KeyError) as e:  # a folder that is not a loadable model
            detail = " ".join(str(e).split())  # transformers' messages span several lines
            raise ModelError(
                f"could not load model {self.config.model!r} from {resolved.path}: {type(e).__name__}: {detail}"
            ) from e
        adapter = resolved.adapter or (str(self.config.adapter) if self.config.adapter else None)
        if adapter:
            self.model = apply_adapter(self.model, adapter, merge=self.config.merge_adapter)
        self.adapter = adapter
        self.model.eval()
        self.model.requires_grad_(False)
        self.resolved = resolved
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._decoder = self.model.base_model
        head = self.model.get_output_embeddings()
        # generate() feeds the head hidden_states[:, -1:, :], a strided view: for a batch, linear
        # then goes through matmul's broadcast path and copies the whole (tied, vocab-sized) weight
        # once per sequence (10 s per 16-prompt batch here). A contiguous input takes a plain mm.
        head.register_forward_pre_hook(_contiguous_input)
        self._head_w = head.weight
        self._head_b = getattr(head, "bias", None)
        self._label_cache: dict[tuple[str, ...], list[int]] = {}
        self._token_tables: dict[frozenset[str], TokenTable] = {}
        self._packed = False
        if self.config.scoring == "packed":
            from . import packed

            self._packed = packed.install(self.model)
        log.info(
            "loaded %s (%s) in %.1fs, dtype=%s, threads=%d",
            self.config.model,
            resolved.path,
            time.perf_counter() - t0,
            self.dtype_choice.describe(),
            torch.get_num_threads(),
        )

    # ------------------------------------------------------------------ basics
    def _pick_dtype(self, resolved: Any) -> DtypeChoice:
        """`dtype: bf16|fp32` as set; `auto`: the faster of the two on this host, measured on
        GEMMs of the model's MLP shape (`reranker.llm.dtype_choice`, cached per host)."""
        return resolve_dtype(self.config, resolved)

    @property
    def device(self):
        """Where the model's weights are (inputs are moved there; CPU unless moved to a GPU)."""
        return next(self.model.parameters()).device

    @property
    def decoder(self) -> Any:
        """The decoder stack without the LM head (`model.base_model`): final hidden states."""
        return self._decoder

    @property
    def hidden_size(self) -> int:
        """Width of the hidden states that `score_prompts(..., return_hidden=True)` returns."""
        return int(self._head_w.shape[1])

    @property
    def name(self) -> str:
        return self.config.model

    @property
    def max_context(self) -> int:
        own = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        return min(own, self.config.max_context) if self.config.max_context else own

    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        """Apply the model's chat template to one user turn (plus an optional system turn)."""
        system = system if system is not None else self.config.system_prompt
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_message}
        ]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        head = f"{system}\n\n" if system else ""
        return f"{head}{user_message}\n\nAnswer: "

    def label_token_ids(self, labels: Sequence[str]) -> list[int]:
        """First token of each label; labels must map to distinct tokens."""
        key = tuple(labels)
        if key not in self._label_cache:
            ids = []
            for lab in labels:
                toks = self.encode(lab)
                if not toks:
                    raise ModelError(f"label {lab!r} encodes to no tokens")
                if len(toks) > 1:
                    log.debug("label %r is %d tokens; scoring its first token", lab, len(toks))
                ids.append(toks[0])
            if len(set(ids)) != len(ids):
                raise ModelError(f"labels {list(labels)} do not map to distinct first tokens")
            self._label_cache[key] = ids
        return self._label_cache[key]

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None = None,
        seed: int = 0,
        repetition_penalty: float | None = None,
    ) -> list[Generation]:
        """Batched generation (left padding); greedy unless config.temperature > 0.
        `repetition_penalty` > 1 discourages the loops small models fall into."""
        return self._generate(prompts, max_new_tokens, seed, repetition_penalty)

    @property
    def can_constrain(self) -> bool:
        """Always: the logits processor (`ConstrainedListBackend`)."""
        return True

    def generate_label_list(
        self,
        prompts: Sequence[str],
        answer: LabelList,
        max_new_tokens: int | None = None,
        seed: int = 0,
    ) -> list[Generation]:
        """`generate` with the answer held to `answer`'s label list (`ConstrainedListBackend`):
        a logits processor lets through only the tokens that keep the text a prefix of a list
        of distinct labels, and end-of-text once the list is complete
        (`reranker.llm.constrained`)."""
        from .constrained import LabelListConstraint, LabelListProcessor

        table = self.token_table(answer.alphabet)

        def constrain(rows: int) -> dict[str, Any]:
            from transformers import LogitsProcessorList

            proc = LabelListProcessor(LabelListConstraint(answer, table, rows))
            return {"logits_processor": LogitsProcessorList([proc]), "eos_token_id": list(table.end_ids)}

        gens = self._generate(prompts, max_new_tokens, seed, None, constrain)
        for g in gens:
            g.meta["constrained"] = "logits_processor"
        return gens

    def token_table(self, alphabet: frozenset[str]) -> TokenTable:
        """The tokens made only of `alphabet`'s characters (built once per alphabet)."""
        from .constrained import TokenTable

        with _LOCK:
            table = self._token_tables.get(alphabet)
            if table is None:
                table = self._token_tables[alphabet] = TokenTable.from_tokenizer(self.tokenizer, alphabet)
        return table

    def _generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int | None,
        seed: int,
        repetition_penalty: float | None,
        extra: Callable[[int], dict[str, Any]] | None = None,
    ) -> list[Generation]:
        """`generate`; `extra(rows)` adds keyword arguments to each batch's `model.generate`."""
        if not prompts:  # (the tokenizer fails on an empty batch)
            return []
        torch = self._torch
        max_new = max_new_tokens or self.config.max_new_tokens
        sample = self.config.temperature > 0
        results: list[Generation | None] = [None] * len(prompts)
        tok = self.tokenizer
        # tokenized once; batches of similar length (less left padding), answers in input order
        ids = tok(list(prompts), add_special_tokens=False).input_ids
        order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            for start in range(0, len(prompts), self.config.batch_size):
                idx = order[start : start + self.config.batch_size]
                t0 = time.perf_counter()
                enc = tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(self.device)
                if enc.input_ids.shape[1] + max_new > self.max_context:
                    raise ModelError(
                        f"prompt of {enc.input_ids.shape[1]} tokens + {max_new} new tokens exceeds "
                        f"the context of {self.max_context}"
                    )
                gen_kwargs: dict[str, Any] = {
                    "max_new_tokens": max_new,
                    "do_sample": sample,
                    "pad_token_id": tok.pad_token_id,
                }
                if repetition_penalty is not None and repetition_penalty != 1.0:
                    gen_kwargs["repetition_penalty"] = float(repetition_penalty)
                if sample:
                    torch.manual_seed(seed)
                    gen_kwargs["temperature"] = self.config.temperature
                else:
                    gen_kwargs.update(temperature=None, top_p=None, top_k=None)
                if extra is not None:
                    gen_kwargs.update(extra(len(idx)))
                with torch.inference_mode():
                    out = self.model.generate(**enc, **gen_kwargs)
                dt = time.perf_counter() - t0
                n_in = enc.input_ids.shape[1]
                for i in range(len(idx)):
                    new = out[i, n_in:]
                    real = new[new != tok.pad_token_id] if tok.pad_token_id is not None else new
                    eos = tok.eos_token_id
                    n_out = int((new != tok.pad_token_id).sum()) + (
                        1 if eos is not None and eos == tok.pad_token_id and (new == eos).any() else 0
                    )
                    results[idx[i]] = (
                        Generation(
                            text=tok.decode(real, skip_special_tokens=True).strip(),
                            tokens_in=int(enc.attention_mask[i].sum()),
                            tokens_out=n_out,
                            latency_s=dt / len(idx),
                        )
                    )
        finally:
            tok.padding_side = old_side
        return [g for g in results if g is not None]


def _contiguous_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(), *args[1:])


__all__ = ["HFBackend", "apply_adapter", "load_backend", "cpu_supports_bf16", "split_common_prefix"]
