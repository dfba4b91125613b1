"""`dtype: auto` by measurement: time GEMMs shaped like the model's own linear layers in bf16
and fp32 on this machine and load the model in the faster one.

Which is faster depends on the host, not only on whether it "has bf16": with AMX, bf16 GEMMs
run 2-3x faster than fp32; with AVX512-BF16 but no AMX they measured ~1.7x *slower* (145 vs 250
GFLOP/s); with AVX2 only, torch converts bf16 and it is several times slower. So the first load
with `dtype: auto` runs a short calibration (a warm-up and a few interleaved timed rounds of
`tokens x hidden @ hidden x intermediate`, one per dtype, with the process's torch thread count;
the median of the rounds), and the result is cached per CPU (model name + a hash of its
feature flags), torch version, thread count and GEMM shape in
`$RERANKER_CACHE/dtype-calibration.json` (default `~/.cache/reranker`), written atomically. A
corrupt or hand-edited file is ignored with a warning and measured again. `dtype: bf16|fp32`
skips all of this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)

Dtype = Literal["bf16", "fp32"]
CACHE_FILE = "dtype-calibration.json"
CACHE_VERSION = 1
#: token rows of the calibration GEMM (a shared prompt prefix; pointwise prompts run ~800)
DEFAULT_TOKENS = 256
#: the GEMM is made smaller (fewer token rows, at least 32) above this many FLOPs, so a big
#: model's calibration stays short
MAX_GEMM_FLOP = 1.0e9
#: timed rounds stop after this many seconds (the warm-ups are not counted) or `MAX_ROUNDS`
TIME_BUDGET_S = 0.6
MAX_ROUNDS = 5
#: a rate above this (1 PFLOP/s) in the cache file is not a measurement of a CPU
_MAX_GFLOPS = 1.0e6

_MEMO: dict[str, DtypeChoice] = {}
_MEMO_LOCK = threading.Lock()


# ------------------------------------------------------------------------------ measuring
@dataclass(frozen=True)
class GemmRates:
    """Measured GEMM throughput of one shape in both dtypes (GFLOP/s, medians of the rounds)."""

    fp32_gflops: float
    bf16_gflops: float
    """0.0 when bf16 matmul is not available in this torch build."""
    shape: tuple[int, int, int]
    """(tokens, hidden, intermediate): `tokens x hidden` times `hidden x intermediate`."""
    threads: int
    rounds: int = 0
    seconds: float = 0.0
    """Wall time of the whole measurement, warm-ups included."""


def choose_dtype(fp32_gflops: float, bf16_gflops: float) -> Dtype:
    """The faster dtype; a tie goes to fp32 (exact, and no conversion on load)."""
    return "bf16" if bf16_gflops > fp32_gflops else "fp32"


def gemm_shape(hidden: int, intermediate: int, tokens: int = DEFAULT_TOKENS,
               max_flop: float = MAX_GEMM_FLOP) -> tuple[int, int, int]:
    """(tokens, hidden, intermediate), with the token rows cut (to a multiple of 32, at least 32)
    so that one GEMM stays under `max_flop`."""
    if hidden < 1 or intermediate < 1 or tokens < 1:
        raise ValueError(f"GEMM sizes must be positive, got {tokens}x{hidden}x{intermediate}")
    per_row = 2.0 * hidden * intermediate
    if tokens * per_row > max_flop:
        tokens = max(32, int(max_flop // per_row) // 32 * 32)
    return tokens, hidden, intermediate


def measure_gemm_rates(
    hidden: int,
    intermediate: int,
    tokens: int = DEFAULT_TOKENS,
    *,
    budget_s: float = TIME_BUDGET_S,
    max_rounds: int = MAX_ROUNDS,
    max_flop: float = MAX_GEMM_FLOP,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> GemmRates:
    """Time `F.linear(x, w)` (what `nn.Linear` runs) with x `tokens x hidden` and w
    `intermediate x hidden` in fp32 and bf16, with torch's current thread count.

    One warm-up call per dtype (oneDNN builds a kernel per shape on first use), then rounds of
    one fp32 and one bf16 call, interleaved so that load from other processes falls on both,
    until `max_rounds` or `budget_s` seconds of rounds (at least one round). The rate is
    `2 * tokens * hidden * intermediate / median seconds`; `clock` times the calls
    (`time.process_time`: per CPU second, which other processes' load does not dilute)."""
    import torch
    import torch.nn.functional as F

    m, k, n = gemm_shape(hidden, intermediate, tokens, max_flop)
    flop = 2.0 * m * k * n
    gen = torch.Generator().manual_seed(seed)
    x32 = torch.randn(m, k, generator=gen)
    w32 = torch.randn(n, k, generator=gen) / math.sqrt(k)
    operands: dict[str, tuple[Any, Any]] = {"fp32": (x32, w32)}
    t_start = time.perf_counter()
    with torch.inference_mode():
        F.linear(x32, w32)
        try:
            xb, wb = x32.to(torch.bfloat16), w32.to(torch.bfloat16)
            F.linear(xb, wb)
            operands["bf16"] = (xb, wb)
        except RuntimeError as e:  # pragma: no cover - a torch build without bf16 matmul
            log.info("bf16 matmul is not available here (%s); dtype auto uses fp32", e)
        times: dict[str, list[float]] = {name: [] for name in operands}
        t_rounds = time.perf_counter()
        for r in range(max(1, max_rounds)):
            for name, (x, w) in operands.items():
                t0 = clock()
                F.linear(x, w)
                times[name].append(clock() - t0)
            if r + 1 >= max_rounds or time.perf_counter() - t_rounds >= budget_s:
                break
    rates = {name: flop / max(statistics.median(ts), 1e-9) / 1e9 for name, ts in times.items()}
    return GemmRates(
        fp32_gflops=rates["fp32"],
        bf16_gflops=rates.get("bf16", 0.0),
        shape=(m, k, n),
        threads=int(torch.get_num_threads()),
        rounds=len(times["fp32"]),
        seconds=time.perf_counter() - t_start,
    )


# ------------------------------------------------------------------------------ cache file
class CalibrationEntry(BaseModel):
    """One measurement as stored in the cache file (every field checked when read back)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cpu: str = Field(min_length=1)
    torch: str = Field(min_length=1)
    threads: int = Field(ge=1)
    shape: tuple[int, int, int]
    fp32_gflops: float = Field(gt=0.0, lt=_MAX_GFLOPS)
    bf16_gflops: float = Field(ge=0.0, lt=_MAX_GFLOPS)
    choice: Dtype
    measured_at: str
    seconds: float = Field(ge=0.0)
    load_avg: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CalibrationEntry:
        if min(self.shape) < 1:
            raise ValueError(f"shape must be positive, got {list(self.shape)}")
        expected = choose_dtype(self.fp32_gflops, self.bf16_gflops)
        if self.choice != expected:
            raise ValueError(f"choice {self.choice!r} does not follow from the rates (the faster is {expected!r})")
        return self


class CalibrationFile(BaseModel):
    """`dtype-calibration.json`: entries by host key (see `host_key`)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    entries: dict[str, Any] = Field(default_factory=dict)
    """Raw entries; each is validated on its own when looked up, so one bad entry does not
    discard the others."""


def cache_path(root: Path | None = None) -> Path:
    from .models import cache_root

    return (root if root is not None else cache_root()) / CACHE_FILE


def cpu_name() -> str:
    """The CPU's model name and a short hash of its feature flags (VMs often report one name,
    e.g. "AMD EPYC", for CPUs with different instruction sets)."""
    name, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key == "model name" and not name:
                name = line.split(":", 1)[1].strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} [flags {hashlib.sha256(flags.encode()).hexdigest()[:8]}]" if flags else name


def host_key(threads: int, shape: tuple[int, int, int]) -> str:
    """What a measurement is valid for: CPU, torch version (and its CPU kernel level), torch
    threads and GEMM shape."""
    import torch

    capability = ""
    try:
        capability = f" {torch.backends.cpu.get_cpu_capability()}"
    except Exception:  # pragma: no cover - older torch
        pass
    return f"{cpu_name()} | torch {torch.__version__}{capability} | threads {threads} | gemm {shape[0]}x{shape[1]}x{shape[2]}"


def _read_file(path: Path) -> CalibrationFile:
    """The cache file, or an empty one when it is absent or unreadable (with a warning)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CalibrationFile()
    except OSError as e:
        log.warning("cannot read the dtype calibration cache %s (%s); measuring again", path, e)
        return CalibrationFile()
    try:
        return CalibrationFile.model_validate(json.loads(text))
    except (ValueError, ValidationError) as e:  # JSONDecodeError is a ValueError
        detail = " ".join(str(e).split())[:300]
        log.warning("ignoring the dtype calibration cache %s: not a valid calibration file (%s); "
                    "measuring again and rewriting it", path, detail)
        return CalibrationFile()


def read_entry(key: str, path: Path, threads: int | None = None,
               shape: tuple[int, int, int] | None = None) -> CalibrationEntry | None:
    """The stored measurement for `key`, or None (absent, or invalid: warned and ignored). With
    `threads` / `shape`, an entry measured with others (a hand-edited key) is invalid too."""
    raw = _read_file(path).entries.get(key)
    if raw is None:
        return None
    try:
        entry = CalibrationEntry.model_validate(raw)
    except ValidationError as e:
        detail = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'entry'}: {err['msg']}" for err in e.errors())
        log.warning("ignoring the dtype calibration entry %r in %s (%s); measuring again", key, path, detail)
        return None
    if (threads is not None and entry.threads != threads) or (shape is not None and tuple(entry.shape) != shape):
        log.warning("ignoring the dtype calibration entry %r in %s (measured with %d threads on %s, not "
                    "%s threads on %s); measuring again", key, path, entry.threads, list(entry.shape),
                    threads, list(shape) if shape else "?")
        return None
    return entry


def write_entry(key: str, entry: CalibrationEntry, path: Path) -> None:
    """Add or replace `key`'s entry (re-reading the file first so other keys survive), written
    atomically: a reader sees the old file or the new one. A read-only cache is only logged."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        current = _read_file(path)
        entries = {**current.entries, key: entry.model_dump(mode="json")}
        text = json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as e:
        log.warning("could not write the dtype calibration cache %s (%s); the next process measures again", path, e)


# ------------------------------------------------------------------------------ the choice
@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a backend runs in and why: `source` is `config` (dtype set explicitly),
    `calibration` (measured now) or `calibration cache` (measured earlier on this host)."""

    dtype: Dtype
    source: Literal["config", "calibration", "calibration cache"]
    fp32_gflops: float | None = None
    bf16_gflops: float | None = None
    shape: tuple[int, int, int] | None = None
    threads: int | None = None
    cache_file: str | None = None

    def describe(self) -> str:
        """One line for logs and reports, e.g. `fp32 (dtype auto, calibration cache: fp32 52.1
        vs bf16 8.3 GFLOP/s on 256x576x1536 GEMMs, 1 thread)`."""
        if self.source == "config" or self.fp32_gflops is None or self.bf16_gflops is None:
            return f"{self.dtype} (set in the config)"
        shape = "x".join(map(str, self.shape or ()))
        return (f"{self.dtype} (dtype auto, {self.source}: fp32 {self.fp32_gflops:.1f} vs bf16 "
                f"{self.bf16_gflops:.1f} GFLOP/s on {shape} GEMMs, {self.threads} thread"
                f"{'' if self.threads == 1 else 's'})")

    def as_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "source": self.source, "fp32_gflops": self.fp32_gflops,
                "bf16_gflops": self.bf16_gflops, "shape": list(self.shape) if self.shape else None,
                "threads": self.threads}


def calibrated_dtype(
    hidden: int,
    intermediate: int,
    *,
    tokens: int = DEFAULT_TOKENS,
    cache_root: Path | None = None,
    use_cache: bool = True,
) -> DtypeChoice:
    """The faster of bf16 and fp32 for this host, torch version and thread count: read from the
    cache file when a valid entry is there, otherwise measured (`measure_gemm_rates`) and
    stored. Remembered per process as well."""
    import torch

    threads = int(torch.get_num_threads())
    shape = gemm_shape(hidden, intermediate, tokens)
    key = host_key(threads, shape)
    path = cache_path(cache_root)
    memo_key = f"{path}|{key}"
    with _MEMO_LOCK:
        if use_cache and memo_key in _MEMO:
            return _MEMO[memo_key]
        entry = read_entry(key, path, threads, shape) if use_cache else None
        source: Literal["calibration", "calibration cache"] = "calibration cache"
        if entry is None:
            rates = measure_gemm_rates(hidden, intermediate, tokens)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            entry = CalibrationEntry(
                cpu=cpu_name(), torch=str(torch.__version__), threads=rates.threads, shape=rates.shape,
                fp32_gflops=round(rates.fp32_gflops, 3), bf16_gflops=round(rates.bf16_gflops, 3),
                choice=choose_dtype(rates.fp32_gflops, rates.bf16_gflops),
                measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
                seconds=round(rates.seconds, 3), load_avg=load,
            )
            source = "calibration"
            if use_cache:
                write_entry(key, entry, path)
        choice = DtypeChoice(entry.choice, source, entry.fp32_gflops, entry.bf16_gflops, entry.shape,
                             entry.threads, str(path))
        if use_cache:
            _MEMO[memo_key] = choice
    how = (f"measured in {entry.seconds:.2f} s at load average {entry.load_avg:.1f}"
           if source == "calibration" and entry.load_avg is not None
           else f"measured in {entry.seconds:.2f} s" if source == "calibration"
           else f"measured {entry.measured_at}")
    log.info("dtype auto -> %s: GEMM %s rate fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s (%s; %s)",
             entry.choice, "x".join(map(str, entry.shape)), entry.fp32_gflops, entry.bf16_gflops, how, path)
    return choice


def clear_memo() -> None:
    """Forget the per-process choices (the cache file stays)."""
    with _MEMO_LOCK:
        _MEMO.clear()


__all__ = [
    "CACHE_FILE",
    "CalibrationEntry",
    "DtypeChoice",
    "GemmRates",
    "cache_path",
    "calibrated_dtype",
    "choose_dtype",
    "clear_memo",
    "cpu_name",
    "gemm_shape",
    "host_key",
    "measure_gemm_rates",
    "read_entry",
    "write_entry",
]
