"""Saving and loading a fitted pipeline: config (YAML), fit data (Parquet), fusion weights,
learned head and versions (JSON). No pickles: stage 1 is refitted from the saved interactions
on load (deterministic; the data fingerprint is checked)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ConfigError
from ..types import to_jsonable
from .config import PipelineConfig

if TYPE_CHECKING:
    from .core import Pipeline

log = logging.getLogger(__name__)

PIPELINE_FORMAT = 1


def save_pipeline(pipe: Pipeline, folder: Path) -> Path:
    """Write a fitted pipeline to `folder` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    pipe.config.to_yaml(folder / "config.yaml")
    pipe.data.interactions.to_parquet(folder / "interactions.parquet", index=False)
    items = pipe.data.items.copy()
    for c in items.columns:  # mixed object columns -> strings for Parquet
        if items[c].dtype == object:
            items[c] = items[c].map(lambda v: None if v is None else str(v))
    items.to_parquet(folder / "items.parquet", index=False)
    if pipe.learned is not None:
        pipe.learned.head.save(folder / "learned")
    meta = {
        "format": PIPELINE_FORMAT,
        "reranker_version": __version__,
        "weights": pipe.weights,
        "data_fingerprint": pipe.data.fingerprint(),
        "tie_order": pipe.data.tie_order.as_dict(),
        "prompt_versions": prompt_versions(),
        "fit_report": to_jsonable(pipe.fit_report),
    }
    (folder / "pipeline.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def load_pipeline(cls: type[Pipeline], folder: Path, **kwargs: Any) -> Pipeline:
    """Read a folder written by `save_pipeline` into a ready pipeline of class `cls`."""
    import pandas as pd

    from ..data.dataset import Dataset

    meta_path = folder / "pipeline.json"
    if not meta_path.is_file():
        raise ConfigError(f"{folder}: not a saved pipeline (no pipeline.json)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != PIPELINE_FORMAT:
        raise ConfigError(
            f"{meta_path}: pipeline format {meta.get('format')} (written by reranker "
            f"{meta.get('reranker_version')}) is not supported; this reranker {__version__} "
            f"reads format {PIPELINE_FORMAT}. Refit and save it again."
        )
    pipe = cls(PipelineConfig.from_yaml(folder / "config.yaml"), **kwargs)
    data = Dataset(pd.read_parquet(folder / "interactions.parquet"),
                   pd.read_parquet(folder / "items.parquet"), name=folder.name)
    if data.fingerprint() != meta["data_fingerprint"]:
        raise ConfigError(f"{folder}: saved data does not match its fingerprint (modified?)")
    ties = meta.get("tie_order") or {"ties": "item_id", "tie_seed": 0}  # saved before the rule: item id
    data = data.with_tie_order(ties["ties"], int(ties.get("tie_seed", 0)))
    learned = folder / "learned"
    pipe._rebuild(data, {k: float(v) for k, v in meta["weights"].items()}, meta.get("fit_report", {}),
                  learned if learned.is_dir() else None)
    if meta.get("prompt_versions") != prompt_versions():
        log.warning("%s: prompt templates changed since this pipeline was saved", folder)
    return pipe


def prompt_versions() -> dict[str, str]:
    """A short hash of every built-in prompt template (a saved pipeline records them)."""
    from ..resources import prompts_dir

    d = prompts_dir()
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in sorted(d.glob("*.j2"))}


__all__ = ["PIPELINE_FORMAT", "load_pipeline", "prompt_versions", "save_pipeline"]
