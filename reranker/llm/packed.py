"""Packed-suffix scoring: every candidate suffix of one prompt prefix in a single forward pass.

The KV-cache path of `HFBackend` runs the prefix once and then a padded batch of suffixes over
copies of the prefix keys and values. On a CPU most of that pass is spent copying the expanded
cache and in the masked SDPA kernel. Here the suffixes are concatenated into ONE sequence
(no padding) whose position ids restart after the prefix for each suffix, and a registered
attention function computes, for each suffix token,

    softmax([q . k_prefix, q . k_own_suffix (causal, same segment only)]) @ [v_prefix, v_own]

as two flash-attention calls: all suffix tokens against the shared prefix keys (never copied
per suffix; grouped-query heads are handled by regrouping the queries, not by repeating the
keys), and each suffix causally against itself on a small padded grid; the two softmax blocks
are merged exactly through their log-sum-exps.
Mathematically this is the same attention as running each `prefix + suffix` on its own (the
fp32 tests check it against the naive path to 1e-4).

The attention function is registered with transformers' `AttentionInterface` under
`ATTN_NAME`; without the `reranker_prefix` keyword argument it delegates to the stock SDPA
implementation, so generation and ordinary forwards are unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ATTN_NAME = "reranker_prefix_sdpa"
_REGISTERED = False


@dataclass
class PrefixKV:
    """Per-layer post-rotary keys/values of the shared prefix ((1, kv_heads, P, head_dim) each)
    and the packed-suffix layout from `layout()`."""

    keys: list[Any]
    values: list[Any]
    pad_index: Any
    """(n * m,) packed position of each slot of the padded (n suffixes, m tokens) grid."""
    unpad_index: Any
    """(S,) slot in the padded grid of each packed token."""
    n: int
    m: int


def _flash(q: Any, k: Any, v: Any, causal: bool, scale: float) -> tuple[Any, Any]:
    """(output, logsumexp) of softmax(q k^T * scale) v; the CPU flash kernel returns both."""
    import torch

    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)


def _attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    prefix: PrefixKV | None = kwargs.pop("reranker_prefix", None)
    if prefix is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    import torch

    # query (1, H, S, d); key/value (1, KVH, S, d): the packed suffix tokens only
    _, n_heads, s_len, d = query.shape
    kv_heads = key.shape[1]
    groups = n_heads // kv_heads
    scale = scaling if scaling is not None else d**-0.5
    q = query[0]
    # 1) every suffix token against the shared prefix: heads h = kv * groups + g share kv head
    #    `kv`, so the queries are regrouped (KVH, groups * S, d) and the prefix keys never copied
    qa = q.reshape(kv_heads, groups * s_len, d).unsqueeze(0)
    k_pre = prefix.keys[module.layer_idx]
    v_pre = prefix.values[module.layer_idx]
    out_a, lse_a = _flash(qa, k_pre, v_pre, False, scale)
    out_a = out_a.reshape(n_heads, s_len, d)
    lse_a = lse_a.reshape(n_heads, s_len)
    # 2) causal attention inside each suffix, on the padded (n, m) grid (right padding: real
    #    tokens never see the pads after them)
    n, m = prefix.n, prefix.m
    qb = q[:, prefix.pad_index].reshape(n_heads, n, m, d).transpose(0, 1)
    kb = key[0][:, prefix.pad_index].reshape(kv_heads, n, m, d).transpose(0, 1)
    vb = value[0][:, prefix.pad_index].reshape(kv_heads, n, m, d).transpose(0, 1)
    if groups > 1:
        kb = kb.repeat_interleave(groups, dim=1)
        vb = vb.repeat_interleave(groups, dim=1)
    out_b, lse_b = _flash(qb, kb, vb, True, scale)
    out_b = out_b.transpose(0, 1).reshape(n_heads, n * m, d)[:, prefix.unpad_index]
    lse_b = lse_b.transpose(0, 1).reshape(n_heads, n * m)[:, prefix.unpad_index]
    # 3) merge the two softmax blocks by their log-sum-exps
    lse = torch.logaddexp(lse_a, lse_b)
    out = (lse_a - lse).exp_().unsqueeze(-1) * out_a.float()
    out += (lse_b - lse).exp_().unsqueeze(-1) * out_b.float()
    # (H, S, d) -> (1, S, H, d), the layout the attention modules expect back
    return out.to(query.dtype).transpose(0, 1).unsqueeze(0).contiguous(), None


def install(model: Any) -> bool:
    """Register the attention function and switch `model` to it; False when the model does not
    dispatch attention through transformers' AttentionInterface (then use the KV-cache path)."""
    global _REGISTERED
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:  # pragma: no cover - older transformers
        return False
    if not _REGISTERED:
        AttentionInterface.register(ATTN_NAME, _attention)
        AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
        _REGISTERED = True
    can = getattr(model, "_can_set_attn_implementation", None)
    try:
        on_cpu = next(model.parameters()).device.type == "cpu"
    except (StopIteration, AttributeError):
        on_cpu = False
    if not on_cpu:  # the merge uses the CPU flash kernel's log-sum-exp
        return False
    current = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if can is None or not can() or current not in ("sdpa", ATTN_NAME):
        log.debug("packed scoring unavailable for %s (attention %s)", type(model).__name__, current)
        return False
    try:
        model.set_attn_implementation(ATTN_NAME)
    except Exception as e:  # pragma: no cover - defensive: fall back to the cache path
        log.debug("could not switch attention: %s", e)
        return False
    return model.config._attn_implementation == ATTN_NAME


def layout(prefix_len: int, lengths: list[int]):
    """(position_ids (1, S), pad_index, unpad_index, m, last-token index of each suffix) for
    suffixes of the given lengths packed after a prefix of `prefix_len` tokens."""
    import torch

    lens = torch.tensor(lengths)
    n, m = len(lengths), int(lens.max())
    seg = torch.repeat_interleave(torch.arange(n), lens)
    starts = torch.cumsum(lens, 0) - lens
    offs = torch.arange(int(lens.sum())) - starts[seg]
    pos = (offs + prefix_len).unsqueeze(0)
    unpad = seg * m + offs
    pad = torch.zeros(n * m, dtype=torch.long)  # pad slots point at token 0 (never attended)
    pad[unpad] = torch.arange(len(seg))
    ends = starts + lens - 1
    return pos, pad, unpad, m, ends


__all__ = ["ATTN_NAME", "PrefixKV", "install", "layout"]
