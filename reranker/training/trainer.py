"""The fine-tuning loop: plain torch, LoRA via peft, CPU by default, GPU when present.

Speed (what makes it faster than a plain HF Trainer loop on CPU):
- the loss reads the LM head only at the answer positions (1 token for pointwise/verbalizer):
  no (batch x seq x vocab) logits, which for a 135M model with a 49k vocabulary are a large
  share of the FLOPs and most of the activation memory;
- short prompts (item descriptions off by default, `item_text_tokens`), right padding to the
  longest sequence of a micro-batch only, and micro-batches built from length-sorted chunks
  (length bucketing, batch order shuffled), so little compute goes to padding;
- bf16 base weights where the CPU supports them, fp32 LoRA matrices (peft autocast).

Checkpoints (`<out>/checkpoints/step-NNNNNN/`, written to a temp folder and moved in with
`os.replace`) hold the adapter, `trainer_state.pt` (optimizer, scheduler, torch RNG, step) and
`state.json` (loss log, validation history). `resume=True` continues from the last one at its
step; Ctrl-C saves one before re-raising. Every `validation.every` steps a regime-B NDCG@10 on a
fixed validation subset is computed with the matching ranker and the adapter in place; the best
adapter is kept in `<out>/best/`, the final one in `<out>/adapter/`.

The losses live in `losses.py`, checkpoint and adapter I/O in `checkpoint.py`, validation in
`validation.py`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .config import FinetuneConfig
from .examples import IGNORE, TokenizedExample
from .lora import base_model_hash, inject_lora, template_hashes
from .losses import answer_loss, require_finite, shared_prefix_loss
from .validation import ValidationMixin

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    """What a run produced (also written to `<out>/result.json`)."""

    out_dir: Path
    adapter: Path
    best: Path | None
    steps: int
    examples: int
    sequences: int
    fingerprint: str
    losses: list[dict] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)
    best_ndcg: float | None = None
    throughput: dict[str, float] = field(default_factory=dict)
    resumed_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def load_config(config: FinetuneConfig | dict | str | Path) -> tuple[FinetuneConfig, list[Path]]:
    """A FinetuneConfig and the folders relative data paths are resolved against."""
    if isinstance(config, FinetuneConfig):
        return config, [Path.cwd()]
    if isinstance(config, dict):
        return FinetuneConfig.from_dict(config), [Path.cwd()]
    p = Path(config)
    cfg = FinetuneConfig.from_yaml(p)
    folder = p.resolve().parent
    return cfg, [folder, folder.parent, Path.cwd()]


def load_dataset(cfg: FinetuneConfig, base_dirs: list[Path]):
    """The config's data, with its order of ties in time (``ties`` / ``tie_seed``) set; with
    ``cold``, without the cold items' (or users') interactions (regime C's fit data)."""
    data = _load_raw(cfg, base_dirs).with_tie_order(cfg.ties, cfg.tie_seed)
    if cfg.cold is None:
        return data
    from ..evaluation.cold_start import cold_fit_data

    warm, cold = cold_fit_data(data, cfg.cold)
    log.info("regime c (cold %s): %d cold %s and their %d interactions left out of training", cfg.cold.kind,
             len(cold), cfg.cold.kind, data.n_interactions - warm.n_interactions)
    return warm


def _load_raw(cfg: FinetuneConfig, base_dirs: list[Path]):
    spec = cfg.data
    if spec.path is not None:
        from ..data.loaders import load

        p = Path(spec.path).expanduser()
        if not p.is_absolute():
            tried = [(b / p).resolve() for b in base_dirs]
            found = [t for t in tried if t.exists()]
            if not found:
                raise ConfigError(f"data.path: {spec.path!r} not found (tried {', '.join(map(str, tried))})")
            p = found[0]
        return load(p, format=spec.format)
    if spec.name is not None:  # a data set `reranker data fetch` knows: the cache, fetched on first use
        from ..data.fetch import load_named

        return load_named(spec.name, spec.format if "format" in spec.model_fields_set else None)
    from ..data.synthetic import generate_world

    s = spec.synthetic
    assert s is not None  # DataSpec holds exactly one of path / name / synthetic
    return generate_world(seed=s.seed, n_users=s.n_users, n_items=s.n_items).dataset


class Trainer(ValidationMixin):
    """Builds the examples, injects LoRA and runs the loop (see module docstring)."""

    def __init__(self, config: FinetuneConfig | dict | str | Path, out_dir: str | Path | None = None,
                 progress: bool = True) -> None:
        self.config, self._base_dirs = load_config(config)
        cfg = self.config
        if "+" in cfg.model and not Path(cfg.model).exists():
            raise ConfigError("model: give the base model only (not base+adapter)")
        from ..llm.models import resolve_model

        resolve_model(cfg.model)  # a missing base model fails here, before any work
        from ..paths import check_output_dir

        self.out_dir = check_output_dir(out_dir or cfg.output_dir, "--out" if out_dir else "output_dir")
        self.progress = progress
        self.ckpt_dir = self.out_dir / "checkpoints"
        self._prepared = False
        self._epoch_cache: tuple[int, list[list[int]]] | None = None  # (epoch, its micro-batches)

    # ------------------------------------------------------------------ setup
    def prepare(self) -> None:
        if self._prepared:
            return
        import torch

        from ..data.splits import leave_one_out
        from ..llm.base import LLMConfig
        from ..llm.hf import HFBackend
        from .examples import (
            build_examples,
            fingerprint,
            make_ranker,
            make_retriever,
            tokenize_examples,
        )

        cfg = self.config
        torch.manual_seed(cfg.seed)
        data = load_dataset(cfg, self._base_dirs)
        self.split = leave_one_out(data, min_interactions=cfg.data.min_interactions)
        if cfg.cf_hint != "none" and cfg.examples.cf_fraction > 0:
            log.warning("cf_hint with examples.cf_fraction %.2f: the retriever that gives the hint also picks "
                        "that share of the negatives, which fills its high band with wrong answers; the adapter "
                        "may learn the hint backwards (eval/results/finetune/issue18.md). cf_fraction: 0 avoids it",
                        cfg.examples.cf_fraction)
        self.retriever = make_retriever(cfg.examples, self.split.train)
        self.examples = build_examples(self.split, cfg.examples, seed=cfg.seed, retriever=self.retriever)
        self.llm_config = LLMConfig(
            model=cfg.model, dtype=cfg.dtype, threads=cfg.threads, item_text_tokens=cfg.item_text_tokens,
            max_context=max(2048, cfg.max_seq_len),
        )
        self.backend = HFBackend(self.llm_config)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type != "cpu":
            # transformers wraps `PreTrainedModel.to` in functools.wraps, which mypy cannot bind
            self.backend.model.to(self.device)  # type: ignore[arg-type]
        # no prompt-token cap: prompts are exactly those of an inference ranker with default
        # settings; sequences longer than max_seq_len are dropped (and counted) instead
        self.ranker = make_ranker(
            cfg.mode, self.backend, data, cfg.examples.max_history, None,
            **({"window": cfg.validation.n_negatives + 1} if cfg.mode == "listwise" else {}),
            **({"cf_hint": cfg.cf_hint} if cfg.cf_hint != "none" else {}),
        )
        self.sequences, self.dropped = tokenize_examples(
            self.ranker, cfg.mode, self.examples, cfg.seed, cfg.examples.pointwise_negatives,
            cfg.max_seq_len, progress=self.progress,
        )
        if not self.sequences:
            raise DataError(f"no training sequences fit max_seq_len={cfg.max_seq_len}")
        self.fingerprint = fingerprint(self.examples, self.sequences)
        self.peft = inject_lora(self.backend.model, cfg.rank, cfg.alpha, cfg.dropout, cfg.target_modules)
        self.params = [p for p in self.peft.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.lengths = np.array([len(s) for s in self.sequences])
        self.shared = cfg.shared_prefix and cfg.mode == "pointwise"
        # units: what a micro-batch is made of (a whole example's sequences when shared)
        if self.shared:
            groups: dict[int, list[int]] = {}
            for i, sq in enumerate(self.sequences):
                groups.setdefault(sq.group, []).append(i)
            self.units = list(groups.values())
        else:
            self.units = [[i] for i in range(len(self.sequences))]
        self.unit_lengths = np.array([int(self.lengths[u].sum()) for u in self.units])
        per_unit = len(self.sequences) / len(self.units)
        self.units_per_batch = max(1, round(cfg.batch_size / per_unit))
        self.micro_per_epoch = math.ceil(len(self.units) / self.units_per_batch)
        steps = []
        if cfg.max_steps is not None:
            steps.append(cfg.max_steps)
        if cfg.epochs is not None:
            steps.append(max(1, math.ceil(cfg.epochs * self.micro_per_epoch / cfg.grad_accumulation)))
        self.total_steps = min(steps)
        warm, total = cfg.warmup_steps, self.total_steps

        def schedule(step: int) -> float:
            if warm and step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(1, total - warm))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self._val_lists = self._validation_lists()
        self._record_base = {
            "base_model": cfg.model,
            "base_model_sha256": base_model_hash(cfg.model),
            "mode": cfg.mode,
            "templates": template_hashes(None),
            "data_fingerprint": self.fingerprint,
            "llm": {"item_text_tokens": cfg.item_text_tokens, "max_history": cfg.examples.max_history,
                    "max_prompt_tokens": None},
            "config": cfg.model_dump(mode="json"),
        }
        self.losses: list[dict] = []
        self.validation: list[dict] = []
        self.best_ndcg: float | None = None
        self._prepared = True
        log.info("%d examples -> %d sequences (%d dropped), %d steps of %d x %d", len(self.examples),
                 len(self.sequences), self.dropped, self.total_steps, cfg.batch_size, cfg.grad_accumulation)

    # ------------------------------------------------------------------ batches
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Micro-batches of one epoch: seeded shuffle, length-sorted within chunks of 16
        batches (little padding), batch order shuffled."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch, 1777])
        perm = rng.permutation(len(self.units))
        bs = self.units_per_batch
        chunk = bs * 16
        batches: list[list[int]] = []
        for s in range(0, len(perm), chunk):
            idx = sorted(perm[s : s + chunk].tolist(), key=lambda i: (self.unit_lengths[i], i))
            batches += [idx[j : j + bs] for j in range(0, len(idx), bs)]
        order = rng.permutation(len(batches))
        return [[i for u in batches[b] for i in self.units[u]] for b in order]

    def micro_batch(self, m: int) -> list[TokenizedExample]:
        epoch, k = divmod(m, self.micro_per_epoch)
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, self.epoch_batches(epoch))
        return [self.sequences[i] for i in self._epoch_cache[1][k]]

    def _tensors(self, batch: list[TokenizedExample]):
        import torch

        n = max(len(s) for s in batch)
        pad = self.backend.tokenizer.pad_token_id
        ids = torch.full((len(batch), n), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, : len(s)] = torch.tensor(s.input_ids)
            mask[i, : len(s)] = 1
            labels[i, s.n_prompt : len(s)] = torch.tensor(s.input_ids[s.n_prompt :])
        return ids.to(self.device), mask.to(self.device), labels.to(self.device)

    def loss(self, batch: list[TokenizedExample]):
        """Mean cross-entropy over the answer tokens; the LM head runs on those rows only.
        With `shared_prefix` (pointwise), the mean over examples of `shared_prefix_loss`."""
        if not self.shared:
            ids, mask, labels = self._tensors(batch)
            return answer_loss(self.backend, ids, mask, labels), int(mask.sum())
        groups: dict[int, list[TokenizedExample]] = {}
        for sq in batch:
            groups.setdefault(sq.group, []).append(sq)
        total, tokens = None, 0
        for seqs in groups.values():
            loss, n = shared_prefix_loss(self.backend, seqs, self.device)
            total = loss if total is None else total + loss
            tokens += n
        assert total is not None  # a micro-batch is never empty
        return total / len(groups), tokens

    # ------------------------------------------------------------------ loop
    def train(self, resume: bool = False) -> FinetuneResult:
        import torch
        from tqdm.auto import tqdm

        self.prepare()
        cfg = self.config
        step = 0
        resumed = None
        if resume:
            ck = self.checkpoints()
            if ck:
                step = resumed = self.load_checkpoint(ck[-1])
                log.info("resumed from %s at step %d", ck[-1], step)
            else:
                log.warning("--resume: no checkpoint in %s; starting fresh", self.ckpt_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.out_dir / "train_log.jsonl"
        if step == 0 and self._val_lists and not self.validation:
            self._validate_at(0)
        self.peft.train()
        n_seq = n_tok = 0
        t_train = 0.0
        running = None
        deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None
        bar = tqdm(total=self.total_steps, initial=step, desc=f"finetune {cfg.mode}",
                   disable=not self.progress, dynamic_ncols=True)
        try:
            while step < self.total_steps:
                t0 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                total = 0.0
                for a in range(cfg.grad_accumulation):
                    batch = self.micro_batch(step * cfg.grad_accumulation + a)
                    loss, toks = self.loss(batch)
                    value = float(loss.detach())
                    # a NaN / inf loss stops the run (ModelError naming the step), before it
                    # reaches the weights
                    require_finite("loss", value, step + 1, cfg.lr, a + 1, cfg.grad_accumulation)
                    (loss / cfg.grad_accumulation).backward()
                    total += value / cfg.grad_accumulation
                    n_seq += len(batch)
                    n_tok += toks
                norm = torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                require_finite("gradient norm", float(norm), step + 1, cfg.lr)
                self.optimizer.step()
                self.scheduler.step()
                step += 1
                t_train += time.perf_counter() - t0
                running = total if running is None else 0.9 * running + 0.1 * total
                self.losses.append({"step": step, "loss": total, "lr": self.scheduler.get_last_lr()[0]})
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}", ex_s=f"{n_seq / max(t_train, 1e-9):.2f}")
                if step % cfg.log_every == 0 or step == self.total_steps:
                    with log_path.open("a") as f:
                        f.write(json.dumps({**self.losses[-1], "running_loss": running,
                                            "examples_per_s": n_seq / t_train, "tokens_per_s": n_tok / t_train}) + "\n")
                if step % cfg.validation.every == 0 and step < self.total_steps:
                    self._validate_at(step)
                if step % cfg.save_every == 0 and step < self.total_steps:
                    self.save_checkpoint(step)
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("max_minutes reached at step %d of %d; stopping", step, self.total_steps)
                    break
        except KeyboardInterrupt:
            bar.close()
            path = self.save_checkpoint(step)
            log.warning("interrupted at step %d; checkpoint written to %s (continue with --resume)", step, path)
            raise
        bar.close()
        if self._val_lists and (not self.validation or self.validation[-1]["step"] != step):
            self._validate_at(step)
        self.save_checkpoint(step)
        adapter = self._save_named("adapter", step)
        result = FinetuneResult(
            out_dir=self.out_dir, adapter=adapter,
            best=(self.out_dir / "best") if (self.out_dir / "best").is_dir() else None,
            steps=step, examples=len(self.examples), sequences=len(self.sequences),
            fingerprint=self.fingerprint, losses=self.losses, validation=self.validation,
            best_ndcg=self.best_ndcg,
            throughput={"examples_per_s": n_seq / t_train if t_train else 0.0,
                        "tokens_per_s": n_tok / t_train if t_train else 0.0, "train_seconds": t_train},
            resumed_from=resumed,
        )
        (self.out_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
        return result


def finetune(config: FinetuneConfig | dict | str | Path, out_dir: str | Path | None = None,
             resume: bool = False, progress: bool = True) -> FinetuneResult:
    """Fine-tune the configured base model with LoRA; returns the FinetuneResult."""
    return Trainer(config, out_dir=out_dir, progress=progress).train(resume=resume)


__all__ = ["FinetuneResult", "Trainer", "answer_loss", "finetune", "load_config", "shared_prefix_loss"]
