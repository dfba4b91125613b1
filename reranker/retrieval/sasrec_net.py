"""The torch side of SASRec (`reranker.retrieval.sasrec`): the network, the torch
thread/device helpers, the padded windows and the training loop with negative sampling.

torch is imported only inside these functions, so importing this module (and `sasrec`)
does not import torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

    from .sasrec import SASRec, SASRecConfig

log = logging.getLogger("reranker.retrieval.sasrec")  # the log lines keep their logger

__all__ = ["negatives", "train_net"]


def _build_net(n_items: int, cfg: SASRecConfig) -> Any:
    """The torch module (built lazily: torch is imported here)."""
    import torch
    from torch import nn

    class SASRecNet(nn.Module):
        """Item + positional embeddings, causal self-attention blocks, final layer norm."""

        def __init__(self) -> None:
            super().__init__()
            h = cfg.hidden
            self.hidden = h
            self.heads = cfg.heads
            self.max_len = cfg.max_len
            self.item_emb = nn.Embedding(n_items + 1, h, padding_idx=0)
            self.pos_emb = nn.Embedding(cfg.max_len, h)
            self.emb_dropout = nn.Dropout(cfg.dropout)
            self.attn_ln = nn.ModuleList(nn.LayerNorm(h, eps=1e-8) for _ in range(cfg.blocks))
            self.attn = nn.ModuleList(
                nn.MultiheadAttention(h, cfg.heads, dropout=cfg.dropout, batch_first=True)
                for _ in range(cfg.blocks)
            )
            self.ffn_ln = nn.ModuleList(nn.LayerNorm(h, eps=1e-8) for _ in range(cfg.blocks))
            self.ffn = nn.ModuleList(
                nn.Sequential(nn.Linear(h, h), nn.Dropout(cfg.dropout), nn.ReLU(),
                              nn.Linear(h, h), nn.Dropout(cfg.dropout))
                for _ in range(cfg.blocks)
            )
            self.last_ln = nn.LayerNorm(h, eps=1e-8)
            for name, p in self.named_parameters():
                if p.dim() > 1 and "ln" not in name:
                    nn.init.xavier_normal_(p)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            """(B, L) left-padded item indices (0 = padding) -> (B, L, hidden)."""
            b, L = seq.shape
            valid = seq != 0
            x = self.item_emb(seq) * (self.hidden ** 0.5)
            # positions count from the window's first item (padding: 0, masked anyway), so a
            # k-item query sees the positions a training prefix of k items saw
            pos = (torch.cumsum(valid.long(), dim=1) - 1).clamp(min=0)
            x = self.emb_dropout(x + self.pos_emb(pos))
            keep = valid.unsqueeze(-1).to(x.dtype)
            x = x * keep
            # True = may not attend: the future, and padding keys (a position always sees
            # itself, so padded rows stay finite; they are zeroed after every block)
            eye = torch.eye(L, dtype=torch.bool, device=seq.device)
            causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seq.device), diagonal=1)
            blocked = causal[None] | (~valid[:, None, :] & ~eye[None])
            blocked = blocked.repeat_interleave(self.heads, dim=0)
            for ln_a, attn, ln_f, ffn in zip(self.attn_ln, self.attn, self.ffn_ln, self.ffn, strict=True):
                q = ln_a(x)
                out, _ = attn(q, x, x, attn_mask=blocked, need_weights=False)
                x = q + out
                x = ln_f(x)
                x = (x + ffn(x)) * keep
            return self.last_ln(x)

    return SASRecNet()


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run with `n` torch CPU threads (0: unchanged), restoring the previous setting."""
    import torch

    before = torch.get_num_threads()
    if n > 0 and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _device(name: str) -> torch.device:
    """The torch device, or a ConfigError when this machine has none of that kind."""
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"SASRecConfig.device: {name!r} asked for, but torch sees no CUDA device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("SASRecConfig.device: 'mps' asked for, but torch sees no MPS device")
    return torch.device(name)


def _windows(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Left-padded (len(seqs), length) int64 matrix of the last `length` items (1-based
    indices, 0 = padding) of each sequence."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for r, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[r, length - len(s):] = s
    return out


def train_net(model: SASRec, net: Any, train: np.ndarray, train_users: np.ndarray, m: int,
              on_epoch: Callable[[int, SASRec], None] | None) -> list[float]:
    """Adam on the BCE of next-item vs one sampled negative per position (see `sasrec`);
    the mean loss per epoch. `model` gives the config, interactions and device; with
    `on_epoch` it gets ``net_`` / ``losses_`` set (eval mode) before each call."""
    import torch
    import torch.nn.functional as F

    cfg = model.config
    rng = np.random.default_rng(cfg.seed)
    # sorted (user, item) keys of the interactions, to reject negatives the user has seen
    coo = model.R.tocoo()
    seen_keys = np.sort(coo.row.astype(np.int64) * m + coo.col)
    emb = [p for n, p in net.named_parameters() if n.startswith("item_emb")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("item_emb")]
    opt = torch.optim.Adam(
        [{"params": emb, "weight_decay": cfg.l2}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98),
    )
    inp_all, pos_all = train[:, :-1], train[:, 1:]
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        net.train()
        perm = rng.permutation(len(train))
        total, count = 0.0, 0
        for lo in range(0, len(perm), cfg.batch_size):
            rows = perm[lo: lo + cfg.batch_size]
            inp, pos = inp_all[rows], pos_all[rows]
            neg = negatives(rng, train_users[rows], pos.shape, seen_keys, m)
            inp_t = torch.from_numpy(inp).to(model._device)
            pos_t = torch.from_numpy(pos).to(model._device)
            neg_t = torch.from_numpy(neg).to(model._device)
            h = net(inp_t)
            pos_logit = (h * net.item_emb(pos_t)).sum(-1)
            neg_logit = (h * net.item_emb(neg_t)).sum(-1)
            mask = pos_t != 0
            loss = F.binary_cross_entropy_with_logits(
                pos_logit[mask], torch.ones_like(pos_logit[mask])
            ) + F.binary_cross_entropy_with_logits(neg_logit[mask], torch.zeros_like(neg_logit[mask]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
            count += len(rows)
        losses.append(total / max(count, 1))
        log.debug("SASRec epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, losses[-1])
        if on_epoch is not None:
            net.eval()
            model.net_ = net
            model.losses_ = losses
            with torch.no_grad():
                on_epoch(epoch + 1, model)
    return losses


def negatives(rng: np.random.Generator, users: np.ndarray, shape: tuple[int, ...],
              seen_keys: np.ndarray, m: int) -> np.ndarray:
    """One uniform negative (1-based) per position, resampled (up to 20 times) while the
    user has interacted with it."""
    neg = rng.integers(0, m, size=shape)
    ukey = np.broadcast_to(users[:, None].astype(np.int64) * m, shape)
    redo = np.ones(shape, dtype=bool)
    for _ in range(20):
        key = ukey[redo] + neg[redo]
        p = np.minimum(np.searchsorted(seen_keys, key), len(seen_keys) - 1)
        hit = seen_keys[p] == key
        if not hit.any():
            break
        idx = np.flatnonzero(redo.ravel())[hit]
        redo = np.zeros(shape, dtype=bool)
        redo.ravel()[idx] = True
        neg.ravel()[idx] = rng.integers(0, m, size=len(idx))
    return (neg + 1).astype(np.int64)
