"""Checkpoints and saved adapters of a fine-tuning run (mixed into :class:`Trainer`).

`<out>/checkpoints/step-NNNNNN/` (written to a temp folder and moved in with `os.replace`) holds
the adapter, `trainer_state.pt` (optimizer, scheduler, torch RNG, step) and `state.json` (loss
log, validation history); the last two are kept. Named adapters (`best/`, `adapter/`) carry
the same JSON record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .lora import atomic_dir, save_adapter


class CheckpointMixin:
    """Checkpoint I/O of :class:`~reranker.training.trainer.Trainer` (set up by its `prepare`)."""

    out_dir: Path
    ckpt_dir: Path
    fingerprint: str
    losses: list[dict]
    validation: list[dict]
    best_ndcg: float | None
    _record_base: dict[str, Any]
    peft: Any
    optimizer: Any
    scheduler: Any

    def record(self, step: int) -> dict[str, Any]:
        return {**self._record_base, "step": step,
                "validation": self.validation[-1] if self.validation else None,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def save_checkpoint(self, step: int) -> Path:
        import torch

        state = {"step": step, "losses": self.losses, "validation": self.validation,
                 "best_ndcg": self.best_ndcg, "fingerprint": self.fingerprint}

        def write(tmp: Path) -> None:
            save_adapter(self.peft, tmp, self.record(step))
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "torch_rng": torch.get_rng_state(), "step": step}, tmp / "trainer_state.pt")
            (tmp / "state.json").write_text(json.dumps(state, indent=1))

        path = atomic_dir(self.ckpt_dir / f"step-{step:06d}", write)
        for old in self.checkpoints()[:-2]:  # keep the last two
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        return path

    def checkpoints(self) -> list[Path]:
        if not self.ckpt_dir.is_dir():
            return []
        return sorted(p for p in self.ckpt_dir.glob("step-*") if (p / "state.json").is_file())

    def load_checkpoint(self, path: Path) -> int:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = json.loads((path / "state.json").read_text())
        if state.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"--resume: {path} was trained on other data (fingerprint differs); "
                "use another --out or the same config"
            )
        set_peft_model_state_dict(self.peft, load_file(str(path / "adapter_model.safetensors")))
        ts = torch.load(path / "trainer_state.pt", weights_only=True)
        self.optimizer.load_state_dict(ts["optimizer"])
        self.scheduler.load_state_dict(ts["scheduler"])
        torch.set_rng_state(ts["torch_rng"])
        self.losses = state["losses"]
        self.validation = state["validation"]
        self.best_ndcg = state["best_ndcg"]
        return int(state["step"])

    def _save_named(self, name: str, step: int) -> Path:
        return atomic_dir(self.out_dir / name, lambda tmp: save_adapter(self.peft, tmp, self.record(step)))

