"""Label scoring of the transformers backend: the shared-prefix KV-cache path, the packed path
(all suffixes in one unpadded sequence, see `reranker.llm.packed`) and the naive full path.

`HFScoring` is a mixin of `reranker.llm.hf.HFBackend`: it needs the loaded model's decoder,
LM-head weights, tokenizer and config, which `HFBackend.__init__` sets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError
from .base import LLMConfig, ScoreResult


class HFScoring:
    """Scoring methods of `HFBackend` (`score_prompts`, `score_options`, `score_token_ids`,
    `score_full`)."""

    config: LLMConfig
    tokenizer: Any
    _torch: Any
    _decoder: Any
    _head_w: Any
    _head_b: Any
    _packed: bool

    if TYPE_CHECKING:  # defined by HFBackend

        @property
        def device(self) -> Any: ...

        @property
        def max_context(self) -> int: ...

        def encode(self, text: str) -> list[int]: ...

        def label_token_ids(self, labels: Sequence[str]) -> list[int]: ...

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
        if not prompts:  # (the tokenizer fails on an empty batch)
            return ScoreResult(logits=np.zeros((0, len(labels))))
        seqs = [list(x) for x in self.tokenizer(list(prompts), add_special_tokens=False).input_ids]
        n = common_prefix_length(seqs)
        return self.score_token_ids(seqs[0][:n], [s[n:] for s in seqs], labels, return_hidden)

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


def common_prefix_length(seqs: Sequence[Sequence[Any]]) -> int:
    """Length of the longest common prefix of non-empty sequences (token ids or strings), capped
    so that every sequence keeps at least one element of its own."""
    first = seqs[0]
    limit = min(len(s) for s in seqs) - 1
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs[1:]):
        n += 1
    return n


def split_common_prefix(prompts: Sequence[str]) -> tuple[str, list[str]]:
    """Longest common prefix of the prompts, cut back to just after a newline so that every
    suffix keeps at least one character; returns (prefix, suffixes)."""
    if not prompts:
        return "", []
    first = prompts[0]
    limit = min(len(p) for p in prompts) - 1
    n = common_prefix_length(prompts)
    cut = first.rfind("\n", 0, n) + 1 if n > 0 else 0
    cut = max(0, min(cut, limit))
    return first[:cut], [p[cut:] for p in prompts]


__all__ = ["HFScoring", "common_prefix_length", "split_common_prefix"]
