"""FinetuneConfig: everything a `reranker finetune` run needs (YAML in/out, extra keys forbidden)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..config import BaseConfig
from ..evaluation.experiment import DataSpec
from ..evaluation.specs import ColdSpec

Mode = Literal["pointwise", "verbalizer", "listwise"]


class ExampleConfig(BaseConfig):
    """How instruction examples are drawn from the training split."""

    positions_per_user: int = Field(4, ge=1)
    """Target positions sampled per user in their training history (the most recent first)."""
    min_history: int = Field(2, ge=1)
    """A target position needs at least this many earlier training items."""
    max_history: int = Field(20, ge=1)
    """History cap shown before a target (the evaluation protocol's cap)."""
    n_candidates: int = Field(10, ge=2, le=26)
    """Candidate list size: the next item plus n_candidates - 1 negatives (verbalizer: <= 26)."""
    cf_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of the negatives taken from the CF retriever's top list (the rest random unseen)."""
    retriever: Literal["itemcf", "usercf"] = "itemcf"
    retriever_k: int = Field(20, ge=1)
    pointwise_negatives: int = Field(1, ge=1)
    """Pointwise: "No" examples per "Yes" example (drawn from the candidate list)."""
    max_users: int | None = Field(None, ge=1)
    """Use the first N users of a seeded order (None: all)."""


class ValidationConfig(BaseConfig):
    """Regime-B validation during training: validation targets, training histories."""

    users: int = Field(50, ge=0)
    """Validation users (a fixed seeded subset); 0 turns validation off."""
    n_negatives: int = Field(19, ge=1, le=999)
    every: int = Field(50, ge=1)
    """Validate every N optimizer steps (and at the end)."""


class FinetuneConfig(BaseConfig):
    """A LoRA fine-tuning run of a local LLM on the recommendation task itself (PALR)."""

    name: str = "finetune"
    model: str = "smollm2-135m"
    """Base model spec (preset, folder, .gguf); the adapter is trained on top of it."""
    mode: Mode = "pointwise"
    data: DataSpec = Field(default_factory=lambda: DataSpec(synthetic={"seed": 0, "n_users": 300, "n_items": 200}))
    """Same as an experiment's `data:` block (`path` + `format`, or `synthetic`); a relative
    path is resolved against the config's folder, the repository root, then the CWD."""
    examples: ExampleConfig = Field(default_factory=ExampleConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    # LoRA
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # optimisation
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(10, ge=0)
    batch_size: int = Field(8, ge=1, le=1024)
    grad_accumulation: int = Field(1, ge=1, le=1024)
    max_seq_len: int = Field(512, ge=64, le=32768)
    """Tokens per training sequence (at most 32768; the model's context is the real limit)."""
    epochs: float | None = Field(None, gt=0)
    """Passes over the examples; the run stops at whichever of epochs / max_steps comes first."""
    max_steps: int | None = Field(None, gt=0)
    """Optimizer steps (> 0)."""
    shared_prefix: bool = True
    """Pointwise: the Yes/No sequences of one example share their prompt (instructions +
    history); run it once and only the candidate suffixes per sequence (KV cache, gradients
    flow through it). `batch_size` still counts sequences."""
    max_minutes: float | None = Field(None, gt=0)
    """Wall-clock budget: stop (and save) after this many minutes of training."""
    seed: int = 0
    ties: Literal["random", "item_id"] = "random"
    """How a user's interactions in the same second are ordered for the split, the example
    histories and the next-item targets: a seeded random permutation (``random``) or item id
    (``item_id``, the rule before issue 17). Train with the rule the adapter will be evaluated
    with (the experiment's ``protocol.ties``), or its test items can be training targets."""
    tie_seed: int = Field(0, ge=0)
    """The seed of ``ties: random`` (like the experiment's ``protocol.tie_seed``)."""
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    threads: int | None = Field(None, ge=1)
    cold: ColdSpec | None = None
    """Train for regime C: the cold items (or cold users) this spec selects, exactly those of
    an experiment with the same ``protocol.cold``, lose every interaction (and cold items their
    catalog rows) before the split, so the adapter never sees them (`cold_start.cold_fit_data`).
    None: all the data."""
    cf_hint: Literal["none", "rank", "band"] = "none"
    """Pointwise / listwise: show each candidate's CF rank or score band in the training prompts
    (the rankers' `cf_hint`; the scores are the example retriever's for the prefix history).
    Evaluate the adapter with the same `cf_hint` (and a `cf_hint_scorer` where the candidates
    have no stage-1 scores)."""
    item_text_tokens: int = Field(0, ge=0)
    """Item description tokens in prompts (0: title, category, attrs only: short prompts).
    Evaluate the adapter with the same value (it is recorded in the adapter's JSON)."""
    save_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    output_dir: Path = Path("runs/finetune")

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("give epochs or max_steps (> 0)")
        if not self.target_modules:
            raise ValueError("target_modules: give at least one module name (e.g. q_proj)")
        if self.cf_hint != "none" and self.mode == "verbalizer":
            raise ValueError("cf_hint: the verbalizer prompt has no hint; use mode pointwise or listwise")
        if not str(self.model).strip():
            raise ValueError("model: give a base model spec (e.g. smollm2-135m)")
        return self


__all__ = ["ExampleConfig", "FinetuneConfig", "Mode", "ValidationConfig"]
