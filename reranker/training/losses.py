"""Training losses that read the LM head only at the answer positions.

For a 135M model with a 49k vocabulary, the full (batch x seq x vocab) logits are a large share
of the FLOPs and most of the activation memory; these losses never build them.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ModelError
from .examples import IGNORE, TokenizedExample


def require_finite(
    what: str, value: float, step: int, lr: float, micro: int | None = None, of: int = 1
) -> None:
    """Stop training with a ModelError naming the optimizer `step` (1-based) when the training
    `what` (the loss, the gradient norm) is NaN or infinite: the weights are not updated with
    it, and the last checkpoint stays the one to resume from."""
    if math.isfinite(value):
        return
    part = f" (micro-batch {micro} of {of})" if micro is not None and of > 1 else ""
    raise ModelError(
        f"training {what} is {value} at step {step}{part}; the run stopped before updating the "
        f"weights with it. Lower lr (now {lr:g}), add warmup_steps, or check the examples"
    )


def answer_loss(backend: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Mean next-token cross-entropy over the positions whose label is not IGNORE, reading
    the LM head only at those rows (not the full batch x seq x vocab logits)."""
    import torch.nn.functional as F

    h = backend.decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    tgt = labels[:, 1:]
    sel = tgt != IGNORE
    hs = h[:, :-1][sel]
    logits = (hs @ backend._head_w.T).float()
    if backend._head_b is not None:
        logits = logits + backend._head_b.float()
    return F.cross_entropy(logits, tgt[sel])


def shared_prefix_loss(backend: Any, seqs: list[TokenizedExample], device: Any = None) -> tuple[Any, int]:
    """Answer-token cross-entropy of sequences that share a token prefix: the longest common
    prefix (ending before every answer) runs once with gradients; its KV cache is expanded over
    the suffixes, which run as one right-padded batch. Same loss as `answer_loss` on the full
    sequences (up to float rounding), with the prefix computed once instead of len(seqs) times.
    Returns (loss, tokens of the full sequences)."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    first = seqs[0].input_ids
    limit = min(s.n_prompt for s in seqs) - 1  # every suffix keeps >= 1 prompt token
    n = 0
    while n < limit and all(s.input_ids[n] == first[n] for s in seqs[1:]):
        n += 1
    dev = device or backend.device
    decoder = backend.decoder
    b = len(seqs)
    width = max(len(s) - n for s in seqs)
    pad = backend.tokenizer.pad_token_id
    ids = torch.full((b, width), pad, dtype=torch.long)
    mask = torch.zeros((b, n + width), dtype=torch.long)
    labels = torch.full((b, width), IGNORE, dtype=torch.long)
    for i, s in enumerate(seqs):
        suf = s.input_ids[n:]
        ids[i, : len(suf)] = torch.tensor(suf)
        mask[i, : n + len(suf)] = 1
        labels[i, s.n_prompt - n : len(s) - n] = torch.tensor(s.input_ids[s.n_prompt :])
    ids, mask, labels = ids.to(dev), mask.to(dev), labels.to(dev)
    kwargs: dict[str, Any] = {}
    if n:
        pre = decoder(input_ids=torch.tensor([first[:n]], dtype=torch.long, device=dev), use_cache=True)
        cache = pre.past_key_values
        kwargs["past_key_values"] = DynamicCache(
            ddp_cache_data=[(lay.keys.expand(b, -1, -1, -1), lay.values.expand(b, -1, -1, -1))
                            for lay in cache.layers]
        )
    h = decoder(input_ids=ids, attention_mask=mask, use_cache=bool(n), **kwargs).last_hidden_state
    tgt = labels[:, 1:]
    sel = tgt != IGNORE
    logits = (h[:, :-1][sel] @ backend._head_w.T).float()
    if backend._head_b is not None:
        logits = logits + backend._head_b.float()
    return F.cross_entropy(logits, tgt[sel]), sum(len(s) for s in seqs)
