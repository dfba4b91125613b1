"""LoRA plumbing: inject adapters (peft), save them atomically with a JSON record, merge.

An adapter folder holds peft's `adapter_config.json` + `adapter_model.safetensors` and
`reranker_adapter.json`: base model spec and its file hash, template hashes, data fingerprint,
the training config and the step. Any model spec `base+folder` (or `LLMConfig.adapter`)
loads it through `reranker.llm.hf.apply_adapter`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError

log = logging.getLogger(__name__)

RECORD = "reranker_adapter.json"
RECORD_FORMAT = "reranker-adapter/1"


def _peft():
    try:
        import peft
    except ImportError as e:
        raise ConfigError(
            "fine-tuning needs `peft`: pip install 'reranker[finetune]' (or pip install peft)"
        ) from e
    return peft


def inject_lora(model: Any, rank: int, alpha: float, dropout: float, target_modules: list[str]) -> Any:
    """Wrap `model` with fresh LoRA adapters (in place); returns the PeftModel.

    Only the LoRA matrices are trainable (kept in fp32 even on a bf16 base)."""
    peft = _peft()
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in target_modules if t not in names]
    if missing:
        raise ConfigError(
            f"target_modules: {missing[0]!r} is not a module of this model "
            f"(linear layers here include: {', '.join(sorted(n for n in names if n.endswith('_proj')))})"
        )
    cfg = peft.LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
        bias="none", task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, cfg, autocast_adapter_dtype=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def base_model_hash(spec: str) -> str | None:
    """SHA-256 of the base model's weights file(s): the GGUF file, or the folder's
    `*.safetensors` files (hashes combined in name order); None for hub ids."""
    from ..llm.models import file_sha256, resolve_model

    r = resolve_model(spec)
    if r.kind == "gguf":
        return file_sha256(r.path)
    if r.kind == "folder":
        files = sorted(Path(r.path).glob("*.safetensors")) or sorted(Path(r.path).glob("*.bin"))
        if len(files) == 1:
            return file_sha256(files[0])
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + file_sha256(f).encode())
        return h.hexdigest()
    return None


def template_hashes(prompt_dir: str | Path | None = None) -> dict[str, str]:
    """SHA-256 of every built-in (or overridden) prompt template file, by name."""
    from ..llm.prompts import TEMPLATE_NAMES, get_library

    lib = get_library(prompt_dir)
    return {n: sha256_file(lib.path_of(n)) for n in TEMPLATE_NAMES}


def atomic_dir(target: Path, write: Any) -> Path:
    """Create `target` atomically: `write(tmp)` fills a temp folder next to it, which then
    replaces `target` (an existing target is moved aside first and removed after)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        write(tmp)
        os.chmod(tmp, 0o755)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_adapter(peft_model: Any, folder: Path, record: dict[str, Any]) -> None:
    """Write the adapter (safetensors) + peft config + the JSON record into `folder` (not atomic
    by itself: callers write into a temp folder)."""
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    (Path(folder) / RECORD).write_text(json.dumps({"format": RECORD_FORMAT, **record}, indent=2, default=str))


def read_record(adapter: str | Path) -> dict[str, Any]:
    """The adapter's JSON record (raises ModelError when the folder is not an adapter)."""
    from ..llm.models import check_adapter_dir

    p = check_adapter_dir(adapter)
    rec = p / RECORD
    if not rec.is_file():
        return {}
    try:
        record = json.loads(rec.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # unreadable, not UTF-8 or not JSON
        raise ModelError(f"{rec}: not a readable adapter record: {type(e).__name__}: {e}") from None
    if not isinstance(record, dict):
        raise ModelError(f"{rec}: the adapter record must be a JSON object")
    return record


def merge_adapter(adapter: str | Path, out_dir: str | Path, base: str | None = None,
                  dtype: str = "bf16") -> Path:
    """Write a standalone model folder: the base model with the adapter merged into its weights
    (safetensors + tokenizer), usable as a plain model spec.

    Merging is lossy in bf16: the small LoRA deltas are partly rounded away (scores move by a
    few tenths of a logit on SmolLM2); `dtype="fp32"` keeps them (run it with dtype fp32). The
    unmerged `base+adapter` spec gives exactly the trained model's scores."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..llm.hf import apply_adapter
    from ..llm.models import materialize

    record = read_record(adapter)
    spec = base or record.get("base_model")
    if not spec:
        raise ModelError(f"{adapter}: no base model recorded; pass the base model spec")
    resolved = materialize(spec)
    if resolved.adapter:
        raise ModelError(f"base model {spec!r} already names an adapter")
    if dtype not in ("bf16", "fp32"):
        raise ConfigError(f"merge dtype must be bf16 or fp32, got {dtype!r}")
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch_dtype,
                                                     local_files_only=resolved.offline)
        tok = AutoTokenizer.from_pretrained(resolved.path, local_files_only=resolved.offline)
    except (OSError, ValueError, KeyError) as e:  # a base folder that is not a loadable model
        raise ModelError(
            f"could not load base model {spec!r} from {resolved.path}: {type(e).__name__}: {' '.join(str(e).split())}"
        ) from e
    merged = apply_adapter(model, str(adapter), merge=True)

    def write(tmp: Path) -> None:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / RECORD.replace(".json", "_merged.json")).write_text(
            json.dumps({**record, "merged_from": str(Path(adapter).resolve())}, indent=2, default=str)
        )

    out = atomic_dir(Path(out_dir), write)
    log.info("merged %s into %s", adapter, out)
    return out


__all__ = [
    "RECORD",
    "atomic_dir",
    "base_model_hash",
    "inject_lora",
    "merge_adapter",
    "read_record",
    "save_adapter",
    "template_hashes",
]
