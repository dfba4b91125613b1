"""In-process transformers backend: shared-prefix label scoring and batched generation on CPU."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from .base import Generation, LLMConfig, ScoreResult
from .models import materialize

log = logging.getLogger(__name__)

_LOADED: dict[str, HFBackend] = {}
_LOCK = threading.Lock()


def cpu_supports_bf16() -> bool:
    """True when torch reports native bf16 kernels on this CPU (AVX512-BF16 / AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - depends on the torch build
        return False


def load_backend(config: LLMConfig | None = None, **overrides: Any) -> HFBackend:
    """A process-wide cached backend per distinct config (models load once)."""
    cfg = (config or LLMConfig()).model_copy(update=overrides) if overrides else (config or LLMConfig())
    key = cfg.model_dump_json()
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = HFBackend(cfg)
        return _LOADED[key]


class HFBackend:
    """A causal LM from transformers, run in eval + inference mode on CPU.

    `score_options` runs the shared prompt prefix once and reuses its KV cache for every suffix
    (expanded over the batch; suffixes right-padded, logits read at each one's last real token).
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
        self.dtype = self._pick_dtype()
        t0 = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                resolved.path, local_files_only=resolved.offline
            )
            self.model = AutoModelForCausalLM.from_pretrained(
                resolved.path, dtype=self.dtype, local_files_only=resolved.offline
            )
        except OSError as e:
            raise ModelError(f"could not load model {self.config.model!r} from {resolved.path}: {e}") from e
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
        self._packed = False
        if self.config.scoring == "packed":
            from . import packed

            self._packed = packed.install(self.model)
        log.info(
            "loaded %s (%s) in %.1fs, dtype=%s, threads=%d",
            self.config.model,
            resolved.path,
            time.perf_counter() - t0,
            self.dtype,
            torch.get_num_threads(),
        )

    # ------------------------------------------------------------------ basics
    def _pick_dtype(self):
        torch = self._torch
        if self.config.dtype == "fp32":
            return torch.float32
        if self.config.dtype == "bf16":
            return torch.bfloat16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32

    @property
    def device(self):
        """Where the model's weights are (inputs are moved there; CPU unless moved to a GPU)."""
        return next(self.model.parameters()).device

    @property
    def name(self) -> str:
        return self.config.model

    @property
    def max_context(self) -> int:
        own = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        return min(own, self.config.max_context) if self.config.max_context else own

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def truncate_tokens(self, text: str, n_tokens: int) -> str:
        """The text cut to at most `n_tokens` tokens (with an ellipsis when cut)."""
        if n_tokens <= 0:
            return ""
        ids = self.encode(text)
        if len(ids) <= n_tokens:
            return text
        return self.tokenizer.decode(ids[:n_tokens]).rstrip() + "..."

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

    # ------------------------------------------------------------------ scoring
    def _label_logits(self, h, label_ids: list[int]) -> np.ndarray:
        w = self._head_w[label_ids].float()
        out = h.float() @ w.T
        if self._head_b is not None:
            out = out + self._head_b[label_ids].float()
        return out.cpu().numpy().astype(np.float64)

    def _pad_right(self, seqs: list[list[int]]):
        torch = self._torch
        n = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), n), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        dev = self.device
        return ids.to(dev), mask.to(dev), lengths.to(dev)

    def score_options(
        self,
        prompt_prefix: str,
        suffixes: Sequence[str],
        labels: Sequence[str],
        return_hidden: bool = False,
    ) -> ScoreResult:
        """Next-token logits over `labels` after `prompt_prefix + suffix`, for every suffix.

        The prefix runs once; its KV cache is expanded over each batch of suffixes. Prefix and
        suffixes are tokenized separately (use `score_prompts` to split full prompts at a
        token boundary instead).
        """
        pre = self.encode(prompt_prefix) if prompt_prefix else []
        sufs = [self.encode(s) for s in suffixes]
        return self.score_token_ids(pre, sufs, labels, return_hidden=return_hidden)

    def score_prompts(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        """Score full prompts: tokenize each, share their longest common token prefix (each
        keeps at least one token of its own), and score through the KV-cache path. The tokens
        are exactly those of each full prompt, so results equal `score_full(prompts)`."""
        seqs = [list(x) for x in self.tokenizer(list(prompts), add_special_tokens=False).input_ids]
        if not seqs:
            return ScoreResult(logits=np.zeros((0, len(labels))))
        limit = min(len(s) for s in seqs) - 1
        first = seqs[0]
        n = 0
        while n < limit and all(s[n] == first[n] for s in seqs[1:]):
            n += 1
        return self.score_token_ids(first[:n], [s[n:] for s in seqs], labels, return_hidden)

    def score_token_ids(
        self,
        prefix_ids: Sequence[int],
        suffix_ids: Sequence[Sequence[int]],
        labels: Sequence[str],
        return_hidden: bool = False,
    ) -> ScoreResult:
        """The shared-prefix KV-cache path over token ids (see `score_options`)."""
        torch = self._torch
        from transformers import DynamicCache

        t0 = time.perf_counter()
        label_ids = self.label_token_ids(labels)
        pre = list(prefix_ids)
        sufs = [list(s) for s in suffix_ids]
        for i, s in enumerate(sufs):
            if not s:
                raise ModelError(f"score_options: suffix {i} is empty (needs at least one token)")
        total = len(pre) + max((len(s) for s in sufs), default=0)
        if total > self.max_context:
            raise ModelError(f"prompt of {total} tokens exceeds the context of {self.max_context}")
        # the packed attention merges blocks with the CPU flash kernel: a model moved to a GPU
        # after loading (the fine-tuning trainer does) takes the KV-cache path instead
        if self._packed and pre and self.device.type == "cpu":
            return self._score_packed(pre, sufs, label_ids, return_hidden, t0)
        logits, hiddens = [], []
        with torch.inference_mode():
            base_cache = None
            if pre:
                out = self._decoder(
                    input_ids=torch.tensor([pre], dtype=torch.long, device=self.device), use_cache=True
                )
                base_cache = out.past_key_values
            bs = self.config.batch_size
            for start in range(0, len(sufs), bs):
                chunk = sufs[start : start + bs]
                ids, mask, lengths = self._pad_right(chunk)
                b = len(chunk)
                kwargs: dict[str, Any] = {}
                if base_cache is not None:
                    kwargs["past_key_values"] = DynamicCache(
                        ddp_cache_data=[
                            (layer.keys.expand(b, -1, -1, -1), layer.values.expand(b, -1, -1, -1))
                            for layer in base_cache.layers
                        ]
                    )
                    mask = torch.cat([torch.ones((b, len(pre)), dtype=torch.long, device=mask.device), mask], dim=1)
                out = self._decoder(input_ids=ids, attention_mask=mask, use_cache=True, **kwargs)
                h = out.last_hidden_state[torch.arange(b, device=lengths.device), lengths - 1]
                logits.append(self._label_logits(h, label_ids))
                if return_hidden:
                    hiddens.append(h.float().cpu().numpy())
        return _result(logits, hiddens, len(labels), return_hidden, len(pre) + sum(len(s) for s in sufs), t0)

    def _score_packed(
        self, pre: list[int], sufs: list[list[int]], label_ids: list[int], return_hidden: bool, t0: float
    ) -> ScoreResult:
        """The prefix once (KV cache kept), then the suffixes concatenated in chunks of at most
        `_PACK_TOKENS` tokens, each chunk one unpadded forward (see `reranker.llm.packed`)."""
        torch = self._torch
        from .packed import PrefixKV, layout

        dev = self.device
        pad_id = self.tokenizer.pad_token_id
        logits, hiddens = [], []
        with torch.inference_mode():
            # causal: pad tokens appended after the prefix change nothing before them; they
            # round the length up so oneDNN reuses its compiled matmul kernels across users
            n_pre = len(pre)
            padded = pre + [pad_id] * (_round_up(n_pre) - n_pre)
            out = self._decoder(input_ids=torch.tensor([padded], dtype=torch.long, device=dev), use_cache=True)
            layers = out.past_key_values.layers
            keys = [layer.keys[:, :, :n_pre] for layer in layers]
            values = [layer.values[:, :, :n_pre] for layer in layers]
            for chunk in _chunks(sufs, _PACK_TOKENS):
                n_tok = sum(len(s) for s in chunk)
                filler = _round_up(n_tok) - n_tok  # one dummy segment, its outputs unused
                lengths = [len(s) for s in chunk] + ([filler] if filler else [])
                pos, pad, unpad, m, ends = layout(n_pre, lengths)
                flat = [t for s in chunk for t in s] + [pad_id] * filler
                ids = torch.tensor([flat], dtype=torch.long, device=dev)
                res = self._decoder(
                    input_ids=ids,
                    position_ids=pos.to(dev),
                    use_cache=False,
                    reranker_prefix=PrefixKV(keys, values, pad.to(dev), unpad.to(dev), len(lengths), m),
                )
                ends = ends[: len(chunk)]
                h = res.last_hidden_state[0, ends.to(dev)]
                logits.append(self._label_logits(h, label_ids))
                if return_hidden:
                    hiddens.append(h.float().cpu().numpy())
        return _result(logits, hiddens, len(label_ids), return_hidden, len(pre) + sum(len(s) for s in sufs), t0)

    def score_full(
        self, prompts: Sequence[str], labels: Sequence[str], return_hidden: bool = False
    ) -> ScoreResult:
        """The naive path: every prompt runs in full (no shared prefix). Same outputs as
        `score_options(prefix, suffixes)` when `prompts[i] == prefix + suffixes[i]`."""
        torch = self._torch
        t0 = time.perf_counter()
        label_ids = self.label_token_ids(labels)
        seqs = [self.encode(p) for p in prompts]
        logits, hiddens = [], []
        with torch.inference_mode():
            for start in range(0, len(seqs), self.config.batch_size):
                chunk = seqs[start : start + self.config.batch_size]
                ids, mask, lengths = self._pad_right(chunk)
                out = self._decoder(input_ids=ids, attention_mask=mask, use_cache=False)
                h = out.last_hidden_state[torch.arange(len(chunk), device=lengths.device), lengths - 1]
                logits.append(self._label_logits(h, label_ids))
                if return_hidden:
                    hiddens.append(h.float().cpu().numpy())
        return _result(logits, hiddens, len(labels), return_hidden, sum(len(s) for s in seqs), t0)

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


def _result(
    logits: list[np.ndarray], hiddens: list[np.ndarray], n_labels: int, return_hidden: bool, tokens_in: int, t0: float
) -> ScoreResult:
    """One ScoreResult from the per-batch logits (and hidden states) of a scoring path."""
    return ScoreResult(
        logits=np.concatenate(logits, axis=0) if logits else np.zeros((0, n_labels)),
        hidden=(np.concatenate(hiddens, axis=0) if hiddens else None) if return_hidden else None,
        tokens_in=tokens_in,
        latency_s=time.perf_counter() - t0,
    )


_PACK_TOKENS = 1024
"""Suffix tokens per packed forward (bounds the (heads, S, prefix + S) score matrix)."""


_BUCKET = 32
"""Packed lengths are rounded up to a multiple of this (CPU matmul kernels are compiled per shape)."""


def _round_up(n: int, step: int = _BUCKET) -> int:
    return -(-n // step) * step


def _chunks(seqs: list[list[int]], budget: int) -> list[list[list[int]]]:
    """Consecutive groups of sequences with at most `budget` tokens each (at least one per group)."""
    out: list[list[list[int]]] = []
    cur: list[list[int]] = []
    n = 0
    for s in seqs:
        if cur and n + len(s) > budget:
            out.append(cur)
            cur, n = [], 0
        cur.append(s)
        n += len(s)
    if cur:
        out.append(cur)
    return out


def apply_adapter(model: Any, adapter: str, merge: bool = False) -> Any:
    """Load a peft LoRA adapter folder onto a transformers model (peft imported lazily).

    Unmerged, the adapter's modules are injected into `model` in place and the same model
    object is returned (scores equal those of the trained adapter); `merge=True` folds the
    deltas into the base weights (no LoRA overhead at inference)."""
    from .models import check_adapter_dir

    path = check_adapter_dir(adapter)
    try:
        from peft import PeftModel
    except ImportError as e:
        raise ModelError(
            f"loading the adapter {path} needs `peft`: pip install 'reranker[finetune]' (or peft)"
        ) from e
    try:
        wrapped = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except Exception as e:  # peft raises ValueError/KeyError/RuntimeError on a mismatched base
        raise ModelError(f"could not apply the adapter {path}: {type(e).__name__}: {e}") from e
    if merge:
        return wrapped.merge_and_unload()
    return wrapped.get_base_model()


def split_common_prefix(prompts: Sequence[str]) -> tuple[str, list[str]]:
    """Longest common prefix of the prompts, cut back to just after a newline so that every
    suffix keeps at least one character; returns (prefix, suffixes)."""
    if not prompts:
        return "", []
    first = prompts[0]
    limit = min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts[1:]):
        n += 1
    cut = first.rfind("\n", 0, n) + 1 if n > 0 else 0
    cut = max(0, min(cut, limit))
    return first[:cut], [p[cut:] for p in prompts]


__all__ = ["HFBackend", "apply_adapter", "load_backend", "cpu_supports_bf16", "split_common_prefix"]
