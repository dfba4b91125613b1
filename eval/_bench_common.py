"""Helpers shared by the retrieval / rating benchmarks: machine description, timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?", "?", "?")
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (the machine is shared with other jobs)"
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    return f"{med(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


# ------------------------------------------------------------------ GEMM rate and roofline
def gemm_rates(model: Any, tokens: int = 512, *, budget_s: float = 2.0, rounds: int = 9) -> dict[str, Any]:
    """The host's measured fp32 and bf16 GEMM rates (GFLOP/s) on the model's MLP shape
    (`tokens x hidden` times `hidden x intermediate`, `F.linear` as `nn.Linear` runs it), with
    torch's current thread count: medians of up to `rounds` interleaved rounds
    (`reranker.llm.dtype_choice.measure_gemm_rates`, without its FLOP cap), per wall second
    (`fp32`, `bf16`) and per CPU second of this process (`fp32_cpu`, `bf16_cpu`: on a loaded
    machine the wall rate is diluted by the other jobs, the CPU rate much less)."""
    from reranker.llm.dtype_choice import measure_gemm_rates

    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = int(cfg.hidden_size)
    inter = int(getattr(cfg, "intermediate_size", None) or 4 * hidden)
    r = measure_gemm_rates(hidden, inter, tokens, budget_s=budget_s, max_rounds=rounds, max_flop=float("inf"))
    c = measure_gemm_rates(hidden, inter, tokens, budget_s=budget_s, max_rounds=rounds, max_flop=float("inf"),
                           clock=time.process_time)
    return {"fp32": r.fp32_gflops, "bf16": r.bf16_gflops, "fp32_cpu": c.fp32_gflops, "bf16_cpu": c.bf16_gflops,
            "shape": r.shape, "threads": r.threads, "rounds": r.rounds}


def trunk_params(model: Any) -> int:
    """Parameters a token is multiplied through: the weights of every `nn.Linear` in the decoder
    stack (embeddings and the LM head left out: scoring applies the head to a few positions
    only). SmolLM2-135M: 106.2M of its 134.5M."""
    import torch

    decoder = model.base_model
    return sum(m.weight.numel() for m in decoder.modules() if isinstance(m, torch.nn.Linear))


def roofline_s(params: int, tokens: float, gflops: float) -> float:
    """Seconds that `2 x params x tokens` FLOPs take at the measured GEMM rate (attention's
    score and value products, which grow with the context, are not counted)."""
    return 2.0 * params * tokens / (gflops * 1e9)


def roofline_ratio(seconds: float, params: int, tokens: float, gflops: float) -> float:
    """How many times the roofline a measured figure took (1.0 = at the GEMM rate)."""
    return seconds / max(roofline_s(params, tokens, gflops), 1e-12)


def gemm_line(rates: dict[str, Any], params: int) -> str:
    """One Markdown sentence stating the measured rates and the roofline's definition."""
    m, k, n = rates["shape"]
    return (f"Measured GEMM rate of this host (`F.linear`, {m}x{k} @ {k}x{n}, the model's MLP shape, "
            f"{rates['threads']} torch thread(s), median of {rates['rounds']} interleaved rounds): "
            f"fp32 **{rates['fp32']:.1f} GFLOP/s**, bf16 **{rates['bf16']:.1f} GFLOP/s** per wall second "
            f"(per CPU second of this process: fp32 {rates['fp32_cpu']:.1f}, bf16 {rates['bf16_cpu']:.1f}). "
            f"Roofline of a figure = `2 x {params / 1e6:.1f}M parameters (the decoder's linear weights) x "
            "tokens run / rate` in the dtype it ran in; `x roofline` = measured / roofline, wall seconds "
            "against the wall rate, CPU seconds against the CPU rate (attention's context-length products "
            "are not in the roofline, so even a perfect run sits a little above 1).")
