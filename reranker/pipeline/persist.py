"""Saving and loading a fitted pipeline: config (YAML), fit data (Parquet), fusion weights,
learned head and versions (JSON). No pickles: stage 1 is refitted from the saved interactions
on load (deterministic; the data fingerprints are checked).

A saved folder is validated on load against its schema (`reranker.pipeline.saved`): the record
``pipeline.json``, ``config.yaml``, the required files, the learned head's files, and the
fingerprints of the data, item text included; a hand-edited or corrupt folder is a ConfigError
naming the file and the field."""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ConfigError, DataError, RerankerError
from ..types import to_jsonable
from .config import PipelineConfig
from .saved import (
    REQUIRED_FILES,
    HeadRecord,
    PipelineRecord,
    check_learned_head,
    frame_fingerprint,
    read_json_file,
    validate_record,
)

if TYPE_CHECKING:
    import pandas as pd

    from .core import Pipeline

log = logging.getLogger(__name__)

PIPELINE_FORMAT = 1


def save_pipeline(pipe: Pipeline, folder: Path) -> Path:
    """Write a fitted pipeline to `folder` (created if missing; ConfigError naming the path
    when it is a file or cannot be written)."""
    from ..paths import ensure_dir

    ensure_dir(folder, "Pipeline.save")
    try:
        pipe.config.to_yaml(folder / "config.yaml")
        data = pipe._fit_data()
        data.interactions.to_parquet(folder / "interactions.parquet", index=False)
        items = data.items.copy()
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
            "data_fingerprint": data.fingerprint(),
            # of the files as written (what `load_pipeline` reads back): item text included
            "content_fingerprints": {name: frame_fingerprint(_read_parquet(folder / f"{name}.parquet"))
                                     for name in ("interactions", "items")},
            "tie_order": data.tie_order.as_dict(),
            "prompt_versions": prompt_versions(),
            "fit_report": to_jsonable(pipe.fit_report),
        }
        (folder / "pipeline.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"Pipeline.save: {e.filename or folder}: cannot write: {e.strerror or e}") from None
    return folder


def _read_parquet(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"{path}: missing (a saved pipeline holds {', '.join(REQUIRED_FILES)})")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types (ArrowInvalid, OSError, ...)
        raise ConfigError(f"{path}: cannot read Parquet: {' '.join(str(e).split())}") from None


def load_pipeline(cls: type[Pipeline], folder: Path, **kwargs: Any) -> Pipeline:
    """Read a folder written by `save_pipeline` into a ready pipeline of class `cls`."""
    from ..data.dataset import Dataset, Source

    meta_path = folder / "pipeline.json"
    if not meta_path.is_file():
        raise ConfigError(f"{folder}: not a saved pipeline (no pipeline.json)")
    raw = read_json_file(meta_path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{meta_path}: expected a JSON object, got {type(raw).__name__}")
    if raw.get("format") != PIPELINE_FORMAT:
        raise ConfigError(
            f"{meta_path}: pipeline format {raw.get('format')!r} (written by reranker "
            f"{raw.get('reranker_version')!r}) is not supported; this reranker {__version__} "
            f"reads format {PIPELINE_FORMAT}. Refit and save it again."
        )
    meta: PipelineRecord = validate_record(PipelineRecord, raw, meta_path)
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise ConfigError(f"{folder / name}: missing (a saved pipeline holds {', '.join(REQUIRED_FILES)})")
    config = PipelineConfig.from_yaml(folder / "config.yaml")
    frames = {name: _read_parquet(folder / f"{name}.parquet") for name in ("interactions", "items")}
    if meta.content_fingerprints is None:
        log.warning("%s: saved before content fingerprints; item text is not verified", folder)
    else:
        expected = {str(k): v for k, v in meta.content_fingerprints.items()}
        for name, frame in frames.items():
            if frame_fingerprint(frame) != expected.get(name):
                raise ConfigError(
                    f"{folder / (name + '.parquet')}: saved data does not match its fingerprint (modified?)"
                )
    try:
        data = Dataset(frames["interactions"], frames["items"], name=folder.name,
                       interactions_source=Source(str(folder / "interactions.parquet"), first_line=None),
                       items_source=Source(str(folder / "items.parquet"), first_line=None))
    except DataError as e:
        raise ConfigError(str(e)) from None
    if data.fingerprint() != meta.data_fingerprint:
        raise ConfigError(f"{folder}: saved data does not match its fingerprint (modified?)")
    ties = meta.tie_order
    # saved before the rule: item id
    data = data.with_tie_order(ties.ties if ties else "item_id", ties.tie_seed if ties else 0)
    learned = folder / "learned"
    if config.ranking.learned.enabled and not learned.is_dir():
        raise ConfigError(f"{learned}: missing (config.yaml has ranking.learned.enabled: true)")
    if learned.is_dir():
        _check_learned(learned)
    pipe = cls(config, **kwargs)
    pipe._rebuild(data, {str(k): float(v) for k, v in meta.weights.items()}, meta.fit_report,
                  learned if learned.is_dir() else None)
    if meta.prompt_versions != prompt_versions():
        log.warning("%s: prompt templates changed since this pipeline was saved", folder)
    return pipe


def _check_learned(folder: Path) -> None:
    """The learned head's files before its loader reads them: ``head.json`` against
    `HeadRecord`, ``head.npz`` present."""
    from ..ranking.learned import LearnedFusion

    validate_record(HeadRecord, read_json_file(folder / "head.json"), folder / "head.json")
    if not (folder / "head.npz").is_file():
        raise ConfigError(f"{folder / 'head.npz'}: missing")
    try:
        head = LearnedFusion.load(folder)
    except RerankerError as e:
        raise ConfigError(f"{folder}: cannot load the learned head: {e}") from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{folder}: cannot load the learned head: {type(e).__name__}: {e}") from None
    check_learned_head(head, folder)


def prompt_versions() -> dict[str, str]:
    """A short hash of every built-in prompt template (a saved pipeline records them)."""
    from ..resources import prompts_dir

    d = prompts_dir()
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in sorted(d.glob("*.j2"))}


__all__ = ["PIPELINE_FORMAT", "load_pipeline", "prompt_versions", "save_pipeline"]
