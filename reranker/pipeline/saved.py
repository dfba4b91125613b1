"""The schema of a saved pipeline folder, checked by `reranker.pipeline.persist.load_pipeline`.

A saved folder is input like any other: it may be hand-edited, truncated or corrupt. Its parts:

- ``pipeline.json``: `PipelineRecord` (format, versions, fusion weights, fingerprints, fit report);
- ``config.yaml``: a `PipelineConfig` (read by `reranker.yaml_io.load_yaml`);
- ``interactions.parquet``, ``items.parquet``: the fit data, checked against the record's
  fingerprints: ``data_fingerprint`` (`Dataset.fingerprint`: interactions and item ids, the key
  the data had before) and ``content_fingerprints`` (`frame_fingerprint` of each file's every
  column, so an edited title is found too);
- ``learned/`` (when the learned head is on): ``head.json`` (`HeadRecord`) and ``head.npz``,
  read by `LearnedFusion.load` and checked here (`check_learned_head`).

Every problem is a ConfigError naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import validation_lines
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..ranking.learned_head import LearnedFusion

__all__ = [
    "HeadRecord",
    "MAX_FIT_REPORT_CHARS",
    "MAX_RECORD_BYTES",
    "PipelineRecord",
    "REQUIRED_FILES",
    "check_learned_head",
    "frame_fingerprint",
    "read_json_file",
    "validate_record",
]

REQUIRED_FILES = ("pipeline.json", "config.yaml", "interactions.parquet", "items.parquet")
MAX_RECORD_BYTES = 16 * 2**20
"""The largest ``pipeline.json`` / ``head.json`` read (16 MiB)."""
MAX_FIT_REPORT_CHARS = 2_000_000
"""The largest fit report (as JSON text) a record may carry."""

_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{8,64}$")]


def _bounded_report(v: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(v, default=str))
    if size > MAX_FIT_REPORT_CHARS:
        raise ValueError(f"{size:,} characters of JSON; at most {MAX_FIT_REPORT_CHARS:,}")
    return v


class TieOrderRecord(BaseModel):
    """How ties in time were ordered when the pipeline was fitted."""

    model_config = ConfigDict(extra="forbid")
    ties: Literal["random", "item_id"]
    tie_seed: int = Field(0, ge=0, strict=True)


class PipelineRecord(BaseModel):
    """``pipeline.json`` of a saved pipeline (format 1)."""

    model_config = ConfigDict(extra="forbid")
    format: int = Field(strict=True)
    reranker_version: str = Field(max_length=64)
    weights: dict[Literal["content", "cf", "llm"], Annotated[_Number, Field(ge=0)]]
    data_fingerprint: _Hex
    content_fingerprints: dict[Literal["interactions", "items"], _Hex] | None = None
    """Absent in folders saved before it existed (then item text is not verified)."""
    tie_order: TieOrderRecord | None = None
    prompt_versions: dict[str, Annotated[str, Field(max_length=64)]] = Field(max_length=1000)
    fit_report: dict[str, Any] = Field(default_factory=dict)

    _report = field_validator("fit_report")(_bounded_report)


class HeadRecord(BaseModel):
    """``learned/head.json``: what `LearnedFusion.load` reads from it (other keys are its own)."""

    model_config = ConfigDict(extra="allow")
    format_version: int = Field(strict=True)
    config: dict[str, Any]
    feature_names: list[Annotated[str, Field(max_length=200)]] = Field(max_length=100_000)
    intercept: _Number
    fallback_feature: Annotated[int, Field(strict=True, ge=0)] | None = None
    fit_report: dict[str, Any] = Field(default_factory=dict)

    _report = field_validator("fit_report")(_bounded_report)


def read_json_file(path: Path) -> Any:
    """Parse a JSON file of a saved folder; ConfigError naming it (and the line / byte) when it
    is missing, too large, not UTF-8, truncated or nested too deeply."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing")
    try:
        size = path.stat().st_size
        if size > MAX_RECORD_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes; at most {MAX_RECORD_BYTES:,} expected")
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        from ..paths import utf8_error

        raise ConfigError(f"{path}: {utf8_error(raw, e)}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid JSON: nested too deeply") from None


def validate_record(model: type[BaseModel], data: Any, path: Path) -> Any:
    """``model.model_validate(data)``; a ConfigError listing ``field: problem`` lines under the file."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = validation_lines(e)
        err = ConfigError(f"{path}: invalid\n  " + "\n  ".join(f"{loc}: {msg}" for loc, msg in lines))
        err.lines = lines
        raise err from None


def frame_fingerprint(df: pd.DataFrame) -> str:
    """A hash of a frame's column names and every value (what `pd.read_parquet` gives back for a
    saved file; the same file always hashes the same)."""
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in df.columns]).encode())
    h.update(str(len(df)).encode())
    for c in df.columns:
        col = df[c]
        try:
            values = pd.util.hash_pandas_object(col, index=False)
        except TypeError:  # unhashable cells (lists, dicts): their text
            values = pd.util.hash_pandas_object(col.map(repr), index=False)
        h.update(values.to_numpy().tobytes())
    return h.hexdigest()[:32]


def check_learned_head(head: LearnedFusion, folder: Path) -> None:
    """A loaded `LearnedFusion`'s arrays: finite numbers, one value per design column."""
    arrays = {"mean": head.mean, "scale": head.scale, "coef": head.coef, "pca_mean": head.pca_mean,
              "pca_components": head.pca_components}
    for k, a in arrays.items():
        if a is None:
            continue
        arr = np.asarray(a)
        if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
            raise ConfigError(f"{folder / 'head.npz'}: {k}: expected finite numbers")
    width = {k: len(np.asarray(arrays[k]).reshape(-1)) for k in ("mean", "scale", "coef") if arrays[k] is not None}
    if len(set(width.values())) > 1:
        raise ConfigError(f"{folder / 'head.npz'}: mean/scale/coef: lengths differ ({width})")
    n = len(head.feature_names)
    fb = head.fallback_feature
    if fb is not None and not 0 <= int(fb) < n:
        raise ConfigError(f"{folder / 'head.json'}: fallback_feature: {fb} is not a feature index (0..{n - 1})")
    if "scale" in width and arrays["scale"] is not None and np.any(np.asarray(arrays["scale"]) == 0):
        raise ConfigError(f"{folder / 'head.npz'}: scale: must not be 0")
    if head.booster is None and arrays["coef"] is None and fb is None:
        raise ConfigError(f"{folder}: the learned head has no coefficients, booster or fallback feature")
    if not math.isfinite(float(head.intercept)):
        raise ConfigError(f"{folder / 'head.json'}: intercept: expected a finite number")
