"""PALR fine-tuning: leakage-free instruction examples from the training split, LoRA training,
adapters with a JSON record (base hash, template hashes, data fingerprint), merge.

`finetune(config) -> FinetuneResult`; heavy imports (torch, transformers, peft) happen inside.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "merge_adapter"]


def __getattr__(name: str) -> Any:
    if name == "FinetuneConfig":
        from .config import FinetuneConfig

        return FinetuneConfig
    if name in ("FinetuneResult", "finetune"):
        from . import trainer

        return getattr(trainer, name)
    if name == "merge_adapter":
        from .lora import merge_adapter

        return merge_adapter
    raise AttributeError(name)
