"""`dtype: auto` by measurement (reranker/llm/dtype_choice.py): real GEMM timings on tiny shapes,
the cache file's round trip and its defences against corrupt or hand-edited contents."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from reranker.llm import dtype_choice as dc

# tiny GEMMs: a calibration here takes milliseconds
HIDDEN, INTER, TOKENS = 32, 64, 32


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANKER_CACHE", str(tmp_path))
    dc.clear_memo()
    yield tmp_path
    dc.clear_memo()


def _calibrate():
    return dc.calibrated_dtype(HIDDEN, INTER, tokens=TOKENS)


def _entries(path):
    return json.loads(path.read_text())["entries"]


def test_choose_dtype_takes_the_faster_and_fp32_on_a_tie():
    assert dc.choose_dtype(250.0, 145.0) == "fp32"  # AVX512-BF16 without AMX (issue 14)
    assert dc.choose_dtype(250.0, 600.0) == "bf16"  # AMX
    assert dc.choose_dtype(100.0, 100.0) == "fp32"
    assert dc.choose_dtype(50.0, 0.0) == "fp32"  # no bf16 matmul at all


def test_real_measurement_on_tiny_shapes_picks_the_faster():
    import torch

    rates = dc.measure_gemm_rates(HIDDEN, INTER, TOKENS, budget_s=0.05, max_rounds=3)
    assert rates.shape == (TOKENS, HIDDEN, INTER)
    assert rates.threads == torch.get_num_threads()
    assert 1 <= rates.rounds <= 3
    assert rates.fp32_gflops > 0 and math.isfinite(rates.fp32_gflops)
    assert rates.bf16_gflops > 0 and math.isfinite(rates.bf16_gflops)  # this torch has bf16 matmul
    faster = "bf16" if rates.bf16_gflops > rates.fp32_gflops else "fp32"
    assert dc.choose_dtype(rates.fp32_gflops, rates.bf16_gflops) == faster


def test_gemm_shape_caps_the_flops_of_big_models():
    assert dc.gemm_shape(576, 1536) == (dc.DEFAULT_TOKENS, 576, 1536)  # SmolLM2-135M: as asked
    m, k, n = dc.gemm_shape(1536, 8960)  # Qwen2.5-1.5B: fewer token rows
    assert (k, n) == (1536, 8960) and 32 <= m < dc.DEFAULT_TOKENS and m % 32 == 0
    assert 2 * m * k * n <= dc.MAX_GEMM_FLOP
    assert dc.gemm_shape(8192, 28672)[0] == 32  # never below 32 rows
    with pytest.raises(ValueError):
        dc.gemm_shape(0, 10)


def test_cache_round_trip(cache_dir):
    first = _calibrate()
    assert first.source == "calibration"
    path = cache_dir / dc.CACHE_FILE
    entries = _entries(path)
    assert len(entries) == 1
    (key, raw), = entries.items()
    assert key == dc.host_key(first.threads, first.shape)
    assert raw["choice"] == first.dtype == dc.choose_dtype(raw["fp32_gflops"], raw["bf16_gflops"])
    assert not list(cache_dir.glob("*.tmp"))  # the atomic write left no temporary file

    assert _calibrate() is first  # remembered in the process
    dc.clear_memo()
    again = _calibrate()  # a new process: read from the file, not measured
    assert again.source == "calibration cache"
    assert (again.dtype, again.fp32_gflops, again.bf16_gflops) == (first.dtype, first.fp32_gflops, first.bf16_gflops)
    assert "calibration cache" in again.describe() and "GFLOP/s" in again.describe()


def test_other_hosts_entries_survive_a_write(cache_dir):
    path = cache_dir / dc.CACHE_FILE
    other = {"cpu": "Some Xeon", "torch": "2.0", "threads": 4, "shape": [256, 576, 1536],
             "fp32_gflops": 250.0, "bf16_gflops": 600.0, "choice": "bf16",
             "measured_at": "2026-01-01T00:00:00+00:00", "seconds": 0.3, "load_avg": 0.1}
    path.write_text(json.dumps({"version": 1, "entries": {"another host": other}}))
    _calibrate()
    entries = _entries(path)
    assert entries["another host"] == other and len(entries) == 2


@pytest.mark.parametrize("text", ["{not json", "[]", '{"version": 2, "entries": {}}', '{"entries": 3}', ""])
def test_a_corrupt_file_is_ignored_with_a_warning_and_rewritten(cache_dir, caplog, text):
    path = cache_dir / dc.CACHE_FILE
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="reranker.llm.dtype_choice"):
        choice = _calibrate()
    assert choice.source == "calibration"
    assert "ignoring the dtype calibration cache" in caplog.text
    assert len(_entries(path)) == 1  # rewritten as a valid file


@pytest.mark.parametrize(
    "edit",
    [
        {"choice": "flip"},  # a choice that does not follow from the rates
        {"fp32_gflops": -1.0},
        {"bf16_gflops": "fast"},
        {"fp32_gflops": float("nan")},  # json writes NaN, json.loads reads it
        {"fp32_gflops": 1e300},
        {"threads": 999},  # measured with another thread count than its key says
        {"shape": [1, 2]},
        {"extra_field": 1},
        {"cpu": None},
    ],
)
def test_a_hand_edited_entry_is_ignored_and_measured_again(cache_dir, caplog, edit):
    _calibrate()
    path = cache_dir / dc.CACHE_FILE
    data = json.loads(path.read_text())
    (key, raw), = data["entries"].items()
    if edit.get("choice") == "flip":
        edit = {"choice": "bf16" if raw["choice"] == "fp32" else "fp32"}
    raw.update(edit)
    path.write_text(json.dumps(data))
    dc.clear_memo()
    with caplog.at_level(logging.WARNING, logger="reranker.llm.dtype_choice"):
        choice = _calibrate()
    assert choice.source == "calibration"
    assert "ignoring the dtype calibration entry" in caplog.text
    fixed = dc.CalibrationEntry.model_validate(_entries(path)[key])  # replaced by a valid one
    assert fixed.choice == choice.dtype


def test_an_entry_that_is_not_a_mapping_is_ignored(cache_dir, caplog):
    first = _calibrate()
    path = cache_dir / dc.CACHE_FILE
    key = dc.host_key(first.threads, first.shape)
    path.write_text(json.dumps({"version": 1, "entries": {key: "bf16"}}))
    dc.clear_memo()
    with caplog.at_level(logging.WARNING, logger="reranker.llm.dtype_choice"):
        assert _calibrate().source == "calibration"
    assert "ignoring the dtype calibration entry" in caplog.text


def test_the_decision_is_logged_with_both_rates(cache_dir, caplog):
    with caplog.at_level(logging.INFO, logger="reranker.llm.dtype_choice"):
        choice = _calibrate()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("dtype auto"))
    assert f"-> {choice.dtype}" in line and line.count("GFLOP/s") == 2


def test_auto_loading_smollm2_uses_the_calibrated_choice(smollm):
    """The session's SmolLM2 (`dtype: auto`, 1 thread) runs in the dtype its calibration chose,
    and that calibration is the one stored for this host in the cache file."""
    import torch

    assert smollm.config.dtype == "auto"
    choice = smollm.dtype_choice
    assert choice.source in ("calibration", "calibration cache")
    assert choice.dtype == dc.choose_dtype(choice.fp32_gflops, choice.bf16_gflops)
    want = torch.bfloat16 if choice.dtype == "bf16" else torch.float32
    assert smollm.dtype == want
    assert next(smollm.model.parameters()).dtype == want
    cfg = smollm.model.config
    assert choice.shape == dc.gemm_shape(cfg.hidden_size, cfg.intermediate_size)
    assert choice.threads == 1
    assert choice.cache_file is not None
    stored = dc.read_entry(dc.host_key(choice.threads, choice.shape), Path(choice.cache_file))
    if stored is not None:  # absent where the cache folder is read-only or was a test's tmp_path
        assert stored.choice == choice.dtype
